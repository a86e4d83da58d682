//! The model's figures, per endpoint: the worst-case time it may keep working on one request,
//! the worst-case attempts it receives per user request, the sustained attempts with budgets
//! holding, and its depth.
//!
//! The unit of every figure is an endpoint (a [`Node`]), not a service: a gateway whose browse
//! endpoint calls the catalog and whose checkout endpoint calls orders makes one or the other per
//! request, so its worst case is the worse of the two, never their sum, and the catalog receives
//! browse's share of the gateway's requests, not all of them. A service without endpoints is one
//! node, its implicit endpoint, so its figures are what they always were. A call to a service with
//! endpoints that names none reaches each of them in its share (for load) and costs the worst of
//! them (for time).
//!
//! Every figure is a dynamic programme over one depth-first search: a path-by-path sum would be
//! exact too, but a graph of a few dozen layers has more paths than there are atoms, while the
//! search is linear in nodes plus calls. The search is iterative, because a chain of 10,000
//! services must not overflow the stack, and it finds the cycles first: the calls that close one
//! are reported and left out of every figure, so the rest is a DAG and nothing hangs.

use std::collections::HashMap;
use std::ops::Range;

use stormguard::estimate::LogNormal;

use crate::model::{Call, Graph, LimiterSpec, Service, Span};

/// The quantile of a service's own latency taken as its worst case: the p99.9, the tail a
/// timeout is usually set to cover (Brooker), since a lognormal's p100 is unbounded.
const OWN_WORST_QUANTILE: f64 = 0.999;

/// How deep [`Model::slower_than`] follows calls below the node asked about.
const MAX_DEPTH: u8 = 8;

/// How many answers [`Model::slower_than`] keeps (and so works out in full) per check.
const MAX_STATES: usize = 200_000;

/// A lower bound on the share of a node's requests slower than some time
/// ([`Model::slower_than`]), and the service whose own latency gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Slower {
    /// The share, in `[0, 1]`.
    pub share: f64,
    /// The service (index) whose own work bounds it: the node's own, or one it waits on.
    pub because: usize,
}

/// A call that closes a cycle: reported as `call-cycle`, and left out of every figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CycleCall {
    /// The calling node's index.
    pub service: usize,
    /// The call's index in its node's calls.
    pub call: usize,
    /// The nodes around the cycle, from the called one back to the caller (indices); long
    /// cycles are cut to their ends so that a message stays readable.
    pub path: Vec<usize>,
    /// How many nodes the cycle has (the path may be cut).
    pub len: usize,
}

/// One endpoint of one service: what every figure is computed for.
pub(super) struct Node<'g> {
    /// Its service's index.
    pub service: usize,
    /// Its name; `None` for the implicit endpoint of a service without endpoints.
    pub endpoint: Option<&'g str>,
    /// Its share of its service's requests.
    pub share: f64,
    /// The calls each of its requests makes.
    pub calls: &'g [Call],
    /// Where it is defined.
    pub span: Span,
    /// As findings name it: the service's name, with `/ENDPOINT` for a named endpoint
    /// (`gateway/checkout`).
    pub name: String,
}

/// Where a call goes: one endpoint of `service` (the one it names, or its only one), or all of
/// them, each in its share; the nodes of a service are consecutive, so a range holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// The called service's index.
    pub service: usize,
    /// The first node called.
    pub first: usize,
    /// One past the last node called.
    pub end: usize,
}

impl Target {
    /// The nodes called.
    pub fn nodes(self) -> Range<usize> {
        self.first..self.end
    }
}

/// The graph indexed for the rules, and every figure of the model.
///
/// Services are indexed in name order (the order of [`Graph::services`]), and their nodes in
/// that order, each service's endpoints in file order, so iterating indices is iterating names
/// and every output is deterministic.
pub(super) struct Model<'g> {
    /// The graph the figures are of.
    pub graph: &'g Graph,
    /// Services by index.
    pub services: Vec<&'g Service>,
    /// Endpoints by index, every service's in turn.
    pub nodes: Vec<Node<'g>>,
    /// Per service: its nodes.
    pub service_nodes: Vec<Range<usize>>,
    /// Per node, per call: where it goes, `None` when the called service is not in the graph
    /// (the parser refuses that; a graph built in code may still hold it).
    pub callee: Vec<Vec<Option<Target>>>,
    /// Per node, per call: whether the call closes a cycle, and so is left out of the figures.
    pub in_cycle: Vec<Vec<bool>>,
    /// The calls that close a cycle, in the order the search found them.
    pub cycles: Vec<CycleCall>,
    /// The entry service's index, if it is in the graph.
    pub entry: Option<usize>,
    /// Whether a node is reachable from the entry; only those get figures.
    pub reachable: Vec<bool>,
    /// Per service: its own latency fitted as a lognormal, `None` when the quantiles cannot be
    /// fitted (`p50` zero or above `p99`).
    pub fits: Vec<Option<LogNormal>>,
    /// Per node: the longest it may keep working on one request, in ms (every node).
    pub worst_case_ms: Vec<f64>,
    /// Per node: the mean time one of its requests holds a worker when nothing fails, in ms
    /// (every node): its own mean latency plus its calls' mean, as the simulator holds it.
    pub mean_hold_ms: Vec<f64>,
    /// Per node: worst-case attempts per user request (0 when unreachable), hedges' copies
    /// included (at most a call's `max_extra` per request).
    pub amplification: Vec<f64>,
    /// Per node: the same with retry budgets and token buckets holding.
    pub sustained: Vec<f64>,
    /// Per node: calls on the longest path from the entry.
    pub depth: Vec<u32>,
    /// Per node: the most retrying calls on any path from the entry to it.
    pub retry_layers: Vec<u32>,
    /// Per node: whether it, or anything it calls, retries a call, so that a caller giving up
    /// on it leaves retries running, not only work.
    pub retries_below: Vec<bool>,
    /// Per node: its callers' calls that are not closing a cycle, as (caller, call index), so
    /// that a rule can name the calls above a node without searching every node.
    pub callers: Vec<Vec<(usize, usize)>>,
    /// Per node: worst-case attempts per user request once every retrying call with another
    /// retrying layer above it makes one attempt, and the topmost layer at most two: what
    /// `retry-amplification`'s first fix leaves.
    pub one_layer_amplification: Vec<f64>,
    /// Per node: the same with one attempt on every call, i.e. the fan-out from `count` and
    /// from paths that meet; no retry setting brings a service below it.
    pub fan_out: Vec<f64>,
    /// Per (node, call): the latency floor of `timeout-below-latency`, once asked (a fix's
    /// search asks the same call's many times; each answer is a search of its own).
    pub floors: std::cell::RefCell<std::collections::HashMap<(usize, usize), std::time::Duration>>,
    /// [`Model::slower_than`]'s answers, by node, time (whole ms) and depth left.
    slower: std::cell::RefCell<std::collections::HashMap<(usize, u64, u8), Slower>>,
}

impl<'g> Model<'g> {
    /// Indexes `graph` and computes every figure.
    pub fn new(graph: &'g Graph) -> Model<'g> {
        let services: Vec<&Service> = graph.services.values().collect();
        let mut nodes = Vec::new();
        let mut service_nodes = Vec::with_capacity(services.len());
        for (s, service) in services.iter().enumerate() {
            let first = nodes.len();
            nodes.extend(service.each_endpoint().map(|endpoint| Node {
                service: s,
                endpoint: endpoint.name,
                share: endpoint.share,
                calls: endpoint.calls,
                span: endpoint.span,
                name: match endpoint.name {
                    Some(name) => format!("{}/{name}", service.name),
                    None => service.name.clone(),
                },
            }));
            service_nodes.push(first..nodes.len());
        }
        let index: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let callee = nodes
            .iter()
            .map(|node| {
                node.calls
                    .iter()
                    .map(|c| {
                        let service = *index.get(c.to.as_str())?;
                        let all = service_nodes[service].clone();
                        let named = c.endpoint.as_deref().and_then(|name| {
                            all.clone().find(|&n| nodes[n].endpoint == Some(name))
                        });
                        Some(match named {
                            Some(n) => Target {
                                service,
                                first: n,
                                end: n + 1,
                            },
                            None => Target {
                                service,
                                first: all.start,
                                end: all.end,
                            },
                        })
                    })
                    .collect()
            })
            .collect();
        let fits = services
            .iter()
            .map(|s| LogNormal::fit(s.latency.p50, s.latency.p99).ok())
            .collect();
        let n = nodes.len();
        let mut model = Model {
            graph,
            entry: graph
                .services
                .get(&graph.entry.service)
                .and_then(|s| index.get(s.name.as_str()).copied()),
            in_cycle: nodes.iter().map(|n| vec![false; n.calls.len()]).collect(),
            services,
            nodes,
            service_nodes,
            callee,
            cycles: Vec::new(),
            reachable: vec![false; n],
            fits,
            worst_case_ms: vec![0.0; n],
            mean_hold_ms: vec![0.0; n],
            amplification: vec![0.0; n],
            sustained: vec![0.0; n],
            depth: vec![0; n],
            retry_layers: vec![0; n],
            retries_below: vec![false; n],
            callers: vec![Vec::new(); n],
            one_layer_amplification: vec![0.0; n],
            fan_out: vec![0.0; n],
            floors: std::cell::RefCell::new(std::collections::HashMap::new()),
            slower: std::cell::RefCell::new(std::collections::HashMap::new()),
        };
        let postorder = model.search();
        model.compute_worst_cases(&postorder);
        model.compute_path_figures(&postorder);
        model
    }

    /// The entry service's nodes: where user requests go, each in its share.
    pub fn entry_nodes(&self) -> Range<usize> {
        self.entry
            .map_or(0..0, |entry| self.service_nodes[entry].clone())
    }

    /// The nodes call `i` of node `s` reaches, each with its share of the call's requests: the
    /// one it names (or the only one) with all of them, else every endpoint in its share.
    pub fn targets(&self, s: usize, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let target = self.callee[s][i];
        target.into_iter().flat_map(move |t| {
            let single = t.end - t.first == 1;
            t.nodes()
                .map(move |n| (n, if single { 1.0 } else { self.nodes[n].share }))
        })
    }

    /// A lower bound on the share of node `n`'s requests, nothing failing, that it answers later
    /// than `t_ms` after they arrive, and the service whose own latency gives that bound.
    ///
    /// Why a bound and not the distribution: a request's time is its own work plus its calls',
    /// and a sum of random times is slower than each of them, so the share slower than `t_ms` is
    /// at least its own work's and at least each required call's (a call that returns by its
    /// timeout, or its `request_timeout`, within `t_ms` adds nothing; a call to a service with
    /// endpoints is their mix). `timeout-below-latency` weighed the callee's own work alone and
    /// passed a 10 ms timeout on a callee that waits 50 ms on a database for every request,
    /// which the simulator then failed whole. Retries, queues and waits add more; leaving them
    /// out keeps it a bound, so a finding on it is never a false alarm.
    ///
    /// Bounded work: a node whose worst case fits in the time gets its own work's share alone,
    /// and calls are followed [`MAX_DEPTH`] deep, each node past that its own work's alone
    /// (either way still a lower bound); answers are kept for the model's life, so that a graph
    /// of 50,000 calls, each asking, is checked in seconds.
    pub fn slower_than(&self, n: usize, t_ms: f64) -> Slower {
        self.slower_than_in(n, t_ms, MAX_DEPTH)
    }

    /// How many answers [`Model::slower_than`] keeps.
    #[cfg(test)]
    pub fn slower_states(&self) -> usize {
        self.slower.borrow().len()
    }

    fn slower_than_in(&self, n: usize, t_ms: f64, depth: u8) -> Slower {
        let service = self.nodes[n].service;
        if t_ms <= 0.0 {
            return Slower {
                share: 1.0,
                because: service,
            };
        }
        // Up to a whole ms: the share slower than that is at most the share slower than
        // `t_ms`, so still a lower bound, and calls whose round trips differ by microseconds
        // share one answer (keyed by the exact time, a graph of 500 services whose calls each
        // had their own rtt took 27 s and 2 GB: a review).
        let t_ms = t_ms.ceil();
        let key = (n, t_ms as u64, depth);
        if let Some(known) = self.slower.borrow().get(&key) {
            return *known;
        }
        let mut best = Slower {
            share: self.fits[service].map_or(0.0, |fit| {
                fit.exceedance(std::time::Duration::from_secs_f64(t_ms / 1000.0))
            }),
            because: service,
        };
        // What it waits on can make it slower than `t_ms` only if its worst case can; past
        // [`MAX_STATES`] answers kept, nodes are weighed by their own work alone (still a
        // bound), so that no graph's check runs away.
        let room = self.slower.borrow().len() < MAX_STATES;
        if depth > 0 && room && t_ms < self.worst_case_ms[n] {
            for (i, call) in self.nodes[n].calls.iter().enumerate() {
                // A hedged call answers with the faster of its copies, sooner than its callee
                // may: it is left out, which keeps the bound (a review's hedged database call
                // was taken for its callee's tail, a false alarm).
                if self.in_cycle[n][i] || !call.required || call.hedge.is_some() {
                    continue;
                }
                let cap = match (call.timeout, call.request_timeout) {
                    (Some(t), Some(r)) => ms(t.min(r)),
                    (Some(t), None) | (None, Some(t)) => ms(t),
                    (None, None) => f64::INFINITY,
                };
                if cap <= t_ms {
                    continue;
                }
                let budget = t_ms - ms(call.rtt);
                let mut share = 0.0;
                let mut because = (0.0, service);
                for (m, weight) in self.targets(n, i) {
                    let below = self.slower_than_in(m, budget, depth - 1);
                    share += weight * below.share;
                    if weight * below.share > because.0 {
                        because = (weight * below.share, below.because);
                    }
                }
                if share > best.share {
                    best = Slower {
                        share: share.min(1.0),
                        because: because.1,
                    };
                }
            }
        }
        self.slower.borrow_mut().insert(key, best);
        best
    }

    /// The longest a call to `target` may wait for it: the worst case of the endpoint it names,
    /// or the worst of its endpoints.
    pub fn target_worst_ms(&self, target: Target) -> f64 {
        target
            .nodes()
            .map(|n| self.worst_case_ms[n])
            .fold(0.0, f64::max)
    }

    /// A per-node figure summed over service `svc`'s nodes: what the service as a whole receives.
    pub fn service_sum(&self, svc: usize, figure: &[f64]) -> f64 {
        self.service_nodes[svc].clone().map(|n| figure[n]).sum()
    }

    /// Depth-first search from the entry's nodes, then from every node not yet seen (so cycles
    /// away from the entry are found too). Marks what the entry reaches and the calls that close
    /// a cycle; returns every node in postorder, whose reverse is a topological order of the
    /// graph without those calls.
    fn search(&mut self) -> Vec<usize> {
        const NEW: u8 = 0;
        const ON_STACK: u8 = 1;
        const DONE: u8 = 2;
        let n = self.nodes.len();
        // Each node's edges, a call to a service with endpoints one per endpoint it reaches.
        let edges: Vec<Vec<(usize, usize)>> = (0..n)
            .map(|s| {
                (0..self.nodes[s].calls.len())
                    .flat_map(|i| self.targets(s, i).map(move |(to, _)| (i, to)))
                    .collect()
            })
            .collect();
        let mut state = vec![NEW; n];
        let mut stack_pos = vec![0usize; n];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let mut postorder = Vec::with_capacity(n);
        let entry = self.entry_nodes();
        let roots = entry.clone().chain(0..n);
        for root in roots {
            if state[root] != NEW {
                continue;
            }
            let from_entry = entry.contains(&root);
            state[root] = ON_STACK;
            stack_pos[root] = 0;
            stack.push((root, 0));
            while let Some(top) = stack.last_mut() {
                let (node, next) = *top;
                if from_entry {
                    self.reachable[node] = true;
                }
                if next == edges[node].len() {
                    stack.pop();
                    state[node] = DONE;
                    postorder.push(node);
                    continue;
                }
                top.1 += 1;
                let (call, to) = edges[node][next];
                match state[to] {
                    NEW => {
                        state[to] = ON_STACK;
                        stack_pos[to] = stack.len();
                        stack.push((to, 0));
                    }
                    ON_STACK if !self.in_cycle[node][call] => {
                        self.in_cycle[node][call] = true;
                        let on_cycle = &stack[stack_pos[to]..];
                        self.cycles.push(CycleCall {
                            service: node,
                            call,
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

    /// Worst-case time of every node, and whether retries run below it, callees before callers
    /// (postorder).
    fn compute_worst_cases(&mut self, postorder: &[usize]) {
        for &s in postorder {
            let own = self.own_worst_ms(s);
            let calls_ms = self.calls_cost_ms(s);
            self.worst_case_ms[s] = own + calls_ms;
            self.mean_hold_ms[s] = self.hold_of(s);
            self.retries_below[s] = self.nodes[s].calls.iter().enumerate().any(|(i, call)| {
                !self.in_cycle[s][i]
                    && (retries(call) || self.targets(s, i).any(|(c, _)| self.retries_below[c]))
            });
        }
    }

    /// A node's own latency at its worst, its service's: the p99.9 of its fit. An unfittable
    /// pair (which the parser refuses) counts as the larger of its two quantiles, rather than
    /// failing the check.
    pub fn own_worst_ms(&self, s: usize) -> f64 {
        let service = self.nodes[s].service;
        match self.fits[service] {
            Some(fit) => ms(fit.quantile(OWN_WORST_QUANTILE)),
            None => {
                let latency = self.services[service].latency;
                ms(latency.p50.max(latency.p99))
            }
        }
    }

    /// The mean of a node's own latency, its service's: `exp(mu + sigma^2 / 2)` of the
    /// lognormal fitted to its p50 and p99, the distribution the simulator draws own work from
    /// (the median understates it: a p50 of 40 ms and p99 of 120 ms have a mean of 44.7 ms).
    /// An unfittable pair (which the parser refuses) counts as its median.
    pub fn own_mean_ms(&self, s: usize) -> f64 {
        let service = self.nodes[s].service;
        match self.fits[service] {
            Some(fit) => (fit.mu + fit.sigma * fit.sigma / 2.0).exp() * 1000.0,
            None => ms(self.services[service].latency.p50),
        }
    }

    /// The mean time a request of node `s` holds its worker when nothing fails: the simulator
    /// holds a worker from the start of the request's own work until it answers, its calls
    /// included (a thread per request), so a slow callee fills its callers' workers too. Its
    /// own mean plus, for each group of calls in order, its slowest call's mean:
    /// `count x min(timeout, rtt + the callee's mean hold)`, a callee with endpoints in their
    /// shares. Queueing, contention and retries are left out: this is the hold of an idle,
    /// healthy graph. Callees before callers (postorder), so theirs are final.
    fn hold_of(&self, s: usize) -> f64 {
        let calls: f64 = self
            .groups(s)
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|&i| {
                        let call = &self.nodes[s].calls[i];
                        let callee: f64 = self
                            .targets(s, i)
                            .map(|(n, share)| share * self.mean_hold_ms[n])
                            .sum();
                        let attempt = ms(call.rtt) + callee;
                        let attempt = call.timeout.map_or(attempt, |t| attempt.min(ms(t)));
                        f64::from(call.count) * attempt
                    })
                    .fold(0.0, f64::max)
            })
            .sum();
        self.own_mean_ms(s) + calls
    }

    /// The calls' part of a node's worst case: groups in order, each costing its slowest
    /// call.
    fn calls_cost_ms(&self, s: usize) -> f64 {
        self.groups(s)
            .iter()
            .map(|group| self.group_cost_ms(s, group))
            .sum()
    }

    /// The calls of node `s` as they run, by index: each run of parallel calls one group, any
    /// other call a group of its own. A call that closes a cycle is left out, as if the file did
    /// not have it, so that no figure depends on itself. The one definition of grouping, so the
    /// figures and the fixes that cut them agree.
    pub fn groups(&self, s: usize) -> Vec<Vec<usize>> {
        let mut groups = Vec::new();
        let mut run: Vec<usize> = Vec::new();
        for (i, call) in self.nodes[s].calls.iter().enumerate() {
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
                Some(&(_, timeout)) => cost_with_wait_ms(&self.nodes[s].calls[i], ms(timeout)),
                None => self.call_cost_ms(s, i),
            })
            .fold(0.0, f64::max)
    }

    /// Node `s`'s worst case with the timeouts of some of its calls replaced, summed as
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

    /// The longest call `i` of node `s` can take:
    /// `count * min(request_timeout, max_attempts * timeout + backoff caps between attempts)`.
    ///
    /// `timeout` covers each attempt from its start, connecting included, as in the proxy and
    /// the simulator. Without a timeout the caller waits as long as the callee works, so an
    /// attempt costs the round trip plus the callee's worst case (the worst of the endpoints
    /// it reaches; nothing for a callee not in the graph), or its connect timeout when that is
    /// longer (a blackholed connect).
    pub fn call_cost_ms(&self, s: usize, i: usize) -> f64 {
        let call = &self.nodes[s].calls[i];
        let waited = match call.timeout {
            Some(timeout) => ms(timeout),
            None => {
                let callee = self.callee[s][i].map_or(0.0, |t| self.target_worst_ms(t));
                ms(call.rtt) + callee
            }
        };
        cost_with_wait_ms(call, waited)
    }

    /// Amplification (as set, with one retrying layer, and with no retries), sustained
    /// amplification, depth, retrying layers and callers of every node the entry reaches,
    /// callers before callees (reverse postorder), so that a caller's figures are final before
    /// they are passed down. Users' requests reach the entry's endpoints in their shares, and a
    /// call each endpoint it reaches in its share of the call's requests.
    fn compute_path_figures(&mut self, postorder: &[usize]) {
        for entry in self.entry_nodes() {
            let share = self.nodes[entry].share;
            self.amplification[entry] = share;
            self.sustained[entry] = share;
            self.one_layer_amplification[entry] = share;
            self.fan_out[entry] = share;
        }
        for &s in postorder.iter().rev() {
            if !self.reachable[s] {
                continue;
            }
            for (i, call) in self.nodes[s].calls.iter().enumerate() {
                if self.in_cycle[s][i] {
                    continue;
                }
                let count = f64::from(call.count);
                let one_layer = match (retries(call), self.retry_layers[s]) {
                    (false, _) | (true, 1..) => 1,
                    (true, 0) => attempts(call).min(2),
                };
                let layers = self.retry_layers[s] + u32::from(retries(call));
                // The call's requests a second with every retry above it made: each deposits
                // into its budget, whose reserve then counts for less.
                let per_sec = self.graph.entry.rate * self.sustained[s] * count;
                let sustained_call = sustained_attempts(call, per_sec);
                let targets: Vec<(usize, f64)> = self.targets(s, i).collect();
                for (to, share) in targets {
                    let count = count * share;
                    self.callers[to].push((s, i));
                    let hedges = hedges(call);
                    self.amplification[to] +=
                        self.amplification[s] * (f64::from(attempts(call)) + hedges) * count;
                    self.sustained[to] += self.sustained[s] * (sustained_call + hedges) * count;
                    self.one_layer_amplification[to] +=
                        self.one_layer_amplification[s] * (f64::from(one_layer) + hedges) * count;
                    self.fan_out[to] += self.fan_out[s] * count;
                    self.depth[to] = self.depth[to].max(self.depth[s] + 1);
                    self.retry_layers[to] = self.retry_layers[to].max(layers);
                }
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
        .worst_case_total(attempts(call).saturating_sub(1)))
}

/// Attempts of a call; zero attempts (which the parser refuses) count as one, since the call is
/// still in the file and a caller that makes it sends at least one request, and so does a call
/// that retries nothing (one not idempotent whose `retry_on` lists only what such a call is
/// never retried on: [`Call::retried_on`]).
pub(super) fn attempts(call: &Call) -> u32 {
    if retries(call) {
        call.max_attempts
    } else {
        1
    }
}

/// Hedge copies a call may add per request: at most `max_extra`, since a request earns
/// `max_extra` of a hedge when it begins and every copy spends one (`HedgePolicy::on_request`
/// in the library, which the proxy and the simulator share), failing or not. None without
/// hedging, and none for a call that is not idempotent, which is never hedged
/// (`HedgePolicy::try_hedge`).
pub(super) fn hedges(call: &Call) -> f64 {
    match &call.hedge {
        Some(hedge) if call.is_idempotent() => hedge.max_extra,
        _ => 0.0,
    }
}

/// Whether a call retries at all: attempts to spare, and a failure it may retry
/// ([`Call::retried_on`]: for a call that is not idempotent, only the failures before the
/// request was sent and the answers that decline it).
pub(super) fn retries(call: &Call) -> bool {
    call.max_attempts > 1 && !call.retried_on().is_empty()
}

/// Attempts per request while the call's limiter holds, at `per_sec` requests a second on the
/// call: a retry budget lets `ratio` retries per request through plus its reserve of
/// `min_per_sec` a second shared by those requests (the library's `RetryBudget`, which the proxy
/// and the simulator run: at most `ratio * requests + min_per_sec` retries a second), never more
/// than the attempts allowed; a token bucket in steady failure lets none through once it is
/// drained, unless a retry costs nothing (`retry_cost` or `timeout_cost` 0), which never drains
/// it; without a limiter every attempt is made.
///
/// Before, the reserve was left out, and a call of 5 requests a second under a budget of
/// `min_per_sec = 10` was said to make 1.2 attempts a request where `sim` saw 2.95.
pub(super) fn sustained_attempts(call: &Call, per_sec: f64) -> f64 {
    let attempts = f64::from(attempts(call));
    match call.limiter {
        Some(LimiterSpec::Budget { ratio, min_per_sec }) => {
            let reserve = if per_sec > 0.0 {
                f64::from(min_per_sec) / per_sec
            } else {
                f64::INFINITY
            };
            (1.0 + ratio + reserve).min(attempts)
        }
        Some(LimiterSpec::TokenBucket {
            retry_cost,
            timeout_cost,
            ..
        }) if retry_cost > 0 && timeout_cost > 0 => 1.0,
        Some(LimiterSpec::TokenBucket { .. }) | None => attempts,
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
