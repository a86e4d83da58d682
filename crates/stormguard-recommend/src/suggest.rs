//! The suggestion for one histogram: its p50, p99 and p99.9, the timeout at the false-timeout
//! rate, and what makes that timeout a guess.
//!
//! ## Why the quantile at the false-timeout rate
//! A timeout at the latency's `1 - r` quantile cuts off the share `r` of requests that would
//! have succeeded: Brooker's rule is the p99.9 (`r` = 0.001), the rate at which a timeout fires
//! on a healthy callee. Below it, healthy calls are retried and add load; far above it, a dead
//! callee holds every caller for longer than it must.
//!
//! ## Why the warnings
//! The quantile comes from buckets, and inside a bucket it is a straight line: where the
//! bucket around it is wide (its upper bound twice its lower or more, as in Prometheus's
//! default ladder, or the lowest bucket, interpolated from 0) the estimate is a guess, and where more than `r` of requests lie above
//! the highest finite bound it is only a floor. Each warning names the bucket to add, since
//! the fix is in the instrumentation, not in the arithmetic.

use std::fmt;
use std::time::Duration;

use crate::histogram::{Histogram, Share};
use crate::readable::{nearest, round_up, show};
use crate::series::{Series, Unit};

/// Fewer expected requests than this above the quantile, and the estimate rests on too few.
const FEW_BEYOND: f64 = 10.0;

/// A histogram with a known unit: latency, readable as durations.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    /// The buckets.
    pub histogram: Histogram,
    /// Their unit.
    pub unit: Unit,
}

impl Latency {
    /// The latency of `series`, in its own unit or, when it states none, in `fallback` (the
    /// unit a user gave); `None` when neither is known, since bounds of unknown unit cannot be
    /// a timeout.
    pub fn of(series: &Series, fallback: Option<Unit>) -> Option<Latency> {
        Some(Latency {
            histogram: series.histogram.clone(),
            unit: series.unit.or(fallback)?,
        })
    }

    /// The `q` quantile as Prometheus computes it, as a duration.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.unit.duration(self.histogram.quantile(q)?)
    }

    /// The share of requests that took at most `timeout`: the share a timeout there lets
    /// through (Mux's Apdex-style figure).
    pub fn share_within(&self, timeout: Duration) -> Option<Share> {
        self.histogram.share_at_or_below(self.unit.value(timeout))
    }
}

/// Why a series gets no suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Its bounds have no unit: neither its name nor a stated unit says one.
    #[error("no unit: its name ends in neither _seconds nor _milliseconds and no unit is stated (pass --unit if it is a latency)")]
    NoUnit,
    /// It has no `+Inf` bucket, so the requests above its last bound are lost.
    #[error("no +Inf bucket: the requests above the last bound are not counted, and Prometheus gives no quantile either")]
    NoInfBucket,
    /// It counted no request (in the window).
    #[error("no requests counted")]
    NoRequests,
    /// Its only bucket is `+Inf`: requests counted, but no bound to place a quantile at.
    #[error("only a +Inf bucket: the requests are counted, but no bound says how long they took; give it finite buckets from 0 up to the slowest requests")]
    OnlyInfBucket,
    /// A bucket's count is negative, NaN or infinite: not a count of requests.
    #[error("a bucket's count is negative, NaN or infinite: not a count of requests")]
    NotACount,
    /// A quantile falls where no duration is: below zero, or past what a timeout can be (a
    /// bucket bound of `1e308`), so its bounds are not those of a latency.
    #[error("a quantile falls below zero or past any duration (a bucket bound that is negative or as far as le=\"1e308\"): not a latency histogram's bounds; give it finite buckets from 0 up to the slowest requests")]
    NotADuration,
}

/// What makes a suggestion a guess, and the bucket that would make it a measurement.
#[derive(Clone, Debug, PartialEq)]
pub enum Warning {
    /// The quantile lies in a bucket too wide to place it: interpolated along a straight line.
    CoarseBucket {
        /// The quantile, e.g. 0.999.
        quantile: f64,
        /// Its estimate.
        estimate: Duration,
        /// The bucket's lower bound (0 for the lowest bucket).
        lower: Duration,
        /// The bucket's upper bound.
        upper: Duration,
        /// Where a bucket would split it usefully.
        add: Duration,
    },
    /// More than the false-timeout rate of requests lie above the highest finite bound: the
    /// estimate is that bound, a floor.
    AboveHighestBucket {
        /// The quantile.
        quantile: f64,
        /// The highest finite bound.
        highest: Duration,
    },
    /// So few requests that only a handful lie above the quantile.
    FewRequests {
        /// The quantile.
        quantile: f64,
        /// Requests counted.
        requests: f64,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Warning::CoarseBucket {
                quantile,
                estimate,
                lower,
                upper,
                add,
            } => {
                let place = if lower.is_zero() {
                    format!(
                        "the lowest bucket (up to {}), interpolated from 0",
                        show(upper)
                    )
                } else {
                    format!(
                        "a bucket from {} to {}, {:.1}x apart, on a straight line between them",
                        show(lower),
                        show(upper),
                        upper.as_secs_f64() / lower.as_secs_f64()
                    )
                };
                write!(
                    f,
                    "{} ({}) lies in {place}: a guess; add a bucket at {}",
                    quantile_name(quantile),
                    show(estimate),
                    stormguard::duration::format(add)
                )
            }
            Warning::AboveHighestBucket { quantile, highest } => write!(
                f,
                "more than {} of requests took longer than the highest bucket ({}): {} is \
                 somewhere above it and {} is only a floor; add buckets above it, e.g. at {} \
                 and {}",
                percent(1.0 - quantile),
                show(highest),
                quantile_name(quantile),
                show(highest),
                stormguard::duration::format(round_up(highest.saturating_mul(2))),
                stormguard::duration::format(round_up(highest.saturating_mul(5))),
            ),
            Warning::FewRequests { quantile, requests } => write!(
                f,
                "only {requests:.0} requests, about {:.1} of them above the {}: too few for it \
                 to mean much; measure over more requests",
                requests * (1.0 - quantile),
                quantile_name(quantile)
            ),
        }
    }
}

/// The suggestion for one histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    /// Requests counted (in the window, for a Prometheus query).
    pub requests: f64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// The quantile the timeout is set at: `1 - false_timeout_rate`.
    pub quantile: f64,
    /// That quantile's estimate.
    pub estimate: Duration,
    /// The suggested timeout: the estimate rounded up to a readable value.
    pub timeout: Duration,
    /// The bucket the estimate lies in: lower bound, and upper (`None`: `+Inf`).
    pub bucket: (Duration, Option<Duration>),
    /// What makes it a guess.
    pub warnings: Vec<Warning>,
}

impl Suggestion {
    /// Whether the quantile lies past the highest finite bucket, so the timeout is only a floor
    /// of it ([`Warning::AboveHighestBucket`]): a timeout set there cuts more than the
    /// false-timeout rate of requests that would succeed, by an amount the buckets cannot say.
    pub fn only_a_floor(&self) -> bool {
        self.warnings
            .iter()
            .any(|w| matches!(w, Warning::AboveHighestBucket { .. }))
    }
}

/// The suggestion for `latency` at `false_timeout_rate` (0.001: the p99.9).
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::histogram::{Bucket, Histogram};
/// use stormguard_recommend::series::Unit;
/// use stormguard_recommend::suggest::{suggest, Latency};
///
/// let ms = |upper, count| Bucket { upper, count };
/// let latency = Latency {
///     histogram: Histogram::new([ms(100.0, 9_000.0), ms(200.0, 9_980.0), ms(250.0, 9_995.0),
///         ms(300.0, 10_000.0), ms(f64::INFINITY, 10_000.0)]),
///     unit: Unit::Milliseconds,
/// };
/// let s = suggest(&latency, 0.001).unwrap();
/// // Rank 9,990 is the 10th of the 15 requests between 200 and 250 ms: 200 + 50 * 10/15.
/// assert!((s.estimate.as_secs_f64() - 0.233_333).abs() < 1e-6);
/// assert_eq!(s.timeout, Duration::from_millis(250));
/// assert!(s.warnings.is_empty());
/// ```
pub fn suggest(latency: &Latency, false_timeout_rate: f64) -> Result<Suggestion, Skip> {
    let histogram = &latency.histogram;
    if histogram
        .buckets()
        .iter()
        .any(|b| !b.count.is_finite() || b.count < 0.0)
    {
        return Err(Skip::NotACount);
    }
    if !histogram.has_inf() {
        return Err(Skip::NoInfBucket);
    }
    if histogram.buckets().len() < 2 && histogram.total() > 0.0 {
        return Err(Skip::OnlyInfBucket);
    }
    let requests = histogram.total();
    let quantile = 1.0 - false_timeout_rate;
    if requests <= 0.0 {
        return Err(Skip::NoRequests);
    }
    let at = |q: f64| match latency.histogram.quantile(q) {
        None => Err(Skip::NoRequests),
        Some(value) => latency.unit.duration(value).ok_or(Skip::NotADuration),
    };
    let (p50, p99, p999, estimate) = (at(0.5)?, at(0.99)?, at(0.999)?, at(quantile)?);
    let timeout = round_up(estimate);
    let (lower, upper) = histogram
        .bucket_of(latency.unit.value(estimate))
        .ok_or(Skip::NoRequests)?;
    let lower = latency.unit.duration(lower).unwrap_or_default();
    let upper = latency.unit.duration(upper);
    let mut warnings = Vec::new();
    // The share above the highest finite bound decides whether the estimate is that bound only.
    let highest_share = histogram
        .buckets()
        .iter()
        .rev()
        .nth(1)
        .map_or(0.0, |b| b.count / requests);
    let highest = histogram.buckets().iter().rev().nth(1).map(|b| b.upper);
    match (upper, highest.and_then(|h| latency.unit.duration(h))) {
        (_, Some(highest)) if highest_share < quantile && estimate >= highest => {
            warnings.push(Warning::AboveHighestBucket { quantile, highest });
        }
        (Some(upper), _)
            if (lower.is_zero() || lower.checked_mul(2).is_some_and(|twice| upper >= twice))
                && !at_bound(estimate, upper) =>
        {
            warnings.push(Warning::CoarseBucket {
                quantile,
                estimate,
                lower,
                upper,
                add: bucket_to_add(lower, upper, timeout),
            });
        }
        _ => {}
    }
    if requests * false_timeout_rate < FEW_BEYOND {
        warnings.push(Warning::FewRequests { quantile, requests });
    }
    Ok(Suggestion {
        requests,
        p50,
        p99,
        p999,
        quantile,
        estimate,
        timeout,
        bucket: (lower, upper),
        warnings,
    })
}

/// Whether the estimate is the bucket's upper bound: the rank fell exactly on a cumulative
/// count, so the share below the bound is counted, not interpolated.
fn at_bound(estimate: Duration, upper: Duration) -> bool {
    (estimate.as_secs_f64() - upper.as_secs_f64()).abs() <= upper.as_secs_f64() * 1e-9
}

/// Where a bucket splits `(lower, upper]` usefully: at the suggested timeout when it lies
/// inside (the share under the timeout is then counted, not interpolated, as the proxy does
/// with its own buckets), else at the readable value nearest the bucket's geometric middle.
fn bucket_to_add(lower: Duration, upper: Duration, timeout: Duration) -> Duration {
    if timeout > lower && timeout < upper {
        return timeout;
    }
    let middle = if lower.is_zero() {
        upper / 2
    } else {
        Duration::from_secs_f64((lower.as_secs_f64() * upper.as_secs_f64()).sqrt())
    };
    nearest(middle)
}

/// `p99.9` for 0.999, `p50` for 0.5, `p99.95` for 0.9995.
pub fn quantile_name(q: f64) -> String {
    format!("p{}", hundredths(q * 100.0, q < 1.0))
}

/// `0.1%` for 0.001.
fn percent(share: f64) -> String {
    format!("{}%", hundredths(share * 100.0, share > 0.0))
}

/// `value` with up to four decimals, trailing zeros dropped; more where four would round it to
/// a whole 0 or 100 that it is not (`exact` false): a false-timeout rate of 1e-9 read "p100 (a
/// false-timeout rate of 0%)".
fn hundredths(value: f64, inexact_ends: bool) -> String {
    let text = |decimals: usize| {
        let text = format!("{value:.decimals$}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    (4..=12)
        .map(text)
        .find(|t| !inexact_ends || (t != "100" && t != "0"))
        .unwrap_or_else(|| text(12))
}

#[cfg(test)]
mod tests;
