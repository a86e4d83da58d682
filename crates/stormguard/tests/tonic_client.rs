//! The retry layer under a tonic client, over a tonic `Channel`, against an HTTP/2 server on
//! 127.0.0.1 that answers like a gRPC server.
//!
//! tonic's `Grpc` client takes any service over `http::Request<tonic::body::Body>`; the retry
//! layer hands its inner service a `ReplayBody`, which `tonic::body::Body::new` wraps back, so the
//! stack is `RetryLayer` -> `map_request(Body::new)` -> `Channel`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stormguard::layer::{ReplayBody, RetryLayer};
use stormguard::policy::{Limiter, RetryPolicy};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// Messages as raw bytes: no protobuf needed to show the transport behaviour.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A response body of frames: data then trailers.
struct Frames(VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// How the server answers each call, in turn; then OK with the request message echoed.
#[derive(Clone, Copy)]
enum Answer {
    Http503,
    TrailersOnly(Code),
}

/// What the server saw of each call: its headers.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn grpc_server(answers: Vec<Answer>) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (record, answers) = (record.clone(), answers.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (record, answers) = (record.clone(), answers.clone());
                        async move {
                            record.lock().unwrap().push(req.headers().clone());
                            let message = req.into_body().collect().await?.to_bytes();
                            let answer = answers.lock().unwrap().pop_front();
                            let grpc = |code: Code| {
                                Response::builder()
                                    .header("content-type", "application/grpc")
                                    .header("grpc-status", (code as i32).to_string())
                            };
                            let response = match answer {
                                Some(Answer::Http503) => Response::builder()
                                    .status(503)
                                    .body(Frames(VecDeque::new()))
                                    .unwrap(),
                                Some(Answer::TrailersOnly(code)) => {
                                    grpc(code).body(Frames(VecDeque::new())).unwrap()
                                }
                                None => {
                                    // The request message comes back: same 5-byte prefix and payload.
                                    let mut trailers = HeaderMap::new();
                                    trailers.insert("grpc-status", "0".parse().unwrap());
                                    Response::builder()
                                        .header("content-type", "application/grpc")
                                        .body(Frames(VecDeque::from([
                                            Frame::data(message),
                                            Frame::trailers(trailers),
                                        ])))
                                        .unwrap()
                                }
                            };
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn call(addr: SocketAddr, policy: RetryPolicy) -> Result<Bytes, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy).seed(3))
        .map_request(|req: Request<ReplayBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
        .service(channel);
    let mut grpc = tonic::client::Grpc::new(service);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Say");
    let response = grpc
        .unary(tonic::Request::new(Bytes::from_static(b"hello")), path, Raw)
        .await?;
    Ok(response.into_inner())
}

fn policy() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_max_attempts(3)
        .with_per_try_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn unavailable_and_503_are_retried_and_the_deadline_travels_as_grpc_timeout() {
    let (addr, seen) = grpc_server(vec![
        Answer::TrailersOnly(Code::Unavailable),
        Answer::Http503,
    ])
    .await;
    let message = call(addr, policy()).await.unwrap();
    assert_eq!(&message[..], b"hello");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two failures, then the answer");
    for headers in seen.iter() {
        // The per-try timeout travels in both forms, rounded down.
        assert_eq!(headers["stormguard-budget-ms"], "2000");
        assert_eq!(headers["grpc-timeout"], "2000000u");
    }
}

#[tokio::test]
async fn invalid_argument_is_final() {
    let (addr, seen) = grpc_server(vec![Answer::TrailersOnly(Code::InvalidArgument)]).await;
    let status = call(addr, policy()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(seen.lock().unwrap().len(), 1);
}
