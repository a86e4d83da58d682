//! The simulator of a whole service graph: users, queues, faults, and every retry decision taken
//! by the policy core.
//!
//! ## Why an engine of its own
//! A graph file says how each call is configured; whether those settings survive a slow database
//! or a spike of users is a question of dynamics: queues that fill, retries that multiply down the
//! layers, work done for callers that already gave up. This engine runs the graph in virtual time
//! (integer nanoseconds, one agenda of events, no threads, no clock), so a minute of traffic takes a
//! fraction of a second and the same seed replays the same run exactly.
//!
//! ## The model, where the issue leaves a choice
//! - A request holds one of its instance's `concurrency` workers from the start of its own work
//!   until it answers, calls included (a thread per request): this is what lets a slow
//!   dependency fill the queues above it.
//! - `contention` counts the other requests holding a worker on the instance when the work starts;
//!   a fault's slowdown multiplies own work and contention alike.
//! - An injected error (`error_rate`) answers 503 at once, before the queue; a down instance
//!   refuses after one round trip; a blackholed one is ended by the caller's connect bound (its
//!   `connect_timeout`, else its `timeout`, as the proxy's connector is bounded:
//!   `stormguard_graph::policy::connect_timeout`), or by its attempt's timeout when a deadline
//!   cut that shorter, and both count as a connect timeout.
//! - With `propagate_deadline`, the callee's deadline is when its caller gives up on the attempt
//!   (`send + attempt timeout`); queued work past it is dropped when a worker would take it, and
//!   the policy's `should_start` refuses calls with no time left.
//! - A service's `queue_discipline` picks the queued request a free worker takes (the oldest,
//!   the newest, or CoDel's adaptive choice, in `queue`); a request that waited past its limit
//!   (`queue_timeout`, CoDel's target or interval) is answered 503 when a worker would take it,
//!   or when an arrival finds the queue full, and counted in `queue_dropped`.
//! - Parallel calls with `count > 1` repeat each in sequence, alongside the others; a run of calls
//!   waits for all of its calls before the next run, and fails the request if a required one
//!   failed.
//! - Users call the entry service without network delay; after `duration` no user arrives and
//!   the run drains what is in flight, so every user request is counted whole. The drain ends
//!   with the last event that changed anything (`drained_at`, which utilisation divides by): a
//!   timeout of an attempt answered long ago is no work.
//! - Each call edge keeps one latency estimator (`stormguard::estimate::LocalLatencyEstimator`,
//!   the proxy's for one thread, in virtual time), shared by every instance of the caller like
//!   the edge's budgets, and fed as the proxy's retry layer feeds its route's: one latency per
//!   attempt that got a response, from its send to its answer, a hedge included; errors and
//!   timeouts teach it nothing. The retry policy reads its p50 as the expected latency of an
//!   attempt, through the same core functions as the proxy (`RetryPolicy::should_start_within`
//!   and `RetryPolicy::decide_within`, which the proxy's `_estimated` forms call with the time
//!   left of its deadline, and `attempt_timeout_within`): with a deadline, no attempt starts with
//!   less time left than an attempt is expected to take. Until the estimator holds 100 samples, the expected
//!   latency is the policy's, zero. An edge whose estimator nothing can read (no quantile hedge
//!   delay, and no deadline: neither its `request_timeout` nor one propagated to its caller)
//!   is not fed, which changes nothing but the work.
//! - Hedging follows the proxy's stack, the retry layer outside the hedge layer: what the retry
//!   policy calls one attempt is the attempt sent plus, if it has not answered after the hedge
//!   delay and the edge's `HedgePolicy` allows, one copy to an instance the call has not tried.
//!   The race of the two is the policy core's `HedgeRace`, the one the hedge layer runs. Only a
//!   caller's request (each repetition of a call) earns the hedge budget its share, never a
//!   retry, and only an idempotent call whose delay ends before the attempt's timeout is
//!   hedged. A response below 500 from either copy wins at once and the other is abandoned: its
//!   work goes on and counts as wasted (a cancelled request is not unsent), unless a propagated
//!   deadline lets the callee drop it from the queue; it is not counted as timed out. A 5xx or
//!   a connection error waits for the other copy; when both failed, the retry policy hears the
//!   first copy's answer, or the hedge's if only the hedge got a response. The per-attempt
//!   timeout ends both copies (each counted as timed out); a connect timeout ends only its own
//!   copy.
//! - A quantile hedge delay is read from the edge's estimator, re-read every 10 ms of virtual
//!   time rather than per call. A hedge without `max_extra` may copy every request
//!   (`max_extra` 1).
//! - Hedges count in the edge's `attempts` and `hedges` and as attempts at the callee.
//! - Every attempt and hedge goes where the proxy's `Balance` layer would send it: of two
//!   instances the call has not tried, the one where the caller's balancer has fewer attempts
//!   in flight (sent and neither answered nor given up, as the layer counts them, whatever the
//!   callee still works on), leaving out those ejected by the outlier detector
//!   (`stormguard::instance::choose_healthy`), on the library's default
//!   `EjectionConfig`, which the graph has no key for. Each instance of the caller has its own
//!   detector per edge, as each sidecar has its own balancer per route; it hears each copy's
//!   outcome when the caller does: a response by its status (5xx a failure), a refusal or a
//!   connect timeout as a connection failure, and nothing for a copy ended by the per-attempt
//!   timeout or abandoned by a hedge race, whose future the proxy drops. So a down instance
//!   costs each caller instance one refused attempt per ejection (after 1, 2, 4 .. 30 s), and a
//!   blackholed one what is sent to it, per ejection, until its connect bound runs out. Users
//!   pick an entry instance by load alone: they are not behind a stormguard balancer, and they
//!   never retry.
//! - A request to a service with endpoints takes one of them, drawn by weight from a seeded
//!   stream of its own (a service with one endpoint draws nothing, so a graph without endpoints
//!   runs as it did before they existed); a call that names an endpoint takes that one. The draw
//!   is made once per repetition of a call, so its retries and hedges go to the same endpoint,
//!   as a retried request is the same request. Attempts are counted per endpoint as well.
//! - The timeline counts a user request in the second it arrived and an attempt in the second
//!   it reached its service; attempts of the drain after `duration` are in the totals only.
//!   Recovery is measured from the end of the last trigger, load steps included.

mod balance;
mod call;
mod events;
mod hedge;
pub mod limits;
mod model;
mod outcome;
mod queue;
mod recovery;
mod service;
mod slab;
mod sort;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ejection;
#[cfg(test)]
mod tests_endpoints;
#[cfg(test)]
mod tests_expected;
#[cfg(test)]
mod tests_hedge;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_timeline;
mod timeline;
mod triggers;

use std::time::{Duration, Instant};

use stormguard::budget::BudgetError;
use stormguard::estimate::EstimateError;
use stormguard::hedge::HedgeError;
use stormguard_graph::model::{Graph, Scenario, Span};

pub use outcome::{CallStats, Outcome, ServiceStats, Step, Trigger, UserStats};
pub use recovery::{unmeasured, Unmeasured};

/// Why a graph cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario asked for is not in the file.
    #[error("no scenario named {name:?}; {}", defines(known))]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// The names the file has, comma-separated (empty when none).
        known: String,
    },
    /// A name that should be a service is not one.
    #[error("{service:?}, {context}, is not a service of the graph; use one of [services.NAME]")]
    UnknownService {
        /// The name.
        service: String,
        /// Where it was named.
        context: String,
    },
    /// A service's latency cannot be fitted to a lognormal.
    #[error("service {service}: {source}")]
    Latency {
        /// The service.
        service: String,
        /// What is wrong with its quantiles.
        source: EstimateError,
    },
    /// A call's retry budget or token bucket is invalid.
    #[error("call {edge}: {source}")]
    Limiter {
        /// `FROM->TO`.
        edge: String,
        /// What is wrong with it.
        source: BudgetError,
    },
    /// A call's hedge is invalid (a graph built in code; the parser refuses these).
    #[error("call {edge}: {source}")]
    Hedge {
        /// `FROM->TO`.
        edge: String,
        /// What is wrong with it.
        source: HedgeError,
    },
    /// The calls form a cycle (`check`'s `call-cycle`): one request would circle until every
    /// timeout on the way expired, with nothing to bound its depth, so the run is refused.
    #[error(
        "call {call}: {message}; sim does not run a graph whose calls form a cycle (check \
         reports it as error[call-cycle]): remove the call, or break the cycle elsewhere"
    )]
    CallCycle {
        /// Where the call that closes the cycle is in the file, when known.
        span: Option<Span>,
        /// `FROM -> TO`, the call that closes it.
        call: String,
        /// `check`'s message, which names the services around the cycle.
        message: String,
    },
    /// The run is over one of the bounds of [`limits`] (or its duration or rate is outside the
    /// file's ranges): what, how much, and what to lower.
    #[error("{0}")]
    Bound(String),
}

/// Runs `graph` under `scenario` (its faults, rate and load steps; `None`: the graph as it is)
/// for `duration` (default: the scenario's, else 60 s) and returns what it measured.
///
/// `origin` is the instant virtual time 0 maps to for the policy core, which reads time as
/// `Instant`s (retry budgets window by it); the library never reads the clock, so the outcome
/// depends only on the graph, the scenario, the seed and the duration.
///
/// # Errors
/// [`SimError`] when the scenario is unknown, the graph holds a latency or limiter the policy
/// core refuses, its calls form a cycle, or the run is over a bound of [`limits`].
pub fn simulate(
    graph: &Graph,
    scenario: Option<&str>,
    seed: u64,
    duration: Option<Duration>,
    origin: Instant,
) -> Result<Outcome, SimError> {
    let setup = Setup {
        scenario: scenario
            .map(|name| find_scenario(graph, name))
            .transpose()?,
        rate: None,
        seed,
        duration,
        origin,
    };
    run(graph, &setup, &mut |_| {})
}

/// What a run puts a graph through, apart from the graph itself.
///
/// Separate from the graph so that two graphs (today's settings and the fixed ones) can be put
/// through the very same scenario and arrivals: same seed, same scenario, same rate.
///
/// ```
/// use std::time::Instant;
/// use stormguard_sim::engine::{run, Setup};
///
/// let graph = stormguard_graph::parse::parse("g.toml", r#"
/// [entry]
/// service = "api"
/// rate = 50
/// timeout = "2s"
/// [services.api]
/// latency = { p50 = "10ms", p99 = "40ms" }
/// "#).unwrap();
/// let setup = Setup { duration: Some(std::time::Duration::from_secs(10)), ..Setup::new(7, Instant::now()) };
/// let outcome = run(&graph, &setup, &mut |_| {}).unwrap();
/// assert!(outcome.users.requests > 400);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Setup<'s> {
    /// Faults, load steps and duration; `None`: the graph as it is.
    pub scenario: Option<&'s Scenario>,
    /// User rate, overriding both the scenario's and the graph's `entry.rate`; at most a
    /// million a second (`stormguard_graph::parse::ranges::RATE`), as theirs.
    pub rate: Option<f64>,
    /// Seed of every random draw: arrivals, work, errors and jitter have streams of their own.
    pub seed: u64,
    /// How long users arrive; default the scenario's duration, else 60 s. From 1 s to 24 h
    /// (`stormguard_graph::parse::ranges::RUN_LENGTH`), as a scenario's.
    pub duration: Option<Duration>,
    /// The instant virtual time 0 maps to for the policy core (see [`simulate`]).
    pub origin: Instant,
}

impl Setup<'_> {
    /// The graph as it is, for the default duration.
    pub fn new(seed: u64, origin: Instant) -> Self {
        Setup {
            scenario: None,
            rate: None,
            seed,
            duration: None,
            origin,
        }
    }
}

/// The scenario named `name` in `graph`.
///
/// # Errors
/// [`SimError::UnknownScenario`], listing the names the file defines.
pub fn find_scenario<'g>(graph: &'g Graph, name: &str) -> Result<&'g Scenario, SimError> {
    graph
        .scenarios
        .get(name)
        .ok_or_else(|| SimError::UnknownScenario {
            name: name.to_string(),
            known: graph
                .scenarios
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// What a file defines, for [`SimError::UnknownScenario`]: the names, or that there are none
/// (an empty list after "defines:" reads like a bug, not an answer).
fn defines(known: &str) -> String {
    if known.is_empty() {
        "the file defines no scenarios; add a [scenarios.NAME] table or run without --scenario"
            .to_string()
    } else {
        format!("the file defines: {known}")
    }
}

/// The scenario to run when none was asked for: the file's only one, with its name, so that a
/// file written for one experiment runs it without `--scenario`; `None` when the file defines
/// none or several (choosing among several would be a guess).
pub fn only_scenario(graph: &Graph) -> Option<(&str, &Scenario)> {
    let mut all = graph.scenarios.iter();
    match (all.next(), all.next()) {
        (Some((name, scenario)), None) => Some((name.as_str(), scenario)),
        _ => None,
    }
}

/// Runs `graph` through `setup`, calling `progress` with the virtual time reached at each
/// simulated second (and once with the end of the run), so a terminal can show a progress bar
/// on long runs; the outcome does not depend on it.
///
/// Never runs away: a graph with a call cycle, and a run whose least work is over a bound of
/// [`limits`], are refused before the first event; a run that grows past one while it runs is
/// stopped with [`SimError::Bound`].
///
/// # Errors
/// [`SimError`] when the scenario names a service the graph lacks, the graph holds a latency or
/// limiter the policy core refuses, its calls form a cycle, or the run is over a bound.
pub fn run(
    graph: &Graph,
    setup: &Setup<'_>,
    progress: &mut dyn FnMut(Duration),
) -> Result<Outcome, SimError> {
    limits::refuse_cycles(graph)?;
    let model = model::build(graph, setup.scenario, setup.rate, setup.duration)?;
    limits::refuse_unbounded(&model)?;
    state::Sim::new(&model, setup.seed, setup.origin).run(progress)
}
