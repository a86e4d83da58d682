//! The access log against real sockets: one line per request, whatever became of it (answered,
//! retried, timed out, refused, abandoned by its client), with every field, as JSON that
//! parses; none when `listen.access_log` is off, switched by a reload.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use stormguard_proxy::config::RouteMatch;
use stormguard_proxy::ACCESS_LOG_TARGET;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The lines a subscriber wrote, as the binary's `--log-format json` writes them.
#[derive(Clone, Default)]
struct Caught(Arc<Mutex<Vec<u8>>>);

impl Write for Caught {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Caught {
    /// Every access-log line so far, parsed (a line that is not JSON fails the test).
    fn access_lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"))
            })
            .filter(|line| line["target"] == ACCESS_LOG_TARGET)
            .collect()
    }

    /// Waits (at most 5 s) until there are `n` access-log lines; returns them.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..500 {
            let lines = self.access_lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} access-log lines within 5 s: {:?}", self.access_lines());
    }
}

/// A JSON subscriber on this thread (the test's runtime is current-thread, so the proxy's tasks
/// log to it), writing into the returned buffer.
fn catch() -> (Caught, tracing::subscriber::DefaultGuard) {
    let caught = Caught::default();
    let writer = caught.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .finish();
    (caught, tracing::subscriber::set_default(subscriber))
}

const FIELDS: [&str; 11] = [
    "timestamp",
    "route",
    "method",
    "path",
    "status",
    "attempts",
    "reason",
    "duration_us",
    "instance",
    "request_bytes",
    "response_bytes",
];

fn prefixed(name: &str, upstream: &str, prefix: &str) -> stormguard_proxy::config::Route {
    let mut route = route(name, upstream);
    route.matcher = RouteMatch {
        path_prefix: Some(prefix.to_string()),
        host: None,
    };
    route
}

#[tokio::test]
async fn each_request_is_one_line_with_every_field_and_none_when_off() {
    let (caught, _guard) = catch();
    let ok = upstream(|_req| async { reply(200, "ok") }).await;
    // The first request either instance sees gets 503, every later one 200: the one request to
    // this route is retried once, on the other instance.
    let seen = Arc::new(AtomicUsize::new(0));
    let flaky_answer = move |_req| {
        let seen = seen.clone();
        async move {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                reply(503, "not now")
            } else {
                reply(200, "later")
            }
        }
    };
    let (flaky_a, flaky_b) = (
        upstream(flaky_answer.clone()).await,
        upstream(flaky_answer).await,
    );
    let slow = slow_upstream(Duration::from_millis(600)).await;
    let mut timed = prefixed("timed", "slow", "/timed");
    timed.call.timeout = Some(ms(100));
    timed.call.max_attempts = 1;
    let mut config = config(
        &[
            ("ok", &[ok.addr]),
            ("flaky", &[flaky_a.addr, flaky_b.addr]),
            ("slow", &[slow.addr]),
        ],
        vec![
            prefixed("ok", "ok", "/ok"),
            prefixed("flaky", "flaky", "/flaky"),
            timed,
            prefixed("patient", "slow", "/patient"),
        ],
    );
    config.listen.access_log = true;
    let proxy = start(config.clone()).await;
    let client = client();

    // 1. Answered by the upstream, with a body both ways.
    let req = Request::post(proxy.url("/ok/items?token=secret"))
        .body(Full::new(Bytes::from_static(b"twelve bytes")))
        .unwrap();
    let reply = send(&client, req).await.unwrap();
    assert_eq!(reply.status, 200);
    let line = &caught.wait_for(1).await[0];
    for field in FIELDS {
        assert!(!line[field].is_null(), "no `{field}` in {line}");
    }
    assert_eq!(line["route"], "ok");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/ok/items", "the path, without its query");
    assert_eq!(line["status"], 200);
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["reason"], "-");
    assert_eq!(line["instance"], ok.addr.to_string());
    assert_eq!(line["request_bytes"], 12);
    assert_eq!(line["response_bytes"], 2);
    assert!(line["duration_us"].as_u64().unwrap() > 0, "{line}");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");

    // 2. Retried once, answered by the instance of the second attempt.
    let reply = get(&client, &proxy.url("/flaky")).await;
    assert_eq!(
        (reply.status, reply.header("stormguard-attempts")),
        (200, Some("2"))
    );
    let line = &caught.wait_for(2).await[1];
    assert_eq!(
        (line["route"].as_str(), line["status"].as_u64()),
        (Some("flaky"), Some(200))
    );
    assert_eq!(line["attempts"], 2);
    assert_eq!(line["response_bytes"], 5);
    let second = if flaky_a.hits() == 1 && flaky_b.hits() == 1 {
        // Whichever the balancer took first got the 503.
        let answered = line["instance"].as_str().unwrap();
        assert!(answered == flaky_a.addr.to_string() || answered == flaky_b.addr.to_string());
        answered.to_string()
    } else {
        panic!(
            "one attempt per instance: {} and {}",
            flaky_a.hits(),
            flaky_b.hits()
        );
    };
    assert!(!second.is_empty());

    // 3. Timed out: the proxy's own 504, with the instance that did not answer.
    let reply = get(&client, &proxy.url("/timed")).await;
    assert_eq!(reply.status, 504);
    let line = &caught.wait_for(3).await[2];
    assert_eq!(line["status"], 504);
    assert_eq!(line["reason"], "timeout");
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["instance"], slow.addr.to_string());
    assert_eq!(line["response_bytes"], reply.body.len());

    // 4. A 4xx of the proxy's: no route takes the path, no instance is tried.
    let reply = get(&client, &proxy.url("/nowhere")).await;
    assert_eq!(reply.status, 404);
    let line = &caught.wait_for(4).await[3];
    assert_eq!(
        (
            line["route"].as_str(),
            line["status"].as_u64(),
            line["reason"].as_str()
        ),
        (Some("-"), Some(404), Some("no-route"))
    );
    assert_eq!(
        (line["attempts"].as_u64(), line["instance"].as_str()),
        (Some(0), Some("-"))
    );

    // 5. The client goes away while the upstream takes its time: one line all the same.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /patient HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(ms(100)).await;
    drop(stream);
    let line = &caught.wait_for(5).await[4];
    assert_eq!(line["route"], "patient");
    assert_eq!(
        (line["status"].as_u64(), line["reason"].as_str()),
        (Some(499), Some("client-closed"))
    );
    assert_eq!(line["instance"], slow.addr.to_string());
    // Its attempt reached the upstream: counted (the line said 0).
    assert_eq!(line["attempts"], 1);

    // 6. The client goes away in the middle of its body: 499 client-closed too, not the
    // 400 bad-body answered into a closed connection.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /ok HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(ms(100)).await;
    drop(stream);
    let line = &caught.wait_for(6).await[5];
    assert_eq!(
        (line["status"].as_u64(), line["reason"].as_str()),
        (Some(499), Some("client-closed")),
        "{line}"
    );
    assert_eq!(line["attempts"], 0);

    // Exactly one line per request, and still so a moment later.
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        caught.access_lines().len(),
        6,
        "{:?}",
        caught.access_lines()
    );

    // Off, by a reload: the same requests write nothing.
    config.listen.access_log = false;
    config.listen.address = proxy.addr;
    proxy.proxy.apply(config).unwrap();
    for path in ["/ok", "/nowhere", "/timed"] {
        let _ = get(&client, &proxy.url(path)).await;
    }
    tokio::time::sleep(ms(100)).await;
    assert_eq!(
        caught.access_lines().len(),
        6,
        "{:?}",
        caught.access_lines()
    );
}

/// A response the client stops reading halfway is `incomplete`, with the bytes it was handed.
#[tokio::test]
async fn a_response_cut_before_its_end_says_incomplete() {
    let (caught, _guard) = catch();
    let big = upstream(|_req| async {
        let body: &'static [u8] = Box::leak(vec![b'x'; 4 << 20].into_boxed_slice());
        reply(200, std::str::from_utf8(body).unwrap())
    })
    .await;
    let proxy = start(single(&[big.addr])).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // Read a little of the answer, then go.
    let mut buf = [0u8; 1024];
    tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
        .await
        .unwrap();
    drop(stream);
    let line = &caught.wait_for(1).await[0];
    assert_eq!(
        (line["status"].as_u64(), line["reason"].as_str()),
        (Some(200), Some("incomplete"))
    );
    assert!(line["response_bytes"].as_u64().unwrap() < 4 << 20, "{line}");
    assert_eq!(line["instance"], big.addr.to_string());
}

/// An upstream's 503 whose retry the route's budget refused is passed on as it came, and its
/// line says why it was not retried: `reason=retry-budget`, not the `-` of an answer no retry
/// was wanted for (the denial was counted only in `stormguard_retries_denied_total`).
#[tokio::test]
async fn an_upstream_failure_whose_retry_the_budget_refused_says_so() {
    let (caught, _guard) = catch();
    let failing = || upstream(|_req| async { reply(503, "no") });
    let (a, b) = (failing().await, failing().await);
    let mut config = single(&[a.addr, b.addr]);
    config.listen.access_log = true;
    config.routes[0].call.max_attempts = 2;
    // No retry at all: no share of requests, no reserve.
    config.routes[0].call.limiter = Some(stormguard_graph::model::LimiterSpec::Budget {
        ratio: 0.0,
        min_per_sec: 0,
    });
    let proxy = start(config).await;
    let answer = get(&client(), &proxy.url("/")).await;
    assert_eq!(
        (answer.status, answer.header("stormguard-attempts")),
        (503, Some("1"))
    );
    assert_eq!(
        answer.header("stormguard-reason"),
        None,
        "the upstream's 503"
    );
    let line = &caught.wait_for(1).await[0];
    assert_eq!(line["status"], 503);
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["reason"], "retry-budget", "{line}");
    assert_eq!(a.hits() + b.hits(), 1);
    // A request that needs no retry still says `-`.
    let ok = upstream(|_req| async { reply(200, "ok") }).await;
    let mut config = single(&[ok.addr]);
    config.listen.access_log = true;
    let proxy = start(config).await;
    assert_eq!(get(&client(), &proxy.url("/")).await.status, 200);
    let line = &caught.wait_for(2).await[1];
    assert_eq!(line["reason"], "-", "{line}");
}
