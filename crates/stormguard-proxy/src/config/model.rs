//! The settings as the proxy runs them, every default applied: the shape `/config` shows.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stormguard_graph::model::Call;

/// Everything the proxy runs with; one value per generation of the file.
///
/// Built by [`parse`](super::parse) or [`load`](super::load), which apply every default and
/// refuse what the proxy could not run as written:
///
/// ```
/// use std::time::Duration;
/// use stormguard_proxy::config;
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001", "127.0.0.1:9002"]
/// [[routes]]
/// name = "api"
/// match = { path_prefix = "/api/" }
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// assert_eq!(config.listen.address.to_string(), "127.0.0.1:8080");
/// assert_eq!(config.routes[0].call.timeout, Some(Duration::from_secs(2)));
/// // No connect_timeout: the attempt's timeout bounds connecting.
/// assert_eq!(config.routes[0].call.connect_timeout, None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where requests come in.
    pub listen: Listen,
    /// Where operators look and act.
    pub admin: Admin,
    /// Upstream services by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes in file order: the first that matches a request takes it.
    pub routes: Vec<Route>,
    /// Whether fault injection (route `fault` keys and the fault headers) is on.
    pub faults: Faults,
    /// How upstream host names are resolved.
    pub dns: Dns,
}

/// `[dns]`: where and how often the proxy resolves the host names of upstreams (`discovery`,
/// and names in `instances`).
///
/// Every A and AAAA record of a name is an instance, as Envoy's `STRICT_DNS` cluster does: a
/// Kubernetes headless service or a round-robin name lists its pods, and the proxy balances
/// over them and follows them as they change.
#[derive(Clone, Debug, PartialEq)]
pub struct Dns {
    /// The name servers to ask (`ip:port`); empty: the system's (`/etc/resolv.conf`). For a
    /// sidecar whose pod resolves through a different server, and for tests.
    pub servers: Vec<SocketAddr>,
    /// How often a host name in `instances` is resolved again, and `discovery`'s default
    /// (5 s, Envoy's `dns_refresh_rate`).
    pub refresh: Duration,
}

/// `discovery = { dns = "host:port", refresh = "5s" }`: an upstream whose instances are every
/// address a name resolves to, resolved again every `refresh`.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovery {
    /// The name, without port.
    pub host: String,
    /// The instances' port.
    pub port: u16,
    /// How often the name is resolved again.
    pub refresh: Duration,
}

impl Config {
    /// Every PEM file the settings name: the listener's certificate and key, each upstream's
    /// CA, certificate and key. The reloader watches them with the settings file.
    pub fn pem_files(&self) -> Vec<PathBuf> {
        let listen = self.listen.tls.iter().flat_map(CertAndKey::files);
        let upstreams = self.upstreams.values().filter_map(|u| u.tls.as_ref());
        let upstreams = upstreams.flat_map(|tls| {
            let ca = tls.ca_file.iter();
            ca.chain(tls.client_cert.iter().flat_map(CertAndKey::files))
        });
        listen
            .chain(upstreams)
            .map(|pem| pem.path.clone())
            .collect()
    }
}

/// The proxy's listener. Changing it needs a restart (a reload keeps the bound socket and says
/// so), since a socket cannot move without dropping connections.
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// Address to bind (HTTP/1.1 and HTTP/2 with prior knowledge on the same port).
    pub address: SocketAddr,
    /// A client must send its whole request head within this (slowloris defence; default 5 s):
    /// an HTTP/1.1 head, and an HTTP/2 header block, from its first byte to its last. The wait
    /// for that first byte is `idle_timeout`'s, not this.
    pub header_read_timeout: Duration,
    /// Largest request body accepted, in bytes (default 8 MiB); larger gets 413.
    pub max_request_body: u64,
    /// Most request headers accepted (default 100); more gets 431.
    pub max_headers: usize,
    /// Largest request head in bytes (default 64 KiB); larger gets 431.
    pub max_header_bytes: usize,
    /// How long SIGTERM waits for requests in flight before exiting (default 30 s).
    pub shutdown_grace: Duration,
    /// Client connections open at once (default 10,000). At the limit the proxy stops
    /// accepting until one ends, as HAProxy's `maxconn`: a client waits in the kernel's accept
    /// queue and is served as soon as there is room, rather than being reset, and the queue
    /// (the listen backlog) bounds what waits. So memory is bounded by this, not by the file
    /// descriptor limit (which should be above twice this, for the upstream connections).
    pub max_connections: u32,
    /// Streams an HTTP/2 client may have open at once on one connection (default 100, the
    /// least RFC 9113 recommends and HAProxy's default); a client queues the rest.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 client connection that sent nothing for this long is pinged (default 30 s),
    /// so that a client gone without a word (a host down, a NAT that forgot) is found.
    pub http2_keep_alive_interval: Duration,
    /// A ping unanswered for this long closes the connection (default 20 s).
    pub http2_keep_alive_timeout: Duration,
    /// A client connection with no request in flight for this long is closed (default 75 s,
    /// nginx's `keepalive_timeout`; HTTP/2 with GOAWAY, so that the client reconnects cleanly).
    /// It is apart from `header_read_timeout` and longer, because client pools keep idle
    /// connections long (Go's 90 s, urllib3's without end): a proxy that closes sooner races
    /// the client's next request on the connection, and a POST lost in that race cannot safely
    /// be retried.
    pub idle_timeout: Duration,
    /// A new connection must send its first byte within this (default 10 s, HAProxy's usual
    /// `timeout http-request`), or within `idle_timeout` when that is shorter: a bare connect
    /// costs a client nothing and would otherwise hold a place under `max_connections` for
    /// `idle_timeout`. A pool opens a connection ahead of a request to use it within moments;
    /// one it leaves unused longer is closed as an idle one would be. At `max_connections`,
    /// the oldest connection that has not sent a byte is closed to admit a new one, so silent
    /// connections cannot lock clients out.
    pub first_byte_timeout: Duration,
    /// Bytes of request heads (HTTP/1.1) and header blocks (HTTP/2) that have begun to arrive
    /// and are not complete, summed over every connection (default 32 MiB, and at least
    /// `max_header_bytes`). A connection whose head would take the sum past this is closed.
    /// Without it, the memory that slow heads hold is `max_connections` times
    /// `max_header_bytes` (10,000 x 64 KiB = 625 MiB by default, more with buffer slack); with
    /// it, that part is at most this. A head of at most 8 KiB, the read buffer every connection
    /// holds anyway, is never counted.
    pub max_unfinished_header_bytes: usize,
    /// A request whose bodies have moved no byte in either direction for this long is cut off
    /// (default 60 s, nginx's `send_timeout` and `proxy_read_timeout`; Envoy's
    /// `stream_idle_timeout`): HTTP/2 resets the stream, HTTP/1.1 closes the connection, and
    /// its upstream slot and upstream connection are freed. It runs while a body is under way:
    /// the client's, as it streams to the upstream, and the response's, from its head to its
    /// end; a client that does not read holds nothing past it. Waiting for the response head is
    /// the route's `timeout`'s to bound, not this. A body moves when the proxy takes a chunk of
    /// it: with at most 64 KiB of a response buffered for a client, one that reads under about
    /// 1 KiB/s is taken, at the default, for one that does not read.
    pub stream_idle_timeout: Duration,
    /// A request body the proxy reads before forwarding (all of it up to the route's
    /// `retry_body_limit`, the most the retry layer replays) must arrive within this of
    /// the request head (default 30 s), else the answer is 408 `body-timeout`. It is read
    /// before the request takes a place under the upstream's `max_in_flight`, so a slow body
    /// costs the upstream nothing. A longer body streams to the upstream as it arrives, under
    /// `stream_idle_timeout` and the route's `timeout`.
    pub request_body_timeout: Duration,
    /// One line per request on the access log (default on; target
    /// [`crate::ACCESS_LOG_TARGET`]): route, method, path, status, attempts, reason, duration,
    /// instance, bytes. On by default because a proxy whose requests leave no trace cannot be
    /// debugged after the fact; off for a proxy whose callers log every request themselves.
    /// Reloadable: a request logs as the settings were when it arrived.
    pub access_log: bool,
    /// `tls = { cert_file, key_file }`: clients connect over TLS (HTTP/1.1 and HTTP/2 by ALPN)
    /// with this certificate; `None` (the default) serves plain text. The files are read with
    /// the settings and again whenever they change, so a renewed certificate is served to new
    /// connections without a restart.
    pub tls: Option<CertAndKey>,
}

/// The admin listener: `/metrics`, `/config`, `/healthz`, `POST /reload`.
#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    /// Address to bind (default 127.0.0.1:9901).
    pub address: SocketAddr,
    /// Bearer token every admin request must carry; required when `address` is not loopback.
    pub token: Option<String>,
}

/// One upstream service: its instances and how much it may be sent at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// `host:port` of each instance, in file order (empty with `discovery`). A host name is
    /// resolved every `[dns] refresh`, each of its addresses an instance.
    pub instances: Vec<String>,
    /// Instances found by DNS instead of listed; exclusive with `instances`.
    pub discovery: Option<Discovery>,
    /// Requests in flight to this upstream beyond which the proxy answers 503 at once with
    /// `Retry-After` (default 1024): load shedding that keeps memory bounded.
    pub max_in_flight: u32,
    /// How requests reach the instances (default HTTP/1.1). A gRPC request goes over HTTP/2
    /// whatever this says, since gRPC cannot work without it.
    pub protocol: Protocol,
    /// Which HTTP/1.1 client sends to the instances (default the direct one).
    pub http1_client: Http1Client,
    /// TLS to every instance (`tls = true`, or instances written `https://`); `None` (the
    /// default) connects in plain text.
    pub tls: Option<UpstreamTls>,
}

/// How the proxy speaks TLS to an upstream's instances: the certificate each must show and the
/// one the proxy shows, if asked.
///
/// A certificate that does not verify fails the connection, which counts as a connect failure
/// (reason `tls`) and is retried on another instance: the proxy never falls back to plain text
/// or to an unverified peer.
///
/// ```
/// use stormguard_proxy::config;
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["https://api.example.com"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// let api = &config.upstreams["api"];
/// assert_eq!(api.instances, ["api.example.com:443"]);
/// let tls = api.tls.as_ref().unwrap();
/// // No ca_file: the system's roots; no server_name: each instance's host name.
/// assert!(tls.ca_file.is_none() && tls.server_name.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// The name sent in SNI and checked against each instance's certificate; `None`: each
    /// instance's host (an instance given by IP address needs this).
    pub server_name: Option<String>,
    /// The CA certificates an instance's certificate must chain to; `None`: the system's roots.
    pub ca_file: Option<PemFile>,
    /// The certificate and key shown to an instance that asks for one (mutual TLS).
    pub client_cert: Option<CertAndKey>,
}

/// A certificate chain and its private key, as two PEM files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertAndKey {
    /// The certificate, then any intermediates, in PEM.
    pub cert_file: PemFile,
    /// The private key (PKCS#8, PKCS#1 or SEC1), in PEM.
    pub key_file: PemFile,
}

impl CertAndKey {
    fn files(&self) -> [&PemFile; 2] {
        [&self.cert_file, &self.key_file]
    }
}

/// A PEM file the settings name, with its contents as read with them: settings whose files
/// changed are different settings, so a reload applies a renewed certificate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PemFile {
    /// The path: as written, or joined to the settings file's folder when relative.
    pub path: PathBuf,
    contents: Arc<[u8]>,
}

impl PemFile {
    /// `contents`, read from `path`.
    pub(crate) fn new(path: PathBuf, contents: Vec<u8>) -> Self {
        PemFile {
            path,
            contents: contents.into(),
        }
    }

    /// The file's bytes when the settings were read.
    pub fn contents(&self) -> &[u8] {
        &self.contents
    }
}

/// The path and size only: a key's bytes stay out of logs.
impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .finish()
    }
}

/// `http1_client = "direct" | "hyper"`: which HTTP/1.1 client sends an upstream's requests.
///
/// The direct client (the default) writes the request and reads the response in the request's
/// own task, with the same framing rules and bounds as hyper's (see the proxy's `h1` module):
/// about 8,000 instructions a request fewer than hyper's client, which runs each connection in
/// a task of its own and hands it every request through a channel. hyper's stays as the
/// fallback: the proxy's whole test suite runs with each. HTTP/2 and gRPC requests are hyper's
/// either way.
///
/// ```
/// use stormguard_proxy::config::{self, Http1Client};
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001"]
/// http1_client = "hyper"
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// assert_eq!(config.upstreams["api"].http1_client, Http1Client::Hyper);
/// assert_eq!(Http1Client::default().as_str(), "direct");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http1Client {
    /// The request's own task writes it and reads its response.
    #[default]
    Direct,
    /// hyper's HTTP/1.1 client connection, in a task of its own.
    Hyper,
}

impl Http1Client {
    /// The value as the file writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Http1Client::Hyper => "hyper",
            Http1Client::Direct => "direct",
        }
    }
}

/// `protocol = "http1" | "http2"`: what the proxy speaks to an upstream's instances.
///
/// HTTP/1.1 is the default because every HTTP server speaks it and the proxy's HTTP/1.1 pool is
/// its fastest path; `"http2"` is for services that serve HTTP/2 without TLS (h2c, prior
/// knowledge), which then get one multiplexed connection per instance. A gRPC request
/// (`content-type: application/grpc...`) always goes over HTTP/2, so an upstream that serves
/// both gRPC and plain HTTP/1.1 keeps the default.
///
/// ```
/// use stormguard_proxy::config::{self, Protocol};
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001"]
/// protocol = "http2"
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// assert_eq!(config.upstreams["api"].protocol, Protocol::Http2);
/// assert_eq!(Protocol::default().as_str(), "http1");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 on kept-alive connections, one request at a time each.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c): one multiplexed connection per instance.
    Http2,
}

impl Protocol {
    /// The value as the file writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        }
    }
}

/// One route: which requests it takes, where they go and under which policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Name in metrics and logs.
    pub name: String,
    /// Which requests it takes.
    pub matcher: RouteMatch,
    /// The upstream's name (a key of [`Config::upstreams`]).
    pub upstream: String,
    /// The policy as a graph call (`to` is the upstream), read by the same code with the same
    /// defaults as a call in a graph file. `timeout` is always `Some` (a route without one is
    /// refused); `idempotent = "by-method"` is decided per request by method and
    /// `Idempotency-Key` (see [`route_policy`](super::route_policy)).
    pub call: Call,
    /// Per-attempt timeout from observed latency, within bounds, when set.
    pub adaptive_timeout: Option<AdaptiveTimeoutSpec>,
    /// Time kept back from the inbound budget to report a failure cleanly (default 5 ms).
    pub deadline_reserve: Duration,
    /// Largest body copied for replay as it streams to the first attempt (default 64 KiB);
    /// larger bodies are sent once.
    pub retry_body_limit: u64,
    /// Bounds the route's latency histograms have beside the ladder and its timeouts (default
    /// none): a latency objective here is read exactly off a bucket.
    pub latency_buckets: Vec<Duration>,
    /// Faults injected on this route (only when [`Faults::enabled`]; kept, inert, otherwise).
    pub fault: Option<FaultSpec>,
}

/// Which requests a route takes; an empty matcher takes all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// The path starts with this.
    pub path_prefix: Option<String>,
    /// The `Host` (or `:authority`) is this, compared without port and case.
    pub host: Option<String>,
}

/// `adaptive_timeout = { false_timeout_rate, min, max }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveTimeoutSpec {
    /// Share of attempts that would have succeeded and are timed out anyway (default 0.001).
    pub false_timeout_rate: f64,
    /// Lower bound of the timeout (default 10 ms, or `max` if that is lower).
    pub min: Duration,
    /// Upper bound of the timeout, and the timeout until enough latencies are measured
    /// (default, and at most, the route's `timeout`).
    pub max: Duration,
}

/// `fault = { delay, delay_percent, abort_status, abort_percent }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    /// Delay added before the request is forwarded (default 0).
    pub delay: Duration,
    /// Share of requests delayed, in percent (default 100 when `delay` is given, else 0).
    pub delay_percent: f64,
    /// Status of an aborted request, 200 to 599 (default 503).
    pub abort_status: u16,
    /// Share of requests aborted, in percent (default 100 when `abort_status` is given, else
    /// 0).
    pub abort_percent: f64,
}

/// `[faults]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Route faults and the headers `stormguard-fault-delay-ms` / `stormguard-fault-abort` act
    /// only when this is on, so a production proxy cannot be made to fail by a request header.
    pub enabled: bool,
}
