//! After every document: `DestinationRule`s applied to the routes that send to their hosts and
//! subsets, and the finding `istio-unbounded-retries` where nothing bounds a route's retries.

use std::collections::{HashMap, HashSet};

use stormguard_graph::Severity;

use crate::inventory::{Host, ImportFinding, Inventory, System};
use crate::names::service_of;
use crate::source::Origin;

use super::destination_rule::{Rule, Traffic};
use super::values::duration_of;
use super::{DEFAULT_RETRIES, DEFAULT_RETRY_ON, ISTIO_DEFAULT, UNBOUNDED_RETRIES};

/// A service as names.rs names it: `(name, namespace)`.
type Key = (String, Option<String>);

/// Applies the `DestinationRule`s read to the Istio routes read, whatever their order in the
/// files: a rule's connect timeout and retry budget (its subset's, for a backend that names
/// the subset) replace Istio's defaults on the route; a connect timeout above the attempt's
/// timeout is written as that timeout. Then emits `istio-unbounded-retries` (Warning) for each
/// route that retries with no `retryBudget` or `connectionPool.http.maxRetries` for its
/// destination, at the route's line, and for each Service in an Istio namespace that no
/// `VirtualService` routes and no rule bounds, at "Istio default" (its calls get Istio's two
/// default retries).
///
/// [`crate::inventory()`] calls it once all documents are read; a second call changes nothing.
pub fn resolve(inv: &mut Inventory) {
    if inv.istio.resolved {
        return;
    }
    let pending = std::mem::take(&mut inv.istio);
    inv.istio.resolved = true;
    let rules = Rules::new(&pending.rules);
    for targets in &pending.routes {
        apply(inv, &rules, targets.route, &targets.subsets);
    }
    default_hops(inv, &rules);
}

/// The rules, indexed by the service an exact host names, and the wildcard ones.
struct Rules<'a> {
    exact: HashMap<Key, &'a Rule>,
    /// `(suffix after the *, rule)`, longest suffix first: Istio picks the most specific.
    wildcard: Vec<(&'a str, &'a Rule)>,
}

impl<'a> Rules<'a> {
    fn new(rules: &'a [Rule]) -> Rules<'a> {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for rule in rules {
            match rule.host.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix, rule)),
                // The oldest rule wins a conflict in Istio; in file order, the first.
                None => {
                    exact
                        .entry(service_of(&Host::new(
                            rule.host.clone(),
                            Some(&rule.namespace),
                        )))
                        .or_insert(rule);
                }
            }
        }
        wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Rules { exact, wildcard }
    }

    /// The rule for calls to `host`: the one naming it, else the most specific wildcard.
    fn for_host(&self, host: &Host) -> Option<&'a Rule> {
        let key = service_of(host);
        if let Some(rule) = self.exact.get(&key) {
            return Some(rule);
        }
        let fqdn = match &key.1 {
            Some(ns) => format!("{}.{ns}.svc.cluster.local", key.0),
            None => key.0.clone(),
        };
        self.wildcard
            .iter()
            .find(|(suffix, _)| fqdn.ends_with(suffix))
            .map(|(_, rule)| *rule)
    }

    /// What applies to calls to `host` (its `subset`, if named): the host's policy with the
    /// subset's laid over it.
    fn traffic(&self, host: &Host, subset: Option<&str>) -> Option<Traffic> {
        let rule = self.for_host(host)?;
        let subset = subset.and_then(|s| rule.subsets.iter().find(|(name, _)| name == s));
        Some(match subset {
            Some((_, traffic)) => rule.policy.merged(traffic),
            None => rule.policy.clone(),
        })
    }
}

/// The values a traffic policy gives a route, for comparing backends' rules.
fn values(traffic: &Traffic) -> (Option<String>, Option<String>, bool) {
    (
        traffic
            .pool
            .as_ref()
            .and_then(|p| p.connect_timeout.as_ref())
            .map(|s| s.value.clone()),
        traffic.budget.as_ref().map(|s| s.value.clone()),
        traffic.bounds_retries(),
    )
}

fn apply(inv: &mut Inventory, rules: &Rules, index: usize, subsets: &[Option<String>]) {
    let Some(route) = inv.routes.get(index) else {
        return;
    };
    let targets: Vec<(Host, Option<&str>)> = if route.backends.is_empty() {
        vec![(route.host.clone(), None)]
    } else {
        route
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.host.clone(), subsets.get(i).and_then(|s| s.as_deref())))
            .collect()
    };
    let effective: Vec<Traffic> = targets
        .iter()
        .map(|(host, subset)| rules.traffic(host, *subset).unwrap_or_default())
        .collect();
    let first = effective.first().cloned().unwrap_or_default();
    let differ = effective.iter().any(|t| values(t) != values(&first));
    let route = &mut inv.routes[index];
    if let Some(setting) = first.pool.as_ref().and_then(|p| p.connect_timeout.clone()) {
        route.policy.set(setting.key, setting.value, setting.origin);
    }
    if let Some(setting) = first.budget.clone() {
        route.policy.set(setting.key, setting.value, setting.origin);
    }
    let clamped = clamp_connect(route);
    let tries: u64 = route
        .policy
        .get("max_attempts")
        .and_then(|s| s.value.parse().ok())
        .unwrap_or(1);
    let unbounded = tries > 1 && effective.iter().any(|t| !t.bounds_retries());
    let host = route.host.clone();
    let origin = route.origin.clone();
    let described = match &route.name {
        Some(name) => format!("{} route {name}", host.name),
        None => host.name.clone(),
    };
    if let Some(note) = clamped {
        inv.unread(origin.clone(), format!("{described} connect_timeout"), note);
    }
    if differ {
        inv.unread(
            origin.clone(),
            format!("{described} backends"),
            "its backends have different DestinationRules: the first backend's connect \
             timeout and retry budget are written",
        );
    }
    if unbounded {
        inv.findings
            .push(unbounded_finding(&host, &described, tries, origin));
    }
}

/// The graph refuses a `connect_timeout` above the attempt's `timeout` (it could never fire):
/// written as the timeout, with why.
fn clamp_connect(route: &mut crate::inventory::Route) -> Option<String> {
    let timeout = route.policy.get("timeout")?;
    let connect = route.policy.get("connect_timeout")?;
    let (limit, value) = (duration_of(&timeout.value)?, duration_of(&connect.value)?);
    if value <= limit {
        return None;
    }
    let note = format!(
        "connect timeout {} is above the attempt's timeout {}, which ends the attempt first: \
         written as {}",
        connect.value.trim_matches('"'),
        timeout.value.trim_matches('"'),
        timeout.value.trim_matches('"'),
    );
    // The written value is the timeout's, so its source is the timeout's too: the connect
    // timeout's own ("Istio default", for the 10 s Istio uses when none is set) said a value
    // that was not written.
    let (text, origin) = (timeout.value.clone(), timeout.origin.clone());
    route.policy.set("connect_timeout", text, origin);
    Some(note)
}

fn unbounded_finding(host: &Host, described: &str, tries: u64, origin: Origin) -> ImportFinding {
    ImportFinding {
        rule: UNBOUNDED_RETRIES,
        severity: Severity::Warning,
        host: Some(host.clone()),
        message: format!(
            "calls to {described} are retried (up to {tries} attempts each) and no \
             DestinationRule for {} sets a retryBudget: Istio lifts Envoy's max_retries circuit \
             breaker to 2^32-1, so nothing bounds the retries when {} fails for every caller at \
             once: its load multiplies by up to {tries}",
            host.name, host.name
        ),
        fix: format!(
            "add `trafficPolicy: {{retryBudget: {{percent: 20, minRetryConcurrency: 3}}}}` to a \
             DestinationRule for {} (or cap concurrent retries with \
             connectionPool.http.maxRetries)",
            host.name
        ),
        origin,
        remedy: None,
    }
}

/// Services in an Istio namespace that no `VirtualService` routes get Istio's default
/// retries, unbounded unless a rule says otherwise.
fn default_hops(inv: &mut Inventory, rules: &Rules) {
    let routed: HashSet<Key> = inv
        .routes
        .iter()
        .filter(|r| r.system == System::Istio)
        .map(|r| service_of(&r.host))
        .collect();
    let mut findings = Vec::new();
    for service in inv.workloads.iter().filter(|w| w.kind == "Service") {
        if !in_istio(inv, service) {
            continue;
        }
        let host = Host::new(service.name.clone(), Some(&service.namespace));
        if routed.contains(&service_of(&host)) {
            continue;
        }
        if rules
            .traffic(&host, None)
            .is_some_and(|t| t.bounds_retries())
        {
            continue;
        }
        let described = format!(
            "{} (no VirtualService: Istio's default {} retries on {})",
            service.name,
            DEFAULT_RETRIES,
            DEFAULT_RETRY_ON.join(", ")
        );
        findings.push(unbounded_finding(
            &host,
            &described,
            DEFAULT_RETRIES + 1,
            ISTIO_DEFAULT,
        ));
    }
    inv.findings.extend(findings);
}

/// Whether calls to `service` go through Istio sidecars: its namespace runs Istio, or the
/// workloads it selects opt in.
fn in_istio(inv: &Inventory, service: &crate::inventory::Workload) -> bool {
    let namespace_meshed = inv.meshes.iter().any(|m| {
        m.system == System::Istio
            && m.namespace
                .as_deref()
                .is_none_or(|ns| ns == service.namespace)
    });
    namespace_meshed
        || (!service.labels.is_empty()
            && inv.workloads.iter().any(|w| {
                w.kind != "Service"
                    && w.namespace == service.namespace
                    && matches!(w.mesh, Some((System::Istio, _)))
                    && service
                        .labels
                        .iter()
                        .all(|(k, v)| w.labels.get(k) == Some(v))
            }))
}
