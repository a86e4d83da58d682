//! [`serve`]: HTTP/1.1 and HTTP/2 on one port, bounds on what a client may send and hold, and a
//! drain.
//!
//! ## Why these bounds
//! A proxy in front of every service is the first thing a slow or broken client reaches. A client
//! must send each request head within `header_read_timeout` of its first byte (slowloris: one
//! byte a second would otherwise hold a connection forever), in at most `max_header_bytes` and
//! `max_headers` headers (431 past them); a malformed head gets hyper's 400 and the connection
//! ends, never the proxy. The protocol is told by the first bytes: the HTTP/2 preface means
//! HTTP/2 with prior knowledge, anything else HTTP/1.1. The wait for the first byte is
//! `first_byte_timeout` (at most `idle_timeout`), the rest of the preface a head's
//! (`header_read_timeout`), so a client that dribbles a preface is cut off too.
//!
//! What a client may hold is bounded as well, so that memory is bounded by the settings rather
//! than by the file descriptor limit: at most `max_connections` connections ([`limit`]: at the
//! limit the listener closes the oldest connection that has sent nothing, or else waits; it
//! does not refuse); unfinished heads, all connections together, at most
//! `max_unfinished_header_bytes` ([`head_budget`]); on HTTP/2, at most
//! `http2_max_concurrent_streams` streams per connection, each header block within
//! `header_read_timeout` ([`header_clock`]), a GOAWAY for a client that resets most of the
//! requests it starts ([`resets`]), and a ping after `http2_keep_alive_interval` of silence that
//! must be answered within `http2_keep_alive_timeout`. A connection of either protocol with no
//! request in flight for `idle_timeout` is closed ([`streams`]; HTTP/2 with a GOAWAY, HTTP/1.1
//! by [`h1_clock`], which also times its heads in place of hyper's `header_read_timeout`:
//! hyper's also cuts off idle keep-alive connections after it).
//!
//! A request in flight is bounded too: one whose bodies moved no byte for
//! `stream_idle_timeout` (a client that does not read, a body that stalls) is cut off and frees
//! what it held upstream ([`stream_idle`]), and hyper keeps at most [`BODY_BUFFER`] of a
//! response for a client that reads slower than the upstream sends.
//!
//! ## TLS
//! With `listen.tls`, a connection's first byte is followed by a TLS handshake, within
//! `header_read_timeout`, before anything above; then the same protocol sniffing, bounds and
//! clocks apply to the decrypted bytes (ALPN offers `h2` and `http/1.1`; the preface still
//! tells them apart). A failed handshake closes the connection
//! (`stormguard_proxy_connections_closed_total{reason="tls-handshake"}`).
//!
//! ## Drain
//! When `shutdown` resolves the listener is closed at once, every connection is told to finish
//! (HTTP/1.1 closes after its response in flight, HTTP/2 sends GOAWAY), and `serve` returns when
//! all have ended or `grace` has passed, whichever is first; connections still open then are
//! dropped.

/// `AsyncWrite` for a wrapper that only watches a client's reads: writes go straight to its
/// `io`, so that the clocks cost the responses nothing.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

mod h1_clock;
mod head_budget;
mod header_clock;
mod limit;
mod resets;
mod rewind;
mod stream_idle;
mod streams;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::h1_clock::H1Clock;
use self::head_budget::{HeadCharge, HeaderBudget};
use self::header_clock::HeaderClock;
use self::limit::{Admitted, ConnectionLimit};
use self::resets::StreamResets;
use self::rewind::Rewind;
use self::stream_idle::{stalled, H2Streams, StreamExecutor};
pub(crate) use self::stream_idle::{BodyWatch, UnderWay};
use self::streams::{Counted, OpenStreams};
use crate::config::Listen;
use crate::proxy::Proxy;
use crate::tls::accept::Acceptor;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The number of headers hyper's HTTP/1 server takes when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// How long an HTTP/2 connection sent GOAWAY for its resets may take to finish the streams it
/// has open: a client that cancels most of what it asks for has little in flight worth waiting
/// for, and one that ignores the GOAWAY should not keep its place.
const RESETS_GRACE: Duration = Duration::from_secs(1);
/// How long an HTTP/2 connection closed for `idle_timeout` may take to end once told (GOAWAY):
/// no stream is open, so a client that has not closed by then is not listening.
const IDLE_GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// The most of one response the proxy keeps in hyper's buffers for a client that reads slower
/// than the upstream sends, and reads ahead from an HTTP/1.1 upstream: hyper's default is some
/// 400 KB each way, and a body chunk read from the upstream pins the whole read buffer it was
/// cut from. With that default, 300 clients that never read held 400 MiB until they left.
/// 64 KiB still fills a socket's send buffer in one write.
pub(crate) const BODY_BUFFER: usize = 64 * 1024;

/// Serves `proxy` on `listener` until `shutdown` resolves, then drains for at most `grace`.
///
/// Each connection is served with the listener settings of the generation running when it was
/// accepted (`header_read_timeout`, `idle_timeout`, `max_headers`, `max_header_bytes`, ...);
/// each request with the routes running when it arrived. Returns once the drain is over.
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
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut builders = Arc::new(Builders::new(&proxy));
    let limit = ConnectionLimit::new(proxy.metrics().clone());
    let heads = HeaderBudget::new(proxy.metrics().connections_closed.header_budget.clone());
    // A client taken from the queue at the limit, waiting for a place.
    let mut held = None;
    loop {
        let max = proxy.config().listen.max_connections as usize;
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &limit, max, &mut held) => {
                let (stream, admitted) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                };
                if builders.generation != proxy.generation() {
                    builders = Arc::new(Builders::new(&proxy));
                }
                let serving = Serving::new(proxy.clone(), builders.clone(), draining.clone(), heads.clone());
                connections.spawn(connection(serving, stream, admitted));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    drain.send_replace(true);
    let ended = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = ended => tracing::info!("drained: every connection ended"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            open = connections.len(),
            ?grace,
            "grace period over: dropping the connections still open"
        ),
    }
    connections.abort_all();
}

/// The next client connection, once there is room for it under `max`.
///
/// Under the limit a place is taken first, then the connection. At the limit the next client
/// is taken from the queue and kept in `held` until a place frees: the limit closes an old
/// silent connection for it, or it waits for one to end ([`limit`]). Cancel safe: a client
/// held stays in `held` for the next call.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<ConnectionLimit>,
    max: usize,
    held: &mut Option<TcpStream>,
) -> io::Result<(TcpStream, Admitted)> {
    if held.is_none() {
        if let Some(mut admitted) = limit.try_admit(max) {
            let (stream, _peer) = listener.accept().await?;
            admitted.accepted(max);
            return Ok((stream, admitted));
        }
        let (stream, _peer) = listener.accept().await?;
        *held = Some(stream);
    }
    let mut admitted = limit.admit(max).await;
    let stream = held.take().expect("a client is held");
    admitted.accepted(max);
    Ok((stream, admitted))
}

/// Whether a connection ended because a request head (or HTTP/2 header block) did not arrive
/// within `header_read_timeout`: the clocks end the read with a `TimedOut` error.
fn is_header_timeout(error: &hyper::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = e.source();
    }
    error.is_timeout()
}

/// The HTTP/1.1 and HTTP/2 connection builders of one generation's listener settings.
///
/// hyper's own builders rather than hyper-util's `auto` one: the protocol is already known from
/// the sniffed preface, and only hyper's HTTP/1 builder bounds the head's size strictly
/// (`max_header_size`; a read buffer limit lets a head through that arrives in large reads).
struct Builders {
    generation: u64,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// `first_byte_timeout`, or `idle_timeout` when shorter.
    first_byte_wait: Duration,
    http2_max_concurrent_streams: u32,
    max_unfinished_header_bytes: usize,
    stream_idle_timeout: Duration,
    /// `listen.tls`: `None` serves plain text; an error (settings built by hand, which
    /// [`crate::config::parse`] refuses) closes every connection rather than serve it in
    /// plain text.
    tls: Option<Result<Acceptor, String>>,
    http1: http1::Builder,
    http2: http2::Builder<StreamExecutor>,
}

impl Builders {
    fn new(proxy: &Proxy) -> Self {
        // The generation is read first: a reload in between only makes the next accept rebuild.
        let generation = proxy.generation();
        let config = proxy.config();
        let listen: &Listen = &config.listen;
        let mut http1 = http1::Builder::new();
        // The head's and the idle wait's clocks are H1Clock's: hyper's header_read_timeout
        // would also close idle keep-alive connections after it.
        http1
            .header_read_timeout(None)
            .max_header_size(listen.max_header_bytes)
            // The same buffer reads the head: never below what a head may take.
            .max_buf_size(BODY_BUFFER.max(listen.max_header_bytes));
        // hyper parses up to its default number of headers into arrays on the stack; any other
        // limit, even the same number, fills arrays of that size for every request head.
        if listen.max_headers != HYPER_MAX_HEADERS {
            http1.max_headers(listen.max_headers);
        }
        let mut http2 = http2::Builder::new(StreamExecutor);
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(listen.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(listen.http2_max_concurrent_streams)
            .max_send_buf_size(BODY_BUFFER)
            .keep_alive_interval(listen.http2_keep_alive_interval)
            .keep_alive_timeout(listen.http2_keep_alive_timeout);
        Builders {
            generation,
            header_read_timeout: listen.header_read_timeout,
            idle_timeout: listen.idle_timeout,
            first_byte_wait: listen.first_byte_timeout.min(listen.idle_timeout),
            http2_max_concurrent_streams: listen.http2_max_concurrent_streams,
            max_unfinished_header_bytes: listen.max_unfinished_header_bytes,
            stream_idle_timeout: listen.stream_idle_timeout,
            // The handshake is the first thing a client sends, and as slow-client prone as
            // a head: it gets a head's time.
            tls: listen.tls.as_ref().map(|files| {
                crate::tls::server_config(files)
                    .map(|config| Acceptor::new(config, listen.header_read_timeout))
            }),
            http1,
            http2,
        }
    }
}

/// Serves one connection to its end (or the drain's); `admitted` is its place under
/// `max_connections`, given back when it ends.
///
/// A connection that says nothing holds a place for nothing: it must send its first byte within
/// `first_byte_timeout`, and is closed at once when the limit evicts it to admit another
/// ([`limit`]). The byte is peeked, so that it is still there for [`Serving::serve`]; a
/// connection closed without a word counts as one that spoke, and ends there.
async fn connection(mut serving: Serving, stream: TcpStream, admitted: Admitted) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    serving.local = local;
    let wait = serving.builders.first_byte_wait;
    // A peek, not readiness, which may be reported before any byte has come.
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(wait, stream.peek(&mut byte)) => match peeked {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                serving.proxy.metrics().connections_closed.first_byte_timeout.inc();
                tracing::debug!(?wait, "closing a connection that sent nothing (first_byte_timeout)");
                return;
            }
        },
        () = admitted.evicted() => return,
    }
    if !admitted.spoke() {
        return;
    }
    match serving.builders.tls.clone() {
        None => serving.serve(stream).await,
        Some(Ok(acceptor)) => match acceptor.accept(stream).await {
            Ok(stream) => serving.serve(stream).await,
            Err(error) => {
                let closed = &serving.proxy.metrics().connections_closed;
                closed.tls_handshake.inc();
                tracing::debug!(%error, "closing a connection whose TLS handshake failed");
            }
        },
        Some(Err(problem)) => {
            tracing::error!(%problem, "listen.tls cannot be served: closing the connection");
        }
    }
    drop(admitted);
}

/// Serves one connection over an in-memory or other byte stream, with the running listener
/// settings, until the client or the server ends it. For fuzzing and tests of the request path
/// without sockets: the accept limit and the drain are [`serve`]'s, not this function's.
#[doc(hidden)]
pub async fn serve_connection<I>(proxy: Proxy, io: I, local: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builders = Arc::new(Builders::new(&proxy));
    let (_never, draining) = watch::channel(false);
    let heads = HeaderBudget::new(proxy.metrics().connections_closed.header_budget.clone());
    let mut serving = Serving::new(proxy, builders, draining, heads);
    serving.local = local;
    serving.serve(io).await;
}

/// What serving one connection takes besides the connection.
struct Serving {
    proxy: Proxy,
    /// The address the client connected to, once known.
    local: SocketAddr,
    builders: Arc<Builders>,
    /// Turns true when the drain starts.
    draining: watch::Receiver<bool>,
    /// The bytes unfinished heads hold, across every connection.
    heads: Arc<HeaderBudget>,
}

impl Serving {
    fn new(
        proxy: Proxy,
        builders: Arc<Builders>,
        draining: watch::Receiver<bool>,
        heads: Arc<HeaderBudget>,
    ) -> Self {
        Serving {
            proxy,
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            builders,
            draining,
            heads,
        }
    }

    /// Serves one connection over any byte stream: what [`connection`] does once the socket
    /// is set up and has spoken.
    async fn serve<I>(self, mut io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let builders = self.builders.clone();
        let mut prefix = [0u8; H2_PREFACE.len()];
        // A pool may open a connection ahead of its first request, but uses it within moments.
        let first = match tokio::time::timeout(builders.first_byte_wait, io.read(&mut prefix)).await
        {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) | Err(_) => return,
        };
        let first_byte = Instant::now();
        let sniffed = tokio::time::timeout_at(
            crate::timer::later(first_byte, builders.header_read_timeout),
            sniff(&mut io, &mut prefix, first),
        );
        let (http2, read) = match sniffed.await {
            Ok(Ok(sniffed)) => sniffed,
            // Closed or failed before saying which protocol it speaks.
            Ok(Err(_)) => return,
            // Too slow to say even that: a head that took too long.
            Err(_) => {
                self.proxy.metrics().connections_closed.header_timeout.inc();
                return;
            }
        };
        let io = Rewind::new(io, &prefix[..read]);
        let closed = self.proxy.metrics().connections_closed.clone();
        let ended = if http2 {
            self.http2(io).await
        } else {
            self.http1(io, first_byte).await
        };
        if let Err(error) = ended {
            // Counted by why, not logged above debug: a client can make as many of these as
            // it likes, and a log line each would be its way to flood the log.

            if is_header_timeout(&error) {
                closed.header_timeout.inc();
            } else if error.is_parse() || error.is_parse_too_large() {
                closed.bad_request.inc();
            } else if is_http2_violation(&error) {
                closed.http2_protocol.inc();
            }
            tracing::debug!(%error, "connection ended with an error");
        }
    }

    /// A charge of this connection's unfinished heads against the budget.
    fn head_charge(&self) -> HeadCharge {
        HeadCharge::new(
            self.heads.clone(),
            self.builders.max_unfinished_header_bytes,
        )
    }

    async fn http1<I>(self, stream: Rewind<I>, first_byte: Instant) -> hyper::Result<()>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (proxy, local) = (self.proxy.clone(), self.local);
        let requests = OpenStreams::new();
        let counting = requests.clone();
        let charge = Arc::new(self.head_charge());
        let arrived = charge.clone();
        // One request at a time: one watch for the connection's bodies.
        let bodies = BodyWatch::new();
        let watching = bodies.clone();
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            // Counted from the head's arrival, which stops its clock, to the response's end.
            let open = counting.open();
            counting.set_bodiless(hyper::body::Body::is_end_stream(req.body()));
            arrived.release();
            let watch = watching.clone();
            async move {
                let response = crate::forward::handle(proxy, local, req, watch.clone()).await;
                Ok::<_, Infallible>(response.map(|body| Counted::new(body, open, &watch)))
            }
        });
        let builders = self.builders.clone();
        let io = H1Clock::new(
            stream,
            requests.clone(),
            builders.header_read_timeout,
            first_byte,
            charge,
        );
        let served = builders.http1.serve_connection(TokioIo::new(io), service);
        let mut served = pin!(served);
        // The watchdogs (drain, idle_timeout, stream_idle_timeout) run in a task of their own
        // and send why they fired. In one `select!` with the connection, their futures were
        // polled at every wake-up of the connection's task, twice a request: two timers and a
        // watch, about a thousand instructions a request (a profile of issue 16). Apart, they
        // wake only when a timer fires, and the connection polls one receiver.
        let (tell, told) = tokio::sync::oneshot::channel();
        let watchdog = tokio::spawn({
            let mut draining = self.draining.clone();
            let (requests, bodies) = (requests.clone(), bodies.clone());
            let (idle, stall) = (builders.idle_timeout, builders.stream_idle_timeout);
            async move {
                let why = tokio::select! {
                    _ = draining.wait_for(|draining| *draining) => Closing::Draining,
                    () = requests.idle_for(idle) => Closing::Idle,
                    () = stalled(&bodies, stall) => Closing::Stalled,
                };
                let _ = tell.send(why);
            }
        });
        let _watchdog = AbortOnDrop(watchdog.abort_handle());
        let why = tokio::select! {
            biased;
            ended = served.as_mut() => return ended,
            Ok(why) = told => why,
        };
        match why {
            Closing::Stalled => return cut_off(&self.proxy),
            Closing::Idle => {
                tracing::debug!(
                    "closing an HTTP/1.1 connection with no request in flight (idle_timeout)"
                );
            }
            Closing::Draining => {}
        }
        // Closes at once when idle, or after the response in flight (unless it stalls).
        served.as_mut().graceful_shutdown();
        tokio::select! {
            ended = served => ended,
            () = stalled(&bodies, builders.stream_idle_timeout) => cut_off(&self.proxy),
        }
    }

    async fn http2<I>(mut self, stream: Rewind<I>) -> hyper::Result<()>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (proxy, local) = (self.proxy.clone(), self.local);
        let streams = OpenStreams::new();
        let counting = streams.clone();
        let resets = StreamResets::new(self.builders.http2_max_concurrent_streams);
        let starting = resets.clone();
        let watched = H2Streams::new();
        let watching = watched.clone();
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            let refused = starting.is_exceeded();
            // Counted from the request's arrival, so that a slow upstream is not an idle client.
            let open = (!refused).then(|| counting.open());
            // Dropped unanswered when the client resets the stream.
            let started = (!refused).then(|| starting.start());
            let watch = watching.arrived();
            async move {
                let (Some(open), Some(started)) = (open, started) else {
                    return Err(h2::Error::from(h2::Reason::REFUSED_STREAM));
                };
                let response = crate::forward::handle(proxy, local, req, watch.clone()).await;
                started.answered();
                Ok(response.map(|body| Counted::new(body, open, &watch)))
            }
        });
        let builders = self.builders.clone();
        let io = HeaderClock::new(stream, builders.header_read_timeout, self.head_charge());
        let served = builders.http2.serve_connection(TokioIo::new(io), service);
        let stream_idle = builders.stream_idle_timeout;
        let cut = self.proxy.metrics().connections_closed.stream_idle.clone();
        // Stalled streams are reset for as long as the connection lives, its drain included.
        let serving = async {
            let mut served = pin!(served);
            let grace = tokio::select! {
                ended = served.as_mut() => return ended,
                _ = self.draining.wait_for(|draining| *draining) => None,
                () = streams.idle_for(builders.idle_timeout) => {
                    tracing::debug!("closing an HTTP/2 connection with no stream open (idle_timeout)");
                    // No stream is open: the GOAWAY's PING is all hyper waits for, and a client
                    // that never answers it held the connection (and its place under
                    // max_connections) until the keep-alive gave up, an hour with a long
                    // keep-alive interval (a review).
                    Some(IDLE_GOAWAY_GRACE)
                }
                () = resets.exceeded() => {
                    self.proxy.metrics().connections_closed.stream_resets.inc();
                    tracing::warn!(
                        "sending GOAWAY to an HTTP/2 client that reset most of the requests it started"
                    );
                    Some(RESETS_GRACE)
                }
                never = watched.cut_stalled(stream_idle, &cut) => match never {},
            };
            // GOAWAY: streams already open finish, the client opens new ones on a new connection.
            served.as_mut().graceful_shutdown();
            let finished = async {
                match grace {
                    None => served.await,
                    Some(grace) => tokio::time::timeout(grace, served).await.unwrap_or(Ok(())),
                }
            };
            tokio::select! {
                ended = finished => ended,
                never = watched.cut_stalled(stream_idle, &cut) => match never {},
            }
        };
        watched.clone().serve(serving).await
    }
}

/// Why an HTTP/1.1 connection's watchdog asks it to close.
enum Closing {
    /// The proxy is draining: close once the response in flight is sent.
    Draining,
    /// No request in flight for `idle_timeout`.
    Idle,
    /// A body under way did not move for `stream_idle_timeout`.
    Stalled,
}

/// Whether a connection ended because the HTTP/2 layer closed it for the client's breach of
/// the protocol or of its bounds: a GOAWAY it sent (not the client's) with an error.
fn is_http2_violation(error: &hyper::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away()
                && !h2.is_remote()
                && h2
                    .reason()
                    .is_some_and(|reason| reason != h2::Reason::NO_ERROR);
        }
        next = e.source();
    }
    false
}

/// Aborts a task when dropped: a connection's watchdog ends with its connection.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends an HTTP/1.1 connection whose bodies stalled, as its task returns: dropping the
/// connection drops the response body, and with it what the request held upstream.
fn cut_off(proxy: &Proxy) -> hyper::Result<()> {
    tracing::debug!("closing an HTTP/1.1 connection whose bodies stalled (stream_idle_timeout)");
    proxy.metrics().connections_closed.stream_idle.inc();
    Ok(())
}

/// Reads on while the bytes read so far (`read` of them, in `buf`) could still begin the
/// HTTP/2 preface; returns whether they are the preface, and how many bytes were read.
async fn sniff<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut [u8; H2_PREFACE.len()],
    mut read: usize,
) -> io::Result<(bool, usize)> {
    loop {
        if buf[..read] != H2_PREFACE[..read] {
            return Ok((false, read));
        }
        if read == H2_PREFACE.len() {
            return Ok((true, read));
        }
        let n = io.read(&mut buf[read..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        read += n;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn proxy() -> Proxy {
        let text = r#"
            [listen]
            address = "127.0.0.1:0"

            [upstreams.api]
            instances = ["127.0.0.1:9"]

            [[routes]]
            name = "api"
            match = { path_prefix = "/api" }
            upstream = "api"
            timeout = "1s"
        "#;
        let config = crate::config::parse("test.toml", text).unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        Proxy::new(config, &mut registry).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_served_over_any_byte_stream() {
        let (mut client, server) = tokio::io::duplex(4096);
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let served = tokio::spawn(serve_connection(proxy(), server, local));
        client
            .write_all(b"GET /nowhere HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("stormguard-reason: no-route"), "{answer}");
        served.await.unwrap();
    }
}
