//! What a client may hold open, against real sockets on 127.0.0.1: a cap on connections,
//! HTTP/1.1 connections whose idle wait and head each have their own clock, and HTTP/2
//! connections that are closed when idle, cut off when a header block stalls, and told how
//! many streams they may open. Every wait is bounded; bounds are generous.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How long a test waits for what should happen; failures show long before.
const BOUND: Duration = Duration::from_secs(5);

const GET: &[u8] = b"GET /items HTTP/1.1\r\nhost: api.internal\r\n\r\n";

/// Sends `GET` on a kept-alive HTTP/1.1 connection and reads its answer.
async fn ask(stream: &mut TcpStream) {
    stream.write_all(GET).await.unwrap();
    timeout(BOUND, read_answer(stream))
        .await
        .expect("served in time");
}

/// A kept-alive HTTP/1.1 connection that has been served one request.
async fn served_connection(proxy: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    ask(&mut stream).await;
    stream
}

#[tokio::test]
async fn beyond_max_connections_a_client_waits_until_a_connection_ends() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.max_connections = 2;
    let proxy = start(config).await;
    let first = served_connection(proxy.addr).await;
    let _second = served_connection(proxy.addr).await;
    // The kernel completes the handshake (the accept queue), but the proxy does not accept.
    let mut third = TcpStream::connect(proxy.addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served at once: {early:?}"
    );
    assert!(proxy
        .metrics()
        .contains("stormguard_proxy_connections_limited_total 1"));
    drop(first);
    let answer = timeout(BOUND, read_answer(&mut third))
        .await
        .expect("served once the first connection ended");
    assert!(answer.contains("stormguard-attempts: 1"), "{answer}");
    assert_eq!(upstream.hits(), 3);
    assert!(proxy.metrics().contains("stormguard_proxy_connections 2"));
}

/// An HTTP/2 client connection (prior knowledge) to `proxy`, and its connection task, which
/// ends when the proxy closes the connection.
async fn h2_client(
    proxy: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    proxy: SocketAddr,
) -> u16 {
    let req = Request::get(format!("http://{proxy}/items"))
        .body(Empty::new())
        .unwrap();
    let response = timeout(BOUND, sender.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let slow = slow_upstream(ms(600)).await;
    let mut config = single(&[slow.addr]);
    config.listen.idle_timeout = ms(200);
    let proxy = start(config).await;
    let (mut sender, connection) = h2_client(proxy.addr).await;
    // A stream open three times the idle timeout is not idleness.
    assert_eq!(h2_get(&mut sender, proxy.addr).await, 200);
    let answered = Instant::now();
    let ended = timeout(BOUND, connection)
        .await
        .expect("the idle connection was closed in time");
    let idle = answered.elapsed();
    println!("closed {idle:?} after its last answer (idle_timeout 200ms)");
    assert!(ended.unwrap().is_ok(), "closed cleanly, with GOAWAY");
    assert!(idle >= ms(150), "closed before the idle timeout: {idle:?}");
    assert!(sender.is_closed());
}

#[tokio::test]
async fn an_http2_header_block_left_open_is_cut_off_after_header_read_timeout() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.header_read_timeout = ms(300);
    let proxy = start(config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
                                                             // HEADERS on stream 1, END_STREAM but not END_HEADERS: the block goes on in a
                                                             // CONTINUATION that never comes.
    bytes.extend_from_slice(&[0, 0, 1, 0x1, 0x1, 0, 0, 0, 1, 0x82]);
    stream.write_all(&bytes).await.unwrap();
    let cut = until_closed(&mut stream, BOUND).await;
    println!("cut off {cut:?} after its header block stalled (header_read_timeout 300ms)");
    assert!(cut >= ms(250), "cut off before the timeout: {cut:?}");
    assert_eq!(upstream.hits(), 0);
    // The proxy still serves.
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 200);
}

/// A proxy to `upstream` with HTTP/1.1 timeouts short enough for a test: a head within 200 ms,
/// idle for 1 s.
async fn with_http1_timeouts(upstream: &Instance) -> Running {
    let mut config = single(&[upstream.addr]);
    config.listen.header_read_timeout = ms(200);
    config.listen.idle_timeout = ms(1000);
    start(config).await
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_outlives_header_read_timeout_until_idle_timeout() {
    let upstream = ok_upstream().await;
    let proxy = with_http1_timeouts(&upstream).await;
    let mut stream = served_connection(proxy.addr).await;
    // Idle for more than twice header_read_timeout: a pool's next request is still served.
    tokio::time::sleep(ms(500)).await;
    ask(&mut stream).await;
    let idle = until_closed(&mut stream, BOUND).await;
    println!("an idle HTTP/1.1 connection closed after {idle:?} (idle_timeout 1s)");
    assert!(idle >= ms(900), "closed before idle_timeout: {idle:?}");
    assert_eq!(upstream.hits(), 2);
    // A connection that never sends a byte waits for idle_timeout too, when that is shorter
    // than first_byte_timeout (10 s here).
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let idle = until_closed(&mut silent, BOUND).await;
    println!("a silent connection closed after {idle:?} (idle_timeout 1s)");
    assert!(idle >= ms(900), "closed before idle_timeout: {idle:?}");
}

#[tokio::test]
async fn an_http1_head_after_a_long_idle_gets_the_whole_header_read_timeout() {
    let upstream = ok_upstream().await;
    let proxy = with_http1_timeouts(&upstream).await;
    let mut stream = served_connection(proxy.addr).await;
    // The head starts 100 ms before the idle deadline and ends 50 ms after it.
    tokio::time::sleep(ms(900)).await;
    let (start, rest) = GET.split_at(10);
    stream.write_all(start).await.unwrap();
    tokio::time::sleep(ms(150)).await;
    stream.write_all(rest).await.unwrap();
    timeout(BOUND, read_answer(&mut stream))
        .await
        .expect("served in time");
    // A head that stalls after a long idle is cut a whole header_read_timeout after its first
    // byte.
    tokio::time::sleep(ms(900)).await;
    stream.write_all(start).await.unwrap();
    let cut = until_closed(&mut stream, BOUND).await;
    println!("a stalled head was cut off {cut:?} after its first byte (header_read_timeout 200ms)");
    assert!(
        cut >= ms(150),
        "cut off before header_read_timeout: {cut:?}"
    );
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn an_http1_request_slower_than_both_timeouts_is_not_cut() {
    let upstream = slow_upstream(ms(1500)).await;
    let proxy = with_http1_timeouts(&upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /items HTTP/1.1\r\nhost: api.internal\r\ncontent-length: 4\r\n\r\n")
        .await
        .unwrap();
    // The body comes after the head has reached the proxy: no clock runs on it either.
    tokio::time::sleep(ms(300)).await;
    stream.write_all(b"body").await.unwrap();
    let answer = read_slow_answer(&mut stream).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn http2_clients_are_told_the_stream_limit() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.http2_max_concurrent_streams = 7;
    let proxy = start(config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
    stream.write_all(&hello).await.unwrap();
    // The server's first frame is its SETTINGS: 6-byte entries of an id and a value.
    let mut head = [0u8; 9];
    timeout(BOUND, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[3], 0x4, "SETTINGS first");
    let mut settings = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
    stream.read_exact(&mut settings).await.unwrap();
    let max_concurrent_streams = settings
        .chunks(6)
        .find(|entry| entry[..2] == [0, 0x3])
        .map(|entry| u32::from_be_bytes(entry[2..].try_into().unwrap()));
    assert_eq!(max_concurrent_streams, Some(7));
}

/// Reads until a whole answer from `slow_upstream` ("slow") has come; returns it.
async fn read_slow_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(BOUND, async {
        while !answer.ends_with(b"slow") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "cut off: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered in time");
    answer
}

#[tokio::test]
async fn an_http1_head_pipelined_behind_a_request_and_left_unfinished_is_cut_off() {
    let upstream = slow_upstream(ms(400)).await;
    let proxy = with_http1_timeouts(&upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    // While the first request is in flight, the start of the next head, which never ends.
    tokio::time::sleep(ms(100)).await;
    stream.write_all(&GET[..10]).await.unwrap();
    read_slow_answer(&mut stream).await;
    let cut = until_closed(&mut stream, BOUND).await;
    println!("an unfinished pipelined head was cut off {cut:?} after the answer before it");
    assert!(
        cut < ms(800),
        "held until idle_timeout (1s), not header_read_timeout (200ms): {cut:?}"
    );
}

/// `listen.max_headers` bounds an HTTP/2 request's headers too (HTTP/2 bounds only the header
/// block's bytes): one over it is answered 431 `too-many-headers` and never reaches the
/// upstream, where 110 went upstream past a bound of 50 (a review).
#[tokio::test]
async fn an_http2_request_with_more_headers_than_max_headers_gets_431() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.max_headers = 50;
    let proxy = start(config).await;
    let (mut sender, _connection) = h2_client(proxy.addr).await;
    let mut send = |headers: usize| {
        let mut req = Request::get(format!("http://{}/items", proxy.addr));
        for i in 0..headers {
            req = req.header(format!("x-h{i}"), "v");
        }
        sender.send_request(req.body(Empty::new()).unwrap())
    };
    let within = timeout(BOUND, send(49)).await.unwrap().unwrap();
    assert_eq!(within.status(), 200);
    let over = timeout(BOUND, send(60)).await.unwrap().unwrap();
    assert_eq!(over.status(), 431);
    assert_eq!(over.headers()["stormguard-reason"], "too-many-headers");
    assert_eq!(upstream.hits(), 1);
    // Cookie crumbs (RFC 9113 §8.2.3: each cookie a field of its own) count as the one
    // `Cookie` they are (a review: 60 cookies made a request of 5 headers 431).
    let mut req = Request::get(format!("http://{}/items", proxy.addr));
    for i in 0..60 {
        req = req.header("cookie", format!("c{i}=v"));
    }
    let crumbs = timeout(BOUND, sender.send_request(req.body(Empty::new()).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(crumbs.status(), 200);
    assert_eq!(upstream.hits(), 2);
    // And they reach the HTTP/1.1 upstream as one field, joined by "; " (RFC 9113 §8.2.3:
    // they went as 60 Cookie lines).
    let head = &upstream.heads()[1];
    let cookies: Vec<_> = head.get_all("cookie").iter().collect();
    assert_eq!(cookies.len(), 1, "{head:?}");
    let expected: Vec<String> = (0..60).map(|i| format!("c{i}=v")).collect();
    assert_eq!(cookies[0], expected.join("; ").as_str());
}

/// An HTTP/2 client idle past `idle_timeout` that never answers the GOAWAY's PING is closed a
/// second later, not when the keep-alive gives up (a review: with a long keep-alive interval,
/// such a client kept its connection, and its place under max_connections, for an hour).
#[tokio::test]
async fn an_idle_http2_client_deaf_to_goaway_is_closed_all_the_same() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.idle_timeout = ms(300);
    config.listen.http2_keep_alive_interval = Duration::from_secs(3600);
    let proxy = start(config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, then nothing at all
    stream.write_all(&bytes).await.unwrap();
    let closed = until_closed(&mut stream, Duration::from_secs(10)).await;
    println!("closed {closed:?} after its preface (idle_timeout 300ms)");
    assert!(
        closed >= ms(250),
        "closed before the idle timeout: {closed:?}"
    );
    assert!(closed < Duration::from_secs(5), "held {closed:?}");
}

/// An HTTP/2 client that breaks the protocol is closed by the HTTP/2 layer with GOAWAY, and
/// counted (`connections_closed_total{reason="http2-protocol"}`): it was counted nowhere, as
/// were the floods that layer's own guards stop (a review).
#[tokio::test]
async fn an_http2_client_that_breaks_the_protocol_is_counted() {
    let upstream = ok_upstream().await;
    let proxy = start(single(&[upstream.addr])).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
    bytes.extend_from_slice(&[0, 0, 1, 0x0, 0, 0, 0, 0, 0, b'x']); // DATA on stream 0
    stream.write_all(&bytes).await.unwrap();
    until_closed(&mut stream, BOUND).await;
    let counted = || {
        proxy
            .metrics()
            .lines()
            .find_map(|line| {
                line.strip_prefix(
                    "stormguard_proxy_connections_closed_total{reason=\"http2-protocol\"} ",
                )
                .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let until = tokio::time::Instant::now() + BOUND;
    while counted() != "1" && tokio::time::Instant::now() < until {
        tokio::time::sleep(ms(10)).await;
    }
    assert_eq!(counted(), "1", "{}", proxy.metrics());
    assert_eq!(upstream.hits(), 0);
}
