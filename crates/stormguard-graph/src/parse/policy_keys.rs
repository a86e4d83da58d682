//! The policy of one call, read the same way from a graph call (`[[services.NAME.calls]]`) and a
//! proxy route (`[[routes]]`): one list of keys, one meaning, one default each.
//!
//! ## Why one reading with one set of defaults
//! stormguard's promise is that what `check` computes and `sim` predicts for a call is what
//! `stormguard proxy` does with the same lines. That holds only if a key means the same in both
//! files and an absent key gets the same value in both; so both files hand their keys to
//! [`ValueReader::policy`], and every default is a constant here (described in [`POLICY_KEYS`],
//! which `docs/reference.md` prints as its table of a call's and a route's policy).
//!
//! The defaults are stormguard's recommended policy where a file is silent about *how* to retry
//! (`backoff`, the limiter, `retry_on`, `propagate_deadline`, a hedge's `max_extra`), and
//! "nothing" where a value cannot be guessed (`timeout`, `request_timeout`, `connect_timeout`)
//! or would multiply load (`max_attempts` is 1). A graph that describes a system as it runs
//! today says what it lacks: `backoff = "none"`, `retry_budget = "none"`,
//! `propagate_deadline = false`.
//!
//! ```
//! use stormguard_graph::parse;
//! use stormguard_graph::model::Idempotent;
//!
//! let graph = parse("g.toml", r#"
//! [entry]
//! service = "web"
//! [services.web]
//! [[services.web.calls]]
//! to = "api"
//! timeout = "200ms"
//! request_timeout = "450ms"
//! max_attempts = 2
//! retry_on = ["default", "409"]
//! [services.api]
//! "#).unwrap();
//! let call = &graph.services["web"].calls[0];
//! assert_eq!(call.request_timeout, Some(std::time::Duration::from_millis(450)));
//! assert_eq!(call.idempotent, Idempotent::ByMethod);
//! assert!(call.retry_on.status(409) && call.retry_on.status(503));
//! assert!(call.limiter.is_some(), "the recommended budget");
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use stormguard::backoff::Backoff;
use stormguard::budget::RetryBudget;
use stormguard::classify::{Condition, RetryOn};
use toml::Spanned;

use super::keys::{RawBucket, RawBudget, RawHedge};
use super::locate::KeyPath;
use super::ranges::TIMEOUT;
use super::values::{DurationValue, ValueReader};
use super::ParseError;
use crate::model::{HedgeSpec, Idempotent, LimiterSpec};

/// The hedge budget of a `hedge` that gives no `max_extra`: the policy core's 5% (see
/// `stormguard::hedge`), so that a hedge cannot double a slow callee's load.
pub const HEDGE_MAX_EXTRA: f64 = 0.05;

/// The method of a graph call that names none.
pub const DEFAULT_METHOD: &str = "GET";

/// One key of a call's policy, for the reference and for `stormguard explain`: its name, unit,
/// default, and meaning, in the words the reference prints (Markdown: values in backticks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDoc {
    /// The key as a file writes it.
    pub key: &'static str,
    /// Its unit or type, and the values it accepts.
    pub unit: &'static str,
    /// What an absent key means: a value in backticks (as a file would write it, and what the
    /// parser applies), or `none` and what happens instead.
    pub default: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// Every policy key that a graph call and a proxy route share, in the order the reference lists
/// them. `docs/reference.md` prints this table as is (its test regenerates it with
/// `UPDATE_REFERENCE=1`), and checks every default given as a value against the parser.
pub const POLICY_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "timeout",
        unit: "duration, 1ms to 1h",
        default: "none (a call: the finding `missing-timeout`; a route: refused)",
        meaning: "each attempt, from its start, connecting included, to its answer",
    },
    KeyDoc {
        key: "request_timeout",
        unit: "duration, 1ms to 1h; one below `timeout` ends the attempt first",
        default: "none: only the caller's deadline",
        meaning: "the whole call: every attempt and every wait between them",
    },
    KeyDoc {
        key: "connect_timeout",
        unit: "duration, 1ms to 1h, at most `timeout`",
        default: "none: connecting is bounded by `timeout` only",
        meaning: "making the connection, inside the attempt's `timeout`",
    },
    KeyDoc {
        key: "max_attempts",
        unit: "count, 1 to 100",
        default: "`1`",
        meaning: "tries in all, the first included",
    },
    KeyDoc {
        key: "backoff",
        unit: "[backoff text](#backoff-texts), its delays 1ms to 1h",
        default: "`\"full-jitter(base=25ms, cap=250ms)\"`",
        meaning: "the wait before each retry; `\"none\"` for no wait",
    },
    KeyDoc {
        key: "retry_budget",
        unit: "`{ ratio, min_per_sec }` or `\"none\"`",
        default: "`{ ratio = 0.2, min_per_sec = 10 }` over 10 s",
        meaning: "retries at most `ratio` of requests plus `min_per_sec` a second; `\"none\"`: \
                  no limiter",
    },
    KeyDoc {
        key: "token_bucket",
        unit: "`{ capacity, retry_cost, timeout_cost }`",
        default: "none (the retry budget applies)",
        meaning: "instead of a retry budget: failures drain tokens, successes refill them",
    },
    KeyDoc {
        key: "retry_on",
        unit: "list of conditions",
        default: "`[\"connect-failure\", \"refused-stream\", \"reset\", \"timeout\", \
                  \"gateway-error\", \"408\", \"429\", \"deadline-exceeded\", \
                  \"resource-exhausted\", \"unavailable\"]`",
        meaning: "the failures that may be retried; `\"default\"` in the list stands for the \
                  default; an empty list with `max_attempts` above 1 and no `hedge` is refused \
                  (nothing would be retried)",
    },
    KeyDoc {
        key: "idempotent",
        unit: "`true`, `false` or `\"by-method\"`",
        default: "`\"by-method\"`",
        meaning: "whether a request that may have reached the server may be sent again",
    },
    KeyDoc {
        key: "hedge",
        unit: "`{ delay, max_extra }`",
        default: "none: no hedge",
        meaning: "a second copy after `delay` (a duration below `timeout`, or `\"p95\"`), at most \
                  `max_extra` more",
    },
    KeyDoc {
        key: "propagate_deadline",
        unit: "bool",
        default: "`true`",
        meaning: "pass the remaining budget downstream in `stormguard-budget-ms`",
    },
];

/// The policy keys of one call or route, borrowed from the file's own raw struct (serde cannot
/// flatten them into one struct and still refuse unknown keys). `D` is the file's duration type.
pub struct PolicyKeys<'a, D> {
    /// Where the call's or route's table starts, for errors about a missing key.
    pub offset: usize,
    /// `timeout`.
    pub timeout: Option<&'a Spanned<D>>,
    /// `request_timeout`.
    pub request_timeout: Option<&'a Spanned<D>>,
    /// `connect_timeout`.
    pub connect_timeout: Option<&'a Spanned<D>>,
    /// `max_attempts`.
    pub max_attempts: Option<&'a Spanned<u32>>,
    /// `backoff`.
    pub backoff: Option<&'a Spanned<String>>,
    /// `retry_budget`.
    pub retry_budget: Option<Spanned<RawLimiter>>,
    /// `token_bucket`.
    pub token_bucket: Option<Spanned<RawBucket>>,
    /// `retry_on`.
    pub retry_on: Option<&'a Spanned<Vec<Spanned<String>>>>,
    /// `idempotent`.
    pub idempotent: Option<&'a Spanned<RawIdempotent>>,
    /// `hedge`.
    pub hedge: Option<Spanned<RawHedge>>,
    /// `propagate_deadline`.
    pub propagate_deadline: Option<bool>,
}

/// The [`PolicyKeys`] of a raw call or route `$raw` (a struct with the policy keys as fields of
/// the same names) whose table starts at `$offset`: one list of fields, so that a key added to
/// the policy reaches both files.
#[macro_export]
macro_rules! policy_keys {
    ($raw:ident, $offset:expr) => {
        $crate::parse::policy_keys::PolicyKeys {
            offset: $offset,
            timeout: $raw.timeout.as_ref(),
            request_timeout: $raw.request_timeout.as_ref(),
            connect_timeout: $raw.connect_timeout.as_ref(),
            max_attempts: $raw.max_attempts.as_ref(),
            backoff: $raw.backoff.as_ref(),
            retry_budget: $raw.retry_budget,
            token_bucket: $raw.token_bucket,
            retry_on: $raw.retry_on.as_ref(),
            idempotent: $raw.idempotent.as_ref(),
            hedge: $raw.hedge,
            propagate_deadline: $raw.propagate_deadline,
        }
    };
}

/// A call's policy with every default applied: the fields of a [`crate::model::Call`] that a
/// proxy route shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// See [`crate::model::Call::timeout`].
    pub timeout: Option<Duration>,
    /// See [`crate::model::Call::request_timeout`].
    pub request_timeout: Option<Duration>,
    /// See [`crate::model::Call::connect_timeout`].
    pub connect_timeout: Option<Duration>,
    /// See [`crate::model::Call::max_attempts`].
    pub max_attempts: u32,
    /// See [`crate::model::Call::backoff`].
    pub backoff: Backoff,
    /// See [`crate::model::Call::limiter`].
    pub limiter: Option<LimiterSpec>,
    /// See [`crate::model::Call::retry_on`].
    pub retry_on: RetryOn,
    /// See [`crate::model::Call::idempotent`].
    pub idempotent: Idempotent,
    /// See [`crate::model::Call::hedge`].
    pub hedge: Option<HedgeSpec>,
    /// See [`crate::model::Call::propagate_deadline`].
    pub propagate_deadline: bool,
}

/// The most attempts a call may make: more is a retry storm by construction, and a typo
/// (`max_attempts = 1000`) should be an error, not a policy.
pub const MAX_ATTEMPTS: u32 = 100;

/// The round trip `check` assumes for a call or route that gives no `rtt`: 1 ms, a network
/// within one data centre. The connect-timeout findings say when it was assumed.
pub const DEFAULT_RTT: Duration = Duration::from_millis(1);

impl ValueReader<'_> {
    /// `rtt` of the table at `path`: a graph call's and a proxy route's, with one range and one
    /// default ([`DEFAULT_RTT`]), so that the key means the same in both files. Read by `check`
    /// alone; the proxy neither reads nor measures it.
    pub fn rtt<D: DurationValue>(
        &self,
        value: Option<&Spanned<D>>,
        path: &KeyPath,
    ) -> Result<Duration, ParseError> {
        self.duration_or(value, path, "rtt", &super::ranges::LATENCY, DEFAULT_RTT)
    }

    /// Reads the policy keys of the table at `path` with the one set of defaults.
    pub fn policy<D: DurationValue>(
        &self,
        keys: PolicyKeys<'_, D>,
        path: &KeyPath,
        holder: &str,
    ) -> Result<Policy, ParseError> {
        let timeout = self.optional_duration(keys.timeout, path, "timeout", &TIMEOUT)?;
        let request_timeout =
            self.optional_duration(keys.request_timeout, path, "request_timeout", &TIMEOUT)?;
        let connect_timeout =
            self.optional_duration(keys.connect_timeout, path, "connect_timeout", &TIMEOUT)?;
        if let (Some(value), Some(connect), Some(timeout)) =
            (keys.connect_timeout, connect_timeout, timeout)
        {
            if connect > timeout {
                return Err(self.error(
                    value.span().start,
                    &path.key("connect_timeout"),
                    format!(
                        "connect_timeout {} is above timeout {}: an attempt's timeout includes \
                         connecting, so it would never fire; use at most {}",
                        stormguard::duration::format(connect),
                        stormguard::duration::format(timeout),
                        stormguard::duration::format(timeout),
                    ),
                ));
            }
        }
        // A request_timeout below timeout is valid: the whole request ends first, so the
        // attempt's timeout never fires (the issue's "timeout 200ms, request_timeout 150ms").
        let max_attempts = self.max_attempts(keys.max_attempts, path, 1)?;
        let backoff = self.backoff(keys.backoff, path, Backoff::default())?;
        let budget = match keys.retry_budget {
            Some(raw) => {
                let span = raw.span();
                match raw.into_inner() {
                    RawLimiter::None => Some(None),
                    RawLimiter::Budget(budget) => Some(Some(Spanned::new(span, budget))),
                }
            }
            None => None,
        };
        let limiter = match budget {
            // `retry_budget = "none"`: no limiter, unless a token bucket is given too.
            Some(None) => {
                if let Some(bucket) = &keys.token_bucket {
                    return Err(self.error(
                        bucket.span().start,
                        &path.key("token_bucket"),
                        format!(
                            "a {holder} with retry_budget = \"none\" takes no token_bucket: keep \
                             one of them"
                        ),
                    ));
                }
                None
            }
            Some(Some(budget)) => self.limiter(Some(budget), keys.token_bucket, path, holder)?,
            None => match self.limiter(None, keys.token_bucket, path, holder)? {
                Some(bucket) => Some(bucket),
                None => {
                    let budget = RetryBudget::recommended();
                    Some(LimiterSpec::Budget {
                        ratio: budget.ratio(),
                        min_per_sec: budget.min_per_sec(),
                    })
                }
            },
        };
        let retry_on = match keys.retry_on {
            Some(list) => {
                let retry_on = self.retry_on(list, &path.key("retry_on"))?;
                // Attempts that nothing retries: `check` would count them, while the proxy and
                // `sim` send one. (A hedge's copies go whatever fails: it may have none.)
                if retry_on.is_empty() && max_attempts > 1 && keys.hedge.is_none() {
                    return Err(self.error(
                        list.span().start,
                        &path.key("retry_on"),
                        format!(
                            "an empty list retries nothing, so max_attempts = {max_attempts} \
                             sends one attempt: write max_attempts = 1, or list the failures to \
                             retry (e.g. [\"default\"])"
                        ),
                    ));
                }
                retry_on
            }
            None => RetryOn::default(),
        };
        let idempotent = match keys.idempotent {
            Some(value) => match value.get_ref() {
                RawIdempotent::Bool(true) => Idempotent::Yes,
                RawIdempotent::Bool(false) => Idempotent::No,
                RawIdempotent::Text(text) if text == "by-method" => Idempotent::ByMethod,
                RawIdempotent::Text(text) => {
                    return Err(self.error(
                        value.span().start,
                        &path.key("idempotent"),
                        format!(
                            "{text:?} is not a choice: use true (every request may be sent \
                             twice), false (none may once sent) or \"by-method\" (GET, HEAD, \
                             OPTIONS, PUT, DELETE, TRACE may; the default)"
                        ),
                    ))
                }
            },
            None => Idempotent::ByMethod,
        };
        let hedge_at = keys.hedge.as_ref().map(|hedge| hedge.span().start);
        let hedge = keys
            .hedge
            .map(|hedge| self.hedge(hedge, path))
            .transpose()?;
        if let (Some(offset), Some(spec), Some(timeout)) = (hedge_at, &hedge, timeout) {
            if let stormguard::hedge::HedgeDelay::Fixed(delay) = spec.delay {
                if delay >= timeout {
                    return Err(self.error(
                        offset,
                        &path.key("hedge").key("delay"),
                        format!(
                            "{} is not below timeout {}: the attempt times out before a copy \
                             is sent, so the hedge would never fire; use a delay below the \
                             timeout (the callee's p95, say), or remove hedge",
                            stormguard::duration::format(delay),
                            stormguard::duration::format(timeout),
                        ),
                    ));
                }
            }
        }
        Ok(Policy {
            timeout,
            request_timeout,
            connect_timeout,
            max_attempts,
            backoff,
            limiter,
            retry_on,
            idempotent,
            hedge,
            propagate_deadline: keys.propagate_deadline.unwrap_or(true),
        })
    }

    /// `retry_on = [...]`: each item a condition, at its own position when it is not one.
    fn retry_on(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        path: &KeyPath,
    ) -> Result<RetryOn, ParseError> {
        let mut set = RetryOn::none();
        for (i, item) in list.get_ref().iter().enumerate() {
            let text = item.get_ref().as_str();
            set = if text.trim() == "default" {
                set.union(RetryOn::default())
            } else {
                let condition: Condition = text.parse().map_err(|error| {
                    self.error(item.span().start, &path.index(i), format!("{error}"))
                })?;
                set.with(condition)
            };
        }
        Ok(set)
    }
}

/// `idempotent`: a boolean or the text `"by-method"`.
pub enum RawIdempotent {
    /// `true` or `false`.
    Bool(bool),
    /// A text, `"by-method"` when valid.
    Text(String),
}

impl<'de> Deserialize<'de> for RawIdempotent {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawIdempotent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"by-method\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawIdempotent::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawIdempotent::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `retry_budget`: a table, or `"none"` for no limiter.
pub enum RawLimiter {
    /// `retry_budget = "none"`.
    None,
    /// `retry_budget = { ... }`.
    Budget(RawBudget),
}

impl<'de> Deserialize<'de> for RawLimiter {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLimiter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table { ratio, min_per_sec } or \"none\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "none" {
                    Ok(RawLimiter::None)
                } else {
                    Err(E::custom(format!(
                        "{v:?} is not a retry budget: write a table such as {{ ratio = 0.2, \
                         min_per_sec = 10 }}, or \"none\" for no limiter"
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawBudget::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawLimiter::Budget)
            }
        }
        deserializer.deserialize_any(V)
    }
}
