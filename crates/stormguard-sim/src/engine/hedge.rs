//! Hedging: a second copy of a slow attempt to another instance, as the library's `HedgeLayer`
//! sends it, every decision taken by the edge's [`stormguard::hedge::HedgePolicy`].
//!
//! The proxy stacks the retry layer outside the hedge layer, so what the retry policy calls an
//! attempt is a [`Unit`] here: the attempt sent and, when it is slow, its hedge. The unit answers
//! the retry policy once: with the first good answer, or when every copy failed; the per-attempt
//! timeout ends the unit as a whole, as the retry layer's timeout drops both copies.

use stormguard::classify::AttemptResult;

use super::events::Event;
use super::model::nanos;
use super::slab::Key;
use super::state::{Attempt, Caller, Sim};

/// How long a quantile hedge delay is reused before the estimator is asked again. A quantile
/// scans the whole histogram (some 23 000 counters), and a 60 s window barely moves in 10 ms,
/// so asking once per 10 ms of virtual time keeps a hedged edge's cost per call small.
const DELAY_REFRESH: u64 = 10_000_000;

/// One attempt as the retry policy sees it: the copy sent first and, once sent, its hedge.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Unit {
    pub(crate) primary: Option<Key>,
    pub(crate) hedge: Option<Key>,
    /// The failure of the copy that answered first, while the other is still out.
    pub(crate) failure: Option<AttemptResult>,
    pub(crate) sent_at: u64,
    pub(crate) hedge_sent_at: u64,
    /// When the per-attempt timeout ends the unit; `None` without a timeout.
    pub(crate) ends: Option<u64>,
}

/// A quantile delay as last read from the estimator.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CachedDelay {
    until: u64,
    delay: Option<u64>,
}

/// Which copy's latencies the estimator learns from a unit's end, as the layer records them.
enum Learn {
    Nothing,
    /// The first copy's latency, if it got a response at all.
    Primary,
    /// The hedge's latency and, as a lower bound of the first copy's, the whole unit's.
    Hedge,
}

/// A response below 500: one copy's answer the caller takes at once, as the layer does.
fn is_good(result: AttemptResult) -> bool {
    matches!(result, AttemptResult::Response { status, .. } if status < 500)
}

impl Sim<'_> {
    /// A unit starts with `attempt` sent by call `run`: the hedge budget earns its share, and
    /// for an idempotent call whose delay falls within the attempt's timeout the hedge is due.
    pub(crate) fn begin_unit(&mut self, run: Key, attempt: Key, ends: Option<u64>) {
        let now = self.now;
        let call = self.runs.get_mut(run).expect("a sending call is alive");
        call.unit = Unit {
            primary: Some(attempt),
            sent_at: now,
            ends,
            ..Unit::default()
        };
        let edge_index = call.edge;
        let model = self.model;
        let edge = &model.edges[edge_index];
        let Some(hedge) = &edge.hedge else {
            return;
        };
        hedge.policy.on_request(self.instant(now));
        if !edge.idempotent {
            return;
        }
        let Some(delay) = self.hedge_delay(edge_index) else {
            return;
        };
        let at = now.saturating_add(delay);
        if ends.is_none_or(|end| at < end) {
            self.agenda.schedule(at, Event::Hedge(attempt));
        }
    }

    /// The edge's hedge delay now, in nanoseconds; `None` while a quantile has too few samples.
    fn hedge_delay(&mut self, edge: usize) -> Option<u64> {
        let model = self.model;
        let hedge = model.edges[edge].hedge.as_ref()?;
        let Some(estimator) = &hedge.estimator else {
            return hedge.policy.delay(None, self.instant(self.now)).map(nanos);
        };
        let now = self.instant(self.now);
        let cached = &mut self.hedge_delays[edge];
        if self.now >= cached.until {
            cached.delay = hedge.policy.delay(Some(estimator), now).map(nanos);
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
        let (half_rtt, connect_timeout, deadline) =
            (first.half_rtt, first.connect_timeout, first.deadline);
        let model = self.model;
        let call = self.runs.get(run).expect("a call waits for its attempt");
        let edge_index = call.edge;
        let edge = &model.edges[edge_index];
        let policy = &edge.hedge.as_ref().expect("only hedged edges hedge").policy;
        if !policy.try_hedge(self.instant(self.now), edge.idempotent) {
            return true;
        }
        let instance = self.balancers.choose(
            call.balancer,
            &self.loads[edge.to],
            &call.tried,
            self.now,
            &mut self.policy_rng,
        );
        let key = self.attempts.insert(Attempt {
            caller: Caller::Run(run),
            service: edge.to,
            instance,
            half_rtt,
            sent_at: self.now,
            connect_timeout,
            deadline,
            caller_done: false,
            callee_done: false,
            abandoned: false,
            blackholed: false,
        });
        let call = self.runs.get_mut(run).expect("alive");
        call.tried.push(instance);
        call.unit.hedge = Some(key);
        call.unit.hedge_sent_at = self.now;
        let ends = call.unit.ends;
        let stats = &mut self.calls[edge_index];
        stats.attempts += 1;
        stats.hedges += 1;
        self.agenda
            .schedule(self.now + half_rtt, Event::Arrive(key));
        if let Some(end) = ends {
            self.agenda.schedule(end, Event::AttemptTimeout(key));
        }
        true
    }

    /// The caller is done with copy `key` of call `run`'s unit, with `result`; `timeout` when
    /// the per-attempt timeout ended it. The retry policy hears of the unit once it is decided.
    pub(crate) fn copy_done(&mut self, run: Key, key: Key, result: AttemptResult, timeout: bool) {
        let call = self
            .runs
            .get_mut(run)
            .expect("a call outlives its attempts");
        let unit = call.unit;
        let edge = call.edge;
        let Some(hedge) = unit.hedge else {
            if !timeout {
                self.learn(edge, &unit, Learn::Primary, result);
            }
            self.run_result(run, result);
            return;
        };
        let from_primary = unit.primary == Some(key);
        let (result, learn) = if timeout {
            (result, Learn::Nothing)
        } else if is_good(result) {
            let learn = if from_primary {
                Learn::Primary
            } else {
                Learn::Hedge
            };
            (result, learn)
        } else if let Some(earlier) = unit.failure {
            let (first, second) = if from_primary {
                (result, earlier)
            } else {
                (earlier, result)
            };
            // Both failed: the first copy's answer, unless only the hedge got a response.
            match (first, second) {
                (AttemptResult::Response { .. }, _) => (first, Learn::Primary),
                (_, AttemptResult::Response { .. }) => (second, Learn::Hedge),
                _ => (first, Learn::Primary),
            }
        } else {
            call.unit.failure = Some(result);
            return;
        };
        call.unit.hedge = None;
        call.unit.failure = None;
        let other = if from_primary {
            Some(hedge)
        } else {
            unit.primary
        };
        if let Some(other) = other {
            self.abandon(other, edge, timeout);
        }
        self.learn(edge, &unit, learn, result);
        self.run_result(run, result);
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
        if timed_out {
            self.tallies[attempt.service].timed_out += 1;
            self.calls[edge].timeouts += 1;
        }
        self.release(key);
    }

    /// Feeds the edge's estimator (when its delay is a quantile) what the layer records: a
    /// copy's latency only when it got a response, for an error's time says nothing of latency.
    fn learn(&self, edge: usize, unit: &Unit, learn: Learn, result: AttemptResult) {
        let Some(estimator) = self.model.edges[edge]
            .hedge
            .as_ref()
            .and_then(|h| h.estimator.as_ref())
        else {
            return;
        };
        let now = self.instant(self.now);
        let since = |t: u64| std::time::Duration::from_nanos(self.now - t);
        let responded = matches!(result, AttemptResult::Response { .. });
        match learn {
            Learn::Nothing => {}
            Learn::Primary => {
                if responded {
                    estimator.record(now, since(unit.sent_at));
                }
            }
            Learn::Hedge => {
                if responded {
                    estimator.record(now, since(unit.hedge_sent_at));
                }
                estimator.record(now, since(unit.sent_at));
            }
        }
    }
}
