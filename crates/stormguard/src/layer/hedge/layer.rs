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
    /// A layer for `policy`, with its own latency estimator over a 60 s window, which it records
    /// each request's latency in.
    pub fn new(policy: HedgePolicy) -> Self {
        HedgeLayer {
            shared: Arc::new(Shared {
                policy: Arc::new(policy),
                estimator: Arc::new(LatencyEstimator::new(Duration::from_secs(60))),
                records: true,
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
            records: s.records,
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

    /// Reads the quantile delay from `estimator`, the one the target's
    /// [`RetryLayer`](super::super::RetryLayer) above records in
    /// ([`RetryLayer::estimator`](super::super::RetryLayer::estimator)); this layer then records
    /// nothing in it.
    ///
    /// Why the retry layer and not this one: it sees every attempt of every route, hedged or
    /// not, and measures each from its send to its answer, hedge included, which is the figure
    /// every reader wants: the expected latency and the adaptive timeout bound an attempt as a
    /// whole, and for a hedged attempt it is the first copy's latency or, when the hedge won, a
    /// lower bound of it, which keeps the tail the hedge delay is read from. Both layers
    /// recording counted every request twice.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use stormguard::estimate::LatencyEstimator;
    /// use stormguard::hedge::{HedgeDelay, HedgePolicy};
    /// use stormguard::layer::{HedgeLayer, RetryLayer};
    /// use stormguard::policy::RetryPolicy;
    ///
    /// let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(60)));
    /// let retry = RetryLayer::new(RetryPolicy::recommended()).estimator(estimator.clone());
    /// let policy = HedgePolicy::new(HedgeDelay::Quantile(0.95), 0.05).unwrap();
    /// let hedge = HedgeLayer::new(policy).estimator(estimator);
    /// // Stacked as `retry.layer(hedge.layer(balance))`: one latency per request.
    /// let _ = (retry, hedge);
    /// ```
    pub fn estimator(self, estimator: Arc<LatencyEstimator>) -> Self {
        let observer = self.shared.observer.clone();
        self.rebuild(observer, |s| {
            s.estimator = estimator;
            s.records = false;
        })
    }

    /// Bodies of up to `limit` bytes are copied, as they arrive, so that they can be hedged once
    /// whole; larger ones are sent once, never hedged.
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

    /// The estimator this layer reads its quantile delay from (and records in, when it is its
    /// own).
    pub fn latency_estimator(&self) -> Arc<LatencyEstimator> {
        self.shared.estimator.clone()
    }

    /// The policy this layer applies, with its hedge budget.
    pub fn policy(&self) -> &HedgePolicy {
        &self.shared.policy
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
