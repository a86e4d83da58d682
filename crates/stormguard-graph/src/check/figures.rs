//! The model's figures, per service: the worst-case time it may keep working on one request, the
//! worst-case attempts it receives per user request, the sustained attempts with budgets holding,
//! and its depth.
//!
//! Every figure is a dynamic programme over one depth-first search: a path-by-path sum would be
//! exact too, but a graph of a few dozen layers has more paths than there are atoms, while the
//! search is linear in services plus calls. The search is iterative, because a chain of 10,000
//! services must not overflow the stack, and it finds the cycles first: the calls that close one
//! are reported and left out of every figure, so the rest is a DAG and nothing hangs.

use std::collections::HashMap;

use stormguard::estimate::LogNormal;

use crate::model::{Call, Graph, LimiterSpec, Service};

/// The quantile of a service's own latency taken as its worst case: the p99.9, the tail a
/// timeout is usually set to cover (Brooker), since a lognormal's p100 is unbounded.
const OWN_WORST_QUANTILE: f64 = 0.999;

/// A call that closes a cycle: reported as `call-cycle`, and left out of every figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CycleCall {
    /// The calling service's index.
    pub service: usize,
    /// The call's index in its service's calls.
    pub call: usize,
    /// The services around the cycle, from the called one back to the caller (indices); long
    /// cycles are cut to their ends so that a message stays readable.
    pub path: Vec<usize>,
    /// How many services the cycle has (the path may be cut).
    pub len: usize,
}

/// The graph indexed for the rules, and every figure of the model.
///
/// Services are indexed in name order (the order of [`Graph::services`]), so iterating indices is
/// iterating names and every output is deterministic.
pub(super) struct Model<'g> {
    /// The graph the figures are of.
    pub graph: &'g Graph,
    /// Services by index.
    pub services: Vec<&'g Service>,
    /// Per service, per call: the called service's index, `None` when it is not in the graph
    /// (the parser refuses that; a graph built in code may still hold it).
    pub callee: Vec<Vec<Option<usize>>>,
    /// Per service, per call: whether the call closes a cycle, and so is left out of the figures.
    pub in_cycle: Vec<Vec<bool>>,
    /// The calls that close a cycle, in the order the search found them.
    pub cycles: Vec<CycleCall>,
    /// The entry service's index, if it is in the graph.
    pub entry: Option<usize>,
    /// Whether a service is reachable from the entry; only those get figures.
    pub reachable: Vec<bool>,
    /// Per service: its own latency fitted as a lognormal, `None` when the quantiles cannot be
    /// fitted (`p50` zero or above `p99`).
    pub fits: Vec<Option<LogNormal>>,
    /// Per service: the longest it may keep working on one request, in ms (every service).
    pub worst_case_ms: Vec<f64>,
    /// Per service: worst-case attempts per user request (0 when unreachable).
    pub amplification: Vec<f64>,
    /// Per service: the same with retry budgets and token buckets holding.
    pub sustained: Vec<f64>,
    /// Per service: calls on the longest path from the entry.
    pub depth: Vec<u32>,
    /// Per service: the most retrying calls on any path from the entry to it.
    pub retry_layers: Vec<u32>,
    /// Per service: whether it, or anything it calls, retries a call, so that a caller giving up
    /// on it leaves retries running, not only work.
    pub retries_below: Vec<bool>,
    /// Per service: its callers' calls that are not closing a cycle, as (caller, call index),
    /// so that a rule can name the calls above a service without searching every service.
    pub callers: Vec<Vec<(usize, usize)>>,
    /// Per service: worst-case attempts per user request once every retrying call with another
    /// retrying layer above it makes one attempt, and the topmost layer at most two: what
    /// `retry-amplification`'s first fix leaves.
    pub one_layer_amplification: Vec<f64>,
    /// Per service: the same with one attempt on every call, i.e. the fan-out from `count` and
    /// from paths that meet; no retry setting brings a service below it.
    pub fan_out: Vec<f64>,
}

impl<'g> Model<'g> {
    /// Indexes `graph` and computes every figure.
    pub fn new(graph: &'g Graph) -> Model<'g> {
        let services: Vec<&Service> = graph.services.values().collect();
        let index: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let callee = services
            .iter()
            .map(|s| {
                s.calls
                    .iter()
                    .map(|c| index.get(c.to.as_str()).copied())
                    .collect()
            })
            .collect();
        let fits = services
            .iter()
            .map(|s| LogNormal::fit(s.latency.p50, s.latency.p99).ok())
            .collect();
        let n = services.len();
        let mut model = Model {
            graph,
            entry: graph
                .services
                .get(&graph.entry.service)
                .and_then(|s| index.get(s.name.as_str()).copied()),
            in_cycle: services
                .iter()
                .map(|s| vec![false; s.calls.len()])
                .collect(),
            services,
            callee,
            cycles: Vec::new(),
            reachable: vec![false; n],
            fits,
            worst_case_ms: vec![0.0; n],
            amplification: vec![0.0; n],
            sustained: vec![0.0; n],
            depth: vec![0; n],
            retry_layers: vec![0; n],
            retries_below: vec![false; n],
            callers: vec![Vec::new(); n],
            one_layer_amplification: vec![0.0; n],
            fan_out: vec![0.0; n],
        };
        let postorder = model.search();
        model.compute_worst_cases(&postorder);
        model.compute_path_figures(&postorder);
        model
    }

    /// Depth-first search from the entry, then from every service not yet seen (so cycles away
    /// from the entry are found too). Marks what the entry reaches and the calls that close a
    /// cycle; returns every service in postorder, whose reverse is a topological order of the
    /// graph without those calls.
    fn search(&mut self) -> Vec<usize> {
        const NEW: u8 = 0;
        const ON_STACK: u8 = 1;
        const DONE: u8 = 2;
        let n = self.services.len();
        let mut state = vec![NEW; n];
        let mut stack_pos = vec![0usize; n];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let mut postorder = Vec::with_capacity(n);
        let roots = self.entry.into_iter().chain(0..n);
        for (nth_root, root) in roots.enumerate() {
            if state[root] != NEW {
                continue;
            }
            let from_entry = nth_root == 0 && self.entry.is_some();
            state[root] = ON_STACK;
            stack_pos[root] = 0;
            stack.push((root, 0));
            while let Some(top) = stack.last_mut() {
                let (service, next) = *top;
                if from_entry {
                    self.reachable[service] = true;
                }
                if next == self.callee[service].len() {
                    stack.pop();
                    state[service] = DONE;
                    postorder.push(service);
                    continue;
                }
                top.1 += 1;
                let Some(to) = self.callee[service][next] else {
                    continue;
                };
                match state[to] {
                    NEW => {
                        state[to] = ON_STACK;
                        stack_pos[to] = stack.len();
                        stack.push((to, 0));
                    }
                    ON_STACK => {
                        self.in_cycle[service][next] = true;
                        let on_cycle = &stack[stack_pos[to]..];
                        self.cycles.push(CycleCall {
                            service,
                            call: next,
                            path: cut_path(on_cycle),
                            len: on_cycle.len(),
                        });
                    }
                    _ => {}
                }
            }
        }
        postorder
    }

    /// Worst-case time of every service, and whether retries run below it, callees before
    /// callers (postorder).
    fn compute_worst_cases(&mut self, postorder: &[usize]) {
        for &s in postorder {
            let own = self.own_worst_ms(s);
            let calls_ms = self.calls_cost_ms(s);
            self.worst_case_ms[s] = own + calls_ms;
            self.retries_below[s] = self.services[s].calls.iter().enumerate().any(|(i, call)| {
                !self.in_cycle[s][i]
                    && (retries(call) || self.callee[s][i].is_some_and(|c| self.retries_below[c]))
            });
        }
    }

    /// A service's own latency at its worst: the p99.9 of its fit. An unfittable pair (which the
    /// parser refuses) counts as the larger of its two quantiles, rather than failing the check.
    pub fn own_worst_ms(&self, s: usize) -> f64 {
        match self.fits[s] {
            Some(fit) => ms(fit.quantile(OWN_WORST_QUANTILE)),
            None => {
                let latency = self.services[s].latency;
                ms(latency.p50.max(latency.p99))
            }
        }
    }

    /// The calls' part of a service's worst case: groups in order, each costing its slowest
    /// call.
    fn calls_cost_ms(&self, s: usize) -> f64 {
        self.groups(s)
            .iter()
            .map(|group| self.group_cost_ms(s, group))
            .sum()
    }

    /// The calls of service `s` as they run, by index: each run of parallel calls one group, any
    /// other call a group of its own. A call that closes a cycle is left out, as if the file did
    /// not have it, so that no figure depends on itself. The one definition of grouping, so the
    /// figures and the fixes that cut them agree.
    pub fn groups(&self, s: usize) -> Vec<Vec<usize>> {
        let mut groups = Vec::new();
        let mut run: Vec<usize> = Vec::new();
        for (i, call) in self.services[s].calls.iter().enumerate() {
            if self.in_cycle[s][i] {
                continue;
            }
            if call.parallel {
                run.push(i);
            } else {
                if !run.is_empty() {
                    groups.push(std::mem::take(&mut run));
                }
                groups.push(vec![i]);
            }
        }
        if !run.is_empty() {
            groups.push(run);
        }
        groups
    }

    /// A group's cost: its slowest call.
    pub fn group_cost_ms(&self, s: usize, group: &[usize]) -> f64 {
        group
            .iter()
            .map(|&i| self.call_cost_ms(s, i))
            .fold(0.0, f64::max)
    }

    /// A group's cost with the timeouts of some of its calls replaced, so that a fix can say
    /// what it leaves.
    pub fn group_cost_ms_with(
        &self,
        s: usize,
        group: &[usize],
        timeouts: &[(usize, std::time::Duration)],
    ) -> f64 {
        group
            .iter()
            .map(|&i| match timeouts.iter().find(|&&(j, _)| j == i) {
                Some(&(_, timeout)) => cost_with_wait_ms(&self.services[s].calls[i], ms(timeout)),
                None => self.call_cost_ms(s, i),
            })
            .fold(0.0, f64::max)
    }

    /// Service `s`'s worst case with the timeouts of some of its calls replaced, summed as
    /// [`Model::new`] sums it, so that a fix checked with it holds when the graph is checked
    /// again.
    pub fn worst_case_ms_with(&self, s: usize, timeouts: &[(usize, std::time::Duration)]) -> f64 {
        let calls_ms: f64 = self
            .groups(s)
            .iter()
            .map(|group| self.group_cost_ms_with(s, group, timeouts))
            .sum();
        self.own_worst_ms(s) + calls_ms
    }

    /// The longest call `i` of service `s` can take:
    /// `count * min(request_timeout, max_attempts * timeout + backoff caps between attempts)`.
    ///
    /// `timeout` covers each attempt from its start, connecting included, as in the proxy and
    /// the simulator. Without a timeout the caller waits as long as the callee works, so an
    /// attempt costs the round trip plus the callee's worst case (nothing for a callee not in
    /// the graph), or its connect timeout when that is longer (a blackholed connect).
    pub fn call_cost_ms(&self, s: usize, i: usize) -> f64 {
        let call = &self.services[s].calls[i];
        let waited = match call.timeout {
            Some(timeout) => ms(timeout),
            None => {
                let callee = self.callee[s][i].map_or(0.0, |c| self.worst_case_ms[c]);
                ms(call.rtt) + callee
            }
        };
        cost_with_wait_ms(call, waited)
    }

    /// Amplification (as set, with one retrying layer, and with no retries), sustained
    /// amplification, depth, retrying layers and callers of every service the entry reaches,
    /// callers before callees (reverse postorder), so that a caller's figures are final before
    /// they are passed down.
    fn compute_path_figures(&mut self, postorder: &[usize]) {
        let Some(entry) = self.entry else {
            return;
        };
        self.amplification[entry] = 1.0;
        self.sustained[entry] = 1.0;
        self.one_layer_amplification[entry] = 1.0;
        self.fan_out[entry] = 1.0;
        for &s in postorder.iter().rev() {
            if !self.reachable[s] {
                continue;
            }
            for (i, call) in self.services[s].calls.iter().enumerate() {
                let Some(to) = self.callee[s][i] else {
                    continue;
                };
                if self.in_cycle[s][i] {
                    continue;
                }
                let count = f64::from(call.count);
                self.callers[to].push((s, i));
                self.amplification[to] += self.amplification[s] * f64::from(attempts(call)) * count;
                self.sustained[to] += self.sustained[s] * sustained_attempts(call) * count;
                let one_layer = match (retries(call), self.retry_layers[s]) {
                    (false, _) | (true, 1..) => 1,
                    (true, 0) => attempts(call).min(2),
                };
                self.one_layer_amplification[to] +=
                    self.one_layer_amplification[s] * f64::from(one_layer) * count;
                self.fan_out[to] += self.fan_out[s] * count;
                self.depth[to] = self.depth[to].max(self.depth[s] + 1);
                let layers = self.retry_layers[s] + u32::from(retries(call));
                self.retry_layers[to] = self.retry_layers[to].max(layers);
            }
        }
    }
}

/// The longest a call can take when each attempt lasts at most `attempt_ms`:
/// `count * min(request_timeout, max_attempts * attempt + backoff caps between attempts)`. Its
/// own function so that a fix can ask what a call would cost with another timeout.
pub(super) fn cost_with_wait_ms(call: &Call, attempt_ms: f64) -> f64 {
    let attempt_ms = match call.timeout {
        Some(_) => attempt_ms,
        // No timeout: a connect that never completes waits its own timeout.
        None => attempt_ms.max(ms_opt(call.connect_timeout)),
    };
    let every_attempt = f64::from(attempts(call)) * attempt_ms + backoff_ms(call);
    let one = call
        .request_timeout
        .map_or(every_attempt, |cap| every_attempt.min(ms(cap)));
    f64::from(call.count) * one
}

/// The longest a call waits between its attempts, in ms.
pub(super) fn backoff_ms(call: &Call) -> f64 {
    ms(call
        .backoff
        .worst_case_total(call.max_attempts.saturating_sub(1)))
}

/// Attempts of a call; zero attempts (which the parser refuses) count as one, since the call is
/// still in the file and a caller that makes it sends at least one request.
pub(super) fn attempts(call: &Call) -> u32 {
    call.max_attempts.max(1)
}

/// Whether a call retries at all.
pub(super) fn retries(call: &Call) -> bool {
    call.max_attempts > 1
}

/// Attempts per request while the call's limiter holds: a retry budget lets `ratio` retries per
/// request through (never more than the attempts allowed), a token bucket in steady failure lets
/// none through once it is drained, and without a limiter every attempt is made.
fn sustained_attempts(call: &Call) -> f64 {
    let attempts = f64::from(attempts(call));
    match call.limiter {
        Some(LimiterSpec::Budget { ratio, .. }) => (1.0 + ratio).min(attempts),
        Some(LimiterSpec::TokenBucket { .. }) => 1.0,
        None => attempts,
    }
}

/// The longest cycle path kept whole in a message; longer ones keep their two ends.
const CYCLE_PATH_SHOWN: usize = 8;

fn cut_path(on_cycle: &[(usize, usize)]) -> Vec<usize> {
    let services = on_cycle.iter().map(|&(s, _)| s);
    if on_cycle.len() <= CYCLE_PATH_SHOWN {
        return services.collect();
    }
    let half = CYCLE_PATH_SHOWN / 2;
    services
        .clone()
        .take(half)
        .chain(services.skip(on_cycle.len() - half))
        .collect()
}

/// Milliseconds, the unit every figure is reported in. Whole seconds and nanoseconds are
/// converted apart, so that a whole number of ms comes out exact (`as_secs_f64() * 1000` turns
/// 1612 ms into 1612.0000000000002, and a fix of exactly the figure would then not meet it).
pub(super) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs() as f64 * 1000.0 + f64::from(d.subsec_nanos()) / 1e6
}

pub(super) fn ms_opt(d: Option<std::time::Duration>) -> f64 {
    d.map_or(0.0, ms)
}
