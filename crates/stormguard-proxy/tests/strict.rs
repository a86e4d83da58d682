//! What the proxy takes and passes on strictly, as attackers on 127.0.0.1 tried it: a request's
//! host (one `Host`, no `user@`), the headers `Connection` may not remove, the proxy's own
//! headers in an upstream's answer, an upstream's 101, and an HTTP/1.0 upstream behind an
//! HTTP/1.1 client.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use stormguard_proxy::config::RouteMatch;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One upstream `api` with two routes to it: `internal` for the host `api.internal`, then
/// `any` for every request.
async fn two_routes(up: &Instance) -> Running {
    let mut internal = route("internal", "api");
    internal.matcher = RouteMatch {
        path_prefix: None,
        host: Some("api.internal".into()),
    };
    start(config(
        &[("api", &[up.addr])],
        vec![internal, route("any", "api")],
    ))
    .await
}

#[tokio::test]
async fn a_request_without_exactly_one_plain_host_gets_400_and_reaches_no_upstream() {
    let up = ok_upstream().await;
    let proxy = two_routes(&up).await;
    for (what, request) in [
        (
            "two Host headers",
            "GET / HTTP/1.1\r\nHost: api.internal\r\nHost: other\r\nConnection: close\r\n\r\n",
        ),
        (
            "two Host headers beside an absolute-form target",
            "GET http://api.internal/ HTTP/1.1\r\nHost: api.internal\r\nHost: other\r\n\
             Connection: close\r\n\r\n",
        ),
        (
            "HTTP/1.1 without Host",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        (
            "a user name in the target's authority",
            "GET http://user@api.internal/ HTTP/1.1\r\nHost: api.internal\r\n\
             Connection: close\r\n\r\n",
        ),
        (
            "a user name in Host",
            "GET / HTTP/1.1\r\nHost: user@api.internal\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let answer = raw(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), 400, "{what}: {answer}");
        assert!(
            answer.contains("stormguard-reason: bad-host\r\n"),
            "{what}: {answer}"
        );
    }
    assert_eq!(up.hits(), 0, "none of them reached the upstream");
    assert!(proxy.metrics().contains(
        "stormguard_proxy_requests_total{route=\"\",class=\"4xx\",reason=\"bad-host\"} 5"
    ));
    // HTTP/1.0 may go without Host; an absolute-form target's authority wins over its Host.
    for (what, request) in [
        ("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n"),
        (
            "an absolute-form target and a Host that differs",
            "GET http://api.internal/ HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let answer = raw(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), 200, "{what}: {answer}");
    }
    let heads = up.heads();
    assert_eq!(heads.len(), 2);
    assert_eq!(
        heads[1].get_all("host").iter().collect::<Vec<_>>(),
        ["api.internal"]
    );
}

/// Sends one HTTP/2 request made of the HPACK `block` (stream 1, no Huffman coding) and returns
/// its status, or 0 if the stream was reset.
async fn h2_status(addr: SocketAddr, block: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    let len = u32::try_from(block.len()).unwrap().to_be_bytes();
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&[len[1], len[2], len[3], 1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(block);
    stream.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            match (head[3], stream_id) {
                (1, 1) => {
                    // An indexed `:status` from the static table (RFC 7541 appendix A).
                    return match payload[0] {
                        0x88 => 200,
                        0x8c => 400,
                        0x8d => 404,
                        other => panic!("status not indexed: {other:#x} in {payload:?}"),
                    };
                }
                (3, 1) => return 0,
                (7, _) => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer within 5 s")
}

/// A literal header field without indexing, with a new name (RFC 7541 section 6.2.2).
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut field = vec![0, u8::try_from(name.len()).unwrap()];
    field.extend_from_slice(name.as_bytes());
    field.push(u8::try_from(value.len()).unwrap());
    field.extend_from_slice(value.as_bytes());
    field
}

#[tokio::test]
async fn over_http2_two_hosts_or_a_user_name_get_400_too() {
    let up = ok_upstream().await;
    let proxy = two_routes(&up).await;
    // :method GET, :scheme http, :path / (static table indexes 2, 6 and 4).
    let start = [0x82, 0x86, 0x84];
    let two_hosts = [
        &start[..],
        &literal("host", "api.internal"),
        &literal("host", "x"),
    ]
    .concat();
    assert_eq!(
        h2_status(proxy.addr, &two_hosts).await,
        400,
        "two Host, no :authority"
    );
    // :authority (static index 1) with a user name.
    let user = [&start[..], &[0x01, 8], b"user@api"].concat();
    assert_eq!(
        h2_status(proxy.addr, &user).await,
        400,
        "user@ in :authority"
    );
    assert_eq!(up.hits(), 0);
    let one_host = [&start[..], &literal("host", "api.internal")].concat();
    assert_eq!(h2_status(proxy.addr, &one_host).await, 200, "one Host");
    let heads = up.heads();
    assert_eq!(heads[0]["host"], "api.internal");
}

/// An instance that reads each request's body and answers `status`, `body` and `headers`.
async fn answering(
    status: u16,
    body: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> Instance {
    upstream(move |req: Request<hyper::body::Incoming>| async move {
        let _ = req.into_body().collect().await;
        let mut response = reply(status, body);
        for (name, value) in headers {
            response
                .headers_mut()
                .append(*name, http::HeaderValue::from_static(value));
        }
        response
    })
    .await
}

#[tokio::test]
async fn connection_cannot_remove_the_headers_the_proxy_and_the_upstream_rely_on() {
    let up = answering(
        200,
        "ok",
        &[
            ("connection", "content-type, x-up-hop"),
            ("content-type", "text/plain"),
            ("x-up-hop", "1"),
        ],
    )
    .await;
    let proxy = start(single(&[up.addr])).await;
    let named = "host, content-length, content-type, te, grpc-timeout, stormguard-budget-ms, \
                 idempotency-key, x-client-hop";
    let req = Request::post(proxy.url("/"))
        .header("host", "api")
        .header("connection", named)
        .header("content-type", "text/plain")
        .header("te", "trailers")
        .header("grpc-timeout", "1S")
        .header("stormguard-budget-ms", "1500")
        .header("idempotency-key", "k1")
        .header("x-client-hop", "1")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = send(&client(), req).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.header("x-up-hop"), None);
    let seen = &up.heads()[0];
    assert_eq!(seen["host"], "api");
    assert_eq!(seen["content-length"], "5");
    assert_eq!(seen["content-type"], "text/plain");
    assert_eq!(seen["te"], "trailers");
    assert_eq!(seen["idempotency-key"], "k1");
    // The caller's budget was read, the least of both (1 s), not the route's 2 s; what is left
    // is passed on in the proxy's header (a request that is not gRPC carries no grpc-timeout).
    let budget: u64 = seen["stormguard-budget-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((900..=1000).contains(&budget), "{seen:?}");
    assert!(!seen.contains_key("x-client-hop"), "{seen:?}");
    assert!(!seen.contains_key("connection"), "{seen:?}");
}

#[tokio::test]
async fn an_upstreams_own_stormguard_headers_do_not_reach_the_client() {
    let up = answering(
        503,
        "down",
        &[
            ("stormguard-reason", "no-route"),
            ("stormguard-reason", "overloaded"),
            ("stormguard-attempts", "7"),
        ],
    )
    .await;
    let mut config = single(&[up.addr]);
    config.routes[0].call.max_attempts = 1;
    let proxy = start(config).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(&reply.body[..], b"down");
    assert!(
        !reply.headers.contains_key("stormguard-reason"),
        "{reply:?}"
    );
    assert_eq!(
        reply
            .headers
            .get_all("stormguard-attempts")
            .iter()
            .collect::<Vec<_>>(),
        ["1"]
    );
}

/// An upstream on raw TCP: reads each request head and writes `answer(path)`, then closes.
async fn raw_upstream(answer: fn(&str) -> &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("/");
                let _ = stream.write_all(answer(path).as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_101_to_a_request_that_asked_for_no_upgrade_is_a_502() {
    let switching = raw_upstream(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    })
    .await;
    let proxy = start(single(&[switching])).await;
    let client = client();
    let reply = get(&client, &proxy.url("/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(
        reply.header("stormguard-reason"),
        Some("bad-upstream-response")
    );
    assert_eq!(reply.header("stormguard-attempts"), Some("1"));
    // A client that asks to upgrade is not carried either: Upgrade is hop-by-hop.
    let ask = Request::get(proxy.url("/"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, ask).await.unwrap().status, 502);
    assert!(proxy.metrics().contains(
        "stormguard_proxy_requests_total{route=\"api\",class=\"5xx\",reason=\"bad-upstream-response\"} 2"
    ));
}

#[tokio::test]
async fn behind_an_http_1_0_upstream_the_client_keeps_http_1_1_and_its_connection() {
    let old = raw_upstream(|path| match path {
        "/sized" => "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        _ => "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    })
    .await;
    let proxy = start(single(&[old])).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    for (path, body) in [
        ("/sized", "hello"),
        ("/unsized", "until close"),
        ("/sized", "hello"),
    ] {
        let req = Request::get(path)
            .header("host", "api")
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{path} on the same connection: {e}"));
        assert_eq!(response.version(), Version::HTTP_11, "{path}");
        assert!(!response.headers().contains_key("connection"), "{path}");
        let got = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], body.as_bytes(), "{path}");
    }
    drop(sender);
    connection.await.unwrap().unwrap();
}
