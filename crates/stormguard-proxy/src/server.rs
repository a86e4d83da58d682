//! [`serve`]: HTTP/1.1 and HTTP/2 on one port, bounds on what a client may send, and a drain.
//!
//! ## Why these bounds
//! A proxy in front of every service is the first thing a slow or broken client reaches. A client
//! must send its request head within `header_read_timeout` (slowloris: one byte a second would
//! otherwise hold a connection forever), in at most `max_header_bytes` and `max_headers` headers
//! (431 past them); a malformed head gets hyper's 400 and the connection ends, never the proxy.
//! The protocol is told by the first bytes: the HTTP/2 preface means HTTP/2 with prior
//! knowledge, anything else HTTP/1.1. That first read is bounded by the same timeout, so a client
//! that connects and sends nothing, or dribbles a preface, is cut off too.
//!
//! ## Drain
//! When `shutdown` resolves the listener is closed at once, every connection is told to finish
//! (HTTP/1.1 closes after its response in flight, HTTP/2 sends GOAWAY), and `serve` returns when
//! all have ended or `grace` has passed, whichever is first; connections still open then are
//! dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::config::Listen;
use crate::proxy::Proxy;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The number of headers hyper's HTTP/1 server takes when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Serves `proxy` on `listener` until `shutdown` resolves, then drains for at most `grace`.
///
/// Each connection is served with the listener settings of the generation running when it was
/// accepted (`header_read_timeout`, `max_headers`, `max_header_bytes`); each request with the
/// routes running when it arrived. Returns once the drain is over.
///
/// ```no_run
/// # async fn run(proxy: stormguard_proxy::Proxy) -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// // Resolves when the drain should start (SIGTERM in the binary).
/// let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let shutdown = async { let _ = stopped.await; };
/// stormguard_proxy::serve(proxy, listener, shutdown, Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub async fn serve(
    proxy: Proxy,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut builders = Arc::new(Builders::new(&proxy));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                };
                if builders.generation != proxy.generation() {
                    builders = Arc::new(Builders::new(&proxy));
                }
                let task = connection(proxy.clone(), stream, builders.clone(), graceful.watcher());
                connections.spawn(task);
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained: every connection ended"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            open = connections.len(),
            ?grace,
            "grace period over: dropping the connections still open"
        ),
    }
    connections.abort_all();
}

/// The HTTP/1.1 and HTTP/2 connection builders of one generation's listener settings.
///
/// hyper's own builders rather than hyper-util's `auto` one: the protocol is already known from
/// the sniffed preface, and only hyper's HTTP/1 builder bounds the head's size strictly
/// (`max_header_size`; a read buffer limit lets a head through that arrives in large reads).
struct Builders {
    generation: u64,
    header_read_timeout: Duration,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(proxy: &Proxy) -> Self {
        // The generation is read first: a reload in between only makes the next accept rebuild.
        let generation = proxy.generation();
        let config = proxy.config();
        let listen: &Listen = &config.listen;
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(listen.header_read_timeout)
            .max_header_size(listen.max_header_bytes);
        // hyper parses up to its default number of headers into arrays on the stack; any other
        // limit, even the same number, fills arrays of that size for every request head.
        if listen.max_headers != HYPER_MAX_HEADERS {
            http1.max_headers(listen.max_headers);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(listen.max_header_bytes).unwrap_or(u32::MAX));
        Builders {
            generation,
            header_read_timeout: listen.header_read_timeout,
            http1,
            http2,
        }
    }
}

/// Serves one connection to its end (or the drain's).
async fn connection(proxy: Proxy, stream: TcpStream, builders: Arc<Builders>, watcher: Watcher) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let http2 = match tokio::time::timeout(builders.header_read_timeout, sniff(&stream)).await {
        Ok(Ok(http2)) => http2,
        // Closed, failed, or too slow to say even which protocol it speaks.
        Ok(Err(_)) | Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(crate::forward::handle(proxy, local, req).await) }
    });
    let io = TokioIo::new(stream);
    let ended = if http2 {
        let served = builders.http2.serve_connection(io, service);
        watcher.watch(served).await
    } else {
        let served = builders.http1.serve_connection(io, service);
        watcher.watch(served).await
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Whether the client opens with the HTTP/2 preface; waits only as long as its first bytes
/// could still be one.
async fn sniff(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface: peek returns at once while those bytes wait, so pause briefly.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
