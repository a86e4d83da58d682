#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/seed-*.

Seeds are the starting points libFuzzer mutates: valid inputs of each format, and a few broken
in the ways people break them, so that the fuzzer starts deep inside each parser. Rerun after
changing a format (`python3 fuzz/seeds.py`); files the fuzzer added (named by their hash) are
left alone. HTTP/2 requests are framed here by hand (HPACK literals without Huffman coding).
"""

import pathlib
import shutil
import struct

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent


def write(target, name, data):
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / f"seed-{name}").write_bytes(data)


def clear(target):
    folder = FUZZ / "corpus" / target
    for path in folder.glob("seed-*") if folder.exists() else []:
        path.unlink()


# --- graph: the examples, and small files with each kind of key --------------------------------
def graph():
    clear("graph")
    for path in sorted((ROOT / "examples" / "graphs").glob("*.toml")):
        write("graph", path.stem, path.read_bytes())
    write("graph", "minimal", '[entry]\nservice = "web"\ntimeout = "1s"\n[services.web]\n')
    write("graph", "dotted-call", '[entry]\nservice = "a"\n[services.a]\ncalls = [{ to = "b", timeout = "1s" }]\n[services.b]\n')
    write("graph", "cycle", '[entry]\nservice = "a"\n[[services.a.calls]]\nto = "b"\ntimeout = "1s"\n[[services.b.calls]]\nto = "a"\ntimeout = "1s"\n')
    write("graph", "bad-duration", '[entry]\nservice = "web"\ntimeout = "1 s"\n[services.web]\n')
    write("graph", "unicode-key", '[entry]\nservice = "wéb"\n[services."wéb"]\ninstances = 0\n')


# --- proxy settings ----------------------------------------------------------------------------
PROXY_MINIMAL = """[upstreams.api]
instances = ["127.0.0.1:9001"]

[[routes]]
name = "api"
upstream = "api"
timeout = "2s"
"""

PROXY_EVERY_KEY = """[listen]
address = "[::1]:8080"
header_read_timeout = "500ms"
max_request_body = 1024
max_headers = 1
max_header_bytes = "8KiB"
shutdown_grace = "0s"
max_connections = 1
http2_max_concurrent_streams = 1
http2_keep_alive_interval = "1ms"
http2_keep_alive_timeout = "1ms"
idle_timeout = "1ms"

[admin]
address = "0.0.0.0:9901"
token = "secret"

[upstreams.a]
instances = ["localhost:1", "[::1]:2"]
max_in_flight = 1
protocol = "http2"

[[routes]]
name = "a"
match = { path_prefix = "/a", host = "A.example" }
upstream = "a"
timeout = "1ms"
request_timeout = "1h"
connect_timeout = "1ms"
max_attempts = 10
backoff = "decorrelated-jitter(base=1ns, cap=1h)"
token_bucket = { capacity = 1, retry_cost = 1, timeout_cost = 0 }
retry_on = ["5xx", "409", "connect-failure", "grpc:unavailable"]
hedge = { delay = "p99.9", max_extra = 1.0 }
adaptive_timeout = { false_timeout_rate = 0.5, min = "1ns", max = "1ms" }
propagate_deadline = false
deadline_reserve = "0s"
retry_body_limit = "0B"
idempotent = false
fault = { delay = "1h", delay_percent = 100.0, abort_status = 599, abort_percent = 0.0 }

[faults]
enabled = true
"""


def proxy_settings():
    clear("proxy_settings")
    write("proxy_settings", "example", (ROOT / "examples" / "proxy" / "stormguard.toml").read_bytes())
    write("proxy_settings", "minimal", PROXY_MINIMAL)
    write("proxy_settings", "every-key", PROXY_EVERY_KEY)
    write("proxy_settings", "unknown-upstream", PROXY_MINIMAL.replace('upstream = "api"', 'upstream = "apu"'))
    write("proxy_settings", "retry-without-request-timeout", PROXY_MINIMAL + "max_attempts = 3\n")
    write("proxy_settings", "zero", PROXY_MINIMAL.replace('"2s"', '"0s"') + "[listen]\nmax_headers = 0\n")
    write("proxy_settings", "huge", PROXY_MINIMAL.replace('"2s"', '"99999999999h"') + "[listen]\nmax_request_body = \"16EiB\"\n")


# --- backoff texts -----------------------------------------------------------------------------
BACKOFFS = [
    "none", "constant(100ms)", "exponential(base=25ms, cap=1s)", "full-jitter(base=25ms, cap=250ms)",
    "equal-jitter(base=10ms,cap=50ms)", "decorrelated-jitter( cap = 1h , base = 1ns )",
    "full-jitter(base=25ms)", "exponential(base=0s, cap=1s)", "full-jitter(base=2s, cap=1s)",
    "constant(0.5us)", "full-jitter(base=1ns, cap=18446744073709551615s)", "constant(1.000000001s)",
    "full-jitter(base=25ms, cap=1s, cap=2s)", "none()", "Full-Jitter(base=25ms, cap=1s)",
    "exponential(base=1µs, cap=584942417355y)", "250ms", "1.5h", "0s", " 7m ",
]


def backoff():
    clear("backoff")
    for i, text in enumerate(BACKOFFS):
        write("backoff", f"{i:02}", text)


# --- deadline headers: a header block, name:value a line ---------------------------------------
HEADERS = [
    "stormguard-budget-ms:250",
    "grpc-timeout:250m",
    "x-envoy-expected-rq-timeout-ms:15000",
    "stormguard-budget-ms: 900\ngrpc-timeout:300m\nx-envoy-expected-rq-timeout-ms:\t1000\t",
    "grpc-timeout:99999999H",
    "grpc-timeout:123456789m",
    "grpc-timeout:0n\ngrpc-timeout:1S",
    "stormguard-budget-ms:18446744073709551615",
    "stormguard-budget-ms:18446744073709551616",
    "stormguard-budget-ms:-1\nstormguard-budget-ms:5",
    "Grpc-Timeout:10u\naccept:*/*",
    "stormguard-budget-ms:\ngrpc-timeout:m",
    "grpc-timeout:1\xc3\xa9",
]


def deadline_headers():
    clear("deadline_headers")
    for i, text in enumerate(HEADERS):
        write("deadline_headers", f"{i:02}", text)


# --- exposition pages --------------------------------------------------------------------------
CLASSIC = """# HELP http_request_duration_seconds Time to answer, by route.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{job="api",route="/users",le="0.005"} 0
http_request_duration_seconds_bucket{job="api",route="/users",le="0.01"} 2
http_request_duration_seconds_bucket{job="api",route="/users",le="0.1"} 95
http_request_duration_seconds_bucket{job="api",route="/users",le="1"} 100
http_request_duration_seconds_bucket{job="api",route="/users",le="+Inf"} 100
http_request_duration_seconds_sum{job="api",route="/users"} 3.2
http_request_duration_seconds_count{job="api",route="/users"} 100
http_request_duration_seconds_bucket{le="0.1",job="api",route="/orders"} 990
http_request_duration_seconds_bucket{le="+Inf",job="api",route="/orders"} 1000 1712345678000
# TYPE http_requests_total counter
http_requests_total{job="api"} 1100
up 1
"""

OPENMETRICS = """# HELP rpc Attempt latency.
# TYPE rpc histogram
# UNIT rpc milliseconds
rpc_bucket{upstream="db",le="10.0"} 40 # {trace_id="abc"} 7.5 1712345678.1
rpc_bucket{upstream="db",le="20.0"} 80
rpc_bucket{upstream="db",le="+Inf"} 100
rpc_sum{upstream="db"} 1500.0
rpc_count{upstream="db"} 100
rpc_created{upstream="db"} 1712340000.0
# EOF
"""

PAGES = [
    CLASSIC,
    OPENMETRICS,
    'db_query_ms_bucket{le="5"} 1\ndb_query_ms_bucket{le="+Inf"} 2\n',
    'x_seconds_bucket{le="1e300"} 5\nx_seconds_bucket{le="+Inf"} 10\n',
    'x_seconds_bucket{le="-1"} 5\nx_seconds_bucket{le="0"} 5\nx_seconds_bucket{le="Inf"} NaN\n',
    'x_seconds_bucket{a="\\"\\n\\\\",le="0.5"} 1e3\nx_seconds_bucket{a="\\"\\n\\\\",le="+Inf"} 1e3\n',
    'x_seconds_bucket{le="0.1"} 3\nx_seconds_bucket{le="0.1"} 4\n',
    '# TYPE x histogram\nx_bucket{route="/"} 1\n',
    'x_seconds_bucket{le="0.1",le="0.2"} 1\n',
    'x_seconds_bucket{le="1"} 10\nx_seconds_bucket{le="2"} 5\nx_seconds_bucket{le="+Inf"} 20\n',
]


def exposition():
    clear("exposition")
    for i, text in enumerate(PAGES):
        write("exposition", f"{i:02}", text)


# --- proxy requests: HTTP/1.1 and HTTP/2 bytes -------------------------------------------------
H1 = [
    "GET / HTTP/1.1\r\nhost: a\r\n\r\n",
    "GET /retry HTTP/1.1\r\nhost: a\r\nx-upstream-status: 503\r\n\r\n",
    "POST /retry HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nx-upstream-status: 502\r\n\r\nhello",
    "POST /hedge HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nx-upstream-delay-ms: 30\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /down HTTP/1.1\r\nhost: a\r\n\r\n",
    "GET /fault HTTP/1.1\r\nhost: a\r\nstormguard-fault-abort: 429\r\nstormguard-fault-delay-ms: 20\r\n\r\n",
    "GET /h2 HTTP/1.1\r\nhost: a\r\ncontent-type: application/grpc\r\ngrpc-timeout: 100m\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: api.internal:8080\r\nstormguard-budget-ms: 3\r\nx-upstream-delay-ms: 10\r\n\r\n",
    "GET http://127.0.0.1:8080/x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
    "GET http://elsewhere.example/ HTTP/1.1\r\nhost: elsewhere.example\r\n\r\n",
    "CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: a\r\n\r\nGET /retry HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 99999999\r\n\r\nabc",
    "POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\nabc",
    "GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: a\r\n" + "".join(f"x-{i}: {i}\r\n" for i in range(40)) + "\r\n",
    "GET / HTTP/1.1\r\nhost: a\r\nx-long: " + "a" * 9000 + "\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: a\r\nx-upstream-status: 204\r\n",
    "G",
    "\r\n\r\nGET / HTTP/1.1\r\n\r\n",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack(headers):
    """HPACK literal header fields without indexing, new names, no Huffman coding."""
    out = b""
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


def request(path, extra=(), method="GET", authority="a"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority), *extra]


SETTINGS = frame(0x4, 0, 0)
SETTINGS_ACK = frame(0x4, 0x1, 0)
END_STREAM, END_HEADERS = 0x1, 0x4


def h2(*frames):
    return PREFACE + SETTINGS + b"".join(frames)


H2 = {
    "get": h2(frame(0x1, END_STREAM | END_HEADERS, 1, hpack(request("/")))),
    "retry-503": h2(frame(0x1, END_STREAM | END_HEADERS, 1, hpack(request("/retry", [("x-upstream-status", "503")])))),
    "post-body": h2(
        frame(0x1, END_HEADERS, 1, hpack(request("/hedge", [("content-length", "5")], method="POST"))),
        frame(0x0, END_STREAM, 1, b"hello"),
    ),
    "grpc": h2(frame(0x1, END_STREAM | END_HEADERS, 1, hpack(request("/h2", [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "50m")])))),
    "two-streams": h2(
        SETTINGS_ACK,
        frame(0x1, END_STREAM | END_HEADERS, 1, hpack(request("/down"))),
        frame(0x1, END_STREAM | END_HEADERS, 3, hpack(request("/fault", [("stormguard-fault-abort", "503")]))),
        frame(0x8, 0, 0, struct.pack(">I", 65535)),
    ),
    "continuation": h2(
        frame(0x1, END_STREAM, 1, hpack(request("/"))[:10]),
        frame(0x9, END_HEADERS, 1, hpack(request("/"))[10:]),
    ),
    "open-stream": h2(frame(0x1, END_HEADERS, 1, hpack(request("/retry", method="PUT")))),
    "ping-rst-goaway": h2(
        frame(0x6, 0, 0, b"12345678"),
        frame(0x1, END_HEADERS, 1, hpack(request("/"))),
        frame(0x3, 0, 1, struct.pack(">I", 8)),
        frame(0x7, 0, 0, struct.pack(">II", 1, 0)),
    ),
    "priority-padded": h2(
        frame(0x2, 0, 1, struct.pack(">IB", 0, 15)),
        frame(0x1, END_STREAM | END_HEADERS | 0x8 | 0x20, 1, bytes([3]) + struct.pack(">IB", 0, 200) + hpack(request("/")) + b"\0\0\0"),
    ),
    "no-authority": h2(frame(0x1, END_STREAM | END_HEADERS, 1, hpack([(":method", "GET"), (":scheme", "http"), (":path", "/")]))),
    "preface-only": PREFACE,
    "preface-half": PREFACE[:10],
}


def proxy_request():
    clear("proxy_request")
    for i, text in enumerate(H1):
        write("proxy_request", f"h1-{i:02}", text)
    for name, data in H2.items():
        write("proxy_request", f"h2-{name}", data)


# --- mesh: one manifest of each kind the import reads, and the YAML/JSON shapes that trip readers
MESH = {
    "istio-virtualservice": """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews
  http:
  - name: writes
    match:
    - method:
        exact: POST
    route:
    - destination:
        host: reviews
        subset: v2
    timeout: 500ms
    retries:
      attempts: 0
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 75
    - destination:
        host: reviews
        subset: v3
      weight: 25
    timeout: 2s
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: gateway-error,connect-failure,refused-stream,503
""",
    "istio-destinationrule": """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
      http:
        http1MaxPendingRequests: 64
        maxRetries: 3
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
""",
    "kubernetes-workloads": """apiVersion: v1
kind: Namespace
metadata:
  name: bookinfo
  labels:
    istio-injection: enabled
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ratings-v1
  namespace: bookinfo
  annotations:
    config.linkerd.io/proxy-cpu-request: "0.1"
spec:
  replicas: 3
  selector:
    matchLabels: {app: ratings, version: v1}
  template:
    metadata:
      labels: {app: ratings, version: v1}
      annotations:
        linkerd.io/inject: enabled
    spec:
      containers:
      - name: ratings
        image: docker.io/istio/examples-bookinfo-ratings-v1:1.20.1
---
apiVersion: v1
kind: Service
metadata:
  name: ratings
  namespace: bookinfo
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: "2"
    retry.linkerd.io/timeout: 300ms
    timeout.linkerd.io/request: 1s
spec:
  selector: {app: ratings}
  ports:
  - {port: 9080, name: http}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec: {replicas: 2}
""",
    "kubernetes-list": """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
  data: {x: "1"}
""",
    "gateway-httproute": """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: store
  namespace: shop
spec:
  parentRefs:
  - name: store
    kind: Service
    group: ""
    port: 8080
  rules:
  - name: checkout
    matches:
    - path: {type: PathPrefix, value: /checkout}
      method: POST
    backendRefs:
    - {name: store-v2, port: 8080, weight: 10}
    - {name: store-v1, port: 8080, weight: 90}
    timeouts:
      request: 10s
      backendRequest: 2s
    retry:
      codes: [500, 502, 503, 504]
      attempts: 2
      backoff: 100ms
""",
    "gateway-grpcroute": """apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo}
spec:
  parentRefs: [{name: echo, kind: Service, group: ""}]
  rules:
  - matches:
    - method: {service: echo.Echo, method: Ping}
    backendRefs: [{name: echo, port: 50051}]
""",
    "linkerd-serviceprofile": """apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: books.booksapp.svc.cluster.local
  namespace: booksapp
spec:
  routes:
  - name: GET /books/{id}.json
    condition:
      method: GET
      pathRegex: /books/[^/]*\\\\.json
    isRetryable: true
    timeout: 300ms
    responseClasses:
    - condition:
        status: {min: 500, max: 599}
      isFailure: true
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
""",
    "envoy-bootstrap": """node: {id: web-1, cluster: web}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: api
                  timeout: 3s
                  retry_policy:
                    retry_on: 5xx,reset,connect-failure,retriable-status-codes
                    retriable_status_codes: [409]
                    num_retries: 3
                    per_try_timeout: 0.5s
                    retry_back_off: {base_interval: 0.025s, max_interval: 0.25s}
                  hedge_policy: {hedge_on_per_try_timeout: true}
  clusters:
  - name: api
    connect_timeout: 0.25s
    type: STRICT_DNS
    circuit_breakers:
      thresholds:
      - retry_budget: {budget_percent: {value: 20.0}, min_retry_concurrency: 3}
        max_retries: 3
    load_assignment:
      cluster_name: api
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: api, port_value: 8080}}}}]}]
""",
    "envoy-config-dump": """{
 "configs": [
  {
   "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
   "dynamic_route_configs": [
    {
     "route_config": {
      "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
      "name": "9080",
      "virtualHosts": [
       {
        "name": "reviews.bookinfo.svc.cluster.local:9080",
        "domains": ["reviews.bookinfo.svc.cluster.local"],
        "routes": [
         {
          "match": {"prefix": "/"},
          "route": {
           "cluster": "outbound|9080||reviews.bookinfo.svc.cluster.local",
           "timeout": "0s",
           "retryPolicy": {
            "retryOn": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            "numRetries": 2,
            "retryHostPredicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}],
            "hostSelectionRetryMaxAttempts": "5",
            "retriableStatusCodes": [503]
           },
           "maxGrpcTimeout": "0s"
          }
         }
        ]
       }
      ]
     }
    }
   ]
  },
  {
   "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
   "dynamicActiveClusters": [
    {"cluster": {"name": "outbound|9080||reviews.bookinfo.svc.cluster.local",
      "connectTimeout": "10s",
      "circuitBreakers": {"thresholds": [{"maxRetries": 4294967295}]}}}
   ]
  }
 ]
}
""",
    "grpc-service-config": """{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [
    {
      "name": [{"service": "echo.Echo", "method": "Ping"}, {"service": "echo.Echo"}],
      "timeout": "1.5s",
      "retryPolicy": {
        "maxAttempts": 6,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
      }
    },
    {
      "name": [{}],
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s", "nonFatalStatusCodes": ["UNAVAILABLE"]}
    }
  ],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}
""",
    "anchors": """base: &retries
  attempts: 2
  perTryTimeout: 1s
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
    retries: *retries
  - route: [{destination: {host: a}}]
    retries: {<<: *retries, attempts: 5}
""",
    "unicode-crlf": "apiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: caf\u00e9\r\n  annotations: {note: \"\u00e9t\u00e9 \u2014 \U0001F600\"}\r\n---\r\nkind: \"\u00fcber\"\r\n",
    "empty-documents": "---\n---\n# only a comment\n---\n...\n",
    "scalars-and-nulls": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: ~\nspec:\n  hosts: null\n  http:\n  - timeout: \"\"\n    retries: {attempts: -1, perTryTimeout: 1x}\n",
    "bad-unclosed": "apiVersion: v1\nkind: Service\nmetadata: {name: [a\n",
    "bad-tab-indent": "a:\n\tb: 1\n",
}


def mesh():
    clear("mesh")
    for name, text in MESH.items():
        write("mesh", name, text)


# --- upstream_response: answers an upstream gives the direct HTTP/1.1 client ----------------------
# The first byte: piece size (low 6 bits, plus one) and HEAD (bit 6); then the answer.
UPSTREAM_RESPONSES = {
    "length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
    "empty-204": b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
    "chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1 \r\n!\r\n0\r\n\r\n",
    "chunked-trailers": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n",
    "close-delimited": b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
    "keep-alive-10": b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    "continue-then-final": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
    "both-framings": b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "lengths-disagree": b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
    "length-list": b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc",
    "folded": b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    "cut-short": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
}


def upstream_response():
    clear("upstream_response")
    for name, answer in UPSTREAM_RESPONSES.items():
        write("upstream_response", name, bytes([63]) + answer)
        write("upstream_response", name + "-bytewise", bytes([0]) + answer)
        write("upstream_response", name + "-pieces-of-7", bytes([6]) + answer)
    write("upstream_response", "head-request", bytes([64 + 3]) + UPSTREAM_RESPONSES["length"])


if __name__ == "__main__":
    graph()
    proxy_settings()
    backoff()
    deadline_headers()
    exposition()
    proxy_request()
    mesh()
    upstream_response()
    total = sum(p.stat().st_size for p in (FUZZ / "corpus").rglob("seed-*"))
    print(f"seeds written: {total} bytes in {len(list((FUZZ / 'corpus').rglob('seed-*')))} files")
