//! A route's inline tables: `retry_budget` or `token_bucket`, `hedge`, `adaptive_timeout` and
//! `fault`.
//!
//! Each value is checked by the policy core's own constructor (`RetryBudget::new`,
//! `TokenBucket::new`, `HedgePolicy::new`, `AdaptiveTimeout::new`) and its message passed on, so
//! that the proxy accepts exactly what the library runs; only the position and the key are
//! added here.

use std::str::FromStr;
use std::time::Duration;

use stormguard::budget::{BudgetError, RetryBudget, TokenBucket, TokenBucketConfig};
use stormguard::estimate::{AdaptiveTimeout, EstimateError};
use stormguard::hedge::{HedgeDelay, HedgeError, HedgePolicy};
use stormguard_graph::model::{HedgeSpec, LimiterSpec};
use stormguard_graph::parse::locate::KeyPath;
use stormguard_graph::parse::ParseError;
use stormguard_graph::policy::BUDGET_TTL;
use toml::Spanned;

use super::convert::Converter;
use super::model::{AdaptiveTimeoutSpec, FaultSpec};
use super::raw::{RawAdaptive, RawBucket, RawBudget, RawFault, RawHedge};

/// The hedge budget of a `hedge` that gives no `max_extra`: the library's 5% (see
/// `stormguard::hedge`). The graph file leaves it out and `check` warns; a proxy must not
/// double a slow upstream's load, so it fills it in.
pub(super) const HEDGE_MAX_EXTRA: f64 = 0.05;

/// The status of a fault that gives `abort_percent` but no `abort_status`: what an overloaded
/// upstream answers, so that clients' retry paths are exercised.
const ABORT_STATUS: u16 = 503;

impl Converter<'_> {
    /// The route's limiter: the one it names, or the library's recommended retry budget.
    pub(super) fn limiter(
        &self,
        budget: Option<Spanned<RawBudget>>,
        bucket: Option<Spanned<RawBucket>>,
        path: &KeyPath,
    ) -> Result<LimiterSpec, ParseError> {
        match (budget, bucket) {
            (Some(budget), Some(bucket)) => {
                // Point at the one written second: it is the likelier edit to undo.
                let (key, second) = if budget.span().start > bucket.span().start {
                    ("retry_budget", budget.span().start)
                } else {
                    ("token_bucket", bucket.span().start)
                };
                Err(self.error(
                    second,
                    &path.key(key),
                    "a route takes retry_budget or token_bucket, not both: keep one",
                ))
            }
            (Some(budget), None) => self.budget(budget.into_inner(), &path.key("retry_budget")),
            (None, Some(bucket)) => self.bucket(bucket, &path.key("token_bucket")),
            (None, None) => {
                let recommended = RetryBudget::recommended();
                Ok(LimiterSpec::Budget {
                    ratio: recommended.ratio(),
                    min_per_sec: recommended.min_per_sec(),
                })
            }
        }
    }

    fn budget(&self, raw: RawBudget, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let recommended = RetryBudget::recommended();
        let min_per_sec = raw.min_per_sec.unwrap_or(recommended.min_per_sec());
        let ratio = raw
            .ratio
            .as_ref()
            .map_or(recommended.ratio(), |r| *r.get_ref());
        if let (Some(value), Err(error)) =
            (&raw.ratio, RetryBudget::new(BUDGET_TTL, min_per_sec, ratio))
        {
            return Err(self.error(value.span().start, &path.key("ratio"), error.to_string()));
        }
        Ok(LimiterSpec::Budget { ratio, min_per_sec })
    }

    fn bucket(&self, raw: Spanned<RawBucket>, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        // The AWS SDKs' standard mode, as the policy core's default.
        let defaults = TokenBucketConfig::default();
        let value =
            |v: &Option<Spanned<u32>>, default: u32| v.as_ref().map_or(default, |v| *v.get_ref());
        let config = TokenBucketConfig {
            capacity: value(&raw.capacity, defaults.capacity),
            retry_cost: value(&raw.retry_cost, defaults.retry_cost),
            timeout_retry_cost: value(&raw.timeout_cost, defaults.timeout_retry_cost),
            ..defaults
        };
        if let Err(error) = TokenBucket::new(config) {
            // Blame the cost when the file gave it; a default cost the bucket cannot pay is
            // the capacity's mistake.
            let key = match error {
                BudgetError::CostExceedsCapacity {
                    name: "retry_cost", ..
                } if raw.retry_cost.is_some() => "retry_cost",
                BudgetError::CostExceedsCapacity {
                    name: "timeout_retry_cost",
                    ..
                } if raw.timeout_cost.is_some() => "timeout_cost",
                _ => "capacity",
            };
            let at = match key {
                "retry_cost" => &raw.retry_cost,
                "timeout_cost" => &raw.timeout_cost,
                _ => &raw.capacity,
            };
            return Err(self.error(
                at.as_ref().map_or(offset, |v| v.span().start),
                &path.key(key),
                format!("{error}; set a capacity of at least each cost"),
            ));
        }
        Ok(LimiterSpec::TokenBucket {
            capacity: config.capacity,
            retry_cost: config.retry_cost,
            timeout_cost: config.timeout_retry_cost,
        })
    }

    pub(super) fn hedge(
        &self,
        raw: Spanned<RawHedge>,
        path: &KeyPath,
    ) -> Result<HedgeSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let Some(text) = &raw.delay else {
            return Err(self.error(
                offset,
                &path.key("delay"),
                "missing: say when to send the hedge, a duration such as \"50ms\" or a latency \
                 quantile such as \"p95\"",
            ));
        };
        let delay = HedgeDelay::from_str(text.get_ref()).map_err(|error| {
            self.error(text.span().start, &path.key("delay"), error.to_string())
        })?;
        let max_extra = raw
            .max_extra
            .as_ref()
            .map_or(HEDGE_MAX_EXTRA, |m| *m.get_ref());
        if let Err(error) = HedgePolicy::new(delay, max_extra) {
            let (at, key) = match error {
                HedgeError::MaxExtra(_) => (
                    raw.max_extra.as_ref().map_or(offset, |m| m.span().start),
                    "max_extra",
                ),
                HedgeError::Delay { .. } => (text.span().start, "delay"),
            };
            return Err(self.error(at, &path.key(key), error.to_string()));
        }
        Ok(HedgeSpec {
            delay,
            max_extra: Some(max_extra),
        })
    }

    /// `adaptive_timeout`, bounded above by the route's `timeout` so that `timeout` stays the
    /// longest any attempt takes (what `/config` shows and the worst case is computed from).
    pub(super) fn adaptive(
        &self,
        raw: Spanned<RawAdaptive>,
        timeout: Duration,
        path: &KeyPath,
    ) -> Result<AdaptiveTimeoutSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let defaults = AdaptiveTimeout::default();
        let max = self.duration_or(raw.max.as_ref(), path, "max", timeout)?;
        let min = self.duration_or(raw.min.as_ref(), path, "min", defaults.min.min(max))?;
        let rate = raw
            .false_timeout_rate
            .as_ref()
            .map_or(defaults.false_timeout_rate, |r| *r.get_ref());
        // Where each value is, or the table when the file left it out.
        let rate_at = raw
            .false_timeout_rate
            .as_ref()
            .map_or(offset, |v| v.span().start);
        let min_at = raw.min.as_ref().map_or(offset, |v| v.span().start);
        let max_at = raw.max.as_ref().map_or(offset, |v| v.span().start);
        if let Err(error) = AdaptiveTimeout::new(rate, min, max) {
            let (at, key) = match error {
                EstimateError::FalseTimeoutRate(_) => (rate_at, "false_timeout_rate"),
                EstimateError::MinimumAboveMaximum { .. } if raw.min.is_none() => (max_at, "max"),
                _ => (min_at, "min"),
            };
            return Err(self.error(at, &path.key(key), error.to_string()));
        }
        if max > timeout {
            return Err(self.error(
                max_at,
                &path.key("max"),
                format!(
                    "max {} is above the route's timeout {}: the timeout is the longest an \
                     attempt may take; use a max of at most {}, or raise timeout",
                    stormguard::duration::format(max),
                    stormguard::duration::format(timeout),
                    stormguard::duration::format(timeout),
                ),
            ));
        }
        Ok(AdaptiveTimeoutSpec {
            false_timeout_rate: rate,
            min,
            max,
        })
    }

    /// `fault`: a share given without its fault is refused, a fault given without its share
    /// applies to every request, and a fault with neither a delay nor an abort is refused,
    /// since it would look like an injection and do nothing.
    pub(super) fn fault(
        &self,
        raw: Spanned<RawFault>,
        path: &KeyPath,
    ) -> Result<FaultSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        if raw.delay.is_none() && raw.abort_status.is_none() && raw.abort_percent.is_none() {
            return Err(self.error(
                offset,
                path,
                "a fault with neither delay nor abort_status does nothing: give delay = \
                 \"200ms\" (with delay_percent) or abort_status = 503 (with abort_percent)",
            ));
        }
        if let (None, Some(percent)) = (&raw.delay, &raw.delay_percent) {
            return Err(self.error(
                percent.span().start,
                &path.key("delay_percent"),
                "delay_percent without delay delays requests by nothing: add delay, e.g. \
                 delay = \"200ms\"",
            ));
        }
        let percent = |value: &Option<Spanned<f64>>, key: &str, given: bool| match value {
            Some(value) if !(0.0..=100.0).contains(value.get_ref()) => Err(self.error(
                value.span().start,
                &path.key(key),
                format!(
                    "{} is not a percentage: use a share of requests from 0 to 100, e.g. 5.0",
                    value.get_ref()
                ),
            )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(if given { 100.0 } else { 0.0 }),
        };
        let abort_status = match &raw.abort_status {
            Some(status) => match u16::try_from(*status.get_ref()) {
                Ok(code @ 200..=599) => code,
                _ => {
                    return Err(self.error(
                        status.span().start,
                        &path.key("abort_status"),
                        format!(
                            "{} is not a status a response can end with: use 200 to 599, \
                             e.g. 503 (1xx statuses are interim, never final)",
                            status.get_ref()
                        ),
                    ))
                }
            },
            None => ABORT_STATUS,
        };
        Ok(FaultSpec {
            delay: self.duration_or(raw.delay.as_ref(), path, "delay", Duration::ZERO)?,
            delay_percent: percent(&raw.delay_percent, "delay_percent", raw.delay.is_some())?,
            abort_status,
            abort_percent: percent(
                &raw.abort_percent,
                "abort_percent",
                raw.abort_status.is_some(),
            )?,
        })
    }
}
