//! [`RetryLayer::balanced`]: every request carries a [`TriedInstances`] from its first attempt,
//! made by the retry layer, so the caller need not attach one.

use super::*;
use crate::layer::TriedInstances;

/// A mock instance that answers `()`.
type Mock = tower::util::BoxCloneSyncService<Request<ReplayBody<Body>>, Response<()>, Infallible>;

/// Two instances behind a balancer: whichever one a request first reaches hangs for a minute,
/// the other answers at once. Returns the balancer and the attempts each instance received.
fn first_reached_hangs(seed: u64) -> (Balance<Mock>, Vec<Calls>) {
    let hits: Vec<Calls> = (0..2).map(|_| Calls::default()).collect();
    let hanging = Arc::new(std::sync::OnceLock::<usize>::new());
    let instances = hits
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, calls)| {
            let hanging = hanging.clone();
            Mock::new(tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
                calls.next();
                let hangs = *hanging.get_or_init(|| i) == i;
                async move {
                    if hangs {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Ok::<_, Infallible>(status(200))
                }
            }))
        })
        .collect();
    (Balance::new(instances).seed(seed), hits)
}

#[tokio::test(start_paused = true)]
async fn balanced_a_retry_after_a_timeout_goes_elsewhere_from_the_first_request() {
    for seed in 0..20 {
        let (balance, hits) = first_reached_hangs(seed);
        // No request before this one has shown the layer a balancer, and none carries a list.
        let svc = RetryLayer::new(unlimited())
            .seed(seed)
            .balanced()
            .layer(balance);
        let response = svc.oneshot(request(Method::GET)).await.unwrap();
        // One attempt each: the retry avoided the instance that hung, and both are counted.
        let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
        let outcome = (response.status(), counts, Attempts::of(&response));
        assert_eq!(outcome, (StatusCode::OK, vec![1, 1], 2), "seed {seed}");
    }
}

#[tokio::test(start_paused = true)]
async fn unbalanced_a_first_requests_retry_after_a_timeout_may_go_back() {
    // What `balanced` is for: told of no balancer, the layer sends the retry with an empty list,
    // and the balancer may choose the instance that just timed out.
    let mut went_back = 0;
    for seed in 0..20 {
        let (balance, hits) = first_reached_hangs(seed);
        let svc = RetryLayer::new(unlimited()).seed(seed).layer(balance);
        if let Err(err) = svc.oneshot(request(Method::GET)).await {
            assert_eq!(err.kind(), ErrorKind::Timeout);
            assert_eq!(hits.iter().map(Calls::get).sum::<u32>(), 2);
            went_back += 1;
        }
    }
    assert!(went_back > 0, "no seed of 20 sent the retry back");
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
async fn balanced_every_first_attempt_carries_a_list_whatever_its_method() {
    let balanced = RetryLayer::new(unlimited()).balanced();
    assert!(first_attempt_carries_a_list(&balanced, Method::GET).await);
    assert!(first_attempt_carries_a_list(&balanced, Method::POST).await);
    // Kept through the builder methods that come after it.
    let observed = balanced.clone().observer(Recorder::default()).target("api");
    assert!(first_attempt_carries_a_list(&observed, Method::POST).await);
    // The default attaches none until a balancer shows itself.
    let default = RetryLayer::new(unlimited());
    assert!(!first_attempt_carries_a_list(&default, Method::GET).await);
}

#[tokio::test(start_paused = true)]
async fn balanced_a_list_that_comes_with_the_request_is_used_as_it_is() {
    let (balance, hits) = first_reached_hangs(3);
    let svc = RetryLayer::new(unlimited()).balanced().layer(balance);
    let tried = TriedInstances::default();
    let mut req = request(Method::GET);
    req.extensions_mut().insert(tried.clone());
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Both attempts went through the caller's list: both counted, both recorded.
    assert_eq!(tried.attempts(), 2);
    let went = tried.to_vec();
    assert_eq!(went.len(), 2);
    assert_ne!(went[0], went[1]);
    assert_eq!(hits[went[0]].get(), 1);
    assert_eq!(hits[went[1]].get(), 1);
}
