//! Attempts counted as sent: a hedge's copy is one, and attempts dropped by a timeout above them
//! still count: the retry layer's own per-try timeout watches the drop
//! ([`TriedInstances::watching`]), another layer's counts when the request carries a list.

use super::*;
use crate::hedge::{HedgeDelay, HedgePolicy};
use crate::layer::{DeadlineLayer, Error, HedgeLayer, TriedInstances};

/// A hedge after 50 ms, with room for a hedge on every request.
fn hedge_after_50ms() -> HedgeLayer {
    HedgeLayer::new(HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap())
}

/// Two instances behind a balancer; each call sleeps what `took(n)` says for the n-th call.
fn instances<B: Send + 'static>(
    calls: Calls,
    took: fn(u32) -> u64,
) -> Balance<tower::util::BoxCloneSyncService<Request<B>, Response<()>, Infallible>> {
    let instances = (0..2)
        .map(|_| {
            let calls = calls.clone();
            tower::util::BoxCloneSyncService::new(tower::service_fn(move |_req: Request<B>| {
                let n = calls.next();
                async move {
                    tokio::time::sleep(Duration::from_millis(took(n))).await;
                    Ok::<_, Infallible>(Response::new(()))
                }
            }))
        })
        .collect();
    Balance::new(instances).seed(7)
}

fn get_with(tried: Option<&TriedInstances>) -> Request<Body> {
    let mut req = request(Method::GET);
    if let Some(tried) = tried {
        req.extensions_mut().insert(tried.clone());
    }
    req
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_answered_first_counts_two_attempts() {
    let calls = Calls::default();
    // The first call is slow; the hedge after 50 ms answers at once.
    let balance = instances(calls.clone(), |n| if n == 0 { 1000 } else { 0 });
    let svc = RetryLayer::new(unlimited()).layer(hedge_after_50ms().layer(balance));
    let response = svc.oneshot(get_with(None)).await.unwrap();
    assert_eq!(calls.get(), 2);
    assert_eq!(Attempts::of(&response), 2, "the hedge is an attempt");
}

#[tokio::test(start_paused = true)]
async fn a_hedged_attempt_cut_by_the_per_try_timeout_counts_both_copies() {
    let calls = Calls::default();
    let balance = instances(calls.clone(), |_| 1000);
    let policy = unlimited()
        .with_max_attempts(1)
        .with_per_try_timeout(Duration::from_millis(200));
    let svc = RetryLayer::new(policy).layer(hedge_after_50ms().layer(balance));
    let tried = TriedInstances::default();
    let err = svc.oneshot(get_with(Some(&tried))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(calls.get(), 2);
    assert_eq!(err.attempts(), 2);
    assert_eq!(tried.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_layers_own_timeout_counts_the_attempts_made_below() {
    let calls = Calls::default();
    let balance = instances(calls.clone(), |_| 1000);
    // No retry layer keeps the deadline below: the deadline layer's own timeout answers.
    let svc =
        DeadlineLayer::new(Duration::from_millis(300)).layer(hedge_after_50ms().layer(balance));
    let tried = TriedInstances::default();
    let err = svc
        .clone()
        .oneshot(get_with(Some(&tried)))
        .await
        .unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(calls.get(), 2);
    assert_eq!(err.attempts(), 2, "both copies were sent");
    // Without a list to count in, the one call this layer made is all it can tell.
    let err = svc.oneshot(get_with(None)).await.unwrap_err();
    assert_eq!(err.downcast::<Error>().unwrap().attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_answered_carries_no_count() {
    let calls = Calls::default();
    let balance = instances(calls.clone(), |_| 10);
    let svc = RetryLayer::new(unlimited()).layer(hedge_after_50ms().layer(balance));
    let response = svc.oneshot(get_with(None)).await.unwrap();
    assert_eq!(calls.get(), 1);
    assert!(
        response.extensions().get::<Attempts>().is_none(),
        "no extension paid for"
    );
    assert_eq!(Attempts::of(&response), 1);
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_may_resend_counts_hedged_copies_cut_by_the_per_try_timeout_without_a_callers_list(
) {
    // The proxy's stack. Two attempts, each cut by the per-try timeout: the first hedged (its
    // copies told to the list the retry layer watches the drop with), the retry not (it earns
    // no hedge budget) and carrying that list: three copies sent, three counted where the
    // outcomes alone say two.
    let (sent, err) = every_copy_cut_by_the_per_try_timeout(2).await;
    assert_eq!(sent, 3, "the first attempt was hedged");
    assert_eq!(err.attempts(), 3);
}

/// One GET, with no caller's list, through a retry layer allowing `max_attempts` (no backoff,
/// a per-try timeout of 200 ms) over a hedge after 50 ms over instances that take a second:
/// the copies the instances received, and the layer's timeout error.
async fn every_copy_cut_by_the_per_try_timeout(max_attempts: u32) -> (u32, Error) {
    let policy = unlimited()
        .with_max_attempts(max_attempts)
        .with_backoff(Backoff::None)
        .with_per_try_timeout(Duration::from_millis(200));
    let calls = Calls::default();
    let balance = instances(calls.clone(), |_| 1000);
    let svc = RetryLayer::new(policy).layer(hedge_after_50ms().layer(balance));
    let err = svc.oneshot(get_with(None)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    (calls.get(), err)
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_sends_once_counts_a_hedged_copy_cut_by_its_timeout_without_a_callers_list() {
    // The layer cannot see the hedge below it and attaches no list, but the copies its timeout
    // dropped unanswered are told to the list it watches the drop with: both are counted.
    let (sent, err) = every_copy_cut_by_the_per_try_timeout(1).await;
    assert_eq!(sent, 2, "both copies were sent");
    assert_eq!(err.attempts(), 2, "both copies are counted");
}
