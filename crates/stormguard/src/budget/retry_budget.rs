use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::BudgetError;

/// Fixed-point scale: balances are counted in millionths of a retry so that any ratio is exact
/// to 1e-6, where an integer "withdraw amount" of `1 / ratio` (tower 0.5) is not.
pub(crate) const UNITS_PER_RETRY: i64 = 1_000_000;
/// Number of time slots the ttl is cut into: deposits live between 9/10 and 10/10 of the ttl.
pub(crate) const SLOTS: usize = 10;
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(60);
/// The largest ratio: one retry per request, which doubles the load in an outage. A budget
/// that allowed more retries than requests would let retries multiply the load, the storm a
/// budget exists to prevent; `max_attempts` alone says how many a request may make.
pub const MAX_RATIO: f64 = 1.0;

/// A retry budget with Finagle's semantics: retries are allowed as a share (`ratio`) of recent
/// requests, plus a small reserve, per dependency.
///
/// Each original request [`deposit`](Self::deposit)s `ratio` of a retry; each retry must first
/// [`try_withdraw`](Self::try_withdraw) one whole retry. Deposits and withdrawals expire after
/// the `ttl`, so the budget follows the recent traffic. A reserve of `min_per_sec * ttl` retries
/// is always added to the balance so that a client sending one request a minute can still retry.
///
/// ## Guarantees
/// - Exact ratio: one retry is 1 000 000 units and a deposit is `round(ratio * 1 000 000)`
///   units, so ratio 0.3 allows exactly 30 retries per 100 requests (tower 0.5 allows 33).
/// - At every successful withdrawal, the withdrawals still live are at most `ratio` times the
///   deposits still live plus the reserve. Over a run of length `T`, the retries allowed are at
///   most `ratio * requests + min_per_sec * ttl * (T / ttl + 1)`.
/// - Withdrawals outlive the deposits that paid for them (both expire by age, the deposits
///   first), so the balance can be negative for a while after a burst of retries: a debt that
///   expires with those retries.
/// - Expiry: time is cut into 10 slots of `ttl / 10`, counted from the first `now` the budget
///   sees (its epoch, stored on the first call: the budget has no clock). A deposit lives for at
///   least `9/10 * ttl` and at most `ttl`.
/// - A `now` earlier than one already seen (threads reading the clock slightly out of order, or
///   before the epoch) is counted in the current slot: it never panics and never revives
///   expired deposits.
///
/// ## Concurrency
/// All methods take `&self`; the budget is `Send + Sync` and meant to be shared in an `Arc`. The
/// hot path is a few atomic operations: the balance (reserve plus the live slots) is kept in one
/// atomic, and a withdrawal is a compare-and-swap on it that succeeds only if a whole retry is
/// there, so two threads can never both spend the last retry. A mutex is taken only when time
/// has moved into a new slot, to zero the expired slots exactly once. While a deposit or a slot
/// rotation is in flight, other threads may see a balance lower than the final one, never a
/// higher one that lets a retry through: the budget errs on the side of not retrying.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::budget::RetryBudget;
///
/// let ttl = Duration::from_secs(10);
/// let budget = RetryBudget::new(ttl, 0, 0.3).unwrap();
/// let t0 = Instant::now();
/// for _ in 0..100 {
///     budget.deposit(t0);
/// }
/// let allowed = std::iter::from_fn(|| Some(budget.try_withdraw(t0)))
///     .take_while(|&ok| ok)
///     .count();
/// assert_eq!(allowed, 30); // exactly 0.3 per request
///
/// // After the ttl the deposits have expired, and so have the retries they paid for.
/// assert_eq!(budget.balance(t0 + ttl), 0.0);
/// assert!(!budget.try_withdraw(t0 + ttl));
/// ```
pub struct RetryBudget {
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
    deposit_units: i64,
    slot_nanos: u64,
    /// The first `now` seen: slot indices count from here.
    epoch: OnceLock<Instant>,
    /// Ring of net units (deposits minus withdrawals) per slot; slot `i % SLOTS` holds index `i`.
    slots: [AtomicI64; SLOTS],
    /// Reserve plus the sum of `slots`, kept apart so that a withdrawal is a single CAS.
    balance_units: AtomicI64,
    /// The newest slot index whose slot has been zeroed; the slots up to `SLOTS - 1` before it
    /// are live.
    current_index: AtomicU64,
    /// Held only while zeroing expired slots, so that each is zeroed exactly once.
    rotation: Mutex<()>,
}

impl RetryBudget {
    /// Builds a budget where each request earns `ratio` of a retry, deposits live for `ttl`,
    /// and `min_per_sec * ttl` retries are always available.
    ///
    /// `ttl` must be in [1 s, 60 s] (shorter windows see too few requests to estimate a share,
    /// longer ones react too late to overload); `ratio` must be finite and in [0, 1]
    /// ([`MAX_RATIO`]).
    /// A ratio of 0 with `min_per_sec` 0 allows no retries at all.
    pub fn new(ttl: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, BudgetError> {
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(BudgetError::TtlOutOfRange { ttl });
        }
        if !ratio.is_finite() || !(0.0..=MAX_RATIO).contains(&ratio) {
            return Err(BudgetError::RatioOutOfRange { ratio });
        }
        Ok(Self::from_valid(ttl, min_per_sec, ratio))
    }

    /// Finagle's defaults, also linkerd's `ServiceProfile` defaults: ttl 10 s, 10 retries per
    /// second of reserve, ratio 0.2 (overload adds at most 20% load, plus the reserve).
    pub fn recommended() -> Self {
        Self::from_valid(Duration::from_secs(10), 10, 0.2)
    }

    fn from_valid(ttl: Duration, min_per_sec: u32, ratio: f64) -> Self {
        // `ratio <= 1` so the product is at most 1e6: no overflow, and the rounding is exact to
        // half a unit.
        let deposit_units = (ratio * UNITS_PER_RETRY as f64).round() as i64;
        // min_per_sec * ttl_seconds * 1e6 = min_per_sec * ttl_nanos / 1000: at most
        // 4.3e9 * 6e10 / 1e3 = 2.6e17 units, well inside i64.
        let reserve_units = (u128::from(min_per_sec) * ttl.as_nanos() / 1000) as i64;
        Self {
            ttl,
            min_per_sec,
            ratio,
            deposit_units,
            // ttl is at most 60 s, so a slot's width fits u64 nanoseconds, and the slot index
            // of every request is a u64 division rather than a (much slower) u128 one.
            slot_nanos: (ttl.as_nanos() / SLOTS as u128) as u64,
            epoch: OnceLock::new(),
            slots: Default::default(),
            balance_units: AtomicI64::new(reserve_units),
            current_index: AtomicU64::new(0),
            rotation: Mutex::new(()),
        }
    }

    /// Records one original request, earning `ratio` of a retry for the next `ttl`.
    ///
    /// Call it once per request, not per attempt: retries earning retries would let a failing
    /// dependency pay for its own overload.
    pub fn deposit(&self, now: Instant) {
        let index = self.advance_to(now);
        self.slots[slot_of(index)].fetch_add(self.deposit_units, Ordering::AcqRel);
        self.balance_units
            .fetch_add(self.deposit_units, Ordering::AcqRel);
    }

    /// The instant the budget's window counts from: the first `now` it was given, `None` before
    /// any. With it, a caller that keeps time as nanoseconds (a simulator) can deposit with
    /// [`deposit_after_epoch`](Self::deposit_after_epoch).
    pub fn epoch(&self) -> Option<Instant> {
        self.epoch.get().copied()
    }

    /// [`deposit`](Self::deposit) at `elapsed_nanos` after the [`epoch`](Self::epoch): the same
    /// slot and the same units, without an `Instant` made and then subtracted from the epoch.
    ///
    /// Why: the simulator deposits for every call it starts, in virtual nanoseconds, and turning
    /// those into an `Instant` and back was a third of the deposit's cost on its hottest path.
    /// Call it only once the epoch is set (by any call that takes an `Instant`); before, it
    /// counts from the epoch to come, which is not what a caller means.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stormguard::budget::RetryBudget;
    ///
    /// let t0 = Instant::now();
    /// let (a, b) = (RetryBudget::recommended(), RetryBudget::recommended());
    /// a.deposit(t0);
    /// b.deposit(t0);
    /// a.deposit(t0 + Duration::from_millis(1500));
    /// b.deposit_after_epoch(1_500_000_000);
    /// assert_eq!(a.balance(t0 + Duration::from_secs(2)), b.balance(t0 + Duration::from_secs(2)));
    /// ```
    pub fn deposit_after_epoch(&self, elapsed_nanos: u64) {
        debug_assert!(
            self.epoch.get().is_some(),
            "deposit_after_epoch before an epoch"
        );
        let index = self.advance_to_nanos(elapsed_nanos);
        self.slots[slot_of(index)].fetch_add(self.deposit_units, Ordering::AcqRel);
        self.balance_units
            .fetch_add(self.deposit_units, Ordering::AcqRel);
    }

    /// Spends one retry if the budget holds at least one; call it before each retry and send
    /// the retry only on `true`.
    ///
    /// The check and the spending are one compare-and-swap on the balance, so under any number
    /// of concurrent callers the retries granted never exceed the balance.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let index = self.advance_to(now);
        let spent = self
            .balance_units
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                (balance >= UNITS_PER_RETRY).then_some(balance - UNITS_PER_RETRY)
            })
            .is_ok();
        if spent {
            // Recorded in the slot after the balance, so the withdrawal expires with its slot.
            // If the slot rotates in between, the withdrawal lands in the newer slot and lives
            // longer: conservative.
            self.slots[slot_of(index)].fetch_sub(UNITS_PER_RETRY, Ordering::AcqRel);
        }
        spent
    }

    /// Retries available at `now`, in retries (fractions included), for metrics and debugging.
    ///
    /// Negative while retries that were paid for by now-expired deposits are still live.
    pub fn balance(&self, now: Instant) -> f64 {
        self.advance_to(now);
        self.balance_units.load(Ordering::Acquire) as f64 / UNITS_PER_RETRY as f64
    }

    /// The share of requests that may be retried, as given to [`new`](Self::new); the budget
    /// applies it rounded to the nearest 1e-6.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// How long deposits and withdrawals count.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Retries per second always available, whatever the traffic, as a reserve of
    /// `min_per_sec * ttl`.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// Moves the ring to the slot of `now`, zeroing the slots that expired, and returns the slot
    /// index to record in (never older than the newest index seen).
    fn advance_to(&self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        let elapsed = now.saturating_duration_since(epoch);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        self.advance_to_nanos(nanos)
    }

    /// [`advance_to`](Self::advance_to) at `nanos` after the epoch.
    #[inline]
    fn advance_to_nanos(&self, nanos: u64) -> u64 {
        let current = self.current_index.load(Ordering::Acquire);
        // Nearly every call falls in the current slot: told by a multiplication, where the
        // slot's index is a 64-bit division (tens of cycles, on the path of every request
        // and of every simulated attempt). Saturating: a product past u64 nanoseconds bounds
        // a slot no time reaches. The same answer as the division's `index <= current`.
        if nanos < current.saturating_add(1).saturating_mul(self.slot_nanos) {
            return current;
        }
        let index = nanos / self.slot_nanos;
        if index <= current {
            return current;
        }
        self.rotate(index)
    }

    #[cold]
    fn rotate(&self, index: u64) -> u64 {
        // Nothing under this lock can panic, but a poisoned lock still guards valid state.
        let _guard = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current_index.load(Ordering::Acquire);
        if index <= current {
            return current;
        }
        // Only the last SLOTS indices up to `index` map to distinct slots; older ones are
        // covered by them.
        let first = (current + 1).max(index.saturating_sub(SLOTS as u64 - 1));
        for expired in first..=index {
            let units = self.slots[slot_of(expired)].swap(0, Ordering::AcqRel);
            self.balance_units.fetch_sub(units, Ordering::AcqRel);
        }
        // Published last: a thread that sees the new index sees its slot already zeroed.
        self.current_index.store(index, Ordering::Release);
        index
    }

    #[cfg(test)]
    pub(crate) fn deposit_units(&self) -> i64 {
        self.deposit_units
    }

    #[cfg(test)]
    pub(crate) fn slot_nanos(&self) -> u64 {
        self.slot_nanos
    }
}

fn slot_of(index: u64) -> usize {
    (index % SLOTS as u64) as usize
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.ttl)
            .field("min_per_sec", &self.min_per_sec)
            .field("ratio", &self.ratio)
            .field(
                "balance",
                &(self.balance_units.load(Ordering::Relaxed) as f64 / UNITS_PER_RETRY as f64),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
