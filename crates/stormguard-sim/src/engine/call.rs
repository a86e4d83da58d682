//! What a caller does: its calls in order, each attempt's instance and timeout, and every retry
//! decision, all taken by the policy core exactly as the proxy takes them, with the call's
//! latency estimator where the proxy uses its route's.

use std::time::Duration;

use rand::Rng;
use stormguard::classify::AttemptResult;
use stormguard::policy::{Decision, GiveUp, Limiter};

use super::events::{Event, Handle};
use super::hedge::Unit;
use super::model::{nanos, Model, NO_TIMEOUT};
use super::slab::Key;
use super::state::{Attempt, CallRun, Caller, Job, Sim};

impl Sim<'_> {
    /// Starts the job's current run of calls, or answers when none is left.
    pub(crate) fn run_calls(&mut self, key: Key) {
        let model = self.model;
        let job = &mut self.jobs[key.slot()];
        match next_run(model, job) {
            Some(run) => {
                let (deadline, caller) = (job.deadline, job.instance);
                self.start_calls(key, run, deadline, caller);
            }
            None => self.respond(key, true),
        }
    }

    /// Starts the calls of `run`, job `key`'s current run, from its instance `caller`.
    fn start_calls(&mut self, key: Key, run: &[usize], deadline: Option<u64>, caller: usize) {
        let model = self.model;
        for &edge in run {
            let balancer = self.balancers.of(edge, caller);
            let reps_left = model.edges[edge].count.max(1);
            // The deadlines, the endpoint, the retry state and the unit are set before they
            // are read, by start_repetition and send_attempt; a reused call's `tried` was
            // emptied when it finished, and keeps its buffer.
            let call = self.runs.insert_with(
                |call| {
                    call.job = key;
                    call.edge = edge;
                    call.balancer = balancer;
                    call.reps_left = reps_left;
                    call.retry = None;
                    call.job_deadline = deadline;
                    call.unit.primary = None;
                    call.unit.hedge = None;
                    call.unit.race = None;
                },
                || CallRun {
                    job: key,
                    edge,
                    endpoint: 0,
                    balancer,
                    reps_left,
                    retry: None,
                    tried: Vec::new(),
                    job_deadline: deadline,
                    deadline,
                    unit: Unit::default(),
                },
            );
            self.start_repetition(call);
        }
    }

    /// One repetition of a call: a fresh retry state, unless the deadline leaves no time. Its
    /// deadline is the job's, cut by the call's `request_timeout` (the policy's overall
    /// timeout), as the proxy's deadline layer cuts a request's.
    fn start_repetition(&mut self, key: Key) {
        let model = self.model;
        let t = self.now;
        let run = self.runs.get_mut(key).expect("a started call is alive");
        let edge = &model.edges[run.edge];
        let policy = &edge.policy;
        let own = policy
            .overall_timeout
            .map(|timeout| t.saturating_add(nanos(timeout)));
        let rep_deadline = match (run.job_deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = self.clock.at(t);
        run.deadline = rep_deadline;
        if let Some(at) = rep_deadline {
            let remaining = Some(left(at, t));
            if !policy.should_start_within(remaining, now, Some(&edge.estimator)) {
                self.finish_call(key, false);
                return;
            }
        }
        // `policy.begin(now)`: the request counted in the limiter, a fresh state. A budget
        // with an epoch takes the deposit in virtual nanoseconds, at the same slot.
        let state = match (&policy.limiter, self.budget_epochs[run.edge]) {
            (Limiter::Budget(budget), Some(epoch)) => {
                budget.deposit_after_epoch(t - epoch);
                policy.first_attempt_state()
            }
            (Limiter::Budget(budget), None) => {
                let state = policy.begin(now);
                self.budget_epochs[run.edge] = budget
                    .epoch()
                    .map(|epoch| nanos(epoch.duration_since(self.clock.origin)));
                state
            }
            _ => policy.begin(now),
        };
        let endpoint = match edge.to_endpoint {
            Some(endpoint) => endpoint,
            None => {
                let rng = &mut self.endpoint_rng;
                model.services[edge.to].endpoint_for(|| rng.random::<f64>())
            }
        };
        run.endpoint = endpoint;
        run.retry = Some(state);
        run.tried.clear();
        self.send_attempt(key);
    }

    /// Sends one attempt to the instance the caller's balancer picks, with the timeout the
    /// policy gives it, and starts its unit: the attempt and, on a hedged edge, its race.
    pub(crate) fn send_attempt(&mut self, key: Key) {
        let model = self.model;
        let t = self.now;
        let run = self.runs.get_mut(key).expect("a retrying call is alive");
        let edge_index = run.edge;
        let edge = &model.edges[edge_index];
        let remaining = run.deadline.map(|at| left(at, t));
        let Some(timeout) = edge.policy.attempt_timeout_within(remaining, None) else {
            self.finish_call(key, false);
            return;
        };
        let timeout = nanos(timeout);
        let instance = self
            .balancers
            .choose(run.balancer, &run.tried, t, &mut self.policy_rng);
        run.tried.push(instance);
        self.calls[edge_index].attempts += 1;
        let attempt = self.attempts.next_key();
        self.agenda
            .schedule(t + edge.half_rtt, Event::Arrive(attempt));
        // A call without a timeout waits as long as it takes; its event would only sit in the
        // heap for the whole run.
        let ends = (timeout < nanos(NO_TIMEOUT)).then(|| t.saturating_add(timeout));
        let timeout_handle = match ends {
            // The edge's lane: its attempts' timeouts, in the order they were sent.
            Some(end) => {
                self.agenda
                    .schedule_in_lane(edge_index, end, Event::AttemptTimeout(attempt))
            }
            None => Handle::NONE,
        };
        // The unit this attempt starts (see [`Sim::start_race`]).
        let retry = run.retry.as_ref().is_some_and(|state| state.attempts() > 1);
        let unit = &mut run.unit;
        unit.primary = Some(attempt);
        unit.hedge = None;
        unit.race = None;
        unit.sent_at = t;
        unit.ends = ends;
        self.attempts.insert(Attempt {
            caller: Caller::Run(key),
            edge: edge_index as u32,
            balancer: run.balancer as u32,
            caller_job: run.job,
            service: edge.to,
            endpoint: run.endpoint,
            instance,
            half_rtt: edge.half_rtt,
            sent_at: t,
            connect_timeout: edge.connect_timeout,
            deadline: edge.propagate_deadline.then(|| t.saturating_add(timeout)),
            caller_done: false,
            callee_done: false,
            abandoned: false,
            blackholed: false,
            timeout: timeout_handle,
        });
        if edge.hedge.is_some() {
            self.start_race(key, attempt, ends, retry);
        }
    }

    /// Attempt (unit) of call `key` on `edge`, sent at `sent_at`, came to `result`: its latency
    /// is recorded as the proxy's retry layer records it, for a response only (an error's or a
    /// timeout's time says nothing of latency), and the retry policy decides what comes next.
    pub(crate) fn attempt_done(
        &mut self,
        key: Key,
        edge: usize,
        sent_at: u64,
        result: AttemptResult,
    ) {
        let edge = &self.model.edges[edge];
        if let (AttemptResult::Response { .. }, true) = (result, edge.latency_read) {
            let latency = Duration::from_nanos(self.now - sent_at);
            edge.estimator.record(self.clock.at(self.now), latency);
        }
        self.run_result(key, result);
    }

    /// An attempt's outcome reached the caller: the policy decides what comes next.
    fn run_result(&mut self, key: Key, result: AttemptResult) {
        let model = self.model;
        let now = self.clock.at(self.now);
        let run = self
            .runs
            .get_mut(key)
            .expect("a call outlives its attempts");
        let remaining = run.deadline.map(|at| left(at, self.now));
        let edge_index = run.edge;
        let edge = &model.edges[edge_index];
        let state = run.retry.as_mut().expect("begun before any attempt");
        let decision = edge.policy.decide_within(
            state,
            result,
            edge.idempotent,
            remaining,
            now,
            Some(&edge.estimator),
            &mut self.policy_rng,
        );
        match decision {
            Decision::Success => {
                if run.reps_left > 1 {
                    run.reps_left -= 1;
                    self.start_repetition(key);
                } else {
                    self.finish_call(key, true);
                }
            }
            Decision::Retry { after, .. } => {
                self.calls[edge_index].retries += 1;
                if after.is_zero() {
                    self.send_attempt(key);
                } else {
                    let at = self.now.saturating_add(nanos(after));
                    self.agenda.schedule(at, Event::Retry(key));
                }
            }
            Decision::GiveUp(reason) => {
                if matches!(reason, GiveUp::Denied(..)) {
                    self.calls[edge_index].retries_denied += 1;
                }
                self.finish_call(key, false);
            }
        }
    }

    /// A call is over; when it was the last of its run, the request moves on or fails.
    fn finish_call(&mut self, key: Key, success: bool) {
        let run = self.runs.remove(key).expect("a call finishes once");
        // Emptied in place: the next call stored in this slot reuses its buffer.
        run.tried.clear();
        let (edge, job_key) = (run.edge, run.job);
        let required = self.model.edges[edge].required;
        let job = &mut self.jobs[job_key.slot()];
        job.failed |= !success && required;
        job.outstanding -= 1;
        if job.outstanding > 0 {
            return;
        }
        if job.failed {
            self.respond(job_key, false);
            return;
        }
        // The next run, on the job already looked up (as run_calls does).
        job.step += 1;
        match next_run(self.model, job) {
            Some(run) => {
                let (deadline, caller) = (job.deadline, job.instance);
                self.start_calls(job_key, run, deadline, caller);
            }
            None => self.respond(job_key, true),
        }
    }
}

/// `job`'s current run of calls, with its calls counted outstanding (before any starts: a call
/// that ends at once must not see the run finished); `None` when none is left.
fn next_run<'m>(model: &'m Model, job: &mut Job) -> Option<&'m [usize]> {
    let run = model.services[job.service].endpoints[job.endpoint]
        .runs
        .get(job.step)?;
    job.outstanding = run.len();
    Some(run)
}

/// The time left at virtual time `t` of a deadline at virtual time `at`, none once it passed:
/// what the policy core reads of a deadline (`Deadline::remaining`), in the engine's nanoseconds.
#[inline]
fn left(at: u64, t: u64) -> Duration {
    Duration::from_nanos(at.saturating_sub(t))
}
