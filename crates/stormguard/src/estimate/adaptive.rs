//! Timeouts derived from measured latency.

use std::time::{Duration, Instant};

use super::lognormal::duration_from_secs_saturating;
use super::{EstimateError, LatencyEstimator, LogNormal};

/// A request timeout set at a measured latency quantile: Brooker's rule.
///
/// Why: a timeout below the downstream's real tail abandons calls that would have succeeded
/// (and retries them, adding load exactly when the downstream is slow); one far above it holds
/// resources for nothing. Setting it at `q(1 - false_timeout_rate)` of observed latency, e.g. the
/// p99.9 for a rate of 0.001, bounds the share of good calls cut off.
///
/// Guarantees: [`timeout`](Self::timeout) is always in `[min, max]`, and is `max` until the
/// estimator has enough samples: start large and shrink to fit, never the other way around.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::estimate::{AdaptiveTimeout, LatencyEstimator};
///
/// let policy = AdaptiveTimeout::new(0.01, Duration::from_millis(5), Duration::from_secs(2)).unwrap();
/// let estimator = LatencyEstimator::new(Duration::from_secs(60));
/// let t0 = Instant::now();
/// assert_eq!(policy.timeout(&estimator, t0), Duration::from_secs(2)); // no data yet
/// for ms in 1..=1000 {
///     estimator.record(t0, Duration::from_micros(ms * 100)); // 0.1 ms .. 100 ms
/// }
/// let timeout = policy.timeout(&estimator, t0); // the p99, about 99 ms
/// assert!(timeout > Duration::from_millis(98) && timeout < Duration::from_millis(100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveTimeout {
    /// The share of calls that would have succeeded but are cut off, in `(0, 0.5]`; the timeout
    /// sits at the `1 - false_timeout_rate` quantile.
    pub false_timeout_rate: f64,
    /// Headroom multiplied onto the quantile (1.0 by default); above 1 for a downstream whose
    /// tail grows faster than a window can follow.
    pub factor: f64,
    /// The shortest timeout ever returned, so a burst of fast cache hits cannot make the next
    /// cache miss time out.
    pub min: Duration,
    /// The longest timeout ever returned, and the timeout before enough samples exist.
    pub max: Duration,
}

impl Default for AdaptiveTimeout {
    /// The p99.9 (a false-timeout rate of 0.001), no headroom, between 10 ms and 10 s.
    fn default() -> Self {
        AdaptiveTimeout {
            false_timeout_rate: 0.001,
            factor: 1.0,
            min: Duration::from_millis(10),
            max: Duration::from_secs(10),
        }
    }
}

impl AdaptiveTimeout {
    /// A timeout at the `1 - false_timeout_rate` quantile, clamped to `[min, max]`, factor 1.
    ///
    /// # Errors
    /// The rate must be in `(0, 0.5]` (0 would need the maximum latency ever, above 0.5 would
    /// cut off most calls); `min` must be above zero and at most `max`.
    pub fn new(
        false_timeout_rate: f64,
        min: Duration,
        max: Duration,
    ) -> Result<Self, EstimateError> {
        if !(false_timeout_rate > 0.0 && false_timeout_rate <= 0.5) {
            return Err(EstimateError::FalseTimeoutRate(false_timeout_rate));
        }
        check_bounds(min, max)?;
        Ok(AdaptiveTimeout {
            false_timeout_rate,
            factor: 1.0,
            min,
            max,
        })
    }

    /// The same policy with `factor` as headroom over the quantile.
    ///
    /// # Errors
    /// [`EstimateError::Factor`] unless `factor` is finite and above zero.
    pub fn with_factor(mut self, factor: f64) -> Result<Self, EstimateError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(EstimateError::Factor(factor));
        }
        self.factor = factor;
        Ok(self)
    }

    /// `clamp(q(1 - false_timeout_rate) * factor, min, max)` over the estimator's live window;
    /// `max` until the estimator has enough samples: start large and shrink to fit.
    ///
    /// Never panics, even with fields set by hand out of range: a rate outside `[0, 1]` is
    /// clamped, a factor that is not a positive finite number gives `max`, and `max` wins over
    /// a `min` above it.
    pub fn timeout(&self, estimator: &LatencyEstimator, now: Instant) -> Duration {
        let quantile = 1.0 - self.false_timeout_rate;
        scaled_within(
            estimator.quantile(now, quantile),
            self.factor,
            self.min,
            self.max,
        )
    }
}

/// A connect timeout set at a multiple of the measured connect round trip.
///
/// Why: a TCP (or TLS) handshake costs about one or two round trips, so a connect that has not
/// finished after ten of them is lost (a dropped SYN waits a full second for the kernel's
/// retransmit); failing it fast lets the caller try another instance. Mux and Brooker both size
/// connect timeouts this way. Feed the estimator connect durations only, not request latencies.
///
/// Guarantees: [`timeout`](Self::timeout) is always in `[min, max]`, and is `max` until the
/// estimator has enough samples.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::estimate::{AdaptiveConnectTimeout, LatencyEstimator};
///
/// let policy = AdaptiveConnectTimeout::default();
/// let rtt = LatencyEstimator::new(Duration::from_secs(60));
/// let t0 = Instant::now();
/// assert_eq!(policy.timeout(&rtt, t0), Duration::from_secs(5)); // Envoy's default until measured
/// for _ in 0..200 {
///     rtt.record(t0, Duration::from_millis(3));
/// }
/// let timeout = policy.timeout(&rtt, t0); // 10 x 3 ms
/// assert!(timeout >= Duration::from_millis(30) && timeout <= Duration::from_micros(30_300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConnectTimeout {
    /// How many round trips a connect may take, at least 1.
    pub rtt_multiple: f64,
    /// Which quantile of measured connect round trips stands for "the" round trip, in `(0, 1]`;
    /// the median by default, so one slow handshake does not stretch everyone's timeout.
    pub quantile: f64,
    /// The shortest connect timeout, for targets on the same host where a round trip is
    /// microseconds but scheduling is not.
    pub min: Duration,
    /// The longest connect timeout, and the timeout before enough samples exist.
    pub max: Duration,
}

impl Default for AdaptiveConnectTimeout {
    /// Ten times the median round trip, between 10 ms and 5 s (Envoy's `connect_timeout`).
    fn default() -> Self {
        AdaptiveConnectTimeout {
            rtt_multiple: 10.0,
            quantile: 0.5,
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
        }
    }
}

impl AdaptiveConnectTimeout {
    /// A connect timeout of `rtt_multiple` median round trips, clamped to `[min, max]`.
    ///
    /// # Errors
    /// `rtt_multiple` must be finite and at least 1 (below one round trip no connect can
    /// finish); `min` must be above zero and at most `max`.
    pub fn new(rtt_multiple: f64, min: Duration, max: Duration) -> Result<Self, EstimateError> {
        if !(rtt_multiple.is_finite() && rtt_multiple >= 1.0) {
            return Err(EstimateError::RttMultiple(rtt_multiple));
        }
        check_bounds(min, max)?;
        Ok(AdaptiveConnectTimeout {
            rtt_multiple,
            quantile: 0.5,
            min,
            max,
        })
    }

    /// The same policy measuring the round trip at `quantile` instead of the median.
    ///
    /// # Errors
    /// [`EstimateError::Quantile`] unless `quantile` is in `(0, 1]`.
    pub fn with_quantile(mut self, quantile: f64) -> Result<Self, EstimateError> {
        if !(quantile > 0.0 && quantile <= 1.0) {
            return Err(EstimateError::Quantile(quantile));
        }
        self.quantile = quantile;
        Ok(self)
    }

    /// `clamp(rtt_multiple * q(quantile) of rtt, min, max)`; `max` without enough samples.
    ///
    /// Never panics, even with fields set by hand out of range: the quantile is clamped to
    /// `[0, 1]`, a multiple that is not a positive finite number gives `max`, and `max` wins
    /// over a `min` above it.
    pub fn timeout(&self, rtt: &LatencyEstimator, now: Instant) -> Duration {
        scaled_within(
            rtt.quantile(now, self.quantile),
            self.rtt_multiple,
            self.min,
            self.max,
        )
    }
}

/// The probability that a call times out although it would have succeeded, for a downstream
/// whose latency has median `p50` and 0.99 quantile `p99`, under a `timeout`.
///
/// Why: `stormguard check` warns when a configured timeout cuts into the tail (Brooker: aim for
/// about 0.1%), and `stormguard sim` reports the rate it simulates against. Latency is modelled
/// as the lognormal fitted by [`LogNormal::fit`]. The result is in `[0, 1]`. If the pair cannot
/// be fitted (`p50` zero or `p99` below `p50`) the result is 1.0: a rate that cannot be known
/// is reported as the worst, so a check fails loudly rather than passes silently.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::estimate::false_timeout_rate;
///
/// let ms = Duration::from_millis;
/// let rate = false_timeout_rate(ms(4), ms(40), ms(40));
/// assert!((rate - 0.01).abs() < 1e-6); // a timeout at the p99 cuts off 1% of calls
/// assert!(false_timeout_rate(ms(4), ms(40), ms(200)) < 0.001);
/// ```
pub fn false_timeout_rate(p50: Duration, p99: Duration, timeout: Duration) -> f64 {
    match LogNormal::fit(p50, p99) {
        Ok(model) => model.exceedance(timeout),
        Err(_) => 1.0,
    }
}

fn check_bounds(min: Duration, max: Duration) -> Result<(), EstimateError> {
    if min.is_zero() {
        return Err(EstimateError::ZeroMinimum);
    }
    if min > max {
        return Err(EstimateError::MinimumAboveMaximum { min, max });
    }
    Ok(())
}

/// `clamp(quantile * factor, min, max)`, or `max` when there is no quantile or no sane factor.
fn scaled_within(
    quantile: Option<Duration>,
    factor: f64,
    min: Duration,
    max: Duration,
) -> Duration {
    let scaled = match quantile {
        Some(q) if factor.is_finite() && factor > 0.0 => {
            duration_from_secs_saturating(q.as_secs_f64() * factor)
        }
        _ => return max,
    };
    // Not `Duration::clamp`, which panics when min > max.
    scaled.max(min).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn filled(latencies: impl IntoIterator<Item = Duration>, t0: Instant) -> LatencyEstimator {
        let estimator = LatencyEstimator::new(Duration::from_secs(60));
        for latency in latencies {
            estimator.record(t0, latency);
        }
        estimator
    }

    #[test]
    fn default_sits_at_the_p999_and_starts_at_max() {
        let policy = AdaptiveTimeout::default();
        assert_eq!(policy.false_timeout_rate, 0.001);
        let t0 = Instant::now();
        let few = filled((1..100).map(|ms| ms * MS), t0);
        assert_eq!(policy.timeout(&few, t0), Duration::from_secs(10));
        let many = filled((1..=10_000).map(|us| Duration::from_micros(us * 10)), t0);
        let timeout = policy.timeout(&many, t0);
        assert!(
            timeout >= Duration::from_micros(99_900) && timeout <= 101 * MS,
            "{timeout:?}"
        );
        let fast = filled((0..1_000).map(|_| Duration::from_micros(50)), t0);
        assert_eq!(policy.timeout(&fast, t0), 10 * MS);
        let slow = filled((0..1_000).map(|_| Duration::from_secs(60)), t0);
        assert_eq!(policy.timeout(&slow, t0), Duration::from_secs(10));
        let doubled = policy.with_factor(2.0).unwrap();
        assert!(doubled.timeout(&many, t0) >= Duration::from_micros(199_800));
    }

    #[test]
    fn invalid_policies_are_rejected_with_what_is_valid() {
        let err = AdaptiveTimeout::new(0.0, MS, MS).unwrap_err();
        assert!(err.to_string().contains("(0, 0.5]"), "{err}");
        assert!(AdaptiveTimeout::new(0.6, MS, MS).is_err());
        assert!(AdaptiveTimeout::new(f64::NAN, MS, MS).is_err());
        assert!(AdaptiveTimeout::new(0.5, MS, MS).is_ok());
        assert_eq!(
            AdaptiveTimeout::new(0.01, Duration::ZERO, MS),
            Err(EstimateError::ZeroMinimum)
        );
        let err = AdaptiveTimeout::new(0.01, 2 * MS, MS).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        assert!(AdaptiveTimeout::default().with_factor(0.0).is_err());
        assert!(AdaptiveTimeout::default()
            .with_factor(f64::INFINITY)
            .is_err());
        assert!(AdaptiveConnectTimeout::new(0.5, MS, MS).is_err());
        assert!(AdaptiveConnectTimeout::new(f64::NAN, MS, MS).is_err());
        assert!(AdaptiveConnectTimeout::new(3.0, Duration::ZERO, MS).is_err());
        let ok = AdaptiveConnectTimeout::new(3.0, MS, 2 * MS).unwrap();
        assert!(ok.with_quantile(0.0).is_err());
        assert!(ok.with_quantile(1.5).is_err());
        assert_eq!(ok.with_quantile(1.0).unwrap().quantile, 1.0);
    }

    #[test]
    fn hand_set_fields_never_panic() {
        let t0 = Instant::now();
        let estimator = filled((0..1_000).map(|_| 20 * MS), t0);
        let inverted = AdaptiveTimeout {
            false_timeout_rate: 7.0,
            factor: f64::NAN,
            min: Duration::from_secs(1),
            max: MS,
        };
        assert_eq!(inverted.timeout(&estimator, t0), MS);
        let connect = AdaptiveConnectTimeout {
            rtt_multiple: f64::INFINITY,
            quantile: -1.0,
            min: MS,
            max: Duration::from_secs(5),
        };
        assert_eq!(connect.timeout(&estimator, t0), Duration::from_secs(5));
        let connect = AdaptiveConnectTimeout {
            rtt_multiple: 1e300,
            ..AdaptiveConnectTimeout::default()
        };
        assert_eq!(connect.timeout(&estimator, t0), Duration::from_secs(5));
    }

    #[test]
    fn false_timeout_rate_at_known_points() {
        let rate = |t| false_timeout_rate(4 * MS, 40 * MS, t);
        assert!((rate(4 * MS) - 0.5).abs() < 1e-6);
        assert!((rate(40 * MS) - 0.01).abs() < 1e-8);
        let p999 = LogNormal::fit(4 * MS, 40 * MS).unwrap().quantile(0.999);
        assert!((rate(p999) - 0.001).abs() < 1e-8);
        assert_eq!(false_timeout_rate(Duration::ZERO, MS, MS), 1.0);
        assert_eq!(false_timeout_rate(2 * MS, MS, MS), 1.0);
    }

    proptest! {
        #[test]
        fn timeouts_stay_within_bounds(
            latencies in prop::collection::vec(0u64..100_000_000, 0..400),
            rate in 0.000_1f64..=0.5,
            min_us in 1u64..1_000_000,
            span_us in 0u64..100_000_000,
            multiple in 1.0f64..100.0,
        ) {
            let t0 = Instant::now();
            let estimator = filled(latencies.iter().map(|&us| Duration::from_micros(us)), t0);
            let (min, max) = (Duration::from_micros(min_us), Duration::from_micros(min_us + span_us));
            let timeout = AdaptiveTimeout::new(rate, min, max).unwrap().timeout(&estimator, t0);
            prop_assert!(timeout >= min && timeout <= max);
            let connect = AdaptiveConnectTimeout::new(multiple, min, max).unwrap();
            let connect_timeout = connect.timeout(&estimator, t0);
            prop_assert!(connect_timeout >= min && connect_timeout <= max);
            if latencies.len() < 100 {
                prop_assert_eq!(timeout, max);
                prop_assert_eq!(connect_timeout, max);
            }
        }

        #[test]
        fn a_lower_rate_never_shortens_the_timeout(
            latencies in prop::collection::vec(1u64..10_000_000, 100..400),
            a in 0.000_1f64..=0.5,
            b in 0.000_1f64..=0.5,
        ) {
            let t0 = Instant::now();
            let estimator = filled(latencies.iter().map(|&us| Duration::from_micros(us)), t0);
            let (strict, loose) = if a <= b { (a, b) } else { (b, a) };
            let bounds = (MS, Duration::from_secs(100));
            let strict = AdaptiveTimeout::new(strict, bounds.0, bounds.1).unwrap();
            let loose = AdaptiveTimeout::new(loose, bounds.0, bounds.1).unwrap();
            prop_assert!(strict.timeout(&estimator, t0) >= loose.timeout(&estimator, t0));
        }

        #[test]
        fn false_timeout_rate_falls_as_the_timeout_grows(
            p50_us in 1u64..1_000_000,
            spread in 1.0f64..100.0,
            a_us in 0u64..100_000_000,
            b_us in 0u64..100_000_000,
        ) {
            let p50 = Duration::from_micros(p50_us);
            let p99 = Duration::from_secs_f64(p50.as_secs_f64() * spread).max(p50);
            let (short, long) = (a_us.min(b_us), a_us.max(b_us));
            let short = false_timeout_rate(p50, p99, Duration::from_micros(short));
            let long = false_timeout_rate(p50, p99, Duration::from_micros(long));
            prop_assert!((0.0..=1.0).contains(&short) && long <= short);
        }
    }
}
