//! [`RetryLayer`]: the settings of a [`Retry`] service, applied to any inner service.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tower_layer::Layer;

use super::{Retry, Shared};
use crate::backoff;
use crate::estimate::LatencyEstimator;
use crate::metrics::{NoMetrics, Observer};
use crate::policy::RetryPolicy;

/// Wraps a service in [`Retry`] with one [`RetryPolicy`] for one target.
///
/// The layer holds the policy's shared state (its retry budget or token bucket, the latency
/// estimator), so every service it makes shares them: build one layer per dependency.
///
/// The stack takes one shape whatever is below: the first attempt carries no list of the
/// instances it went to (nearly every request ends with it answered); a retry carries a
/// [`TriedInstances`](super::super::TriedInstances) list with the instances the earlier attempts
/// went to, so that a [`Balance`](super::super::Balance) below sends it elsewhere. An answer
/// names its instance; an attempt the per-try timeout ends, or a timeout layer below, is named
/// by the balancer to the list the layer watches its drop with, and the copies a
/// [`HedgeLayer`](super::super::HedgeLayer) below sent are counted with it, whatever
/// `max_attempts` (a list that comes with the request is used as it is, on every attempt).
///
/// ```
/// use std::time::Duration;
/// use stormguard::layer::RetryLayer;
/// use stormguard::policy::RetryPolicy;
///
/// let layer = RetryLayer::new(RetryPolicy::recommended().with_per_try_timeout(Duration::from_secs(1)))
///     .target("api")
///     .host_id("web-1");
/// let _ = layer;
/// ```
#[derive(Clone)]
pub struct RetryLayer<O = NoMetrics> {
    shared: Arc<Shared<O>>,
}

impl RetryLayer<NoMetrics> {
    /// A layer for `policy`, with no metrics, a random jitter seed, and the default 64 KiB body
    /// limit.
    pub fn new(policy: RetryPolicy) -> Self {
        let estimator = policy
            .adaptive_timeout
            .map(|_| Arc::new(LatencyEstimator::new(std::time::Duration::from_secs(60))));
        let per_try_budget = crate::deadline::budget_value(policy.deadline.per_try_timeout);
        RetryLayer {
            shared: Arc::new(Shared {
                per_try_budget,
                policy,
                observer: NoMetrics,
                target: Arc::from("default"),
                estimator,
                body_limit: super::super::DEFAULT_BODY_LIMIT,
                seed: backoff::process_entropy_seed(),
                counter: Arc::new(AtomicU64::new(0)),
            }),
        }
    }
}

impl<O: Observer + Clone> RetryLayer<O> {
    fn map(self, f: impl FnOnce(&mut Shared<O>)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| (*arc).clone());
        f(&mut shared);
        RetryLayer {
            shared: Arc::new(shared),
        }
    }

    /// The name the metrics carry (`target` label): a route or upstream name.
    pub fn target(self, target: &str) -> Self {
        self.map(|s| s.target = Arc::from(target))
    }

    /// Reports every decision to `observer`.
    pub fn observer<O2: Observer>(self, observer: O2) -> RetryLayer<O2> {
        let s = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| (*arc).clone());
        RetryLayer {
            shared: Arc::new(Shared {
                policy: s.policy,
                observer,
                target: s.target,
                estimator: s.estimator,
                body_limit: s.body_limit,
                seed: s.seed,
                counter: Arc::new(AtomicU64::new(0)),
                per_try_budget: s.per_try_budget,
            }),
        }
    }

    /// Derives jitter from a stable host identity, so that one host always produces the same
    /// sequence of delays (Brooker: easier to debug), while hosts differ from each other.
    pub fn host_id(self, host_id: &str) -> Self {
        let seed = backoff::host_seed(host_id);
        self.map(|s| s.seed = seed)
    }

    /// Deterministic jitter from this host's identity ([`backoff::host_identity`]: the
    /// `STORMGUARD_HOST_ID` variable, else the hostname), so that one host always produces the
    /// same sequence of delays. Keeps the random seed when no identity can be found.
    pub fn deterministic(self) -> Self {
        match backoff::host_identity() {
            Some(id) => self.host_id(&id),
            None => self,
        }
    }

    /// Seeds the jitter with `seed` (tests, simulations).
    pub fn seed(self, seed: u64) -> Self {
        self.map(|s| s.seed = seed)
    }

    /// Records attempt latencies in `estimator` and takes the expected latency (its p50) and the
    /// adaptive timeout from it. Share the estimator with a [`HedgeLayer`](super::super::HedgeLayer)
    /// of the same target ([`HedgeLayer::estimator`](super::super::HedgeLayer::estimator)): this
    /// layer alone records in it, one latency per attempt that got a response, from the
    /// attempt's send to its answer (a hedged attempt's two copies are one attempt here).
    pub fn estimator(self, estimator: Arc<LatencyEstimator>) -> Self {
        self.map(|s| s.estimator = Some(estimator))
    }

    /// A copy of up to `limit` bytes of each body is kept, as the first attempt streams it, so
    /// that a retry can replay it; a larger body is sent once.
    pub fn body_limit(self, limit: usize) -> Self {
        self.map(|s| s.body_limit = limit)
    }

    /// The policy this layer applies.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
    }
}

impl<S, O: Observer> Layer<S> for RetryLayer<O> {
    type Service = Retry<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: self.shared.clone(),
        }
    }
}
