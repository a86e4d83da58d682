//! Clients that try to make the proxy work or hold for nothing, against real sockets on
//! 127.0.0.1: HTTP/2 streams opened and reset at once, bare connects that send nothing, and
//! request heads left unfinished. Every attack is bounded in count and time; bounds are
//! generous, and what each test asserts is far from what the attack got before the fix.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// How long a test waits for what should happen; failures show long before.
const BOUND: Duration = Duration::from_secs(5);

const GET: &[u8] = b"GET /items HTTP/1.1\r\nhost: api.internal\r\n\r\n";

/// An HTTP/1.1 upstream that answers "ok" `delay` after each request head, counting the
/// connections it accepts and the requests it receives.
struct Counting {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn counting_upstream(delay: Duration) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = Counting {
        addr: listener.local_addr().unwrap(),
        connections: Arc::default(),
        requests: Arc::default(),
    };
    let (connections, requests) = (upstream.connections.clone(), upstream.requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let requests = requests.clone();
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                requests.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(reply(200, "ok"))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    upstream
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

/// `GET http://api.internal/` in HPACK: static-table method, scheme and path, and a literal
/// authority that is not indexed.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 12];
    block.extend_from_slice(b"api.internal");
    block
}

/// Reads the server's frames until the connection ends; whether a GOAWAY came, through
/// `goaway`, and the server's first SETTINGS through `settings`.
async fn read_frames(
    mut read: tokio::net::tcp::OwnedReadHalf,
    settings: tokio::sync::oneshot::Sender<()>,
    goaway: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut settings = Some(settings);
    let mut head = [0u8; 9];
    loop {
        if read.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if read.read_exact(&mut payload).await.is_err() {
            return;
        }
        match head[3] {
            SETTINGS if head[4] & 0x1 == 0 => {
                if let Some(settings) = settings.take() {
                    let _ = settings.send(());
                }
            }
            GOAWAY => goaway.store(true, Ordering::SeqCst),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_http2_client_that_resets_every_stream_it_opens_is_sent_goaway() {
    // Answers come 5 ms after each request; the client resets each 2 ms after opening it.
    let upstream = counting_upstream(ms(5)).await;
    let proxy = start(single(&[upstream.addr])).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let goaway = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (settings, got_settings) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_frames(read, settings, goaway.clone()));
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    write.write_all(&hello).await.unwrap();
    timeout(BOUND, got_settings).await.unwrap().unwrap();
    write
        .write_all(&frame(SETTINGS, 0x1, 0, &[]))
        .await
        .unwrap();
    // Batches of ten HEADERS, then their ten RST_STREAM (CANCEL), 2 ms apart, GOAWAY or not:
    // at most 2,000 streams, or 10 s, or until the proxy closes the connection.
    let block = get_block();
    let start = Instant::now();
    let mut opened = 0u32;
    while opened < 2_000 && start.elapsed() < Duration::from_secs(10) && !reader.is_finished() {
        let ids: Vec<u32> = (0..10).map(|i| 2 * (opened + i) + 1).collect();
        let mut batch = Vec::new();
        for &id in &ids {
            batch.extend(frame(HEADERS, 0x5, id, &block)); // END_STREAM | END_HEADERS
        }
        if write.write_all(&batch).await.is_err() {
            break;
        }
        opened += 10;
        tokio::time::sleep(ms(2)).await;
        let mut resets = Vec::new();
        for &id in &ids {
            resets.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
        }
        if write.write_all(&resets).await.is_err() {
            break;
        }
        tokio::time::sleep(ms(2)).await;
    }
    // The answers of the last requests come, unread.
    tokio::time::sleep(ms(300)).await;
    let connections = upstream.connections.load(Ordering::SeqCst);
    let requests = upstream.requests.load(Ordering::SeqCst);
    println!(
        "{opened} streams opened and reset in {:?}: {requests} upstream requests on \
         {connections} upstream connections, GOAWAY {}",
        start.elapsed(),
        goaway.load(Ordering::SeqCst)
    );
    assert!(
        goaway.load(Ordering::SeqCst),
        "no GOAWAY after {opened} resets"
    );
    assert!(requests <= 300, "{requests} requests reached the upstream");
    assert!(
        connections <= 60,
        "{connections} upstream connections for {requests} cancelled requests"
    );
    assert!(proxy
        .metrics()
        .contains("stormguard_proxy_connections_closed_total{reason=\"stream-resets\"} 1"));
    // The connection was closed soon after the GOAWAY, the attack ignoring it; the proxy
    // serves others.
    assert!(
        reader.is_finished(),
        "still open after {:?}",
        start.elapsed()
    );
    assert_eq!(get(&client(), &proxy.url("/items")).await.status, 200);
}

#[tokio::test]
async fn silent_connections_at_max_connections_give_way_to_a_client() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.max_connections = 10;
    let proxy = start(config).await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Every place is held by a connection that says nothing; a client comes.
    tokio::time::sleep(ms(100)).await;
    let start = Instant::now();
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(GET).await.unwrap();
    let answer = timeout(BOUND, read_answer(&mut client))
        .await
        .expect("served while ten silent connections were open");
    let waited = start.elapsed();
    println!("served {waited:?} after connecting, max_connections = 10 held by silent connects");
    assert!(answer.contains("stormguard-attempts: 1"), "{answer}");
    assert!(waited < ms(2500), "waited {waited:?}");
    assert!(proxy
        .metrics()
        .contains("stormguard_proxy_connections_closed_total{reason=\"silent-at-limit\"} 1"));
    // The oldest silent connection was the one closed.
    assert!(until_closed(&mut silent[0], BOUND).await < BOUND);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_first_byte_timeout() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.first_byte_timeout = ms(300);
    config.listen.idle_timeout = ms(10_000);
    let proxy = start(config).await;
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let closed = until_closed(&mut silent, BOUND).await;
    println!("a silent connection closed after {closed:?} (first_byte_timeout 300ms)");
    assert!(
        closed >= ms(250),
        "closed before first_byte_timeout: {closed:?}"
    );
    assert!(closed < ms(2000), "held {closed:?}");
    assert!(proxy
        .metrics()
        .contains("stormguard_proxy_connections_closed_total{reason=\"first-byte-timeout\"} 1"));
    // A client that speaks at once is served, and its idle wait is idle_timeout's.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(GET).await.unwrap();
    timeout(BOUND, read_answer(&mut client)).await.unwrap();
    tokio::time::sleep(ms(500)).await;
    client.write_all(GET).await.unwrap();
    timeout(BOUND, read_answer(&mut client)).await.unwrap();
}

#[tokio::test]
async fn stalled_heads_beyond_the_budget_are_cut_off_at_once() {
    let upstream = ok_upstream().await;
    let mut config = single(&[upstream.addr]);
    config.listen.max_unfinished_header_bytes = 256 * 1024;
    config.listen.header_read_timeout = Duration::from_secs(30);
    let proxy = start(config).await;
    // Ten connections each send 60 KB of a head and stop: four fit in 256 KiB.
    let mut head = b"GET /items HTTP/1.1\r\nhost: api.internal\r\nx-pad: ".to_vec();
    head.resize(60_000, b'a');
    let mut stalled = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(&head).await.unwrap();
        // Whether the proxy closes it within a second, long before header_read_timeout.
        stalled.spawn(async move {
            let mut buf = [0u8; 1024];
            let read = timeout(ms(1000), stream.read(&mut buf)).await;
            assert!(!matches!(read, Ok(Ok(1..))), "answered an unfinished head");
            (read.is_ok(), stream)
        });
    }
    let mut closed = 0;
    let mut held = Vec::new();
    while let Some(outcome) = stalled.join_next().await {
        let (was_closed, stream) = outcome.unwrap();
        closed += usize::from(was_closed);
        held.push(stream);
    }
    println!("{closed} of 10 stalled 60 KB heads closed at once (budget 256 KiB)");
    assert!(closed >= 6, "only {closed} closed");
    let metrics = proxy.metrics();
    assert!(
        metrics.contains(&format!(
            "stormguard_proxy_connections_closed_total{{reason=\"header-budget\"}} {closed}"
        )),
        "{metrics}"
    );
    // A head that comes whole is never counted: served while the budget is full.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(GET).await.unwrap();
    timeout(BOUND, read_answer(&mut client)).await.unwrap();
}
