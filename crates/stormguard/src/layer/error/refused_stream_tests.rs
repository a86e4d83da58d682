//! HTTP/2 streams a server refused, against a server on 127.0.0.1 that writes its frames by
//! hand, so that each case is exactly the frame sequence RFC 9113 describes: hyper's client
//! turns them into the errors `classify_error` sees in production.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const NO_ERROR: u32 = 0x0;
const INTERNAL_ERROR: u32 = 0x2;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, 0];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn go_away(last_stream: u32, code: u32) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend_from_slice(&code.to_be_bytes());
    frame(GOAWAY, 0, &payload)
}

/// A server that reads the client's preface and frames until the first request's HEADERS,
/// then writes its SETTINGS and what `answer(stream id)` gives; closes the connection after
/// when `close` is set.
async fn server(answer: fn(u32) -> Vec<u8>, close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        stream.read_exact(&mut preface).await.unwrap();
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let id = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            if head[3] == HEADERS {
                let mut out = frame(SETTINGS, 0, &[]);
                out.extend(answer(id));
                stream.write_all(&out).await.unwrap();
                break;
            }
        }
        if !close {
            // Held open until the client is done, so only the frames above tell it anything.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    });
    addr
}

/// What hyper's HTTP/2 client returns for one POST to a server that answers with `answer`.
async fn error_of(answer: fn(u32) -> Vec<u8>, close: bool) -> AttemptResult {
    let addr = server(answer, close).await;
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let req = Request::post("http://api.test/orders")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error: BoxError = Box::new(sender.send_request(req).await.unwrap_err());
    classify_error(&*error)
}

#[tokio::test]
async fn a_stream_reset_with_refused_stream_was_not_sent() {
    let refused = |id| frame(RST_STREAM, id, &REFUSED_STREAM.to_be_bytes());
    assert_eq!(error_of(refused, false).await, AttemptResult::RefusedStream);
}

#[tokio::test]
async fn a_goaway_is_taken_as_sent_since_its_error_names_no_stream() {
    // Stream 1 is above the last stream id 0, so it was not processed; but the error that
    // reaches the request cannot say so (see `is_refused_stream`), and a POST must not run twice.
    assert_eq!(
        error_of(|_| go_away(0, NO_ERROR), false).await,
        AttemptResult::ErrorAfterWritten
    );
}

#[tokio::test]
async fn a_stream_reset_for_another_reason_may_have_been_processed() {
    let reset = |id| frame(RST_STREAM, id, &INTERNAL_ERROR.to_be_bytes());
    assert_eq!(
        error_of(reset, false).await,
        AttemptResult::ErrorAfterWritten
    );
}

#[tokio::test]
async fn a_stream_the_goaway_kept_and_the_connection_then_lost_may_have_been_processed() {
    // The server took stream 1 (last stream id 1) and closed before answering it.
    assert_eq!(
        error_of(|id| go_away(id, NO_ERROR), true).await,
        AttemptResult::ErrorAfterWritten
    );
}
