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
    /// Whether a retry layer right below enforces and writes the deadline
    /// (see [`DeadlineLayer::retry_below`]).
    retry_below: bool,
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
            retry_below: false,
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

    /// Says that a [`RetryLayer`] is right below, which does this layer's work downstream: it
    /// bounds each attempt, backoff and body read by the deadline this layer hands it (its
    /// per-try timer is set for the same instant as this layer's, and polled first when both
    /// fire), and it writes the budget each attempt carries (or, not propagating, removes the
    /// budget headers), replacing whatever this layer wrote. So this layer neither times the
    /// call nor writes the budget headers: a second tokio timer (armed, polled and cancelled)
    /// and a header written twice cost over a thousand instructions per request, a good share
    /// of a proxy's work for a small request. The deadline is still worked out from the
    /// request, answered at once when spent, and handed down as the [`Deadline`] extension the
    /// retry layer keeps to.
    ///
    /// Off by default: without a retry layer right below, this layer's timer and headers are
    /// what enforce and propagate the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stormguard::layer::{DeadlineLayer, RetryLayer};
    /// use stormguard::policy::RetryPolicy;
    ///
    /// // Stacked as deadline.layer(retry.layer(service)).
    /// let deadline = DeadlineLayer::new(Duration::from_secs(2)).retry_below();
    /// let retry = RetryLayer::new(RetryPolicy::recommended());
    /// let _ = (deadline, retry);
    /// ```
    ///
    /// [`RetryLayer`]: super::super::RetryLayer
    /// [`Deadline`]: crate::deadline::Deadline
    pub fn retry_below(mut self) -> Self {
        self.retry_below = true;
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
            retry_below: self.retry_below,
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
            retry_below: self.retry_below,
            observer: self.observer.clone(),
            target: self.target.clone(),
        }
    }
}
