//! The metrics a dashboard reads, through the real data path: what the caller waited (retries
//! included) beside each attempt, and each instance's attempts by outcome, bounded by the
//! instances that run.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::*;

/// The value of the sample `name{labels}` in `text`, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn the_caller_waits_for_the_retry_and_the_attempt_histogram_does_not_say_so() {
    // The first attempt hangs past the 100 ms timeout; the retry is answered at once.
    let first = Arc::new(AtomicUsize::new(0));
    let up = upstream(move |_req| {
        let first = first.clone();
        async move {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(ms(400)).await;
            }
            reply(200, "ok")
        }
    })
    .await;
    let mut settings = single(&[up.addr]);
    settings.routes[0].call.timeout = Some(ms(100));
    settings.routes[0].call.request_timeout = Some(ms(900));
    let proxy = start(settings).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(
        (reply.status, reply.header("stormguard-attempts")),
        (200, Some("2"))
    );
    let text = proxy.metrics();
    let caller = |le: &str| {
        sample(
            &text,
            &format!(
                "stormguard_proxy_request_duration_seconds_bucket{{le=\"{le}\",route=\"api\"}}"
            ),
        )
    };
    let attempt = |le: &str| {
        sample(
            &text,
            &format!(
                "stormguard_proxy_upstream_latency_seconds_bucket{{le=\"{le}\",route=\"api\"}}"
            ),
        )
    };
    // Both timeouts are buckets of the caller's histogram; the attempt's has its timeout.
    assert_eq!(
        (caller("0.1"), caller("0.9"), caller("+Inf")),
        (0.0, 1.0, 1.0),
        "{text}"
    );
    // The attempt cut off at its timeout counts at about the timeout (its clock starts as the
    // instance is called, a little after the retry layer's, so it may fall just inside the
    // 100 ms bucket on a loaded machine); the retry well within: the attempts' histogram shows
    // two quick-ish attempts where the caller waited over 100 ms.
    let attempts_within = (attempt("0.05"), attempt("0.25"));
    assert_eq!(attempts_within, (1.0, 2.0), "{text}");
    let addr = format!(
        "route=\"api\",upstream=\"api\",instance_addr=\"{}\"",
        up.addr
    );
    let attempts = |outcome: &str| {
        sample(
            &text,
            &format!("stormguard_proxy_instance_attempts_total{{{addr},outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        (attempts("ok"), attempts("abandoned")),
        (1.0, 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn instance_series_follow_the_instances_through_a_reload() {
    let failing = status_upstream(503).await;
    let good = ok_upstream().await;
    let proxy = start(single(&[failing.addr, good.addr])).await;
    let outcomes = drive(40, 4, ms(10_000), {
        let url = proxy.url("/");
        move |_| http::Request::get(&url).body(Default::default()).unwrap()
    })
    .await;
    assert_all_ok(&outcomes);
    let series = |addr: std::net::SocketAddr, outcome: &str| {
        format!(
            "stormguard_proxy_instance_attempts_total{{route=\"api\",upstream=\"api\",instance_addr=\"{addr}\",outcome=\"{outcome}\"}}"
        )
    };
    let text = proxy.metrics();
    let failed = sample(&text, &series(failing.addr, "5xx"));
    let answered = sample(&text, &series(good.addr, "ok"));
    assert_eq!(failed, failing.hits() as f64, "{text}");
    assert_eq!(answered, good.hits() as f64, "{text}");
    assert_eq!(
        failed + answered,
        sample(&text, "stormguard_attempts_total{target=\"api\"}"),
        "every attempt is some instance's"
    );
    assert_eq!(
        sample(
            &text,
            "stormguard_proxy_request_duration_seconds_count{route=\"api\"}"
        ),
        40.0
    );
    // Five 503s in a row ejected the failing instance; its ejection is on its own series.
    let ejections = format!(
        "stormguard_proxy_instance_ejections_total{{route=\"api\",upstream=\"api\",instance_addr=\"{}\"}}",
        failing.addr
    );
    assert!(sample(&text, &ejections) >= 1.0, "{text}");
    // The failing instance leaves; the good one's counts stay.
    let mut settings = single(&[good.addr]);
    settings.routes[0].call.timeout = Some(ms(1500));
    proxy.proxy.apply(settings).unwrap();
    let text = proxy.metrics();
    assert!(!text.contains(&failing.addr.to_string()), "{text}");
    assert_eq!(sample(&text, &series(good.addr, "ok")), answered);
}

/// A hedge's losing copy is not an observation of the attempts' histogram: the upstream always
/// takes 300 ms, and the copy dropped when the other answered was recorded at the moment it was
/// dropped (about 200 ms), pulling the quantiles `recommend` reads under the upstream's least
/// latency (a review). Only the answers are recorded.
#[tokio::test]
async fn a_hedges_losing_copy_is_not_recorded_as_a_latency() {
    let slow = [slow_upstream(ms(300)).await, slow_upstream(ms(300)).await];
    let mut settings = single(&[slow[0].addr, slow[1].addr]);
    settings.routes[0].call.timeout = Some(ms(2000));
    settings.routes[0].call.hedge = Some(stormguard_graph::model::HedgeSpec {
        delay: stormguard::hedge::HedgeDelay::Fixed(ms(100)),
        max_extra: 1.0,
    });
    let proxy = start(settings).await;
    let mut hedged = 0;
    for _ in 0..4 {
        let reply = get(&client(), &proxy.url("/")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        hedged += usize::from(reply.header("stormguard-attempts") == Some("2"));
    }
    assert!(hedged > 0, "no request was hedged");
    let text = proxy.metrics();
    let attempt = |suffix: &str| {
        sample(
            &text,
            &format!("stormguard_proxy_upstream_latency_seconds_{suffix}"),
        )
    };
    assert_eq!(
        attempt("bucket{le=\"0.25\",route=\"api\"}"),
        0.0,
        "no answer came under 300 ms: {text}"
    );
    assert_eq!(attempt("count{route=\"api\"}"), 4.0, "{text}");
}
