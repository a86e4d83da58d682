//! [`HedgeRace`]: the race between an attempt and its hedge, as plain data.
//!
//! ## Why a state machine of its own
//! The hedge layer runs this race on futures and tokio's clock; the simulator runs it on events
//! in virtual time. Written twice, the rules drift apart (which failure is returned when both
//! copies fail, whether a retry earns hedge budget), and what `sim` predicts is no longer what
//! `proxy` does. So the rules live here once, with no I/O and no clock: the mechanism tells the
//! race what happened ([`on_timer`](HedgeRace::on_timer), [`on_answer`](HedgeRace::on_answer),
//! [`on_timeout`](HedgeRace::on_timeout)) and does the [`Step`] it answers.
//!
//! ## The rules
//! 1. One race per attempt. A caller's request (its first attempt) earns the hedge budget its
//!    share; a retry earns nothing, or a failing dependency would pay for the extra load sent to
//!    it. The hedge is due after the policy's delay, for an idempotent request only, and only
//!    when the attempt's deadline outlasts the delay.
//! 2. Before the hedge is sent, the first copy's answer ends the race, whatever it is: a failure
//!    is for the retry policy above to judge, not a reason to hedge.
//! 3. When the delay is over, the hedge is sent if time is left and the budget grants it.
//! 4. With both copies out, a response below 500 wins at once. The other copy is cancelled: the
//!    caller stops waiting for it, the work it caused is wasted, it is neither a failure nor a
//!    timeout, and an answer it still gives is late and ignored.
//! 5. A 5xx or an error waits for the other copy. When both failed, the first copy's answer is
//!    returned, unless only the hedge got a response at all.
//! 6. The attempt's timeout ends both copies: the answer is that timeout, and a copy still out
//!    counts as timed out too.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use stormguard::classify::AttemptResult;
//! use stormguard::hedge::{HedgeDelay, HedgePolicy, HedgeRace, Leg, Loser, RaceStart, Step};
//!
//! let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
//! let t0 = Instant::now();
//! let start = RaceStart { delay: policy.delay(None, t0), ..RaceStart::new(t0, true) };
//! let mut race = HedgeRace::start(&policy, start);
//! assert_eq!(race.hedge_delay(), Some(Duration::from_millis(50)));
//! // The first copy has not answered after 50 ms: the budget earned by this request pays a hedge.
//! let later = t0 + Duration::from_millis(50);
//! assert!(matches!(race.on_timer(&policy, later), Step::SendHedge));
//! // The first copy fails: the hedge may still succeed, so the race goes on.
//! let failed = AttemptResult::Response { status: 503, retry_after: None };
//! assert!(matches!(race.on_answer(Leg::Primary, failed), Step::Wait));
//! let ok = AttemptResult::Response { status: 200, retry_after: None };
//! match race.on_answer(Leg::Hedge, ok) {
//!     Step::Return(won) => {
//!         assert_eq!((won.from, won.answer, won.hedged), (Leg::Hedge, ok, true));
//!         assert_eq!(won.cancel, None, "both copies have answered");
//!     }
//!     other => panic!("the hedge's 200 wins, not {other:?}"),
//! }
//! ```

use std::time::{Duration, Instant};

use super::HedgePolicy;
use crate::classify::AttemptResult;
use crate::deadline::Deadline;

/// One of the two copies of a hedged attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// The copy sent first.
    Primary,
    /// The copy sent after the hedge delay.
    Hedge,
}

impl Leg {
    /// The other copy.
    pub fn other(self) -> Leg {
        match self {
            Leg::Primary => Leg::Hedge,
            Leg::Hedge => Leg::Primary,
        }
    }
}

/// What the race needs to know of a copy's answer, whatever the mechanism's type for it.
///
/// The layer's answers are responses and errors, the simulator's [`AttemptResult`]s: both say
/// whether a response came and with which status, which is all the rules look at.
pub trait CopyAnswer {
    /// The response's HTTP status; `None` for an error, which got no response at all.
    fn status(&self) -> Option<u16>;
}

impl CopyAnswer for AttemptResult {
    fn status(&self) -> Option<u16> {
        match self {
            AttemptResult::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Whether an answer is one to return at once: a response below 500.
fn is_good<A: CopyAnswer>(answer: &A) -> bool {
    answer.status().is_some_and(|status| status < 500)
}

/// What a race starts from: the attempt as it is sent.
#[derive(Clone, Copy, Debug)]
pub struct RaceStart {
    /// When the first copy is sent.
    pub now: Instant,
    /// The policy's hedge delay at `now` ([`HedgePolicy::delay`]); `None`: no hedge (a quantile
    /// without enough samples). A mechanism may leave it `None` for a request that is not
    /// idempotent, to spare reading the estimator.
    pub delay: Option<Duration>,
    /// Whether the request may be sent twice.
    pub idempotent: bool,
    /// When the attempt's time ends: its deadline, or the per-try timeout of the retry layer
    /// above. `None`: it may take as long as it takes.
    pub deadline: Option<Deadline>,
    /// Whether this attempt is a retry of the caller's request rather than the request itself.
    pub retry: bool,
}

impl RaceStart {
    /// A caller's request (not a retry) sent at `now`, with no deadline and no hedge delay yet.
    pub fn new(now: Instant, idempotent: bool) -> Self {
        RaceStart {
            now,
            delay: None,
            idempotent,
            deadline: None,
            retry: false,
        }
    }
}

/// How a copy the race no longer needs counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loser {
    /// The other copy won: the caller stops waiting (a layer drops its future). Its work is
    /// wasted, but it is neither a failure nor a timeout, and its answer, if one still comes,
    /// is late and ignored.
    Cancelled,
    /// The attempt's timeout ended it together with the copy that timed out: a timeout too.
    TimedOut,
}

/// The end of a race: the answer to return, and the copy to stop waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Won<A> {
    /// The answer the attempt came to.
    pub answer: A,
    /// The copy it came from.
    pub from: Leg,
    /// The copy still out, if any, and how it counts.
    pub cancel: Option<(Leg, Loser)>,
    /// Whether a hedge was sent: the answer stands for two attempts.
    pub hedged: bool,
}

/// What the mechanism does after telling the race of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<A> {
    /// Nothing yet: keep waiting for the copies out (and the hedge timer, if it is armed).
    Wait,
    /// Send the hedge now, to another instance; the budget has granted it. It carries what is
    /// left of the deadline at this moment, not what the first copy carried.
    SendHedge,
    /// The race is decided: return this answer and stop waiting for the other copy.
    Return(Won<A>),
    /// The event came after the race was decided (a cancelled copy's answer, a timer of an
    /// attempt that has answered): nothing to do.
    Late,
}

/// The race of one attempt and its hedge (see the [module docs](self) for the rules).
///
/// `A` is the mechanism's answer type ([`CopyAnswer`]): the race holds the first failure while
/// the other copy is out, and hands back whichever answer the rules pick.
#[derive(Debug)]
pub struct HedgeRace<A> {
    delay: Option<Duration>,
    idempotent: bool,
    deadline: Option<Deadline>,
    hedge_sent: bool,
    /// The copy that failed first, while the other is still out.
    failed: Option<(Leg, A)>,
    over: bool,
}

impl<A: CopyAnswer> HedgeRace<A> {
    /// A race for an attempt sent at `start.now`: a caller's request earns `policy`'s budget its
    /// share (a retry earns nothing), and the hedge is due after the delay when the request is
    /// idempotent and its deadline outlasts the delay.
    pub fn start(policy: &HedgePolicy, start: RaceStart) -> Self {
        if !start.retry {
            policy.on_request(start.now);
        }
        let delay = start.delay.filter(|_| start.idempotent).filter(|delay| {
            start
                .deadline
                .is_none_or(|deadline| deadline.remaining(start.now) > *delay)
        });
        HedgeRace {
            delay,
            idempotent: start.idempotent,
            deadline: start.deadline,
            hedge_sent: false,
            failed: None,
            over: false,
        }
    }

    /// How long after the first copy the hedge is due; `None`: no hedge for this attempt, so it
    /// may be sent as it is (no copy of its body, no timer).
    pub fn hedge_delay(&self) -> Option<Duration> {
        self.delay
    }

    /// Whether a hedge was sent.
    pub fn hedged(&self) -> bool {
        self.hedge_sent
    }

    /// The hedge delay is over at `now`: [`Step::SendHedge`] if time is left and `policy`'s
    /// budget grants a hedge, else [`Step::Wait`] for the first copy alone.
    pub fn on_timer(&mut self, policy: &HedgePolicy, now: Instant) -> Step<A> {
        if self.over || self.hedge_sent || self.delay.is_none() {
            return Step::Late;
        }
        let spent = self.deadline.is_some_and(|d| d.is_expired(now));
        if spent || !policy.try_hedge(now, self.idempotent) {
            return Step::Wait;
        }
        self.hedge_sent = true;
        Step::SendHedge
    }

    /// Copy `leg` answered with `answer`.
    pub fn on_answer(&mut self, leg: Leg, answer: A) -> Step<A> {
        if self.over || !self.sent(leg) || self.failed.as_ref().is_some_and(|(l, _)| *l == leg) {
            return Step::Late;
        }
        if !self.hedge_sent || is_good(&answer) {
            let cancel = self
                .out(leg.other())
                .then_some((leg.other(), Loser::Cancelled));
            return self.end(answer, leg, cancel);
        }
        let Some((_, earlier)) = self.failed.take() else {
            self.failed = Some((leg, answer));
            return Step::Wait;
        };
        // Both failed: the first copy's answer, unless only the hedge got a response.
        let (primary, hedge) = match leg {
            Leg::Primary => (answer, earlier),
            Leg::Hedge => (earlier, answer),
        };
        if primary.status().is_none() && hedge.status().is_some() {
            self.end(hedge, Leg::Hedge, None)
        } else {
            self.end(primary, Leg::Primary, None)
        }
    }

    /// The attempt's time ran out on copy `leg`, whose answer is that timeout: it ends the race,
    /// and the other copy, if still out, times out with it.
    pub fn on_timeout(&mut self, leg: Leg, answer: A) -> Step<A> {
        if self.over || !self.sent(leg) {
            return Step::Late;
        }
        let cancel = self
            .out(leg.other())
            .then_some((leg.other(), Loser::TimedOut));
        self.end(answer, leg, cancel)
    }

    fn sent(&self, leg: Leg) -> bool {
        leg == Leg::Primary || self.hedge_sent
    }

    /// Whether `leg` was sent and has not answered.
    fn out(&self, leg: Leg) -> bool {
        self.sent(leg) && !self.failed.as_ref().is_some_and(|(l, _)| *l == leg)
    }

    fn end(&mut self, answer: A, from: Leg, cancel: Option<(Leg, Loser)>) -> Step<A> {
        self.over = true;
        self.failed = None;
        Step::Return(Won {
            answer,
            from,
            cancel,
            hedged: self.hedge_sent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hedge::HedgeDelay;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Response {
            status: code,
            retry_after: None,
        }
    }

    fn policy(max_extra: f64) -> HedgePolicy {
        HedgePolicy::new(HedgeDelay::Fixed(ms(50)), max_extra).unwrap()
    }

    /// A race whose hedge has been sent at 50 ms.
    fn hedged(policy: &HedgePolicy, t0: Instant) -> HedgeRace<AttemptResult> {
        let start = RaceStart {
            delay: policy.delay(None, t0),
            ..RaceStart::new(t0, true)
        };
        let mut race = HedgeRace::start(policy, start);
        assert_eq!(race.on_timer(policy, t0 + ms(50)), Step::SendHedge);
        race
    }

    fn ended(step: Step<AttemptResult>) -> Won<AttemptResult> {
        match step {
            Step::Return(won) => won,
            other => panic!("expected the race to end, got {other:?}"),
        }
    }

    #[test]
    fn only_a_callers_request_earns_hedge_budget() {
        let policy = policy(0.5);
        let t0 = Instant::now();
        for retry in [false, true, true, false] {
            let start = RaceStart {
                retry,
                ..RaceStart::new(t0, true)
            };
            HedgeRace::<AttemptResult>::start(&policy, start);
        }
        assert_eq!(
            policy.balance(t0),
            1.0,
            "two requests at 0.5, two retries at 0"
        );
    }

    #[test]
    fn no_hedge_is_due_when_it_could_not_help() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        let due =
            |start: RaceStart| HedgeRace::<AttemptResult>::start(&policy, start).hedge_delay();
        let base = RaceStart {
            delay: Some(ms(50)),
            ..RaceStart::new(t0, true)
        };
        assert_eq!(due(base), Some(ms(50)));
        let not_idempotent = RaceStart {
            idempotent: false,
            ..base
        };
        assert_eq!(due(not_idempotent), None);
        let no_delay_yet = RaceStart {
            delay: None,
            ..base
        };
        assert_eq!(due(no_delay_yet), None);
        let short = |left| RaceStart {
            deadline: Some(Deadline::after(t0, ms(left))),
            ..base
        };
        assert_eq!(due(short(50)), None, "the deadline must outlast the delay");
        assert_eq!(due(short(51)), Some(ms(50)));
    }

    #[test]
    fn before_the_hedge_the_first_answer_ends_the_race_whatever_it_is() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        let start = RaceStart {
            delay: Some(ms(50)),
            ..RaceStart::new(t0, true)
        };
        let mut race = HedgeRace::start(&policy, start);
        let won = ended(race.on_answer(Leg::Primary, status(503)));
        assert_eq!(
            (won.from, won.cancel, won.hedged),
            (Leg::Primary, None, false)
        );
        assert_eq!(race.on_timer(&policy, t0 + ms(50)), Step::Late);
    }

    #[test]
    fn no_budget_or_no_time_left_sends_no_hedge() {
        let t0 = Instant::now();
        let broke = policy(0.0);
        let start = RaceStart {
            delay: Some(ms(50)),
            ..RaceStart::new(t0, true)
        };
        let mut race = HedgeRace::<AttemptResult>::start(&broke, start);
        assert_eq!(race.on_timer(&broke, t0 + ms(50)), Step::Wait);
        let won = ended(race.on_answer(Leg::Primary, status(200)));
        assert!(!won.hedged);

        let rich = policy(1.0);
        let start = RaceStart {
            deadline: Some(Deadline::after(t0, ms(60))),
            ..start
        };
        let mut race = HedgeRace::<AttemptResult>::start(&rich, start);
        assert_eq!(
            race.on_timer(&rich, t0 + ms(60)),
            Step::Wait,
            "deadline spent"
        );
    }

    #[test]
    fn a_good_answer_wins_at_once_and_cancels_the_other() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        for leg in [Leg::Primary, Leg::Hedge] {
            let mut race = hedged(&policy, t0);
            let won = ended(race.on_answer(leg, status(404)));
            assert_eq!(won.from, leg);
            assert_eq!(won.cancel, Some((leg.other(), Loser::Cancelled)));
            assert!(won.hedged);
            // The cancelled copy's answer, should it come, is late.
            assert_eq!(race.on_answer(leg.other(), status(200)), Step::Late);
        }
    }

    #[test]
    fn a_failure_waits_for_the_other_copy() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        let mut race = hedged(&policy, t0);
        assert_eq!(race.on_answer(Leg::Hedge, status(503)), Step::Wait);
        let won = ended(race.on_answer(Leg::Primary, status(200)));
        assert_eq!(
            (won.from, won.answer, won.cancel),
            (Leg::Primary, status(200), None)
        );
    }

    #[test]
    fn when_both_fail_the_first_copy_answers_unless_only_the_hedge_got_a_response() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        let refused = AttemptResult::ConnectRefused;
        let cases = [
            // (first to answer, its answer, second's answer) -> the answer returned
            (
                (Leg::Hedge, status(503)),
                status(502),
                (Leg::Primary, status(502)),
            ),
            (
                (Leg::Primary, status(503)),
                refused,
                (Leg::Primary, status(503)),
            ),
            (
                (Leg::Primary, refused),
                status(503),
                (Leg::Hedge, status(503)),
            ),
            ((Leg::Hedge, refused), refused, (Leg::Primary, refused)),
        ];
        for ((first, first_answer), second_answer, (from, answer)) in cases {
            let mut race = hedged(&policy, t0);
            assert_eq!(race.on_answer(first, first_answer), Step::Wait);
            let won = ended(race.on_answer(first.other(), second_answer));
            assert_eq!((won.from, won.answer, won.cancel), (from, answer, None));
        }
    }

    #[test]
    fn the_timeout_ends_both_copies_and_the_other_counts_as_timed_out() {
        let policy = policy(1.0);
        let t0 = Instant::now();
        let timeout = AttemptResult::TimeoutAfterWritten;
        let mut race = hedged(&policy, t0);
        let won = ended(race.on_timeout(Leg::Primary, timeout));
        assert_eq!(won.cancel, Some((Leg::Hedge, Loser::TimedOut)));
        assert_eq!(race.on_timeout(Leg::Hedge, timeout), Step::Late);

        // A copy that failed already is not out: only the timeout's answer is returned.
        let mut race = hedged(&policy, t0);
        assert_eq!(race.on_answer(Leg::Primary, status(503)), Step::Wait);
        let won = ended(race.on_timeout(Leg::Hedge, timeout));
        assert_eq!(
            (won.from, won.answer, won.cancel),
            (Leg::Hedge, timeout, None)
        );
    }
}
