//! Hedging: a second copy of a slow attempt to another instance, as the library's `HedgeLayer`
//! sends it: the edge's [`stormguard::hedge::HedgePolicy`] says when and holds the budget, and
//! the policy core's [`HedgeRace`], the one the layer runs, says who wins, what is cancelled and
//! whether a retry earns hedge budget (it does not).
//!
//! The proxy stacks the retry layer outside the hedge layer, so what the retry policy calls an
//! attempt is a [`Unit`] here: the attempt sent and, when it is slow, its hedge. The unit answers
//! the retry policy once: with the first good answer, or when every copy failed; the per-attempt
//! timeout ends the unit as a whole, as the retry layer's timeout drops both copies.

use std::time::Duration;

use stormguard::classify::AttemptResult;
use stormguard::deadline::Deadline;
use stormguard::hedge::{HedgeDelay, HedgeRace, Leg, Loser, RaceStart, Step};

use super::events::{Event, Handle};
use super::model::nanos;
use super::slab::Key;
use super::state::{Attempt, Caller, Sim};

/// How long a quantile hedge delay is reused before the estimator is asked again. A quantile
/// scans the whole histogram (some 3 300 counters), and a 60 s window barely moves in 10 ms,
/// so asking once per 10 ms of virtual time keeps a hedged edge's cost per call small.
const DELAY_REFRESH: u64 = 10_000_000;

/// One attempt as the retry policy sees it: the copy sent first and, once sent, its hedge.
#[derive(Debug, Default)]
pub(crate) struct Unit {
    pub(crate) primary: Option<Key>,
    pub(crate) hedge: Option<Key>,
    /// The policy core's race of the two copies, on a hedged edge.
    pub(crate) race: Option<HedgeRace<AttemptResult>>,
    pub(crate) sent_at: u64,
    /// When the per-attempt timeout ends the unit; `None` without a timeout.
    pub(crate) ends: Option<u64>,
}

/// A quantile delay as last read from the estimator.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CachedDelay {
    until: u64,
    delay: Option<u64>,
}

impl Sim<'_> {
    /// The unit `attempt` of call `run` starts on a hedged edge (`retry`: the call's retry sent
    /// it): its race starts. A caller's request earns the hedge budget its share (a retry earns
    /// nothing), and for an idempotent call whose delay falls within the attempt's timeout the
    /// hedge is due.
    pub(crate) fn start_race(&mut self, run: Key, attempt: Key, ends: Option<u64>, retry: bool) {
        let now = self.now;
        let call = self.runs.get(run).expect("a sending call is alive");
        let edge_index = call.edge;
        let model = self.model;
        let edge = &model.edges[edge_index];
        let Some(policy) = &edge.hedge else {
            return;
        };
        // A call that is never hedged spares reading the estimator.
        let delay = if edge.idempotent {
            self.hedge_delay(edge_index)
        } else {
            None
        };
        let start = RaceStart {
            now: self.instant(now),
            delay: delay.map(Duration::from_nanos),
            idempotent: edge.idempotent,
            deadline: ends.map(|end| Deadline::at(self.clock.later(end))),
            retry,
        };
        let race = HedgeRace::start(policy, start);
        if let Some(delay) = race.hedge_delay() {
            let at = now.saturating_add(nanos(delay));
            self.agenda.schedule(at, Event::Hedge(attempt));
        }
        self.runs.get_mut(run).expect("alive").unit.race = Some(race);
    }

    /// The edge's hedge delay now, in nanoseconds; `None` while a quantile has too few samples.
    fn hedge_delay(&mut self, edge: usize) -> Option<u64> {
        let model = self.model;
        let edge_model = &model.edges[edge];
        let policy = edge_model.hedge.as_ref()?;
        let now = self.instant(self.now);
        if let HedgeDelay::Fixed(_) = policy.delay_setting() {
            return policy.delay(None, now).map(nanos);
        }
        let cached = &mut self.hedge_delays[edge];
        if self.now >= cached.until {
            cached.delay = policy.delay(Some(&edge_model.estimator), now).map(nanos);
            cached.until = self.now.saturating_add(DELAY_REFRESH);
        }
        cached.delay
    }

    /// The hedge delay of `primary` is over: unless it answered, and if the budget allows, a
    /// copy goes to an instance the call has not tried, with what is left of the unit's time.
    /// False when `primary` had answered: nothing happened.
    pub(crate) fn hedge(&mut self, primary: Key) -> bool {
        let Some(first) = self.attempts.get(primary) else {
            return false;
        };
        let Caller::Run(run) = first.caller else {
            return false;
        };
        if first.caller_done {
            return false;
        }
        // The copy carries the first one's deadline: what is left of the unit's time.
        let first = *first;
        let model = self.model;
        let now = self.instant(self.now);
        let call = self
            .runs
            .get_mut(run)
            .expect("a call waits for its attempt");
        if call.unit.primary != Some(primary) {
            return false;
        }
        let edge_index = call.edge;
        let edge = &model.edges[edge_index];
        let policy = edge.hedge.as_ref().expect("only hedged edges hedge");
        let race = call.unit.race.as_mut().expect("a hedged edge's unit races");
        match race.on_timer(policy, now) {
            Step::SendHedge => {}
            // No budget, or no time left: the first copy goes on alone.
            Step::Wait | Step::Return(_) => return true,
            Step::Late => return false,
        }
        let instance =
            self.balancers
                .choose(call.balancer, &call.tried, self.now, &mut self.policy_rng);
        // Of the same call as the first copy: its caller, edge, balancer, callee and endpoint.
        let key = self.attempts.insert(Attempt {
            instance,
            sent_at: self.now,
            caller_done: false,
            callee_done: false,
            abandoned: false,
            blackholed: false,
            timeout: Handle::NONE,
            ..first
        });
        let call = self.runs.get_mut(run).expect("alive");
        call.tried.push(instance);
        call.unit.hedge = Some(key);
        let ends = call.unit.ends;
        let stats = &mut self.calls[edge_index];
        stats.attempts += 1;
        stats.hedges += 1;
        self.agenda
            .schedule(self.now + first.half_rtt, Event::Arrive(key));
        if let Some(end) = ends {
            let timeout = self
                .agenda
                .schedule_in_lane(edge_index, end, Event::AttemptTimeout(key));
            self.attempts.get_mut(key).expect("just inserted").timeout = timeout;
        }
        true
    }

    /// The caller is done with copy `key` of call `run`'s unit, with `result`; `timeout` when
    /// the per-attempt timeout ended it. The retry policy hears of the unit once its race is
    /// decided, and the copy still out, if any, is abandoned as the race says.
    ///
    /// `edge` and `sent_at` are the copy's.
    ///
    /// Inlined where answers and timeouts arrive, with the hedged case out of line: nearly
    /// every edge has no hedge, and the call's prologue and epilogue were most of what this
    /// cost such an edge.
    #[inline(always)]
    pub(crate) fn copy_done(
        &mut self,
        run: Key,
        edge: u32,
        sent_at: u64,
        key: Key,
        result: AttemptResult,
        timeout: bool,
    ) {
        // An edge without a hedge never races: its unit is this one copy, sent with the unit,
        // and the call need not be looked up here.
        if self.model.edges[edge as usize].hedge.is_none() {
            self.attempt_done(run, edge as usize, sent_at, result);
            return;
        }
        self.hedged_copy_done(run, key, result, timeout);
    }

    /// [`copy_done`](Self::copy_done) on a hedged edge.
    #[inline(never)]
    fn hedged_copy_done(&mut self, run: Key, key: Key, result: AttemptResult, timeout: bool) {
        let call = self
            .runs
            .get_mut(run)
            .expect("a call outlives its attempts");
        let edge = call.edge;
        let unit = &mut call.unit;
        let sent_at = unit.sent_at;
        let Some(race) = unit.race.as_mut() else {
            self.attempt_done(run, edge, sent_at, result);
            return;
        };
        let leg = if unit.primary == Some(key) {
            Leg::Primary
        } else {
            Leg::Hedge
        };
        let step = if timeout {
            race.on_timeout(leg, result)
        } else {
            race.on_answer(leg, result)
        };
        // `Wait`: the other copy is still out. `Late` cannot come: a copy the caller stopped
        // waiting for delivers nothing.
        let Step::Return(won) = step else {
            return;
        };
        let cancel = won.cancel.and_then(|(leg, loser)| {
            let key = match leg {
                Leg::Primary => unit.primary,
                Leg::Hedge => unit.hedge,
            };
            key.map(|key| (key, loser))
        });
        unit.race = None;
        unit.hedge = None;
        if let Some((other, loser)) = cancel {
            self.abandon(other, edge, loser == Loser::TimedOut);
        }
        self.attempt_done(run, edge, sent_at, won.answer);
    }

    /// The caller stops waiting for a copy the unit no longer needs: the loser of a race, or
    /// the other copy at the per-attempt timeout (then counted as timed out).
    fn abandon(&mut self, key: Key, edge: usize, timed_out: bool) {
        let Some(attempt) = self.attempts.get_mut(key) else {
            return;
        };
        if attempt.caller_done {
            return;
        }
        attempt.caller_done = true;
        attempt.abandoned = true;
        self.abandoned_stored += 1;
        let a = *attempt;
        self.agenda.cancel(a.timeout, Event::AttemptTimeout(key));
        if timed_out {
            self.tallies[a.service].timed_out += 1;
            self.calls[edge].timeouts += 1;
        }
        self.release(key, &a);
        self.caller_done(&a);
    }
}
