//! The layer's [`TriedInstances`]: none on a first attempt (nearly every request ends with it),
//! made when a retry is decided, with the instance the first attempt went to, even one the
//! per-try timeout dropped unanswered (the balancer reports it to the list watching the drop);
//! a list that comes with the request is used as it is.

use super::*;
use tower_service::Service;

use crate::layer::TriedInstances;

/// A mock instance: it answers `()`, or fails as a connection does.
type IoMock =
    tower::util::BoxCloneSyncService<Request<ReplayBody<Body>>, Response<()>, std::io::Error>;

/// Two instances behind a balancer: whichever one a request first reaches hangs for a minute,
/// the other answers at once. Returns the balancer and the attempts each instance received.
fn first_reached_hangs(seed: u64) -> (Balance<IoMock>, Vec<Calls>) {
    by_order_reached(seed, &[Does::Hang, Does::Answer(200)])
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_a_timeout_goes_elsewhere_from_the_first_request() {
    for seed in 0..20 {
        let (balance, hits) = first_reached_hangs(seed);
        // No request before this one went through the layer, and none carries a list: the
        // first attempt goes without one, and its call, dropped by the per-try timeout, tells
        // the balancer's choice to the list the layer watches the drop with.
        let svc = RetryLayer::new(unlimited()).seed(seed).layer(balance);
        let response = svc.oneshot(request(Method::GET)).await.unwrap();
        // One attempt each: the retry avoided the instance that hung, and both are counted.
        let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
        let outcome = (response.status(), counts, Attempts::of(&response));
        assert_eq!(outcome, (StatusCode::OK, vec![1, 1], 2), "seed {seed}");
        // The retry carried the list, where the balancer recorded its choice: its answer is
        // not marked.
        assert!(
            response.extensions().get::<Instance>().is_none(),
            "seed {seed}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_list_from_the_first_attempt_a_retry_after_a_timeout_may_go_back() {
    // Why the layer watches the drop of an attempt its per-try timeout ended: a retry whose
    // list starts empty knows nothing of where the timed-out attempt went, and the balancer
    // may choose the instance that just hung. Shown by sending the second attempt alone, as
    // a retry that starts a fresh list would: a request with an empty list to the same
    // balancer.
    let mut went_back = 0;
    for seed in 0..20 {
        let (mut balance, hits) = first_reached_hangs(seed);
        let first = balance.call(list_request(&TriedInstances::default()));
        tokio::time::timeout(Duration::from_millis(100), first)
            .await
            .unwrap_err();
        let retry = balance.call(list_request(&TriedInstances::default()));
        if tokio::time::timeout(Duration::from_millis(100), retry)
            .await
            .is_err()
        {
            assert_eq!(hits.iter().map(Calls::get).sum::<u32>(), 2);
            went_back += 1;
        }
    }
    assert!(went_back > 0, "no seed of 20 sent the retry back");
}

/// A GET for an instance directly, carrying `tried`.
fn list_request(tried: &TriedInstances) -> Request<ReplayBody<Body>> {
    let mut req = Request::get("http://api.test/items")
        .body(ReplayBody::empty())
        .unwrap();
    req.extensions_mut().insert(tried.clone());
    req
}

/// Whether the first attempt of a `method` request through `layer` carried a list.
async fn first_attempt_carries_a_list<O: crate::metrics::Observer>(
    layer: &RetryLayer<O>,
    method: Method,
) -> bool {
    let carried = Arc::new(std::sync::Mutex::new(None));
    let record = carried.clone();
    let svc = layer.layer(tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        record
            .lock()
            .unwrap()
            .get_or_insert(req.extensions().get::<TriedInstances>().is_some());
        async { Ok::<_, Infallible>(status(200)) }
    }));
    svc.oneshot(request(method)).await.unwrap();
    let carried = carried.lock().unwrap().take();
    carried.unwrap()
}

#[tokio::test(start_paused = true)]
async fn no_first_attempt_carries_a_list_of_the_layers_own() {
    let resends = RetryLayer::new(unlimited());
    assert!(!first_attempt_carries_a_list(&resends, Method::GET).await);
    assert!(!first_attempt_carries_a_list(&resends, Method::POST).await);
    let observed = resends.clone().observer(Recorder::default()).target("api");
    assert!(!first_attempt_carries_a_list(&observed, Method::POST).await);
    let once = RetryLayer::new(unlimited().with_max_attempts(1));
    assert!(!first_attempt_carries_a_list(&once, Method::GET).await);
}

#[tokio::test(start_paused = true)]
async fn a_retry_carries_the_list_with_the_instance_the_first_attempt_named() {
    // The first attempt fails with an error that names instance 3, as a balancer's does; the
    // retry carries a list that has it, for a POST too (a refused connection is retried
    // whatever the method, and must go elsewhere).
    for method in [Method::GET, Method::POST] {
        let carried = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = carried.clone();
        let svc = RetryLayer::new(unlimited()).layer(tower::service_fn(
            move |req: Request<ReplayBody<Body>>| {
                let list = req.extensions().get::<TriedInstances>().map(|t| t.to_vec());
                let first = list.is_none();
                record.lock().unwrap().push(list);
                async move {
                    if first {
                        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                        Err(crate::layer::balance::InstanceError::new(3, refused.into()))
                    } else {
                        Ok(status(200))
                    }
                }
            },
        ));
        let response = svc.oneshot(request(method.clone())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(
            *carried.lock().unwrap(),
            vec![None, Some(vec![3])],
            "{method}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_sends_once_leaves_the_response_marked_with_its_instance() {
    let (balance, hits) = first_reached_hangs(5);
    let svc = RetryLayer::new(
        unlimited()
            .with_max_attempts(1)
            .with_per_try_timeout(Duration::from_secs(120)),
    )
    .layer(balance);
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    let answered = response.extensions().get::<Instance>().unwrap().0;
    assert_eq!(hits[answered].get(), 1);
    assert_eq!(hits.iter().map(Calls::get).sum::<u32>(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_list_that_comes_with_the_request_is_used_as_it_is() {
    for policy in [unlimited(), unlimited().with_max_attempts(1)] {
        let sends_once = policy.max_attempts == 1;
        let (balance, hits) = first_reached_hangs(3);
        let svc = RetryLayer::new(policy).layer(balance);
        let tried = TriedInstances::default();
        let mut req = request(Method::GET);
        req.extensions_mut().insert(tried.clone());
        let outcome = svc.oneshot(req).await;
        let went = tried.to_vec();
        if sends_once {
            // The one attempt hung and was cut: the caller's list says where it went.
            assert_eq!(outcome.unwrap_err().attempts(), 1);
            assert_eq!(tried.attempts(), 1);
            assert_eq!(went.len(), 1);
            assert_eq!(hits[went[0]].get(), 1);
            continue;
        }
        let response = outcome.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.extensions().get::<Instance>().is_none());
        // Both attempts went through the caller's list: both counted, both recorded.
        assert_eq!(tried.attempts(), 2);
        assert_eq!(went.len(), 2);
        assert_ne!(went[0], went[1]);
        assert_eq!(hits[went[0]].get(), 1);
        assert_eq!(hits[went[1]].get(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_sends_once_hands_the_request_on_whole() {
    // Its one attempt takes the head itself, not a copy: every header and extension arrives,
    // the caller's list the same list, and the attempt's budget is written.
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(&'static str);
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let svc = RetryLayer::new(unlimited().with_max_attempts(1)).layer(tower::service_fn(
        move |req: Request<ReplayBody<Body>>| {
            let tried = req.extensions().get::<TriedInstances>().cloned();
            *record.lock().unwrap() = Some((
                req.method().clone(),
                req.uri().clone(),
                req.headers().get("x-caller").cloned(),
                req.headers().contains_key(crate::deadline::BUDGET_HEADER),
                req.extensions().get::<Tag>().cloned(),
                tried,
            ));
            async { Ok::<_, Infallible>(status(200)) }
        },
    ));
    let tried = TriedInstances::default();
    let mut req = request(Method::PUT);
    req.headers_mut()
        .insert("x-caller", http::HeaderValue::from_static("web-1"));
    req.extensions_mut().insert(Tag("caller"));
    req.extensions_mut().insert(tried.clone());
    svc.oneshot(req).await.unwrap();
    let (method, uri, header, budget, tag, carried) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        (method, uri.to_string()),
        (Method::PUT, "http://api.test/items".into())
    );
    assert_eq!(header.unwrap(), "web-1");
    assert!(budget, "the attempt's budget is written");
    assert_eq!(tag, Some(Tag("caller")));
    carried.unwrap().record(7);
    assert_eq!(tried.to_vec(), vec![7], "the caller's own list");
}

/// What an instance of [`by_order_reached`] does with every request.
#[derive(Clone, Copy, Debug)]
enum Does {
    Answer(u16),
    Hang,
    /// A connection reset after this many milliseconds.
    Reset(u64),
}

/// Instances behind a balancer, each doing what `does` says for the order in which requests
/// first reached it (the first instance reached does `does[0]`, whichever it is). Returns the
/// balancer and the requests each instance received.
#[allow(clippy::type_complexity)]
fn by_order_reached<B: Send + 'static>(
    seed: u64,
    does: &[Does],
) -> (
    Balance<tower::util::BoxCloneSyncService<Request<B>, Response<()>, std::io::Error>>,
    Vec<Calls>,
) {
    let hits: Vec<Calls> = does.iter().map(|_| Calls::default()).collect();
    let order = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let does = does.to_vec();
    let instances = hits
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, calls)| {
            let order = order.clone();
            let does = does.clone();
            tower::util::BoxCloneSyncService::new(tower::service_fn(move |_req: Request<B>| {
                calls.next();
                let mut order = order.lock().unwrap();
                if !order.contains(&i) {
                    order.push(i);
                }
                let what = does[order.iter().position(|&o| o == i).unwrap()];
                async move {
                    match what {
                        Does::Answer(code) => Ok(status(code)),
                        Does::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            Ok(status(200))
                        }
                        Does::Reset(ms) => {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                        }
                    }
                }
            }))
        })
        .collect();
    (Balance::new(instances).seed(seed), hits)
}

fn hedge_after_50ms() -> crate::layer::HedgeLayer {
    use crate::hedge::{HedgeDelay, HedgePolicy};
    crate::layer::HedgeLayer::new(
        HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn through_a_hedge_a_retry_after_a_503_goes_elsewhere() {
    // The hedge gives the request a list of its own, so the balancer marks no answer with its
    // instance: the hedge hands its list up with the 503, and the retry avoids that instance.
    let does = [Does::Answer(503), Does::Answer(200)];
    for seed in 0..20 {
        let outcome = one_get_through_a_hedge(seed, &does).await;
        assert_eq!(outcome, (StatusCode::OK, vec![1, 1], 2), "seed {seed}");
    }
}

/// One GET through a retry layer (per-try timeout 100 ms) over a hedge after 50 ms over the
/// instances of [`by_order_reached`]: the status, the requests each instance received, and the
/// attempts the response reports.
async fn one_get_through_a_hedge(seed: u64, does: &[Does]) -> (StatusCode, Vec<u32>, u32) {
    let (balance, hits) = by_order_reached(seed, does);
    let svc = RetryLayer::new(unlimited())
        .seed(seed)
        .layer(hedge_after_50ms().layer(balance));
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
    (response.status(), counts, Attempts::of(&response))
}

#[tokio::test(start_paused = true)]
async fn a_hedge_whose_copies_both_failed_tells_both_instances() {
    // The original is reset at 60 ms, the hedge sent at 50 ms at once: the race answers with
    // the original's error, which names one instance; the hedge's list, dropped with the
    // error, tells both to the list the retry layer polled the attempt under. The retry goes
    // to the third, and three attempts are counted.
    let does = [Does::Reset(60), Does::Reset(0), Does::Answer(200)];
    for seed in 0..20 {
        let outcome = one_get_through_a_hedge(seed, &does).await;
        assert_eq!(outcome, (StatusCode::OK, vec![1, 1, 1], 3), "seed {seed}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_cut_by_the_per_try_timeout_tells_both_copies_also_the_one_that_answered() {
    // The original hangs; the hedge after 50 ms gets a 503, and the race waits for the
    // original; the per-try timeout (100 ms) drops both. The retry avoids both instances, and
    // the three attempts are counted.
    let does = [Does::Hang, Does::Answer(503), Does::Answer(200)];
    for seed in 0..20 {
        let outcome = one_get_through_a_hedge(seed, &does).await;
        assert_eq!(outcome, (StatusCode::OK, vec![1, 1, 1], 3), "seed {seed}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_a_timeout_layer_below_goes_elsewhere() {
    // tower's timeout between the layer and the balancer ends the attempt with its own error
    // while the call goes on inside it: dropped under the layer's watch, it is still heard of.
    for seed in 0..20 {
        let (balance, hits) = first_reached_hangs(seed);
        let policy = unlimited().with_per_try_timeout(Duration::from_secs(10));
        let svc = RetryLayer::new(policy).seed(seed).layer(
            tower::ServiceBuilder::new()
                .map_err(|e: tower::BoxError| e)
                .timeout(Duration::from_millis(100))
                .service(balance),
        );
        let response = svc.oneshot(request(Method::GET)).await.unwrap();
        let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
        assert_eq!(
            (response.status(), counts, Attempts::of(&response)),
            (StatusCode::OK, vec![1, 1], 2),
            "seed {seed}"
        );
    }
}
