//! [`H2Instance`]: one multiplexed HTTP/2 connection (h2c, prior knowledge) to one instance.
//!
//! ## Why one connection, not a pool
//! HTTP/2 carries any number of concurrent requests on one connection, up to the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (beyond it h2 holds a request until a stream closes; the
//! upstream's `max_in_flight` bounds how many can wait). More connections would only add
//! handshakes, and gRPC servers expect a client to hold one per address, as a gRPC channel does.
//! gRPC needs HTTP/2 (its status travels in trailers), which the HTTP/1.1 pool cannot carry.
//!
//! ## Reconnecting
//! The first request that finds no live connection starts one in a task of its own: requests
//! that arrive meanwhile wait for that same connection rather than each opening one, a
//! request cancelled while it waits does not abandon the connection, and a failure reaches
//! every waiter. When the connection closes or the server sends `GOAWAY`, hyper's sender says
//! it is closed and the next request makes a new one; requests in flight finish on the old.
//!
//! ## Keep-alive
//! A ping after [`KEEP_ALIVE_INTERVAL`] without a frame from the server, while a request is
//! open; no answer within [`KEEP_ALIVE_TIMEOUT`] closes the connection, so a stream that waits
//! on a dead peer fails rather than hangs. Not more often, and not on an idle connection:
//! grpc-go servers, by default, count pings more frequent than every 5 minutes, or any ping
//! without an open stream, as abuse and close the connection (`GOAWAY ENHANCE_YOUR_CALM
//! "too_many_pings"`). An idle connection is watched by TCP keep-alive probes instead (the
//! connector's, as for HTTP/1.1).
//!
//! ## Errors
//! A failure to connect is the library's [`NotSent`], as in the HTTP/1.1 pool. A request that
//! a kept connection closed before it went out is sent again here, once, on a new connection.
//! A stream the server refused (`REFUSED_STREAM`) fails with hyper's error around h2's, which
//! the library classifies as not sent (feature `h2`), so the retry layer may send it to another
//! instance whatever its method. A stream failed by a `GOAWAY` counts as sent: its error does
//! not say whether the stream was under the frame's last stream id (see the library's
//! `is_refused_stream`), so only an idempotent request is retried after one.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use stormguard::layer::{BoxError, NotSent};
use tokio::sync::watch;

use crate::stack::UpstreamBody;
use crate::tls::connect::Connector;

/// A ping after this long without a frame from the server while a request is open: grpc-go's
/// default `MinTime`, the most frequent pinging its servers accept.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(300);
/// How long a ping may go unanswered before the connection is taken for dead.
pub(crate) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest response head accepted, as the listener's default `max_header_bytes`: hyper's
/// 16 KiB default would fail responses that the HTTP/1.1 pool passes.
const MAX_RESPONSE_HEAD: u32 = 64 * 1024;

/// The connection to one instance, shared by every route that sends to it with the same connect
/// timeout, across generations of settings.
pub(crate) struct H2Instance {
    connector: Connector,
    /// `http://authority/`, what the connector connects to.
    target: Uri,
    /// The `:authority` of a request that came without `Host`: the instance's address.
    authority: Authority,
    builder: http2::Builder<TokioExecutor>,
    slot: Mutex<Slot>,
}

type Sender = http2::SendRequest<UpstreamBody>;

/// What a connection attempt came to, as every request waiting for it sees it.
type Connected = Option<Result<Sender, SharedError>>;

enum Slot {
    /// No connection: the next request makes one.
    Empty,
    Ready(Sender),
    /// A connection is being made; its outcome will be sent here.
    Connecting(watch::Receiver<Connected>),
}

/// A request on its way to an instance over HTTP/2: [`H2Instance::send`]. Boxed: this path
/// is taken by gRPC and `protocol = "http2"` upstreams, and the HTTP/1.1 path's future stays
/// as small as it was.
pub(crate) type H2Sending =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

impl H2Instance {
    /// The connection to `authority`, made with `connector` when first needed.
    pub(crate) fn new(authority: Authority, connector: Connector) -> Self {
        let target = Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .expect("scheme, authority and path make a URI");
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(false)
            .max_header_list_size(MAX_RESPONSE_HEAD);
        H2Instance {
            connector,
            target,
            authority,
            builder,
            slot: Mutex::new(Slot::Empty),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A slot stays valid after any panic.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req` on the instance's connection, made first if there is none.
    pub(crate) fn send(self: Arc<Self>, mut req: Request<UpstreamBody>) -> H2Sending {
        // HTTP/2 names the host in `:authority`, which replaces `Host` (RFC 9113 section
        // 8.3.1): the client's host when it gave one, so that the upstream sees the name the
        // request was routed by, else the instance's address.
        let authority = req
            .headers_mut()
            .remove(HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| self.authority.clone());
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        *req.version_mut() = Version::HTTP_2;
        Box::pin(self.send_anyhow(req))
    }

    /// Sends `req`, and once more on a new connection when a kept one closed before sending it.
    async fn send_anyhow(
        self: Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut resent = false;
        loop {
            let (mut sender, fresh) = self.sender().await?;
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    // Closed (GOAWAY, or the upstream hung up) before this request went out.
                    Some(unsent) if !fresh && !resent => {
                        resent = true;
                        req = unsent;
                    }
                    Some(_) => return Err(NotSent::new(error.into_error()).into()),
                    None => return Err(crate::pool::sent_or_refused(error.into_error())),
                },
            }
        }
    }

    /// A live connection's sender, and whether it was made for this request (a new connection
    /// that fails is not tried again).
    async fn sender(self: &Arc<Self>) -> Result<(Sender, bool), BoxError> {
        let mut connecting = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Ready(sender) if !sender.is_closed() => return Ok((sender.clone(), false)),
                // A connect still under way. One whose task ended without telling (a panic, or
                // the runtime shutting down) left its sender dropped: connect anew, or every
                // later request to this instance would fail until a reload.
                Slot::Connecting(outcome) if outcome.has_changed().is_ok() => outcome.clone(),
                Slot::Empty | Slot::Ready(_) | Slot::Connecting(_) => {
                    let (tell, outcome) = watch::channel(None);
                    *slot = Slot::Connecting(outcome.clone());
                    tokio::spawn(self.clone().connect(tell));
                    outcome
                }
            }
        };
        let connected = connecting
            .wait_for(Option::is_some)
            .await
            .map_err(|_| NotSent::new("the connection attempt ended without an outcome"))?
            .clone();
        match connected {
            Some(Ok(sender)) => Ok((sender, true)),
            Some(Err(error)) => Err(NotSent::new(error).into()),
            None => unreachable!("waited for an outcome"),
        }
    }

    /// Makes a connection, spawns its task, and tells every waiting request.
    async fn connect(self: Arc<Self>, tell: watch::Sender<Connected>) {
        let connected = async {
            let io = self.connector.connect(&self.target).await?;
            let (sender, connection) = self.builder.handshake(io).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
                }
            });
            Ok::<_, BoxError>(sender)
        }
        .await
        .map_err(|error| SharedError(Arc::new(error)));
        *self.slot() = match &connected {
            Ok(sender) => Slot::Ready(sender.clone()),
            Err(_) => Slot::Empty,
        };
        tell.send_replace(Some(connected));
    }
}

/// A connect error, handed to every request that waited for the connection. Its source is the
/// error itself, so that the library's classifier still finds the I/O error (refused, timed
/// out) beneath.
#[derive(Clone, Debug)]
struct SharedError(Arc<BoxError>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connecting: {}", self.0)
    }
}

impl StdError for SharedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&**self.0)
    }
}

#[cfg(test)]
mod tests;
