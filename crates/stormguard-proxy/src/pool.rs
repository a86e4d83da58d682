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
//! ## What it keeps of hyper-util's
//! The connector (connect timeout, `TCP_NODELAY`, keep-alive probes), hyper's HTTP/1.1 client
//! connection, the origin-form target and a default `Host`, and its retry of a request that a
//! reused connection closed before sending (an upstream may close an idle connection at any
//! moment; that request was never sent, so it goes out on another connection). An idle
//! connection is dropped after the idle timeout, or as soon as its upstream closes it.
//!
//! ## Errors
//! A failure to connect is wrapped in the library's [`NotSent`], so the classifier knows the
//! request never left (a refused or timed-out connection may always be retried elsewhere); any
//! later failure is hyper's own error, which the classifier takes as sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::client::legacy::connect::HttpConnector;
use stormguard::layer::{BoxError, NotSent};
use tower_service::Service;

use crate::stack::UpstreamBody;

/// The kept-alive connections to one instance, shared by every route that sends to it with the
/// same connect timeout, across generations of settings.
pub(crate) struct InstancePool {
    connector: HttpConnector,
    /// `http://authority/`, what the connector connects to.
    target: Uri,
    /// The `Host` of a request that came without one: the instance's address.
    host: HeaderValue,
    idle_timeout: Duration,
    /// Ready connections, the most recently used last: it is taken first, while the upstream
    /// still holds it open, and the oldest are dropped first.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    since: tokio::time::Instant,
}

impl InstancePool {
    /// A pool for `authority`, connecting with `connector`, keeping idle connections for
    /// `idle_timeout`.
    pub(crate) fn new(
        authority: Authority,
        connector: HttpConnector,
        idle_timeout: Duration,
    ) -> Self {
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
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A list of connections stays valid after any panic.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ready kept-alive connection, if there is one.
    fn checkout(&self) -> Option<http1::SendRequest<UpstreamBody>> {
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
    fn give_back(self: &Arc<Self>, mut sender: http1::SendRequest<UpstreamBody>) {
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

    fn keep(&self, sender: http1::SendRequest<UpstreamBody>) {
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

    /// A new connection, its task spawned.
    async fn connect(&self) -> Result<http1::SendRequest<UpstreamBody>, BoxError> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
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
        let state = match self.checkout() {
            Some(mut sender) => State::Kept {
                sent: Box::pin(sender.try_send_request(req)),
                sender: Some(sender),
            },
            None => State::Other(Box::pin(self.clone().send_anyhow(req))),
        };
        Sending { pool: self, state }
    }

    /// Sends `req` on a kept-alive connection or a new one, and again on another when a
    /// kept-alive one closes before sending it.
    async fn send_anyhow(
        self: Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.give_back(sender);
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => req = unsent,
                    Some(_) => return Err(NotSent::new(error.into_error()).into()),
                    None => return Err(error.into_error().into()),
                },
            }
        }
    }
}

/// A request on its way to an instance: [`InstancePool::send`].
///
/// Written out rather than an `async fn`: the path nearly every request takes (a kept-alive
/// connection takes it) then holds only hyper's send in a box of its own, small enough for the
/// allocator's per-thread cache, where a generator also laid out room for the connecting and
/// resending paths (1.9 KB).
pub(crate) struct Sending {
    pool: Arc<InstancePool>,
    state: State,
}

type SentOnKept = Pin<
    Box<
        dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>>> + Send,
    >,
>;

type Sent = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

enum State {
    /// On a kept-alive connection, given back when the response comes.
    Kept {
        sender: Option<http1::SendRequest<UpstreamBody>>,
        sent: SentOnKept,
    },
    /// Connecting, or sending again after a kept-alive connection closed before sending.
    Other(Sent),
}

impl Future for Sending {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.state {
            State::Other(sent) => sent.as_mut().poll(cx),
            State::Kept { sender, sent } => match ready!(sent.as_mut().poll(cx)) {
                Ok(response) => {
                    if let Some(sender) = sender.take() {
                        this.pool.give_back(sender);
                    }
                    Poll::Ready(Ok(response))
                }
                Err(mut error) => match error.take_message() {
                    // Closed before the request went out: it was never sent.
                    Some(unsent) => {
                        let mut again = Box::pin(this.pool.clone().send_anyhow(unsent));
                        let polled = again.as_mut().poll(cx);
                        this.state = State::Other(again);
                        polled
                    }
                    None => Poll::Ready(Err(error.into_error().into())),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_host_gets_the_instances_address() {
        let pool =
            |a: &str| InstancePool::new(a.parse().unwrap(), HttpConnector::new(), Duration::ZERO);
        assert_eq!(pool("127.0.0.1:9001").host, "127.0.0.1:9001");
        assert_eq!(pool("api.internal:80").host, "api.internal");
        assert_eq!(pool("127.0.0.1:9001").target, "http://127.0.0.1:9001/");
    }

    /// An upstream that answers `per_connection` requests on each connection it accepts, then
    /// closes it; returns its address and a count of connections accepted.
    async fn upstream(per_connection: usize) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    for _ in 0..per_connection {
                        let mut head = Vec::new();
                        while !head.ends_with(b"\r\n\r\n") {
                            let Ok(n @ 1..) = stream.read(&mut buf).await else {
                                return;
                            };
                            head.extend_from_slice(&buf[..n]);
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
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

    /// Sends five GETs through a pool to `instance`, each answered 200; returns the
    /// connections the instance accepted.
    async fn five_gets(instance: (Authority, Arc<std::sync::atomic::AtomicUsize>)) -> usize {
        let (authority, accepted) = instance;
        let pool = Arc::new(InstancePool::new(authority, HttpConnector::new(), IDLE));
        for _ in 0..5 {
            let response = pool.clone().send(get()).await.unwrap();
            assert_eq!(response.status(), 200);
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn connections_are_kept_and_a_closed_one_is_replaced() {
        assert_eq!(five_gets(upstream(usize::MAX).await).await, 1);
        // One request per connection: each kept connection is closed by the upstream.
        assert_eq!(five_gets(upstream(1).await).await, 5);
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Arc::new(InstancePool::new(
            address.parse().unwrap(),
            HttpConnector::new(),
            IDLE,
        ));
        let error = pool.send(get()).await.unwrap_err();
        assert_eq!(
            stormguard::layer::classify_error(&*error),
            stormguard::classify::AttemptResult::ConnectRefused
        );
    }

    const IDLE: Duration = Duration::from_secs(30);
}
