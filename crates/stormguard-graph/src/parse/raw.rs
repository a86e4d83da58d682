//! The graph file as serde sees it: every key optional where the file may leave it out, every
//! value wrapped in [`Spanned`] so that validation, which happens after serde, can still point
//! at the line of the offending value.
//!
//! Why two layers instead of deserializing straight into the model: serde can check shape
//! (known keys, types) but not meaning (a service named in `to` exists, `p99 >= p50`), and a
//! meaning error without a position is useless in a 500-line file. Keeping the spans here and
//! the defaults in `convert` also keeps one place that knows each default.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::keys::{RawBucket, RawHedge};
use super::policy_keys::{RawIdempotent, RawLimiter};
use super::values::{bare_number_message, DurationValue};

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGraph {
    pub entry: Option<Spanned<RawEntry>>,
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<RawService>>,
    pub check: Option<Spanned<RawCheck>>,
    #[serde(default)]
    pub scenarios: BTreeMap<String, Spanned<RawScenario>>,
}

/// `[entry]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub service: Option<Spanned<String>>,
    pub timeout: Option<Spanned<DurationText>>,
    pub rate: Option<Spanned<f64>>,
}

/// `[services.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub instances: Option<Spanned<u32>>,
    pub concurrency: Option<Spanned<u32>>,
    pub queue: Option<Spanned<u32>>,
    pub latency: Option<Spanned<RawLatency>>,
    pub contention: Option<Spanned<DurationText>>,
    pub queue_discipline: Option<Spanned<String>>,
    pub codel: Option<Spanned<RawCodel>>,
    pub queue_timeout: Option<Spanned<DurationText>>,
    #[serde(default)]
    pub calls: Vec<Spanned<RawCall>>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, Spanned<RawEndpoint>>,
}

/// `[services.NAME.endpoints.EP]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub weight: Option<Spanned<f64>>,
    #[serde(default)]
    pub calls: Vec<Spanned<RawCall>>,
}

/// `latency = { p50, p99 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    pub p50: Option<Spanned<DurationText>>,
    pub p99: Option<Spanned<DurationText>>,
}

/// `codel = { target, interval }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCodel {
    pub target: Option<Spanned<DurationText>>,
    pub interval: Option<Spanned<DurationText>>,
}

/// `[[services.NAME.calls]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCall {
    pub to: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub timeout: Option<Spanned<DurationText>>,
    pub request_timeout: Option<Spanned<DurationText>>,
    pub connect_timeout: Option<Spanned<DurationText>>,
    pub rtt: Option<Spanned<DurationText>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub retry_budget: Option<Spanned<RawLimiter>>,
    pub token_bucket: Option<Spanned<RawBucket>>,
    pub retry_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub idempotent: Option<Spanned<RawIdempotent>>,
    pub method: Option<Spanned<String>>,
    pub count: Option<Spanned<u32>>,
    pub parallel: Option<bool>,
    pub required: Option<bool>,
    pub hedge: Option<Spanned<RawHedge>>,
    pub propagate_deadline: Option<bool>,
    /// `metrics = { job = "...", route = "..." }`: the labels of the latency histogram measured
    /// for this call, which `stormguard recommend` reads from the file it rewrites. Checked
    /// here (so a typo is an error at its line) but not modelled, since no rule reads it.
    pub metrics: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// `[check]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub max_amplification: Option<Spanned<f64>>,
    pub connect_timeout_rtt_multiple: Option<Spanned<f64>>,
    pub false_timeout_rate: Option<Spanned<f64>>,
}

/// `[scenarios.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub duration: Option<Spanned<DurationText>>,
    pub rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub load: Vec<Spanned<RawLoad>>,
}

/// `[[scenarios.NAME.faults]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub service: Option<Spanned<String>>,
    pub from: Option<Spanned<DurationText>>,
    pub to: Option<Spanned<DurationText>>,
    pub slowdown: Option<Spanned<f64>>,
    pub error_rate: Option<Spanned<f64>>,
    pub error_status: Option<Spanned<i64>>,
    pub down: Option<bool>,
    pub blackhole: Option<bool>,
    pub instances: Option<Spanned<u32>>,
}

/// `[[scenarios.NAME.load]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub from: Option<Spanned<DurationText>>,
    pub to: Option<Spanned<DurationText>>,
    pub rate: Option<Spanned<f64>>,
}

/// A duration as the file wrote it, parsed later by `stormguard::duration::parse`.
///
/// Its own type rather than `String` so that `timeout = 5` is refused with a message about
/// units (the classic ten-seconds-or-ten-milliseconds mistake) instead of serde's bare
/// "expected a string".
pub(super) struct DurationText(pub String);

impl DurationValue for DurationText {
    fn duration(&self) -> Result<std::time::Duration, String> {
        stormguard::duration::parse(&self.0).map_err(|error| error.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationTextVisitor)
    }
}

struct DurationTextVisitor;

impl DurationTextVisitor {
    fn bare_number<E: de::Error>(number: impl fmt::Display) -> E {
        E::custom(bare_number_message(number))
    }
}

impl<'de> Visitor<'de> for DurationTextVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string with a unit, e.g. \"250ms\", \"2s\" or \"1m\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(DurationText(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(Self::bare_number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(Self::bare_number(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(Self::bare_number(v))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Err(super::values::map_message(map, "a duration"))
    }
}
