//! A hyper client with stormguard's layers, calling a flaky local server.
//!
//! Three instances of one service run on 127.0.0.1: one refuses connections (its process is
//! gone), two answer 503 to every third request. Through `RetryLayer` (three attempts) over a
//! `Balance`, most requests succeed: a refused connection is retried on another instance (it
//! never reached a server, so even a POST may go again), a 503 is retried with full jitter
//! elsewhere, all within a retry budget. The Prometheus metrics printed at the end show what that
//! cost: attempts per request, and retries by cause, the failures that retries are hiding.
//!
//! Run it with `cargo run -p stormguard --example hyper_client`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use stormguard::layer::{Attempts, Balance, ReplayBody, RetryLayer, SetAuthority};
use stormguard::metrics::PrometheusMetrics;
use stormguard::policy::RetryPolicy;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// A server that answers 503 to every third request, 200 otherwise.
async fn flaky_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let n = seen.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let status = if n % 3 == 0 {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"hello\n")));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An address nothing listens on: bound, then released.
async fn refusing_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let refusing = refusing_address().await;
    let flaky_a = flaky_server().await;
    let flaky_b = flaky_server().await;

    // One pooled client; each instance is an address on it.
    let client: Client<_, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let instances = [refusing, flaky_a, flaky_b]
        .into_iter()
        .map(|addr| SetAuthority::new(client.clone(), addr.to_string().parse().unwrap()))
        .collect();

    let mut registry = Registry::default();
    let metrics = PrometheusMetrics::register(&mut registry);
    let policy = RetryPolicy::recommended()
        .with_max_attempts(3)
        .with_per_try_timeout(Duration::from_secs(1));
    let service = RetryLayer::new(policy)
        .target("hello")
        .observer(metrics)
        .seed(7)
        .layer(Balance::new(instances).seed(7));

    let mut ok = 0;
    for i in 0..20 {
        let request = Request::post(format!("/hello/{i}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        match service.clone().oneshot(request).await {
            Ok(response) => {
                let attempts = Attempts::of(&response);
                println!(
                    "request {i:>2}: {} after {attempts} attempt(s)",
                    response.status()
                );
                ok += usize::from(response.status().is_success());
            }
            Err(error) => println!(
                "request {i:>2}: failed: {error} ({})",
                error.kind().reason()
            ),
        }
    }
    println!("\n{ok}/20 succeeded\n");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in text.lines().filter(|l| l.starts_with("stormguard_")) {
        println!("{line}");
    }
}
