//! The upstream instances `demo --live` runs in its own process on 127.0.0.1: the failures a
//! proxy exists for, made on purpose, so that what it does about them shows in its metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How long the slow instance takes to answer: above the route's timeout, so each request it
/// gets is hedged, retried on another instance, or failed, as the budgets allow.
pub(super) const SLOW: Duration = Duration::from_millis(300);

/// The instances of the demo's upstream, in the order the proxy's settings list them.
pub(super) struct Upstreams {
    /// A port nothing listens on: every connection is refused.
    pub refusing: SocketAddr,
    /// Answers after [`SLOW`].
    pub slow: SocketAddr,
    /// Answer at once.
    pub healthy: [SocketAddr; 2],
}

impl Upstreams {
    /// Starts them on ephemeral ports; they serve until the runtime ends.
    pub(super) async fn start() -> anyhow::Result<Upstreams> {
        // Bound then closed: the port is free, so a connection to it is refused.
        let refusing = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a port on 127.0.0.1")?
            .local_addr()?;
        Ok(Upstreams {
            refusing,
            slow: instance(SLOW).await?,
            healthy: [
                instance(Duration::ZERO).await?,
                instance(Duration::ZERO).await?,
            ],
        })
    }

    /// Every instance, as the proxy's settings list them.
    pub(super) fn all(&self) -> [SocketAddr; 4] {
        [self.refusing, self.slow, self.healthy[0], self.healthy[1]]
    }
}

/// An HTTP/1.1 instance on an ephemeral port that answers every request 200 after `delay`.
async fn instance(delay: Duration) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding an upstream on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_: Request<Incoming>| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}
