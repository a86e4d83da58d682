//! gRPC through the proxy against real sockets: an h2c client, the proxy, and upstreams in the
//! test process that speak gRPC framing by hand (a 5-byte prefix per message, the status in
//! trailers, or in the headers of a trailers-only answer), so no gRPC library is involved.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stormguard::deadline::parse_grpc_timeout;
use stormguard_proxy::config::Protocol;
use support::*;
use tokio::net::TcpStream;

/// One gRPC message: not compressed, its length, the bytes.
fn message(bytes: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + bytes.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(bytes.len()).unwrap());
    framed.put_slice(bytes);
    framed.freeze()
}

/// The bytes of the one message in `framed`.
fn unframe(framed: &[u8]) -> &[u8] {
    assert_eq!(framed[0], 0, "not compressed");
    let len = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
    assert_eq!(framed.len(), 5 + len, "one whole message");
    &framed[5..]
}

fn grpc<B>(body: B) -> Response<B> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/grpc".parse().unwrap(),
    );
    response
}

/// A gRPC server's answer to `Echo/Say`: the message back with "hello, ", then `grpc-status:
/// 0` and a `grpc-message` in the trailers.
async fn echo(
    req: Request<Incoming>,
) -> Response<impl http_body::Body<Data = Bytes, Error = Infallible>> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut said = b"hello, ".to_vec();
    said.extend_from_slice(unframe(&body));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers.insert("grpc-message", "all%20good".parse().unwrap());
    grpc(Full::new(message(&said)).with_trailers(async { Some(Ok(trailers)) }))
}

/// A gRPC server that is down: trailers-only, HTTP 200 with `grpc-status: 14` (UNAVAILABLE)
/// in the headers and no body.
async fn unavailable(_req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let mut response = grpc(Empty::new());
    let headers = response.headers_mut();
    headers.insert("grpc-status", "14".parse().unwrap());
    headers.insert("grpc-message", "draining".parse().unwrap());
    response
}

/// What a gRPC client got back.
struct Answer {
    status: u16,
    headers: HeaderMap,
    message: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    fn attempts(&self) -> &str {
        self.headers["stormguard-attempts"].to_str().unwrap()
    }

    /// Asserts the upstream's OK came back whole; returns whether it took a retry.
    #[track_caller]
    fn assert_ok(&self) -> bool {
        assert_eq!(self.status, 200);
        let trailers_only = self.headers.get("grpc-status");
        assert_eq!(trailers_only, None, "not a trailers-only answer");
        assert_eq!(&self.message[..], b"hello, proxy");
        assert_eq!(self.trailers.as_ref().unwrap()["grpc-status"], "0");
        self.attempts() == "2"
    }
}

/// A unary call `test.Echo/Say("proxy")` from an h2c client (prior knowledge) through the proxy
/// at `proxy`, with a `grpc-timeout` of one second.
async fn say(proxy: SocketAddr) -> Answer {
    say_with(proxy, Full::new(message(b"proxy"))).await
}

/// The message of [`say`] in two DATA frames, the second `after` the first, as a client that
/// streams its request sends it.
struct SplitMessage {
    frames: Vec<Bytes>,
    after: Duration,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

fn split_message(after: Duration) -> SplitMessage {
    let whole = message(b"proxy");
    SplitMessage {
        // Popped from the end.
        frames: vec![whole.slice(8..), whole.slice(..8)],
        after,
        pause: None,
    }
}

impl http_body::Body for SplitMessage {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.frames.len() == 1 {
            let after = self.after;
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
            std::task::ready!(std::future::Future::poll(pause.as_mut(), cx));
        }
        std::task::Poll::Ready(self.frames.pop().map(|f| Ok(http_body::Frame::data(f))))
    }
}

/// [`say`] with its message sent as `body`.
async fn say_with<B>(proxy: SocketAddr, body: B) -> Answer
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Unpin + 'static,
{
    let stream = TcpStream::connect(proxy).await.unwrap();
    // As gRPC clients do: without it, the message waits behind the head for a delayed ACK.
    stream.set_nodelay(true).unwrap();
    let io = TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let req = Request::post(format!("http://{proxy}/test.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "1S")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap();
    let trailers = body.trailers().cloned();
    let body = body.to_bytes();
    let message = if body.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(unframe(&body))
    };
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        message,
        trailers,
    }
}

/// Twenty calls, each answered OK; returns how many took a retry.
async fn twenty_calls(proxy: SocketAddr) -> usize {
    let mut retried = 0;
    for _ in 0..20 {
        retried += usize::from(say(proxy).await.assert_ok());
    }
    retried
}

#[tokio::test]
async fn a_unary_call_gets_its_message_and_trailers_and_a_smaller_grpc_timeout_upstream() {
    let upstream = h2_upstream(echo).await;
    // The upstream's protocol is HTTP/1.1: gRPC goes over HTTP/2 all the same.
    let proxy = start(single(&[upstream.addr])).await;
    let answer = say(proxy.addr).await;
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.message[..], b"hello, proxy");
    let trailers = answer
        .trailers
        .as_ref()
        .expect("the upstream's trailers came through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "all%20good");
    assert_eq!(answer.attempts(), "1");
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1);
    let sent = parse_grpc_timeout(heads[0]["grpc-timeout"].to_str().unwrap()).unwrap();
    println!("the client sent grpc-timeout 1S; the upstream saw {sent:?}");
    assert!(sent < Duration::from_secs(1), "{sent:?}");
    assert!(sent > Duration::from_millis(500), "{sent:?}");
    assert_eq!(heads[0]["te"], "trailers");
}

#[tokio::test]
async fn a_trailers_only_unavailable_is_retried_on_the_other_instance() {
    let down = h2_upstream(unavailable).await;
    let up = h2_upstream(echo).await;
    let proxy = start(single(&[down.addr, up.addr])).await;
    let retried = twenty_calls(proxy.addr).await;
    assert_eq!(
        up.hits(),
        20,
        "every call was answered by the instance that is up"
    );
    assert!(
        down.hits() > 0,
        "some calls went to the instance that is down first"
    );
    assert_eq!(
        retried,
        down.hits(),
        "each of those was retried once, elsewhere"
    );
}

#[tokio::test]
async fn a_call_to_a_refused_instance_is_retried_elsewhere() {
    let up = h2_upstream(echo).await;
    let refused = refusing_address().await;
    let proxy = start(single(&[refused, up.addr])).await;
    let retried = twenty_calls(proxy.addr).await;
    assert_eq!(
        up.hits(),
        20,
        "every call reached the upstream exactly once"
    );
    assert!(retried > 0, "some calls were refused first and retried");
}

#[tokio::test]
async fn protocol_http2_sends_a_plain_get_over_h2c() {
    let upstream = h2_upstream(|req: Request<Incoming>| async move {
        let answer = format!("{:?} {}", req.version(), req.uri().path());
        Response::new(Full::new(Bytes::from(answer)))
    })
    .await;
    let mut config = single(&[upstream.addr]);
    config.upstreams.get_mut("api").unwrap().protocol = Protocol::Http2;
    let proxy = start(config).await;
    // An HTTP/1.1 client: the proxy speaks HTTP/2 upstream for it.
    let reply = get(&client(), &proxy.url("/items")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"HTTP/2.0 /items");
    assert_eq!(reply.header("stormguard-attempts"), Some("1"));
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn a_call_whose_client_is_still_sending_is_retried_from_its_copy_and_the_rest() {
    // The client sends the second half of its message 50 ms after the first: the first attempt
    // has the first half at once, and the instance that is down answers UNAVAILABLE before
    // the rest is there. The retry sends the copy of the first half, then the rest as it comes.
    let down = h2_upstream(unavailable).await;
    let up = h2_upstream(echo).await;
    let proxy = start(single(&[down.addr, up.addr])).await;
    let mut retried = 0;
    for _ in 0..20 {
        let answer = say_with(proxy.addr, split_message(Duration::from_millis(50))).await;
        retried += usize::from(answer.assert_ok());
    }
    assert_eq!(
        up.hits(),
        20,
        "every call was answered by the instance that is up"
    );
    assert!(
        down.hits() > 0,
        "some calls went to the instance that is down first"
    );
    assert_eq!(
        retried,
        down.hits(),
        "each of those was retried once, elsewhere"
    );
}
