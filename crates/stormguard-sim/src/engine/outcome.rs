//! What a run measured: the figures a report or a test reads.
//!
//! Counts are kept as integers and times as seconds computed once at the end from integer
//! nanoseconds, so two runs of the same seed compare equal bit for bit.

use std::collections::BTreeMap;
use std::time::Duration;

/// The figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The seed the run used, so that a figure can be replayed.
    pub seed: u64,
    /// How long users kept arriving.
    pub duration: Duration,
    /// When the last event happened: after `duration`, the run drains the requests still in
    /// flight so that every user request is counted whole.
    pub drained_at: Duration,
    /// What the users saw.
    pub users: UserStats,
    /// Per service, by name.
    pub services: BTreeMap<String, ServiceStats>,
    /// Per call edge, in the graph's order (services by name, then their calls in order).
    pub calls: Vec<CallStats>,
    /// The run in 1 s steps from t = 0 to `duration`, for plots and for telling a storm that
    /// outlives its trigger from one that ends with it.
    pub timeline: Vec<Step>,
    /// What was done to the system and when: every fault and load step, in the file's order,
    /// so a report can shade them and a reader see cause beside effect.
    pub triggers: Vec<Trigger>,
    /// When the system recovered: the first second after the last trigger ends from which
    /// goodput (the share of a second's user requests answered in time) stays at or above 95% of
    /// its level before the first trigger for 5 s. `None` when it never did within the run, or
    /// when nothing was triggered (see [`Outcome::triggers`]).
    pub recovered_at: Option<Duration>,
}

impl Outcome {
    /// Attempts at `service` per user request: the load one user request puts on it, the figure
    /// that shows retry amplification. `None` for an unknown service or a run without users.
    pub fn amplification(&self, service: &str) -> Option<f64> {
        let stats = self.services.get(service)?;
        (self.users.requests > 0).then(|| stats.attempts as f64 / self.users.requests as f64)
    }
}

/// What the users saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserStats {
    /// User requests that arrived.
    pub requests: u64,
    /// Those answered with success within the user's timeout.
    pub succeeded: u64,
    /// Latency of each successful user request, in nanoseconds, sorted, for any percentile.
    pub latency_ns: Vec<u64>,
}

/// One service's figures, summed over its instances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceStats {
    /// Attempts sent to it, whatever became of them.
    pub attempts: u64,
    /// Attempts it answered with success.
    pub succeeded: u64,
    /// Attempts it answered with a failure: an injected error, or a required call that failed.
    pub failed: u64,
    /// Attempts turned away at once because workers and queue were full (a fast 503).
    pub rejected: u64,
    /// Attempts that found the instance down (refused) or blackholed (never answered).
    pub unreachable: u64,
    /// Attempts whose caller gave up before the answer came back.
    pub timed_out: u64,
    /// Queued attempts dropped because their propagated deadline had passed.
    pub dropped: u64,
    /// Queued attempts answered 503 because they had waited past the service's queue limit
    /// (`queue_timeout`, or CoDel's target or interval): stale work discarded so that fresh
    /// work is done. Always 0 for a plain FIFO or LIFO queue.
    pub queue_dropped: u64,
    /// Seconds of own work finished for callers that had already given up (at any level above).
    pub wasted_work_s: f64,
    /// Seconds of own work done, over all instances: utilisation is this over duration times
    /// instances times concurrency.
    pub work_s: f64,
    /// Attempts that left the queue to start work.
    pub started: u64,
    /// Seconds those attempts waited in the queue, summed; divided by `started`, the mean wait.
    pub queue_wait_s: f64,
    /// The longest queue any one instance had.
    pub max_queue: u64,
    /// How many instances it has, to read the per-instance figures by.
    pub instances: u32,
    /// Workers per instance.
    pub concurrency: u32,
    /// Share of its workers' time spent on own work over the run (until the last event):
    /// `work_s / (drained_at * instances * concurrency)`. Near 1 it cannot absorb a retry.
    pub utilization: f64,
    /// Attempts per named endpoint (empty for a service without endpoints): how its requests
    /// split between the kinds of request it serves.
    pub endpoints: BTreeMap<String, u64>,
}

/// One call edge's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallStats {
    /// The calling service; `SERVICE/ENDPOINT` for a call of a named endpoint.
    pub from: String,
    /// The service called.
    pub to: String,
    /// Attempts sent, first tries and retries.
    pub attempts: u64,
    /// Retries the policy allowed.
    pub retries: u64,
    /// Retries the budget or token bucket refused.
    pub retries_denied: u64,
    /// Attempts ended by the per-attempt or connect timeout.
    pub timeouts: u64,
    /// Hedged attempts sent (extra attempts while the first was still outstanding).
    pub hedges: u64,
}

/// One second of a run, counted by when user requests arrived and attempts reached a service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Start of the step, whole seconds from the start of the run.
    pub at_s: u64,
    /// User requests that arrived in this second: the offered load.
    pub users: u64,
    /// Of those, the ones answered with success within the user's timeout.
    pub succeeded: u64,
    /// Latencies of those successes, in nanoseconds, sorted.
    pub latency_ns: Vec<u64>,
    /// Per service by name: attempts that reached it in this second.
    pub attempts: BTreeMap<String, u64>,
    /// Per service by name: the longest queue any of its instances had in this second.
    pub max_queue: BTreeMap<String, u64>,
}

impl Step {
    /// Share of this second's user requests answered in time; `None` when none arrived.
    pub fn goodput(&self) -> Option<f64> {
        (self.users > 0).then(|| self.succeeded as f64 / self.users as f64)
    }
}

/// A fault or a load step of the scenario, with its window.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// When it starts.
    pub from: Duration,
    /// When it ends.
    pub to: Duration,
    /// What it is, for a legend: `db: slowdown x10 on 1 instance`, `load: 600/s`.
    pub label: String,
    /// The service a fault hits; `None` for a load step.
    pub service: Option<String>,
}
