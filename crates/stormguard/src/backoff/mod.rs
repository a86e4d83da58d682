//! How long to wait before each retry.
//!
//! ## Why back off, and why jitter?
//! A dependency that fails under load fails because it has too much work. Retrying at once adds
//! more work at the worst moment, so each retry waits, and waits longer each time (exponential
//! backoff), up to a cap so that no caller ever waits without bound. But backoff alone does not
//! spread the load: clients that failed together compute the same delays and come back together,
//! in lockstep, as a thundering herd that fails again. Randomising the delay ("jitter") breaks the
//! lockstep. Marc Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015) measured
//! the variants; this module implements his formulas exactly, named as he names them:
//!
//! | text | delay before retry n |
//! |------|----------------------|
//! | `none` | 0 |
//! | `constant(100ms)` | always 100 ms |
//! | `exponential(base=25ms, cap=1s)` | c(n), no jitter |
//! | `full-jitter(base=25ms, cap=1s)` | uniform in \[0, c(n)\] |
//! | `equal-jitter(base=25ms, cap=1s)` | c(n)/2 + uniform in \[0, c(n)/2\] |
//! | `decorrelated-jitter(base=25ms, cap=1s)` | min(cap, uniform in \[base, 3 × previous\]), previous starting at base |
//!
//! where c(n) = min(cap, base × 2^(n−1)), so the first retry's ceiling is `base`, as in Envoy and
//! the AWS SDKs. All arithmetic saturates: no retry number, up to `u32::MAX`, overflows.
//!
//! A text's delays (`constant`'s, `base`, `cap`) are 1 ms to 1 h ([`MIN_DELAY`], [`MAX_DELAY`]):
//! no wait is written `none`, never `constant(0s)` or `base=0s`, so that one spelling means "retry
//! at once" and a zero cannot hide in a base, where it would make every delay zero.
//!
//! A [`Backoff`] is the plain-data policy; a [`Schedule`] is its state for one request. Randomness
//! comes from a caller-supplied RNG, so tests and the simulator are deterministic; see [`seeded`],
//! [`for_host`] and [`from_process_entropy`].
//!
//! ```rust
//! use std::time::Duration;
//! use stormguard::backoff::{self, Backoff};
//!
//! let backoff: Backoff = "full-jitter(base=25ms, cap=1s)".parse().unwrap();
//! let mut rng = backoff::seeded(7);
//! let mut schedule = backoff.schedule();
//! for retry in 1..=5 {
//!     let delay = schedule.next_delay(&mut rng);
//!     assert!(delay <= backoff.max_delay(retry));
//!     assert!(delay <= Duration::from_secs(1));
//! }
//! assert_eq!(schedule.retries_so_far(), 5);
//! assert_eq!(backoff.to_string(), "full-jitter(base=25ms, cap=1s)");
//! ```

use std::time::Duration;

mod jitter;
mod text;

pub use jitter::{
    for_host, from_process_entropy, host_identity, host_seed, jittered_period,
    process_entropy_seed, seeded, JitterRng,
};
pub use text::{BackoffParseError, MAX_DELAY, MIN_DELAY};

/// A backoff policy: how the delay before retry n is chosen.
///
/// It is plain data (`Copy`, comparable, hashable) so that it can live in configs, be compared
/// across hops, and be printed back with [`Display`](std::fmt::Display) in the canonical text that
/// [`FromStr`](std::str::FromStr) reads (`parse(print(x)) == x` for every value the parser
/// accepts). Every delay is bounded by [`Backoff::max_delay`], which never exceeds `cap`, whatever
/// the retry number or the RNG.
///
/// Values built directly, without the parser, may hold `base > cap`, a zero base or any delay up
/// to [`Duration::MAX`]; they still never panic and never wait more than `cap`, but the parser
/// refuses them as misconfigurations: its delays are [`MIN_DELAY`] to [`MAX_DELAY`].
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::backoff::Backoff;
///
/// let backoff = Backoff::Exponential {
///     base: Duration::from_millis(25),
///     cap: Duration::from_secs(1),
/// };
/// assert_eq!(backoff.ceiling(1), Duration::from_millis(25));
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(100));
/// assert_eq!(backoff.ceiling(100), Duration::from_secs(1));
/// assert_eq!(backoff, "exponential(base=25ms, cap=1s)".parse().unwrap());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// Retry at once. Text: `none`. Only sensible for idempotent reads against a different
    /// instance, where the failure was the instance and not the load.
    None,
    /// Always wait the same delay. Text: `constant(100ms)` (input also accepts
    /// `constant(delay=100ms)`). It does not spread a herd; prefer a jittered kind.
    Constant(Duration),
    /// Wait exactly c(n) = min(cap, base × 2^(n−1)), no jitter. Text:
    /// `exponential(base=25ms, cap=1s)`. Clients still return in lockstep.
    Exponential {
        /// The first retry's delay, doubled for each later retry.
        base: Duration,
        /// The largest delay ever waited.
        cap: Duration,
    },
    /// Wait uniformly in \[0, c(n)\]. Text: `full-jitter(base=25ms, cap=1s)`. Brooker found it
    /// does the least total work of the jittered kinds; it is the [`Default`].
    FullJitter {
        /// The first retry's ceiling, doubled for each later retry.
        base: Duration,
        /// The largest delay ever waited.
        cap: Duration,
    },
    /// Wait c(n)/2 plus uniform in \[0, c(n)/2\]. Text: `equal-jitter(base=25ms, cap=1s)`. Keeps
    /// a guaranteed minimum wait, at the cost of more total work than full jitter.
    EqualJitter {
        /// The first retry's ceiling, doubled for each later retry.
        base: Duration,
        /// The largest delay ever waited.
        cap: Duration,
    },
    /// Wait min(cap, uniform in \[base, 3 × previous delay\]), the previous delay starting at
    /// base. Text: `decorrelated-jitter(base=25ms, cap=1s)`. Each delay depends on the last, not
    /// on the retry number.
    DecorrelatedJitter {
        /// The smallest delay ever waited, and the starting "previous delay".
        base: Duration,
        /// The largest delay ever waited.
        cap: Duration,
    },
}

/// The project's recommended policy: `full-jitter(base=25ms, cap=250ms)`.
///
/// Full jitter because Brooker measured it to finish the work with the fewest calls; base 25 ms
/// because that is Envoy's default retry base interval; cap 250 ms, ten times the base, also
/// Envoy's default, because a retry that waits longer than that has usually outlived the
/// caller's deadline anyway.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::backoff::Backoff;
/// assert_eq!(Backoff::default().max_delay(10), Duration::from_millis(250));
/// ```
impl Default for Backoff {
    fn default() -> Self {
        Backoff::FullJitter {
            base: Duration::from_millis(25),
            cap: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// The formula's ceiling for retry `retry` (1 is the first retry; 0 is treated as 1).
    ///
    /// For `exponential`, `full-jitter` and `equal-jitter` it is c(n) = min(cap, base × 2^(n−1));
    /// for `decorrelated-jitter` it is min(cap, base × 3^n), the largest value its chain of
    /// delays can reach by retry n; for `constant(d)` it is d; for `none` it is zero. In every
    /// case it is the largest delay retry n can ever wait, so it equals [`Backoff::max_delay`].
    /// Saturating: never overflows for any `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Constant(delay) => delay,
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::EqualJitter { base, cap } => exponential_ceiling(base, cap, retry),
            Backoff::DecorrelatedJitter { base, cap } => decorrelated_ceiling(base, cap, retry),
        }
    }

    /// The worst-case delay before retry `retry` (0 is treated as 1): no RNG can make
    /// [`Schedule::next_delay`] wait longer. It is never above `cap` (or the constant delay),
    /// and is non-decreasing in `retry`. Used to check that retries fit a deadline.
    ///
    /// ```rust
    /// use std::time::Duration;
    /// use stormguard::backoff::Backoff;
    /// let backoff: Backoff = "equal-jitter(base=10ms, cap=50ms)".parse().unwrap();
    /// assert_eq!(backoff.max_delay(1), Duration::from_millis(10));
    /// assert_eq!(backoff.max_delay(4), Duration::from_millis(50));
    /// ```
    pub fn max_delay(&self, retry: u32) -> Duration {
        self.ceiling(retry)
    }

    /// The sum of [`Backoff::max_delay`] over retries 1 to `retries`: the longest a request can
    /// spend waiting between its attempts. Saturates at [`Duration::MAX`]; runs in time bounded
    /// by the number of doublings to the cap, not by `retries`.
    ///
    /// ```rust
    /// use std::time::Duration;
    /// use stormguard::backoff::Backoff;
    /// let backoff: Backoff = "full-jitter(base=25ms, cap=80ms)".parse().unwrap();
    /// // 25 + 50 + 80 + 80
    /// assert_eq!(backoff.worst_case_total(4), Duration::from_millis(235));
    /// ```
    pub fn worst_case_total(&self, retries: u32) -> Duration {
        let plateau = self.max_delay(u32::MAX);
        let mut total: u128 = 0;
        for retry in 1..=retries {
            let delay = self.max_delay(retry);
            if delay == plateau {
                // max_delay is non-decreasing, so every remaining retry waits the plateau.
                let remaining = u128::from(retries - retry + 1);
                total = total.saturating_add(plateau.as_nanos().saturating_mul(remaining));
                break;
            }
            total = total.saturating_add(delay.as_nanos());
        }
        saturating_duration(total)
    }

    /// Whether delays are randomised (`full-jitter`, `equal-jitter`, `decorrelated-jitter`).
    /// Callers use it to warn about policies that let clients return in lockstep.
    pub fn is_jittered(&self) -> bool {
        matches!(
            self,
            Backoff::FullJitter { .. }
                | Backoff::EqualJitter { .. }
                | Backoff::DecorrelatedJitter { .. }
        )
    }

    /// A fresh sequence of delays for one request, starting at retry 1.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            backoff: *self,
            retries_so_far: 0,
            previous: self.decorrelated_start(),
        }
    }

    fn decorrelated_start(&self) -> Duration {
        match *self {
            Backoff::DecorrelatedJitter { base, .. } => base,
            _ => Duration::ZERO,
        }
    }
}

/// The delays of one request under a [`Backoff`], one per retry.
///
/// It exists because decorrelated jitter depends on the previous delay, and every kind depends on
/// the retry number: the state is per request, not per policy. It is small and `Copy`-cheap to
/// clone; it holds no RNG, so one RNG can serve many schedules (or one per thread).
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::backoff::{self, Backoff};
///
/// let backoff: Backoff = "decorrelated-jitter(base=10ms, cap=1s)".parse().unwrap();
/// let mut schedule = backoff.schedule();
/// let mut rng = backoff::seeded(42);
/// let first = schedule.next_delay(&mut rng);
/// assert!(first >= Duration::from_millis(10) && first <= Duration::from_millis(30));
/// assert_eq!(schedule.retries_so_far(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    backoff: Backoff,
    retries_so_far: u32,
    previous: Duration,
}

impl Schedule {
    /// The delay to wait before the next retry; the first call is for retry 1.
    ///
    /// Always within \[0, `backoff.max_delay(n)`\] for the retry n it is for. The retry count
    /// saturates at `u32::MAX` instead of wrapping. Un-jittered kinds do not draw from `rng`.
    pub fn next_delay<R: rand::Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let retry = self.retries_so_far.saturating_add(1);
        self.retries_so_far = retry;
        match self.backoff {
            Backoff::None => Duration::ZERO,
            Backoff::Constant(delay) => delay,
            Backoff::Exponential { base, cap } => exponential_ceiling(base, cap, retry),
            Backoff::FullJitter { base, cap } => {
                let ceiling = exponential_ceiling(base, cap, retry).as_nanos();
                saturating_duration(uniform_inclusive(rng, 0, ceiling))
            }
            Backoff::EqualJitter { base, cap } => {
                let ceiling = exponential_ceiling(base, cap, retry).as_nanos();
                let half = ceiling / 2;
                // ceiling - half rather than half, so an odd ceiling is still reachable.
                saturating_duration(half + uniform_inclusive(rng, 0, ceiling - half))
            }
            Backoff::DecorrelatedJitter { base, cap } => {
                let low = base.as_nanos();
                let high = self.previous.as_nanos().saturating_mul(3).max(low);
                let delay = saturating_duration(uniform_inclusive(rng, low, high)).min(cap);
                self.previous = delay;
                delay
            }
        }
    }

    /// How many delays this schedule has handed out, i.e. the number of the last retry.
    pub fn retries_so_far(&self) -> u32 {
        self.retries_so_far
    }

    /// The policy this schedule follows.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
}

/// c(n) = min(cap, base × 2^(n−1)), computed in u128 nanoseconds so it saturates, not wraps.
fn exponential_ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
    let base = base.as_nanos();
    let doublings = retry.max(1) - 1;
    let grown = if base == 0 {
        0
    } else if doublings >= base.leading_zeros() {
        u128::MAX
    } else {
        base << doublings
    };
    saturating_duration(grown).min(cap)
}

/// min(cap, base × 3^n): decorrelated jitter's largest reachable delay at retry n.
fn decorrelated_ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
    let cap_nanos = cap.as_nanos();
    let mut reach = base.as_nanos();
    // With a non-zero base this stops after at most ~60 triplings, whatever `retry` is.
    for _ in 0..retry.max(1) {
        if reach == 0 || reach >= cap_nanos {
            break;
        }
        reach = reach.saturating_mul(3);
    }
    saturating_duration(reach).min(cap)
}

fn saturating_duration(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    // Every delay a policy gives fits u64 nanoseconds (585 years): made as `Duration` makes
    // one, by a division by a constant that compiles to a multiplication, where a u128
    // division is a call to a routine of tens of cycles, once a retry.
    if let Ok(nanos) = u64::try_from(nanos) {
        return Duration::from_nanos(nanos);
    }
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10^9, so it fits in a u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// Uniform in \[low, high\], drawing a u64 when the range allows, which is faster than u128.
fn uniform_inclusive<R: rand::Rng + ?Sized>(rng: &mut R, low: u128, high: u128) -> u128 {
    if low >= high {
        return low;
    }
    match (u64::try_from(low), u64::try_from(high)) {
        (Ok(low), Ok(high)) => u128::from(rng.random_range(low..=high)),
        _ => rng.random_range(low..=high),
    }
}

#[cfg(test)]
mod tests;
