//! The graph turned into what the event loop needs: indices instead of names, nanoseconds
//! instead of durations, one retry policy per call edge, and faults and load per service.
//!
//! Everything that can be wrong with the input is found here, before the first event, so the
//! loop itself cannot fail.

use std::time::Duration;

use stormguard::estimate::{LocalLatencyEstimator, LogNormal};
use stormguard::hedge::{HedgeDelay, HedgePolicy};
use stormguard::policy::RetryPolicy;
use stormguard_graph::model::{Call, Graph, Scenario};
use stormguard_graph::parse::ranges::{RATE, RUN_LENGTH};

use super::outcome::Trigger;
use super::queue::QueuePolicy;
use super::{triggers, SimError};

/// The per-try timeout of a call the file gave none: a year, long enough never to fire in a run,
/// which is what no timeout means.
pub(crate) use stormguard_graph::policy::NO_TIMEOUT;

use stormguard_graph::policy::{ESTIMATOR_REFRESH, ESTIMATOR_WINDOW};

/// How long a run lasts when neither the caller nor a scenario says.
pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(60);

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A service as the loop sees it.
pub(crate) struct ServiceModel {
    pub(crate) name: String,
    pub(crate) instances: usize,
    /// Where its instances start in the run's flat list of every service's instances (the
    /// instances of the services before it, summed): one index reaches an instance's state.
    pub(crate) first: usize,
    pub(crate) concurrency: u32,
    pub(crate) queue: usize,
    pub(crate) work: LogNormal,
    /// Nanoseconds each other request holding a worker adds to a request's work, as a float:
    /// it multiplies a count and adds to the sampled work, both floats, on every start. Exact
    /// for any contention under 104 days, as the integer product it replaced.
    pub(crate) contention: f64,
    /// Its queue's discipline and timeout.
    pub(crate) queue_policy: QueuePolicy,
    /// Its endpoints, in file order (one, unnamed, for a service without endpoints).
    pub(crate) endpoints: Vec<EndpointModel>,
    pub(crate) faults: Vec<FaultWindow>,
}

/// One endpoint of a service: its share of the requests and its calls.
pub(crate) struct EndpointModel {
    /// Its name; `None` for the implicit endpoint of a service without endpoints.
    pub(crate) name: Option<String>,
    /// The shares of it and the endpoints before it, summed: a request draws a uniform number
    /// and takes the first endpoint whose sum is above it.
    pub(crate) up_to: f64,
    /// Its calls as runs: each run's edges start together, the runs one after another.
    pub(crate) runs: Vec<Vec<usize>>,
}

impl ServiceModel {
    /// The endpoint a request that names none takes, for a uniform draw `u` in [0, 1): by
    /// share. A service with one endpoint needs no draw, so its requests draw nothing and a
    /// graph without endpoints runs exactly as it did before endpoints existed.
    pub(crate) fn endpoint_for(&self, u: impl FnOnce() -> f64) -> usize {
        if self.endpoints.len() == 1 {
            return 0;
        }
        let u = u();
        self.endpoints
            .iter()
            .position(|e| u < e.up_to)
            .unwrap_or(self.endpoints.len() - 1)
    }
}

/// One call edge with its policy, shared by every instance of the caller, as in the proxy.
pub(crate) struct EdgeModel {
    pub(crate) from: usize,
    /// The caller's endpoint whose call this is.
    pub(crate) from_endpoint: usize,
    pub(crate) to: usize,
    /// The callee's endpoint the call names; `None`: drawn by share for each repetition.
    pub(crate) to_endpoint: Option<usize>,
    pub(crate) policy: RetryPolicy,
    pub(crate) half_rtt: u64,
    /// How long connecting may take: `connect_timeout`, else the call's `timeout`, as the
    /// proxy's connector is bounded.
    pub(crate) connect_timeout: Option<u64>,
    pub(crate) idempotent: bool,
    pub(crate) required: bool,
    pub(crate) count: u32,
    pub(crate) propagate_deadline: bool,
    pub(crate) hedge: Option<HedgePolicy>,
    /// The call's latencies, as the proxy's retry layer records a route's: one per attempt that
    /// got a response, from its send to its answer, a hedge included. The retry policy takes
    /// its expected latency (the p50) from it, and a quantile hedge delay its quantile.
    ///
    /// One per edge, shared by every instance of the caller like the edge's retry and hedge
    /// budgets, where each sidecar of the proxy keeps its own: the latencies of one call follow
    /// one distribution whichever instance calls, and one estimator per instance (130 KiB each)
    /// would only wait as many times longer for the 100 samples a quantile needs. The proxy's
    /// estimator for one thread (no lock), since a run is one event loop.
    pub(crate) estimator: LocalLatencyEstimator,
    /// Whether anything in a run ever reads `estimator`: a quantile hedge delay, or a deadline
    /// on the call (its `request_timeout`, or one propagated to its caller), without which the
    /// retry policy never asks for an expected latency. An estimator nothing reads is not fed:
    /// the two histogram records and the clock reads of each answer are saved, and the
    /// outcome is the same (see [`latency_read`]).
    pub(crate) latency_read: bool,
}

/// A fault on some of a service's instances for a window of virtual time.
pub(crate) struct FaultWindow {
    from: u64,
    to: u64,
    slowdown: f64,
    error_rate: f64,
    error_status: u16,
    down: bool,
    blackhole: bool,
    instances: usize,
}

/// The state an instance is in at one instant, all active faults combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Condition {
    pub(crate) slowdown: f64,
    pub(crate) error_rate: f64,
    /// The status of an injected error: that of the last active fault that injects errors.
    pub(crate) error_status: u16,
    pub(crate) down: bool,
    pub(crate) blackhole: bool,
}

impl ServiceModel {
    pub(crate) fn condition(&self, instance: usize, t: u64) -> Condition {
        let mut c = Condition {
            slowdown: 1.0,
            error_rate: 0.0,
            error_status: 503,
            down: false,
            blackhole: false,
        };
        for f in &self.faults {
            if instance < f.instances && f.from <= t && t < f.to {
                c.slowdown *= f.slowdown;
                // Independent faults: an attempt survives only if it survives each.
                c.error_rate = 1.0 - (1.0 - c.error_rate) * (1.0 - f.error_rate);
                if f.error_rate > 0.0 {
                    c.error_status = f.error_status;
                }
                c.down |= f.down;
                c.blackhole |= f.blackhole;
            }
        }
        c
    }
}

/// User load over time: a base rate, overridden by load steps while they last (the last step
/// listed wins where steps overlap).
pub(crate) struct Load {
    pub(crate) base: f64,
    pub(crate) steps: Vec<(u64, u64, f64)>,
    pub(crate) end: u64,
}

impl Load {
    fn rate_at(&self, t: u64) -> f64 {
        self.steps
            .iter()
            .rev()
            .find(|(from, to, _)| *from <= t && t < *to)
            .map_or(self.base, |step| step.2)
    }

    fn next_change(&self, t: u64) -> u64 {
        self.steps
            .iter()
            .flat_map(|&(from, to, _)| [from, to])
            .filter(|&b| b > t)
            .fold(self.end, u64::min)
    }

    /// The user requests expected from 0 to the end: each rate times how long it holds.
    pub(crate) fn expected_requests(&self) -> f64 {
        let mut t = 0;
        let mut total = 0.0;
        while t < self.end {
            let next = self.next_change(t);
            total += self.rate_at(t) * (next - t) as f64 / 1e9;
            t = next;
        }
        total
    }

    /// The next arrival after `t` of a Poisson process whose rate follows the steps, or `None`
    /// once users stop arriving. At a change of rate the draw starts afresh, which is exact for
    /// a memoryless process.
    ///
    /// `exponential` draws from the exponential distribution of mean 1 (the gap of a process of
    /// rate 1, scaled here by the rate).
    pub(crate) fn next_arrival(
        &self,
        mut t: u64,
        exponential: &mut impl FnMut() -> f64,
    ) -> Option<u64> {
        if self.steps.is_empty() {
            // One rate until the end: the loop below, once, without looking for steps.
            let rate = self.base;
            if t < self.end && rate > 0.0 && rate.is_finite() {
                let at = t.saturating_add((exponential() / rate * 1e9) as u64);
                return (at < self.end).then_some(at);
            }
            return None;
        }
        while t < self.end {
            let rate = self.rate_at(t);
            let change = self.next_change(t);
            if rate > 0.0 && rate.is_finite() {
                let gap = exponential() / rate * 1e9;
                let at = t.saturating_add(gap as u64);
                if at < change {
                    return Some(at);
                }
            }
            t = change;
        }
        None
    }
}

/// The whole run as the loop needs it.
pub(crate) struct Model {
    pub(crate) services: Vec<ServiceModel>,
    pub(crate) edges: Vec<EdgeModel>,
    pub(crate) entry: usize,
    pub(crate) user_timeout: u64,
    pub(crate) load: Load,
    pub(crate) duration: Duration,
    /// The scenario's faults and load steps, in the file's order.
    pub(crate) triggers: Vec<Trigger>,
}

impl Model {
    /// The caller of `edge` as the outcome names it: its service, with `/ENDPOINT` for a call of
    /// a named endpoint (`gateway/checkout`).
    pub(crate) fn caller_name(&self, edge: &EdgeModel) -> String {
        let service = &self.services[edge.from];
        match &service.endpoints[edge.from_endpoint].name {
            Some(endpoint) => format!("{}/{endpoint}", service.name),
            None => service.name.clone(),
        }
    }
}

fn index_of(graph: &Graph, name: &str, context: &str) -> Result<usize, SimError> {
    graph
        .services
        .keys()
        .position(|n| n == name)
        .ok_or_else(|| SimError::UnknownService {
            service: name.to_string(),
            context: context.to_string(),
        })
}

/// The index of the callee's endpoint `call` names, among the callee's endpoints in file order;
/// `None` when it names none (or one the callee lacks, which the parser refuses).
fn called_endpoint(graph: &Graph, call: &Call) -> Option<usize> {
    let name = call.endpoint.as_deref()?;
    graph
        .services
        .get(&call.to)?
        .endpoints
        .iter()
        .position(|e| e.name == name)
}

/// The call's policy, from the one conversion the proxy uses too.
fn policy(from: &str, call: &Call) -> Result<RetryPolicy, SimError> {
    stormguard_graph::policy::retry_policy(call).map_err(|source| SimError::Limiter {
        edge: format!("{from}->{}", call.to),
        source,
    })
}

/// The call's hedge policy (and budget), from the policy core.
fn hedge(from: &str, call: &Call) -> Result<Option<HedgePolicy>, SimError> {
    let Some(spec) = call.hedge else {
        return Ok(None);
    };
    HedgePolicy::new(spec.delay, spec.max_extra)
        .map(Some)
        .map_err(|source| SimError::Hedge {
            edge: format!("{from}->{}", call.to),
            source,
        })
}

pub(crate) fn build(
    graph: &Graph,
    scenario: Option<&Scenario>,
    rate: Option<f64>,
    duration: Option<Duration>,
) -> Result<Model, SimError> {
    let duration = duration
        .or(scenario.map(|s| s.duration))
        .unwrap_or(DEFAULT_DURATION);
    // The file's own ranges, for what a caller gives in code (`--duration`, a rate).
    RUN_LENGTH
        .duration(duration)
        .map_err(|why| SimError::Bound(format!("duration: {why}")))?;
    if let Some(rate) = rate {
        RATE.number(rate)
            .map_err(|why| SimError::Bound(format!("rate: {why}")))?;
    }
    let mut services = Vec::with_capacity(graph.services.len());
    let mut edges = Vec::new();
    for (name, service) in &graph.services {
        let from = services.len();
        let work = LogNormal::fit(service.latency.p50, service.latency.p99).map_err(|source| {
            SimError::Latency {
                service: name.clone(),
                source,
            }
        })?;
        let mut endpoints = Vec::new();
        let mut up_to = 0.0;
        for endpoint in service.each_endpoint() {
            let from_endpoint = endpoints.len();
            let caller = match endpoint.name {
                Some(endpoint) => format!("{name}/{endpoint}"),
                None => name.clone(),
            };
            let mut runs: Vec<Vec<usize>> = Vec::new();
            let mut last_parallel = false;
            for call in endpoint.calls {
                let edge = edges.len();
                let to = index_of(graph, &call.to, &format!("called by {caller}"))?;
                edges.push(EdgeModel {
                    from,
                    from_endpoint,
                    to,
                    to_endpoint: called_endpoint(graph, call),
                    policy: policy(&caller, call)?,
                    half_rtt: nanos(call.rtt) / 2,
                    connect_timeout: stormguard_graph::policy::connect_timeout(call).map(nanos),
                    idempotent: call.is_idempotent(),
                    required: call.required,
                    count: call.count,
                    propagate_deadline: call.propagate_deadline,
                    hedge: hedge(&caller, call)?,
                    estimator: LocalLatencyEstimator::new(ESTIMATOR_WINDOW)
                        .with_quantile_refresh(ESTIMATOR_REFRESH),
                    latency_read: true,
                });
                match runs.last_mut() {
                    Some(run) if call.parallel && last_parallel => run.push(edge),
                    _ => runs.push(vec![edge]),
                }
                last_parallel = call.parallel;
            }
            up_to += endpoint.share;
            endpoints.push(EndpointModel {
                name: endpoint.name.map(str::to_string),
                up_to,
                runs,
            });
        }
        let first = services
            .last()
            .map_or(0, |s: &ServiceModel| s.first + s.instances);
        services.push(ServiceModel {
            name: name.clone(),
            instances: service.instances.max(1) as usize,
            first,
            concurrency: service.concurrency.max(1),
            queue: service.queue as usize,
            work,
            contention: nanos(service.contention) as f64,
            queue_policy: QueuePolicy::of(service),
            endpoints,
            faults: Vec::new(),
        });
    }
    let mut base = graph.entry.rate;
    let mut steps = Vec::new();
    let mut triggers = Vec::new();
    if let Some(scenario) = scenario {
        base = scenario.rate.unwrap_or(base);
        for fault in &scenario.faults {
            let s = index_of(graph, &fault.service, "named by a fault")?;
            let instances = services[s].instances;
            triggers.push(triggers::fault(fault, instances));
            services[s].faults.push(FaultWindow {
                from: nanos(fault.from),
                to: nanos(fault.to),
                slowdown: fault.slowdown,
                error_rate: fault.error_rate,
                error_status: fault.error_status,
                down: fault.down,
                blackhole: fault.blackhole,
                instances: fault.instances.map_or(instances, |n| n as usize),
            });
        }
        triggers.extend(scenario.load.iter().map(triggers::load));
        steps = scenario
            .load
            .iter()
            .map(|step| (nanos(step.from), nanos(step.to), step.rate))
            .collect();
    }
    base = rate.unwrap_or(base);
    Ok(Model {
        entry: index_of(graph, &graph.entry.service, "the entry service")?,
        user_timeout: nanos(graph.entry.timeout),
        load: Load {
            base,
            steps,
            end: nanos(duration),
        },
        services,
        edges: latency_read(edges),
        duration,
        triggers,
    })
}

/// `edges` with [`EdgeModel::latency_read`] set: an edge's estimator is read only by a quantile
/// hedge delay, or by the retry policy's checks against a deadline (`should_start_within`
/// and the deadline step of `decide_within`, which look at no estimate without one). A
/// call's repetitions have a deadline only from its `request_timeout` or from the calling
/// request's, which only a call into the caller with `propagate_deadline` gives (users give
/// none).
fn latency_read(mut edges: Vec<EdgeModel>) -> Vec<EdgeModel> {
    let propagated_to: Vec<usize> = edges
        .iter()
        .filter(|e| e.propagate_deadline)
        .map(|e| e.to)
        .collect();
    for edge in &mut edges {
        let quantile_hedge = edge
            .hedge
            .as_ref()
            .is_some_and(|h| !matches!(h.delay_setting(), HedgeDelay::Fixed(_)));
        edge.latency_read = quantile_hedge
            || edge.policy.overall_timeout.is_some()
            || propagated_to.contains(&edge.from);
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which edges' estimators a run reads: `web -> api` propagates its deadline, so `api`'s
    /// calls have one; `web`'s own calls have none unless a `request_timeout` or a quantile
    /// hedge asks for latencies.
    #[test]
    fn only_an_edge_with_a_deadline_or_a_quantile_hedge_feeds_its_estimator() {
        let graph = stormguard_graph::parse(
            "g.toml",
            r#"
            [entry]
            service = "web"
            [services.web]
            [[services.web.calls]]
            to = "api"
            propagate_deadline = true
            [[services.web.calls]]
            to = "db"
            request_timeout = "1s"
            [[services.web.calls]]
            to = "db"
            hedge = { delay = "p95" }
            [[services.web.calls]]
            to = "db"
            hedge = { delay = "10ms" }
            [services.api]
            [[services.api.calls]]
            to = "db"
            [services.db]
            "#,
        )
        .unwrap();
        let model = build(&graph, None, None, None).unwrap();
        let read: Vec<(&str, &str, bool)> = model
            .edges
            .iter()
            .map(|e| {
                let name = |s: usize| model.services[s].name.as_str();
                (name(e.from), name(e.to), e.latency_read)
            })
            .collect();
        assert_eq!(
            read,
            [
                ("api", "db", true),
                ("web", "api", false),
                ("web", "db", true),
                ("web", "db", true),
                ("web", "db", false),
            ]
        );
    }
}
