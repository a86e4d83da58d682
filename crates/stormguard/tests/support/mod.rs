//! Servers on 127.0.0.1 for the integration tests.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTP/1.1 server that counts requests and answers request `n` with `answer(n)`: a status
/// and a delay. The body echoes the request body.
pub async fn server(
    answer: impl Fn(u32) -> (u16, Duration) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (hits, answer) = (counted.clone(), answer.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let n = hits.fetch_add(1, Ordering::SeqCst);
                        let (status, delay) = answer(n);
                        async move {
                            // Read the whole body, as a handler would before acting on it.
                            let body = req.into_body().collect().await?.to_bytes();
                            tokio::time::sleep(delay).await;
                            let mut response = Response::new(Full::new(body));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An address nothing listens on: bound, then released, so connections are refused.
pub async fn refusing_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A body of `data`, for requests.
pub fn body(data: &'static [u8]) -> Full<Bytes> {
    Full::new(Bytes::from_static(data))
}
