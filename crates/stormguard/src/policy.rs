//! The retry decision: one function that the tower layers, the proxy and the simulator all call.
//!
//! ## Why one decision function
//! Classification, attempt limits, backoff, budgets and deadlines each answer part of "should this
//! request be tried again, and when?". Taken in different places they drift apart: a simulator
//! that backs off before checking the budget predicts a different retry storm than a proxy that
//! checks the budget first. [`RetryPolicy::decide`] takes them in one fixed order, and every
//! mechanism in this project calls it, so what `stormguard sim` predicts is what `stormguard proxy`
//! does.
//!
//! The order, and why:
//! 1. classify the attempt ([`Classifier`]): success and final outcomes end the request at once;
//! 2. attempts: never more than `max_attempts` in all;
//! 3. the delay: the backoff's next delay, or the server's `Retry-After` when that is longer;
//! 4. the deadline: no retry that cannot finish in time, after its delay, with the reserve kept to
//!    report the failure upstream;
//! 5. the limiter (retry budget or token bucket) last, so that no token is spent on a retry that
//!    step 4 would have refused anyway.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Schedule};
use crate::budget::{RetryBudget, TokenBucket};
use crate::classify::{AttemptResult, Class, Classifier, FinalReason, RetryKind};
use crate::deadline::{Deadline, DeadlinePolicy, MAX_BUDGET};
#[cfg(test)]
use crate::estimate::LatencyEstimator;
use crate::estimate::{AdaptiveTimeout, LatencyQuantiles};

/// What keeps retries from multiplying load when a dependency is overloaded.
///
/// `max_attempts` bounds retries per request, not per dependency: when every request fails, every
/// request retries. A limiter bounds retries as a share of traffic (a [`RetryBudget`]) or as a
/// pool of tokens drained by failures (a [`TokenBucket`]). The limiter is shared state: clone it
/// (the clone shares the same budget) into every policy that calls the same dependency.
///
/// ```
/// use stormguard::policy::Limiter;
///
/// let limiter = Limiter::recommended();
/// assert!(matches!(limiter, Limiter::Budget(_)));
/// ```
#[derive(Clone, Debug, Default)]
pub enum Limiter {
    /// No limit beyond `max_attempts`. Only for a dependency that cannot be overloaded by retries
    /// (`stormguard check` warns about it).
    #[default]
    Unlimited,
    /// A Finagle-style retry budget: retries at most `ratio` of requests plus a small reserve.
    Budget(Arc<RetryBudget>),
    /// An AWS SDK-style token bucket: failures drain it, successes refill it.
    Bucket(Arc<TokenBucket>),
}

impl Limiter {
    /// The project's recommended limiter: a retry budget of 20% with 10 retries a second of
    /// reserve over 10 s (Finagle's and linkerd's defaults).
    pub fn recommended() -> Self {
        Limiter::Budget(Arc::new(RetryBudget::recommended()))
    }

    /// A new request begins: a budget earns its share of a retry.
    pub fn on_request(&self, now: Instant) {
        if let Limiter::Budget(budget) = self {
            budget.deposit(now);
        }
    }

    /// Asks to send one retry. `Ok(cost)` when it may be sent (`cost` is what a token bucket took,
    /// to refund on success); `Err(denied)` names the limiter that said no.
    pub fn try_retry(&self, now: Instant, kind: RetryKind) -> Result<Option<u32>, Denied> {
        match self {
            Limiter::Unlimited => Ok(None),
            Limiter::Budget(budget) => {
                if budget.try_withdraw(now) {
                    Ok(None)
                } else {
                    Err(Denied::Budget)
                }
            }
            Limiter::Bucket(bucket) => match bucket.try_acquire(kind.is_timeout()) {
                Some(cost) => Ok(Some(cost)),
                None => Err(Denied::TokenBucket),
            },
        }
    }

    /// A request succeeded; `last_cost` is the cost its last retry took from a token bucket.
    pub fn on_success(&self, last_cost: Option<u32>) {
        if let Limiter::Bucket(bucket) = self {
            bucket.on_success(last_cost);
        }
    }
}

/// Which limiter refused a retry, for metrics and for the proxy's `stormguard-reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denied {
    /// The retry budget was spent.
    Budget,
    /// The token bucket was empty.
    TokenBucket,
}

impl Denied {
    /// A short, stable name of the limiter (`retry-budget`, `token-bucket`): the one a metrics
    /// label, the proxy's `stormguard-reason` and its access log all say, written here once.
    ///
    /// ```
    /// use stormguard::policy::Denied;
    /// assert_eq!(Denied::TokenBucket.name(), "token-bucket");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Denied::Budget => "retry-budget",
            Denied::TokenBucket => "token-bucket",
        }
    }
}

/// Why a request ended without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The outcome cannot succeed on a retry, or must not be retried (see [`FinalReason`]).
    Final(FinalReason),
    /// `max_attempts` attempts were made; `kind` is what the last one came to.
    AttemptsExhausted(RetryKind),
    /// The limiter refused the retry that `kind` called for.
    Denied(Denied, RetryKind),
    /// Too little of the deadline was left to expect a retry (or a first attempt) to finish.
    Deadline,
}

impl GiveUp {
    /// A short, stable name for metrics labels and the proxy's `stormguard-reason` header.
    pub fn reason(&self) -> &'static str {
        match self {
            GiveUp::Final(_) => "final",
            GiveUp::AttemptsExhausted(_) => "attempts",
            GiveUp::Denied(by, _) => by.name(),
            GiveUp::Deadline => "deadline",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUp::Final(reason) => write!(f, "not retried: {reason:?}"),
            GiveUp::AttemptsExhausted(kind) => write!(f, "all attempts used; last: {kind:?}"),
            GiveUp::Denied(Denied::Budget, kind) => {
                write!(f, "retry after {kind:?} refused: retry budget spent")
            }
            GiveUp::Denied(Denied::TokenBucket, kind) => {
                write!(f, "retry after {kind:?} refused: token bucket empty")
            }
            GiveUp::Deadline => f.write_str("too little of the deadline left for another attempt"),
        }
    }
}

/// What [`RetryPolicy::decide`] tells the mechanism to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The attempt succeeded: return its response.
    Success,
    /// Send another attempt after `after` (already approved by the limiter).
    Retry {
        /// How long to wait before sending it.
        after: Duration,
        /// What the failed attempt came to.
        kind: RetryKind,
    },
    /// Stop: return the last response or error.
    GiveUp(GiveUp),
}

/// How long the next attempt is expected to take: a figure, or a live estimate read at `now`
/// only when a deadline check needs it.
#[derive(Clone, Copy)]
enum Expected<'e> {
    Fixed(Duration),
    Estimated {
        estimator: &'e dyn LatencyQuantiles,
        now: Instant,
    },
}

/// The state of one request across its attempts. Made by [`RetryPolicy::begin`].
#[derive(Clone, Debug)]
pub struct RetryState {
    attempts: u32,
    schedule: Schedule,
    last_cost: Option<u32>,
}

impl RetryState {
    /// Attempts made so far (the first try counts).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// How one call is tried: attempts, backoff, classification, limiter and deadline.
///
/// Plain data plus a shared [`Limiter`]. Build one per dependency (or route) and share it. Defaults
/// are [`RetryPolicy::recommended`]: one retry, full jitter 25-250 ms, a 20% retry budget, a 10 s
/// per-try timeout and a 5 ms deadline reserve.
///
/// ```
/// use std::time::{Duration, Instant};
/// use stormguard::classify::AttemptResult;
/// use stormguard::policy::{Decision, RetryPolicy};
///
/// let policy = RetryPolicy::recommended();
/// let mut rng = stormguard::backoff::seeded(7);
/// let now = Instant::now();
/// let mut state = policy.begin(now);
/// let refused = AttemptResult::ConnectRefused;
/// // A refused connection never reached the server: retry, after a jittered backoff.
/// match policy.decide(&mut state, refused, false, None, now, &mut rng) {
///     Decision::Retry { after, .. } => assert!(after <= Duration::from_millis(25)),
///     other => panic!("expected a retry, got {other:?}"),
/// }
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 2 (one retry) by default; `check` warns above 2.
    pub max_attempts: u32,
    /// The wait between attempts.
    pub backoff: Backoff,
    /// Which outcomes may be retried.
    pub classifier: Classifier,
    /// What keeps retries from multiplying load.
    pub limiter: Limiter,
    /// The per-try timeout and the reserve kept to report a failure upstream.
    pub deadline: DeadlinePolicy,
    /// A cap on the whole request, retries included (Envoy's route timeout). `None`: only the
    /// incoming deadline, if any, bounds it.
    pub overall_timeout: Option<Duration>,
    /// How long an attempt is expected to take: no attempt starts with less than this left.
    /// The mechanisms replace it with a live estimate (the p50) when they have one.
    pub expected_latency: Duration,
    /// Whether requests are idempotent regardless of method (`Some(true)`: retry any request,
    /// `Some(false)`: never retry one once written). `None`: by method and `Idempotency-Key`.
    pub idempotent: Option<bool>,
    /// Derive the per-try timeout from observed latency instead of `deadline.per_try_timeout`.
    pub adaptive_timeout: Option<AdaptiveTimeout>,
    /// Write the remaining budget on each attempt (`stormguard-budget-ms`) so the callee can give
    /// up when the caller will no longer wait.
    pub propagate_deadline: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::recommended()
    }
}

impl RetryPolicy {
    /// What we recommend when nothing else is known: one retry with full jitter (25 ms base,
    /// 250 ms cap), a retry budget of 20% plus 10/s, a 10 s per-try timeout, a 5 ms reserve, and
    /// deadline propagation on.
    pub fn recommended() -> Self {
        RetryPolicy {
            max_attempts: 2,
            backoff: Backoff::default(),
            classifier: Classifier::default(),
            limiter: Limiter::recommended(),
            deadline: DeadlinePolicy::default(),
            overall_timeout: None,
            expected_latency: Duration::ZERO,
            idempotent: None,
            adaptive_timeout: None,
            propagate_deadline: true,
        }
    }

    /// No retries at all: one attempt, still with the timeouts and deadline handling.
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::None,
            limiter: Limiter::Unlimited,
            ..Self::recommended()
        }
    }

    /// Replaces the backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces `max_attempts` (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Replaces the limiter.
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Replaces the per-try timeout.
    pub fn with_per_try_timeout(mut self, timeout: Duration) -> Self {
        self.deadline.per_try_timeout = timeout;
        self
    }

    /// Replaces the overall timeout (retries included).
    pub fn with_overall_timeout(mut self, timeout: Duration) -> Self {
        self.overall_timeout = Some(timeout);
        self
    }

    /// Replaces the expected latency of one attempt.
    pub fn with_expected_latency(mut self, expected: Duration) -> Self {
        self.expected_latency = expected;
        self
    }

    /// Starts a request: counts it toward the limiter and returns its state.
    pub fn begin(&self, now: Instant) -> RetryState {
        self.limiter.on_request(now);
        self.first_attempt_state()
    }

    /// What [`begin`](RetryPolicy::begin) returns, without counting the request: for a caller
    /// that counted it when the request began and needs the state only once the first attempt
    /// failed (the retry layer, whose requests nearly all end with their first attempt), or
    /// that counts it in the limiter itself (the simulator, with
    /// [`RetryBudget::deposit_after_epoch`](crate::budget::RetryBudget::deposit_after_epoch)).
    /// A request begun this way and not counted earns no retries.
    pub fn first_attempt_state(&self) -> RetryState {
        RetryState {
            attempts: 1,
            schedule: self.backoff.schedule(),
            last_cost: None,
        }
    }

    /// The deadline of a request that arrives at `now` carrying `incoming` (if any): the earlier
    /// of the incoming deadline and the overall timeout.
    pub fn request_deadline(&self, incoming: Option<Deadline>, now: Instant) -> Option<Deadline> {
        let own = self.overall_timeout.map(|t| Deadline::after(now, t));
        match (incoming, own) {
            (Some(a), Some(b)) => Some(a.earliest(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the first attempt should be sent at all: false when less than the expected latency
    /// is left of the deadline after the reserve. Answering at once then leaves the caller time
    /// to report the failure cleanly.
    pub fn should_start(
        &self,
        deadline: Option<Deadline>,
        now: Instant,
        expected: Duration,
    ) -> bool {
        self.fits(
            deadline.map(|d| d.remaining(now)),
            Expected::Fixed(expected),
        )
    }

    /// [`should_start`](Self::should_start) with the expected latency taken from `estimator`, the
    /// target's live latencies: its p50 once it has enough samples, else `expected_latency`.
    ///
    /// The one check of "too little budget left" that the retry layer and the simulator both
    /// make, each with its estimator (the layer's on tokio's clock, the simulator's in virtual
    /// time), so that a request the proxy answers at once is one the simulator answers at once.
    /// The p50 is read only when it matters: with no deadline any figure fits, and when the
    /// longest latency measured fits (an O(1) read), so does the p50, without scanning the
    /// histogram.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stormguard::deadline::Deadline;
    /// use stormguard::estimate::LatencyEstimator;
    /// use stormguard::policy::RetryPolicy;
    ///
    /// let mut policy = RetryPolicy::recommended();
    /// policy.deadline.reserve = Duration::ZERO;
    /// let estimator = LatencyEstimator::new(Duration::from_secs(60));
    /// let t0 = Instant::now();
    /// let deadline = Some(Deadline::after(t0, Duration::from_millis(30)));
    /// // Nothing measured yet: the policy's expected latency (zero) fits.
    /// assert!(policy.should_start_estimated(deadline, t0, Some(&estimator)));
    /// for _ in 0..100 {
    ///     estimator.record(t0, Duration::from_millis(40));
    /// }
    /// // Attempts take 40 ms: 30 ms left is too little to start one.
    /// assert!(!policy.should_start_estimated(deadline, t0, Some(&estimator)));
    /// ```
    pub fn should_start_estimated(
        &self,
        deadline: Option<Deadline>,
        now: Instant,
        estimator: Option<&dyn LatencyQuantiles>,
    ) -> bool {
        self.should_start_within(deadline.map(|d| d.remaining(now)), now, estimator)
    }

    /// [`should_start_estimated`](Self::should_start_estimated) given the time `remaining` of the
    /// deadline at `now` (`None`: no deadline) rather than the deadline itself.
    ///
    /// The decision depends on the time left, never on the instant: a caller that keeps its own
    /// clock (the simulator counts virtual nanoseconds) passes what it knows, without turning it
    /// into `Instant`s for the policy to subtract again. `now` is read only by `estimator`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stormguard::policy::RetryPolicy;
    ///
    /// let policy = RetryPolicy::recommended(); // 5 ms of reserve
    /// let now = Instant::now();
    /// assert!(policy.should_start_within(Some(Duration::from_millis(30)), now, None));
    /// assert!(!policy.should_start_within(Some(Duration::from_millis(5)), now, None));
    /// assert!(policy.should_start_within(None, now, None));
    /// ```
    pub fn should_start_within(
        &self,
        remaining: Option<Duration>,
        now: Instant,
        estimator: Option<&dyn LatencyQuantiles>,
    ) -> bool {
        self.fits(remaining, self.expected(estimator, now))
    }

    /// Where the expected latency comes from: `estimator` read at `now`, else the policy's.
    fn expected<'e>(
        &self,
        estimator: Option<&'e dyn LatencyQuantiles>,
        now: Instant,
    ) -> Expected<'e> {
        match estimator {
            Some(estimator) => Expected::Estimated { estimator, now },
            None => Expected::Fixed(self.expected_latency),
        }
    }

    /// Whether an attempt that starts when `remaining` is left of the deadline (`None`: there is
    /// none) is expected to finish within it, and has any time at all.
    ///
    /// The checks of [`DeadlinePolicy::attempt_timeout`], [`DeadlinePolicy::downstream_budget`]
    /// and [`DeadlinePolicy::should_attempt`], on one reading of the time remaining, which the
    /// caller made (the proxy from its `Instant`s, the simulator from its virtual nanoseconds)
    /// rather than each check subtracting two `Instant`s again.
    fn fits(&self, remaining: Option<Duration>, expected: Expected<'_>) -> bool {
        // No deadline: the per-try timeout bounds the attempt, and any figure fits.
        let Some(remaining) = remaining else {
            return true;
        };
        let Some(usable) = self.deadline.usable_of(remaining) else {
            return false;
        };
        let expected = match expected {
            Expected::Fixed(expected) => expected,
            Expected::Estimated { estimator, now } => match estimator.max(now) {
                // Every quantile is at most the maximum: the p50 fits too.
                Some(longest) if longest <= usable => longest,
                Some(_) => estimator
                    .quantile(now, 0.5)
                    .unwrap_or(self.expected_latency),
                // Too few samples for a quantile.
                None => self.expected_latency,
            },
        };
        usable >= expected
    }

    /// The timeout of the attempt about to start: the per-try timeout (or the adaptive one, from
    /// `estimate`), cut to what is left of the deadline after the reserve. `None`: no time left.
    pub fn attempt_timeout(
        &self,
        deadline: Option<Deadline>,
        now: Instant,
        adaptive: Option<Duration>,
    ) -> Option<Duration> {
        self.attempt_timeout_within(deadline.map(|d| d.remaining(now)), adaptive)
    }

    /// [`attempt_timeout`](Self::attempt_timeout) given the time `remaining` of the deadline
    /// (`None`: no deadline), for a caller that knows it without `Instant`s, as
    /// [`should_start_within`](Self::should_start_within).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stormguard::policy::RetryPolicy;
    ///
    /// let policy = RetryPolicy::recommended(); // 10 s per try, 5 ms of reserve
    /// let ms = Duration::from_millis;
    /// assert_eq!(policy.attempt_timeout_within(Some(ms(300)), None), Some(ms(295)));
    /// assert_eq!(policy.attempt_timeout_within(Some(ms(300)), Some(ms(50))), Some(ms(50)));
    /// assert_eq!(policy.attempt_timeout_within(Some(ms(5)), None), None);
    /// assert_eq!(policy.attempt_timeout_within(None, None), Some(Duration::from_secs(10)));
    /// ```
    pub fn attempt_timeout_within(
        &self,
        remaining: Option<Duration>,
        adaptive: Option<Duration>,
    ) -> Option<Duration> {
        let per_try = adaptive.unwrap_or(self.deadline.per_try_timeout);
        match remaining {
            None => Some(per_try),
            Some(remaining) => self
                .deadline
                .usable_of(remaining)
                .map(|usable| usable.min(per_try)),
        }
    }

    /// Decides what follows an attempt that came to `result`, at `now`.
    ///
    /// On [`Decision::Retry`] the limiter has already granted the retry, so the mechanism must
    /// send it (or, if it cannot, accept that one retry's worth of budget is spent). The expected
    /// latency of the next attempt is `self.expected_latency`; call
    /// [`RetryPolicy::decide_estimated`] to take it from a live estimate.
    pub fn decide<R: rand::Rng + ?Sized>(
        &self,
        state: &mut RetryState,
        result: AttemptResult,
        idempotent: bool,
        deadline: Option<Deadline>,
        now: Instant,
        rng: &mut R,
    ) -> Decision {
        self.decide_estimated(state, result, idempotent, deadline, now, None, rng)
    }

    /// [`RetryPolicy::decide`] with the expected latency of the next attempt taken from
    /// `estimator` at `now`, as [`should_start_estimated`](Self::should_start_estimated) takes it
    /// (`None`: `self.expected_latency`): the decision the retry layer and the simulator both
    /// take after an attempt, each with its estimator.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_estimated<R: rand::Rng + ?Sized>(
        &self,
        state: &mut RetryState,
        result: AttemptResult,
        idempotent: bool,
        deadline: Option<Deadline>,
        now: Instant,
        estimator: Option<&dyn LatencyQuantiles>,
        rng: &mut R,
    ) -> Decision {
        let remaining = deadline.map(|d| d.remaining(now));
        self.decide_within(state, result, idempotent, remaining, now, estimator, rng)
    }

    /// [`decide_estimated`](Self::decide_estimated) given the time `remaining` of the deadline at
    /// `now` (`None`: no deadline), for a caller that knows it without `Instant`s, as
    /// [`should_start_within`](Self::should_start_within). `now` is read by the limiter (a
    /// retry budget's window) and `estimator` only.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stormguard::classify::AttemptResult;
    /// use stormguard::policy::{Decision, GiveUp, RetryPolicy};
    ///
    /// let policy = RetryPolicy::recommended(); // backoff of at most 250 ms
    /// let mut rng = stormguard::backoff::seeded(1);
    /// let now = Instant::now();
    /// let failed = AttemptResult::Response { status: 503, retry_after: None };
    /// let mut state = policy.begin(now);
    /// // Far from the deadline: the 503 is retried.
    /// let left = Some(Duration::from_secs(5));
    /// let decision = policy.decide_within(&mut state, failed, true, left, now, None, &mut rng);
    /// assert!(matches!(decision, Decision::Retry { .. }));
    /// // With 3 ms left, less than the reserve: no retry can finish.
    /// let mut state = policy.begin(now);
    /// let left = Some(Duration::from_millis(3));
    /// let decision = policy.decide_within(&mut state, failed, true, left, now, None, &mut rng);
    /// assert!(matches!(decision, Decision::GiveUp(_)));
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn decide_within<R: rand::Rng + ?Sized>(
        &self,
        state: &mut RetryState,
        result: AttemptResult,
        idempotent: bool,
        remaining: Option<Duration>,
        now: Instant,
        estimator: Option<&dyn LatencyQuantiles>,
        rng: &mut R,
    ) -> Decision {
        let expected = self.expected(estimator, now);
        let idempotent = self.idempotent.unwrap_or(idempotent);
        let usable = remaining.map(|r| r.saturating_sub(self.deadline.reserve));
        let (kind, not_before) = match self.classifier.classify(result, idempotent, usable) {
            Class::Success => {
                self.limiter.on_success(state.last_cost);
                return Decision::Success;
            }
            Class::Final(reason) => return Decision::GiveUp(GiveUp::Final(reason)),
            Class::Retryable { kind, not_before } => (kind, not_before),
        };
        if state.attempts >= self.max_attempts {
            return Decision::GiveUp(GiveUp::AttemptsExhausted(kind));
        }
        let backoff = state.schedule.next_delay(rng);
        let after = not_before.map_or(backoff, |server| server.max(backoff));
        // What is left when the retry starts: the deadline less the wait, as `later` bounds a
        // wait (to `MAX_BUDGET`) when it arms the timer.
        let left_then = remaining.map(|r| r.saturating_sub(after.min(MAX_BUDGET)));
        if !self.fits(left_then, expected) {
            return Decision::GiveUp(GiveUp::Deadline);
        }
        match self.limiter.try_retry(now, kind) {
            Ok(cost) => {
                state.attempts += 1;
                state.last_cost = cost.or(state.last_cost);
                Decision::Retry { after, kind }
            }
            Err(denied) => Decision::GiveUp(GiveUp::Denied(denied, kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::TokenBucketConfig;

    /// `fits` reads the time remaining once; it must agree with the deadline policy's three
    /// checks made one after another, on every deadline, reserve and expected latency.
    #[test]
    fn should_start_agrees_with_the_deadline_policys_checks() {
        let t0 = Instant::now();
        let mut rng = crate::backoff::seeded(11);
        for _ in 0..20_000 {
            use rand::Rng;
            let mut policy = RetryPolicy::recommended();
            policy.deadline.reserve = Duration::from_micros(rng.random_range(0..3_000));
            policy.deadline.per_try_timeout = Duration::from_micros(rng.random_range(0..20_000));
            let now = t0 + Duration::from_micros(rng.random_range(0..10_000));
            let deadline = rng
                .random_bool(0.9)
                .then(|| Deadline::at(t0 + Duration::from_micros(rng.random_range(0..20_000))));
            let expected = Duration::from_micros(rng.random_range(0..10_000));
            let separately = policy.deadline.attempt_timeout(deadline, now).is_some()
                && policy.deadline.should_attempt(deadline, now, expected);
            assert_eq!(
                policy.should_start(deadline, now, expected),
                separately,
                "{deadline:?} {now:?} {expected:?} {:?}",
                policy.deadline
            );
            // The attempt's timeout from the time remaining is the deadline policy's, with
            // the adaptive timeout in place of the per-try one when there is one.
            let adaptive = Duration::from_micros(rng.random_range(0..20_000));
            assert_eq!(
                policy.attempt_timeout(deadline, now, None),
                policy.deadline.attempt_timeout(deadline, now)
            );
            let adapted = DeadlinePolicy {
                per_try_timeout: adaptive,
                ..policy.deadline
            };
            assert_eq!(
                policy.attempt_timeout(deadline, now, Some(adaptive)),
                adapted.attempt_timeout(deadline, now)
            );
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fail503() -> AttemptResult {
        AttemptResult::Response {
            status: 503,
            retry_after: None,
        }
    }

    #[test]
    fn success_needs_no_retry() {
        let policy = RetryPolicy::recommended();
        let now = Instant::now();
        let mut state = policy.begin(now);
        let ok = AttemptResult::Response {
            status: 200,
            retry_after: None,
        };
        let mut rng = crate::backoff::seeded(1);
        assert_eq!(
            policy.decide(&mut state, ok, true, None, now, &mut rng),
            Decision::Success
        );
    }

    #[test]
    fn attempts_are_capped() {
        let policy = RetryPolicy::recommended()
            .with_max_attempts(3)
            .with_limiter(Limiter::Unlimited);
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        for _ in 0..2 {
            assert!(matches!(
                policy.decide(&mut state, fail503(), true, None, now, &mut rng),
                Decision::Retry { .. }
            ));
        }
        assert_eq!(
            policy.decide(&mut state, fail503(), true, None, now, &mut rng),
            Decision::GiveUp(GiveUp::AttemptsExhausted(RetryKind::Status(503)))
        );
        assert_eq!(state.attempts(), 3);
    }

    #[test]
    fn four_hundreds_are_final() {
        let policy = RetryPolicy::recommended();
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        let not_found = AttemptResult::Response {
            status: 404,
            retry_after: None,
        };
        assert!(matches!(
            policy.decide(&mut state, not_found, true, None, now, &mut rng),
            Decision::GiveUp(GiveUp::Final(_))
        ));
    }

    /// The issue's case: a 300 ms deadline, 250 ms expected latency, 3 attempts allowed; the first
    /// attempt took 250 ms and failed, so no second one starts.
    #[test]
    fn deadline_stops_a_retry_that_cannot_finish() {
        let policy = RetryPolicy::recommended()
            .with_max_attempts(3)
            .with_limiter(Limiter::Unlimited)
            .with_backoff(Backoff::None)
            .with_expected_latency(ms(250));
        let t0 = Instant::now();
        let deadline = policy.request_deadline(Some(Deadline::after(t0, ms(300))), t0);
        assert!(policy.should_start(deadline, t0, ms(250)));
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(t0);
        let decision = policy.decide(
            &mut state,
            fail503(),
            true,
            deadline,
            t0 + ms(250),
            &mut rng,
        );
        assert_eq!(decision, Decision::GiveUp(GiveUp::Deadline));
    }

    /// The same case with the expected latency measured: 100 ms per attempt. A retry with 145 ms
    /// left after the reserve goes; one with 95 ms does not, where the policy's figure (zero)
    /// would have sent it.
    #[test]
    fn a_measured_latency_stops_a_retry_that_cannot_finish() {
        let policy = RetryPolicy::recommended()
            .with_max_attempts(3)
            .with_limiter(Limiter::Unlimited)
            .with_backoff(Backoff::None);
        let estimator = LatencyEstimator::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..100 {
            estimator.record(t0, ms(100));
        }
        let deadline = Some(Deadline::after(t0, ms(300)));
        let mut rng = crate::backoff::seeded(1);
        let mut decide = |at: u64, estimator: Option<&dyn LatencyQuantiles>| {
            let mut state = policy.begin(t0);
            let now = t0 + ms(at);
            policy.decide_estimated(
                &mut state,
                fail503(),
                true,
                deadline,
                now,
                estimator,
                &mut rng,
            )
        };
        assert!(matches!(
            decide(150, Some(&estimator)),
            Decision::Retry { .. }
        ));
        assert_eq!(
            decide(200, Some(&estimator)),
            Decision::GiveUp(GiveUp::Deadline)
        );
        assert!(matches!(decide(200, None), Decision::Retry { .. }));
        assert!(policy.should_start_estimated(deadline, t0 + ms(150), Some(&estimator)));
        assert!(!policy.should_start_estimated(deadline, t0 + ms(200), Some(&estimator)));
    }

    #[test]
    fn retry_after_longer_than_backoff_is_honoured() {
        let policy = RetryPolicy::recommended().with_limiter(Limiter::Unlimited);
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        let throttled = AttemptResult::Response {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            policy.decide(&mut state, throttled, true, None, now, &mut rng),
            Decision::Retry {
                after: Duration::from_secs(2),
                kind: RetryKind::Status(429)
            }
        );
    }

    #[test]
    fn retry_after_beyond_the_deadline_is_final() {
        let policy = RetryPolicy::recommended().with_limiter(Limiter::Unlimited);
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        let throttled = AttemptResult::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(5)),
        };
        let deadline = Some(Deadline::after(now, Duration::from_secs(1)));
        assert!(matches!(
            policy.decide(&mut state, throttled, true, deadline, now, &mut rng),
            Decision::GiveUp(GiveUp::Final(FinalReason::RetryAfterTooLong { .. }))
        ));
    }

    #[test]
    fn budget_denial_is_reported_and_spends_nothing_past_the_deadline() {
        let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap());
        let policy = RetryPolicy::recommended().with_limiter(Limiter::Budget(budget));
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        assert_eq!(
            policy.decide(&mut state, fail503(), true, None, now, &mut rng),
            Decision::GiveUp(GiveUp::Denied(Denied::Budget, RetryKind::Status(503)))
        );
    }

    #[test]
    fn token_bucket_refunds_the_retry_cost_on_success() {
        let bucket = Arc::new(TokenBucket::new(TokenBucketConfig::default()).unwrap());
        let policy = RetryPolicy::recommended().with_limiter(Limiter::Bucket(bucket.clone()));
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        let timeout = AttemptResult::TimeoutAfterWritten;
        assert!(matches!(
            policy.decide(&mut state, timeout, true, None, now, &mut rng),
            Decision::Retry { .. }
        ));
        assert_eq!(bucket.available(), 490, "a timeout retry costs 10");
        let ok = AttemptResult::Response {
            status: 200,
            retry_after: None,
        };
        assert_eq!(
            policy.decide(&mut state, ok, true, None, now, &mut rng),
            Decision::Success
        );
        assert_eq!(bucket.available(), 500);
    }

    #[test]
    fn non_idempotent_timeout_is_final_but_refused_connection_retries() {
        let policy = RetryPolicy::recommended().with_limiter(Limiter::Unlimited);
        let now = Instant::now();
        let mut rng = crate::backoff::seeded(1);
        let mut state = policy.begin(now);
        assert!(matches!(
            policy.decide(
                &mut state,
                AttemptResult::TimeoutAfterWritten,
                false,
                None,
                now,
                &mut rng
            ),
            Decision::GiveUp(GiveUp::Final(FinalReason::NotIdempotent(_)))
        ));
        let mut state = policy.begin(now);
        assert!(matches!(
            policy.decide(
                &mut state,
                AttemptResult::ConnectRefused,
                false,
                None,
                now,
                &mut rng
            ),
            Decision::Retry {
                kind: RetryKind::Refused,
                ..
            }
        ));
    }

    #[test]
    fn request_deadline_takes_the_earlier() {
        let now = Instant::now();
        let policy = RetryPolicy::recommended().with_overall_timeout(ms(500));
        let incoming = Deadline::after(now, ms(200));
        assert_eq!(policy.request_deadline(Some(incoming), now), Some(incoming));
        assert_eq!(
            policy.request_deadline(None, now),
            Some(Deadline::after(now, ms(500)))
        );
    }
}
