//! Live latency quantiles per target, and the timeouts derived from them.
//!
//! ## Why measure instead of configure?
//! A timeout is a guess about someone else's latency, and guesses go stale. Brooker's rule sets
//! a request timeout at the downstream's p99.9, so about one call in a thousand that would have
//! succeeded is cut off; Twitter's Mux tuned timeouts from latency histograms; hedging after the
//! p95 (Dean & Barroso) needs the p95 of the last minute, not of last quarter. And as Cockcroft
//! puts it, no platform "starts large and shrinks to fit" unless it is built to: a fixed timeout
//! is either too short on a bad day or too long on every other.
//!
//! This module keeps, per target, a [`LatencyEstimator`]: an HDR histogram over a sliding window
//! (a ring of four sub-windows, so old behaviour ages out within one window). From it,
//! [`AdaptiveTimeout`] derives a request timeout at `q(1 - false_timeout_rate)` and
//! [`AdaptiveConnectTimeout`] a connect timeout at a multiple of the measured round trip. Both
//! return their maximum until there are enough samples: start large and shrink to fit.
//!
//! For judging a configured timeout without live data, [`false_timeout_rate`] fits a
//! [`LogNormal`] to a (p50, p99) pair and says what share of good calls the timeout would cut.
//!
//! Like the rest of the policy core, nothing here reads a clock: every method takes `now`.
//!
//! ```rust
//! use std::time::{Duration, Instant};
//! use stormguard::estimate::{AdaptiveTimeout, LatencyEstimator};
//!
//! let estimator = LatencyEstimator::new(Duration::from_secs(60));
//! let policy = AdaptiveTimeout::default(); // p99.9, between 10 ms and 10 s
//! let t0 = Instant::now();
//! assert_eq!(policy.timeout(&estimator, t0), Duration::from_secs(10)); // nothing measured yet
//!
//! // 2000 calls over 20 s: most take 20 ms, one in a hundred takes 300 ms.
//! for i in 0..2000u64 {
//!     let latency = if i % 100 == 0 { 300 } else { 20 };
//!     estimator.record(t0 + Duration::from_millis(i * 10), Duration::from_millis(latency));
//! }
//! let now = t0 + Duration::from_secs(20);
//! let timeout = policy.timeout(&estimator, now);
//! assert!(timeout >= Duration::from_millis(300) && timeout <= Duration::from_millis(303));
//!
//! // After a quiet window the measurements are gone and the timeout is large again.
//! assert_eq!(policy.timeout(&estimator, now + Duration::from_secs(60)), Duration::from_secs(10));
//! ```

use std::time::Duration;

mod adaptive;
mod lognormal;
mod quantile_cache;
mod window;

pub use adaptive::{false_timeout_rate, AdaptiveConnectTimeout, AdaptiveTimeout};
pub use lognormal::LogNormal;
pub use window::{LatencyEstimator, LatencyQuantiles, LocalLatencyEstimator};

/// Why an estimate or timeout policy could not be built; each message says what would be valid.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EstimateError {
    /// The false-timeout rate is not in `(0, 0.5]`.
    #[error(
        "false timeout rate {0} is outside (0, 0.5]: use e.g. 0.001 for a timeout at the p99.9"
    )]
    FalseTimeoutRate(f64),
    /// The headroom factor is not a finite number above zero.
    #[error("timeout factor {0} is not a finite number above 0: use e.g. 1.0 for no headroom")]
    Factor(f64),
    /// The connect-timeout multiple is below one round trip or not finite.
    #[error("round-trip multiple {0} is not a finite number of at least 1: use e.g. 10")]
    RttMultiple(f64),
    /// The round-trip quantile is not in `(0, 1]`.
    #[error("round-trip quantile {0} is outside (0, 1]: use e.g. 0.5 for the median")]
    Quantile(f64),
    /// The minimum timeout is zero, which would let a timeout fire before any call can finish.
    #[error("minimum timeout is zero: use a minimum above zero, e.g. 10ms")]
    ZeroMinimum,
    /// The minimum timeout is above the maximum.
    #[error(
        "minimum timeout {min:?} is above maximum {max:?}: the minimum must be at most the maximum"
    )]
    MinimumAboveMaximum {
        /// The minimum given.
        min: Duration,
        /// The maximum given.
        max: Duration,
    },
    /// The quantiles cannot come from a lognormal distribution.
    #[error("p50 {p50:?} and p99 {p99:?} cannot fit a lognormal: need 0 < p50 <= p99")]
    LogNormalQuantiles {
        /// The median given.
        p50: Duration,
        /// The 0.99 quantile given.
        p99: Duration,
    },
}
