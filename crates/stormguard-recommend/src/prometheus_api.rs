//! What to ask a Prometheus server, and what its answers mean (the HTTP is the caller's).
//!
//! ## Why buckets, not `histogram_quantile`
//! One query per histogram metric, `sum without (instance) (increase(NAME_bucket[WINDOW]))`,
//! returns the buckets of every series over the window; the quantiles are then taken here with
//! the same arithmetic as `histogram_quantile` ([`crate::histogram`]). Asking the server for
//! `histogram_quantile` instead would need a query per quantile and could not give the rest of
//! what `recommend` reports: the share within a call's current timeout (Prometheus 2 has no
//! `histogram_fraction` for classic histograms), the bucket around the estimate for the
//! coarse-bucket warning, and the request count for the few-requests one. `increase` rather
//! than `rate` because the count in the window is what says whether a p99.9 rests on enough
//! requests; the quantiles are the same either way, as both scale every bucket alike.
//! `without (instance)` adds the instances of a job together (a timeout is set per call, not
//! per instance) and keeps every other label, whatever a user's labels are called.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::series::{Grouper, Series, Unit};

/// The path that lists every metric name the server knows.
pub const NAMES_PATH: &str = "/api/v1/label/__name__/values";

/// What a Prometheus answer that cannot be used says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Not the JSON of the HTTP API.
    #[error("not an answer of the Prometheus HTTP API ({0}): is the URL the server's, e.g. http://127.0.0.1:9090?")]
    NotJson(String),
    /// The server refused the query.
    #[error("Prometheus answered {error_type}: {error}")]
    Refused {
        /// Its `errorType`.
        error_type: String,
        /// Its `error`.
        error: String,
    },
    /// A sample whose `le` or value is no number.
    #[error("a sample of {metric} has le={le:?} and value {value:?}, not numbers")]
    BadSample {
        /// The metric.
        metric: String,
        /// Its `le`.
        le: String,
        /// Its value.
        value: String,
    },
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Vector {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

fn open<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, ApiError> {
    let envelope: Envelope<T> =
        serde_json::from_str(json).map_err(|e| ApiError::NotJson(e.to_string()))?;
    match envelope.data {
        Some(data) if envelope.status == "success" => Ok(data),
        _ => Err(ApiError::Refused {
            error_type: envelope.error_type,
            error: envelope.error,
        }),
    }
}

/// The histograms among the answer to [`NAMES_PATH`]: the base names of the `_bucket` metrics.
///
/// ```
/// use stormguard_recommend::prometheus_api::histogram_names;
///
/// let json = r#"{"status":"success","data":["up","rpc_seconds_bucket","rpc_seconds_count"]}"#;
/// assert_eq!(histogram_names(json).unwrap(), vec!["rpc_seconds".to_string()]);
/// ```
pub fn histogram_names(json: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = open(json)?;
    Ok(names
        .iter()
        .filter_map(|name| name.strip_suffix("_bucket"))
        .map(str::to_string)
        .collect())
}

/// The query for the buckets of `metric` over `window`.
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::prometheus_api::buckets_query;
///
/// assert_eq!(
///     buckets_query("rpc_seconds", Duration::from_secs(3600)),
///     "sum without (instance) (increase(rpc_seconds_bucket[3600s]))"
/// );
/// ```
pub fn buckets_query(metric: &str, window: Duration) -> String {
    let window = range(window);
    format!("sum without (instance) (increase({metric}_bucket[{window}]))")
}

/// `window` as a PromQL range (`[3600s]`'s inside): whole seconds, or else whole milliseconds,
/// the two units every Prometheus version reads.
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::prometheus_api::range;
///
/// assert_eq!(range(Duration::from_secs(600)), "600s");
/// assert_eq!(range(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn range(window: Duration) -> String {
    if window.subsec_millis() == 0 {
        format!("{}s", window.as_secs())
    } else {
        format!("{}ms", window.as_millis())
    }
}

/// The path and query string of an instant query of `promql`.
pub fn query_path(promql: &str) -> String {
    format!("/api/v1/query?query={}", percent_encode(promql))
}

/// The series of `metric` in the answer to its [`buckets_query`], with the unit its name says
/// or else `fallback`.
///
/// ```
/// use stormguard_recommend::prometheus_api::series;
///
/// let json = r#"{"status":"success","data":{"resultType":"vector","result":[
///   {"metric":{"job":"api","le":"0.1"},"value":[1712345678.9,"90"]},
///   {"metric":{"job":"api","le":"+Inf"},"value":[1712345678.9,"100"]}]}}"#;
/// let s = series("rpc_seconds", json, None).unwrap();
/// assert_eq!(s[0].to_string(), "rpc_seconds{job=\"api\"}");
/// assert_eq!(s[0].histogram.total(), 100.0);
/// ```
pub fn series(metric: &str, json: &str, fallback: Option<Unit>) -> Result<Vec<Series>, ApiError> {
    let vector: Vector = open(json)?;
    if vector.result_type != "vector" {
        return Err(ApiError::NotJson(format!(
            "a {} where an instant vector was asked for",
            vector.result_type
        )));
    }
    let mut grouper = Grouper::default();
    for sample in vector.result {
        let mut labels = sample.metric;
        let le = labels.remove("le").unwrap_or_default();
        labels.remove("__name__");
        let bad = || ApiError::BadSample {
            metric: metric.to_string(),
            le: le.clone(),
            value: sample.value.1.clone(),
        };
        let upper = parse_go_float(&le).ok_or_else(bad)?;
        let count = parse_go_float(&sample.value.1).ok_or_else(bad)?;
        // A series that did not exist over the whole window may give NaN: nothing counted.
        let count = if count.is_nan() { 0.0 } else { count };
        grouper.add(metric, labels, upper, count);
    }
    Ok(grouper.finish(|m| Unit::from_metric_name(m).or(fallback)))
}

/// One sample of an instant vector: its labels (`__name__` dropped) and its value.
pub type Sample = (BTreeMap<String, String>, f64);

/// The samples of an instant query's answer, for a query whose values are plain numbers (a
/// `sum by (...) (rate(...))`), such as the request rates `import --prometheus` reads. A NaN
/// or an infinity (a series with too few points in the window) is dropped: it measured
/// nothing.
///
/// ```
/// use stormguard_recommend::prometheus_api::samples;
///
/// let json = r#"{"status":"success","data":{"resultType":"vector","result":[
///   {"metric":{"destination_workload":"db"},"value":[1712345678.9,"12.5"]}]}}"#;
/// let s = samples(json).unwrap();
/// assert_eq!(s[0].0["destination_workload"], "db");
/// assert_eq!(s[0].1, 12.5);
/// ```
pub fn samples(json: &str) -> Result<Vec<Sample>, ApiError> {
    let vector: Vector = open(json)?;
    if vector.result_type != "vector" {
        return Err(ApiError::NotJson(format!(
            "a {} where an instant vector was asked for",
            vector.result_type
        )));
    }
    let mut out = Vec::with_capacity(vector.result.len());
    for sample in vector.result {
        let mut labels = sample.metric;
        let name = labels.remove("__name__").unwrap_or_default();
        let value = parse_go_float(&sample.value.1).ok_or_else(|| ApiError::BadSample {
            metric: name,
            le: String::new(),
            value: sample.value.1.clone(),
        })?;
        if value.is_finite() {
            out.push((labels, value));
        }
    }
    Ok(out)
}

fn parse_go_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// `text` as a URL query value: everything but the unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_for_a_url() {
        assert_eq!(
            query_path("sum without (instance) (increase(a_bucket[90s]))"),
            "/api/v1/query?query=sum%20without%20%28instance%29%20%28increase%28a_bucket%5B90s%5D%29%29"
        );
        assert_eq!(
            buckets_query("a", Duration::from_millis(1500)),
            "sum without (instance) (increase(a_bucket[1500ms]))"
        );
    }

    #[test]
    fn an_answer_groups_by_labels_without_le() {
        let json = r#"{"status":"success","data":{"resultType":"vector","result":[
          {"metric":{"job":"a","le":"0.1"},"value":[1.5,"9"]},
          {"metric":{"job":"b","le":"0.1"},"value":[1.5,"NaN"]},
          {"metric":{"job":"a","le":"+Inf"},"value":[1.5,"10.5"]},
          {"metric":{"job":"b","le":"+Inf"},"value":[1.5,"0"]}]}}"#;
        let s = series("lat_ms", json, None).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].unit, Some(Unit::Milliseconds));
        assert_eq!(s[0].histogram.total(), 10.5);
        assert_eq!(s[1].histogram.total(), 0.0);
    }

    #[test]
    fn refusals_and_nonsense_say_what_they_are() {
        let refused = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            series("a", refused, None).unwrap_err().to_string(),
            "Prometheus answered bad_data: parse error"
        );
        assert!(histogram_names("<html>")
            .unwrap_err()
            .to_string()
            .starts_with("not an answer of the Prometheus HTTP API"));
        let bad = r#"{"status":"success","data":{"resultType":"vector","result":[
          {"metric":{"le":"x"},"value":[1.5,"1"]}]}}"#;
        assert_eq!(
            series("a", bad, None).unwrap_err(),
            ApiError::BadSample {
                metric: "a".to_string(),
                le: "x".to_string(),
                value: "1".to_string()
            }
        );
    }
}
