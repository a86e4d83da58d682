//! [`HedgeLayer`]: the settings of a [`Hedge`] service.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{Hedge, Shared};
use crate::estimate::LatencyEstimator;
use crate::hedge::HedgePolicy;
use crate::metrics::{NoMetrics, Observer};

/// Wraps a service in [`Hedge`] with one [`HedgePolicy`] (and its budget) for one target.
///
/// ```
/// use std::time::Duration;
/// use stormguard::hedge::{HedgeDelay, HedgePolicy};
/// use stormguard::layer::HedgeLayer;
///
/// let policy = HedgePolicy::new(HedgeDelay::Quantile(0.95), 0.05).unwrap();
/// let layer = HedgeLayer::new(policy).target("catalog");
/// let _ = layer;
/// ```
#[derive(Clone)]
pub struct HedgeLayer<O = NoMetrics> {
    shared: Arc<Shared<O>>,
}

impl HedgeLayer<NoMetrics> {
    /// A layer for `policy`, with its own latency estimator over a 60 s window.
    pub fn new(policy: HedgePolicy) -> Self {
        HedgeLayer {
            shared: Arc::new(Shared {
                policy: Arc::new(policy),
                estimator: Arc::new(LatencyEstimator::new(Duration::from_secs(60))),
                observer: NoMetrics,
                target: Arc::from("default"),
                body_limit: crate::layer::DEFAULT_BODY_LIMIT,
                idempotent: None,
            }),
        }
    }
}

impl<O: Observer + Clone> HedgeLayer<O> {
    fn rebuild<O2>(self, observer: O2, f: impl FnOnce(&mut Shared<O2>)) -> HedgeLayer<O2> {
        let s = &self.shared;
        let mut shared = Shared {
            policy: s.policy.clone(),
            estimator: s.estimator.clone(),
            observer,
            target: s.target.clone(),
            body_limit: s.body_limit,
            idempotent: s.idempotent,
        };
        f(&mut shared);
        HedgeLayer {
            shared: Arc::new(shared),
        }
    }

    /// The name the metrics carry.
    pub fn target(self, target: &str) -> Self {
        let observer = self.shared.observer.clone();
        self.rebuild(observer, |s| s.target = Arc::from(target))
    }

    /// Reports hedges sent and won to `observer`.
    pub fn observer<O2: Observer>(self, observer: O2) -> HedgeLayer<O2> {
        self.rebuild(observer, |_| {})
    }

    /// Uses `estimator` for the quantile delay (share it with the target's retry layer).
    pub fn estimator(self, estimator: Arc<LatencyEstimator>) -> Self {
        let observer = self.shared.observer.clone();
        self.rebuild(observer, |s| s.estimator = estimator)
    }

    /// Bodies up to `limit` bytes are buffered so they can be hedged; larger ones are sent once.
    pub fn body_limit(self, limit: usize) -> Self {
        let observer = self.shared.observer.clone();
        self.rebuild(observer, |s| s.body_limit = limit)
    }

    /// Which requests may be hedged: `None` (the default) each by its method and
    /// `Idempotency-Key`, `Some(true)` every one, `Some(false)` none. Give it the value of the
    /// retry policy's `idempotent`, so that the two layers never disagree on whether a request
    /// may run twice.
    pub fn idempotent(self, idempotent: Option<bool>) -> Self {
        let observer = self.shared.observer.clone();
        self.rebuild(observer, |s| s.idempotent = idempotent)
    }

    /// The estimator this layer records latencies in.
    pub fn latency_estimator(&self) -> Arc<LatencyEstimator> {
        self.shared.estimator.clone()
    }
}

impl<S, O> Layer<S> for HedgeLayer<O> {
    type Service = Hedge<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            shared: self.shared.clone(),
        }
    }
}
