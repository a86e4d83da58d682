//! A graph's calls, each with the histogram series measured for it and the timeout they
//! suggest.
//!
//! ## How a call finds its series
//! By its `metrics` key when it has one: `metrics = { job = "api", route = "/users" }` takes
//! every series whose labels include all of those pairs (`__name__` names the metric), for the
//! user knows their labels best. Otherwise by the name of the service called: the series whose
//! `upstream` label is that name, or failing any, whose `service`, then `route`, then `job`
//! label is (the proxy labels its histogram by `route`; a server's own histogram is usually
//! scraped under its `job`). A histogram of whole requests, retries included
//! ([`WHOLE_REQUEST_METRICS`]: the proxy's `stormguard_proxy_request_duration_seconds`, beside
//! its per-attempt one) is not matched by name: a timeout bounds one attempt, and set from
//! what callers waited it would let every retry's wait through. A `metrics` key with
//! `__name__` still takes it. Several series of one metric with the same buckets (instances,
//! routes of one upstream) are added together, since the timeout covers them all; series of
//! different metrics or buckets cannot be, and the call is reported instead of guessed at.

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard_graph::Graph;

use crate::histogram::Share;
use crate::series::{Series, Unit};
use crate::suggest::{suggest, Latency, Skip, Suggestion};

/// The labels tried, in order, when a call has no `metrics` key.
pub const NAME_LABELS: [&str; 4] = ["upstream", "service", "route", "job"];

/// Histograms of what callers waited, retries and backoff included: a call finds them only by
/// a `metrics` key that names them, never by the called service's name.
pub const WHOLE_REQUEST_METRICS: [&str; 1] = ["stormguard_proxy_request_duration_seconds"];

/// The `metrics` keys of a graph's calls: (calling service, index of the call) to labels.
pub type MetricsKeys = BTreeMap<(String, usize), BTreeMap<String, String>>;

/// How a call was tied to its series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// Its `metrics` key.
    MetricsKey(BTreeMap<String, String>),
    /// The called service's name, as the value of this label.
    Label(&'static str),
}

/// Why a call gets no suggestion.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Unmatched {
    /// No series with a time unit matches it.
    #[error("no latency histogram matches it: give the call a `metrics = {{ job = \"...\", route = \"...\" }}` key naming its series' labels")]
    NoSeries,
    /// Its series are of several metrics.
    #[error("its series are of several metrics ({0}): add `__name__ = \"...\"` to the call's `metrics` key")]
    SeveralMetrics(String),
    /// Its series have different buckets and cannot be added together.
    #[error("its series have different buckets and cannot be added together: narrow the call's `metrics` key to one of them")]
    BucketsDiffer,
    /// The series' histogram gives no suggestion.
    #[error("{0}")]
    Skipped(Skip),
}

/// One call and what its measured latency says about its timeout.
#[derive(Clone, Debug, PartialEq)]
pub struct CallPlan {
    /// The calling service.
    pub from: String,
    /// The call's position among its service's calls (0-based, file order).
    pub index: usize,
    /// The service called.
    pub to: String,
    /// Its timeout now (`None`: it has none).
    pub current: Option<Duration>,
    /// How its series were found (`None` when none was).
    pub matched_by: Option<MatchedBy>,
    /// The series, as indices into the slice given to [`plan`].
    pub series: Vec<usize>,
    /// The suggestion, or why there is none.
    pub suggestion: Result<Suggestion, Unmatched>,
    /// The share of requests the current timeout lets through.
    pub share_within_current: Option<Share>,
}

/// Every call of `graph`, in service then file order, matched to `series` (units it states
/// none for taken as `fallback`) and given the timeout at `false_timeout_rate`.
///
/// The calls of a service's named endpoints (`[services.NAME.endpoints.EP]`) are not planned
/// yet: a plan and its rewrite place a call by its service and index, which an endpoint's call
/// does not have; `check` judges their timeouts, and `check --fix` writes them.
///
/// ```
/// use stormguard_recommend::calls::{plan, MetricsKeys};
/// use stormguard_recommend::exposition;
///
/// let graph = stormguard_graph::parse("g.toml", r#"
/// [entry]
/// service = "web"
/// [[services.web.calls]]
/// to = "api"
/// timeout = "5s"
/// [services.api]
/// "#).unwrap();
/// let series = exposition::parse(
///     "lat_seconds_bucket{route=\"api\",le=\"0.25\"} 9990\n\
///      lat_seconds_bucket{route=\"api\",le=\"0.3\"} 10000\n\
///      lat_seconds_bucket{route=\"api\",le=\"+Inf\"} 10000\n").unwrap();
/// let calls = plan(&graph, &MetricsKeys::new(), &series, None, 0.001);
/// assert_eq!(calls[0].suggestion.as_ref().unwrap().timeout.as_millis(), 250);
/// assert_eq!(calls[0].share_within_current.unwrap().value(), 1.0);
/// ```
pub fn plan(
    graph: &Graph,
    keys: &MetricsKeys,
    series: &[Series],
    fallback: Option<Unit>,
    false_timeout_rate: f64,
) -> Vec<CallPlan> {
    let timed: Vec<usize> = (0..series.len())
        .filter(|&i| series[i].unit.or(fallback).is_some())
        .collect();
    let mut plans = Vec::new();
    for (from, service) in &graph.services {
        for (index, call) in service.calls.iter().enumerate() {
            let (matched_by, found) = match keys.get(&(from.clone(), index)) {
                Some(key) => (
                    Some(MatchedBy::MetricsKey(key.clone())),
                    select(&timed, series, |s| key_matches(key, s)),
                ),
                None => by_name(&timed, series, &call.to),
            };
            let latency = combine(series, &found, fallback);
            let share_within_current = match (&latency, call.timeout) {
                (Ok(latency), Some(timeout)) => latency.share_within(timeout),
                _ => None,
            };
            let suggestion = latency.and_then(|latency| {
                suggest(&latency, false_timeout_rate).map_err(Unmatched::Skipped)
            });
            plans.push(CallPlan {
                from: from.clone(),
                index,
                to: call.to.clone(),
                current: call.timeout,
                matched_by,
                series: found,
                suggestion,
                share_within_current,
            });
        }
    }
    plans
}

fn select(timed: &[usize], series: &[Series], keep: impl Fn(&Series) -> bool) -> Vec<usize> {
    timed
        .iter()
        .copied()
        .filter(|&i| keep(&series[i]))
        .collect()
}

/// Whether every pair of a `metrics` key is among the series' labels (`__name__`: its metric).
fn key_matches(key: &BTreeMap<String, String>, series: &Series) -> bool {
    key.iter().all(|(name, value)| {
        if name == "__name__" {
            series.metric == *value
        } else {
            series.labels.get(name) == Some(value)
        }
    })
}

/// The series whose first label of [`NAME_LABELS`] that any series has equal to `to` is.
fn by_name(timed: &[usize], series: &[Series], to: &str) -> (Option<MatchedBy>, Vec<usize>) {
    for label in NAME_LABELS {
        let found = select(timed, series, |s| {
            s.labels.get(label).map(String::as_str) == Some(to)
                && !WHOLE_REQUEST_METRICS.contains(&s.metric.as_str())
        });
        if !found.is_empty() {
            return (Some(MatchedBy::Label(label)), found);
        }
    }
    (None, Vec::new())
}

/// The found series as one latency: added together when they are one metric with the same
/// buckets.
fn combine(
    series: &[Series],
    found: &[usize],
    fallback: Option<Unit>,
) -> Result<Latency, Unmatched> {
    let Some((&first, rest)) = found.split_first() else {
        return Err(Unmatched::NoSeries);
    };
    let mut metrics: Vec<&str> = found.iter().map(|&i| series[i].metric.as_str()).collect();
    metrics.dedup();
    if metrics.len() > 1 {
        return Err(Unmatched::SeveralMetrics(metrics.join(", ")));
    }
    let mut latency = Latency::of(&series[first], fallback).ok_or(Unmatched::NoSeries)?;
    for &i in rest {
        latency.histogram = latency
            .histogram
            .merged(&series[i].histogram)
            .ok_or(Unmatched::BucketsDiffer)?;
    }
    Ok(latency)
}

#[cfg(test)]
mod tests;
