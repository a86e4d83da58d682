//! What the integration tests share: upstreams that behave and misbehave on 127.0.0.1 and count
//! what they receive, settings built by hand, a running proxy, and a bounded load driver.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use stormguard_graph::model::{Call, Idempotent, LimiterSpec, Span};
use stormguard_proxy::config::{
    Admin, Config, Faults, Http1Client, Listen, Protocol, Route, RouteMatch, Upstream,
};
use stormguard_proxy::{serve, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An upstream instance in the test process: its address and what it received.
#[derive(Clone)]
pub struct Instance {
    pub addr: SocketAddr,
    /// Request heads received (counted on arrival, before any answer).
    pub hits: Arc<AtomicUsize>,
    /// The head of every request received.
    pub heads: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Instance {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<HeaderMap> {
        self.heads.lock().unwrap().clone()
    }
}

/// Serves HTTP/1.1 with `handler`, counting and recording every request head.
pub async fn upstream<F, Fut, B>(handler: F) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_upstream(handler, false).await
}

/// Serves HTTP/2 with prior knowledge (h2c) only, with `handler`, counting and recording every
/// request head: a request that reached it came over HTTP/2.
pub async fn h2_upstream<F, Fut, B>(handler: F) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_upstream(handler, true).await
}

async fn serve_upstream<F, Fut, B>(handler: F, http2: bool) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, handler, http2)
}

/// Serves HTTP/1.1 on `listener` with `handler`, as [`upstream`] does: for instances that must
/// share a port on different loopback addresses (what one DNS name with a port resolves to).
pub fn upstream_on<F, Fut, B>(listener: TcpListener, handler: F) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(listener, handler, false)
}

fn serve_on<F, Fut, B>(listener: TcpListener, handler: F, http2: bool) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let instance = Instance {
        addr: listener.local_addr().unwrap(),
        hits: Arc::default(),
        heads: Arc::default(),
    };
    let seen = instance.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, seen) = (handler.clone(), seen.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                seen.hits.fetch_add(1, Ordering::SeqCst);
                seen.heads.lock().unwrap().push(req.headers().clone());
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let io = TokioIo::new(stream);
            if http2 {
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service),
                );
            } else {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service),
                );
            }
        }
    });
    instance
}

pub fn reply(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// An instance that answers 200 "ok".
pub async fn ok_upstream() -> Instance {
    upstream(|_req| async { reply(200, "ok") }).await
}

/// An instance that answers `status` to everything.
pub async fn status_upstream(status: u16) -> Instance {
    upstream(move |_req| async move { reply(status, "from upstream") }).await
}

/// An instance that reads the whole body, then takes `delay` to answer.
pub async fn slow_upstream(delay: Duration) -> Instance {
    upstream(move |req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        tokio::time::sleep(delay).await;
        reply(200, "slow")
    })
    .await
}

/// Three instances that answer `status` to everything, and their addresses.
pub async fn three(status: u16) -> ([Instance; 3], Vec<SocketAddr>) {
    let instances = [
        status_upstream(status).await,
        status_upstream(status).await,
        status_upstream(status).await,
    ];
    let addrs = instances.iter().map(|i| i.addr).collect();
    (instances, addrs)
}

/// How a raw TCP instance misbehaves after reading a request head.
#[derive(Clone, Copy)]
pub enum Misbehave {
    /// Closes the connection without a word.
    Close,
    /// Sends a response head announcing 100 bytes, 10 of them, and closes.
    TruncateBody,
    /// Sends a head that is not HTTP (a status of letters, a length of letters).
    BadHead,
}

/// An instance that reads each request head and then misbehaves.
pub async fn misbehaving_upstream(how: Misbehave) -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = Instance {
        addr: listener.local_addr().unwrap(),
        hits: Arc::default(),
        heads: Arc::default(),
    };
    let hits = instance.hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let head = match how {
                    Misbehave::Close => None,
                    Misbehave::TruncateBody => {
                        Some("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    }
                    Misbehave::BadHead => Some("HTTP/1.1 2OO OK\r\ncontent-length: abc\r\n\r\n"),
                };
                if let Some(head) = head {
                    let _ = stream.write_all(head.as_bytes()).await;
                    tokio::time::sleep(ms(20)).await;
                }
            });
        }
    });
    instance
}

async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

/// An address where nothing listens: bound, then released.
pub async fn refusing_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A call with the library's recommended policy, one retry, a 2 s timeout per attempt and no
/// cap on the whole request beyond the caller's deadline.
pub fn call(upstream: &str) -> Call {
    Call {
        to: upstream.to_string(),
        endpoint: None,
        timeout: Some(Duration::from_secs(2)),
        request_timeout: None,
        connect_timeout: Some(ms(500)),
        rtt: ms(1),
        max_attempts: 2,
        backoff: "full-jitter(base=5ms, cap=25ms)".parse().unwrap(),
        limiter: Some(LimiterSpec::Budget {
            ratio: 0.2,
            min_per_sec: 10,
        }),
        idempotent: Idempotent::ByMethod,
        method: "GET".to_string(),
        retry_on: stormguard::classify::RetryOn::default(),
        count: 1,
        parallel: false,
        required: true,
        hedge: None,
        propagate_deadline: true,
        span: Span::default(),
    }
}

/// A route `name` taking every request to `upstream`.
pub fn route(name: &str, upstream: &str) -> Route {
    Route {
        name: name.to_string(),
        matcher: RouteMatch::default(),
        upstream: upstream.to_string(),
        call: call(upstream),
        adaptive_timeout: None,
        deadline_reserve: ms(5),
        retry_body_limit: 64 * 1024,
        latency_buckets: Vec::new(),
        fault: None,
    }
}

/// The HTTP/1.1 client every test's upstreams use: `STORMGUARD_TEST_HTTP1_CLIENT=hyper` runs
/// the whole suite with hyper's client (`.ci/run` does, so that both clients pass every test);
/// otherwise the settings' own (the direct client by default).
pub fn http1_client_override() -> Option<Http1Client> {
    match std::env::var("STORMGUARD_TEST_HTTP1_CLIENT").ok()?.as_str() {
        "direct" => Some(Http1Client::Direct),
        "hyper" => Some(Http1Client::Hyper),
        other => panic!("STORMGUARD_TEST_HTTP1_CLIENT={other:?}: use direct or hyper"),
    }
}

/// The client for settings built here: the override's, else the default.
fn http1_client() -> Http1Client {
    http1_client_override().unwrap_or_default()
}

/// Settings with the given upstreams (max_in_flight 1024) and routes.
pub fn config(upstreams: &[(&str, &[SocketAddr])], routes: Vec<Route>) -> Config {
    let upstreams: BTreeMap<String, Upstream> = upstreams
        .iter()
        .map(|(name, instances)| {
            let upstream = Upstream {
                instances: instances.iter().map(|a| a.to_string()).collect(),
                discovery: None,
                max_in_flight: 1024,
                protocol: Protocol::Http1,
                http1_client: http1_client(),
                tls: None,
            };
            (name.to_string(), upstream)
        })
        .collect();
    Config {
        listen: Listen {
            address: "127.0.0.1:0".parse().unwrap(),
            header_read_timeout: Duration::from_secs(5),
            max_request_body: 8 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            max_connections: 10_000,
            http2_max_concurrent_streams: 100,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(75),
            first_byte_timeout: Duration::from_secs(10),
            max_unfinished_header_bytes: 32 << 20,
            stream_idle_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(30),
            access_log: true,
            tls: None,
        },
        admin: Admin {
            address: "127.0.0.1:0".parse().unwrap(),
            token: None,
        },
        upstreams,
        routes,
        faults: Faults::default(),
        dns: stormguard_proxy::config::Dns {
            servers: Vec::new(),
            refresh: Duration::from_secs(5),
        },
    }
}

/// One upstream `api` with `instances` and one route `api` to it.
pub fn single(instances: &[SocketAddr]) -> Config {
    config(&[("api", instances)], vec![route("api", "api")])
}

/// A proxy serving on 127.0.0.1.
pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    registry: Registry,
    stop: tokio::sync::oneshot::Sender<()>,
    pub served: tokio::task::JoinHandle<()>,
}

pub async fn start(mut config: Config) -> Running {
    if let Some(client) = http1_client_override() {
        for upstream in config.upstreams.values_mut() {
            upstream.http1_client = client;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.listen.address = addr;
    let grace = config.listen.shutdown_grace;
    let mut registry = Registry::default();
    let proxy = Proxy::new(config, &mut registry).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let served = tokio::spawn(serve(proxy.clone(), listener, shutdown, grace));
    Running {
        addr,
        proxy,
        registry,
        stop,
        served,
    }
}

impl Running {
    /// The metrics as `/metrics` would show them.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// Starts the drain; returns the server's task.
    pub fn shutdown(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(());
        self.served
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn send(
    client: &TestClient,
    req: Request<Full<Bytes>>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let response = client.request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(client: &TestClient, url: &str) -> Reply {
    let req = Request::get(url).body(Full::default()).unwrap();
    send(client, req).await.unwrap()
}

/// Sends `n` requests made by `make(i)` over `concurrency` workers; returns every outcome, or
/// panics after `limit`.
pub async fn drive<F>(
    n: usize,
    concurrency: usize,
    limit: Duration,
    make: F,
) -> Vec<Result<Reply, String>>
where
    F: Fn(usize) -> Request<Full<Bytes>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let client = client();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (make, next, client) = (make.clone(), next.clone(), client.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return outcomes;
                    }
                    let outcome = send(&client, make(i)).await.map_err(|e| e.to_string());
                    outcomes.push(outcome);
                }
            })
        })
        .collect();
    let all = async {
        let mut outcomes = Vec::with_capacity(n);
        for worker in workers {
            outcomes.extend(worker.await.unwrap());
        }
        outcomes
    };
    tokio::time::timeout(limit, all)
        .await
        .expect("the load finished within its time limit")
}

/// Panics, showing the first few, unless every outcome is a 200.
pub fn assert_all_ok(outcomes: &[Result<Reply, String>]) {
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(r) if r.status == 200))
        .take(5)
        .collect();
    assert!(failed.is_empty(), "failures, first few: {failed:?}");
}

/// Reads until a whole `200 ... ok` answer has come (the upstream answers "ok").
pub async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !(answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"\r\n\r\nok")) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(answer).unwrap()
}

/// Reads and drops what comes until the proxy closes the connection, or panics after `limit`;
/// returns how long that took.
pub async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while matches!(stream.read(&mut buf).await, Ok(1..)) {}
    })
    .await
    .expect("the proxy closed the connection in time");
    start.elapsed()
}

/// Writes `bytes` on a fresh connection and reads what comes back until the proxy closes it or
/// `limit` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status of a raw HTTP/1 answer (`HTTP/1.1 400 Bad Request...`).
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}
