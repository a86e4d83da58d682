//! What a proxy in front of everything must survive and refuse: slow and malformed clients,
//! targets it must not reach, bodies too large, overload; and what it must not pass on.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use stormguard_proxy::config::RouteMatch;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one byte a second; returns how long until the proxy closed the connection.
async fn trickle(addr: SocketAddr, bytes: &'static [u8]) -> Duration {
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writer = async {
        for byte in bytes {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let reader = async {
        let mut sink = Vec::new();
        let _ = read.read_to_end(&mut sink).await;
    };
    tokio::select! {
        () = reader => {}
        () = writer => panic!("the proxy never cut the client off"),
    }
    started.elapsed()
}

#[tokio::test]
async fn a_client_sending_headers_one_byte_a_second_is_cut_off() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    config.listen.header_read_timeout = ms(300);
    // Far beyond the test's bound, so that only the head's clock can cut these clients off.
    config.listen.idle_timeout = Duration::from_secs(60);
    let proxy = start(config).await;
    let head = b"GET / HTTP/1.1\r\nHost: api\r\nX-Slow: 1\r\n\r\n";
    let cut_off = trickle(proxy.addr, head).await;
    println!("a client trickling its head was cut off after {cut_off:?}");
    assert!(
        cut_off < Duration::from_secs(3),
        "cut off after {cut_off:?}"
    );
    // One dribbling the HTTP/2 preface is cut off too. (One sending nothing is idle, not slow:
    // tests/listener.rs shows it closed after idle_timeout.)
    assert!(
        trickle(proxy.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await < Duration::from_secs(3)
    );
    assert_eq!(up.hits(), 0);
    // Counted by why (they left no other trace: no request, so no access-log line).
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("stormguard_proxy_connections_closed_total{reason=\"header-timeout\"} 2"),
        "{metrics}"
    );
    assert_eq!(get(&client(), &proxy.url("/")).await.status, 200);
}

#[tokio::test]
async fn malformed_requests_each_get_a_4xx_and_the_proxy_still_serves() {
    let up = ok_upstream().await;
    let proxy = start(single(&[up.addr])).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: api\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: api\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: 1\r\n"))
            .collect::<String>()
    );
    let batch: Vec<(&str, String, u16)> = vec![
        ("bad request line", "GARBAGE\r\n\r\n".into(), 400),
        (
            "bad header",
            "GET / HTTP/1.1\r\nHost: api\r\nBad Header\r\n\r\n".into(),
            400,
        ),
        (
            "bad length",
            "POST / HTTP/1.1\r\nHost: api\r\nContent-Length: x\r\n\r\n".into(),
            400,
        ),
        ("huge header", huge, 431),
        ("too many headers", many, 431),
        (
            "absolute-form to a foreign host",
            "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(),
            403,
        ),
        (
            "CONNECT",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into(),
            403,
        ),
        // A coding the proxy does not decode: it went on still gzipped, its name dropped.
        (
            "a transfer coding but chunked",
            "POST / HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
                .into(),
            501,
        ),
    ];
    for (what, request, expected) in batch {
        let answer = raw(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), expected, "{what}: {answer}");
    }
    assert_eq!(up.hits(), 0, "none of them reached the upstream");
    // The five the HTTP layer refused before they were requests (no access-log line, no
    // `stormguard-attempts`) are counted.
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("stormguard_proxy_connections_closed_total{reason=\"bad-request\"} 5"),
        "{metrics}"
    );
    let own = format!(
        "GET http://{}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let answer = raw(proxy.addr, own.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(
        status_of(&answer),
        200,
        "absolute-form for the proxy itself: {answer}"
    );
    assert_eq!(get(&client(), &proxy.url("/")).await.status, 200);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = upstream(|_req| async {
        let mut response = reply(200, "ok");
        let headers = response.headers_mut();
        headers.insert("connection", "x-upstream-hop".parse().unwrap());
        headers.insert("x-upstream-hop", "1".parse().unwrap());
        headers.insert("proxy-authenticate", "Basic".parse().unwrap());
        headers.insert("x-end-to-end", "1".parse().unwrap());
        response
    })
    .await;
    let proxy = start(single(&[up.addr])).await;
    let req = Request::get(proxy.url("/"))
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "gzip")
        .header("upgrade", "websocket")
        .header("x-request-id", "7")
        .body(Full::default())
        .unwrap();
    let reply = send(&client(), req).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-end-to-end"), Some("1"));
    assert_eq!(reply.header("x-upstream-hop"), None);
    assert_eq!(reply.header("proxy-authenticate"), None);
    assert_eq!(reply.header("stormguard-attempts"), Some("1"));
    let seen = &up.heads()[0];
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(!seen.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(seen["x-request-id"], "7");
    let metrics = proxy.metrics();
    for line in [
        "stormguard_proxy_requests_total{route=\"api\",class=\"2xx\",reason=\"\"} 1",
        "stormguard_proxy_upstream_latency_seconds_count{route=\"api\"} 1",
        "stormguard_attempts_total{target=\"api\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    // The place in flight is given back once the body is sent, a moment after the client has it.
    let back = "stormguard_proxy_in_flight{upstream=\"api\"} 0";
    for _ in 0..100 {
        if proxy.metrics().contains(back) {
            return;
        }
        tokio::time::sleep(ms(10)).await;
    }
    panic!("in-flight count not back to 0");
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_at_once_with_retry_after() {
    let slow = slow_upstream(ms(500)).await;
    let mut config = single(&[slow.addr]);
    config.upstreams.get_mut("api").unwrap().max_in_flight = 4;
    let proxy = start(config).await;
    let url = proxy.url("/");
    let outcomes = drive(12, 12, Duration::from_secs(10), move |_| {
        Request::get(&url).body(Full::default()).unwrap()
    })
    .await;
    let replies: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    let shed: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(shed.len(), 8, "{replies:?}");
    for reply in &shed {
        assert_eq!(reply.header("stormguard-reason"), Some("overloaded"));
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert_eq!(slow.hits(), 4);
    assert!(proxy
        .metrics()
        .contains("stormguard_proxy_shed_total{upstream=\"api\"} 8"));
    assert_eq!(
        get(&client(), &proxy.url("/")).await.status,
        200,
        "places given back"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_announced_or_streamed() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    config.listen.max_request_body = 1024;
    let proxy = start(config).await;
    let post = Request::post(proxy.url("/"))
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
        .unwrap();
    let reply = send(&client(), post).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("stormguard-reason"), Some("body-too-large"));
    let chunk = "x".repeat(1500);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = raw(proxy.addr, chunked.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn routes_match_host_without_port_or_case_and_path_prefix() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    config.routes[0].matcher = RouteMatch {
        path_prefix: Some("/api/".into()),
        host: Some("api.internal".into()),
    };
    let proxy = start(config).await;
    let client = client();
    let ask = |host: &str, path: &str| {
        Request::get(proxy.url(path))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    let reply = send(&client, ask("API.Internal:8080", "/api/x"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    for (host, path) in [("other", "/api/x"), ("api.internal", "/x")] {
        let reply = send(&client, ask(host, path)).await.unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.header("stormguard-reason"), Some("no-route"));
        assert_eq!(reply.header("stormguard-attempts"), Some("0"));
    }
    assert!(proxy.metrics().contains(
        "stormguard_proxy_requests_total{route=\"\",class=\"4xx\",reason=\"no-route\"} 2"
    ));
}

#[tokio::test]
async fn faults_act_only_when_enabled() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    let proxy = start(config.clone()).await;
    let client = client();
    let faulty = || {
        Request::get(proxy.url("/"))
            .header("stormguard-fault-abort", "503")
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(&client, faulty()).await.unwrap().status, 200);
    config.faults.enabled = true;
    proxy.proxy.apply(config).unwrap();
    let reply = send(&client, faulty()).await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("stormguard-reason"), Some("fault"));
    let delayed = Request::get(proxy.url("/"))
        .header("stormguard-fault-delay-ms", "150")
        .body(Full::default())
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(send(&client, delayed).await.unwrap().status, 200);
    assert!(started.elapsed() >= ms(150));
    let carried = up
        .heads()
        .iter()
        .filter(|h| h.contains_key("stormguard-fault-abort"))
        .count();
    assert_eq!(
        carried, 1,
        "passed on while faults were off, consumed once on"
    );
}

/// An injected delay is spent from the request's deadline: one longer than the route's
/// `request_timeout`, or than the caller's budget, ends there with the deadline's 504. (A 5 s
/// delay on a route of 3 s answered 200 after 5 s, and a caller that gave 800 ms waited the
/// 5 s for its 504.)
#[tokio::test]
async fn an_injected_delay_ends_at_the_deadline() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    config.faults.enabled = true;
    config.routes[0].call.request_timeout = Some(ms(3000));
    let proxy = start(config).await;
    let client = client();
    let delayed = |budget: Option<&str>| {
        let mut req = Request::get(proxy.url("/")).header("stormguard-fault-delay-ms", "5000");
        if let Some(budget) = budget {
            req = req.header("stormguard-budget-ms", budget);
        }
        req.body(Full::default()).unwrap()
    };
    // Bounds far apart, so that a loaded machine cannot blur them: the route's 3 s, the
    // caller's 100 ms, the delay's 5 s.
    for (budget, at_least, below) in [(None, 3000, 4800), (Some("100"), 100, 2800)] {
        let started = tokio::time::Instant::now();
        let reply = send(&client, delayed(budget)).await.unwrap();
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{budget:?}");
        assert_eq!(reply.header("stormguard-reason"), Some("deadline"));
        assert!(
            took >= ms(at_least) && took < ms(below),
            "{budget:?}: {took:?}"
        );
    }
    assert!(up.heads().is_empty(), "nothing forwarded");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let up = ok_upstream().await;
    let proxy = start(single(&[up.addr])).await;
    let h2: TestClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let reply = get(&h2, &proxy.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("stormguard-attempts"), Some("1"));
    assert_eq!(&reply.body[..], b"ok");
}

#[tokio::test]
async fn an_upstream_breaking_mid_response_does_not_break_the_proxy() {
    let broken = misbehaving_upstream(Misbehave::TruncateBody).await;
    let up = ok_upstream().await;
    let proxy = start(config(
        &[("broken", &[broken.addr]), ("api", &[up.addr])],
        vec![
            {
                let mut r = route("broken", "broken");
                r.matcher.path_prefix = Some("/broken".into());
                r
            },
            route("api", "api"),
        ],
    ))
    .await;
    let client = client();
    let req = Request::get(proxy.url("/broken"))
        .body(Full::default())
        .unwrap();
    assert!(
        send(&client, req).await.is_err(),
        "the client sees a truncated body"
    );
    assert_eq!(get(&client, &proxy.url("/")).await.status, 200);
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops() {
    let slow = slow_upstream(ms(300)).await;
    let proxy = start(single(&[slow.addr])).await;
    let url = proxy.url("/");
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(&client(), &url).await });
    tokio::time::sleep(ms(100)).await;
    let served = proxy.shutdown();
    assert_eq!(in_flight.await.unwrap().status, 200);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returned after the drain")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
