//! From settings to running routes: each route's policy and stack, built fully before use.
//!
//! A generation of routes is built from a [`Config`] without touching the running one, so that a
//! settings file that cannot be built changes nothing. What is cheap to keep is kept across
//! generations: each instance's connection pool (connections stay warm through a reload),
//! and a route's whole stack, with its retry budget, latency estimator, hedge budget and
//! balancer counts, when neither the route nor its upstream changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::ServerName;
use stormguard::estimate::LatencyEstimator;
use stormguard::layer::{Balance, HedgeLayer, RetryLayer};
use stormguard_graph::model::Span;
use stormguard_graph::policy::{ESTIMATOR_REFRESH, ESTIMATOR_WINDOW, NO_TIMEOUT};
use tower_layer::Layer;

use super::{RouteEntry, UpstreamSlot};
use crate::config::{
    hedge_policy, route_policy, Config, Http1Client, PolicyError, Route, Upstream, UpstreamTls,
};
use crate::discovery::{InstanceSet, Member, RouteInstances};
use crate::h2_pool::H2Instance;
use crate::metrics::{ConnectFailures, ProxyMetrics, RouteMetrics, RouteTimeouts};
use crate::pool::InstancePool;
use crate::stack::{RouteService, Timed};
use crate::tls::connect::Connector;
use crate::tls::Alpn;

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
    /// An upstream's TLS settings cannot make a client configuration (settings built by hand:
    /// [`crate::config::parse`] refuses them first).
    #[error("upstream `{upstream}`: instance `{instance}`: TLS: {problem}")]
    Tls {
        /// The upstream.
        upstream: String,
        /// The instance as given.
        instance: String,
        /// What is wrong.
        problem: String,
    },
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

/// The connection pool of each instance, per upstream, connect timeout and TLS settings, kept
/// while a route's balancer holds the instance: connections stay warm through a reload, and
/// routes to one instance share its connections. An instance that left every balancer (DNS no
/// longer lists it) is forgotten once its last request ends, and its idle connections close with
/// its pool.
/// Each instance has an HTTP/1.1 pool and an HTTP/2 connection, made when first used.
#[derive(Default)]
pub(crate) struct Clients {
    pools: Mutex<HashMap<PoolKey, HeldClients>>,
}

/// An instance's clients, as long as a balancer holds them.
type HeldClients = (Weak<InstancePool>, Weak<H2Instance>);

/// What [`stack`] builds: the route's service, its series and its balancer.
type Built = (RouteService, RouteMetrics, Arc<RouteInstances>);

/// A pool's upstream (whose connect failures it counts), connect timeout, instance, TLS
/// settings (with the files' contents, so that a renewed client certificate or CA gets new
/// connections) and the name its certificate is checked against.
type PoolKey = (
    String,
    Option<Duration>,
    Authority,
    Option<UpstreamTls>,
    Option<String>,
);

/// An upstream's TLS: its settings, and the client configurations made of them once per route
/// build (so that an instance that joins by DNS needs nothing that can fail).
pub(crate) struct TlsClient {
    settings: UpstreamTls,
    http1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    /// The client configurations of `settings`.
    ///
    /// # Errors
    /// A CA or client certificate that does not load (settings built by hand; the parser
    /// refuses them first).
    fn new(settings: &UpstreamTls) -> Result<Self, String> {
        Ok(TlsClient {
            settings: settings.clone(),
            http1: crate::tls::client_config(settings, Alpn::Http1)?,
            h2: crate::tls::client_config(settings, Alpn::H2)?,
        })
    }

    /// The name an instance's certificate must carry.
    fn server_name(&self, member: &Member) -> ServerName<'static> {
        tls_name(self.settings.server_name.as_deref(), member)
    }
}

/// The name an instance's certificate must carry: `server_name`, else the host name the instance
/// was listed or discovered by, else its address (which a certificate may carry as an IP
/// address; the parser asks for `server_name` there).
fn tls_name(server_name: Option<&str>, member: &Member) -> ServerName<'static> {
    let host = server_name
        .or(member.host.as_deref())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
    host.and_then(|h| ServerName::try_from(h).ok())
        .unwrap_or_else(|| ServerName::IpAddress(member.address.ip().into()))
}

/// An instance's HTTP/1.1 pool and HTTP/2 connection.
type InstanceClients = (Arc<InstancePool>, Arc<H2Instance>);

impl Clients {
    fn get(
        &self,
        upstream: &str,
        connect_timeout: Option<Duration>,
        member: &Member,
        tls: Option<&TlsClient>,
        failures: &Arc<ConnectFailures>,
    ) -> InstanceClients {
        let authority = Authority::try_from(member.address.to_string().as_str())
            .expect("an ip:port is an authority");
        let name = tls.map(|tls| tls.server_name(member));
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            upstream.to_string(),
            connect_timeout,
            authority.clone(),
            tls.map(|tls| tls.settings.clone()),
            name.as_ref().map(|n| n.to_str().into_owned()),
        );
        if let Some((http1, http2)) = pools.get(&key) {
            if let (Some(http1), Some(http2)) = (http1.upgrade(), http2.upgrade()) {
                return (http1, http2);
            }
        }
        pools.retain(|_, (http1, _)| http1.strong_count() > 0);
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(connect_timeout);
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        let (http1, http2) = match (tls, name) {
            (Some(tls), Some(name)) => {
                // The certificate names the upstream, not the address connected to.
                let connector = |config: &Arc<rustls::ClientConfig>, alpn| {
                    Connector::tls(
                        tcp.clone(),
                        config.clone(),
                        name.clone(),
                        alpn,
                        connect_timeout,
                    )
                };
                (
                    connector(&tls.http1, Alpn::Http1),
                    connector(&tls.h2, Alpn::H2),
                )
            }
            _ => (Connector::plain(tcp.clone()), Connector::plain(tcp)),
        };
        let (http1, http2) = (
            http1.counting(failures.clone()),
            http2.counting(failures.clone()),
        );
        let http1 = Arc::new(InstancePool::new(authority.clone(), http1, IDLE_TIMEOUT));
        let http2 = Arc::new(H2Instance::new(authority, http2));
        pools.insert(key, (Arc::downgrade(&http1), Arc::downgrade(&http2)));
        (http1, http2)
    }

    /// How many instances have pools now (tests: a vanished instance's pool is gone).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.values().filter(|(h, _)| h.strong_count() > 0).count()
    }
}

/// Each upstream's [`InstanceSet`] for `config`: the running one where the upstream and `[dns]`
/// say the same (its last answer and resolver kept), a new one otherwise.
///
/// # Errors
/// An upstream (built by hand, not parsed) with no instance and no discovery, or with an
/// instance that is not `host:port`: refused before any set starts resolving.
pub(crate) fn instance_sets(
    config: &Config,
    running: &HashMap<String, Arc<InstanceSet>>,
    metrics: &ProxyMetrics,
) -> Result<HashMap<String, Arc<InstanceSet>>, BuildError> {
    for (name, upstream) in &config.upstreams {
        if upstream.instances.is_empty() && upstream.discovery.is_none() {
            return Err(BuildError::NoInstances {
                upstream: name.clone(),
            });
        }
        for instance in &upstream.instances {
            let valid = instance
                .parse::<Authority>()
                .ok()
                .is_some_and(|a| a.port_u16().is_some_and(|port| port != 0));
            if !valid {
                return Err(BuildError::Instance {
                    upstream: name.clone(),
                    instance: instance.clone(),
                });
            }
        }
    }
    Ok(config
        .upstreams
        .iter()
        .map(|(name, upstream)| {
            let old = running.get(name);
            let set = match old {
                Some(old) if old.serves(upstream, &config.dns) => old.clone(),
                _ => InstanceSet::start(name, upstream, &config.dns, old.map(|o| &**o), metrics),
            };
            (name.clone(), set)
        })
        .collect())
}

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
    clients: &Arc<Clients>,
    sets: &HashMap<String, Arc<InstanceSet>>,
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
            let set = sets
                .get(&route.upstream)
                .expect("a set for every upstream of the config");
            let built_from = BuiltFrom::new(route, upstream);
            let same_name = previous.iter().find(|old| *old.name == *route.name);
            let reused = same_name.filter(|old| old.built_from == built_from);
            let (service, route_metrics, instances) = match reused {
                Some(old) => {
                    // The upstream is the same; `[dns]` may not be, and the set with it: the
                    // balancer is given the set's members (nothing is rebuilt when they are
                    // the ones it has), as `set.follow` below gives them again.
                    old.instances.follow(&set.current());
                    (
                        old.service.clone(),
                        old.metrics.clone(),
                        old.instances.clone(),
                    )
                }
                None => stack(
                    route,
                    upstream,
                    metrics,
                    clients,
                    set,
                    same_name.map(|old| &old.instances.balance),
                )?,
            };
            set.follow(&instances);
            let name: Arc<str> = Arc::from(route.name.as_str());
            Ok(RouteEntry {
                upstream_2xx: metrics.answers(&name, 200, ""),
                name,
                path_prefix: route.matcher.path_prefix.clone(),
                host: route.matcher.host.as_deref().map(super::host_key),
                upstream: UpstreamSlot::new(&route.upstream, upstream.max_in_flight, metrics),
                upstream_name: route.upstream.clone(),
                service,
                fault: route.fault,
                request_timeout: route.call.request_timeout,
                body_limit: usize::try_from(route.retry_body_limit).unwrap_or(usize::MAX),
                metrics: route_metrics,
                built_from,
                instances,
            })
        })
        .collect()
}

/// A route's stack, outermost first: deadline, retry, hedge (if any), balance over the
/// instances of `set`, following it. `previous` is the balancer of the route this one replaces
/// (a reload changed the route or its upstream): its instances that stay keep their ejections.
fn stack(
    route: &Route,
    upstream: &Upstream,
    metrics: &ProxyMetrics,
    clients: &Arc<Clients>,
    set: &InstanceSet,
    previous: Option<&Balance<Timed>>,
) -> Result<Built, BuildError> {
    let name = route.name.as_str();
    let timeouts = RouteTimeouts {
        attempt: route_timeout(route),
        request: request_timeout(route),
        objectives: &route.latency_buckets,
    };
    let route_metrics = metrics.route(name, &route.upstream, timeouts);
    let failures = metrics.connect_failures(&route.upstream);
    let tls = match &upstream.tls {
        Some(settings) => Some(TlsClient::new(settings).map_err(|problem| BuildError::Tls {
            upstream: route.upstream.clone(),
            instance: upstream.instances.first().cloned().unwrap_or_default(),
            problem,
        })?),
        None => None,
    };
    // Without `connect_timeout`, connecting is bounded by the attempt's timeout: the
    // simulator's bound too, from the same function.
    let connect = stormguard_graph::policy::connect_timeout(&route.call);
    let make = {
        let clients = clients.clone();
        let protocol = upstream.protocol;
        let direct = upstream.http1_client == Http1Client::Direct;
        let histogram = route_metrics.attempt_latency.histogram().clone();
        let timeout = route.call.timeout.unwrap_or(Duration::MAX);
        let series = route_metrics.clone();
        let upstream_name = route.upstream.clone();
        move |member: &Member| {
            let (http1, http2) =
                clients.get(&upstream_name, connect, member, tls.as_ref(), &failures);
            let address = member.address.to_string();
            let instance = series.instance(&address);
            Timed::new(
                http1,
                http2,
                protocol,
                direct,
                // The route's histogram, and the timeout an abandoned attempt is recorded at.
                (histogram.clone(), timeout),
                Arc::from(address),
                instance,
            )
        }
    };
    // Outlier ejection is the balancer's default: an instance that refuses connections gets no
    // first attempts for a second, doubling while it stays dead, so it costs a retry a second
    // rather than most first attempts (a refusing instance has nothing in flight and looks idle).
    let instances = Arc::new(RouteInstances::new(
        &set.current(),
        Box::new(make),
        |named| {
            let balance = Balance::named(named)
                .observer(route_metrics.balancer_observer(metrics))
                .target(name);
            match previous {
                Some(previous) => balance.carry(previous),
                None => balance,
            }
        },
    ));
    let balance = instances.balance.clone();
    let body_limit = usize::try_from(route.retry_body_limit).unwrap_or(usize::MAX);
    let policy = route_policy(route)?;
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
    // One estimator for the route, whatever its policy: the retry layer takes the expected
    // latency (its p50) from it, so that a request with less budget left than an attempt takes
    // is answered at once instead of sent; with only the policy's expected latency (zero), that
    // check was "no budget left". Shared with the hedge layer below, when there is one, so that
    // the hedge delay and the adaptive timeout read the same measurements; the retry layer alone
    // records in it, one latency per attempt (`HedgeLayer::estimator`).
    let estimator =
        Arc::new(LatencyEstimator::new(ESTIMATOR_WINDOW).with_quantile_refresh(ESTIMATOR_REFRESH));
    // The route's counters, found once here: its layers report three or more events per
    // request, each of which looked its counters up by the route's name.
    let observer = crate::metrics::RouteObserver(metrics.observer.for_target(name));
    let retry = RetryLayer::new(policy)
        .target(name)
        .observer(observer.clone())
        .body_limit(body_limit)
        .estimator(estimator.clone());
    // No deadline layer above the retry layer: the retry layer takes the request's deadline
    // itself (the earliest of what came with the request, in its budget headers or from the
    // body's read, and the route's `request_timeout`, the policy's overall timeout), keeps the
    // reserve back, bounds each attempt and backoff by it and writes each attempt's budget. A
    // deadline layer above it only handed it the same deadline through the request's
    // extensions, which the retry layer then took out again: two allocations a request.
    let service = match hedge_policy(route)? {
        None => RouteService::Plain(retry.layer(balance)),
        Some(policy) => {
            let hedge = HedgeLayer::new(policy)
                .idempotent(idempotent)
                .target(name)
                .observer(observer)
                .body_limit(body_limit)
                .estimator(estimator);
            RouteService::Hedged(retry.layer(hedge.layer(balance)))
        }
    };
    Ok((service, route_metrics, instances))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instances_pool_lives_as_long_as_a_balancer_holds_it() {
        let clients = Clients::default();
        let member = Member {
            address: "127.0.0.1:9".parse().unwrap(),
            host: None,
        };
        let failures = Arc::new(ConnectFailures::default());
        let held = clients.get("api", None, &member, None, &failures);
        let again = clients.get("api", None, &member, None, &failures);
        assert!(Arc::ptr_eq(&held.0, &again.0), "one pool, shared");
        assert_eq!(clients.live(), 1);
        drop((held, again));
        // The instance left every balancer: its pool, and its idle connections, are gone.
        assert_eq!(clients.live(), 0);
    }

    #[test]
    fn a_certificate_is_checked_against_the_name_an_instance_was_found_by() {
        let member = |host: Option<&str>| Member {
            address: "10.0.0.7:443".parse().unwrap(),
            host: host.map(Arc::from),
        };
        let name = |server_name, host| tls_name(server_name, &member(host)).to_str().into_owned();
        // Discovered by DNS (or listed by name): the name, never the address it resolved to.
        assert_eq!(name(None, Some("api.internal")), "api.internal");
        // server_name overrides it, for every instance.
        assert_eq!(
            name(Some("api.example.com"), Some("api.internal")),
            "api.example.com"
        );
        // A listed address with no server_name: the address (which the parser refuses).
        assert_eq!(name(None, None), "10.0.0.7");
    }
}
