-- wrk script of bench/proxy.sh: prints one machine-readable line with wrk's own counts, so the
-- script reads numbers rather than parsing wrk's human output (whose units change with size).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
    e.status, e.connect, e.read, e.write, e.timeout))
end
