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

/// Reads from `client` until what came ends with `end`, the connection closes, or 5 s pass;
/// what came, and whether it ended with `end`.
async fn read_until(client: &mut TcpStream, end: &[u8]) -> (String, bool) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.ends_with(end) {
            let Ok(n @ 1..) = client.read(&mut buf).await else {
                break;
            };
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let ended = answer.ends_with(end);
    (String::from_utf8_lossy(&answer).into_owned(), ended)
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
    let (answer, ended) = read_until(&mut client, b"big!").await;
    assert!(ended, "no answer within 5 s: {answer:?}");
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

/// An answer framed both ways is framed by its `Transfer-Encoding`, and its `Content-Length`
/// does not reach the client (RFC 9112 §6.3): kept beside the body the proxy sends in its own
/// framing, it made the client wait for 50 bytes of 5 (a review: an empty reply with one
/// client, a truncated body with the other, logged as a complete 200).
#[tokio::test]
async fn an_answer_framed_both_ways_reaches_the_client_by_its_chunks() {
    let upstream = answering_at_once(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 50\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let proxy = start(single(&[upstream])).await;
    for _ in 0..2 {
        let reply = get(&client(), &proxy.url("/")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(&reply.body[..], b"hello", "{reply:?}");
        assert_ne!(reply.header("content-length"), Some("50"), "{reply:?}");
    }
    // On the wire too, to a client that reads the head itself.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until(&mut client, b"\r\n0\r\n\r\n").await;
    assert!(!answer.contains("content-length: 50"), "{answer}");
    assert!(answer.contains("hello"), "{answer}");
}

/// An upstream that keeps what it read of one request, until the end of a chunked body (its
/// last chunk and trailers), and answers 200.
async fn keeping_one_chunked_request() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then a body that ends with the last chunk's "0\r\n" and an empty line; or
        // whatever came before the request stalled for a second (a body framed otherwise).
        while !(read.windows(5).any(|w| w == b"\r\n0\r\n") && read.ends_with(b"\r\n\r\n")) {
            let next = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf));
            let Ok(Ok(n @ 1..)) = next.await else {
                break;
            };
            read.extend_from_slice(&buf[..n]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = tx.send(read);
    });
    (addr, rx)
}

/// A chunked request's trailers reach the upstream when its head announced them (`Trailer`),
/// as hyper's client sends them; one the head did not announce, or one that may never be a
/// trailer, does not.
#[tokio::test]
async fn announced_request_trailers_reach_the_upstream() {
    let (upstream, seen) = keeping_one_chunked_request().await;
    let proxy = start(single(&[upstream])).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"POST /upload HTTP/1.1\r\nhost: api\r\ntransfer-encoding: chunked\r\n\
              trailer: x-checksum, content-length\r\n\r\n\
              5\r\nhello\r\n0\r\nx-checksum: 42\r\nx-other: 1\r\ncontent-length: 9\r\n\r\n",
        )
        .await
        .unwrap();
    let (answer, ended) = read_until(&mut client, b"ok").await;
    assert!(ended, "no answer within 5 s: {answer:?}");
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("the upstream read the request")
        .expect("the upstream kept it");
    let seen = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let body = &seen[seen.find("\r\n\r\n").expect("a head") + 4..];
    assert!(body.contains("hello"), "{seen}");
    assert!(body.ends_with("0\r\nx-checksum: 42\r\n\r\n"), "{seen}");
}

/// A response's trailers come back to an HTTP/1.1 client when the upstream announced them
/// (`Trailer`), the announcement with them.
#[tokio::test]
async fn announced_response_trailers_reach_the_client() {
    let upstream = answering_at_once(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nx-checksum: 7\r\n\r\n",
    )
    .await;
    let proxy = start(single(&[upstream])).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: api\r\nte: trailers\r\n\r\n")
        .await
        .unwrap();
    let (answer, ended) = read_until(&mut client, b"0\r\nx-checksum: 7\r\n\r\n").await;
    let answer = answer.to_ascii_lowercase();
    assert!(ended, "no trailers within 5 s: {answer:?}");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("\r\ntrailer: x-checksum\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n0\r\nx-checksum: 7\r\n\r\n"),
        "{answer}"
    );
}

/// An upstream that answers a head and part of the body it announces, then closes.
async fn breaking_off() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n @ 1..) = stream.read(&mut buf).await else {
                        return;
                    };
                    read.extend_from_slice(&buf[..n]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A body the upstream breaks off after its head went to the client is too late to retry, and
/// was counted nowhere (the request a plain 2xx): it is counted by upstream (a review).
#[tokio::test]
async fn a_body_the_upstream_breaks_off_is_counted() {
    let upstream = breaking_off().await;
    let proxy = start(single(&[upstream])).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: api\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until(&mut client, b"never comes").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.ends_with("only ten b"), "{answer}");
    let broken = |text: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(
                    "stormguard_proxy_upstream_bodies_broken_total{upstream=\"api\"} ",
                )
            })
            .map(str::to_string)
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = proxy.metrics();
        match broken(&text).as_deref() {
            Some("1") => break,
            other if tokio::time::Instant::now() >= until => panic!("{other:?}\n{text}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
