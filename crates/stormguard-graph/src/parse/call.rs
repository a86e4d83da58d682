//! One call: the edge of the graph where nearly every setting lives, so nearly every check.

use std::str::FromStr;

use stormguard::backoff::Backoff;
use stormguard::budget::RetryBudget;
use stormguard::hedge::{HedgeDelay, HedgePolicy};
use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::raw::{RawBucket, RawBudget, RawCall, RawHedge};
use super::ParseError;
use crate::model::{Call, HedgeSpec, LimiterSpec};

/// Finagle's (and linkerd's) retry budget defaults, used for the keys a `retry_budget` leaves
/// out: 20% of requests may be retried, plus 10 retries a second.
const BUDGET_RATIO: f64 = 0.2;
const BUDGET_MIN_PER_SEC: u32 = 10;

impl Converter<'_> {
    pub(super) fn call(&self, raw: Spanned<RawCall>, path: &KeyPath) -> Result<Call, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let to = self.required_service(raw.to.as_ref(), offset, path, "to", "this call goes to")?;
        let max_attempts = self.at_least_one(
            raw.max_attempts.as_ref(),
            path,
            "max_attempts",
            1,
            "max_attempts counts the first attempt too; use 1 for no retries, 2 for one retry",
        )?;
        let count = self.at_least_one(
            raw.count.as_ref(),
            path,
            "count",
            1,
            "a call made 0 times per request is no call; use 1 or more, or remove the call",
        )?;
        let backoff = match &raw.backoff {
            Some(text) => Backoff::from_str(text.get_ref()).map_err(|error| {
                self.error(text.span().start, &path.key("backoff"), error.to_string())
            })?,
            None => Backoff::None,
        };
        let limiter = match (raw.retry_budget, raw.token_bucket) {
            (Some(budget), Some(bucket)) => {
                // Point at the one written second: the first was there when the second was
                // added, so the second is the likelier edit to undo.
                let (key, second) = if budget.span().start > bucket.span().start {
                    ("retry_budget", budget.span().start)
                } else {
                    ("token_bucket", bucket.span().start)
                };
                return Err(self.error(
                    second,
                    &path.key(key),
                    "a call takes retry_budget or token_bucket, not both: keep one",
                ));
            }
            (Some(budget), None) => Some(self.budget(budget, &path.key("retry_budget"))?),
            (None, Some(bucket)) => Some(self.bucket(bucket, &path.key("token_bucket"))?),
            (None, None) => None,
        };
        let hedge = raw
            .hedge
            .map(|hedge| self.hedge(hedge, &path.key("hedge")))
            .transpose()?;
        Ok(Call {
            to,
            timeout: self.optional_duration(raw.timeout.as_ref(), path, "timeout")?,
            connect_timeout: self.optional_duration(
                raw.connect_timeout.as_ref(),
                path,
                "connect_timeout",
            )?,
            rtt: self.nonzero_duration_or(
                raw.rtt.as_ref(),
                path,
                "rtt",
                1,
                "a round trip over a network takes some time, and every check of a connect \
                 timeout is a multiple of it; use the measured round trip, e.g. \"1ms\"",
            )?,
            max_attempts,
            backoff,
            limiter,
            idempotent: raw.idempotent.unwrap_or(true),
            count,
            parallel: raw.parallel.unwrap_or(false),
            required: raw.required.unwrap_or(true),
            hedge,
            propagate_deadline: raw.propagate_deadline.unwrap_or(false),
            span: self.span(offset),
        })
    }

    fn budget(&self, raw: Spanned<RawBudget>, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let raw = raw.into_inner();
        let min_per_sec = raw.min_per_sec.unwrap_or(BUDGET_MIN_PER_SEC);
        let ratio = match &raw.ratio {
            Some(ratio) => {
                // The policy core decides what a valid ratio is; the ttl is only needed to
                // build the budget and any valid one will do.
                RetryBudget::new(
                    std::time::Duration::from_secs(10),
                    min_per_sec,
                    *ratio.get_ref(),
                )
                .map_err(|error| {
                    self.error(ratio.span().start, &path.key("ratio"), error.to_string())
                })?;
                *ratio.get_ref()
            }
            None => BUDGET_RATIO,
        };
        Ok(LimiterSpec::Budget { ratio, min_per_sec })
    }

    fn bucket(&self, raw: Spanned<RawBucket>, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        // The AWS SDKs' standard mode, as the policy core's TokenBucketConfig::default().
        let defaults = stormguard::budget::TokenBucketConfig::default();
        let capacity = self.at_least_one(
            raw.capacity.as_ref(),
            path,
            "capacity",
            defaults.capacity,
            "a bucket that holds no token never allows a retry; use e.g. 500",
        )?;
        let cost = |value: &Option<Spanned<u32>>, key: &str, default: u32| match value {
            Some(value) if *value.get_ref() > capacity => Err(self.error(
                value.span().start,
                &path.key(key),
                format!(
                    "{} is above the capacity {capacity}: such a retry could never be paid; \
                     use at most {capacity}",
                    value.get_ref()
                ),
            )),
            Some(value) => Ok(*value.get_ref()),
            // A default cost the bucket cannot pay is the capacity's mistake, not the cost's.
            None if default > capacity => Err(self.error(
                raw.capacity
                    .as_ref()
                    .map_or(offset, |value| value.span().start),
                &path.key("capacity"),
                format!(
                    "{capacity} is below the default {key} {default}: such a retry could never \
                     be paid; use a capacity of at least {default} or set {key}"
                ),
            )),
            None => Ok(default),
        };
        Ok(LimiterSpec::TokenBucket {
            capacity,
            retry_cost: cost(&raw.retry_cost, "retry_cost", defaults.retry_cost)?,
            timeout_cost: cost(
                &raw.timeout_cost,
                "timeout_cost",
                defaults.timeout_retry_cost,
            )?,
        })
    }

    fn hedge(&self, raw: Spanned<RawHedge>, path: &KeyPath) -> Result<HedgeSpec, ParseError> {
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
        let max_extra = match &raw.max_extra {
            Some(max_extra) => {
                // The policy core decides what a valid hedge is.
                HedgePolicy::new(delay, *max_extra.get_ref()).map_err(|error| {
                    self.error(
                        max_extra.span().start,
                        &path.key("max_extra"),
                        error.to_string(),
                    )
                })?;
                Some(*max_extra.get_ref())
            }
            None => None,
        };
        Ok(HedgeSpec { delay, max_extra })
    }
}
