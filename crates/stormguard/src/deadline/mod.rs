//! Deadlines that travel across hops.
//!
//! ## Why deadlines and not only timeouts?
//! A timeout is local: each hop waits its own 2 s, so an edge that gives up at 2 s can leave the
//! back end retrying for 6 s, doing work nobody waits for. A deadline is the caller's, passed
//! downstream as the time that remains, so every hop stops when the person at the top stops
//! waiting (Brooker; Cockcroft). gRPC and Finagle propagate deadlines this way; Envoy only partly
//! (`x-envoy-expected-rq-timeout-ms` is advisory), linkerd not at all.
//!
//! A deadline is also a reason to give up EARLY: an attempt that cannot finish before the
//! deadline only adds load, and giving up while a small [`DeadlinePolicy::reserve`] remains leaves
//! time to report the failure cleanly instead of timing out silently upstream.
//!
//! Everything here is pure: the time is always an argument (`now`), never read from a clock.
//! [`Deadline`] holds a monotonic [`Instant`]; on the wire the remaining time travels as a
//! relative budget (see [`budget_from_headers`] and [`write_budget`]) because hosts' clocks differ.

use std::time::{Duration, Instant};

mod wire;

#[cfg(feature = "tower")]
pub(crate) use wire::insert_budget_value;
pub use wire::{
    budget_from_headers, budget_of, budget_value, format_grpc_timeout, parse_grpc_timeout,
    write_budget, write_budget_value, DeadlineError, BUDGET_HEADER, ENVOY_EXPECTED_TIMEOUT_HEADER,
    GRPC_TIMEOUT_HEADER,
};

/// The longest budget [`Deadline::after`] honours: about 100 years.
///
/// Longer budgets are clamped to it so that a huge or hostile budget (say, `u64::MAX` ms from a
/// header) can never overflow an [`Instant`] and panic; no caller waits this long anyway.
pub const MAX_BUDGET: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A point in time after which nobody waits for the answer.
///
/// Deadlines compare by instant, so the earlier deadline is the smaller one and
/// [`Deadline::earliest`] combines a caller's deadline with a local limit.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::deadline::Deadline;
///
/// let t0 = Instant::now();
/// let deadline = Deadline::after(t0, Duration::from_millis(300));
/// assert_eq!(deadline.remaining(t0 + Duration::from_millis(100)), Duration::from_millis(200));
/// assert!(deadline.is_expired(t0 + Duration::from_millis(300)));
/// assert_eq!(deadline.remaining(t0 + Duration::from_secs(1)), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at an absolute instant, for when the mechanism already knows it.
    pub fn at(at: Instant) -> Self {
        Self { at }
    }

    /// A deadline `budget` after `now`, typically from a budget read off the wire.
    ///
    /// Never panics: budgets above [`MAX_BUDGET`] are clamped to it, and should even that not be
    /// representable on this platform, the budget is halved until it is.
    pub fn after(now: Instant, budget: Duration) -> Self {
        let mut budget = budget.min(MAX_BUDGET);
        loop {
            // Terminates: a zero budget always fits, since `now` itself is an Instant.
            if let Some(at) = now.checked_add(budget) {
                return Self { at };
            }
            budget /= 2;
        }
    }

    /// The instant of the deadline, for the mechanism to arm a timer with.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time left at `now`; zero (never a panic) once the deadline has passed.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// True once no time remains, i.e. from the deadline's instant on.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// The earlier of two deadlines: the one that binds when a request is subject to both.
    pub fn earliest(self, other: Deadline) -> Deadline {
        self.min(other)
    }
}

/// The instant `after` past `now`, never a panic: what every timer of stormguard is armed with.
///
/// `now + after` panics when the sum is past the end of the clock (`Duration::MAX`, a backoff of
/// `Backoff::Constant(Duration::MAX)` built in code, a budget read off the wire): a value a user
/// hands the library may make a wait long, never a process crash. The sum is clamped as
/// [`Deadline::after`] clamps a budget, to [`MAX_BUDGET`] past `now`, which no timer outlives.
///
/// ```
/// use std::time::{Duration, Instant};
/// use stormguard::deadline::{later, MAX_BUDGET};
///
/// let now = Instant::now();
/// assert_eq!(later(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert!(later(now, Duration::MAX) >= now + Duration::from_secs(3600));
/// assert!(later(now, Duration::MAX) <= now + MAX_BUDGET);
/// ```
pub fn later(now: Instant, after: Duration) -> Instant {
    Deadline::after(now, after).instant()
}

/// How an attempt is bounded by a per-try timeout and by the caller's deadline.
///
/// `reserve` is time kept back from every budget: enough for this hop to notice the failure and
/// answer its caller before the caller's own deadline fires. With it, a spent deadline surfaces as
/// a clean, attributable error here rather than as a bare timeout one hop up.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::deadline::{Deadline, DeadlinePolicy};
///
/// let policy = DeadlinePolicy::default(); // 10 s per try, 5 ms reserve
/// let t0 = Instant::now();
/// let deadline = Some(Deadline::after(t0, Duration::from_millis(300)));
/// assert_eq!(policy.attempt_timeout(deadline, t0), Some(Duration::from_millis(295)));
/// // After a 250 ms first attempt, a second one expected to take 250 ms cannot finish in time.
/// let later = t0 + Duration::from_millis(250);
/// assert!(!policy.should_attempt(deadline, later, Duration::from_millis(250)));
/// assert_eq!(policy.downstream_budget(deadline, later), Some(Duration::from_millis(45)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// The longest one attempt may take, deadline or not, so that one stuck attempt cannot use up
    /// a long deadline that a retry could have put to use.
    pub per_try_timeout: Duration,
    /// Time kept back from the deadline to report a failure cleanly.
    pub reserve: Duration,
}

impl Default for DeadlinePolicy {
    /// A 10 s per-try timeout (a safety net, not a tuned value) and a 5 ms reserve (enough to write
    /// an error response on a local network).
    fn default() -> Self {
        Self {
            per_try_timeout: Duration::from_secs(10),
            reserve: Duration::from_millis(5),
        }
    }
}

impl DeadlinePolicy {
    /// The time left for work at `now`: remaining minus the reserve; `None` when nothing is left.
    fn usable(&self, deadline: Deadline, now: Instant) -> Option<Duration> {
        self.usable_of(deadline.remaining(now))
    }

    /// The time left for work when `remaining` is left of the deadline: `None` when nothing is
    /// left after the reserve. For a caller that has read the time remaining already.
    pub(crate) fn usable_of(&self, remaining: Duration) -> Option<Duration> {
        remaining
            .checked_sub(self.reserve)
            .filter(|usable| !usable.is_zero())
    }

    /// The time this attempt may take: `min(per_try_timeout, remaining - reserve)`; `None` when no
    /// time is left after the reserve, meaning the attempt must not start.
    ///
    /// Without a deadline it is `Some(per_try_timeout)`. The result never exceeds
    /// `per_try_timeout`, nor `remaining - reserve` when there is a deadline.
    pub fn attempt_timeout(&self, deadline: Option<Deadline>, now: Instant) -> Option<Duration> {
        match deadline {
            None => Some(self.per_try_timeout),
            Some(deadline) => self
                .usable(deadline, now)
                .map(|usable| usable.min(self.per_try_timeout)),
        }
    }

    /// Whether an attempt expected to take `expected` can finish in time:
    /// `remaining - reserve >= expected`, and some time must be left at all.
    ///
    /// No attempt is started that cannot finish: it would only add load to a struggling upstream
    /// and then time out anyway. True when there is no deadline. It agrees with
    /// [`attempt_timeout`](Self::attempt_timeout): whenever this is true, that is `Some`.
    pub fn should_attempt(
        &self,
        deadline: Option<Deadline>,
        now: Instant,
        expected: Duration,
    ) -> bool {
        match deadline {
            None => true,
            Some(deadline) => self
                .usable(deadline, now)
                .is_some_and(|usable| usable >= expected),
        }
    }

    /// The budget to write downstream: `remaining - reserve`, so that the callee gives up before
    /// this hop must answer. `None` without a deadline; `Some(ZERO)` once it is spent, so that the
    /// callee learns the time is gone rather than assuming there is no limit.
    pub fn downstream_budget(&self, deadline: Option<Deadline>, now: Instant) -> Option<Duration> {
        deadline.map(|deadline| deadline.remaining(now).saturating_sub(self.reserve))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn deadline_arithmetic_saturates() {
        let t0 = Instant::now();
        let d = Deadline::after(t0, ms(300));
        assert_eq!(d.instant(), t0 + ms(300));
        assert_eq!(Deadline::at(t0 + ms(300)), d);
        assert_eq!(d.remaining(t0), ms(300));
        assert_eq!(d.remaining(t0 + ms(299)), ms(1));
        assert_eq!(d.remaining(t0 + ms(301)), Duration::ZERO);
        assert!(!d.is_expired(t0 + ms(299)));
        assert!(d.is_expired(t0 + ms(300)));
        let huge = Deadline::after(t0, Duration::MAX);
        assert_eq!(huge.remaining(t0), MAX_BUDGET);
        assert_eq!(
            Deadline::after(t0, Duration::ZERO).remaining(t0),
            Duration::ZERO
        );
    }

    #[test]
    fn earliest_picks_the_binding_deadline() {
        let t0 = Instant::now();
        let (soon, late) = (Deadline::after(t0, ms(1)), Deadline::after(t0, ms(2)));
        assert_eq!(soon.earliest(late), soon);
        assert_eq!(late.earliest(soon), soon);
        assert!(soon < late);
    }

    #[test]
    fn a_300ms_deadline_stops_a_3_attempt_policy_after_the_first_250ms_attempt() {
        let policy = DeadlinePolicy::default();
        let t0 = Instant::now();
        let deadline = Some(Deadline::after(t0, ms(300)));
        let expected = ms(250);
        let (mut now, mut attempts) = (t0, 0);
        for _ in 0..3 {
            if !policy.should_attempt(deadline, now, expected) {
                break;
            }
            assert!(policy.attempt_timeout(deadline, now).unwrap() >= expected);
            attempts += 1;
            now += ms(250);
        }
        assert_eq!(attempts, 1);
        assert!(!policy.should_attempt(deadline, t0 + ms(250), ms(250)));
        // The 45 ms left are still enough for something quick, and are what travels downstream.
        assert!(policy.should_attempt(deadline, t0 + ms(250), ms(45)));
        assert!(!policy.should_attempt(deadline, t0 + ms(250), ms(46)));
        assert_eq!(
            policy.downstream_budget(deadline, t0 + ms(250)),
            Some(ms(45))
        );
    }

    #[test]
    fn policy_edges() {
        let policy = DeadlinePolicy {
            per_try_timeout: ms(100),
            reserve: ms(5),
        };
        let t0 = Instant::now();
        let d = Some(Deadline::after(t0, ms(300)));
        assert_eq!(policy.attempt_timeout(None, t0), Some(ms(100)));
        assert!(policy.should_attempt(None, t0, Duration::MAX));
        assert_eq!(policy.downstream_budget(None, t0), None);
        assert_eq!(policy.attempt_timeout(d, t0), Some(ms(100)));
        assert_eq!(policy.attempt_timeout(d, t0 + ms(250)), Some(ms(45)));
        // Exactly the reserve left: no time for work, but a zero budget still goes downstream.
        assert_eq!(policy.attempt_timeout(d, t0 + ms(295)), None);
        assert!(!policy.should_attempt(d, t0 + ms(295), Duration::ZERO));
        assert_eq!(
            policy.downstream_budget(d, t0 + ms(295)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            policy.downstream_budget(d, t0 + ms(900)),
            Some(Duration::ZERO)
        );
        assert_eq!(policy.attempt_timeout(d, t0 + ms(900)), None);
    }

    proptest! {
        #[test]
        fn attempt_timeout_never_exceeds_per_try_or_usable_time(
            per_try in 0u64..20_000, reserve in 0u64..1_000, budget in 0u64..30_000,
            elapsed in 0u64..30_000, expected in 0u64..30_000, has_deadline in any::<bool>(),
        ) {
            let policy = DeadlinePolicy { per_try_timeout: ms(per_try), reserve: ms(reserve) };
            let t0 = Instant::now();
            let now = t0 + ms(elapsed);
            let deadline = has_deadline.then(|| Deadline::after(t0, ms(budget)));
            let usable = budget.saturating_sub(elapsed).saturating_sub(reserve);
            let timeout = policy.attempt_timeout(deadline, now);
            if let Some(timeout) = timeout {
                prop_assert!(timeout <= ms(per_try));
                if has_deadline {
                    prop_assert!(timeout <= ms(usable) && usable > 0);
                }
            } else {
                prop_assert!(has_deadline && usable == 0);
            }
            let should = policy.should_attempt(deadline, now, ms(expected));
            prop_assert_eq!(should, !has_deadline || (usable > 0 && usable >= expected));
            if should {
                prop_assert!(timeout.is_some());
            }
            let downstream = policy.downstream_budget(deadline, now);
            prop_assert_eq!(downstream, has_deadline.then(|| ms(usable)));
        }

        #[test]
        fn deadline_after_never_panics_and_remaining_is_monotone(
            budget_ms in any::<u64>(), a in 0u64..10_000, b in 0u64..10_000,
        ) {
            let t0 = Instant::now();
            let d = Deadline::after(t0, ms(budget_ms));
            prop_assert_eq!(d.remaining(t0), ms(budget_ms).min(MAX_BUDGET));
            let (early, late) = (t0 + ms(a.min(b)), t0 + ms(a.max(b)));
            prop_assert!(d.remaining(early) >= d.remaining(late));
            prop_assert_eq!(d.is_expired(late), d.remaining(late).is_zero());
        }
    }
}
