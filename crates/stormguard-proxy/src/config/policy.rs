//! A route's settings as the policy core's values: the only place the proxy turns its file into
//! decisions, and it does so through the graph's own conversion
//! ([`stormguard_graph::policy::retry_policy`]), so that `sim` and `proxy` agree on a call.
//!
//! What maps where:
//!
//! | route key | core value |
//! |---|---|
//! | `timeout` | `RetryPolicy::deadline.per_try_timeout` (per attempt, connecting included) |
//! | `request_timeout` | `RetryPolicy::overall_timeout`: the retry layer's cap on the whole request |
//! | `max_attempts`, `backoff` | `RetryPolicy::max_attempts`, `RetryPolicy::backoff` |
//! | `retry_on` | `RetryPolicy::classifier.retry_on` |
//! | `retry_budget` / `token_bucket` | `RetryPolicy::limiter` (a fresh budget or bucket) |
//! | `propagate_deadline` | `RetryPolicy::propagate_deadline` |
//! | `deadline_reserve` | `RetryPolicy::deadline.reserve` |
//! | `adaptive_timeout` | `RetryPolicy::adaptive_timeout` (factor 1) |
//! | `idempotent` | `RetryPolicy::idempotent` and `HedgeLayer::idempotent`: `"by-method"` (the default) is `None`, by method and `Idempotency-Key`; `true` is `Some(true)`; `false` is `Some(false)` |
//! | `hedge` | [`hedge_policy`]: a `HedgePolicy` for the `HedgeLayer` |
//! | `connect_timeout` | not a policy value: the connector's timeout (the attempt's `timeout` when absent) |
//! | `retry_body_limit` | `RetryLayer::body_limit` and `HedgeLayer::body_limit` |
//!
//! Both layers get the same idempotency, so a request the retry layer would not replay is never
//! hedged either.

use std::time::Duration;

use stormguard::budget::BudgetError;
use stormguard::estimate::{AdaptiveTimeout, EstimateError};
use stormguard::hedge::{HedgeError, HedgePolicy};
use stormguard::policy::RetryPolicy;

use super::model::Route;

/// A route whose values the policy core refuses. [`super::parse`] refuses all of these with a
/// position, so this is only reached with a [`Route`] built by hand.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The retry budget or token bucket.
    #[error("route {route:?}: {source}")]
    Limiter {
        /// The route's name.
        route: String,
        /// What the core said.
        source: BudgetError,
    },
    /// The adaptive timeout.
    #[error("route {route:?}: adaptive_timeout: {source}")]
    AdaptiveTimeout {
        /// The route's name.
        route: String,
        /// What the core said.
        source: EstimateError,
    },
    /// The hedge.
    #[error("route {route:?}: hedge: {source}")]
    Hedge {
        /// The route's name.
        route: String,
        /// What the core said.
        source: HedgeError,
    },
}

/// The retry policy of `route`: the graph's conversion of its call, plus what only the proxy
/// has (adaptive timeout, deadline reserve, idempotency decided per request).
///
/// Each call builds a fresh limiter: call it once per route and generation of the settings, and
/// share the policy among that route's requests, so that they draw on one budget.
///
/// ```
/// use std::time::Duration;
/// use stormguard_proxy::config::{self, route_policy};
///
/// let config = config::parse("p.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// let policy = route_policy(&config.routes[0]).unwrap();
/// assert_eq!(policy.deadline.per_try_timeout, Duration::from_secs(2));
/// assert_eq!(policy.max_attempts, 1); // no retry unless the route asks, as a graph call
/// assert_eq!(policy.idempotent, None); // decided per request, by method
/// ```
pub fn route_policy(route: &Route) -> Result<RetryPolicy, PolicyError> {
    let mut policy = stormguard_graph::policy::retry_policy(&route.call).map_err(|source| {
        PolicyError::Limiter {
            route: route.name.clone(),
            source,
        }
    })?;
    policy.deadline.reserve = route.deadline_reserve;
    policy.adaptive_timeout = route
        .adaptive_timeout
        .map(|spec| AdaptiveTimeout::new(spec.false_timeout_rate, spec.min, spec.max))
        .transpose()
        .map_err(|source| PolicyError::AdaptiveTimeout {
            route: route.name.clone(),
            source,
        })?;
    Ok(policy)
}

/// The hedge policy of `route`, if it hedges: its delay and its budget (`max_extra`, 5% when
/// the route's spec has none). Like [`route_policy`], build it once per route and generation.
///
/// ```
/// use stormguard_proxy::config::{self, hedge_policy};
///
/// let config = config::parse("p.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001", "127.0.0.1:9002"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// hedge = { delay = "p95" }
/// "#).unwrap();
/// let hedge = hedge_policy(&config.routes[0]).unwrap().unwrap();
/// assert_eq!(hedge.max_extra(), 0.05);
/// ```
pub fn hedge_policy(route: &Route) -> Result<Option<HedgePolicy>, PolicyError> {
    route
        .call
        .hedge
        .map(|spec| HedgePolicy::new(spec.delay, spec.max_extra))
        .transpose()
        .map_err(|source| PolicyError::Hedge {
            route: route.name.clone(),
            source,
        })
}

/// The longest one attempt of `route` may take: the adaptive timeout's upper bound when it has
/// one (the parser keeps it within `timeout`), else `timeout`.
pub fn per_try_timeout(route: &Route) -> Duration {
    let timeout = route
        .call
        .timeout
        .unwrap_or(stormguard_graph::policy::NO_TIMEOUT);
    route
        .adaptive_timeout
        .map_or(timeout, |adaptive| adaptive.max.min(timeout))
}

/// The longest a request on `route` can take: every attempt (of at most the per-try timeout)
/// and the backoff's longest waits between them, `max_attempts x per-try timeout + waits`, cut
/// by `request_timeout` when the route has one. An inbound budget shorter than that binds
/// first. The per-try timeout includes connecting, so `connect_timeout` adds nothing.
///
/// ```
/// use std::time::Duration;
/// use stormguard_proxy::config::{self, worst_case_total};
///
/// let config = config::parse("p.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// max_attempts = 2
/// request_timeout = "3s"
/// adaptive_timeout = { max = "500ms" }
/// "#).unwrap();
/// // Two attempts of at most 500 ms and a full-jitter wait of at most 25 ms between them.
/// assert_eq!(worst_case_total(&config.routes[0]), Duration::from_millis(1025));
/// ```
pub fn worst_case_total(route: &Route) -> Duration {
    let attempts = route.call.max_attempts.max(1);
    let every_attempt = per_try_timeout(route)
        .saturating_mul(attempts)
        .saturating_add(route.call.backoff.worst_case_total(attempts - 1));
    route
        .call
        .request_timeout
        .map_or(every_attempt, |cap| every_attempt.min(cap))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stormguard::policy::Limiter;

    use super::*;
    use crate::config::parse;

    const BASE: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\n\
                        name = \"api\"\nupstream = \"api\"\n";

    /// [`BASE`] with a timeout, the least a route needs.
    const TIMED: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\n\
                         name = \"api\"\nupstream = \"api\"\ntimeout = \"10s\"\n";

    /// The route of [`TIMED`] and `extra`, or of [`BASE`] when `extra` gives the timeout.
    fn route(extra: &str) -> Route {
        let base = if extra.starts_with("timeout = ") {
            BASE
        } else {
            TIMED
        };
        parse("p.toml", &format!("{base}{extra}"))
            .unwrap()
            .routes
            .remove(0)
    }

    #[test]
    fn a_route_that_says_nothing_gets_the_recommended_policy_but_no_retry() {
        let policy = route_policy(&route("")).unwrap();
        let recommended = RetryPolicy::recommended();
        // One attempt, as a graph call that says nothing; how to retry is recommended.
        assert_eq!(policy.max_attempts, 1);
        assert_eq!(policy.classifier, recommended.classifier);
        assert_eq!(policy.backoff, recommended.backoff);
        assert_eq!(policy.deadline, recommended.deadline);
        assert_eq!(policy.idempotent, recommended.idempotent);
        assert_eq!(policy.propagate_deadline, recommended.propagate_deadline);
        assert_eq!(policy.overall_timeout, recommended.overall_timeout);
        assert_eq!(policy.expected_latency, recommended.expected_latency);
        assert_eq!(policy.adaptive_timeout, None);
        let Limiter::Budget(budget) = &policy.limiter else {
            panic!("expected a retry budget, got {:?}", policy.limiter);
        };
        assert_eq!((budget.ratio(), budget.min_per_sec()), (0.2, 10));
        assert_eq!(budget.ttl(), Duration::from_secs(10));
    }

    #[test]
    fn proxy_only_keys_reach_the_policy() {
        let policy = route_policy(&route(
            "timeout = \"2s\"\ndeadline_reserve = \"20ms\"\nidempotent = false\n\
             adaptive_timeout = { false_timeout_rate = 0.01, min = \"50ms\", max = \"1s\" }\n\
             token_bucket = { capacity = 100 }\npropagate_deadline = false\n",
        ))
        .unwrap();
        assert_eq!(policy.deadline.reserve, Duration::from_millis(20));
        assert_eq!(policy.deadline.per_try_timeout, Duration::from_secs(2));
        assert_eq!(policy.idempotent, Some(false));
        assert!(!policy.propagate_deadline);
        let adaptive = policy.adaptive_timeout.unwrap();
        assert_eq!(
            (
                adaptive.false_timeout_rate,
                adaptive.min,
                adaptive.max,
                adaptive.factor
            ),
            (0.01, Duration::from_millis(50), Duration::from_secs(1), 1.0)
        );
        let Limiter::Bucket(bucket) = &policy.limiter else {
            panic!("expected a token bucket, got {:?}", policy.limiter);
        };
        assert_eq!(bucket.config().capacity, 100);
    }

    #[test]
    fn each_call_builds_a_fresh_limiter() {
        let route = route("");
        let (a, b) = (route_policy(&route).unwrap(), route_policy(&route).unwrap());
        let (Limiter::Budget(a), Limiter::Budget(b)) = (&a.limiter, &b.limiter) else {
            panic!("expected budgets");
        };
        assert!(!std::sync::Arc::ptr_eq(a, b));
    }

    #[test]
    fn hedges_get_their_budget_and_routes_without_one_none() {
        assert!(hedge_policy(&route("")).unwrap().is_none());
        let hedge = hedge_policy(&route("hedge = { delay = \"50ms\", max_extra = 0.1 }\n"))
            .unwrap()
            .unwrap();
        assert_eq!(hedge.max_extra(), 0.1);
        assert_eq!(hedge.delay_setting().to_string(), "50ms");
    }

    #[test]
    fn values_built_by_hand_that_the_core_refuses_are_errors_not_panics() {
        let mut bad = route("");
        bad.call.limiter = Some(stormguard_graph::model::LimiterSpec::Budget {
            ratio: -1.0,
            min_per_sec: 10,
        });
        let error = route_policy(&bad).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("route \"api\": retry budget ratio"),
            "{error}"
        );
        let mut bad = route("");
        bad.adaptive_timeout = Some(crate::config::AdaptiveTimeoutSpec {
            false_timeout_rate: 0.9,
            min: Duration::from_millis(1),
            max: Duration::from_secs(1),
        });
        assert!(matches!(
            route_policy(&bad),
            Err(PolicyError::AdaptiveTimeout { .. })
        ));
    }

    #[test]
    fn the_worst_case_is_every_attempt_and_wait_or_the_request_timeout_when_less() {
        // request_timeout caps the request: 3 attempts of 1 s cannot all run in 1.5 s.
        let three = route("timeout = \"1s\"\nmax_attempts = 3\nrequest_timeout = \"1500ms\"\n");
        assert_eq!(worst_case_total(&three), Duration::from_millis(1500));
        // 3 attempts of 1 s and two waits of at most 25 and 50 ms, when that is less.
        let all = route("timeout = \"1s\"\nmax_attempts = 3\nrequest_timeout = \"9s\"\n");
        assert_eq!(worst_case_total(&all), Duration::from_millis(3075));
        // 2 adaptive attempts of at most 300 ms, a wait of at most 25 ms.
        let adaptive = route(
            "timeout = \"1s\"\nmax_attempts = 2\nrequest_timeout = \"2s\"\n\
             adaptive_timeout = { max = \"300ms\" }\n",
        );
        assert_eq!(per_try_timeout(&adaptive), Duration::from_millis(300));
        assert_eq!(worst_case_total(&adaptive), Duration::from_millis(625));
        let once = route("timeout = \"1s\"\nmax_attempts = 1\n");
        assert_eq!(worst_case_total(&once), Duration::from_secs(1));
    }
}
