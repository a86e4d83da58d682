//! The state of a run and its event loop: what is alive, who waits for whom, and the tallies.
//!
//! The handlers live beside it: [`super::service`] for what happens on an instance, [`super::call`]
//! for what a caller does with each attempt's outcome.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_distr::Distribution;
use stormguard::backoff::{seeded, JitterRng};
use stormguard::classify::AttemptResult;
use stormguard::instance::EjectionConfig;
use stormguard::policy::RetryState;

use super::balance::Balancers;
use super::events::{Agenda, Event, Handle};
use super::hedge::{CachedDelay, Unit};
use super::limits;
use super::model::{nanos, Model};
use super::outcome::{CallStats, Outcome, ServiceStats, UserStats};
use super::recovery::recovered_at;
use super::slab::{Key, Slab};
use super::timeline::{Timeline, SECOND};
use super::SimError;

/// Who waits for an attempt's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller {
    /// A user, at the entry service.
    User,
    /// A call of a request on another service.
    Run(Key),
}

/// One attempt, alive until both its caller is done with it (answer or timeout) and the callee
/// is (answered, dropped, or never took it).
///
/// `Copy`, and small: a handler copies it out of the slab once rather than looking it up
/// again for each field it needs.
#[derive(Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) caller: Caller,
    /// For a call's attempt, the call's edge, its caller's balancer and the calling job, copied
    /// from the call when sent, so that an answer or a timeout, and the walk up to the users,
    /// need no lookup of the call; unused for a user's.
    pub(crate) edge: u32,
    pub(crate) balancer: u32,
    pub(crate) caller_job: Key,
    pub(crate) service: usize,
    /// The callee's endpoint the request is for: a retry or hedge of a request is for the same.
    pub(crate) endpoint: usize,
    pub(crate) instance: usize,
    pub(crate) half_rtt: u64,
    pub(crate) sent_at: u64,
    pub(crate) connect_timeout: Option<u64>,
    /// When the callee may drop it: set only when the edge propagates its deadline.
    pub(crate) deadline: Option<u64>,
    pub(crate) caller_done: bool,
    pub(crate) callee_done: bool,
    /// The caller gave up on it: work done for it from now on is wasted.
    pub(crate) abandoned: bool,
    pub(crate) blackholed: bool,
    /// The caller's timeout for it, cancelled when the caller is done with it otherwise.
    pub(crate) timeout: Handle,
}

/// A request an instance accepted: queued, working, or waiting for its calls.
///
/// Named by the key of the attempt it serves, and stored beside it ([`Sim::jobs`]): an attempt
/// has at most one job, which ends before the attempt is freed (the attempt is the callee's
/// until the job answers or is dropped), so the job needs no key, slot or free list of its own.
#[derive(Clone, Copy, Default)]
pub(crate) struct Job {
    pub(crate) service: usize,
    /// Its instance's place in [`Sim::instances`] and [`Sim::loads`].
    pub(crate) slot: usize,
    /// The endpoint whose calls it makes.
    pub(crate) endpoint: usize,
    pub(crate) instance: usize,
    pub(crate) deadline: Option<u64>,
    pub(crate) queued_at: u64,
    pub(crate) work: u64,
    /// The run of calls in progress.
    pub(crate) step: usize,
    /// Calls of that run not finished yet.
    pub(crate) outstanding: usize,
    pub(crate) failed: bool,
}

/// One call of a request along an edge, through its repetitions and retries.
pub(crate) struct CallRun {
    pub(crate) job: Key,
    pub(crate) edge: usize,
    /// The callee's endpoint of the current repetition, drawn when it starts unless the edge
    /// names one, so that its retries and hedges go to the same endpoint.
    pub(crate) endpoint: usize,
    /// The calling instance's balancer for the edge (see [`Balancers::of`]).
    pub(crate) balancer: usize,
    pub(crate) reps_left: u32,
    pub(crate) retry: Option<RetryState>,
    pub(crate) tried: Vec<usize>,
    /// The calling job's deadline (what its caller propagated), for every repetition.
    pub(crate) job_deadline: Option<u64>,
    /// The current repetition's deadline: the job's, cut by the call's `request_timeout`.
    pub(crate) deadline: Option<u64>,
    /// The attempt in flight, with its hedge.
    pub(crate) unit: Unit,
}

#[derive(Default)]
pub(crate) struct InstanceState {
    pub(crate) busy: u32,
    pub(crate) queue: VecDeque<Key>,
    /// When the queue last went from empty to holding a request: CoDel's overload is a queue
    /// that has not emptied for an interval.
    pub(crate) nonempty_since: u64,
}

/// A service's counts in integer nanoseconds, turned into [`ServiceStats`] at the end.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) attempts: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) rejected: u64,
    pub(crate) unreachable: u64,
    pub(crate) timed_out: u64,
    pub(crate) dropped: u64,
    pub(crate) queue_dropped: u64,
    pub(crate) wasted_ns: u128,
    pub(crate) work_ns: u128,
    pub(crate) started: u64,
    pub(crate) queue_wait_ns: u128,
    pub(crate) max_queue: u64,
    /// Attempts per endpoint, in the service's endpoint order.
    pub(crate) endpoint_attempts: Vec<u64>,
}

/// Virtual time as the policy core reads it: `Instant`s from an origin.
pub(crate) struct Clock {
    /// The instant virtual time 0 maps to.
    pub(crate) origin: Instant,
    /// The last virtual time converted, and the result: an attempt reads the present half a
    /// dozen times, and each conversion divides and normalises.
    last: Cell<(u64, Instant)>,
}

impl Clock {
    fn new(origin: Instant) -> Self {
        Clock {
            origin,
            last: Cell::new((0, origin)),
        }
    }

    /// The policy core's view of virtual time `t`, usually the present.
    ///
    /// A field of its own rather than a method of [`Sim`], so that a handler can read the time
    /// while it holds a call or an attempt borrowed from the engine's storage.
    #[inline]
    pub(crate) fn at(&self, t: u64) -> Instant {
        let (last, instant) = self.last.get();
        if t == last {
            return instant;
        }
        let instant = self.origin + Duration::from_nanos(t);
        self.last.set((t, instant));
        instant
    }

    /// [`at`](Self::at) for a time other than the present (a deadline, the end of a unit),
    /// converted without displacing the present from the cache, where the next reading of
    /// the present would miss it.
    #[inline]
    pub(crate) fn later(&self, t: u64) -> Instant {
        self.origin + Duration::from_nanos(t)
    }
}

pub(crate) struct Sim<'m> {
    pub(crate) model: &'m Model,
    seed: u64,
    pub(crate) now: u64,
    pub(crate) clock: Clock,
    /// When the last event that changed anything happened: the end of the drain. Timeouts of
    /// attempts answered long ago stay in the agenda (a user's for its whole patience) and
    /// change nothing, so they must not stretch the run.
    settled_at: u64,
    pub(crate) agenda: Agenda,
    /// Separate streams, so that a change of policy does not change when users arrive nor how
    /// long work takes: two graphs run on the same seed see the same traffic.
    arrivals_rng: JitterRng,
    pub(crate) work_rng: JitterRng,
    pub(crate) policy_rng: JitterRng,
    /// Which endpoint a request takes, apart from every other draw, so that a graph without
    /// endpoints (which draws none) runs exactly as it did before they existed.
    pub(crate) endpoint_rng: JitterRng,
    /// Every service's instances, one service after another (see [`ServiceModel::first`]).
    ///
    /// [`ServiceModel::first`]: super::model::ServiceModel::first
    pub(crate) instances: Vec<InstanceState>,
    /// Requests in flight (queued or holding a worker) per instance, laid out as `instances`:
    /// the load users' choice of an entry instance compares. A caller's balancer compares its
    /// own attempts in flight.
    pub(crate) loads: Vec<u64>,
    /// Each calling instance's balancer per edge, which picks its attempts' instances.
    pub(crate) balancers: Balancers,
    pub(crate) attempts: Slab<Attempt>,
    /// Attempts stored whose caller gave up on them: while there are none, no work can be
    /// wasted, and finished work need not walk up its callers to find out.
    pub(crate) abandoned_stored: usize,
    /// The job of each attempt an instance accepted, at the attempt's slot ([`Key::slot`]):
    /// valid from the acceptance until the job answers or is dropped, and named by the
    /// attempt's key in events, queues and calls. A `Vec` beside the attempts' slab rather
    /// than a slab of its own: one store and no free list per job, and no generation to check
    /// on each of the half-dozen lookups a job takes.
    pub(crate) jobs: Vec<Job>,
    pub(crate) runs: Slab<CallRun>,
    pub(crate) tallies: Vec<Tally>,
    pub(crate) calls: Vec<CallStats>,
    pub(crate) users: UserStats,
    pub(crate) timeline: Timeline,
    /// Per edge: its quantile hedge delay as last read.
    pub(crate) hedge_delays: Vec<CachedDelay>,
    /// Per edge: its retry budget's epoch in virtual nanoseconds, once the budget has one, so
    /// that a call's deposit is made in nanoseconds (`RetryBudget::deposit_after_epoch`)
    /// rather than through an `Instant` made and subtracted again.
    pub(crate) budget_epochs: Vec<Option<u64>>,
}

impl<'m> Sim<'m> {
    pub(crate) fn new(model: &'m Model, seed: u64, origin: Instant) -> Self {
        let all_instances = model.services.iter().map(|s| s.instances).sum();
        let calls = model
            .edges
            .iter()
            .map(|e| CallStats {
                from: model.caller_name(e),
                to: model.services[e.to].name.clone(),
                ..CallStats::default()
            })
            .collect();
        Sim {
            model,
            seed,
            now: 0,
            clock: Clock::new(origin),
            settled_at: 0,
            agenda: Agenda::for_rate(events_per_second(model)),
            arrivals_rng: seeded(seed),
            work_rng: seeded(seed ^ 0x9e37_79b9_7f4a_7c15),
            policy_rng: seeded(seed ^ 0xc2b2_ae3d_27d4_eb4f),
            endpoint_rng: seeded(seed ^ 0x1656_67b1_9e37_79f9),
            instances: (0..all_instances)
                .map(|_| InstanceState::default())
                .collect(),
            loads: vec![0; all_instances],
            // The proxy's balancer ejects on its defaults, and the graph has no setting for it.
            balancers: Balancers::new(model, origin, Some(EjectionConfig::default())),
            attempts: Slab::new(),
            abandoned_stored: 0,
            jobs: Vec::new(),
            runs: Slab::new(),
            tallies: model
                .services
                .iter()
                .map(|s| Tally {
                    endpoint_attempts: vec![0; s.endpoints.len()],
                    ..Tally::default()
                })
                .collect(),
            calls,
            users: UserStats::default(),
            timeline: Timeline::new(model.services.len(), nanos(model.duration)),
            hedge_delays: vec![CachedDelay::default(); model.edges.len()],
            budget_epochs: vec![None; model.edges.len()],
        }
    }

    /// The policy core's view of the current virtual time.
    pub(crate) fn instant(&self, t: u64) -> Instant {
        self.clock.at(t)
    }

    /// Runs to the end of the drain, or stops with [`SimError::Bound`] once it is over a bound
    /// of [`limits`] (checked every few thousand events, so that the check costs nothing).
    pub(crate) fn run(mut self, progress: &mut dyn FnMut(Duration)) -> Result<Outcome, SimError> {
        self.schedule_next_user(0);
        let mut next_tick = SECOND;
        let mut events: u64 = 0;
        let mut arrived: u64 = 0;
        while let Some((at, event)) = self.agenda.pop() {
            self.now = at;
            events += 1;
            if events % 4096 == 0 {
                // Arrivals so far, this event's included (counted below, in its arm).
                let arrived = arrived + u64::from(matches!(event, Event::Arrive(_)));
                limits::stop(self.model, arrived, self.agenda.len(), at)?;
            }
            if at >= next_tick {
                progress(Duration::from_nanos(at));
                next_tick = (at / SECOND + 1) * SECOND;
                let spans = self.model.services.iter().map(|s| (s.first, s.instances));
                self.timeline.enter(at, &self.instances, spans);
            }
            let acted = match event {
                Event::UserArrival => {
                    self.user_arrival();
                    true
                }
                Event::Arrive(a) => {
                    arrived += 1;
                    self.arrive(a);
                    true
                }
                Event::AttemptTimeout(a) => self.attempt_timeout(a, false),
                Event::ConnectTimeout(a) => self.attempt_timeout(a, true),
                Event::Response(a, answer) => self.response(a, answer.result()),
                Event::WorkDone(j) => {
                    self.work_done(j);
                    true
                }
                Event::Retry(r) => {
                    self.send_attempt(r);
                    true
                }
                Event::Hedge(a) => self.hedge(a),
                Event::Lane(_) => unreachable!("the agenda opens its lanes itself"),
            };
            if acted {
                self.settled_at = at;
            }
        }
        progress(Duration::from_nanos(self.now));
        Ok(self.into_outcome())
    }

    fn schedule_next_user(&mut self, after: u64) {
        let rng = &mut self.arrivals_rng;
        if let Some(at) = self
            .model
            .load
            .next_arrival(after, &mut || rand_distr::Exp1.sample(rng))
        {
            self.agenda.schedule(at, Event::UserArrival);
        }
    }

    fn user_arrival(&mut self) {
        self.users.requests += 1;
        self.timeline.user_arrived();
        let entry = self.model.entry;
        let rng = &mut self.endpoint_rng;
        let endpoint = self.model.services[entry].endpoint_for(|| rng.random::<f64>());
        // Users are behind no stormguard balancer and never retry: load alone picks.
        let service = &self.model.services[entry];
        let loads = &self.loads[service.first..service.first + service.instances];
        let instance = stormguard::instance::choose(loads, &[], &mut self.policy_rng)
            .expect("every service has an instance");
        let attempt = self.attempts.next_key();
        // Lanes of timeouts: one per edge, by its number, and the users' after them.
        let timeout = self.agenda.schedule_in_lane(
            self.model.edges.len(),
            self.now.saturating_add(self.model.user_timeout),
            Event::AttemptTimeout(attempt),
        );
        self.attempts.insert(Attempt {
            caller: Caller::User,
            edge: 0,
            balancer: 0,
            caller_job: Key::NONE,
            service: entry,
            endpoint,
            instance,
            half_rtt: 0,
            sent_at: self.now,
            connect_timeout: None,
            deadline: None,
            caller_done: false,
            callee_done: false,
            abandoned: false,
            blackholed: false,
            timeout,
        });
        self.schedule_next_user(self.now);
        self.arrive(attempt);
    }

    /// The caller stops waiting: the attempt is abandoned, and its callee may still be working.
    /// False when the attempt was over already: nothing happened.
    ///
    /// A connection never answered whose connect bound runs out with the attempt's timeout (a
    /// call without `connect_timeout`, whose bound is its `timeout`) ends as a connect timeout
    /// that the balancer hears, as in the proxy, where the connector's timer is inside the
    /// attempt and heard first. One cut short by a shorter attempt timeout (a deadline) is
    /// dropped before the connector gives up, and the balancer hears nothing.
    fn attempt_timeout(&mut self, key: Key, connect: bool) -> bool {
        let Some(attempt) = self.attempts.get_mut(key) else {
            return false;
        };
        if attempt.caller_done {
            return false;
        }
        attempt.caller_done = true;
        attempt.abandoned = true;
        self.abandoned_stored += 1;
        let a = *attempt;
        if connect {
            self.agenda.cancel(a.timeout, Event::AttemptTimeout(key));
        }
        let connect = connect
            || (a.blackholed
                && a.connect_timeout
                    .is_some_and(|bound| a.sent_at.saturating_add(bound) <= self.now));
        self.tallies[a.service].timed_out += 1;
        self.release(key, &a);
        self.caller_done(&a);
        let result = if connect || a.blackholed {
            AttemptResult::ConnectTimeout
        } else {
            AttemptResult::TimeoutAfterWritten
        };
        if let Caller::Run(run) = a.caller {
            self.calls[a.edge as usize].timeouts += 1;
            if connect {
                // The client's connect timeout is an error the balancer sees; a per-attempt
                // timeout drops the attempt before it ends, and the balancer records nothing.
                self.record(&a, result);
            }
            self.copy_done(run, a.edge, a.sent_at, key, result, !connect);
        }
        true
    }

    /// An answer reaches the caller; false when the caller had stopped waiting.
    fn response(&mut self, key: Key, result: AttemptResult) -> bool {
        let Some(attempt) = self.attempts.get_mut(key) else {
            return false;
        };
        if attempt.caller_done {
            return false;
        }
        attempt.caller_done = true;
        // The fields read below, rather than a copy of the whole attempt: this runs for nearly
        // every attempt. The caller had not given up on it, so it is not abandoned, and it is
        // freed here if the callee is done with it too (see `release`).
        debug_assert!(!attempt.abandoned, "abandoned only with caller_done");
        let (caller, timeout, sent_at) = (attempt.caller, attempt.timeout, attempt.sent_at);
        let (edge, balancer, instance) = (attempt.edge, attempt.balancer, attempt.instance);
        if attempt.callee_done {
            self.attempts.remove(key);
        }
        self.agenda.cancel(timeout, Event::AttemptTimeout(key));
        match caller {
            Caller::User => {
                if matches!(result, AttemptResult::Response { status, .. } if status < 400) {
                    let latency = self.now - sent_at;
                    self.users.succeeded += 1;
                    self.timeline.user_succeeded(sent_at, latency);
                }
            }
            Caller::Run(run) => {
                let balancer = balancer as usize;
                self.balancers.done(balancer, instance);
                if self.balancers.heeds(balancer, result) {
                    self.balancers.record(balancer, instance, result, self.now);
                }
                self.copy_done(run, edge, sent_at, key, result, false);
            }
        }
        true
    }

    /// A caller stopped waiting for its attempt to `instance`: its balancer no longer counts it
    /// in flight, as the proxy's `Balance` stops counting an attempt when its future ends.
    pub(crate) fn caller_done(&mut self, attempt: &Attempt) {
        if let Caller::Run(_) = attempt.caller {
            self.balancers
                .done(attempt.balancer as usize, attempt.instance);
        }
    }

    /// Tells the balancer of a call's `attempt` what the copy came to.
    #[inline]
    fn record(&mut self, attempt: &Attempt, result: AttemptResult) {
        if !self.balancers.heeds(attempt.balancer as usize, result) {
            return;
        }
        self.balancers.record(
            attempt.balancer as usize,
            attempt.instance,
            result,
            self.now,
        );
    }

    /// Frees attempt `key`, as it was when `attempt` was copied from it, once neither side
    /// needs it.
    pub(crate) fn release(&mut self, key: Key, attempt: &Attempt) {
        if attempt.caller_done && attempt.callee_done {
            if attempt.abandoned {
                self.abandoned_stored -= 1;
            }
            self.attempts.remove(key);
        }
    }

    fn into_outcome(mut self) -> Outcome {
        let secs = |ns: u128| ns as f64 / 1e9;
        let drained_s = secs(u128::from(self.settled_at));
        let services = self
            .model
            .services
            .iter()
            .zip(&self.tallies)
            .map(|(s, t)| {
                let stats = ServiceStats {
                    attempts: t.attempts,
                    succeeded: t.succeeded,
                    failed: t.failed,
                    rejected: t.rejected,
                    unreachable: t.unreachable,
                    timed_out: t.timed_out,
                    dropped: t.dropped,
                    queue_dropped: t.queue_dropped,
                    wasted_work_s: secs(t.wasted_ns),
                    work_s: secs(t.work_ns),
                    started: t.started,
                    queue_wait_s: secs(t.queue_wait_ns),
                    max_queue: t.max_queue,
                    instances: s.instances as u32,
                    concurrency: s.concurrency,
                    utilization: utilization(t.work_ns, drained_s, s.instances, s.concurrency),
                    endpoints: s
                        .endpoints
                        .iter()
                        .zip(&t.endpoint_attempts)
                        .filter_map(|(e, &n)| Some((e.name.clone()?, n)))
                        .collect(),
                };
                (s.name.clone(), stats)
            })
            .collect::<BTreeMap<_, _>>();
        let names: Vec<&str> = self.model.services.iter().map(|s| &*s.name).collect();
        let (latency_ns, timeline) = self.timeline.into_steps(&names);
        self.users.latency_ns = latency_ns;
        let triggers = self.model.triggers.clone();
        Outcome {
            seed: self.seed,
            duration: self.model.duration,
            drained_at: Duration::from_nanos(self.settled_at),
            users: self.users,
            services,
            calls: self.calls,
            recovered_at: recovered_at(&timeline, &triggers),
            timeline,
            triggers,
        }
    }
}

/// About how many events a second `model` makes its agenda handle, to size its buckets: four
/// for each attempt (its arrival, work, answer and timeout), of the users' rate times the
/// attempts a request makes at the least, without retries.
fn events_per_second(model: &Model) -> f64 {
    let seconds = model.duration.as_secs_f64().max(f64::MIN_POSITIVE);
    let users = model.load.expected_requests() / seconds;
    4.0 * users * limits::attempts_per_request(model)
}

/// The share of a service's worker time spent on own work from the start to the last event.
fn utilization(work_ns: u128, drained_s: f64, instances: usize, concurrency: u32) -> f64 {
    let capacity = drained_s * instances as f64 * f64::from(concurrency);
    if capacity > 0.0 {
        work_ns as f64 / 1e9 / capacity
    } else {
        0.0
    }
}
