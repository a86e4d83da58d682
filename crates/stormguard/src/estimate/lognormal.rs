//! A lognormal latency model fitted to two quantiles.
//!
//! Why a model and not only histograms? `stormguard check` has a configured timeout and, at best,
//! a p50 and a p99 from a dashboard; `stormguard sim` needs to draw latencies for a downstream it
//! has never seen. Service latency is skewed to the right and close to lognormal in its body, so
//! two quantiles pin down a model good enough to say "this timeout fails about 1 call in 300
//! that would have succeeded", which is the number Brooker's rule is stated in.

use std::time::Duration;

use super::EstimateError;

/// The standard normal quantile at 0.99: how many standard deviations the p99 lies above the
/// median, used to turn a (p50, p99) pair into a spread.
pub(crate) const Z_P99: f64 = 2.3263478740408408;

/// A lognormal latency distribution: `ln(latency in seconds)` is normal with mean `mu` and
/// standard deviation `sigma`.
///
/// Exists so that a timeout can be judged, and latencies simulated, from the two numbers operators
/// usually have (p50 and p99). A `sigma` of 0 is a point mass at the median: every call takes
/// exactly `exp(mu)` seconds.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::estimate::LogNormal;
///
/// let model = LogNormal::fit(Duration::from_millis(4), Duration::from_millis(40)).unwrap();
/// // One call in a hundred is slower than the p99 the model was fitted to.
/// let p = model.exceedance(Duration::from_millis(40));
/// assert!((p - 0.01).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormal {
    /// Mean of the natural log of the latency in seconds; `exp(mu)` is the median.
    pub mu: f64,
    /// Standard deviation of the natural log of the latency; 0 means no spread at all.
    pub sigma: f64,
}

impl LogNormal {
    /// Fits the lognormal whose median is `p50` and whose 0.99 quantile is `p99`.
    ///
    /// `mu = ln p50` and `sigma = (ln p99 - ln p50) / 2.3263478740408408`, so the fitted model
    /// reproduces both inputs exactly (up to floating point). `p99 == p50` gives `sigma = 0`.
    ///
    /// # Errors
    /// [`EstimateError::LogNormalQuantiles`] unless `0 < p50 <= p99`.
    pub fn fit(p50: Duration, p99: Duration) -> Result<LogNormal, EstimateError> {
        if p50.is_zero() || p99 < p50 {
            return Err(EstimateError::LogNormalQuantiles { p50, p99 });
        }
        let mu = p50.as_secs_f64().ln();
        let sigma = ((p99.as_secs_f64().ln() - mu) / Z_P99).max(0.0);
        Ok(LogNormal { mu, sigma })
    }

    /// The latency below which a fraction `q` of calls complete.
    ///
    /// `q` is clamped to `[0, 1]` (NaN counts as 1, the conservative end); `q = 0` gives zero and
    /// `q = 1` gives [`Duration::MAX`] unless `sigma` is 0, when every quantile is the median.
    /// Values too large for a `Duration` saturate at [`Duration::MAX`].
    pub fn quantile(&self, q: f64) -> Duration {
        duration_from_secs_saturating(self.quantile_secs(q))
    }

    /// The probability that a call takes longer than `latency` (one minus the CDF).
    ///
    /// This is the false-timeout rate of a timeout set at `latency`: the share of calls that
    /// would have succeeded but are abandoned. Always in `[0, 1]`; zero latency gives 1.
    pub fn exceedance(&self, latency: Duration) -> f64 {
        self.exceedance_secs(latency.as_secs_f64())
    }

    /// Draws one latency: `exp(mu + sigma * z)` for a standard normal `z` drawn from `rng` by
    /// the ziggurat method ([`rand_distr::StandardNormal`]).
    ///
    /// Deterministic for a seeded `rng`, so simulations replay exactly. Saturates at
    /// [`Duration::MAX`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use rand::SeedableRng;
    /// use stormguard::estimate::LogNormal;
    ///
    /// let model = LogNormal::fit(Duration::from_millis(4), Duration::from_millis(40)).unwrap();
    /// let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    /// let draw = model.sample(&mut rng);
    /// assert_eq!(draw, model.sample(&mut rand_pcg::Pcg64Mcg::seed_from_u64(7)));
    /// ```
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        duration_from_secs_saturating((self.mu + self.sigma * standard_normal(rng)).exp())
    }

    /// [`sample`](Self::sample) in nanoseconds, as a float: the simulator adds and scales work
    /// times as floats and keeps time in integer nanoseconds, so a draw that went through a
    /// [`Duration`] would be converted twice. The same draw as `sample` from the same `rng`
    /// state, though not always the same last bit (`exp` of a shifted exponent rounds on its
    /// own). Zero or more; infinite past `f64`'s range.
    pub fn sample_nanos<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        (self.mu + std::f64::consts::LN_10 * 9.0 + self.sigma * standard_normal(rng)).exp()
    }

    pub(crate) fn quantile_secs(&self, q: f64) -> f64 {
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        if self.sigma == 0.0 {
            return self.mu.exp();
        }
        if q == 0.0 {
            return 0.0;
        }
        if q == 1.0 {
            return f64::INFINITY;
        }
        (self.mu + self.sigma * normal_quantile(q)).exp()
    }

    pub(crate) fn exceedance_secs(&self, secs: f64) -> f64 {
        if secs.is_nan() || secs <= 0.0 {
            return 1.0;
        }
        let log = secs.ln();
        if self.sigma == 0.0 {
            return if log < self.mu { 1.0 } else { 0.0 };
        }
        normal_exceedance((log - self.mu) / self.sigma)
    }
}

/// Converts seconds to a `Duration`, saturating where `Duration::from_secs_f64` would panic.
/// One standard normal draw. The ziggurat takes one 64-bit number and a table lookup for almost
/// every draw, where Box-Muller took two and a `cos`, an `ln` and a `sqrt`: a tenth of the
/// simulator's work per attempt.
fn standard_normal<R: rand::Rng + ?Sized>(rng: &mut R) -> f64 {
    use rand::distr::Distribution;
    rand_distr::StandardNormal.sample(rng)
}

pub(crate) fn duration_from_secs_saturating(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// `P(Z > z)` for a standard normal `Z`, with the relative error of [`erfc`] (below 1.2e-7)
/// even far in the upper tail, where `1 - cdf` would cancel to zero.
pub(crate) fn normal_exceedance(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, by the Chebyshev fit of Numerical Recipes (`erfcc`), whose
/// fractional error is below 1.2e-7 everywhere.
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let upper = t * (-z * z + poly).exp();
    if x >= 0.0 {
        upper
    } else {
        2.0 - upper
    }
}

/// The standard normal quantile function by Peter Acklam's algorithm (relative error below
/// 1.15e-9). `p` outside `(0, 1)` gives the infinities; NaN gives NaN.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;

    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn rel_err(actual: f64, expected: f64) -> f64 {
        ((actual - expected) / expected).abs()
    }

    #[test]
    fn known_normal_values() {
        assert!(rel_err(normal_quantile(0.99), Z_P99) < 1e-8);
        assert!(rel_err(normal_quantile(0.999), 3.090_232_306_167_813) < 1e-8);
        assert!(rel_err(normal_quantile(0.001), -3.090_232_306_167_813) < 1e-8);
        assert_eq!(normal_quantile(0.5), 0.0);
        assert!(rel_err(normal_exceedance(Z_P99), 0.01) < 2e-7);
        assert!(rel_err(normal_exceedance(0.0), 0.5) < 2e-7);
        // Far tail: P(Z > 6) = 9.865876450377e-10.
        assert!(rel_err(normal_exceedance(6.0), 9.865_876_450_377e-10) < 2e-7);
        assert!(rel_err(erfc(-1.0), 1.842_700_792_949_715) < 2e-7);
    }

    #[test]
    fn fit_reproduces_p99_and_predicts_p999() {
        let model = LogNormal::fit(Duration::from_millis(4), Duration::from_millis(40)).unwrap();
        let p99 = model.quantile(0.99).as_secs_f64() * 1e3;
        assert!(rel_err(p99, 40.0) < 1e-3, "p99 {p99} ms");
        let expected = 4.0 * ((40f64.ln() - 4f64.ln()) / Z_P99 * 3.090_232_306_167_813).exp();
        assert!(rel_err(expected, 85.196_562_772) < 1e-9);
        let p999 = model.quantile(0.999).as_secs_f64() * 1e3;
        assert!(rel_err(p999, expected) < 1e-3, "p99.9 {p999} ms");
        assert!(rel_err(model.quantile(0.5).as_secs_f64(), 0.004) < 1e-9);
    }

    #[test]
    fn fit_rejects_what_cannot_be_lognormal() {
        let ms = Duration::from_millis;
        assert!(matches!(
            LogNormal::fit(Duration::ZERO, ms(1)),
            Err(EstimateError::LogNormalQuantiles { .. })
        ));
        assert!(LogNormal::fit(ms(10), ms(9)).is_err());
        let point = LogNormal::fit(ms(7), ms(7)).unwrap();
        assert_eq!(point.sigma, 0.0);
        assert!(rel_err(point.quantile(0.999).as_secs_f64(), 0.007) < 1e-9);
        assert_eq!(point.exceedance(ms(6)), 1.0);
        assert_eq!(point.exceedance(ms(8)), 0.0);
    }

    #[test]
    fn edges_do_not_panic() {
        let model = LogNormal::fit(Duration::from_millis(4), Duration::from_millis(40)).unwrap();
        assert_eq!(model.quantile(0.0), Duration::ZERO);
        assert_eq!(model.quantile(1.0), Duration::MAX);
        assert_eq!(model.quantile(f64::NAN), Duration::MAX);
        assert_eq!(model.quantile(-3.0), Duration::ZERO);
        assert_eq!(model.exceedance(Duration::ZERO), 1.0);
        assert!(model.exceedance(Duration::MAX) < 1e-100);
        let huge = LogNormal {
            mu: 1e3,
            sigma: 1.0,
        };
        assert_eq!(huge.quantile(0.5), Duration::MAX);
    }

    #[test]
    fn samples_follow_the_model() {
        let model = LogNormal::fit(Duration::from_millis(4), Duration::from_millis(40)).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        let n = 200_000;
        let slower = (0..n)
            .filter(|_| model.sample(&mut rng) > Duration::from_millis(40))
            .count();
        let rate = slower as f64 / n as f64;
        // 0.01 with a binomial standard error of 0.00022 at this n.
        assert!((rate - 0.01).abs() < 0.001, "rate {rate}");
    }

    proptest! {
        #[test]
        fn normal_quantile_inverts_the_cdf(log10_p in -12.0f64..-0.302) {
            let p = 10f64.powf(log10_p);
            let z = normal_quantile(p);
            prop_assert!(rel_err(normal_exceedance(-z), p) < 1e-6);
            // 1 - (1 - p) is exact, so it is the tail the upper branch was really asked for.
            let upper_tail = 1.0 - (1.0 - p);
            prop_assert!(rel_err(normal_exceedance(normal_quantile(1.0 - p)), upper_tail) < 1e-6);
        }

        #[test]
        fn lognormal_quantile_round_trips(
            median_ms in 0.01f64..100_000.0,
            spread in 1.01f64..1_000.0,
            q in 0.000_1f64..0.999_9,
        ) {
            let p50 = Duration::from_secs_f64(median_ms / 1e3);
            let p99 = Duration::from_secs_f64(median_ms * spread / 1e3);
            let model = LogNormal::fit(p50, p99).unwrap();
            let x = model.quantile_secs(q);
            prop_assert!(rel_err(model.exceedance_secs(x), 1.0 - q) < 1e-6);
        }

        #[test]
        fn exceedance_decreases_with_latency(
            median_ms in 0.1f64..10_000.0,
            spread in 1.0f64..100.0,
            a_ms in 0.0f64..100_000.0,
            b_ms in 0.0f64..100_000.0,
        ) {
            let model = LogNormal::fit(
                Duration::from_secs_f64(median_ms / 1e3),
                Duration::from_secs_f64(median_ms * spread / 1e3),
            ).unwrap();
            let (lo, hi) = if a_ms <= b_ms { (a_ms, b_ms) } else { (b_ms, a_ms) };
            let p_lo = model.exceedance(Duration::from_secs_f64(lo / 1e3));
            let p_hi = model.exceedance(Duration::from_secs_f64(hi / 1e3));
            prop_assert!((0.0..=1.0).contains(&p_lo) && (0.0..=1.0).contains(&p_hi));
            prop_assert!(p_hi <= p_lo);
        }
    }
}
