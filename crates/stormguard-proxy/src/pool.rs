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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
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
        let (sender, connection) = http1::handshake(io).await.map_err(NotSent::new)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` on a kept-alive connection, or a new one.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        // Origin form: the connection already says where to.
        let path = match req.uri().path_and_query() {
            Some(path) if path.as_str() != "/" => Uri::from(path.clone()),
            _ => Uri::from(PathAndQuery::from_static("/")),
        };
        *req.uri_mut() = path;
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: a connect future is large and rarely needed, and kept inline it would
                // make every request's future too large for the allocator's fast path.
                None => (Box::pin(self.connect()).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.give_back(sender);
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    // Closed before the request went out: it was never sent.
                    Some(unsent) if reused => req = unsent,
                    Some(_) => return Err(NotSent::new(error.into_error()).into()),
                    None => return Err(error.into_error().into()),
                },
            }
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
}
