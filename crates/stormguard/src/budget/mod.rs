//! Retry budgets: caps on retries as a share of traffic, per dependency.
//!
//! ## Why budgets and not max retries?
//! `max_attempts` bounds the retries of one request, not the retries sent to one dependency.
//! When a dependency is overloaded every request to it fails, so every request retries, and the
//! load on the dependency is multiplied by `max_attempts` exactly when it can least take it; with
//! retries at several layers the factors multiply (three tries at five layers is 3^5 = 243
//! calls). A budget caps retries as a share of the traffic that is flowing: with a ratio of 0.2,
//! overload adds at most 20% more load, however many requests fail, while a client whose
//! requests fail now and then still retries every one of them.
//!
//! Two budgets are here, because the two main families of clients use them:
//!
//! - [`RetryBudget`]: Finagle's `RetryBudget` (also tower's `TpsBudget` and linkerd's
//!   `ServiceProfile` retry budget). Each request deposits `ratio` of a retry, each retry
//!   withdraws one, both expire after a `ttl`, and a small reserve (`min_per_sec * ttl`) lets
//!   clients with little traffic retry at all. Unlike tower 0.5 (tower#857) the ratio is exact to
//!   1e-6 for any value, not rounded to `1 / integer`.
//! - [`TokenBucket`]: the AWS SDKs' "standard" retry mode. A bucket of 500 tokens, 5 per retry
//!   (10 after a timeout), refilled only by successes, with no clock at all: when the dependency
//!   fails persistently the bucket empties and retries stop until it recovers.
//!
//! Both are `Send + Sync`, take no lock on the hot path, and are meant to be shared (in an
//! `Arc`) by all the requests to one dependency.
//!
//! References: Finagle, "Retries" in the client guide
//! (<https://twitter.github.io/finagle/guide/Clients.html#retries>); the AWS SDKs and Tools
//! reference guide, "Retry behavior"
//! (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>); Marc Brooker,
//! "Fixing retries with token buckets and circuit breakers" (2022,
//! <https://brooker.co.za/blog/2022/02/28/retries.html>).
//!
//! ```rust
//! use std::time::{Duration, Instant};
//! use stormguard::budget::{RetryBudget, TokenBucket, TokenBucketConfig};
//!
//! // A dependency that fails every request: with a budget, 100 requests earn 20 retries
//! // (ratio 0.2) on top of the reserve, not 100 retries as `max_attempts = 2` would send.
//! let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2).unwrap();
//! let now = Instant::now();
//! let mut retries = 0;
//! for _ in 0..100 {
//!     budget.deposit(now);
//!     if budget.try_withdraw(now) {
//!         retries += 1;
//!     }
//! }
//! assert_eq!(retries, 20);
//!
//! // The AWS bucket: 500 tokens at 5 per retry is 100 retries, then none until successes
//! // put tokens back.
//! let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
//! let sent = (0..1000).filter(|_| bucket.try_acquire(false).is_some()).count();
//! assert_eq!(sent, 100);
//! ```

mod retry_budget;
mod token_bucket;

pub use retry_budget::{RetryBudget, MAX_RATIO};
pub use token_bucket::{TokenBucket, TokenBucketConfig};

use std::time::Duration;

/// Why a budget could not be built from the parameters given.
///
/// Budgets are built once per dependency, usually from configuration, so each variant names the
/// parameter, the value received and the range that would be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// The retry budget's time to live is outside the accepted range.
    #[error("retry budget ttl must be between 1s and 60s, got {ttl:?}")]
    TtlOutOfRange {
        /// The ttl received.
        ttl: Duration,
    },
    /// The retry budget's ratio is negative, above the maximum or not a finite number.
    #[error(
        "retry budget ratio must be a finite number from 0 to 1 (retries per request; above 1, \
         retries could outnumber requests and multiply the load), got {ratio}"
    )]
    RatioOutOfRange {
        /// The ratio received.
        ratio: f64,
    },
    /// A token bucket with no capacity could never allow a retry.
    #[error("token bucket capacity must be at least 1, got 0")]
    ZeroCapacity,
    /// A retry cost above the capacity could never be paid, so that kind of retry would never
    /// be allowed.
    #[error("token bucket {name} must be at most the capacity {capacity}, got {cost}")]
    CostExceedsCapacity {
        /// Which cost: `retry_cost` or `timeout_retry_cost`.
        name: &'static str,
        /// The cost received.
        cost: u32,
        /// The capacity it was checked against.
        capacity: u32,
    },
}
