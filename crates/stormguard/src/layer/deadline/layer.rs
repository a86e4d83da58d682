//! [`DeadlineLayer`]: the settings of a [`DeadlineService`].

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::DeadlineService;
use crate::deadline::DeadlinePolicy;
use crate::metrics::{NoMetrics, Observer};

/// Bounds each call by its deadline and propagates what is left (see [`DeadlineService`]).
///
/// For a service without retries. A [`RetryLayer`](super::super::RetryLayer) does all of this
/// itself, for the whole request and for each attempt: it takes the deadline that came with the
/// request, cuts it by its policy's `overall_timeout`, keeps the policy's reserve back and
/// writes each attempt's budget, so a deadline layer above it would only hand it the same
/// deadline again (the proxy's routes are a retry layer alone).
///
/// ```
/// use std::time::Duration;
/// use stormguard::layer::DeadlineLayer;
///
/// // Give up after 2 s at most (less if the caller sent a smaller budget), keep 5 ms to report.
/// let layer = DeadlineLayer::new(Duration::from_secs(2)).reserve(Duration::from_millis(5));
/// let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct DeadlineLayer<O = NoMetrics> {
    policy: DeadlinePolicy,
    timeout: Option<Duration>,
    propagate: bool,
    observer: O,
    target: Arc<str>,
}

impl DeadlineLayer<NoMetrics> {
    /// A layer that gives a call at most `timeout`, keeps the default 5 ms reserve, and writes
    /// the decremented budget downstream.
    pub fn new(timeout: Duration) -> Self {
        DeadlineLayer {
            policy: DeadlinePolicy {
                per_try_timeout: timeout,
                ..DeadlinePolicy::default()
            },
            timeout: Some(timeout),
            propagate: true,
            observer: NoMetrics,
            target: Arc::from("default"),
        }
    }
}

impl<O> DeadlineLayer<O> {
    /// Time kept back from the budget to report a failure upstream.
    pub fn reserve(mut self, reserve: Duration) -> Self {
        self.policy.reserve = reserve;
        self
    }

    /// Whether to write the decremented budget into the request headers (default true).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// The name the metrics carry.
    pub fn target(mut self, target: &str) -> Self {
        self.target = Arc::from(target);
        self
    }

    /// Reports timeouts and deadline give-ups to `observer`.
    pub fn observer<O2: Observer>(self, observer: O2) -> DeadlineLayer<O2> {
        DeadlineLayer {
            policy: self.policy,
            timeout: self.timeout,
            propagate: self.propagate,
            observer,
            target: self.target,
        }
    }
}

impl<S, O: Clone> Layer<S> for DeadlineLayer<O> {
    type Service = DeadlineService<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            policy: self.policy,
            timeout: self.timeout,
            propagate: self.propagate,
            observer: self.observer.clone(),
            target: self.target.clone(),
        }
    }
}
