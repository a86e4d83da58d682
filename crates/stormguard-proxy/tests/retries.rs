//! Retries through the proxy against real sockets: another instance each time, never a written
//! non-idempotent request twice, and never more than the retry budget allows.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::{HedgeSpec, LimiterSpec};
use stormguard_proxy::config::AdaptiveTimeoutSpec;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_three_instances_refusing_every_request_succeeds() {
    let (a, b) = (ok_upstream().await, ok_upstream().await);
    let down = refusing_address().await;
    let proxy = start(single(&[down, a.addr, b.addr])).await;
    let url = proxy.url("/items");
    let started = tokio::time::Instant::now();
    let outcomes = drive(10_000, 32, Duration::from_secs(120), move |_| {
        Request::get(&url).body(Full::default()).unwrap()
    })
    .await;
    let elapsed = started.elapsed();
    assert_all_ok(&outcomes);
    let retried = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(r) if r.header("stormguard-attempts") == Some("2")))
        .count();
    println!("10000 requests in {elapsed:?}, {retried} needed a second attempt");
    assert_eq!(a.hits() + b.hits(), 10_000);
}

#[tokio::test]
async fn a_retry_goes_to_an_instance_the_request_has_not_tried() {
    let (instances, addrs) = three(503).await;
    let mut config = single(&addrs);
    config.routes[0].call.max_attempts = 3;
    config.routes[0].call.limiter = None;
    let proxy = start(config).await;
    let client = client();
    for i in 0..30 {
        let req = Request::get(proxy.url("/"))
            .header("x-request-id", i.to_string())
            .body(Full::default())
            .unwrap();
        let reply = send(&client, req).await.unwrap();
        assert_eq!(
            reply.status, 503,
            "the upstream's own answer passes through"
        );
        assert_eq!(reply.header("stormguard-reason"), None);
        assert_eq!(reply.header("stormguard-attempts"), Some("3"));
    }
    for instance in &instances {
        let mut ids: Vec<String> = instance
            .heads()
            .iter()
            .map(|h| h["x-request-id"].to_str().unwrap().to_string())
            .collect();
        let seen = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), seen, "an instance saw one request twice");
    }
    let total: usize = instances.iter().map(Instance::hits).sum();
    assert_eq!(total, 90);
}

/// A POST that was written and then timed out is not sent again; a GET in the same place is.
#[tokio::test]
async fn a_written_post_that_timed_out_reaches_the_upstream_once() {
    let (a, b) = (slow_upstream(ms(1500)).await, slow_upstream(ms(1500)).await);
    let mut config = single(&[a.addr, b.addr]);
    // Per-try timeout 200 ms (no samples yet: the adaptive maximum) inside a 1 s route timeout,
    // so a retry after a timeout fits: only idempotency can stop it.
    config.routes[0].call.timeout = Some(Duration::from_secs(1));
    config.routes[0].adaptive_timeout = Some(AdaptiveTimeoutSpec {
        false_timeout_rate: 0.001,
        min: ms(50),
        max: ms(200),
    });
    let proxy = start(config).await;
    let client = client();
    let post = Request::post(proxy.url("/orders"))
        .body(Full::new(Bytes::from_static(b"{\"item\":1}")))
        .unwrap();
    let reply = send(&client, post).await.unwrap();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("stormguard-reason"), Some("timeout"));
    assert_eq!(reply.header("stormguard-attempts"), Some("1"));
    tokio::time::sleep(ms(400)).await;
    assert_eq!(a.hits() + b.hits(), 1, "the POST reached the upstream once");

    let (a_before, b_before) = (a.hits(), b.hits());
    let reply = get(&client, &proxy.url("/orders/1")).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("stormguard-attempts"), Some("2"));
    assert_eq!(
        a.hits() - a_before,
        1,
        "the GET's retry went to the other instance"
    );
    assert_eq!(b.hits() - b_before, 1);
}

#[tokio::test]
async fn a_post_refused_at_connect_goes_to_another_instance_once() {
    let up = ok_upstream().await;
    let down = refusing_address().await;
    let proxy = start(single(&[down, up.addr])).await;
    let client = client();
    let mut second_attempts = 0;
    for i in 0..40 {
        let post = Request::post(proxy.url("/orders"))
            .body(Full::new(Bytes::from(format!("order {i}"))))
            .unwrap();
        let reply = send(&client, post).await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        second_attempts += usize::from(reply.header("stormguard-attempts") == Some("2"));
    }
    assert_eq!(
        up.hits(),
        40,
        "every POST reached the upstream exactly once"
    );
    assert!(
        second_attempts > 0,
        "some POSTs were refused first and retried"
    );
}

/// With every instance failing, retries stay within the budget: at most `ratio` of requests
/// plus the reserve of `min_per_sec * ttl` (10 s; the run is shorter than one ttl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_full_outage_retries_stay_within_the_budget() {
    let (instances, addrs) = three(503).await;
    let mut config = single(&addrs);
    config.routes[0].call.max_attempts = 3;
    config.routes[0].call.limiter = Some(LimiterSpec::Budget {
        ratio: 0.2,
        min_per_sec: 1,
    });
    let proxy = start(config).await;
    let url = proxy.url("/");
    let requests = 1000;
    let outcomes = drive(requests, 16, Duration::from_secs(60), move |_| {
        Request::get(&url).body(Full::default()).unwrap()
    })
    .await;
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Ok(r) if r.status == 503)));
    let hits: usize = instances.iter().map(Instance::hits).sum();
    let bound = requests + requests / 5 + 10;
    println!("{requests} requests, {hits} upstream attempts, bound {bound}");
    assert!(hits <= bound, "{hits} attempts > {bound}");
    assert!(hits > requests + requests / 10, "retries were sent: {hits}");
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("stormguard_retries_denied_total{target=\"api\",reason=\"retry-budget\"}"),
        "{metrics}"
    );
}

/// A route limited by a token bucket that is empty answers, when a refused connection needs a
/// retry, with the bucket's own reason: `token-bucket`, where it said `retry-budget` (the
/// library had one error kind for both limiters), sending whoever reads it to the wrong setting.
#[tokio::test]
async fn an_empty_token_bucket_says_so_in_the_answer() {
    let (a, b) = (refusing_address().await, refusing_address().await);
    let mut config = single(&[a, b]);
    config.routes[0].call.max_attempts = 3;
    config.routes[0].call.limiter = Some(LimiterSpec::TokenBucket {
        capacity: 5,
        retry_cost: 5,
        timeout_cost: 5,
    });
    let proxy = start(config).await;
    let client = client();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let get = Request::get(proxy.url("/")).body(Full::default()).unwrap();
        let reply = send(&client, get).await.unwrap();
        assert_eq!(reply.status, 503, "{reply:?}");
        reasons.push(reply.header("stormguard-reason").unwrap_or("").to_string());
    }
    assert!(
        reasons.iter().all(|r| r == "token-bucket"),
        "every request's retry met the bucket spent by the first: {reasons:?}"
    );
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("stormguard_retries_denied_total{target=\"api\",reason=\"token-bucket\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"token-bucket\""),
        "the proxy's answers are counted by their reason: {metrics}"
    );
}

#[tokio::test]
async fn a_slow_instance_is_hedged_to_a_fast_one() {
    let slow = slow_upstream(ms(600)).await;
    let fast = ok_upstream().await;
    let mut config = single(&[slow.addr, fast.addr]);
    config.routes[0].call.hedge = Some(HedgeSpec {
        delay: HedgeDelay::Fixed(ms(30)),
        max_extra: 1.0,
    });
    let proxy = start(config).await;
    let client = client();
    for _ in 0..10 {
        let started = tokio::time::Instant::now();
        let reply = get(&client, &proxy.url("/")).await;
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < ms(400), "answered by the fast copy");
    }
    assert!(
        slow.hits() > 0,
        "some requests went to the slow instance first"
    );
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("stormguard_hedges_won_total{target=\"api\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_retried_for_a_get_not_a_post() {
    let closing = misbehaving_upstream(Misbehave::Close).await;
    let up = ok_upstream().await;
    let proxy = start(single(&[closing.addr, up.addr])).await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/")).await.status, 200);
    }
    let only_closing = start(single(&[closing.addr])).await;
    let before = closing.hits();
    let post = Request::post(only_closing.url("/"))
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let reply = send(&client, post).await.unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("stormguard-reason"), Some("reset"));
    assert_eq!(closing.hits() - before, 1);
}

/// An upstream that answers with something that is not HTTP is named as such, not as a
/// network reset (which sends whoever debugs it to the network).
#[tokio::test]
async fn an_upstream_answering_what_is_not_http_is_a_bad_upstream_response() {
    let bad = misbehaving_upstream(Misbehave::BadHead).await;
    let proxy = start(single(&[bad.addr])).await;
    let post = Request::post(proxy.url("/"))
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let reply = send(&client(), post).await.unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.header("stormguard-reason"),
        Some("bad-upstream-response")
    );
}

/// A body above `retry_body_limit` is sent once, never twice; but a refused connection sent
/// none of it, so it goes to another instance.
#[tokio::test]
async fn a_post_too_large_to_buffer_refused_at_connect_reaches_another_instance_once() {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Bytes>::new()));
    let kept = received.clone();
    let up = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let kept = kept.clone();
        async move {
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            kept.lock().unwrap().push(body);
            reply(200, "stored")
        }
    })
    .await;
    let down = refusing_address().await;
    let mut config = single(&[down, up.addr]);
    config.routes[0].retry_body_limit = 1024;
    let proxy = start(config).await;
    let client = client();
    let mut second_attempts = 0;
    for i in 0..20u8 {
        // 64 KiB, different for each request: far above the 1 KiB limit.
        let body: Vec<u8> = (0..64 * 1024)
            .map(|n| (n as u8).wrapping_mul(i + 1))
            .collect();
        let post = Request::post(proxy.url("/uploads"))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let reply = send(&client, post).await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        second_attempts += usize::from(reply.header("stormguard-attempts") == Some("2"));
        let received = received.lock().unwrap();
        assert_eq!(
            received.len(),
            usize::from(i) + 1,
            "reached the upstreams exactly once"
        );
        assert!(received.last().unwrap()[..] == body[..], "identical bytes");
    }
    assert!(second_attempts > 0, "some were refused first and sent on");
}

/// The case: `timeout` bounds each attempt and nothing more, so a GET whose first attempt
/// went to an instance that hangs is retried on the one that answers; `request_timeout` is what
/// caps the whole request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_instance_costs_one_timeout_and_request_timeout_caps_the_whole() {
    let hanging = slow_upstream(Duration::from_secs(30)).await;
    let answering = ok_upstream().await;
    // The settings as a user writes them; only the limiter is off, so that the budget does not
    // decide which GETs are retried.
    let settings = |extra: &str| {
        let text = format!(
            "[upstreams.api]\ninstances = [\"{}\", \"{}\"]\n[[routes]]\nname = \"api\"\n\
             upstream = \"api\"\ntimeout = \"200ms\"\nmax_attempts = 2\n\
             retry_budget = \"none\"\n{extra}",
            hanging.addr, answering.addr
        );
        stormguard_proxy::config::parse("p.toml", &text).unwrap()
    };
    let per_attempt = start(settings("request_timeout = \"10s\"\n")).await;
    let capped = start(settings("request_timeout = \"150ms\"\n")).await;
    let client = client();
    // Sequential GETs: the balancer sends some first to the hanging instance (it has nothing in
    // flight once the previous attempt there was abandoned).
    let (mut retried, mut capped_504) = (0, 0);
    for _ in 0..12 {
        let started = tokio::time::Instant::now();
        let reply = get(&client, &per_attempt.url("/")).await;
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{reply:?}");
        if reply.header("stormguard-attempts") == Some("2") {
            retried += 1;
            assert!(took >= ms(195) && took < ms(600), "retried after {took:?}");
        } else {
            assert!(
                took < ms(150),
                "a first attempt that answered took {took:?}"
            );
        }

        let started = tokio::time::Instant::now();
        let reply = get(&client, &capped.url("/")).await;
        let took = started.elapsed();
        if reply.status == 504 {
            capped_504 += 1;
            assert!(took >= ms(140) && took < ms(400), "capped after {took:?}");
            assert_eq!(reply.header("stormguard-attempts"), Some("1"), "{reply:?}");
        } else {
            assert_eq!(reply.status, 200, "{reply:?}");
            assert!(took < ms(140), "{took:?}");
        }
    }
    println!("of 12 GETs: {retried} retried after the timeout, {capped_504} capped with 504");
    assert!(retried > 0, "no GET went to the hanging instance first");
    assert!(
        capped_504 > 0,
        "no capped GET went to the hanging instance first"
    );
    assert!(hanging.hits() >= retried + capped_504);
}

/// `retry_on = ["409"]`: the proxy retries a 409 (for a POST too: the server did not apply a
/// conflicting request) on another instance, and nothing the list does not name, not even the
/// 503 the default would retry.
#[tokio::test]
async fn retry_on_409_retries_a_409_and_nothing_else() {
    let conflict = status_upstream(409).await;
    let unavailable = status_upstream(503).await;
    let answering = ok_upstream().await;
    let settings = |instances: &[std::net::SocketAddr], retry_on: &str| {
        let list: Vec<String> = instances.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "[upstreams.api]\ninstances = [{}]\n[[routes]]\nname = \"api\"\nupstream = \"api\"\n\
             timeout = \"2s\"\nrequest_timeout = \"4s\"\nmax_attempts = 2\n\
             retry_budget = \"none\"\n{retry_on}",
            list.join(", ")
        );
        stormguard_proxy::config::parse("p.toml", &text).unwrap()
    };
    let client = client();
    let post = |url: String| {
        Request::post(url)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let listed = start(settings(
        &[conflict.addr, answering.addr],
        "retry_on = [\"409\"]\n",
    ))
    .await;
    let default = start(settings(&[conflict.addr, answering.addr], "")).await;
    let only_409 = start(settings(
        &[unavailable.addr, answering.addr],
        "retry_on = [\"409\"]\n",
    ))
    .await;
    let (mut saw_409, mut saw_503) = (false, false);
    for _ in 0..20 {
        // Listed: every POST ends 200, one that met the 409 after a second attempt.
        let reply = send(&client, post(listed.url("/"))).await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        // The default list does not name 409: it passes through, never retried.
        let reply = send(&client, post(default.url("/"))).await.unwrap();
        if reply.status == 409 {
            saw_409 = true;
            assert_eq!(reply.header("stormguard-attempts"), Some("1"));
        }
        // A list of 409 alone does not retry the 503 the default would.
        let reply = send(&client, post(only_409.url("/"))).await.unwrap();
        if reply.status == 503 {
            saw_503 = true;
            assert_eq!(reply.header("stormguard-attempts"), Some("1"));
        }
    }
    assert!(
        saw_409 && saw_503,
        "each conflicting instance was tried first at least once"
    );
    assert!(conflict.hits() > 0 && unavailable.hits() > 0);
}
