//! A call's settings as the policy core's [`RetryPolicy`]: the one conversion that the simulator
//! and the proxy both use, so that what `sim` predicts for a call is what `proxy` does with it.

use std::sync::Arc;
use std::time::Duration;

use stormguard::budget::{BudgetError, RetryBudget, TokenBucket, TokenBucketConfig};
use stormguard::classify::Classifier;
use stormguard::deadline::DeadlinePolicy;
use stormguard::policy::{Limiter, RetryPolicy};

use crate::model::{Call, Idempotent, LimiterSpec};

/// The window of a retry budget built from a call: Finagle's and linkerd's 10 s.
pub const BUDGET_TTL: Duration = Duration::from_secs(10);

/// The window of a call's (a route's) latency estimator: long enough for a p99.9 at modest
/// traffic, short enough to follow a deploy (the library's recommendation). The proxy's and the
/// simulator's, so that the expected latency, an adaptive timeout and a quantile hedge delay
/// follow the same latencies in both.
pub const ESTIMATOR_WINDOW: Duration = Duration::from_secs(60);

/// Records after which a call's (a route's) estimator computes its quantiles again (and
/// whenever its window moves, every 15 s): the p50, the adaptive timeout's quantile and the
/// hedge delay were each a scan of about 3 300 counters per request; now one scan per 64
/// requests. A quantile may leave out the last 63 latencies, out of the thousands a window
/// holds under any load where the scans mattered. The proxy's and the simulator's, for the
/// same answers in both.
pub const ESTIMATOR_REFRESH: u64 = 64;

/// The per-try timeout of a call that has none: a year, which no run or request reaches, so the
/// call waits for its callee as a client without a timeout does.
pub const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The policy `call` runs with: its attempts, backoff, `retry_on`, limiter (a fresh budget or
/// bucket, to be shared by every request on this call), per-try timeout, request timeout,
/// idempotency and deadline propagation. `idempotent = "by-method"` is `None`: the mechanism
/// passes each request's own idempotency ([`Call::is_idempotent`] in the simulator, the method
/// and `Idempotency-Key` in the proxy).
/// Fails only for a limiter the core refuses (the parser already refuses those).
///
/// ```
/// use stormguard_graph::{parse, policy::retry_policy};
///
/// let graph = parse("g.toml", r#"
/// [entry]
/// service = "web"
/// [services.web]
/// [[services.web.calls]]
/// to = "api"
/// timeout = "1s"
/// max_attempts = 2
/// retry_budget = { ratio = 0.1, min_per_sec = 10 }
/// [services.api]
/// "#).unwrap();
/// let policy = retry_policy(&graph.services["web"].calls[0]).unwrap();
/// assert_eq!(policy.max_attempts, 2);
/// assert_eq!(policy.deadline.per_try_timeout, std::time::Duration::from_secs(1));
/// ```
pub fn retry_policy(call: &Call) -> Result<RetryPolicy, BudgetError> {
    Ok(RetryPolicy {
        max_attempts: call.max_attempts.max(1),
        backoff: call.backoff,
        classifier: Classifier::default().retry_on(call.retry_on),
        limiter: limiter(call)?,
        deadline: DeadlinePolicy {
            per_try_timeout: call.timeout.unwrap_or(NO_TIMEOUT),
            ..DeadlinePolicy::default()
        },
        overall_timeout: call.request_timeout,
        expected_latency: Duration::ZERO,
        idempotent: match call.idempotent {
            Idempotent::Yes => Some(true),
            Idempotent::No => Some(false),
            Idempotent::ByMethod => None,
        },
        adaptive_timeout: None,
        propagate_deadline: call.propagate_deadline,
    })
}

/// How long connecting to an instance may take on `call`: its `connect_timeout`, else its
/// per-attempt `timeout` (connecting is part of an attempt), else no bound.
///
/// The proxy's connector and the simulator's connections both take it from here, so that a
/// connection never answered ends the same way in both: as a connect timeout, which the
/// balancer counts against the instance, even on a call without `connect_timeout` (there the
/// connector's bound and the attempt's timeout run out together, and the connector, inside the
/// attempt, is heard first).
///
/// ```
/// use std::time::Duration;
/// use stormguard_graph::{parse, policy::connect_timeout};
///
/// let graph = parse("g.toml", r#"
/// [entry]
/// service = "web"
/// [services.web]
/// [[services.web.calls]]
/// to = "api"
/// timeout = "1s"
/// [[services.web.calls]]
/// to = "api"
/// timeout = "1s"
/// connect_timeout = "50ms"
/// [services.api]
/// "#).unwrap();
/// let calls = &graph.services["web"].calls;
/// assert_eq!(connect_timeout(&calls[0]), Some(Duration::from_secs(1)));
/// assert_eq!(connect_timeout(&calls[1]), Some(Duration::from_millis(50)));
/// ```
pub fn connect_timeout(call: &Call) -> Option<Duration> {
    call.connect_timeout.or(call.timeout)
}

fn limiter(call: &Call) -> Result<Limiter, BudgetError> {
    Ok(match call.limiter {
        None => Limiter::Unlimited,
        Some(LimiterSpec::Budget { ratio, min_per_sec }) => {
            Limiter::Budget(Arc::new(RetryBudget::new(BUDGET_TTL, min_per_sec, ratio)?))
        }
        Some(LimiterSpec::TokenBucket {
            capacity,
            retry_cost,
            timeout_cost,
        }) => Limiter::Bucket(Arc::new(TokenBucket::new(TokenBucketConfig {
            capacity,
            retry_cost,
            timeout_retry_cost: timeout_cost,
            ..TokenBucketConfig::default()
        })?)),
    })
}
