use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// An h2c server on 127.0.0.1 that answers each request with the authority it was sent to,
/// and ends each connection (GOAWAY) after `per_connection` requests; returns its address and
/// a count of connections accepted.
async fn server(per_connection: usize) -> (Authority, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let served = Arc::new(AtomicUsize::new(0));
            let (done, mut enough) = tokio::sync::mpsc::unbounded_channel::<()>();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let said = format!(
                    "{} host={:?}",
                    req.uri().authority().map_or("", |a| a.as_str()),
                    req.headers().get(HOST)
                );
                if served.fetch_add(1, Ordering::SeqCst) + 1 == per_connection {
                    let _ = done.send(());
                }
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(said))))
                }
            });
            tokio::spawn(async move {
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let mut connection = std::pin::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = enough.recv() => connection.as_mut().graceful_shutdown(),
                }
                let _ = connection.await;
            });
        }
    });
    (authority, accepted)
}

fn instance(authority: Authority) -> Arc<H2Instance> {
    Arc::new(H2Instance::new(
        authority,
        crate::tls::connect::Connector::plain(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        ),
    ))
}

fn get(host: Option<&str>) -> Request<UpstreamBody> {
    let mut req = Request::new(http_body_util::Either::Left(
        stormguard::layer::ReplayBody::from_bytes(Bytes::new()),
    ));
    *req.uri_mut() = Uri::from_static("/items?page=2");
    if let Some(host) = host {
        req.headers_mut().insert(HOST, host.parse().unwrap());
    }
    req
}

async fn text(response: Response<Incoming>) -> String {
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let (authority, accepted) = server(usize::MAX).await;
    let instance = instance(authority);
    let sends: Vec<_> = (0..20)
        .map(|_| tokio::spawn(instance.clone().send(get(None))))
        .collect();
    for send in sends {
        text(send.await.unwrap().unwrap()).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_ended_is_replaced() {
    let (authority, accepted) = server(1).await;
    let instance = instance(authority);
    for _ in 0..3 {
        text(instance.clone().send(get(None)).await.unwrap()).await;
        // The server's GOAWAY and close arrive just after the answer.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connect_that_ended_without_an_outcome_is_made_again() {
    let (authority, accepted) = server(usize::MAX).await;
    let instance = instance(authority);
    // What a connect task that panicked leaves: the slot waits on a sender that is gone.
    let (gone, outcome) = watch::channel(None);
    drop(gone);
    *instance.slot() = Slot::Connecting(outcome);
    text(instance.clone().send(get(None)).await.unwrap()).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_clients_host_becomes_the_authority() {
    let (authority, _) = server(usize::MAX).await;
    let instance = instance(authority.clone());
    let named = text(
        instance
            .clone()
            .send(get(Some("api.internal")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(named, "api.internal host=None");
    let unnamed = text(instance.send(get(None)).await.unwrap()).await;
    assert_eq!(unnamed, format!("{authority} host=None"));
}

#[tokio::test]
async fn every_request_waiting_on_a_refused_connection_is_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let instance = instance(authority);
    let sends: Vec<_> = (0..5)
        .map(|_| tokio::spawn(instance.clone().send(get(None))))
        .collect();
    for send in sends {
        let error = send.await.unwrap().unwrap_err();
        assert_eq!(
            stormguard::layer::classify_error(&*error),
            stormguard::classify::AttemptResult::ConnectRefused,
            "{error}"
        );
    }
}
