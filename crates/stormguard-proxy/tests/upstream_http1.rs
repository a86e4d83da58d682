//! What an HTTP/1.1 upstream may do that a client library rarely sees, through the proxy:
//! answer before the request's body has all come, and frame its answer in chunks. `.ci/run`
//! runs these with both HTTP/1.1 clients (`http1_client`), as every proxy test.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers every request with `answer` as soon as its head has come, without
/// reading its body (what follows a head is searched for the next head).
async fn answering_at_once(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = Vec::new();
                loop {
                    while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        read.drain(..end + 4);
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    let Ok(n @ 1..) = stream.read(&mut buf).await else {
                        return;
                    };
                    read.extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_answer_before_the_request_body_ends_is_passed_on() {
    let upstream =
        answering_at_once(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!").await;
    let proxy = start(single(&[upstream])).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // More than the retry layer keeps, so the proxy forwards before the body ends; then the
    // client stalls with most of its announced megabyte unsent.
    let head = "POST / HTTP/1.1\r\nhost: api\r\ncontent-length: 1048576\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&vec![b'x'; 200 * 1024]).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.ends_with(b"big!") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer within 5 s: {answer:?}");
    assert_eq!(status_of(&answer), 413, "{answer}");
}

#[tokio::test]
async fn a_chunked_answer_arrives_whole() {
    let upstream = answering_at_once(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kind: chunked\r\n\r\n\
          5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    .await;
    let proxy = start(single(&[upstream])).await;
    for _ in 0..3 {
        let reply = get(&client(), &proxy.url("/")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("x-kind"), Some("chunked"));
        assert_eq!(&reply.body[..], b"hello, world");
    }
}
