//! From settings to running routes: each route's policy and stack, built fully before use.
//!
//! A generation of routes is built from a [`Config`] without touching the running one, so that a
//! settings file that cannot be built changes nothing. What is cheap to keep is kept across
//! generations: one pooled client per connect timeout (connections stay warm through a reload),
//! and a route's whole stack, with its retry budget, latency estimator, hedge budget and
//! balancer counts, when neither the route nor its upstream changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::histogram::Histogram;
use stormguard::budget::BudgetError;
use stormguard::estimate::{AdaptiveTimeout, EstimateError};
use stormguard::hedge::{HedgeError, HedgePolicy};
use stormguard::layer::{Balance, DeadlineLayer, HedgeLayer, RetryLayer, SetAuthority};
use stormguard::policy::RetryPolicy;
use stormguard_graph::model::Span;
use stormguard_graph::policy::{retry_policy, NO_TIMEOUT};
use tower_layer::Layer;

use super::{RouteEntry, UpstreamSlot};
use crate::config::{Config, Route, Upstream};
use crate::metrics::ProxyMetrics;
use crate::stack::{HttpClient, RouteService, Timed};

/// Why a set of routes could not be built. The running routes are untouched when this is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A route names an upstream that is not defined.
    #[error("route `{route}`: upstream `{upstream}` is not defined: use a name under [upstreams]")]
    UnknownUpstream {
        /// The route.
        route: String,
        /// The name it gave.
        upstream: String,
    },
    /// An upstream has no instances.
    #[error("upstream `{upstream}` has no instances: list at least one \"host:port\"")]
    NoInstances {
        /// The upstream.
        upstream: String,
    },
    /// An instance is not a `host:port` address.
    #[error("upstream `{upstream}`: instance `{instance}` is not a host:port address: use e.g. \"127.0.0.1:9001\"")]
    Instance {
        /// The upstream.
        upstream: String,
        /// The instance as given.
        instance: String,
    },
    /// The route's retry budget or token bucket is not valid.
    #[error("route `{route}`: {source}")]
    Limiter {
        /// The route.
        route: String,
        /// What the core said.
        source: BudgetError,
    },
    /// The route's hedge is not valid.
    #[error("route `{route}`: {source}")]
    Hedge {
        /// The route.
        route: String,
        /// What the core said.
        source: HedgeError,
    },
    /// The route's adaptive timeout is not valid.
    #[error("route `{route}`: adaptive_timeout: {source}")]
    AdaptiveTimeout {
        /// The route.
        route: String,
        /// What the core said.
        source: EstimateError,
    },
}

/// The hedge budget of a route whose `hedge` gave no `max_extra`: the library's 5%.
const DEFAULT_HEDGE_MAX_EXTRA: f64 = 0.05;

/// A route's policy: the one conversion of a call's settings to the core's policy
/// (`stormguard_graph::policy::retry_policy`), plus what only a route has: the deadline reserve,
/// the adaptive per-try timeout, and idempotency read from each request.
///
/// A graph call's `idempotent` is a property of the call; a route carries every method, so
/// `idempotent = true` (the default) means "as the request says" (its method, or an
/// `Idempotency-Key`), and `false` means "never send a written request twice".
pub(crate) fn route_policy(route: &Route) -> Result<RetryPolicy, BuildError> {
    let mut policy = retry_policy(&route.call).map_err(|source| BuildError::Limiter {
        route: route.name.clone(),
        source,
    })?;
    policy.deadline.reserve = route.deadline_reserve;
    policy.idempotent = (!route.call.idempotent).then_some(false);
    if let Some(spec) = route.adaptive_timeout {
        let adaptive = AdaptiveTimeout::new(spec.false_timeout_rate, spec.min, spec.max).map_err(
            |source| BuildError::AdaptiveTimeout {
                route: route.name.clone(),
                source,
            },
        )?;
        policy.adaptive_timeout = Some(adaptive);
    }
    Ok(policy)
}

/// The route timeout. It is the per-try timeout (a graph call's meaning, through
/// `retry_policy`) and also caps the request's deadline (the issue: "the route timeout caps" the
/// inbound budget), so a retry after an attempt that used the whole timeout does not fit, while
/// retries after fast failures do; an `adaptive_timeout` gives attempts a shorter per-try timeout
/// and room to retry within the cap. It is also a bucket of the route's latency histogram.
fn route_timeout(route: &Route) -> Duration {
    route.call.timeout.unwrap_or(NO_TIMEOUT)
}

/// One pooled client per connect timeout, kept for the life of the proxy.
#[derive(Default)]
pub(crate) struct Clients {
    by_connect_timeout: Mutex<HashMap<Option<Duration>, HttpClient>>,
}

impl Clients {
    fn get(&self, connect_timeout: Option<Duration>) -> HttpClient {
        let mut clients = self
            .by_connect_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        clients
            .entry(connect_timeout)
            .or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(connect_timeout);
                connector.set_nodelay(true);
                connector.set_keepalive(Some(Duration::from_secs(30)));
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector)
            })
            .clone()
    }
}

/// What a route's stack was built from: equal means the stack can be reused as it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BuiltFrom {
    route: Route,
    upstream: Upstream,
}

impl BuiltFrom {
    fn new(route: &Route, upstream: &Upstream) -> Self {
        let mut route = route.clone();
        // Where the route sits in the file is not a setting.
        route.call.span = Span::default();
        BuiltFrom {
            route,
            upstream: upstream.clone(),
        }
    }
}

/// Builds every route of `config`, reusing the stacks of `previous` that did not change.
pub(crate) fn routes(
    config: &Config,
    previous: &[RouteEntry],
    metrics: &ProxyMetrics,
    clients: &Clients,
) -> Result<Vec<RouteEntry>, BuildError> {
    config
        .routes
        .iter()
        .map(|route| {
            let upstream = config.upstreams.get(&route.upstream).ok_or_else(|| {
                BuildError::UnknownUpstream {
                    route: route.name.clone(),
                    upstream: route.upstream.clone(),
                }
            })?;
            let built_from = BuiltFrom::new(route, upstream);
            let reused = previous
                .iter()
                .find(|old| *old.name == *route.name && old.built_from == built_from);
            let (service, latency) = match reused {
                Some(old) => (old.service.clone(), old.latency.clone()),
                None => stack(route, upstream, metrics, clients)?,
            };
            let name: Arc<str> = Arc::from(route.name.as_str());
            Ok(RouteEntry {
                upstream_2xx: metrics.answers(&name, 200, ""),
                name,
                path_prefix: route.matcher.path_prefix.clone(),
                host: route.matcher.host.as_deref().map(super::host_key),
                upstream: UpstreamSlot::new(&route.upstream, upstream.max_in_flight, metrics),
                service,
                fault: route.fault,
                resends: route.call.max_attempts > 1 || route.call.hedge.is_some(),
                latency,
                built_from,
            })
        })
        .collect()
}

/// A route's stack, outermost first: deadline, retry, hedge (if any), balance over instances.
fn stack(
    route: &Route,
    upstream: &Upstream,
    metrics: &ProxyMetrics,
    clients: &Clients,
) -> Result<(RouteService, (Vec<f64>, Histogram)), BuildError> {
    let name = route.name.as_str();
    if upstream.instances.is_empty() {
        return Err(BuildError::NoInstances {
            upstream: route.upstream.clone(),
        });
    }
    let timeout = route_timeout(route);
    let latency = metrics.latency(name, timeout);
    let client = clients.get(route.call.connect_timeout);
    let instances = upstream
        .instances
        .iter()
        .map(|instance| {
            let authority = instance
                .parse::<Authority>()
                .ok()
                .filter(|a| a.port_u16().is_some())
                .ok_or_else(|| BuildError::Instance {
                    upstream: route.upstream.clone(),
                    instance: instance.clone(),
                })?;
            Ok(SetAuthority::new(
                Timed::new(client.clone(), latency.1.clone()),
                authority,
            ))
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    // Outlier ejection is the balancer's default: an instance that refuses connections gets no
    // first attempts for a second, doubling while it stays dead, so it costs a retry a second
    // rather than most first attempts (a refusing instance has nothing in flight and looks idle).
    let balance = Balance::new(instances)
        .observer(metrics.observer.clone())
        .target(name);
    let body_limit = usize::try_from(route.retry_body_limit).unwrap_or(usize::MAX);
    let retry = RetryLayer::new(route_policy(route)?)
        .target(name)
        .observer(metrics.observer.clone())
        .body_limit(body_limit);
    let deadline = DeadlineLayer::new(timeout)
        .reserve(route.deadline_reserve)
        .propagate(route.call.propagate_deadline)
        .target(name)
        .observer(metrics.observer.clone());
    let service = match route.call.hedge {
        None => RouteService::Plain(deadline.layer(retry.layer(balance))),
        Some(spec) => {
            let max_extra = spec.max_extra.unwrap_or(DEFAULT_HEDGE_MAX_EXTRA);
            let policy =
                HedgePolicy::new(spec.delay, max_extra).map_err(|source| BuildError::Hedge {
                    route: name.to_string(),
                    source,
                })?;
            let hedge = HedgeLayer::new(policy)
                .target(name)
                .observer(metrics.observer.clone())
                .body_limit(body_limit);
            // One estimator for the route: the hedge's quantile delay and the retry layer's
            // expected latency and adaptive timeout read the same measurements.
            let retry = retry.estimator(hedge.latency_estimator());
            RouteService::Hedged(deadline.layer(retry.layer(hedge.layer(balance))))
        }
    };
    Ok((service, latency))
}
