//! [`InstancePool`]: the kept-alive HTTP/1.1 connections to one upstream instance.
//!
//! ## Why not hyper-util's pooled client
//! hyper-util's legacy `Client` serves any host: each request builds its pool key, looks it up
//! (SipHash, a lock, a map) to check a connection out and again to put it back, prepares a
//! connect future it rarely uses, and boxes a 3.6 KB future around all of it. Profiled under
//! load, that was some 8,000 instructions a request, a seventh of the proxy's. Here every
//! instance of a route's upstream already has its own service, so it holds its own pool: a
//! checkout is a lock and a pop, a return a lock and a push.
//!
//! Each pool serves both HTTP/1.1 clients: the direct one ([`crate::h1`], the default:
//! [`InstancePool::send_direct`]) and hyper's ([`InstancePool::send`], `http1_client =
//! "hyper"`), each with its own idle connections, under the same bounds.
//!
//! ## What it keeps of hyper-util's
//! The connector (connect timeout, `TCP_NODELAY`, keep-alive probes; TLS in [`crate::tls`]), hyper's HTTP/1.1 client
//! connection, the origin-form target and a default `Host`, and its retry of a request that a
//! reused connection closed before sending (an upstream may close an idle connection at any
//! moment; that request was never sent, so it goes out on another connection). An idle
//! connection is dropped after the idle timeout, or once its upstream closes it: hyper's at
//! once (its connection task sees the close), the direct client's within [`SWEEP_EVERY`]
//! (no task reads an idle connection of its own, so a sweeper looks at them while any are
//! idle; without it, a connection the upstream closed stayed open, in `CLOSE_WAIT`, until the
//! next request to the instance, however long that was).
//!
//! ## Cancelled requests
//! A request is dropped before its answer when its client goes away (an HTTP/2 stream reset),
//! its attempt times out or loses a hedge. Left alone, hyper would close the connection of a
//! request sent and not answered, and drop a connect under way: a burst of cancellations
//! became a burst of new upstream connections, one per request (each leaving a socket in
//! `TIME_WAIT` on the proxy; enough of them exhaust its ephemeral ports). So a connect runs in a
//! task of its own, and a connection made for a request that is gone is kept for the next; and
//! a request sent and then dropped is an orphan whose connection is finished in the background:
//! its response head awaited for at most [`ORPHAN_WAIT`], its body discarded, and the
//! connection kept. At most [`MAX_ORPHANS`] per instance at once; beyond either bound the
//! connection is closed as before, which is also how HTTP/1.1 tells an upstream to stop work
//! nobody waits for (a cancelled request is usually answered within the upstream's usual
//! latency, milliseconds; one that takes longer is likely the slow request a timeout cut).
//!
//! ## Errors
//! A failure to connect is wrapped in the library's [`NotSent`], so the classifier knows the
//! request never left (a refused or timed-out connection may always be retried elsewhere), and
//! so is a TLS session the upstream refused before answering ([`sent_or_refused`]); any later
//! failure is hyper's own error, which the classifier takes as sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use stormguard::layer::{BoxError, NotSent};
use tokio::sync::oneshot;

use crate::h1::{Conn, Exchange};
use crate::stack::UpstreamBody;
use crate::tls::connect::{Connector, TlsError};

/// How long an orphaned request's connection waits for its response head before it is closed.
pub(crate) const ORPHAN_WAIT: Duration = Duration::from_millis(500);
/// Orphaned requests finished in the background at once, per instance.
pub(crate) const MAX_ORPHANS: usize = 128;
/// How often the direct client's idle connections are looked at, while there are any: those
/// past the idle timeout or closed by their upstream are dropped.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The kept-alive connections to one instance, shared by every route that sends to it with the
/// same connect timeout, across generations of settings.
pub(crate) struct InstancePool {
    connector: Connector,
    /// `http://authority/`, what the connector connects to.
    target: Uri,
    /// The `Host` of a request that came without one: the instance's address.
    host: HeaderValue,
    idle_timeout: Duration,
    /// Ready connections, the most recently used last: it is taken first, while the upstream
    /// still holds it open, and the oldest are dropped first.
    idle: Mutex<Vec<Idle>>,
    /// Ready connections of the direct client (`http1_client = "direct"`, [`crate::h1`]),
    /// kept as [`idle`](Self::idle) keeps hyper's.
    direct_idle: Mutex<Vec<(Box<Conn>, tokio::time::Instant)>>,
    /// Whether a task sweeps [`direct_idle`](Self::direct_idle) (see [`sweep_direct`]); set
    /// and cleared under its lock.
    sweeping: std::sync::atomic::AtomicBool,
    /// Orphaned requests being finished in the background.
    orphans: AtomicUsize,
}

type Sender = http1::SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since: tokio::time::Instant,
}

impl InstancePool {
    /// A pool for `authority`, connecting with `connector`, keeping idle connections for
    /// `idle_timeout`.
    pub(crate) fn new(authority: Authority, connector: Connector, idle_timeout: Duration) -> Self {
        let host = match authority.port_u16() {
            Some(80) => HeaderValue::from_str(authority.host()),
            _ => HeaderValue::from_str(authority.as_str()),
        }
        .expect("an authority is a valid header value");
        let target = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query("/")
            .build()
            .expect("scheme, authority and path make a URI");
        InstancePool {
            connector,
            target,
            host,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            direct_idle: Mutex::new(Vec::new()),
            sweeping: std::sync::atomic::AtomicBool::new(false),
            orphans: AtomicUsize::new(0),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A list of connections stays valid after any panic.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ready kept-alive connection, if there is one.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(Idle { sender, since }) = idle.pop() {
            if sender.is_ready() && since.elapsed() < self.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request once it is ready again (at once, unless the response
    /// body is still streaming).
    fn give_back(self: &Arc<Self>, mut sender: Sender) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            let pool = self.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.keep(sender);
                }
            });
        }
    }

    fn keep(&self, sender: Sender) {
        let now = tokio::time::Instant::now();
        let mut idle = self.idle();
        // The oldest go first: closed by the upstream, or idle too long.
        let stale = idle
            .iter()
            .take_while(|i| i.sender.is_closed() || now - i.since >= self.idle_timeout)
            .count();
        idle.drain(..stale);
        idle.push(Idle { sender, since: now });
    }

    /// A new connection, made in a task of its own: if the request that asked for it is gone
    /// when it is ready, it is kept for the next.
    fn connect(self: &Arc<Self>) -> oneshot::Receiver<Result<Sender, BoxError>> {
        let (tell, connected) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let made = pool.handshake().await;
            if let Err(Ok(sender)) = tell.send(made) {
                pool.keep(sender);
            }
        });
        connected
    }

    /// Connects and spawns the connection's task.
    async fn handshake(&self) -> Result<Sender, BoxError> {
        let io = self
            .connector
            .connect(&self.target)
            .await
            .map_err(NotSent::new)?;
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(crate::server::BODY_BUFFER)
            .handshake(io)
            .await
            .map_err(NotSent::new)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` on a kept-alive connection, or a new one.
    pub(crate) fn send(self: Arc<Self>, mut req: Request<UpstreamBody>) -> Sending {
        // Origin form: the connection already says where to.
        let path = match req.uri().path_and_query() {
            Some(path) if path.as_str() != "/" => Uri::from(path.clone()),
            _ => Uri::from(PathAndQuery::from_static("/")),
        };
        *req.uri_mut() = path;
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        let state = self.start(req);
        Sending { pool: self, state }
    }

    /// Sends `req` on a kept-alive connection, or asks for a new one.
    fn start(self: &Arc<Self>, req: Request<UpstreamBody>) -> State {
        match self.checkout() {
            Some(sender) => State::sent(sender, req, true),
            None => State::Connecting(Box::new(Connecting {
                connected: self.connect(),
                req: Some(req),
            })),
        }
    }

    /// Sends `req` with the direct client ([`crate::h1`]) on a kept-alive connection, or a
    /// new one.
    pub(crate) fn send_direct(self: Arc<Self>, mut req: Request<UpstreamBody>) -> Exchange {
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        let conn = self.checkout_direct();
        Exchange::new(self, conn, req)
    }

    fn direct_idle(&self) -> std::sync::MutexGuard<'_, Vec<(Box<Conn>, tokio::time::Instant)>> {
        // A list of connections stays valid after any panic.
        self.direct_idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept-alive connection of the direct client that is still open, if there is one.
    fn checkout_direct(&self) -> Option<Box<Conn>> {
        let mut idle = self.direct_idle();
        while let Some((mut conn, since)) = idle.pop() {
            if since.elapsed() < self.idle_timeout && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a direct client's connection for the next request, and starts the sweeper if
    /// none runs.
    pub(crate) fn keep_direct(self: &Arc<Self>, conn: Box<Conn>) {
        let now = tokio::time::Instant::now();
        let mut idle = self.direct_idle();
        // The oldest go first. One closed by its upstream is found when it is next taken, or
        // by the sweeper.
        let stale = idle
            .iter()
            .take_while(|(_, since)| now - *since >= self.idle_timeout)
            .count();
        idle.drain(..stale);
        idle.push((conn, now));
        // Read and written under the lock, as the sweeper does: no locked operation a request.
        // Outside a runtime (a connection kept as one shuts down) no sweeper can start, and
        // none is needed.
        let runtime = if self.sweeping.load(Ordering::Relaxed) {
            None
        } else {
            tokio::runtime::Handle::try_current().ok()
        };
        if runtime.is_some() {
            self.sweeping.store(true, Ordering::Relaxed);
        }
        drop(idle);
        if let Some(runtime) = runtime {
            runtime.spawn(sweep_direct(Arc::downgrade(self)));
        }
    }

    /// A new connection for the direct client, made in a task of its own: if the request that
    /// asked for it is gone when it is ready, it is kept for the next.
    pub(crate) fn connect_direct(
        self: &Arc<Self>,
    ) -> oneshot::Receiver<Result<Box<Conn>, BoxError>> {
        let (tell, connected) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let made = match pool.connector.connect(&pool.target).await {
                Ok(io) => Ok(Conn::new(io.into_inner())),
                Err(error) => Err(NotSent::new(error).into()),
            };
            if let Err(Ok(conn)) = tell.send(made) {
                pool.keep_direct(conn);
            }
        });
        connected
    }

    /// Finishes a direct exchange whose caller is gone, in the background: see the module
    /// docs and [`crate::h1`].
    pub(crate) fn orphan_direct(self: Arc<Self>, exchange: Exchange) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.orphans.fetch_add(1, Ordering::AcqRel) >= MAX_ORPHANS {
            self.orphans.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        runtime.spawn(async move {
            let _ = tokio::time::timeout(ORPHAN_WAIT, crate::h1::finish_orphan(exchange)).await;
            self.orphans.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Finishes a request whose caller is gone in the background, so that its connection is
    /// kept rather than closed: see the module docs.
    fn orphan(self: &Arc<Self>, sender: Sender, sent: SentOnConnection) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.orphans.fetch_add(1, Ordering::AcqRel) >= MAX_ORPHANS {
            self.orphans.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let pool = self.clone();
        runtime.spawn(async move {
            let mut sender = sender;
            let finished = tokio::time::timeout(ORPHAN_WAIT, async {
                // The body is dropped unread: hyper reads what has already come and closes the
                // connection if more was to come.
                drop(sent.await.ok()?);
                sender.ready().await.ok()
            })
            .await;
            pool.orphans.fetch_sub(1, Ordering::AcqRel);
            if let Ok(Some(())) = finished {
                pool.keep(sender);
            }
        });
    }
}

/// A request on its way to an instance: [`InstancePool::send`].
///
/// Written out rather than an `async fn`: the path nearly every request takes (a kept-alive
/// connection takes it) then holds only hyper's send in a box of its own, small enough for the
/// allocator's per-thread cache, where a generator also laid out room for the connecting and
/// resending paths (1.9 KB). Dropped before its answer, it leaves its connection to the pool
/// (see the module docs).
pub(crate) struct Sending {
    pool: Arc<InstancePool>,
    state: State,
}

type SentOnConnection = Pin<
    Box<
        dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>>> + Send,
    >,
>;

enum State {
    /// Sent on a connection, waiting for the response head; the connection is given back
    /// when it comes.
    Sent {
        sender: Option<Sender>,
        sent: SentOnConnection,
        /// A kept-alive connection, which may have closed before sending: then the request
        /// goes out on another. A new one that does is not tried again.
        reused: bool,
    },
    /// Waiting for a new connection. Boxed: the path is rare, and the request is large.
    Connecting(Box<Connecting>),
    /// Answered, or failed.
    Done,
}

struct Connecting {
    connected: oneshot::Receiver<Result<Sender, BoxError>>,
    req: Option<Request<UpstreamBody>>,
}

impl State {
    fn sent(mut sender: Sender, req: Request<UpstreamBody>, reused: bool) -> Self {
        State::Sent {
            sent: Box::pin(sender.try_send_request(req)),
            sender: Some(sender),
            reused,
        }
    }
}

impl Future for Sending {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Sent {
                    sender,
                    sent,
                    reused,
                } => match ready!(sent.as_mut().poll(cx)) {
                    Ok(response) => {
                        if let Some(sender) = sender.take() {
                            this.pool.give_back(sender);
                        }
                        this.state = State::Done;
                        return Poll::Ready(Ok(response));
                    }
                    Err(mut error) => {
                        let reused = *reused;
                        this.state = State::Done;
                        match error.take_message() {
                            // Closed before the request went out: it was never sent.
                            Some(unsent) if reused => this.state = this.pool.start(unsent),
                            Some(_) => {
                                return Poll::Ready(Err(NotSent::new(error.into_error()).into()))
                            }
                            None => return Poll::Ready(Err(sent_or_refused(error.into_error()))),
                        }
                    }
                },
                State::Connecting(connecting) => {
                    let connected = ready!(Pin::new(&mut connecting.connected).poll(cx));
                    let req = connecting.req.take();
                    this.state = State::Done;
                    match (connected, req) {
                        (Ok(Ok(sender)), Some(req)) => this.state = State::sent(sender, req, false),
                        (Ok(Err(error)), _) => return Poll::Ready(Err(error)),
                        (Ok(Ok(_)), None) | (Err(_), _) => {
                            return Poll::Ready(Err(NotSent::new(
                                "the connection attempt ended without an outcome",
                            )
                            .into()))
                        }
                    }
                }
                State::Done => panic!("Sending polled after it was done"),
            }
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Sent {
                sender: Some(sender),
                sent,
                ..
            } => self.pool.orphan(sender, sent),
            // A connection made in the moment between its task's send and this drop.
            State::Connecting(mut connecting) => {
                if let Ok(Ok(sender)) = connecting.connected.try_recv() {
                    self.pool.keep(sender);
                }
            }
            State::Sent { sender: None, .. } | State::Done => {}
        }
    }
}

/// The direct client's sweeper: every [`SWEEP_EVERY`], drops the idle connections of `pool`
/// that are past its idle timeout or that their upstream closed (a read that is ready finds
/// the end, or bytes nobody asked for: either way the connection cannot carry a request). It
/// ends when none is left idle, or when the pool is gone (a reload dropped the instance), and
/// [`InstancePool::keep_direct`] starts it again.
async fn sweep_direct(pool: std::sync::Weak<InstancePool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let mut idle = pool.direct_idle();
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(idle.len());
        for (mut conn, since) in idle.drain(..) {
            if now - since < pool.idle_timeout && conn.is_usable() {
                kept.push((conn, since));
            } else {
                dropped.push(conn);
            }
        }
        *idle = kept;
        let done = idle.is_empty();
        if done {
            pool.sweeping.store(false, Ordering::Relaxed);
        }
        drop(idle);
        // Closed outside the lock.
        drop(dropped);
        if done {
            return;
        }
    }
}

/// A failure after the request went out: hyper's error, taken as sent, unless the upstream
/// refused the TLS session before answering ([`crate::tls::connect::TlsIo`]), when the
/// request never reached its application.
pub(crate) fn sent_or_refused(error: hyper::Error) -> BoxError {
    if TlsError::is_beneath(&error) {
        return NotSent::new(error).into();
    }
    error.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Connector {
        Connector::plain(hyper_util::client::legacy::connect::HttpConnector::new())
    }

    #[test]
    fn a_request_without_host_gets_the_instances_address() {
        let pool = |a: &str| InstancePool::new(a.parse().unwrap(), plain(), Duration::ZERO);
        assert_eq!(pool("127.0.0.1:9001").host, "127.0.0.1:9001");
        assert_eq!(pool("api.internal:80").host, "api.internal");
        assert_eq!(pool("127.0.0.1:9001").target, "http://127.0.0.1:9001/");
    }

    /// An upstream that answers `per_connection` requests on each connection it accepts, then
    /// closes it; returns its address and a count of connections accepted.
    async fn upstream(per_connection: usize) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        upstream_after(per_connection, Duration::ZERO).await
    }

    /// [`upstream`], answering each request `delay` after its head.
    async fn upstream_after(
        per_connection: usize,
        delay: Duration,
    ) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        scripted_upstream(ok, per_connection, delay, false).await
    }

    /// An upstream that answers `per_connection` requests on each connection it accepts with
    /// `answer`, each `delay` after its head, then closes it, or reads what else comes when
    /// `keep_open`; returns its address and a count of connections accepted.
    async fn scripted_upstream(
        answer: &'static [u8],
        per_connection: usize,
        delay: Duration,
        keep_open: bool,
    ) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_connection {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let Ok(n @ 1..) = stream.read(&mut buf).await else {
                                return;
                            };
                            head.extend_from_slice(&buf[..n]);
                        }
                        tokio::time::sleep(delay).await;
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    while keep_open && matches!(stream.read(&mut buf).await, Ok(1..)) {}
                });
            }
        });
        (authority, accepted)
    }

    fn get() -> Request<UpstreamBody> {
        Request::new(http_body_util::Either::Left(
            stormguard::layer::ReplayBody::from_bytes(bytes::Bytes::new()),
        ))
    }

    /// Which client a test sends with: every pool test runs with both.
    #[derive(Clone, Copy, Debug)]
    enum Via {
        Hyper,
        Direct,
    }

    const BOTH: [Via; 2] = [Via::Hyper, Via::Direct];

    type Answer = Pin<Box<dyn Future<Output = Result<(u16, bytes::Bytes), BoxError>> + Send>>;

    /// Sends `req` through `pool` by `via`; its status and body, read to the end.
    fn send_via(pool: &Arc<InstancePool>, via: Via, req: Request<UpstreamBody>) -> Answer {
        use http_body_util::BodyExt;
        match via {
            Via::Hyper => {
                let sending = pool.clone().send(req);
                Box::pin(async move {
                    let response = sending.await?;
                    let status = response.status().as_u16();
                    Ok((status, response.into_body().collect().await?.to_bytes()))
                })
            }
            Via::Direct => {
                let sending = pool.clone().send_direct(req);
                Box::pin(async move {
                    let response = sending.await?;
                    let status = response.status().as_u16();
                    Ok((status, response.into_body().collect().await?.to_bytes()))
                })
            }
        }
    }

    /// Sends five GETs through a pool to `instance`, each answered 200; returns the
    /// connections the instance accepted.
    async fn five_gets(
        instance: (Authority, Arc<std::sync::atomic::AtomicUsize>),
        via: Via,
    ) -> usize {
        let (authority, accepted) = instance;
        let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
        for _ in 0..5 {
            let (status, body) = send_via(&pool, via, get()).await.unwrap();
            assert_eq!((status, &body[..]), (200, &b"ok"[..]), "{via:?}");
            // The upstream's close reaches the proxy before the next request.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn connections_are_kept_and_a_closed_one_is_replaced() {
        for via in BOTH {
            assert_eq!(
                five_gets(upstream(usize::MAX).await, via).await,
                1,
                "{via:?}"
            );
            // One request per connection: each kept connection is closed by the upstream.
            assert_eq!(five_gets(upstream(1).await, via).await, 5, "{via:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        for via in BOTH {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            drop(listener);
            let pool = Arc::new(InstancePool::new(address.parse().unwrap(), plain(), IDLE));
            let error = send_via(&pool, via, get()).await.unwrap_err();
            assert_eq!(
                stormguard::layer::classify_error(&*error),
                stormguard::classify::AttemptResult::ConnectRefused,
                "{via:?}"
            );
        }
    }

    #[tokio::test]
    async fn requests_cancelled_after_sending_leave_their_connections_to_the_pool() {
        for via in BOTH {
            let (authority, accepted) = upstream_after(usize::MAX, Duration::from_millis(20)).await;
            let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
            // Six rounds of five requests at once, each given up 5 ms after it was sent (a
            // client reset, a per-try timeout), long before its answer.
            for _ in 0..6 {
                let cancelled = (0..5).map(|_| {
                    let sent = send_via(&pool, via, get());
                    tokio::time::timeout(Duration::from_millis(5), sent)
                });
                for outcome in futures_join(cancelled).await {
                    assert!(outcome.is_err(), "answered before it was cancelled");
                }
                // The answers come, unread, and the connections go back to the pool.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let (status, _) = send_via(&pool, via, get()).await.unwrap();
            assert_eq!(status, 200);
            let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                connections, 5,
                "{via:?}: one connection per request at once, not per request"
            );
            assert_eq!(pool.orphans.load(Ordering::SeqCst), 0);
        }
    }

    #[tokio::test]
    async fn a_connection_made_for_a_cancelled_request_is_kept_for_the_next() {
        for via in BOTH {
            let (authority, accepted) = upstream(usize::MAX).await;
            let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
            let mut sending = send_via(&pool, via, get());
            let waker = std::task::Waker::noop();
            let polled = sending.as_mut().poll(&mut Context::from_waker(waker));
            assert!(polled.is_pending(), "connecting");
            drop(sending);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (status, _) = send_via(&pool, via, get()).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(
                accepted.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "{via:?}"
            );
        }
    }

    /// An upstream that answers every connection's first request with `answer` after reading
    /// its head, then reads what else comes; returns its address and a count of connections
    /// accepted.
    async fn raw_upstream(
        answer: &'static [u8],
    ) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        scripted_upstream(answer, 1, Duration::ZERO, true).await
    }

    #[tokio::test]
    async fn the_direct_client_reads_chunked_bodies_and_refuses_broken_responses() {
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (authority, _) = raw_upstream(chunked).await;
        let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
        let (status, body) = send_via(&pool, Via::Direct, get()).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"abcde"[..]));
        for broken in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (authority, _) = raw_upstream(broken).await;
            let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
            let error = send_via(&pool, Via::Direct, get()).await.unwrap_err();
            // Sent: the classifier may retry it only where the method allows.
            assert_eq!(
                stormguard::layer::classify_error(&*error),
                stormguard::classify::AttemptResult::ErrorAfterWritten,
                "{broken:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_sent_a_byte_at_a_time_is_read_and_one_too_long_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fields: String = (0..90)
            .map(|i| format!("x-{i}: {}\r\n", "v".repeat(20)))
            .collect();
        let head = format!("HTTP/1.1 200 OK\r\n{fields}content-length: 2\r\n\r\nok");
        let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "v".repeat(70 * 1024));
        for (answer, whole) in [(head, true), (endless, false)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                for (i, byte) in answer.as_bytes().iter().enumerate() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                let _ = stream.read(&mut buf).await;
            });
            let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
            let answered = send_via(&pool, Via::Direct, get()).await;
            match answered {
                Ok((status, body)) => {
                    assert!(whole);
                    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
                }
                Err(error) => {
                    assert!(!whole, "{error}");
                    assert!(error.to_string().contains("bad response head"), "{error}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_its_connection_is_not_kept() {
        let (authority, accepted) = scripted_upstream(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            1,
            Duration::ZERO,
            false,
        )
        .await;
        let pool = Arc::new(InstancePool::new(authority, plain(), IDLE));
        assert!(send_via(&pool, Via::Direct, get()).await.is_err());
        assert_eq!(pool.direct_idle().len(), 0);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Waits (in paused time) until `pool` keeps no idle direct connection and no sweeper
    /// runs; false if that took longer than `within`.
    async fn swept(pool: &InstancePool, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until {
            if pool.direct_idle().is_empty()
                && !pool.sweeping.load(std::sync::atomic::Ordering::Acquire)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_direct_connection_goes_when_its_upstream_closes_it_or_it_idles_too_long() {
        // Closed by the upstream after one answer: gone within a sweep, long before the hour.
        let (authority, _) = upstream(1).await;
        let pool = Arc::new(InstancePool::new(
            authority,
            plain(),
            Duration::from_secs(3600),
        ));
        let answered = send_via(&pool, Via::Direct, get()).await.unwrap();
        assert_eq!(answered.0, 200);
        assert_eq!(pool.direct_idle().len(), 1, "kept for the next request");
        assert!(
            swept(&pool, SWEEP_EVERY * 3).await,
            "the upstream's close was not seen"
        );
        // Held open by the upstream: gone once idle for longer than the idle timeout, with no
        // request to find it; and a connection kept later starts the sweeper again.
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (authority, accepted) = scripted_upstream(ok, 2, Duration::ZERO, true).await;
        let pool = Arc::new(InstancePool::new(
            authority,
            plain(),
            Duration::from_secs(5),
        ));
        send_via(&pool, Via::Direct, get()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pool.direct_idle().len(), 1, "still within its idle timeout");
        assert!(
            swept(&pool, Duration::from_secs(10)).await,
            "idle too long, and kept"
        );
        send_via(&pool, Via::Direct, get()).await.unwrap();
        assert_eq!(pool.direct_idle().len(), 1);
        assert!(pool.sweeping.load(std::sync::atomic::Ordering::Acquire));
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "a new connection"
        );
        // A pool dropped (a reload removed the instance) ends its sweeper.
        let weak = Arc::downgrade(&pool);
        drop(pool);
        tokio::time::sleep(SWEEP_EVERY * 2).await;
        assert!(weak.upgrade().is_none());
    }

    /// Runs `futures` concurrently; their outputs in order.
    async fn futures_join<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut set = Vec::new();
        for future in futures {
            set.push(Box::pin(future));
        }
        let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(value) => *output = Some(value),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        outputs.into_iter().map(Option::unwrap).collect()
    }

    const IDLE: Duration = Duration::from_secs(30);
}
