//! From settings to running routes: each route's policy and stack, built fully before use.
//!
//! A generation of routes is built from a [`Config`] without touching the running one, so that a
//! settings file that cannot be built changes nothing. What is cheap to keep is kept across
//! generations: each instance's connection pool (connections stay warm through a reload),
//! and a route's whole stack, with its retry budget, latency estimator, hedge budget and
//! balancer counts, when neither the route nor its upstream changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use stormguard::estimate::LatencyEstimator;
use stormguard::layer::{Balance, DeadlineLayer, HedgeLayer, RetryLayer};
use stormguard_graph::model::Span;
use stormguard_graph::policy::NO_TIMEOUT;
use tower_layer::Layer;

use super::{RouteEntry, UpstreamSlot};
use crate::config::{hedge_policy, route_policy, Config, PolicyError, Route, Upstream};
use crate::h2_pool::H2Instance;
use crate::metrics::{ProxyMetrics, RouteMetrics, RouteTimeouts};
use crate::pool::InstancePool;
use crate::stack::{RouteService, Timed};

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
    /// The route's retry budget, token bucket, hedge or adaptive timeout is not valid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The route's per-attempt timeout (`timeout`, connecting included): a bucket of the route's
/// latency histogram, and the connect bound of a route without `connect_timeout`.
fn route_timeout(route: &Route) -> Duration {
    route.call.timeout.unwrap_or(NO_TIMEOUT)
}

/// The cap on a whole request, retries and waits included: `request_timeout`, or none beyond
/// the caller's propagated deadline (Envoy's route timeout, gRPC's deadline).
fn request_timeout(route: &Route) -> Duration {
    route.call.request_timeout.unwrap_or(NO_TIMEOUT)
}

/// The connection pool of each instance, per connect timeout, kept for the life of the proxy:
/// connections stay warm through a reload, and routes to one instance share its connections.
/// Each instance has an HTTP/1.1 pool and an HTTP/2 connection, made when first used.
#[derive(Default)]
pub(crate) struct Clients {
    pools: Mutex<HashMap<PoolKey, InstanceClients>>,
}

/// A pool's connect timeout and instance.
type PoolKey = (Option<Duration>, Authority);

/// An instance's HTTP/1.1 pool and HTTP/2 connection.
type InstanceClients = (Arc<InstancePool>, Arc<H2Instance>);

impl Clients {
    fn get(&self, connect_timeout: Option<Duration>, authority: &Authority) -> InstanceClients {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry((connect_timeout, authority.clone()))
            .or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(connect_timeout);
                connector.set_nodelay(true);
                connector.set_keepalive(Some(Duration::from_secs(30)));
                let http1 = InstancePool::new(authority.clone(), connector.clone(), IDLE_TIMEOUT);
                let http2 = H2Instance::new(authority.clone(), connector);
                (Arc::new(http1), Arc::new(http2))
            })
            .clone()
    }
}

/// The window of a route's latency estimator: long enough for a p99.9 at modest traffic, short
/// enough to follow a deploy (the library's recommendation).
const ESTIMATOR_WINDOW: Duration = Duration::from_secs(60);

/// How long an upstream connection is kept unused before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
            let (service, route_metrics) = match reused {
                Some(old) => (old.service.clone(), old.metrics.clone()),
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
                body_limit: usize::try_from(route.retry_body_limit).unwrap_or(usize::MAX),
                metrics: route_metrics,
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
) -> Result<(RouteService, RouteMetrics), BuildError> {
    let name = route.name.as_str();
    if upstream.instances.is_empty() {
        return Err(BuildError::NoInstances {
            upstream: route.upstream.clone(),
        });
    }
    let timeouts = RouteTimeouts {
        attempt: route_timeout(route),
        request: request_timeout(route),
        objectives: &route.latency_buckets,
    };
    let route_metrics = metrics.route(name, &route.upstream, timeouts, &upstream.instances);
    let instances = upstream
        .instances
        .iter()
        .zip(route_metrics.instances.iter())
        .map(|(instance, counters)| {
            let authority = instance
                .parse::<Authority>()
                .ok()
                .filter(|a| a.port_u16().is_some())
                .ok_or_else(|| BuildError::Instance {
                    upstream: route.upstream.clone(),
                    instance: instance.clone(),
                })?;
            // Without `connect_timeout`, connecting is bounded by the attempt's timeout: the
            // simulator's bound too, from the same function.
            let connect = stormguard_graph::policy::connect_timeout(&route.call);
            let (http1, http2) = clients.get(connect, &authority);
            Ok(Timed::new(
                http1,
                http2,
                upstream.protocol,
                route_metrics.attempt_latency.histogram().clone(),
                counters.clone(),
            ))
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    // Outlier ejection is the balancer's default: an instance that refuses connections gets no
    // first attempts for a second, doubling while it stays dead, so it costs a retry a second
    // rather than most first attempts (a refusing instance has nothing in flight and looks idle).
    // Responses go without an `Instance` extension: on a route that resends, every request
    // carries the list the balancer records its choice in (`balanced` below), which is where the
    // retry layer looks; on the others, nothing reads it. The extension was a map per response.
    let balance = Balance::new(instances)
        .observer(route_metrics.balancer_observer(metrics))
        .target(name)
        .without_instance_extension();
    let body_limit = usize::try_from(route.retry_body_limit).unwrap_or(usize::MAX);
    let mut policy = route_policy(route)?;
    if policy.idempotent == Some(true) {
        // Until idempotent took "by-method", a route's `true` meant "by method"; it now means
        // what it means in a graph file. Say so at every build rather than replay POSTs quietly.
        tracing::warn!(
            route = %route.name,
            "idempotent = true: every request on this route, POST and PATCH included, may be \
             sent again after a failure that may have reached the upstream; write \
             idempotent = \"by-method\" (the default) to decide by method and Idempotency-Key"
        );
    }
    let idempotent = policy.idempotent;
    // The deadline layer above keeps the reserve back from the deadline it hands down; the
    // retry layer kept it back again, so the upstream saw the budget less twice the reserve.
    policy.deadline.reserve = Duration::ZERO;
    // One estimator for the route, whatever its policy: the retry layer takes the expected
    // latency (its p50) from it, so that a request with less budget left than an attempt takes
    // is answered at once instead of sent; with only the policy's expected latency (zero), that
    // check was "no budget left". Shared with the hedge layer below, when there is one, so that
    // the hedge delay and the adaptive timeout read the same measurements; the retry layer alone
    // records in it, one latency per attempt (`HedgeLayer::estimator`).
    let estimator = Arc::new(LatencyEstimator::new(ESTIMATOR_WINDOW));
    let retry = RetryLayer::new(policy)
        .target(name)
        .observer(metrics.observer.clone())
        .body_limit(body_limit)
        .estimator(estimator.clone());
    // On a route that can send a request more than once, every request carries the list of the
    // instances it went to from its first attempt: a retry after a timeout goes to another
    // instance from the very first request, and `stormguard-attempts` counts every attempt sent,
    // a hedge's copy that an outer timeout dropped included.
    let resends = route.call.max_attempts > 1 || route.call.hedge.is_some();
    let retry = if resends { retry.balanced() } else { retry };
    // The retry layer right below bounds each attempt, backoff and body read by the deadline
    // this layer hands it, at the same instant, and writes each attempt's budget header: a
    // second timer and a second header write per request only cost.
    let deadline = DeadlineLayer::new(request_timeout(route))
        .retry_below()
        .reserve(route.deadline_reserve)
        .propagate(route.call.propagate_deadline)
        .target(name)
        .observer(metrics.observer.clone());
    let service = match hedge_policy(route)? {
        None => RouteService::Plain(deadline.layer(retry.layer(balance))),
        Some(policy) => {
            let hedge = HedgeLayer::new(policy)
                .idempotent(idempotent)
                .target(name)
                .observer(metrics.observer.clone())
                .body_limit(body_limit)
                .estimator(estimator);
            RouteService::Hedged(deadline.layer(retry.layer(hedge.layer(balance))))
        }
    };
    Ok((service, route_metrics))
}
