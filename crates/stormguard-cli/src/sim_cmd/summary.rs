//! The figures of a run as `--format json` and `summary.json` print them: the issue's shape, in
//! a fixed key order, with floats rounded so the same run gives the same bytes and a person can
//! read them.

use std::collections::BTreeMap;

use serde::Serialize;
use stormguard_graph::Graph;
use stormguard_sim::engine::{Outcome, Step};

use super::seeds::{Interval, SeedRange, Unit};

/// One run's summary. Field order is the JSON key order.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) file: String,
    pub(crate) scenario: Option<String>,
    pub(crate) seed: u64,
    /// With `--seeds N` for N >= 2: the seeds that ran; the other figures and the timeline are
    /// the first seed's, `intervals` has every figure over all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seeds: Option<SeedRange>,
    pub(crate) duration_s: f64,
    pub(crate) user: UserSummary,
    pub(crate) services: BTreeMap<String, ServiceSummary>,
    pub(crate) calls: BTreeMap<String, CallSummary>,
    pub(crate) timeline: Vec<TimelinePoint>,
    pub(crate) recovered_at_s: Option<f64>,
    /// With `--seeds N` for N >= 2: each figure of the comparison (`compare::figures`) as a mean
    /// with its 95% confidence interval over the seeds; empty (and left out) with one seed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) intervals: BTreeMap<String, Interval>,
}

/// What the users saw.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct UserSummary {
    pub(crate) requests: u64,
    pub(crate) succeeded: u64,
    /// Share of user requests answered in time; `None` when no user arrived.
    pub(crate) goodput: Option<f64>,
    pub(crate) latency_ms: LatencySummary,
}

/// Nearest-rank percentiles of successful user requests, in ms; all `None` when none succeeded.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct LatencySummary {
    pub(crate) p50: Option<f64>,
    pub(crate) p90: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) p999: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// One service.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct ServiceSummary {
    pub(crate) attempts: u64,
    /// Attempts per user request; `None` without users.
    pub(crate) amplification: Option<f64>,
    /// Attempts per user request when nothing fails (`check`'s fan-out: one attempt on every
    /// call, its `count` and endpoint shares), what `amplification` is judged against: above
    /// it, retries and hedges; below it, requests that never got here. Not in the JSON, whose
    /// keys are fixed (`tests/sim_cli.rs`).
    #[serde(skip)]
    pub(crate) normal_per_user: Option<f64>,
    pub(crate) succeeded: u64,
    pub(crate) rejected: u64,
    pub(crate) timed_out: u64,
    pub(crate) wasted_work_s: f64,
    pub(crate) max_queue: u64,
    /// Queued requests answered 503 for waiting past the queue's limit (`queue_timeout`,
    /// CoDel's); left out when none was, so a plain queue's summary is as before.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) queue_dropped: u64,
    /// Attempts that found their instance down (refused) or blackholed (no answer); left out
    /// when none did. They are in `attempts` and nowhere else: a service down for 5 s showed
    /// thousands of attempts, none rejected, none timed out.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) unreachable: u64,
    /// Queued requests dropped unanswered because their propagated deadline passed (the caller
    /// had given up); left out when none were.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) dropped: u64,
    pub(crate) utilization: f64,
    /// Attempts per named endpoint, for a service with endpoints (left out otherwise): how its
    /// requests split between the kinds of request it serves.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) endpoints: BTreeMap<String, u64>,
}

/// One call edge, keyed `FROM->TO`.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub(crate) struct CallSummary {
    pub(crate) attempts: u64,
    /// Attempts per user request on this edge when nothing fails, as for a service's.
    #[serde(skip)]
    pub(crate) normal_per_user: Option<f64>,
    pub(crate) retries: u64,
    pub(crate) retries_denied: u64,
    pub(crate) hedges: u64,
    pub(crate) timeouts: u64,
}

/// One second of the run.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct TimelinePoint {
    pub(crate) t: u64,
    pub(crate) user_rate: u64,
    pub(crate) goodput_rate: u64,
    pub(crate) attempt_rate: BTreeMap<String, u64>,
}

/// Two files: both runs, FILE first.
#[derive(Serialize, Debug)]
pub(crate) struct Comparison<'a> {
    pub(crate) runs: [&'a Summary; 2],
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `x` to 6 significant digits: enough for any figure a person compares, few enough that the
/// last digit of a float sum does not make two reports differ.
pub(crate) fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// The nearest-rank percentile `p` (0 < p <= 1) of sorted nanoseconds, in ms.
pub(crate) fn percentile_ms(sorted_ns: &[u64], p: f64) -> Option<f64> {
    let n = sorted_ns.len();
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    Some(round(sorted_ns[rank - 1] as f64 / 1e6))
}

/// Share of a step's users answered in time, rounded.
pub(crate) fn step_goodput(step: &Step) -> Option<f64> {
    step.goodput().map(round)
}

impl Summary {
    /// This summary with every service's and call's normal load from `graph`, the file run:
    /// what a user request brings each when nothing fails, for the comparison to judge
    /// attempts by what exceeds it.
    pub(crate) fn with_normal_load(mut self, graph: &Graph) -> Summary {
        let normal = stormguard_graph::check::normal_load(graph);
        for (name, service) in &mut self.services {
            service.normal_per_user = normal.services.get(name).copied().map(round);
        }
        for (edge, call) in &mut self.calls {
            call.normal_per_user = normal.calls.get(edge).copied().map(round);
        }
        self
    }

    /// The summary of `outcome`, a run of `file` under `scenario`.
    pub(crate) fn new(file: &str, scenario: Option<&str>, outcome: &Outcome) -> Summary {
        let users = &outcome.users;
        let latency = &users.latency_ns;
        let services = outcome
            .services
            .iter()
            .map(|(name, s)| {
                let summary = ServiceSummary {
                    attempts: s.attempts,
                    amplification: outcome.amplification(name).map(round),
                    normal_per_user: None,
                    succeeded: s.succeeded,
                    rejected: s.rejected,
                    timed_out: s.timed_out,
                    wasted_work_s: round(s.wasted_work_s),
                    max_queue: s.max_queue,
                    queue_dropped: s.queue_dropped,
                    unreachable: s.unreachable,
                    dropped: s.dropped,
                    utilization: round(s.utilization),
                    endpoints: s.endpoints.clone(),
                };
                (name.clone(), summary)
            })
            .collect();
        let mut calls: BTreeMap<String, CallSummary> = BTreeMap::new();
        for c in &outcome.calls {
            // Two calls on one edge (the file allows it) are one edge to the reader: summed.
            let sum = calls.entry(format!("{}->{}", c.from, c.to)).or_default();
            sum.attempts += c.attempts;
            sum.retries += c.retries;
            sum.retries_denied += c.retries_denied;
            sum.hedges += c.hedges;
            sum.timeouts += c.timeouts;
        }
        let timeline = outcome
            .timeline
            .iter()
            .map(|step| TimelinePoint {
                t: step.at_s,
                user_rate: step.users,
                goodput_rate: step.succeeded,
                attempt_rate: step.attempts.clone(),
            })
            .collect();
        Summary {
            file: file.to_string(),
            scenario: scenario.map(str::to_string),
            seed: outcome.seed,
            seeds: None,
            duration_s: round(outcome.duration.as_secs_f64()),
            user: UserSummary {
                requests: users.requests,
                succeeded: users.succeeded,
                goodput: (users.requests > 0)
                    .then(|| round(users.succeeded as f64 / users.requests as f64)),
                latency_ms: LatencySummary {
                    p50: percentile_ms(latency, 0.5),
                    p90: percentile_ms(latency, 0.9),
                    p99: percentile_ms(latency, 0.99),
                    p999: percentile_ms(latency, 0.999),
                    max: percentile_ms(latency, 1.0),
                },
            },
            services,
            calls,
            timeline,
            recovered_at_s: outcome.recovered_at.map(|d| round(d.as_secs_f64())),
            intervals: BTreeMap::new(),
        }
    }

    /// `seed 7`, or with several seeds `seeds 0 to 4`: for the headers of every view.
    pub(crate) fn seed_words(&self) -> String {
        match &self.seeds {
            Some(s) => format!("seeds {} to {}", s.first, s.last),
            None => format!("seed {}", self.seed),
        }
    }

    /// The figure `key` (a name of `compare::figures`) as a cell: `one`, the one-seed text,
    /// when one seed ran; else its mean ± half-width in `unit`, `-` when no seed had it
    /// (`never` for a moment: no seed recovered).
    pub(crate) fn cell(&self, key: &str, one: String, unit: Unit) -> String {
        match &self.seeds {
            None => one,
            Some(s) => self.intervals.get(key).map_or_else(
                || match unit {
                    Unit::At => "never".to_string(),
                    _ => "-".to_string(),
                },
                |i| i.text(unit, s.count),
            ),
        }
    }

    /// Wasted work over all services, the figure deadline propagation is judged by.
    pub(crate) fn wasted_work_s(&self) -> f64 {
        round(self.services.values().map(|s| s.wasted_work_s).sum())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use stormguard_sim::engine::{CallStats, ServiceStats, Trigger, UserStats};

    use super::super::Run;
    use super::*;

    /// `outcome` as a run of `file` under the scenario `db-slow`, the only one its file defines.
    pub(crate) fn run(file: &str, outcome: Outcome) -> Run {
        Run {
            summary: Summary::new(file, Some("db-slow"), &outcome),
            outcome,
            known_scenarios: vec!["db-slow".to_string()],
        }
    }

    /// A small run with every field filled, as the engine fills them: two services, a fault on
    /// the bottom one from 3 s to 6 s, a storm in attempts meanwhile and recovery at 8 s.
    pub(crate) fn outcome() -> Outcome {
        let mut timeline = Vec::new();
        for t in 0..12u64 {
            let faulty = (3..6).contains(&t);
            let users = 100 + t % 3;
            let succeeded = if faulty { 40 } else { users - 1 };
            let latency_ns = (0..succeeded)
                .map(|i| (5 + i % 20 + if faulty { 200 } else { 0 }) * 1_000_000)
                .collect::<Vec<_>>();
            let mut sorted = latency_ns;
            sorted.sort_unstable();
            timeline.push(Step {
                at_s: t,
                users,
                succeeded,
                latency_ns: sorted,
                attempts: BTreeMap::from([
                    ("api".to_string(), users),
                    ("db".to_string(), if faulty { 3 * users } else { users }),
                ]),
                max_queue: BTreeMap::from([
                    ("api".to_string(), if faulty { 12 } else { 1 }),
                    ("db".to_string(), if faulty { 30 } else { 0 }),
                ]),
            });
        }
        let requests = timeline.iter().map(|s| s.users).sum();
        let mut latency_ns: Vec<u64> = timeline.iter().flat_map(|s| s.latency_ns.clone()).collect();
        latency_ns.sort_unstable();
        let service = |attempts, wasted| ServiceStats {
            attempts,
            succeeded: attempts - 10,
            rejected: 4,
            timed_out: 6,
            wasted_work_s: wasted,
            max_queue: 30,
            instances: 2,
            concurrency: 8,
            utilization: 0.123_456_789,
            ..ServiceStats::default()
        };
        Outcome {
            seed: 7,
            duration: Duration::from_secs(12),
            drained_at: Duration::from_millis(12_300),
            users: UserStats {
                requests,
                succeeded: timeline.iter().map(|s| s.succeeded).sum(),
                latency_ns,
            },
            services: BTreeMap::from([
                ("api".to_string(), service(requests, 0.5)),
                ("db".to_string(), service(requests + 600, 1.0 / 3.0)),
            ]),
            calls: vec![CallStats {
                from: "api".to_string(),
                to: "db".to_string(),
                attempts: requests + 600,
                retries: 600,
                retries_denied: 20,
                timeouts: 300,
                hedges: 0,
            }],
            timeline,
            triggers: vec![Trigger {
                from: Duration::from_secs(3),
                to: Duration::from_secs(6),
                label: "db: slowdown x10 <all>".to_string(),
                service: Some("db".to_string()),
            }],
            recovered_at: Some(Duration::from_secs(8)),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_in_ms() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&ns, 0.5), Some(500.0));
        assert_eq!(percentile_ms(&ns, 0.999), Some(999.0));
        assert_eq!(percentile_ms(&ns, 1.0), Some(1000.0));
        assert_eq!(percentile_ms(&[3_000_000], 0.01), Some(3.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn rounding_keeps_six_significant_digits() {
        assert_eq!(round(0.123_456_789), 0.123_457);
        assert_eq!(round(123_456_789.0), 123_457_000.0);
        assert_eq!(round(0.0), 0.0);
        assert_eq!(round(1.0 / 3.0).to_string(), "0.333333");
    }

    #[test]
    fn the_summary_has_the_issue_s_keys_in_order() {
        let summary = Summary::new("g.toml", Some("db-slow"), &outcome());
        let json = serde_json::to_string(&summary).unwrap();
        let keys = [
            "\"file\"",
            "\"scenario\"",
            "\"seed\"",
            "\"duration_s\"",
            "\"user\"",
            "\"services\"",
            "\"calls\"",
            "\"timeline\"",
            "\"recovered_at_s\"",
        ];
        let positions: Vec<usize> = keys.iter().map(|k| json.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(summary.recovered_at_s, Some(8.0));
        assert_eq!(summary.services["db"].utilization, 0.123_457);
        assert_eq!(summary.services["db"].wasted_work_s, 0.333_333);
        assert_eq!(summary.calls["api->db"].retries, 600);
        assert_eq!(summary.timeline.len(), 12);
        assert_eq!(summary.timeline[4].attempt_rate["db"], 3 * 101);
        assert_eq!(summary.timeline[4].goodput_rate, 40);
        let amplification = summary.services["db"].amplification.unwrap();
        assert!(
            amplification > 1.0 && amplification < 2.0,
            "{amplification}"
        );
    }

    #[test]
    fn no_success_gives_null_latencies_and_no_users_null_goodput() {
        let mut empty = outcome();
        empty.users = UserStats::default();
        let summary = Summary::new("g.toml", None, &empty);
        assert_eq!(summary.user.goodput, None);
        assert_eq!(summary.user.latency_ms.p50, None);
        assert_eq!(summary.services["db"].amplification, None);
        let json = serde_json::to_value(&summary).unwrap();
        assert!(json["user"]["latency_ms"]["max"].is_null());
        assert!(json["scenario"].is_null());
    }
}
