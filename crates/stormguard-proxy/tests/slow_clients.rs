//! Clients that are slow on purpose (issue 12): readers that never read a response, HTTP/2
//! streams whose window stays shut, bodies sent a byte at a time. None of them may take a
//! route down: each is cut off after `stream_idle_timeout` or `request_body_timeout`, and
//! while it waits it holds none of its upstream's `max_in_flight` places.
//!
//! Real sockets on 127.0.0.1 and real time, with timeouts of a few hundred milliseconds; every
//! attack is bounded in count (20 clients against `max_in_flight = 10`) and every wait in time.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// Attackers per test: twice the upstream's `max_in_flight`.
const ATTACKERS: usize = 20;
/// The bound of every wait that should end.
const BOUND: Duration = Duration::from_secs(10);

/// A response body of `left` bytes, made as it is read, 64 KiB at a time: an upstream that
/// would answer a never-reading client for as long as it is polled.
struct Large {
    left: usize,
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl http_body::Body for Large {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }
}

/// An upstream that answers `/large` with 64 MiB, and anything else with "ok" once it has
/// read the whole request body.
async fn large_upstream() -> Instance {
    upstream(|req: Request<Incoming>| async move {
        if req.uri().path() == "/large" {
            return Response::new(http_body_util::Either::Left(Large { left: 64 << 20 }));
        }
        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
        Response::new(http_body_util::Either::Right(http_body_util::Full::new(
            Bytes::from_static(b"ok"),
        )))
    })
    .await
}

/// A proxy to `upstream` with `max_in_flight = 10` and the given body timeouts.
async fn proxy_with(upstream: &Instance, stream_idle: Duration, request_body: Duration) -> Running {
    let mut config = single(&[upstream.addr]);
    config.upstreams.get_mut("api").unwrap().max_in_flight = 10;
    config.listen.stream_idle_timeout = stream_idle;
    config.listen.request_body_timeout = request_body;
    start(config).await
}

/// Sends plain GETs until one is answered 200; returns how long that took. Panics after
/// `BOUND`.
async fn until_served(proxy: &Running) -> Duration {
    let started = Instant::now();
    let client = client();
    let mut statuses = Vec::new();
    loop {
        let reply = get(&client, &proxy.url("/")).await;
        if reply.status == 200 {
            return started.elapsed();
        }
        statuses.push(reply.status);
        assert!(
            started.elapsed() < BOUND,
            "no request served in {BOUND:?}: {} answered {:?}",
            statuses.len(),
            &statuses[statuses.len().saturating_sub(5)..]
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// Waits until the upstream's in-flight count is 0 again: every slot given back.
async fn until_no_slot_held(proxy: &Running) {
    let started = Instant::now();
    while !proxy
        .metrics()
        .contains("stormguard_proxy_in_flight{upstream=\"api\"} 0")
    {
        assert!(
            started.elapsed() < BOUND,
            "slots still held: {}",
            proxy.metrics()
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// A connection that asks for `/large` and never reads: its receive buffer is small, so the
/// proxy's writes stop soon.
async fn never_reading(proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    stream
        .write_all(b"GET /large HTTP/1.1\r\nhost: api\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn http1_clients_that_never_read_lose_their_slots_after_stream_idle_timeout() {
    let upstream = large_upstream().await;
    let proxy = proxy_with(&upstream, ms(300), Duration::from_secs(30)).await;
    let mut readers = Vec::new();
    for _ in 0..ATTACKERS {
        readers.push(never_reading(proxy.addr).await);
    }
    // Every slot taken by a reader that does not read (the others were shed).
    while upstream.hits() < 10 {
        tokio::time::sleep(ms(10)).await;
    }
    let served = until_served(&proxy).await;
    println!("a request was served {served:?} after {ATTACKERS} readers stopped reading (stream_idle_timeout 300ms)");
    assert!(
        served < Duration::from_secs(2),
        "served only after {served:?}"
    );
    until_no_slot_held(&proxy).await;
    // The connections of the readers that held a slot were closed: what was sent, then the
    // end. (Those shed were answered 503 in full, and stay open until idle_timeout.)
    let mut closed = 0;
    for mut reader in readers {
        let mut head = [0u8; 12];
        reader.read_exact(&mut head).await.unwrap();
        if &head != b"HTTP/1.1 200" {
            continue;
        }
        let mut sink = Vec::new();
        let ended = timeout(BOUND, reader.read_to_end(&mut sink)).await;
        assert!(ended.is_ok(), "a reader's connection was left open");
        assert!(sink.len() < 64 << 20, "a reader got the whole body");
        closed += 1;
    }
    // At least the first max_in_flight (more, if one was cut before the last reader came).
    assert!(closed >= 10, "{closed} readers held a slot");
    // And counted: such an answer went down as a plain 2xx, in no series (a review).
    let cut = cut_for_stream_idle(&proxy);
    assert!(cut >= 10.0, "{cut} connections closed for stream-idle");
}

/// `stormguard_proxy_connections_closed_total{reason="stream-idle"}`.
fn cut_for_stream_idle(proxy: &Running) -> f64 {
    proxy
        .metrics()
        .lines()
        .find_map(|line| {
            line.strip_prefix("stormguard_proxy_connections_closed_total{reason=\"stream-idle\"} ")
        })
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn http2_streams_with_a_shut_window_lose_their_slots_after_stream_idle_timeout() {
    let upstream = large_upstream().await;
    let proxy = proxy_with(&upstream, ms(300), Duration::from_secs(30)).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    // Driving the connection answers the proxy's pings: the client is alive, only slow.
    let connection = tokio::spawn(connection);
    let mut streams = Vec::new();
    for _ in 0..ATTACKERS {
        let mut sender = sender.clone().ready().await.unwrap();
        let req = Request::get(format!("http://{}/large", proxy.addr))
            .body(())
            .unwrap();
        let (response, _) = sender.send_request(req, true).unwrap();
        streams.push(response);
    }
    let mut bodies = Vec::new();
    for response in streams {
        let response = timeout(BOUND, response).await.unwrap().unwrap();
        bodies.push((response.status(), response.into_body()));
    }
    let held = bodies.iter().filter(|(status, _)| *status == 200).count();
    assert!(
        held >= 10,
        "max_in_flight streams got the large answer: {held}"
    );
    let served = until_served(&proxy).await;
    println!("a request was served {served:?} after {ATTACKERS} HTTP/2 streams shut their window (stream_idle_timeout 300ms)");
    assert!(
        served < Duration::from_secs(2),
        "served only after {served:?}"
    );
    until_no_slot_held(&proxy).await;
    // Each stream was reset, not left open; the connection itself still stands.
    for (status, mut body) in bodies {
        let next = timeout(BOUND, body.data()).await;
        match next {
            Ok(Some(Err(error))) => assert!(error.is_reset(), "{status}: {error}"),
            other => panic!("{status}: the stream was not reset: {other:?}"),
        }
    }
    assert!(!connection.is_finished());
    let cut = cut_for_stream_idle(&proxy);
    assert!(
        cut >= held as f64,
        "{cut} streams reset for stream-idle, {held} held"
    );
}

/// Sends a POST announcing `length` bytes, then one byte every `every`; returns the proxy's
/// answer (or what it sent before closing), or panics after `BOUND`.
async fn trickle_body(proxy: SocketAddr, length: usize, every: Duration) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nhost: api\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writer = async {
        for _ in 0..length {
            tokio::time::sleep(every).await;
            if write.write_all(b"x").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let reader = async {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::select! {
        answer = reader => answer,
        () = writer => unreachable!(),
    };
    answer
}

#[tokio::test]
async fn slow_request_bodies_hold_no_slot_and_get_408_after_request_body_timeout() {
    let upstream = large_upstream().await;
    let proxy = proxy_with(&upstream, Duration::from_secs(60), ms(1000)).await;
    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| tokio::spawn(trickle_body(proxy.addr, 1000, ms(100))))
        .collect();
    tokio::time::sleep(ms(100)).await;
    // While the bodies trickle in, every other request is served.
    let client = client();
    for _ in 0..20 {
        let reply = get(&client, &proxy.url("/")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert!(
        started.elapsed() < ms(900),
        "the requests were meant to be sent during the attack"
    );
    for attacker in attackers {
        let answer = timeout(BOUND, attacker).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("stormguard-reason: body-timeout"),
            "{answer}"
        );
    }
    let cut = started.elapsed();
    println!("{ATTACKERS} trickled bodies answered 408 after {cut:?} (request_body_timeout 1s)");
    assert!(cut >= ms(900) && cut < Duration::from_secs(3), "{cut:?}");
    assert_eq!(upstream.hits(), 20, "no slow body reached the upstream");
}

#[tokio::test]
async fn a_request_body_that_pauses_longer_than_stream_idle_timeout_gets_408() {
    let upstream = large_upstream().await;
    let proxy = proxy_with(&upstream, ms(300), Duration::from_secs(30)).await;
    let started = Instant::now();
    let answer = timeout(BOUND, trickle_body(proxy.addr, 10, ms(500)))
        .await
        .unwrap();
    let cut = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("stormguard-reason: body-timeout"),
        "{answer}"
    );
    assert!(cut < Duration::from_secs(2), "{cut:?}");
    assert_eq!(upstream.hits(), 0);
}
