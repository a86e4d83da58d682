//! The proxy's request path, fed raw bytes as a client connection: HTTP/1.1, or HTTP/2 when
//! the input starts with the HTTP/2 preface.
//!
//! ## The harness
//! One current-thread runtime per thread, built once, with its clock paused: whenever every
//! task waits, time jumps to the next timer, so the header, idle, keep-alive and request
//! timeouts that end a connection elapse at once, and an input that holds a connection open
//! costs microseconds, not seconds. The proxy's routes go to upstreams in the same runtime,
//! on loopback listeners made once (HTTP/1.1 and h2c on one port), to an address that refuses
//! connections, or nowhere (a fault abort). The upstreams answer with the status a request asks
//! for in `x-upstream-status`, after the delay it asks for in `x-upstream-delay-ms`, echoing
//! its body, so that inputs reach retries, hedges, timeouts and streamed answers.
//!
//! Each input gets a proxy of its own (built from settings parsed once): nothing of one input
//! is left for the next, which the harness checks.
//!
//! ## Promises checked
//! - A connection ends by itself, whatever the client sends and however it stops: the client
//!   here never closes its side, so only the proxy's own bounds can end the exchange.
//! - Its answer is HTTP: an HTTP/1 status line, or HTTP/2 frames starting with SETTINGS.
//! - Nothing panics, in the connection's task or in any task it spawned (a panic in a spawned
//!   task is caught by tokio; the harness counts panics with a hook, since libFuzzer aborts on
//!   one but a replaying test would not see it).
//! - Once the connection has ended and the proxy is dropped, every task it started ends: no
//!   task, connection or timer leaks from one connection to the next.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use stormguard_proxy::config::{self, Config};
use stormguard_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// The HTTP/2 connection preface: an input that starts with it speaks HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The address the client connected to, as the proxy is told.
const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// The most answer bytes read: well above what the routes answer to an input of libFuzzer's
/// sizes, and a bound should an answer never end.
const MAX_ANSWER: usize = 4 << 20;

/// How long (in paused time, which costs nothing) a connection may take to end: far above the
/// listener's timeouts below, so that reaching it means a connection that nothing ends.
const CONNECTION_BOUND: Duration = Duration::from_secs(3600);

/// How long (in paused time) the tasks of a finished connection may take to end.
const CLEANUP_BOUND: Duration = Duration::from_secs(600);

/// The most delay an upstream waits when asked, so a request cannot outwait every bound.
const MAX_UPSTREAM_DELAY_MS: u64 = 10_000;

/// The most body an upstream reads and echoes.
const MAX_UPSTREAM_BODY: usize = 1 << 20;

/// The settings: short listener timeouts (every connection ends within seconds of paused time),
/// small limits (so inputs reach them), a route for each way a request can go. `ECHO_A` and
/// `ECHO_B` are replaced by the upstreams' addresses.
const SETTINGS: &str = r#"
[listen]
address = "127.0.0.1:8080"
header_read_timeout = "1s"
idle_timeout = "5s"
max_request_body = "64KiB"
max_headers = 32
max_header_bytes = "8KiB"
http2_max_concurrent_streams = 8
http2_keep_alive_interval = "10s"
http2_keep_alive_timeout = "1s"

[upstreams.echo]
instances = ["ECHO_A", "ECHO_B"]
max_in_flight = 4

[upstreams.echo_h2]
instances = ["ECHO_A", "ECHO_B"]
protocol = "http2"

[upstreams.down]
instances = ["127.0.0.1:1"]

[[routes]]
name = "retry"
match = { path_prefix = "/retry" }
upstream = "echo"
timeout = "1s"
request_timeout = "3s"
max_attempts = 3
backoff = "full-jitter(base=10ms, cap=100ms)"
retry_on = ["default", "5xx"]
idempotent = true
retry_body_limit = "1KiB"

[[routes]]
name = "hedge"
match = { path_prefix = "/hedge" }
upstream = "echo"
timeout = "1s"
hedge = { delay = "20ms", max_extra = 0.5 }
adaptive_timeout = { false_timeout_rate = 0.01, min = "10ms", max = "1s" }

[[routes]]
name = "h2"
match = { path_prefix = "/h2" }
upstream = "echo_h2"
timeout = "1s"
request_timeout = "2s"
max_attempts = 2

[[routes]]
name = "down"
match = { path_prefix = "/down" }
upstream = "down"
timeout = "1s"
connect_timeout = "100ms"
request_timeout = "2s"
max_attempts = 2

[[routes]]
name = "fault"
match = { path_prefix = "/fault" }
upstream = "echo"
timeout = "1s"
fault = { delay = "50ms", delay_percent = 50.0, abort_status = 503, abort_percent = 50.0 }

[[routes]]
name = "host"
match = { host = "api.internal" }
upstream = "echo"
timeout = "500ms"
request_timeout = "1s"
max_attempts = 2
token_bucket = { capacity = 10, retry_cost = 5, timeout_cost = 10 }
propagate_deadline = false

[[routes]]
name = "default"
match = { path_prefix = "/" }
upstream = "echo"
timeout = "1s"
deadline_reserve = "5ms"

[faults]
enabled = true
"#;

/// Panics seen by the hook, in any thread or task.
static PANICS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HARNESS: Harness = Harness::new();
}

/// Runs one input: the bytes a client sends on one connection.
pub fn run(data: &[u8]) {
    answer(data);
}

/// Runs one input and returns what the proxy answered.
fn answer(data: &[u8]) -> Vec<u8> {
    HARNESS.with(|harness| harness.serve(data))
}

/// What every input of a thread shares: the runtime, its upstreams, the parsed settings.
struct Harness {
    runtime: Runtime,
    settings: Config,
}

impl Harness {
    fn new() -> Self {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICS.fetch_add(1, Ordering::SeqCst);
                previous(info);
            }));
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let (a, b) = runtime.block_on(async { (upstream().await, upstream().await) });
        let text = SETTINGS
            .replace("ECHO_A", &a.to_string())
            .replace("ECHO_B", &b.to_string());
        let settings = config::parse("fuzz.toml", &text).expect("the harness's settings parse");
        Harness { runtime, settings }
    }

    fn serve(&self, data: &[u8]) -> Vec<u8> {
        let panics = PANICS.load(Ordering::SeqCst);
        let proxy = Proxy::new(self.settings.clone(), &mut Registry::default())
            .expect("the harness's settings build");
        let answer = self.runtime.block_on(async {
            let metrics = tokio::runtime::Handle::current().metrics();
            let before = metrics.num_alive_tasks();
            let mut answer = Vec::new();
            if tokio::time::timeout(CONNECTION_BOUND, exchange(proxy, data, &mut answer))
                .await
                .is_err()
            {
                panic!(
                    "the connection did not end within {CONNECTION_BOUND:?}; answered so far: {:?}",
                    String::from_utf8_lossy(&answer[..answer.len().min(512)])
                );
            }
            check_answer(data, &answer);
            let ended = async {
                while metrics.num_alive_tasks() > before {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            if tokio::time::timeout(CLEANUP_BOUND, ended).await.is_err() {
                panic!(
                    "{} tasks still alive {CLEANUP_BOUND:?} after the connection ended",
                    metrics.num_alive_tasks() - before
                );
            }
            answer
        });
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            panics,
            "a task panicked while serving the input"
        );
        answer
    }
}

/// Sends `data` on a connection served by `proxy`, keeps the client's side open, and puts in
/// `answer` what the proxy answers until it ends the connection.
async fn exchange(proxy: Proxy, data: &[u8], answer: &mut Vec<u8>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(stormguard_proxy::serve_connection(proxy, server, LOCAL));
    let (mut reading, mut writing) = tokio::io::split(client);
    let write = async {
        // The proxy may stop reading (and end the connection) before taking every byte.
        let _ = writing.write_all(data).await;
        writing
    };
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        while answer.len() < MAX_ANSWER {
            match reading.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let (writing, ()) = tokio::join!(write, read);
    drop(writing);
    if let Err(error) = served.await {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Panics unless `answer` is what an HTTP server of the input's protocol sends.
fn check_answer(data: &[u8], answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    if data.starts_with(H2_PREFACE) {
        // A frame header: 24-bit length, type, flags, stream; the server's preface is SETTINGS
        // on stream 0.
        assert!(
            answer.len() >= 9 && answer[3] == 0x4 && answer[5..9] == [0, 0, 0, 0],
            "an HTTP/2 answer that does not start with SETTINGS: {:?}",
            &answer[..answer.len().min(32)]
        );
    } else {
        assert!(
            answer.starts_with(b"HTTP/1."),
            "an HTTP/1 answer without a status line: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(64)])
        );
    }
}

/// An upstream on a loopback port of its own, serving HTTP/1.1 and h2c with [`echo`]; its
/// connections end when the proxy's do.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(echo);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// Answers with the status in `x-upstream-status` (200 by default) after the delay in
/// `x-upstream-delay-ms` (none by default), echoing the request's body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let number = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let status = number("x-upstream-status")
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let delay = number("x-upstream-delay-ms").unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay.min(MAX_UPSTREAM_DELAY_MS))).await;
    let body = match Limited::new(req.into_body(), MAX_UPSTREAM_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h1(request: &str) -> String {
        String::from_utf8_lossy(&answer(request.as_bytes())).into_owned()
    }

    #[test]
    fn a_request_reaches_the_upstream_and_its_body_comes_back() {
        let answer = h1("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("stormguard-attempts: 1"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        let answer = h1("GET /h2 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200"), "over h2c: {answer}");
    }

    #[test]
    fn a_failing_upstream_is_retried_and_a_dead_one_refused() {
        let answer = h1("GET /retry HTTP/1.1\r\nhost: a\r\nx-upstream-status: 503\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("stormguard-attempts: 3"), "{answer}");
        let answer = h1("GET /down HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
        assert!(answer.contains("stormguard-reason"), "{answer}");
    }

    #[test]
    fn a_slow_upstream_times_out_and_a_fault_aborts() {
        let answer = h1("GET / HTTP/1.1\r\nhost: a\r\nx-upstream-delay-ms: 5000\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
        let answer = h1("GET /fault HTTP/1.1\r\nhost: a\r\nstormguard-fault-abort: 429\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    }

    #[test]
    fn a_client_that_never_finishes_its_head_is_cut_off() {
        assert_eq!(h1("GET / HTTP/1.1\r\nhost: a\r\n"), "");
    }

    #[test]
    fn http2_is_answered_in_frames() {
        let preface = H2_PREFACE.to_vec();
        let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
        // HEADERS, END_STREAM | END_HEADERS, stream 1: GET http://a/ as literals.
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "a"),
        ] {
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        let mut input = [preface, settings.to_vec()].concat();
        input.extend_from_slice(&[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
        input.extend_from_slice(&block);
        let answer = answer(&input);
        // Past the server's SETTINGS, a HEADERS frame on stream 1.
        let frames = frames(&answer);
        assert!(frames.contains(&(1, 1)), "{frames:?}");
    }

    /// The (type, stream) of each frame in `bytes`.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
            frames.push((bytes[3], stream));
            bytes = &bytes[(9 + length).min(bytes.len())..];
        }
        frames
    }
}
