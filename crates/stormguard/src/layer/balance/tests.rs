//! The balancer on paused time against mock instances: the choice, and passive health checking
//! under the retry layer with the recommended retry budget.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::*;
use crate::layer::test_support::{Calls, Recorder};
use crate::layer::{Attempts, RetryLayer};
use crate::metrics::Event;
use crate::policy::RetryPolicy;

#[tokio::test]
async fn requests_avoid_tried_instances() {
    let make = |i: usize| {
        tower::service_fn(
            move |_req: Request<()>| async move { Ok::<_, Infallible>(Response::new(i)) },
        )
    };
    let mut balance = Balance::new(vec![make(0), make(1), make(2)]).seed(9);
    for _ in 0..50 {
        let tried = TriedInstances::default();
        tried.record(1);
        let mut req = Request::new(());
        req.extensions_mut().insert(tried.clone());
        let response = balance.call(req).await.unwrap();
        let went = *response.body();
        assert_ne!(went, 1);
        // The choice is in the list, where the retry layer reads it: no extension is paid for.
        assert_eq!(tried.to_vec(), vec![1, went]);
        assert!(response.extensions().get::<Instance>().is_none());
    }
    assert_eq!(balance.in_flight(), vec![0, 0, 0]);
}

#[tokio::test]
async fn errors_name_their_instance() {
    let failing = tower::service_fn(|_req: Request<()>| async {
        Err::<Response<()>, BoxError>("boom".into())
    });
    let mut balance = Balance::new(vec![failing]);
    let err = balance.call(Request::new(())).await.unwrap_err();
    assert_eq!(instance_of(&*err), Some(0));
}

/// What a mock instance does with every request.
const HEALTHY: u8 = 0;
const REFUSING: u8 = 1;
const UNAVAILABLE: u8 = 2;
const HANGING: u8 = 3;

/// A mock instance whose behaviour the test can switch, counting the attempts it receives.
/// A refusal is the `io::Error` a connector returns, as the retry layer's tests simulate it.
#[derive(Clone)]
struct Mock {
    behaviour: Arc<AtomicU8>,
    calls: Calls,
}

impl<B> Service<Request<B>> for Mock {
    type Response = Response<()>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        self.calls.next();
        let now = self.behaviour.load(Ordering::SeqCst);
        Box::pin(async move {
            match now {
                REFUSING => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                UNAVAILABLE => Ok(Response::builder().status(503).body(()).unwrap()),
                HANGING => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Response::new(()))
                }
                _ => Ok(Response::new(())),
            }
        })
    }
}

/// Instances behaving as `behaviours` says, their switches and their attempt counters.
fn instances(behaviours: &[u8]) -> (Vec<Mock>, Vec<Arc<AtomicU8>>, Vec<Calls>) {
    let switches: Vec<_> = behaviours
        .iter()
        .map(|&b| Arc::new(AtomicU8::new(b)))
        .collect();
    let calls: Vec<Calls> = behaviours.iter().map(|_| Calls::default()).collect();
    let mocks = switches
        .iter()
        .zip(&calls)
        .map(|(s, c)| Mock {
            behaviour: s.clone(),
            calls: c.clone(),
        })
        .collect();
    (mocks, switches, calls)
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://api.test/items")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Sends `count` GETs through `svc`, one every millisecond whatever the earlier ones are doing
/// (an open loop, as real clients are), and returns how many did not end in a 200.
async fn open_loop<S>(svc: S, count: usize) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        answers.push(tokio::spawn(svc.clone().oneshot(get())));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut failed = 0;
    for answer in answers {
        match answer.await.unwrap() {
            Ok(response) if response.status() == StatusCode::OK => {}
            _ => failed += 1,
        }
    }
    failed
}

/// 10,000 requests over 10 s through the recommended policy (one retry, retry budget 0.2 with
/// 10/s minimum) to three instances, the second of which refuses every connection. Returns the
/// failed requests, the attempts the refusing instance received, and the events.
async fn one_of_three_refusing(outlier_detection: bool) -> (usize, u32, Recorder) {
    let (services, _, calls) = instances(&[HEALTHY, REFUSING, HEALTHY]);
    let recorder = Recorder::default();
    let mut balance = Balance::new(services)
        .seed(11)
        .observer(recorder.clone())
        .target("api");
    if !outlier_detection {
        balance = balance.without_outlier_detection();
    }
    let svc = RetryLayer::new(RetryPolicy::recommended())
        .seed(11)
        .observer(recorder.clone())
        .target("api")
        .layer(balance);
    let failed = open_loop(svc, 10_000).await;
    (failed, calls[1].get(), recorder)
}

#[tokio::test(start_paused = true)]
async fn with_one_of_three_instances_refusing_10_000_requests_all_succeed() {
    let (failed, refused, recorder) = one_of_three_refusing(true).await;
    assert_eq!(failed, 0);
    // Ejected at its first refusal for 1 s, then 2 s, 4 s, 8 s: one probe each time.
    assert!(refused <= 6, "the refusing instance got {refused} attempts");
    let ejections = recorder.count(|e| matches!(e, Event::Ejected { instance: 1, .. }));
    assert_eq!(ejections as u32, refused);
    assert_eq!(
        recorder.count(|e| matches!(e, Event::Retry(_))),
        refused as usize
    );
}

#[tokio::test(start_paused = true)]
async fn without_outlier_detection_the_budget_runs_out() {
    // The same load without ejection: a third of first attempts need a retry, more than a 20%
    // budget allows, so requests fail. This is what ejection is for.
    let (failed, refused, recorder) = one_of_three_refusing(false).await;
    assert!(refused > 3_000, "{refused}");
    assert!(failed > 500, "{failed}");
    assert!(recorder.count(|e| matches!(e, Event::RetryDenied(_))) > 500);
    assert_eq!(recorder.count(|e| matches!(e, Event::Ejected { .. })), 0);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_instance_takes_traffic_again_once_it_recovered() {
    let (services, switches, calls) = instances(&[REFUSING, HEALTHY, HEALTHY]);
    let balance = Balance::new(services).seed(3);
    let svc = RetryLayer::new(RetryPolicy::recommended())
        .seed(3)
        .layer(balance.clone());
    // Down for half a second: ejected at its first refusal, for 1 s.
    let failed = open_loop(svc.clone(), 500).await;
    assert_eq!(failed, 0);
    assert_eq!(calls[0].get(), 1);
    assert_eq!(balance.ejected(), vec![true, false, false]);
    // Back up: once the ejection ends, it takes its share again.
    switches[0].store(HEALTHY, Ordering::SeqCst);
    let failed = open_loop(svc, 3_000).await;
    assert_eq!(failed, 0);
    assert_eq!(balance.ejected(), vec![false, false, false]);
    let after = calls[0].get() - 1;
    // Out for the first ~500 ms of these 3 s, then a third of the rest: about 830.
    assert!((600..=1_100).contains(&after), "{after}");
}

#[tokio::test(start_paused = true)]
async fn five_503s_in_a_row_eject_an_instance() {
    let (services, _, calls) = instances(&[UNAVAILABLE, HEALTHY, HEALTHY]);
    let recorder = Recorder::default();
    let mut balance = Balance::new(services).seed(5).observer(recorder.clone());
    while calls[0].get() < 5 {
        balance.call(Request::new(())).await.unwrap();
    }
    assert_eq!(balance.ejected(), vec![true, false, false]);
    assert_eq!(
        recorder.count(|e| *e
            == Event::Ejected {
                instance: 0,
                duration: Duration::from_secs(1)
            }),
        1
    );
    for _ in 0..300 {
        balance.call(Request::new(())).await.unwrap();
    }
    assert_eq!(calls[0].get(), 5, "no request while ejected");
}

#[tokio::test(start_paused = true)]
async fn of_two_refusing_instances_only_one_is_ejected() {
    let (services, _, calls) = instances(&[REFUSING, REFUSING]);
    let mut balance = Balance::new(services).seed(1);
    for _ in 0..20 {
        balance.call(Request::new(())).await.unwrap_err();
    }
    let ejected = balance.ejected();
    assert_eq!(ejected.iter().filter(|&&e| e).count(), 1, "{ejected:?}");
    let (out, kept) = if ejected[0] { (0, 1) } else { (1, 0) };
    assert_eq!(calls[out].get(), 1);
    assert_eq!(calls[kept].get(), 19);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_short_is_not_counted() {
    // A per-try timeout or a hedge that lost drops the attempt: that says nothing of the instance.
    let (services, _, calls) = instances(&[HANGING, HANGING]);
    let mut balance = Balance::new(services).seed(1);
    for _ in 0..20 {
        let attempt = balance.call(Request::new(()));
        tokio::time::timeout(Duration::from_millis(10), attempt)
            .await
            .unwrap_err();
    }
    assert_eq!(calls[0].get() + calls[1].get(), 20);
    assert_eq!(balance.ejected(), vec![false, false]);
    assert_eq!(balance.in_flight(), vec![0, 0]);
}

#[tokio::test(start_paused = true)]
async fn without_outlier_detection_nothing_is_ejected() {
    let (services, _, calls) = instances(&[REFUSING, HEALTHY]);
    let mut balance = Balance::new(services).seed(2).without_outlier_detection();
    for _ in 0..100 {
        let _ = balance.call(Request::new(())).await;
    }
    assert!(calls[0].get() > 20, "{}", calls[0].get());
    assert_eq!(balance.ejected(), vec![false, false]);
}

#[tokio::test(start_paused = true)]
async fn with_a_list_the_choice_is_recorded_in_the_list_only() {
    let (services, _, calls) = instances(&[HEALTHY, HEALTHY]);
    let mut balance = Balance::new(services).seed(6);
    let tried = TriedInstances::default();
    let mut req = Request::new(());
    req.extensions_mut().insert(tried.clone());
    let response = balance.call(req).await.unwrap();
    assert!(response.extensions().get::<Instance>().is_none());
    let went = tried.to_vec();
    assert_eq!(went.len(), 1);
    assert_eq!(calls[went[0]].get(), 1);
    assert_eq!(tried.attempts(), 1);
    // An error still names its instance, list or not.
    let (services, _, _) = instances(&[REFUSING]);
    let mut balance = Balance::new(services);
    let mut req = Request::new(());
    req.extensions_mut().insert(TriedInstances::default());
    let err = balance.call(req).await.unwrap_err();
    assert_eq!(instance_of(&*err), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_list_gets_the_instance_extension() {
    let (services, _, calls) = instances(&[HEALTHY, HEALTHY, HEALTHY]);
    let mut balance = Balance::new(services).seed(8);
    for _ in 0..10 {
        let before: Vec<u32> = calls.iter().map(Calls::get).collect();
        let response = balance.call(Request::new(())).await.unwrap();
        let went = response.extensions().get::<Instance>().unwrap().0;
        assert_eq!(calls[went].get(), before[went] + 1, "the instance called");
    }
}

/// One GET through a retry layer allowing `max_attempts` (its own list from the first retry
/// on) over a balancer, to two instances of which the first answers 503: its status, the
/// attempts the response reports, and the attempts the failing instance received.
async fn one_get_through_a_list(seed: u64, max_attempts: u32) -> (StatusCode, u32, u32) {
    let (services, _, calls) = instances(&[UNAVAILABLE, HEALTHY]);
    let balance = Balance::new(services).seed(seed);
    let policy = RetryPolicy::recommended().with_max_attempts(max_attempts);
    let retry = RetryLayer::new(policy).seed(seed);
    let response = retry.layer(balance).oneshot(get()).await.unwrap();
    // The first attempt carries no list, so its answer is marked with its instance; a retry's
    // choice goes into the retry layer's list, and its answer is not marked.
    let marked = response.extensions().get::<Instance>().is_some();
    assert_eq!(marked, Attempts::of(&response) == 1, "seed {seed}");
    (response.status(), Attempts::of(&response), calls[0].get())
}

#[tokio::test(start_paused = true)]
async fn a_retry_through_the_list_goes_to_another_instance() {
    let mut retried = 0;
    for seed in 0..20 {
        let (status, attempts, failed) = one_get_through_a_list(seed, 2).await;
        assert_eq!(status, StatusCode::OK, "seed {seed}");
        assert!(
            failed <= 1,
            "seed {seed}: the retry went back to the failing instance"
        );
        assert_eq!(attempts, 1 + failed, "seed {seed}");
        retried += failed;
    }
    assert!(
        retried > 0,
        "no seed of 20 reached the failing instance first"
    );
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_sends_once_leaves_the_503_marked() {
    // No list and no retry: the one answer, marked with the instance it came from.
    let mut failed = 0;
    for seed in 0..20 {
        let (status, attempts, hit) = one_get_through_a_list(seed, 1).await;
        assert_eq!(attempts, 1, "seed {seed}");
        if hit == 1 {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "seed {seed}");
            failed += 1;
        }
    }
    assert!(failed > 0, "no seed of 20 reached the failing instance");
}

/// A mock instance answering its name.
type Named = tower::util::BoxCloneSyncService<Request<()>, Response<&'static str>, BoxError>;

/// Each instance answers with its name; `refusing` names refuse (a connect error).
fn named_instances(
    names: &[&'static str],
    refusing: &'static [&'static str],
) -> Vec<(&'static str, Named)> {
    names
        .iter()
        .map(|&name| {
            let service = tower::service_fn(move |_req: Request<()>| async move {
                if refusing.contains(&name) {
                    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                    Err::<Response<&'static str>, BoxError>(
                        crate::layer::NotSent::new(refused).into(),
                    )
                } else {
                    Ok(Response::new(name))
                }
            });
            (name, tower::util::BoxCloneSyncService::new(service))
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_update_keeps_the_ejections_of_instances_that_stay_and_serves_the_new_set() {
    let mut balance = Balance::named(named_instances(&["a", "b", "c"], &["b"])).seed(5);
    // Until b is chosen once and ejected.
    for _ in 0..20 {
        let _ = balance.call(Request::new(())).await;
    }
    assert_eq!(balance.ejected(), vec![false, true, false]);
    // a leaves, d comes; b stays, ejected, now second.
    balance.update(named_instances(&["b", "d", "c"], &["b"]));
    assert_eq!(balance.names(), ["b", "d", "c"].map(Arc::<str>::from));
    assert_eq!(balance.ejected(), vec![true, false, false]);
    for _ in 0..50 {
        let response = balance.call(Request::new(())).await.unwrap();
        assert!(["c", "d"].contains(response.body()), "{}", response.body());
    }
    // A rebuilt balancer (a reload) takes the record over by name.
    let rebuilt = Balance::named(named_instances(&["c", "b"], &[]))
        .seed(1)
        .carry(&balance);
    assert_eq!(rebuilt.ejected(), vec![false, true]);
}

#[tokio::test]
async fn a_retry_after_an_update_still_avoids_the_instance_it_tried() {
    let mut balance = Balance::named(named_instances(&["a", "b"], &[])).seed(3);
    let tried = TriedInstances::default();
    let mut req = Request::new(());
    req.extensions_mut().insert(tried.clone());
    let first = *balance.call(req).await.unwrap().body();
    // The set changes: the tried instance moves and another comes before it.
    let (other, _) = if first == "a" { ("b", 0) } else { ("a", 1) };
    balance.update(named_instances(&["z", other, first], &[]));
    for _ in 0..20 {
        let mut req = Request::new(());
        let again = TriedInstances::default();
        for id in tried.to_vec() {
            again.record(id);
        }
        req.extensions_mut().insert(again);
        assert_ne!(*balance.call(req).await.unwrap().body(), first);
    }
}

#[tokio::test]
async fn an_empty_set_answers_no_instance() {
    let mut balance = Balance::named(named_instances(&["a"], &[]));
    balance.update(named_instances(&[], &[]));
    let error = balance.call(Request::new(())).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<Error>().map(Error::kind),
        Some(ErrorKind::NoInstance)
    );
}

#[test]
fn a_pooled_list_comes_back_empty_and_a_list_still_held_is_never_pooled() {
    let tried = TriedInstances::pooled();
    assert_eq!(tried.choose_and_record(|_| Some(3)), Some(3));
    tried.record(5);
    let first = Arc::as_ptr(&tried.0);
    // Nobody else holds it: it goes back to this thread's pool, emptied.
    tried.recycle();
    let again = TriedInstances::pooled();
    assert_eq!(Arc::as_ptr(&again.0), first, "the same allocation, reused");
    assert_eq!((again.to_vec(), again.attempts()), (vec![], 0));
    // A clone is still out (an attempt's request, a caller's list): it stays with its holders.
    let held = again.clone();
    again.recycle();
    let other = TriedInstances::pooled();
    assert!(!Arc::ptr_eq(&other.0, &held.0));
    held.record(7);
    assert_eq!((held.to_vec(), other.to_vec()), (vec![7], vec![]));
}

#[test]
fn an_attempt_dropped_unanswered_is_told_to_the_list_watching_its_drop_only() {
    let pending = tower::service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<()>, Infallible>>()
    });
    let answering =
        tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut hangs = Balance::new(vec![pending]);
    let mut answers = Balance::new(vec![answering]);
    let watch = TriedInstances::default();
    // Dropped with no list watching: nobody hears of it, nor does a later watch.
    drop(hangs.call(Request::new(())));
    watch.watching(|| ());
    assert_eq!((watch.to_vec(), watch.attempts()), (vec![], 0));
    // Answered, then dropped under a watch: not given up on, not told.
    let mut answered = Box::pin(answers.call(Request::new(())));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(answered.as_mut().poll(&mut cx).is_ready());
    watch.watching(|| drop(answered));
    assert_eq!(watch.attempts(), 0);
    // Two dropped unanswered under the watch, one of them carrying a list of its own (a
    // hedge's): the one without is told; the other is counted in its list, which the layer
    // that made it reports when it is dropped too (a `HeldList`).
    let own = TriedInstances::default();
    let mut with_list = Request::new(());
    with_list.extensions_mut().insert(own.clone());
    let calls = (hangs.call(Request::new(())), hangs.call(with_list));
    watch.watching(|| drop(calls));
    assert_eq!((watch.to_vec(), watch.attempts()), (vec![0], 1));
    assert_eq!(own.attempts(), 1);
    let held = HeldList(Some(own.clone()));
    watch.watching(|| drop(held));
    assert_eq!((watch.to_vec(), watch.attempts()), (vec![0], 2));
    // A list held and dropped with no watch, or taken out first, is told to nobody.
    drop(HeldList(Some(own.clone())));
    let mut held = HeldList(Some(own));
    let _ = held.0.take();
    watch.watching(|| drop(held));
    assert_eq!(watch.attempts(), 2);
    // Watches nest: the inner one hears of what is dropped inside it; the outer is back after.
    let inner = TriedInstances::default();
    let call = hangs.call(Request::new(()));
    watch.watching(|| inner.watching(|| drop(call)));
    assert_eq!((inner.attempts(), watch.attempts()), (1, 2));
    let call = hangs.call(Request::new(()));
    watch.watching(|| {
        inner.watching(|| ());
        drop(call)
    });
    assert_eq!((inner.attempts(), watch.attempts()), (1, 3));
    assert_eq!(hangs.in_flight(), vec![0]);
}
