//! The settings file as serde sees it: every key optional where the file may leave it out, every
//! value wrapped in [`Spanned`] so that the checks of meaning, which run after serde, can still
//! point at the line of the offending value.
//!
//! The same two layers as the graph file (`stormguard_graph::parse`), for the same reason: serde
//! checks shape (known keys, types), `convert` checks meaning and applies the defaults, and a
//! meaning error without a position is useless. Struct names start with `Raw` because the
//! shared serde rewording turns "struct RawX" into "a table".

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use stormguard_graph::parse::keys::{RawBucket, RawHedge};
use stormguard_graph::parse::policy_keys::{RawIdempotent, RawLimiter};
use stormguard_graph::parse::values::{bare_number_message, map_message, DurationValue};
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Spanned<RawListen>>,
    pub admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    pub faults: Option<Spanned<RawFaults>>,
    pub dns: Option<Spanned<RawDns>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub servers: Option<Spanned<Vec<Spanned<String>>>>,
    pub refresh: Option<Spanned<Scalar>>,
}

/// `[listen]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub address: Option<Spanned<String>>,
    pub header_read_timeout: Option<Spanned<Scalar>>,
    pub max_request_body: Option<Spanned<Scalar>>,
    pub max_headers: Option<Spanned<u32>>,
    pub max_header_bytes: Option<Spanned<Scalar>>,
    pub shutdown_grace: Option<Spanned<Scalar>>,
    pub max_connections: Option<Spanned<u32>>,
    pub http2_max_concurrent_streams: Option<Spanned<u32>>,
    pub http2_keep_alive_interval: Option<Spanned<Scalar>>,
    pub http2_keep_alive_timeout: Option<Spanned<Scalar>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
    pub first_byte_timeout: Option<Spanned<Scalar>>,
    pub max_unfinished_header_bytes: Option<Spanned<Scalar>>,
    // What a request's bodies may take (issue 12): one block, apart from the connection keys.
    pub stream_idle_timeout: Option<Spanned<Scalar>>,
    pub request_body_timeout: Option<Spanned<Scalar>>,
    pub access_log: Option<bool>,
    pub tls: Option<Spanned<RawCertAndKey>>,
}

/// `listen.tls = { cert_file, key_file }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertAndKey {
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

/// `[admin]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub address: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
}

/// `[upstreams.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub instances: Option<Spanned<Vec<Spanned<String>>>>,
    pub discovery: Option<Spanned<RawDiscovery>>,
    pub max_in_flight: Option<Spanned<u32>>,
    pub protocol: Option<Spanned<String>>,
    pub http1_client: Option<Spanned<String>>,
    // TLS to the instances (issue 15): src/config/tls.rs reads them.
    pub tls: Option<Spanned<bool>>,
    pub server_name: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

/// `[[routes]]`: a graph call's policy keys (the tables read by `stormguard_graph::parse::keys`)
/// plus the proxy's own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub dns: Option<Spanned<String>>,
    pub refresh: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub matcher: Option<Spanned<RawMatch>>,
    pub upstream: Option<Spanned<String>>,
    pub timeout: Option<Spanned<Scalar>>,
    pub request_timeout: Option<Spanned<Scalar>>,
    pub connect_timeout: Option<Spanned<Scalar>>,
    pub rtt: Option<Spanned<Scalar>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub retry_budget: Option<Spanned<RawLimiter>>,
    pub token_bucket: Option<Spanned<RawBucket>>,
    pub retry_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub hedge: Option<Spanned<RawHedge>>,
    pub adaptive_timeout: Option<Spanned<RawAdaptive>>,
    pub propagate_deadline: Option<bool>,
    pub deadline_reserve: Option<Spanned<Scalar>>,
    pub retry_body_limit: Option<Spanned<Scalar>>,
    pub latency_buckets: Option<Spanned<Vec<Spanned<Scalar>>>>,
    pub idempotent: Option<Spanned<RawIdempotent>>,
    pub fault: Option<Spanned<RawFault>>,
}

/// `match = { path_prefix, host }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub path_prefix: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
}

/// `adaptive_timeout = { false_timeout_rate, min, max }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptive {
    pub false_timeout_rate: Option<Spanned<f64>>,
    pub min: Option<Spanned<Scalar>>,
    pub max: Option<Spanned<Scalar>>,
}

/// `fault = { delay, delay_percent, abort_status, abort_percent }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub delay: Option<Spanned<Scalar>>,
    pub delay_percent: Option<Spanned<f64>>,
    pub abort_status: Option<Spanned<i64>>,
    pub abort_percent: Option<Spanned<f64>>,
}

/// `[faults]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    pub enabled: Option<bool>,
}

/// A duration or a size as the file wrote it: text, or a bare number that `convert` accepts
/// (a size in bytes) or refuses with a message about units (a duration).
///
/// One type for both rather than a string: `timeout = 5` deserves "the bare number 5 has no
/// unit: write \"5s\" or \"5ms\"", not serde's "expected a string", while `max_request_body =
/// 1024` is a plain byte count.
pub(super) enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl DurationValue for Scalar {
    fn duration(&self) -> Result<Duration, String> {
        match self {
            Scalar::Text(text) => stormguard::duration::parse(text).map_err(|e| e.to_string()),
            Scalar::Integer(n) => Err(bare_number_message(n)),
            Scalar::Float(n) => Err(bare_number_message(n)),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string with a unit, e.g. \"250ms\" for a duration or \"64KiB\" for a size")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // TOML integers are i64; a larger one cannot come from a valid file.
        Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Integer))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Err(map_message(map, "a duration or a size"))
    }
}
