//! [`Proxy`]: the running routes, and the handle that swaps them while requests flow.
//!
//! ## Why generations
//! A reload must never fail a request. Each settings file becomes one *generation*: its routes
//! are built in full beside the running ones, then swapped in with one pointer store. A request
//! takes the current generation when it arrives and keeps it to the end, so a request in flight
//! finishes on the routes, timeouts and budgets it started with, while the next request already
//! sees the new ones. What outlives generations is what should: the connection pools, the
//! in-flight count of each upstream (so shedding counts every request, old or new), and the
//! stacks of routes that did not change, with their budgets and latency estimates.

mod build;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::build::BuildError;
use self::build::{BuiltFrom, Clients};
use crate::config::{Config, FaultSpec};
use crate::discovery::InstanceSet;
use crate::metrics::{ProxyMetrics, RouteMetrics};
use crate::stack::RouteService;

/// The proxy's data path: its settings, routes and metrics, shared by every connection.
///
/// Cheap to clone (one `Arc`): the server, the admin endpoint and the reloader each hold one.
///
/// ```no_run
/// # async fn run(config: stormguard_proxy::config::Config) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use prometheus_client::registry::Registry;
/// use stormguard_proxy::{serve, Proxy};
///
/// let mut registry = Registry::default();
/// let proxy = Proxy::new(config.clone(), &mut registry)?;
/// let listener = tokio::net::TcpListener::bind(config.listen.address).await?;
/// // Resolves when the drain should start (SIGTERM in the binary).
/// let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let shutdown = async { let _ = stopped.await; };
/// serve(proxy, listener, shutdown, config.listen.shutdown_grace).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read by every request, written by a reload: an `ArcSwap`, so that a read is a few atomic
    /// operations without a lock, where an `RwLock`'s read lock was two read-modify-writes on
    /// one shared counter (and a wait behind a reload's write).
    current: ArcSwap<Generation>,
    /// One reload at a time, so two cannot build from the same predecessor.
    applying: Mutex<()>,
    metrics: ProxyMetrics,
    clients: Arc<Clients>,
    /// Each upstream's instances, kept across generations while the upstream stays the same.
    sets: Mutex<HashMap<String, Arc<InstanceSet>>>,
    fault_seed: u64,
    fault_counter: AtomicU64,
}

/// One generation of settings, as requests use it.
pub(crate) struct Generation {
    pub(crate) number: u64,
    pub(crate) config: Arc<Config>,
    pub(crate) routes: Vec<RouteEntry>,
}

impl Generation {
    /// The first route that takes a request for `path` and the host `host` gives (without
    /// port). `host` is asked only by a route that names a host: most sidecars route by path
    /// alone, and finding the host in a request's headers was work on every request.
    pub(crate) fn route<'h>(
        &self,
        host: impl Fn() -> Option<&'h str>,
        path: &str,
    ) -> Option<&RouteEntry> {
        self.routes.iter().find(|route| route.takes(&host, path))
    }

    /// Whether `host` is one that a route names: an absolute-form target for it is ours.
    pub(crate) fn serves_host(&self, host: &str) -> bool {
        self.routes
            .iter()
            .any(|route| route.host.as_deref() == Some(&*host_key(host)))
    }
}

/// One instance of a route's balancer, as [`Proxy::instances`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStatus {
    /// `ip:port`: what the proxy connects to, and what it names the instance by everywhere.
    pub address: String,
    /// The host name it was resolved from (`discovery`, a name in `instances`), if any.
    pub host: Option<String>,
    /// Whether outlier detection leaves it out of first attempts now.
    pub ejected: bool,
    /// This route's requests in flight there.
    pub in_flight: u64,
}

/// A route as requests use it.
pub(crate) struct RouteEntry {
    pub(crate) name: Arc<str>,
    path_prefix: Option<String>,
    /// Lower case, without port.
    host: Option<String>,
    pub(crate) upstream: UpstreamSlot,
    /// The upstream's name, whose instances the route follows.
    upstream_name: String,
    pub(crate) service: RouteService,
    pub(crate) fault: Option<FaultSpec>,
    /// `request_timeout`, which an injected delay spends from, as the route's deadline layer
    /// would.
    pub(crate) request_timeout: Option<std::time::Duration>,
    /// `retry_body_limit`: the body read before forwarding, as the retry layer keeps it.
    pub(crate) body_limit: usize,
    /// Answers that were the upstream's 2xx: counted without a lookup.
    pub(crate) upstream_2xx: Counter,
    /// Its histograms and instance series, kept with its stack.
    pub(crate) metrics: RouteMetrics,
    built_from: BuiltFrom,
    /// The route's balancer, following its upstream's instances.
    pub(crate) instances: Arc<crate::discovery::RouteInstances>,
}

impl RouteEntry {
    /// Counts one answer on this route, given `waited` after the request arrived.
    pub(crate) fn answered(
        &self,
        metrics: &ProxyMetrics,
        status: u16,
        reason: &'static str,
        waited: std::time::Duration,
    ) {
        self.metrics.request_duration.observe(waited);
        if reason.is_empty() && (200..300).contains(&status) {
            self.upstream_2xx.inc();
        } else {
            metrics.answered(&self.name, status, reason);
        }
    }

    /// Whether this route takes a request for `path` and the host `host` gives, without its
    /// port (as [`crate::headers::request_host`] gives it).
    fn takes<'h>(&self, host: &impl Fn() -> Option<&'h str>, path: &str) -> bool {
        let path_ok = self
            .path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix));
        path_ok
            && self
                .host
                .as_deref()
                .is_none_or(|want| host().is_some_and(|have| have.eq_ignore_ascii_case(want)))
    }
}

/// A host as routes compare it: lower case, without port.
pub(crate) fn host_key(host: &str) -> String {
    strip_port(host).to_ascii_lowercase()
}

/// `host` without a `:port`; an IPv6 literal keeps its brackets.
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// An upstream's in-flight count and limit: load shedding without a queue.
pub(crate) struct UpstreamSlot {
    in_flight: Gauge,
    shed: Counter,
    /// Handed to each place in flight, for its response body to count a break with.
    broken: Counter,
    max: i64,
}

impl UpstreamSlot {
    fn new(name: &str, max_in_flight: u32, metrics: &ProxyMetrics) -> Self {
        UpstreamSlot {
            in_flight: metrics.in_flight(name),
            shed: metrics.shed(name),
            broken: metrics.broken_bodies(name),
            max: i64::from(max_in_flight),
        }
    }

    /// A place in flight, or `None` (counted as shed) when the upstream is full. One atomic
    /// add either way: no lock, no queue, so an overload costs the proxy no memory.
    pub(crate) fn try_acquire(&self) -> Option<InFlight> {
        if self.in_flight.inc() >= self.max {
            self.in_flight.dec();
            self.shed.inc();
            return None;
        }
        Some(InFlight(self.in_flight.clone(), self.broken.clone()))
    }
}

/// A request's place in its upstream's in-flight count, given back when dropped (when the
/// response body has been sent, or the request abandoned).
pub(crate) struct InFlight(Gauge, Counter);

impl InFlight {
    /// The upstream broke off the response body this place was held for.
    pub(crate) fn broken(&self) {
        self.1.inc();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Proxy {
    /// Builds the routes of `config` and registers the data path's metrics in `registry` (the
    /// library's policy counters and the proxy's own), so that the admin endpoint can serve them
    /// with whatever else is registered there (reload metrics, for instance).
    ///
    /// # Errors
    /// A route that cannot be built (unknown upstream, an instance that is not `host:port`, a
    /// limiter, hedge or adaptive timeout the core refuses).
    pub fn new(config: Config, registry: &mut Registry) -> Result<Proxy, BuildError> {
        let metrics = ProxyMetrics::register(registry);
        let clients = Arc::new(Clients::default());
        let sets = build::instance_sets(&config, &HashMap::new(), &metrics)?;
        let routes = build::routes(&config, &[], &metrics, &clients, &sets)?;
        let generation = Generation {
            number: 1,
            config: Arc::new(config),
            routes,
        };
        metrics.publish(generation.routes.iter().map(|r| (&*r.name, &r.metrics)));
        Ok(Proxy {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(generation),
                applying: Mutex::new(()),
                metrics,
                clients,
                sets: Mutex::new(sets),
                fault_seed: stormguard::backoff::process_entropy_seed(),
                fault_counter: AtomicU64::new(0),
            }),
        })
    }

    /// Replaces the settings: builds every route of `config` in full, then swaps them in at
    /// once. Requests in flight finish on the routes they started with; later ones take the new
    /// routes. Returns the new generation's number.
    ///
    /// The listen address cannot move without dropping connections: a changed address is logged
    /// and the proxy keeps listening where it is (and [`Proxy::config`] says so); every other
    /// setting, the listener's limits included, applies to new requests and connections.
    ///
    /// # Errors
    /// As [`Proxy::new`]; the running settings are then unchanged.
    pub fn apply(&self, mut config: Config) -> Result<u64, BuildError> {
        let _one_at_a_time = self
            .inner
            .applying
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let running: SocketAddr = old.config.listen.address;
        if config.listen.address != running {
            tracing::warn!(
                %running,
                requested = %config.listen.address,
                "listen address changed: it takes a restart; still listening on the running address"
            );
            config.listen.address = running;
        }
        let sets = {
            let running = self.inner.sets.lock().unwrap_or_else(|e| e.into_inner());
            build::instance_sets(&config, &running, &self.inner.metrics)?
        };
        let routes = build::routes(
            &config,
            &old.routes,
            &self.inner.metrics,
            &self.inner.clients,
            &sets,
        )?;
        // The sets that were replaced stop resolving when dropped here.
        *self.inner.sets.lock().unwrap_or_else(|e| e.into_inner()) = sets;
        let generation = Arc::new(Generation {
            number: old.number + 1,
            config: Arc::new(config),
            routes,
        });
        let number = generation.number;
        self.inner.current.store(generation.clone());
        self.inner
            .metrics
            .publish(generation.routes.iter().map(|r| (&*r.name, &r.metrics)));
        // Debug, not info: the reloader that called this logs the reload with its file and
        // trigger, and one line per reload is what an operator wants to read.
        tracing::debug!(generation = number, "settings applied");
        Ok(number)
    }

    /// The running generation's number: 1 for the settings given to [`Proxy::new`], one more for
    /// each successful [`Proxy::apply`].
    pub fn generation(&self) -> u64 {
        self.current().number
    }

    /// The running settings (with the listen address the proxy actually listens on).
    pub fn config(&self) -> Arc<Config> {
        self.current().config.clone()
    }

    /// Each instance of `route`'s balancer now: its address, the host name it came from, and
    /// whether it is ejected; `None` when no route has that name. What `/instances` on the
    /// admin endpoint shows, and how a test sees the set follow DNS.
    pub fn instances(&self, route: &str) -> Option<Vec<InstanceStatus>> {
        let generation = self.current();
        let entry = generation.routes.iter().find(|r| &*r.name == route)?;
        let members = self
            .inner
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&entry.upstream_name)
            .map(|set| set.current())
            .unwrap_or_default();
        let balance = &entry.instances.balance;
        let names = balance.names();
        let ejected = balance.ejected();
        let in_flight = balance.in_flight();
        Some(
            names
                .iter()
                .zip(ejected)
                .zip(in_flight)
                .map(|((address, ejected), in_flight)| InstanceStatus {
                    address: address.to_string(),
                    host: members
                        .iter()
                        .find(|m| m.address.to_string() == **address)
                        .and_then(|m| m.host.as_deref().map(str::to_string)),
                    ejected,
                    in_flight,
                })
                .collect(),
        )
    }

    /// The running generation, for one request from arrival to end.
    pub(crate) fn current(&self) -> Arc<Generation> {
        self.inner.current.load_full()
    }

    pub(crate) fn metrics(&self) -> &ProxyMetrics {
        &self.inner.metrics
    }

    /// A random generator for one request's fault draws: seeded per process, one stream per
    /// request, no lock.
    pub(crate) fn fault_rng(&self) -> stormguard::backoff::JitterRng {
        use rand::SeedableRng;
        let n = self.inner.fault_counter.fetch_add(1, Ordering::Relaxed);
        stormguard::backoff::JitterRng::seed_from_u64(
            self.inner.fault_seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_port_and_case() {
        assert_eq!(strip_port("api.internal:8080"), "api.internal");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("api"), "api");
        assert_eq!(host_key("API.Internal:80"), "api.internal");
    }
}
