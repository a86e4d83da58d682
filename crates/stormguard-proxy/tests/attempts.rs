//! `stormguard-attempts` counts what reached the upstreams: a hedge is an attempt, and attempts
//! made before the deadline ran out are counted whichever layer answered it.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::HedgeSpec;
use support::*;

/// The request ids an instance received.
fn ids(instance: &Instance) -> HashSet<String> {
    instance
        .heads()
        .iter()
        .filter_map(|h| h.get("x-request-id"))
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// How many of `instances` received request `id`: the attempts it took, each instance being
/// tried at most once per request.
fn reached(instances: &[&HashSet<String>], id: &str) -> usize {
    instances.iter().filter(|seen| seen.contains(id)).count()
}

/// Sends `n` GETs with ids 0..n at once; returns each id's reply.
async fn send_ids(proxy: &Running, n: usize) -> Vec<Reply> {
    let client = client();
    let tasks: Vec<_> = (0..n)
        .map(|id| {
            let (client, url) = (client.clone(), proxy.url("/"));
            tokio::spawn(async move {
                let req = Request::get(url)
                    .header("x-request-id", id.to_string())
                    .body(Full::default())
                    .unwrap();
                send(&client, req).await.unwrap()
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        let reply = tokio::time::timeout(Duration::from_secs(10), task).await;
        replies.push(reply.expect("answered within 10 s").unwrap());
    }
    replies
}

/// Panics unless each reply's `stormguard-attempts` is the number of instances its request
/// reached.
///
/// A copy can be answered for before the instance it went to has read its head (the other copy
/// won first), so the instances are read again for up to 5 s until every count agrees.
async fn assert_counted(replies: &[Reply], instances: &[&Instance]) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen: Vec<HashSet<String>> = instances.iter().map(|i| ids(i)).collect();
        let seen: Vec<&HashSet<String>> = seen.iter().collect();
        let wrong = replies.iter().enumerate().find(|(id, reply)| {
            let sent = reached(&seen, &id.to_string()).to_string();
            reply.header("stormguard-attempts") != Some(sent.as_str())
        });
        match wrong {
            None => return,
            Some((id, reply)) if tokio::time::Instant::now() >= until => {
                let sent = reached(&seen, &id.to_string());
                panic!("request {id} reached {sent} instance(s): {reply:?}");
            }
            Some(_) => tokio::time::sleep(ms(20)).await,
        }
    }
}

/// Hedges after `delay`: long enough that an instance answering at once is not hedged even on
/// a loaded machine, since a hedge that loses is cancelled, and a cancelled copy may never
/// reach its instance (hyper drops a request whose caller is gone before writing it).
fn hedged_after(config: &mut stormguard_proxy::config::Config, delay: Duration) {
    config.routes[0].call.hedge = Some(HedgeSpec {
        delay: HedgeDelay::Fixed(delay),
        max_extra: 1.0,
    });
}

#[tokio::test]
async fn a_hedge_that_answered_first_is_counted_as_an_attempt() {
    let slow = slow_upstream(Duration::from_secs(1)).await;
    let fast = ok_upstream().await;
    let mut config = single(&[slow.addr, fast.addr]);
    hedged_after(&mut config, ms(200));
    let proxy = start(config).await;
    let replies = send_ids(&proxy, 20).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_counted(&replies, &[&slow, &fast]).await;
    let hedged = replies
        .iter()
        .filter(|r| r.header("stormguard-attempts") == Some("2"))
        .count();
    assert!(hedged > 0, "some requests went to the slow instance first");
}

/// The deadline drops the attempts in flight: those it drops are counted all the same, on a
/// hedged route (both copies, whether the route may resend or not) and after a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_in_flight_when_the_deadline_ran_out_are_counted() {
    // A route that may resend, and one that sends once: either way the balancer reports the
    // copies the timeout dropped to the list the retry layer watches the drop with.
    for max_attempts in [2, 1] {
        let hanging = [
            slow_upstream(Duration::from_secs(2)).await,
            slow_upstream(Duration::from_secs(2)).await,
        ];
        let mut config = single(&[hanging[0].addr, hanging[1].addr]);
        config.routes[0].call.max_attempts = max_attempts;
        config.routes[0].call.timeout = Some(ms(300));
        config.routes[0].call.request_timeout = Some(ms(300));
        hedged_after(&mut config, ms(30));
        let proxy = start(config).await;
        let replies = send_ids(&proxy, 10).await;
        assert!(replies.iter().all(|r| r.status == 504), "{replies:?}");
        assert_counted(&replies, &[&hanging[0], &hanging[1]]).await;
        assert!(
            replies
                .iter()
                .all(|r| r.header("stormguard-attempts") == Some("2")),
            "max_attempts = {max_attempts}: {replies:?}"
        );
    }

    let failing = status_upstream(503).await;
    let hanging = slow_upstream(Duration::from_secs(2)).await;
    let mut config = single(&[failing.addr, hanging.addr]);
    config.routes[0].call.timeout = Some(ms(300));
    config.routes[0].call.request_timeout = Some(ms(300));
    config.routes[0].call.limiter = None;
    let proxy = start(config).await;
    let replies = send_ids(&proxy, 20).await;
    assert!(replies.iter().all(|r| r.status == 504), "{replies:?}");
    assert_counted(&replies, &[&failing, &hanging]).await;
}
