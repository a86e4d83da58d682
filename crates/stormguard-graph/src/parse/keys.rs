//! The policy keys a graph call and a proxy route share: `max_attempts`, `backoff`,
//! `retry_budget` or `token_bucket`, and `hedge`.
//!
//! ## Why one reading for both files
//! A proxy route's policy has the same keys and meanings as a call in the graph file, so that
//! what `check` and `sim` say of a call is what `stormguard proxy` does with the same lines. Two
//! readings would drift apart (a cost one accepts and the other refuses, the same mistake told
//! in two ways), so both files deserialize these tables into the `Raw` structs here and convert
//! them with the [`ValueReader`] methods here, which check each value with the policy core's
//! own constructor and pass its message on.
//!
//! What an absent key means is decided once, in [`super::policy_keys`], for both files; these
//! functions take that default from their caller, or return `None` for it to fill in. The keys
//! left out *inside* a `retry_budget` or `token_bucket` table get the policy core's defaults in
//! both files.
//!
//! ```
//! use stormguard_graph::model::LimiterSpec;
//! use stormguard_graph::parse::keys::{RawBucket, RawBudget};
//! use stormguard_graph::parse::locate::{KeyPath, Lines};
//! use stormguard_graph::parse::values::ValueReader;
//!
//! #[derive(serde::Deserialize)]
//! struct RawRoute {
//!     retry_budget: Option<toml::Spanned<RawBudget>>,
//!     token_bucket: Option<toml::Spanned<RawBucket>>,
//! }
//!
//! let text = "token_bucket = { capacity = 10, retry_cost = 11 }\n";
//! let lines = Lines::new(text);
//! let values = ValueReader::new("p.toml", &lines);
//! let raw: RawRoute = toml::from_str(text).unwrap();
//! let error = values
//!     .limiter(raw.retry_budget, raw.token_bucket, &KeyPath::default(), "route")
//!     .unwrap_err();
//! assert_eq!((error.line, error.column), (1, 46));
//! assert!(error.message.starts_with("11 is above the capacity 10"));
//!
//! let raw: RawRoute = toml::from_str("retry_budget = { ratio = 0.1 }").unwrap();
//! assert_eq!(
//!     values.limiter(raw.retry_budget, raw.token_bucket, &KeyPath::default(), "route"),
//!     Ok(Some(LimiterSpec::Budget { ratio: 0.1, min_per_sec: 10 }))
//! );
//! ```

use std::str::FromStr;

use serde::Deserialize;
use stormguard::backoff::Backoff;
use stormguard::budget::{BudgetError, RetryBudget, TokenBucket, TokenBucketConfig};
use stormguard::hedge::{HedgeDelay, HedgeError, HedgePolicy};
use toml::Spanned;

use super::locate::KeyPath;
use super::ranges::{ATTEMPTS, BUCKET_CAPACITY, HEDGE_SHARE, MIN_PER_SEC, RETRY_RATIO};
use super::values::ValueReader;
use super::ParseError;
use crate::model::{HedgeSpec, LimiterSpec};
use crate::policy::BUDGET_TTL;

/// `retry_budget = { ratio, min_per_sec }`, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Retries allowed per request, checked by `RetryBudget::new`.
    pub ratio: Option<Spanned<f64>>,
    /// Retries a second allowed whatever the traffic.
    pub min_per_sec: Option<Spanned<u32>>,
}

/// `token_bucket = { capacity, retry_cost, timeout_cost }`, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    /// Tokens the bucket holds when full.
    pub capacity: Option<Spanned<u32>>,
    /// Tokens a retry after an error costs.
    pub retry_cost: Option<Spanned<u32>>,
    /// Tokens a retry after a timeout costs.
    pub timeout_cost: Option<Spanned<u32>>,
}

/// `hedge = { delay, max_extra }`, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHedge {
    /// When to send the hedge: a duration or a latency quantile, in the policy core's syntax.
    pub delay: Option<Spanned<String>>,
    /// The largest share of extra requests.
    pub max_extra: Option<Spanned<f64>>,
}

impl ValueReader<'_> {
    /// `parent.max_attempts`, or `default` when the file leaves it out.
    pub fn max_attempts(
        &self,
        value: Option<&Spanned<u32>>,
        parent: &KeyPath,
        default: u32,
    ) -> Result<u32, ParseError> {
        self.whole_or(value, parent, "max_attempts", &ATTEMPTS, default)
    }

    /// `parent.backoff` in the policy core's text form, or `default` when the file leaves it
    /// out.
    pub fn backoff(
        &self,
        value: Option<&Spanned<String>>,
        parent: &KeyPath,
        default: Backoff,
    ) -> Result<Backoff, ParseError> {
        match value {
            Some(text) => Backoff::from_str(text.get_ref()).map_err(|error| {
                self.error(text.span().start, &parent.key("backoff"), error.to_string())
            }),
            None => Ok(default),
        }
    }

    /// The limiter `parent.retry_budget` or `parent.token_bucket` names, `None` when the file
    /// gives neither (the caller's default), or an error when it gives both. `holder` is what
    /// the file calls the table that holds them (`call`, `route`), for that error.
    pub fn limiter(
        &self,
        budget: Option<Spanned<RawBudget>>,
        bucket: Option<Spanned<RawBucket>>,
        parent: &KeyPath,
        holder: &str,
    ) -> Result<Option<LimiterSpec>, ParseError> {
        match (budget, bucket) {
            (Some(budget), Some(bucket)) => {
                // Point at the one written second: the first was there when the second was
                // added, so the second is the likelier edit to undo.
                let (key, second) = if budget.span().start > bucket.span().start {
                    ("retry_budget", budget.span().start)
                } else {
                    ("token_bucket", bucket.span().start)
                };
                Err(self.error(
                    second,
                    &parent.key(key),
                    format!("a {holder} takes retry_budget or token_bucket, not both: keep one"),
                ))
            }
            (Some(budget), None) => self
                .budget(budget.into_inner(), &parent.key("retry_budget"))
                .map(Some),
            (None, Some(bucket)) => self.bucket(bucket, &parent.key("token_bucket")).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A retry budget; the keys it leaves out get the policy core's recommended budget
    /// (Finagle's and linkerd's: 20% of requests plus 10 retries a second).
    fn budget(&self, raw: RawBudget, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let recommended = RetryBudget::recommended();
        let min_per_sec = self.whole_or(
            raw.min_per_sec.as_ref(),
            path,
            "min_per_sec",
            &MIN_PER_SEC,
            recommended.min_per_sec(),
        )?;
        let Some(ratio) = &raw.ratio else {
            return Ok(LimiterSpec::Budget {
                ratio: recommended.ratio(),
                min_per_sec,
            });
        };
        self.number(ratio, path, "ratio", &RETRY_RATIO)?;
        // The policy core decides what a valid ratio is, with the ttl the budget will run with.
        RetryBudget::new(BUDGET_TTL, min_per_sec, *ratio.get_ref()).map_err(|error| {
            self.error(ratio.span().start, &path.key("ratio"), error.to_string())
        })?;
        Ok(LimiterSpec::Budget {
            ratio: *ratio.get_ref(),
            min_per_sec,
        })
    }

    /// A token bucket; the keys it leaves out get the policy core's defaults (the AWS SDKs'
    /// standard mode). Checked by `TokenBucket::new`, whose message is passed on after the
    /// file's terms.
    fn bucket(&self, raw: Spanned<RawBucket>, path: &KeyPath) -> Result<LimiterSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let defaults = TokenBucketConfig::default();
        let given = |value: &Option<Spanned<u32>>, default: u32| {
            value.as_ref().map_or(default, |value| *value.get_ref())
        };
        self.whole_or(
            raw.capacity.as_ref(),
            path,
            "capacity",
            &BUCKET_CAPACITY,
            defaults.capacity,
        )?;
        let config = TokenBucketConfig {
            capacity: given(&raw.capacity, defaults.capacity),
            retry_cost: given(&raw.retry_cost, defaults.retry_cost),
            timeout_retry_cost: given(&raw.timeout_cost, defaults.timeout_retry_cost),
            ..defaults
        };
        let Err(error) = TokenBucket::new(config) else {
            return Ok(LimiterSpec::TokenBucket {
                capacity: config.capacity,
                retry_cost: config.retry_cost,
                timeout_cost: config.timeout_retry_cost,
            });
        };
        let capacity_at = raw.capacity.as_ref().map_or(offset, |v| v.span().start);
        let (at, key, message) = match error {
            BudgetError::CostExceedsCapacity {
                name,
                cost,
                capacity,
            } => {
                let (key, value) = match name {
                    "retry_cost" => ("retry_cost", &raw.retry_cost),
                    _ => ("timeout_cost", &raw.timeout_cost),
                };
                match value {
                    Some(value) => (
                        value.span().start,
                        key,
                        format!(
                            "{cost} is above the capacity {capacity}: such a retry could never \
                             be paid ({error}); use at most {capacity}"
                        ),
                    ),
                    // A default cost the bucket cannot pay is the capacity's mistake, not the
                    // cost's.
                    None => (
                        capacity_at,
                        "capacity",
                        format!(
                            "{capacity} is below the default {key} {cost}: such a retry could \
                             never be paid ({error}); use a capacity of at least {cost} or set \
                             {key}"
                        ),
                    ),
                }
            }
            BudgetError::ZeroCapacity => (
                capacity_at,
                "capacity",
                format!(
                    "0 is not valid: a bucket that holds no token never allows a retry \
                     ({error}); use e.g. {}",
                    defaults.capacity
                ),
            ),
            other => (capacity_at, "capacity", other.to_string()),
        };
        Err(self.error(at, &path.key(key), message))
    }

    /// `parent.hedge`: its delay is required; its `max_extra` is
    /// [`super::policy_keys::HEDGE_MAX_EXTRA`] when the file leaves it out.
    pub fn hedge(&self, raw: Spanned<RawHedge>, parent: &KeyPath) -> Result<HedgeSpec, ParseError> {
        let path = &parent.key("hedge");
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
        let Some(max_extra) = &raw.max_extra else {
            return Ok(HedgeSpec {
                delay,
                max_extra: super::policy_keys::HEDGE_MAX_EXTRA,
            });
        };
        self.number(max_extra, path, "max_extra", &HEDGE_SHARE)?;
        // The policy core decides what a valid hedge is.
        HedgePolicy::new(delay, *max_extra.get_ref()).map_err(|error| {
            let (at, key) = match error {
                HedgeError::Delay { .. } | HedgeError::DelayOutOfRange { .. } => {
                    (text.span().start, "delay")
                }
                HedgeError::MaxExtra(_) => (max_extra.span().start, "max_extra"),
            };
            self.error(at, &path.key(key), error.to_string())
        })?;
        Ok(HedgeSpec {
            delay,
            max_extra: *max_extra.get_ref(),
        })
    }
}
