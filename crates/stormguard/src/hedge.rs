//! Hedging: a second copy of a slow request to another instance, within a budget.
//!
//! ## Why hedge
//! A retry waits for a failure; a hedge does not. When a request has taken longer than most
//! (say its p95), Dean & Barroso send one more copy to another instance and take whichever answers
//! first: in BigTable a hedge after 10 ms cut the p99.9 from 1,800 ms to 74 ms for 2% more
//! requests. It is constant work, not a modal fallback: the hedge path runs every day, so it works
//! the day it is needed. Two rules keep it safe: only idempotent requests are hedged (both copies
//! may run), and a budget caps the extra load (`max_extra`, 5% by default), so that a slow
//! dependency is not sent twice its traffic exactly when it is struggling.
//!
//! [`HedgePolicy`] says whether and when to hedge and holds the budget; [`HedgeRace`] says, for
//! one attempt, who wins, what is cancelled and what a late answer counts as. The hedge layer
//! and the simulator both run that race, so they cannot disagree on its rules.

pub mod race;

pub use race::{CopyAnswer, HedgeRace, Leg, Loser, RaceStart, Step, Won};

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::budget::RetryBudget;
#[cfg(test)]
use crate::estimate::LatencyEstimator;
use crate::estimate::LatencyQuantiles;

/// When to send the hedge: after a fixed delay, or after a quantile of the observed latency.
///
/// Text form (as in config files): a duration such as `50ms` (1 ms to 1 h, [`MIN_DELAY`] to
/// [`MAX_DELAY`]), or `p95`, `p99`, `p99.9`. A value built in code may hold any duration.
///
/// ```
/// use std::time::Duration;
/// use stormguard::hedge::HedgeDelay;
///
/// assert_eq!("50ms".parse::<HedgeDelay>().unwrap(), HedgeDelay::Fixed(Duration::from_millis(50)));
/// assert_eq!("p95".parse::<HedgeDelay>().unwrap(), HedgeDelay::Quantile(0.95));
/// assert_eq!(HedgeDelay::Quantile(0.999).to_string(), "p99.9");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeDelay {
    /// A fixed delay.
    Fixed(Duration),
    /// A quantile in (0, 1) of the target's recent latency. No hedge is sent until the estimator
    /// has enough samples: hedging on a guess of the tail would hedge the wrong requests.
    Quantile(f64),
}

/// A hedge setting that is not valid.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HedgeError {
    /// The delay text is neither a duration nor a quantile.
    #[error("invalid hedge delay {given:?}: use a duration such as \"50ms\" or a latency quantile such as \"p95\" or \"p99.9\"")]
    Delay {
        /// What was given.
        given: String,
    },
    /// `max_extra` out of range.
    #[error("invalid hedge max_extra {0}: use a share of requests between 0 and 1, e.g. 0.05 for at most 5% extra")]
    MaxExtra(f64),
    /// A fixed delay text outside [`MIN_DELAY`] to [`MAX_DELAY`].
    #[error(
        "hedge delay {} is out of range: a fixed hedge delay is {} to {} ({}); or use a latency \
         quantile such as \"p95\"",
        crate::duration::format(*delay),
        crate::duration::format(MIN_DELAY),
        crate::duration::format(MAX_DELAY),
        if *delay < MIN_DELAY {
            "a hedge sooner than a millisecond copies every request, before any could answer"
        } else {
            "a hedge runs within its attempt's timeout, which is at most an hour"
        }
    )]
    DelayOutOfRange {
        /// The delay given.
        delay: Duration,
    },
}

/// The shortest fixed delay a hedge text may give: sooner than a millisecond, the hedge copies
/// every request before the first copy could answer, which is twice the load, not a hedge.
pub const MIN_DELAY: Duration = Duration::from_millis(1);

/// The longest fixed delay a hedge text may give: a hedge runs within its attempt's timeout, and
/// no timeout of a file is above an hour.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

impl FromStr for HedgeDelay {
    type Err = HedgeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = || HedgeError::Delay {
            given: s.to_string(),
        };
        if let Some(p) = s.strip_prefix('p') {
            // Digits and one point, as percentiles are written (`p95`, `p99.9`): f64's parser
            // also takes `1e1`, `inf` and `+5`, which no one means by a percentile.
            let digits = p.chars().filter(char::is_ascii_digit).count();
            let points = p.chars().filter(|&c| c == '.').count();
            if digits == 0 || points > 1 || digits + points != p.len() {
                return Err(err());
            }
            let percent: f64 = p.parse().map_err(|_| err())?;
            if !(percent > 0.0 && percent < 100.0) {
                return Err(err());
            }
            return Ok(HedgeDelay::Quantile(percent / 100.0));
        }
        let delay = crate::duration::parse(s).map_err(|_| err())?;
        if !(MIN_DELAY..=MAX_DELAY).contains(&delay) {
            return Err(HedgeError::DelayOutOfRange { delay });
        }
        Ok(HedgeDelay::Fixed(delay))
    }
}

impl fmt::Display for HedgeDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HedgeDelay::Fixed(d) => f.write_str(&crate::duration::format(*d)),
            HedgeDelay::Quantile(q) => {
                // Round to drop binary noise such as 0.95 * 100 = 95.00000000000001.
                let percent = (q * 100.0 * 1e6).round() / 1e6;
                write!(f, "p{percent}")
            }
        }
    }
}

/// Whether, and when, to hedge a request. Holds the hedge budget, so share one per target.
///
/// ```
/// use std::time::{Duration, Instant};
/// use stormguard::hedge::{HedgeDelay, HedgePolicy};
///
/// let hedge = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 0.05).unwrap();
/// let now = Instant::now();
/// for _ in 0..20 {
///     hedge.on_request(now);
/// }
/// // 20 requests at 5% earn exactly one hedge.
/// assert!(hedge.try_hedge(now, true));
/// assert!(!hedge.try_hedge(now, true));
/// ```
#[derive(Debug)]
pub struct HedgePolicy {
    delay: HedgeDelay,
    max_extra: f64,
    budget: RetryBudget,
}

impl HedgePolicy {
    /// A policy that hedges after `delay`, sending at most `max_extra` (a share of requests, e.g.
    /// 0.05) extra requests over a 10 s window. There is no reserve: a hedge is an optimisation,
    /// so none is sent before enough requests have earned it.
    pub fn new(delay: HedgeDelay, max_extra: f64) -> Result<Self, HedgeError> {
        if !(0.0..=1.0).contains(&max_extra) {
            return Err(HedgeError::MaxExtra(max_extra));
        }
        if let HedgeDelay::Quantile(q) = delay {
            if !(q > 0.0 && q < 1.0) {
                return Err(HedgeError::Delay {
                    given: delay.to_string(),
                });
            }
        }
        let budget = RetryBudget::new(Duration::from_secs(10), 0, max_extra)
            .map_err(|_| HedgeError::MaxExtra(max_extra))?;
        Ok(HedgePolicy {
            delay,
            max_extra,
            budget,
        })
    }

    /// The delay setting.
    pub fn delay_setting(&self) -> HedgeDelay {
        self.delay
    }

    /// The largest share of extra requests.
    pub fn max_extra(&self) -> f64 {
        self.max_extra
    }

    /// How long to wait before hedging, or `None` for no hedge (a quantile delay without enough
    /// samples yet).
    pub fn delay(
        &self,
        estimator: Option<&dyn LatencyQuantiles>,
        now: Instant,
    ) -> Option<Duration> {
        match self.delay {
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Quantile(q) => estimator.and_then(|e| e.quantile(now, q)),
        }
    }

    /// A caller's request began: it earns `max_extra` of a hedge. Once per request, not per
    /// attempt: [`HedgeRace::start`] calls it for a first attempt and not for a retry.
    pub fn on_request(&self, now: Instant) {
        self.budget.deposit(now);
    }

    /// Hedges the budget holds at `now`, fractions included: what requests have earned in the
    /// last 10 s less the hedges sent. For metrics and tests; zero or less means no hedge now.
    pub fn balance(&self, now: Instant) -> f64 {
        self.budget.balance(now)
    }

    /// Asks to send a hedge now. Never for a request that is not idempotent (both copies may run).
    pub fn try_hedge(&self, now: Instant, idempotent: bool) -> bool {
        idempotent && self.budget.try_withdraw(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_text_round_trips() {
        for text in ["50ms", "1s", "p95", "p99", "p99.9", "p50"] {
            let delay: HedgeDelay = text.parse().unwrap();
            assert_eq!(delay.to_string(), text);
        }
        for bad in [
            "", "p", "p100", "p0", "fast", "-5ms", "50", "p1e1", "pinf", "p+5", "p9.9.9", "p.",
        ] {
            assert!(bad.parse::<HedgeDelay>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn a_fixed_delay_text_is_one_millisecond_to_one_hour() {
        for (bad, words) in [
            ("0s", "copies every request"),
            ("999us", "copies every request"),
            ("3600001ms", "at most an hour"),
            ("5000000000000000h", "at most an hour"),
        ] {
            let error = bad.parse::<HedgeDelay>().unwrap_err();
            assert!(matches!(error, HedgeError::DelayOutOfRange { .. }), "{bad}");
            let message = error.to_string();
            assert!(
                message.contains("1ms to 1h") && message.contains(words),
                "{message}"
            );
        }
        assert_eq!("1ms".parse(), Ok(HedgeDelay::Fixed(MIN_DELAY)));
        assert_eq!("1h".parse(), Ok(HedgeDelay::Fixed(MAX_DELAY)));
    }

    #[test]
    fn non_idempotent_requests_are_never_hedged() {
        let hedge = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(5)), 1.0).unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            hedge.on_request(now);
        }
        assert!(!hedge.try_hedge(now, false));
        assert!(hedge.try_hedge(now, true));
    }

    #[test]
    fn hedges_stay_within_max_extra() {
        let hedge = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(5)), 0.05).unwrap();
        let now = Instant::now();
        let mut sent = 0;
        for _ in 0..1000 {
            hedge.on_request(now);
            if hedge.try_hedge(now, true) {
                sent += 1;
            }
        }
        assert_eq!(sent, 50);
    }

    #[test]
    fn quantile_delay_waits_for_samples() {
        let hedge = HedgePolicy::new(HedgeDelay::Quantile(0.95), 0.05).unwrap();
        let estimator = LatencyEstimator::new(Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(hedge.delay(Some(&estimator), now), None);
        for i in 0..1000u64 {
            estimator.record(now, Duration::from_millis(1 + i % 100));
        }
        let d = hedge.delay(Some(&estimator), now).unwrap();
        assert!(
            d >= Duration::from_millis(94) && d <= Duration::from_millis(97),
            "{d:?}"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(HedgePolicy::new(HedgeDelay::Fixed(Duration::ZERO), 1.5).is_err());
        assert!(HedgePolicy::new(HedgeDelay::Quantile(1.0), 0.05).is_err());
    }
}
