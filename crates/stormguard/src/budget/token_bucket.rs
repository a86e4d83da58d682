use std::sync::atomic::{AtomicU32, Ordering};

use super::BudgetError;

/// The sizes of a [`TokenBucket`]: how many retries it holds and what each kind of retry costs.
///
/// The defaults are the AWS SDKs' "standard" retry mode: 500 tokens, 5 per retry, 10 per retry
/// after a timeout (a timeout is a stronger sign of overload, and its retry more likely to pile
/// on), 1 back per success at the first try.
///
/// ```rust
/// use stormguard::budget::TokenBucketConfig;
///
/// let config = TokenBucketConfig::default();
/// assert_eq!(config.capacity / config.retry_cost, 100); // 100 retries from a full bucket
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucketConfig {
    /// Tokens the bucket holds when full (and at start); at least 1.
    pub capacity: u32,
    /// Tokens a retry after an ordinary failure costs; at most `capacity`.
    pub retry_cost: u32,
    /// Tokens a retry after a timeout costs; at most `capacity`.
    pub timeout_retry_cost: u32,
    /// Tokens a success at the first try puts back, so that a healthy dependency refills the
    /// bucket as it is used.
    pub success_refund: u32,
}

impl Default for TokenBucketConfig {
    /// AWS SDK standard retry mode: capacity 500, retry 5, timeout retry 10, refund 1.
    fn default() -> Self {
        Self {
            capacity: 500,
            retry_cost: 5,
            timeout_retry_cost: 10,
            success_refund: 1,
        }
    }
}

/// A retry budget with the AWS SDKs' standard-mode semantics: a bucket of tokens that retries
/// spend and successes refill, with no clock.
///
/// A retry is allowed only when the bucket holds its cost ([`try_acquire`](Self::try_acquire)).
/// A success at the first try refunds `success_refund`; a success after retries refunds what the
/// last retry cost ([`on_success`](Self::on_success)). Failures refund nothing, so while a
/// dependency fails persistently the bucket drains and retries stop (after 100 retries with the
/// defaults), and they resume as successes come back. Nothing refills with time: a client that
/// stops sending keeps its bucket as it was.
///
/// ## Guarantees
/// The token count never goes below 0 nor above `capacity`, under any number of concurrent
/// callers: each operation is one compare-and-swap loop on an atomic counter, so the final count
/// is exactly `capacity - acquired + refunded`, where `refunded` is what
/// [`on_success`](Self::on_success) reports it added (refunds are capped at `capacity`).
///
/// ```rust
/// use stormguard::budget::{TokenBucket, TokenBucketConfig};
///
/// let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
/// let cost = bucket.try_acquire(true).unwrap(); // a retry after a timeout
/// assert_eq!(cost, 10);
/// assert_eq!(bucket.available(), 490);
/// bucket.on_success(Some(cost)); // that retry succeeded: its cost comes back
/// assert_eq!(bucket.available(), 500);
///
/// while bucket.try_acquire(false).is_some() {} // a dependency that keeps failing
/// assert_eq!(bucket.available(), 0);
/// assert_eq!(bucket.try_acquire(false), None);
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    config: TokenBucketConfig,
    tokens: AtomicU32,
}

impl TokenBucket {
    /// Builds a full bucket; `capacity` must be at least 1 and each retry cost at most
    /// `capacity` (a larger cost could never be paid).
    pub fn new(config: TokenBucketConfig) -> Result<Self, BudgetError> {
        if config.capacity == 0 {
            return Err(BudgetError::ZeroCapacity);
        }
        for (name, cost) in [
            ("retry_cost", config.retry_cost),
            ("timeout_retry_cost", config.timeout_retry_cost),
        ] {
            if cost > config.capacity {
                return Err(BudgetError::CostExceedsCapacity {
                    name,
                    cost,
                    capacity: config.capacity,
                });
            }
        }
        Ok(Self {
            config,
            tokens: AtomicU32::new(config.capacity),
        })
    }

    /// Takes the cost of one retry from the bucket; `Some(cost)` means the retry may be sent,
    /// and the cost should be passed to [`on_success`](Self::on_success) if it succeeds.
    ///
    /// `after_timeout` selects `timeout_retry_cost` instead of `retry_cost`. Returns `None`,
    /// taking nothing, when fewer tokens than the cost are left.
    pub fn try_acquire(&self, after_timeout: bool) -> Option<u32> {
        let cost = if after_timeout {
            self.config.timeout_retry_cost
        } else {
            self.config.retry_cost
        };
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                tokens.checked_sub(cost)
            })
            .ok()
            .map(|_| cost)
    }

    /// Records a successful request: `None` if it succeeded at the first try (refunds
    /// `success_refund`), `Some(cost)` with the cost its last retry acquired (refunds that cost).
    ///
    /// Returns the tokens actually added, which is less than the refund when the bucket fills to
    /// `capacity`; callers that do not keep count may ignore it.
    pub fn on_success(&self, last_acquired: Option<u32>) -> u32 {
        let refund = last_acquired.unwrap_or(self.config.success_refund);
        let capacity = self.config.capacity;
        match self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                (tokens < capacity && refund > 0)
                    .then(|| tokens.saturating_add(refund).min(capacity))
            }) {
            Ok(before) => before.saturating_add(refund).min(capacity) - before,
            Err(_) => 0,
        }
    }

    /// Tokens in the bucket now, for metrics and debugging.
    pub fn available(&self) -> u32 {
        self.tokens.load(Ordering::Acquire)
    }

    /// The sizes this bucket was built with.
    pub fn config(&self) -> TokenBucketConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenBucket>();
    }

    #[test]
    fn defaults_are_aws_standard_mode() {
        let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
        assert_eq!(bucket.available(), 500);
        assert_eq!(bucket.config(), TokenBucketConfig::default());
        assert_eq!(bucket.try_acquire(false), Some(5));
        assert_eq!(bucket.try_acquire(true), Some(10));
        assert_eq!(bucket.available(), 485);
    }

    #[test]
    fn a_failing_dependency_gets_100_retries_then_none() {
        let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
        let sent = (0..1000)
            .filter(|_| bucket.try_acquire(false).is_some())
            .count();
        assert_eq!(sent, 100);
        assert_eq!(bucket.available(), 0);
        // Timeout retries cost more: 50 from a full bucket.
        let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
        assert_eq!(
            (0..1000).filter_map(|_| bucket.try_acquire(true)).count(),
            50
        );
    }

    #[test]
    fn a_retry_needs_its_whole_cost() {
        let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
        while bucket.try_acquire(false).is_some() {}
        (0..9).for_each(|_| assert_eq!(bucket.on_success(None), 1));
        assert_eq!(bucket.try_acquire(true), None);
        assert_eq!(bucket.available(), 9);
        assert_eq!(bucket.try_acquire(false), Some(5));
        assert_eq!(bucket.available(), 4);
    }

    #[test]
    fn refunds_are_capped_at_capacity() {
        let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
        assert_eq!(bucket.on_success(None), 0);
        let cost = bucket.try_acquire(false);
        assert_eq!(bucket.on_success(Some(1000)), 5);
        assert_eq!(bucket.available(), 500);
        assert_eq!(bucket.on_success(cost), 0);
        assert_eq!(bucket.available(), 500);
    }

    #[test]
    fn new_rejects_unpayable_configs_and_says_what_is_valid() {
        let zero = TokenBucketConfig {
            capacity: 0,
            retry_cost: 0,
            timeout_retry_cost: 0,
            success_refund: 0,
        };
        assert_eq!(
            TokenBucket::new(zero).unwrap_err(),
            BudgetError::ZeroCapacity
        );
        let err = TokenBucket::new(TokenBucketConfig {
            capacity: 8,
            ..TokenBucketConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            BudgetError::CostExceedsCapacity {
                name: "timeout_retry_cost",
                cost: 10,
                capacity: 8
            }
        );
        assert_eq!(
            err.to_string(),
            "token bucket timeout_retry_cost must be at most the capacity 8, got 10"
        );
        let free = TokenBucket::new(TokenBucketConfig {
            capacity: 1,
            ..zero
        })
        .unwrap();
        assert_eq!(free.try_acquire(false), Some(0));
    }

    #[test]
    fn concurrent_ops_account_for_every_token() {
        let config = TokenBucketConfig::default();
        let bucket = Arc::new(TokenBucket::new(config).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|seed| {
                let bucket = bucket.clone();
                thread::spawn(move || {
                    let mut rng = Pcg64Mcg::seed_from_u64(seed);
                    let (mut acquired, mut refunded) = (0u64, 0u64);
                    let mut costs = Vec::new();
                    for _ in 0..10_000 {
                        match rng.random_range(0..4) {
                            0 | 1 => {
                                if let Some(cost) = bucket.try_acquire(rng.random_bool(0.3)) {
                                    acquired += u64::from(cost);
                                    costs.push(cost);
                                }
                            }
                            2 => refunded += u64::from(bucket.on_success(costs.pop())),
                            _ => refunded += u64::from(bucket.on_success(None)),
                        }
                        assert!(bucket.available() <= config.capacity);
                    }
                    (acquired, refunded)
                })
            })
            .collect();
        let (mut acquired, mut refunded) = (0u64, 0u64);
        for thread in threads {
            let (a, r) = thread.join().unwrap();
            acquired += a;
            refunded += r;
        }
        assert!(
            acquired > 10 * u64::from(config.capacity),
            "bucket barely used"
        );
        assert_eq!(
            u64::from(bucket.available()),
            u64::from(config.capacity) + refunded - acquired
        );
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Acquire { after_timeout: bool },
        Success { last_acquired: Option<u32> },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<bool>().prop_map(|after_timeout| Op::Acquire { after_timeout }),
            proptest::option::of(0u32..20).prop_map(|last_acquired| Op::Success { last_acquired }),
        ]
    }

    proptest! {
        /// Against a plain integer model: same decisions, never below 0 nor above capacity.
        #[test]
        fn matches_a_reference_model_and_stays_in_bounds(
            capacity in 1u32..100,
            costs in (0u32..100, 0u32..100, 0u32..10),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let config = TokenBucketConfig {
                capacity,
                retry_cost: costs.0.min(capacity),
                timeout_retry_cost: costs.1.min(capacity),
                success_refund: costs.2,
            };
            let bucket = TokenBucket::new(config).unwrap();
            let mut model = i64::from(capacity);
            let (mut acquired, mut refunded) = (0i64, 0i64);
            for op in ops {
                match op {
                    Op::Acquire { after_timeout } => {
                        let cost = if after_timeout { config.timeout_retry_cost } else { config.retry_cost };
                        let expected = (model >= i64::from(cost)).then_some(cost);
                        prop_assert_eq!(bucket.try_acquire(after_timeout), expected);
                        if let Some(cost) = expected {
                            model -= i64::from(cost);
                            acquired += i64::from(cost);
                        }
                    }
                    Op::Success { last_acquired } => {
                        let refund = i64::from(last_acquired.unwrap_or(config.success_refund));
                        let added = (model + refund).min(i64::from(capacity)) - model;
                        prop_assert_eq!(i64::from(bucket.on_success(last_acquired)), added);
                        model += added;
                        refunded += added;
                    }
                }
                prop_assert_eq!(i64::from(bucket.available()), model);
                prop_assert!(model >= 0 && model <= i64::from(capacity));
                prop_assert_eq!(model, i64::from(capacity) - acquired + refunded);
            }
        }
    }
}
