//! Histogram series: one histogram per metric and label set (the labels without `le`), with
//! the unit its values are in.
//!
//! Why the labels define the series: a histogram is exposed as one `_bucket` sample per bound,
//! and the samples of one route, upstream or job differ from another's only in their labels.
//! Dropping `le` and grouping by the rest gives back the histograms, whether the samples come
//! from a `/metrics` page or from a Prometheus query.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::histogram::{Bucket, Histogram};

/// The unit of a latency histogram's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Bounds in seconds (the Prometheus convention: `_seconds`).
    Seconds,
    /// Bounds in milliseconds (`_milliseconds`, `_ms`).
    Milliseconds,
}

impl Unit {
    /// The unit a metric's name says by its suffix (`http_request_duration_seconds`), as the
    /// Prometheus naming conventions ask; `None` when the name says none.
    ///
    /// ```
    /// use stormguard_recommend::series::Unit;
    ///
    /// assert_eq!(Unit::from_metric_name("rpc_latency_seconds"), Some(Unit::Seconds));
    /// assert_eq!(Unit::from_metric_name("db_query_ms"), Some(Unit::Milliseconds));
    /// assert_eq!(Unit::from_metric_name("response_size_bytes"), None);
    /// ```
    pub fn from_metric_name(name: &str) -> Option<Unit> {
        if name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if name.ends_with("_milliseconds") || name.ends_with("_ms") {
            Some(Unit::Milliseconds)
        } else {
            None
        }
    }

    /// The unit a person or an OpenMetrics `# UNIT` line states: `seconds`, `s`,
    /// `milliseconds` or `ms`.
    pub fn from_stated(unit: &str) -> Option<Unit> {
        match unit {
            "seconds" | "second" | "s" => Some(Unit::Seconds),
            "milliseconds" | "millisecond" | "ms" => Some(Unit::Milliseconds),
            _ => None,
        }
    }

    /// A bound or quantile in this unit as a duration; `None` when it is negative or not
    /// finite (no latency is).
    pub fn duration(self, value: f64) -> Option<Duration> {
        let seconds = match self {
            Unit::Seconds => value,
            Unit::Milliseconds => value / 1000.0,
        };
        Duration::try_from_secs_f64(seconds).ok()
    }

    /// A duration as a value in this unit, to compare with the bounds.
    pub fn value(self, duration: Duration) -> f64 {
        match self {
            Unit::Seconds => duration.as_secs_f64(),
            Unit::Milliseconds => duration.as_secs_f64() * 1000.0,
        }
    }
}

/// One histogram: its metric, its labels (without `le`), its unit if known, its buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The metric's base name, without `_bucket` (`http_request_duration_seconds`).
    pub metric: String,
    /// Every label but `le`: what tells this route, upstream or job from another.
    pub labels: BTreeMap<String, String>,
    /// The unit of the bounds, from the name, a stated unit, or `None` (not known to be a
    /// latency: `recommend` skips it unless told the unit).
    pub unit: Option<Unit>,
    /// The buckets.
    pub histogram: Histogram,
}

impl fmt::Display for Series {
    /// As PromQL writes a series: `metric{job="api",route="/users"}`, label values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (name, value)) in self.labels.iter().enumerate() {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            write!(f, "{}{name}=\"{value}\"", if i > 0 { "," } else { "" })?;
        }
        f.write_str("}")
    }
}

/// Collects `_bucket` samples and hands back one [`Series`] per metric and label set.
///
/// ```
/// use std::collections::BTreeMap;
/// use stormguard_recommend::series::{Grouper, Unit};
///
/// let mut grouper = Grouper::default();
/// let route = |r: &str| BTreeMap::from([("route".to_string(), r.to_string())]);
/// grouper.add("latency_seconds", route("a"), 0.1, 3.0);
/// grouper.add("latency_seconds", route("a"), f64::INFINITY, 4.0);
/// grouper.add("latency_seconds", route("b"), f64::INFINITY, 1.0);
/// let series = grouper.finish(|metric| Unit::from_metric_name(metric));
/// assert_eq!(series.len(), 2);
/// assert_eq!(series[0].to_string(), "latency_seconds{route=\"a\"}");
/// assert_eq!(series[0].histogram.total(), 4.0);
/// ```
#[derive(Debug, Default)]
pub struct Grouper {
    buckets: BTreeMap<(String, BTreeMap<String, String>), Vec<Bucket>>,
}

impl Grouper {
    /// Adds the bucket `le` = `upper` with cumulative `count` to the series of `metric` (base
    /// name) and `labels` (without `le`).
    pub fn add(&mut self, metric: &str, labels: BTreeMap<String, String>, upper: f64, count: f64) {
        self.buckets
            .entry((metric.to_string(), labels))
            .or_default()
            .push(Bucket { upper, count });
    }

    /// The series, sorted by metric then labels (a stable order for every output), each with
    /// the unit `unit_of` gives its metric.
    pub fn finish(self, unit_of: impl Fn(&str) -> Option<Unit>) -> Vec<Series> {
        self.buckets
            .into_iter()
            .map(|((metric, labels), buckets)| Series {
                unit: unit_of(&metric),
                metric,
                labels,
                histogram: Histogram::new(buckets),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_both_ways() {
        assert_eq!(
            Unit::Milliseconds.duration(250.0),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            Unit::Seconds.duration(0.25),
            Some(Duration::from_millis(250))
        );
        assert_eq!(Unit::Seconds.duration(-1.0), None);
        assert_eq!(Unit::Seconds.duration(f64::INFINITY), None);
        assert_eq!(Unit::Milliseconds.value(Duration::from_millis(300)), 300.0);
        assert_eq!(Unit::from_stated("ms"), Some(Unit::Milliseconds));
        assert_eq!(Unit::from_stated("bytes"), None);
    }

    #[test]
    fn display_escapes_label_values() {
        let series = Series {
            metric: "m_seconds".to_string(),
            labels: BTreeMap::from([("path".to_string(), "a\"b\\c\nd".to_string())]),
            unit: Some(Unit::Seconds),
            histogram: Histogram::new([]),
        };
        assert_eq!(series.to_string(), r#"m_seconds{path="a\"b\\c\nd"}"#);
    }
}
