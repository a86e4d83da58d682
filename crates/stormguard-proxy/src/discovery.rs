//! An upstream's instances as they are now: its listed addresses, and every address its host
//! names resolve to, resolved again every `refresh`.
//!
//! ## Why resolve here, and not when connecting
//! A name resolved only when connecting is one instance, however many addresses it has: a
//! Kubernetes headless service of ten pods would get all its requests on whichever pod the
//! connector's lookup returned first, and a retry could not go elsewhere. So, as Envoy's
//! `STRICT_DNS` cluster does, every A and AAAA record of a name is an instance of its own in the
//! balance, and the set follows the records: an address that appears joins the balance of every
//! route to the upstream, one that vanishes gets no new attempt. Its requests in flight finish
//! (each holds its instance's pool), and its pooled connections close when the last one ends.
//!
//! ## What is kept
//! An instance is known by its address, `ip:port`: an instance that stays through a refresh
//! keeps its in-flight count and its ejection record ([`Balance::update`]), and through a
//! reload too: an unchanged upstream keeps its [`InstanceSet`], its resolver and last answer,
//! and a route rebuilt by a reload takes its balancer's records over by address
//! ([`Balance::carry`]).
//!
//! ## When DNS fails
//! A failed resolution (a timeout, SERVFAIL, NXDOMAIN, no address) keeps the name's last good
//! addresses, is logged and counted (`stormguard_dns_resolutions_total{result="failed"}`), and
//! is tried again at the next refresh: DNS down must not take the instances down with it. A name
//! that has never resolved (DNS down at start) has no instance: its requests are answered 503
//! with `stormguard-reason: no-instance` until a refresh resolves it, which is also what a
//! reload to a new name does until its first answer. A name that yields more than
//! [`MAX_INSTANCES`] addresses is refused the same way: logged, counted, the last set kept.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use prometheus_client::metrics::counter::Counter;
use stormguard::layer::Balance;

use crate::config::{Dns, Upstream};
use crate::metrics::ProxyMetrics;
use crate::stack::Timed;

/// The most instances one name may yield. A DNS answer that large is a misconfiguration (a
/// wildcard, the wrong name) more often than a fleet, and each instance costs every route a
/// pool and a place in each choice; more is refused and the last good set kept.
pub(crate) const MAX_INSTANCES: usize = 256;

/// One instance: its address, and the host name it came from (none for a listed address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) address: SocketAddr,
    pub(crate) host: Option<Arc<str>>,
}

/// Where an upstream's instances come from: what decides whether a reload can keep its set.
#[derive(Clone, Debug, PartialEq)]
struct Source {
    /// Addresses listed as such, in file order.
    literal: Vec<SocketAddr>,
    /// `(host, port)` of each name to resolve, in file order.
    names: Vec<(String, u16)>,
    refresh: Duration,
    servers: Vec<SocketAddr>,
}

impl Source {
    fn of(upstream: &Upstream, dns: &Dns) -> Source {
        let mut literal = Vec::new();
        let mut names = Vec::new();
        let mut refresh = dns.refresh;
        for instance in &upstream.instances {
            match instance.parse::<SocketAddr>() {
                Ok(address) => literal.push(address),
                Err(_) => {
                    // Checked by the parser: `host:port`, the host not an address.
                    if let Some((host, port)) = instance.rsplit_once(':') {
                        if let Ok(port) = port.parse() {
                            names.push((host.to_string(), port));
                        }
                    }
                }
            }
        }
        if let Some(discovery) = &upstream.discovery {
            names.push((discovery.host.clone(), discovery.port));
            refresh = discovery.refresh;
        }
        // An upstream with no name to resolve does not depend on `[dns]`: a change there
        // leaves its set alone.
        let servers = if names.is_empty() {
            Vec::new()
        } else {
            dns.servers.clone()
        };
        Source {
            literal,
            names,
            refresh,
            servers,
        }
    }
}

/// A route's balancer over an upstream's instances, and how to make the service of an instance
/// that joins.
pub(crate) struct RouteInstances {
    pub(crate) balance: Balance<Timed>,
    make: Box<dyn Fn(&Member) -> Timed + Send + Sync>,
    /// The members the balancer was last given, so that being given the same again (when the
    /// route starts following its set, [`InstanceSet::follow`]) rebuilds nothing.
    given: Mutex<Vec<Member>>,
}

impl RouteInstances {
    /// A balancer built with `balance` over `members`, each service made by `make`.
    pub(crate) fn new(
        members: &[Member],
        make: Box<dyn Fn(&Member) -> Timed + Send + Sync>,
        balance: impl FnOnce(Vec<(Arc<str>, Timed)>) -> Balance<Timed>,
    ) -> Self {
        let balance = balance(services(members, &make));
        RouteInstances {
            balance,
            make,
            given: Mutex::new(members.to_vec()),
        }
    }

    /// Gives the balancer `members`, unless they are the ones it was last given.
    pub(crate) fn follow(&self, members: &[Member]) {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        if *given == members {
            return;
        }
        *given = members.to_vec();
        self.balance.update(services(members, &self.make));
    }
}

fn services(
    members: &[Member],
    make: &(dyn Fn(&Member) -> Timed + Send + Sync),
) -> Vec<(Arc<str>, Timed)> {
    members
        .iter()
        .map(|m| (Arc::from(m.address.to_string()), make(m)))
        .collect()
}

/// One upstream's instances, shared by the routes to it and kept across reloads while the
/// upstream's instances, discovery and `[dns]` stay the same.
pub(crate) struct InstanceSet {
    upstream: String,
    source: Source,
    /// Each name's last good addresses (`None`: never resolved), in `source.names` order.
    resolved: Mutex<Vec<Option<Vec<IpAddr>>>>,
    current: Mutex<Arc<Vec<Member>>>,
    followers: Mutex<Vec<Weak<RouteInstances>>>,
    resolutions: Counter,
    failures: Counter,
}

impl InstanceSet {
    /// The set of `upstream` as `dns` says to find it. A name that `previous` (the set of the
    /// same upstream before a reload) had resolved keeps its addresses until it is resolved
    /// again, so that a reload that changed the refresh does not empty the balance. Starts
    /// the refresh task when there is a name to resolve and a runtime to run it.
    pub(crate) fn start(
        name: &str,
        upstream: &Upstream,
        dns: &Dns,
        previous: Option<&InstanceSet>,
        metrics: &ProxyMetrics,
    ) -> Arc<InstanceSet> {
        let source = Source::of(upstream, dns);
        let resolved = source
            .names
            .iter()
            .map(|name| {
                let previous = previous?;
                let at = previous.source.names.iter().position(|n| n == name)?;
                previous.lock_resolved()[at].clone()
            })
            .collect();
        let set = Arc::new(InstanceSet {
            upstream: name.to_string(),
            resolutions: metrics.dns_resolutions(name, "ok"),
            failures: metrics.dns_resolutions(name, "failed"),
            source,
            resolved: Mutex::new(resolved),
            current: Mutex::new(Arc::new(Vec::new())),
            followers: Mutex::new(Vec::new()),
        });
        *set.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(set.members());
        if !set.source.names.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(refresh(Arc::downgrade(&set), resolver(&set.source)));
                }
                Err(_) => tracing::warn!(
                    upstream = %set.upstream,
                    "no tokio runtime: the upstream's host names are not resolved"
                ),
            }
        }
        set
    }

    /// Whether this set finds `upstream`'s instances as `dns` says: a reload keeps it if so.
    pub(crate) fn serves(&self, upstream: &Upstream, dns: &Dns) -> bool {
        self.source == Source::of(upstream, dns)
    }

    /// The instances now.
    pub(crate) fn members(&self) -> Vec<Member> {
        let resolved = self.lock_resolved();
        let mut members: Vec<Member> = self
            .source
            .literal
            .iter()
            .map(|&address| Member {
                address,
                host: None,
            })
            .collect();
        for ((host, port), addresses) in self.source.names.iter().zip(resolved.iter()) {
            let host: Arc<str> = Arc::from(host.as_str());
            for ip in addresses.iter().flatten() {
                let address = SocketAddr::new(*ip, *port);
                if !members.iter().any(|m| m.address == address) {
                    members.push(Member {
                        address,
                        host: Some(host.clone()),
                    });
                }
            }
        }
        members
    }

    /// The instances now, as the balancers have them.
    pub(crate) fn current(&self) -> Arc<Vec<Member>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps `route`'s balancer in step with the set from now on, for as long as it lives, and
    /// brings it in step now.
    ///
    /// A route is built from [`current`](Self::current) and follows the set a moment later: a
    /// resolution that changed the set in between told the followers without it, and every
    /// later one finds nothing new to tell. The route then kept the instances it was built
    /// with until the records changed again (a name first resolved while its route was being
    /// built stayed out of the balance). So the route is given the set's members here, under
    /// the lock that [`resolved`](Self::resolved) tells the followers under, each time the
    /// members as they are then: whichever tells a route last tells it the newest.
    pub(crate) fn follow(&self, route: &Arc<RouteInstances>) {
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.retain(|f| f.strong_count() > 0);
        if !followers
            .iter()
            .any(|f| std::ptr::eq(f.as_ptr(), Arc::as_ptr(route)))
        {
            followers.push(Arc::downgrade(route));
        }
        route.follow(&self.current());
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, Vec<Option<Vec<IpAddr>>>> {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes name `index`'s answer; when the instances change, tells every route.
    fn resolved(&self, index: usize, answer: Result<Vec<IpAddr>, String>) {
        let (host, port) = &self.source.names[index];
        let addresses = match answer {
            Ok(addresses) if addresses.len() > MAX_INSTANCES => Err(format!(
                "{} addresses, more than the {MAX_INSTANCES} a name may yield",
                addresses.len()
            )),
            Ok(addresses) if addresses.is_empty() => Err("no address".to_string()),
            other => other,
        };
        let addresses = match addresses {
            Ok(mut addresses) => {
                self.resolutions.inc();
                addresses.sort();
                addresses.dedup();
                addresses
            }
            Err(error) => {
                self.failures.inc();
                tracing::warn!(
                    upstream = %self.upstream,
                    name = %format!("{host}:{port}"),
                    %error,
                    "DNS resolution failed: keeping the last instances it gave"
                );
                return;
            }
        };
        {
            let mut resolved = self.lock_resolved();
            if resolved[index].as_ref() == Some(&addresses) {
                return;
            }
            resolved[index] = Some(addresses);
        }
        let members = self.members();
        let before = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, Arc::new(members.clone()))
        };
        let named = |m: &Member| match &m.host {
            Some(host) => format!("{} ({host})", m.address),
            None => m.address.to_string(),
        };
        let joined: Vec<String> = members
            .iter()
            .filter(|m| !before.contains(m))
            .map(named)
            .collect();
        let left: Vec<String> = before
            .iter()
            .filter(|m| !members.contains(m))
            .map(named)
            .collect();
        tracing::info!(
            upstream = %self.upstream,
            instances = members.len(),
            joined = %joined.join(", "),
            left = %left.join(", "),
            "upstream instances changed"
        );
        // Told under the followers' lock, with the members as they are then (see `follow`).
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.retain(|f| f.strong_count() > 0);
        let members = self.current();
        for route in followers.iter().filter_map(Weak::upgrade) {
            route.follow(&members);
        }
    }
}

/// A resolver that asks `source.servers`, or the system's when there are none. Answers are not
/// cached: each refresh asks again, so that the set follows the records at the pace the file
/// says, whatever their TTL (Envoy's `STRICT_DNS` does the same by default).
fn resolver(source: &Source) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let builder = if source.servers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| format!("reading the system's DNS: {e}"))?
    } else {
        let servers = source
            .servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let mut builder = builder;
    let options = builder.options_mut();
    // A lookup that outlasts the refresh delays the next one, so it is bounded by the refresh;
    // but not under a second, which a loaded name server (or machine) can take to answer, and
    // a lookup cut short keeps the last good set for one more refresh.
    options.timeout = source
        .refresh
        .max(Duration::from_secs(1))
        .min(options.timeout);
    options.attempts = 1;
    // Every A and every AAAA record is an instance, not the AAAA only when there is no A.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(|e| e.to_string())
}

/// Resolves the set's names now and every `refresh`, until the set is dropped (a reload that
/// replaced it, or the proxy gone).
async fn refresh(set: Weak<InstanceSet>, resolver: Result<TokioResolver, String>) {
    let (names, every) = match set.upgrade() {
        Some(set) => (set.source.names.clone(), set.source.refresh),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (index, (host, _)) in names.iter().enumerate() {
            let answer = match &resolver {
                Ok(resolver) => {
                    resolver.clear_cache();
                    resolver
                        .lookup_ip(host.as_str())
                        .await
                        .map(|found| found.iter().collect())
                        .map_err(|e| e.to_string())
                }
                Err(error) => Err(error.clone()),
            };
            let Some(set) = set.upgrade() else {
                return;
            };
            set.resolved(index, answer);
        }
    }
}
