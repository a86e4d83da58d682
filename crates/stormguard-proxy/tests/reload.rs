//! New settings while requests flow: no request fails, later requests take the new routes, and
//! settings that cannot be built change nothing.

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use stormguard_proxy::BuildError;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_under_load_fails_no_request_and_later_requests_take_the_new_routes() {
    let blue = upstream(|_req| async { reply(200, "blue") }).await;
    let green = upstream(|_req| async { reply(200, "green") }).await;
    let settings = |to: &str| {
        config(
            &[("blue", &[blue.addr]), ("green", &[green.addr])],
            vec![route("api", to)],
        )
    };
    let proxy = start(settings("blue")).await;
    let url = proxy.url("/");
    let load = tokio::spawn(drive(2000, 16, Duration::from_secs(60), move |_| {
        Request::get(&url).body(Full::default()).unwrap()
    }));
    let handle = proxy.proxy.clone();
    for (i, to) in ["green", "blue", "green", "blue", "green"]
        .iter()
        .enumerate()
    {
        tokio::time::sleep(ms(40)).await;
        assert_eq!(handle.apply(settings(to)).unwrap(), i as u64 + 2);
    }
    let outcomes = load.await.unwrap();
    assert_all_ok(&outcomes);
    assert_eq!(outcomes.len(), 2000);
    assert!(
        green.hits() > 0 && blue.hits() > 0,
        "both generations served"
    );
    assert_eq!(proxy.proxy.generation(), 6);
    let before = green.hits();
    for _ in 0..10 {
        assert_eq!(&get(&client(), &proxy.url("/")).await.body[..], b"green");
    }
    assert_eq!(green.hits() - before, 10);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_routes_it_started_with() {
    let slow = slow_upstream(ms(300)).await;
    let other = ok_upstream().await;
    let settings = |to: &str| {
        config(
            &[("slow", &[slow.addr]), ("other", &[other.addr])],
            vec![route("api", to)],
        )
    };
    let proxy = start(settings("slow")).await;
    let url = proxy.url("/");
    let in_flight = tokio::spawn(async move { get(&client(), &url).await });
    tokio::time::sleep(ms(100)).await;
    proxy.proxy.apply(settings("other")).unwrap();
    let reply = in_flight.await.unwrap();
    assert_eq!(&reply.body[..], b"slow");
    assert_eq!(&get(&client(), &proxy.url("/")).await.body[..], b"ok");
}

#[tokio::test]
async fn settings_that_cannot_be_built_change_nothing() {
    let up = ok_upstream().await;
    let good = single(&[up.addr]);
    let proxy = start(good.clone()).await;
    let mut unknown = good.clone();
    unknown.routes[0].upstream = "nowhere".into();
    let err = proxy.proxy.apply(unknown).unwrap_err();
    assert!(matches!(err, BuildError::UnknownUpstream { .. }));
    assert!(
        err.to_string().contains("`nowhere` is not defined"),
        "{err}"
    );
    let mut bad_instance = good.clone();
    bad_instance.upstreams.get_mut("api").unwrap().instances = vec!["no port".into()];
    assert!(matches!(
        proxy.proxy.apply(bad_instance),
        Err(BuildError::Instance { .. })
    ));
    assert_eq!(proxy.proxy.generation(), 1);
    assert_eq!(get(&client(), &proxy.url("/")).await.status, 200);
}

#[tokio::test]
async fn a_new_listen_address_is_reported_not_applied() {
    let up = ok_upstream().await;
    let proxy = start(single(&[up.addr])).await;
    let mut moved = (*proxy.proxy.config()).clone();
    moved.listen.address = "127.0.0.1:1".parse().unwrap();
    moved.listen.header_read_timeout = ms(700);
    assert_eq!(proxy.proxy.apply(moved).unwrap(), 2);
    let running = proxy.proxy.config();
    assert_eq!(running.listen.address, proxy.addr, "still where it listens");
    assert_eq!(
        running.listen.header_read_timeout,
        ms(700),
        "the rest applies"
    );
    assert_eq!(get(&client(), &proxy.url("/")).await.status, 200);
}

/// An unchanged route keeps its stack, so its retry budget is not refilled by a reload: with the
/// budget spent under an outage, a reload that changes nothing does not buy a new burst.
#[tokio::test]
async fn an_unchanged_route_keeps_its_retry_budget_across_a_reload() {
    let failing = status_upstream(503).await;
    let mut settings = single(&[failing.addr]);
    settings.routes[0].call.limiter = Some(stormguard_graph::model::LimiterSpec::Budget {
        ratio: 0.0,
        min_per_sec: 1,
    });
    let proxy = start(settings.clone()).await;
    let client = client();
    for _ in 0..30 {
        get(&client, &proxy.url("/")).await;
    }
    // Reserve of 10 retries: 30 requests made 40 attempts.
    assert_eq!(failing.hits(), 40);
    let mut moved = settings.clone();
    moved.routes[0].call.span.line = 42;
    proxy.proxy.apply(moved).unwrap();
    for _ in 0..10 {
        get(&client, &proxy.url("/")).await;
    }
    assert_eq!(failing.hits(), 50, "no new reserve after the reload");
    settings.routes[0].call.max_attempts = 3;
    proxy.proxy.apply(settings).unwrap();
    get(&client, &proxy.url("/")).await;
    assert_eq!(
        failing.hits(),
        53,
        "a changed route starts with a fresh budget"
    );
}
