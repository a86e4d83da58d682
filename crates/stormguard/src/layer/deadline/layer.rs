//! [`DeadlineLayer`]: the settings of a [`DeadlineService`].

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::DeadlineService;
use crate::deadline::DeadlinePolicy;
use crate::metrics::{NoMetrics, Observer};

/// Bounds each call by its deadline and propagates what is left (see [`DeadlineService`]).
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
    /// Whether this layer times the call out itself (see [`DeadlineLayer::enforced_below`]).
    timer: bool,
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
            timer: true,
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

    /// Says that the layers below already bound everything they do by the deadline this layer
    /// hands them, so that this layer's own timer is left out: a [`RetryLayer`] right below
    /// bounds each attempt, backoff and body read by that deadline, and its per-try timer is
    /// set for the same instant as this layer's (and polled first when both fire). A second
    /// timer per request only costs: arming, polling and cancelling a tokio timer is about a
    /// thousand instructions, a good share of a proxy's work for a small request. The deadline
    /// is still worked out, answered at once when spent, handed down and propagated as before.
    ///
    /// Off by default: a stack without such a layer below needs this layer's timer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stormguard::layer::{DeadlineLayer, RetryLayer};
    /// use stormguard::policy::RetryPolicy;
    ///
    /// // Stacked as deadline.layer(retry.layer(service)): the retry layer keeps the deadline.
    /// let deadline = DeadlineLayer::new(Duration::from_secs(2)).enforced_below();
    /// let retry = RetryLayer::new(RetryPolicy::recommended());
    /// let _ = (deadline, retry);
    /// ```
    ///
    /// [`RetryLayer`]: super::super::RetryLayer
    pub fn enforced_below(mut self) -> Self {
        self.timer = false;
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
            timer: self.timer,
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
            timer: self.timer,
            observer: self.observer.clone(),
            target: self.target.clone(),
        }
    }
}
