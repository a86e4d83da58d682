//! `DestinationRule`: what applies to every call to a host (or to one subset of it), whatever
//! the route: the connect timeout and the retry budget. The rest (connection limits, outlier
//! detection, load balancing, TLS) changes no call's timeout or retry and is listed as unread.

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{DestinationPolicy, Host, Inventory, Policy, Resource, Setting, System};
use crate::kubernetes::{name_of, namespace_of};
use crate::source::Origin;

use super::values::{duration, positive_duration, set_duration, unread_fields};

/// A `DestinationRule` as [`super::resolve`] applies it to routes.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Rule {
    /// `spec.host` as written (`reviews`, `reviews.prod.svc.cluster.local`, `*.prod.svc.cluster.local`).
    pub host: String,
    /// The resource's namespace, which a short host is relative to.
    pub namespace: String,
    /// The host-level `trafficPolicy`.
    pub policy: Traffic,
    /// Each subset's `trafficPolicy`, by subset name.
    pub subsets: Vec<(String, Traffic)>,
    /// Where the rule is.
    pub origin: Origin,
}

/// The parts of a `trafficPolicy` that bound a call's retries or connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Traffic {
    /// `connectionPool`, when given: a subset's replaces the host's whole (Istio's
    /// `MergeTrafficPolicy`), so an unset `connectTimeout` in it is Istio's 10 s again.
    pub pool: Option<Pool>,
    /// `retryBudget` as the graph's `retry_budget`, when given.
    pub budget: Option<Setting>,
}

/// What a `connectionPool` says that matters here.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Pool {
    /// `tcp.connectTimeout` as `connect_timeout`.
    pub connect_timeout: Option<Setting>,
    /// Where `http.maxRetries` caps concurrent retries (Envoy's `max_retries` circuit breaker,
    /// which Istio otherwise lifts to 2^32−1).
    pub max_retries: Option<Origin>,
}

impl Traffic {
    /// This policy with `subset`'s laid over it, field by field as Istio merges them.
    pub fn merged(&self, subset: &Traffic) -> Traffic {
        Traffic {
            pool: subset.pool.clone().or_else(|| self.pool.clone()),
            budget: subset.budget.clone().or_else(|| self.budget.clone()),
        }
    }

    /// Whether something bounds the retries to the destination.
    pub fn bounds_retries(&self) -> bool {
        self.budget.is_some() || self.pool.as_ref().is_some_and(|p| p.max_retries.is_some())
    }
}

/// Reads a `DestinationRule`: its host-level policy becomes a destination policy (for calls to
/// the host with or without a route), and the whole rule waits for [`super::resolve`].
pub(super) fn read(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    let name = name_of(doc, node, "DestinationRule")?;
    let namespace = namespace_of(node);
    let what = format!("DestinationRule {name}");
    let Some(spec) = node.get("spec") else {
        return Err(doc.error(node, "spec", "a DestinationRule without spec"));
    };
    let host = spec
        .get("host")
        .and_then(Node::as_str)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| doc.error(spec, "spec.host", "missing: the host the rule is for"))?
        .to_string();
    let scope = [
        (
            "exportTo",
            "limits which namespaces' sidecars apply the rule; the import applies it to every \
             caller",
        ),
        (
            "workloadSelector",
            "applies the rule to some callers only; the import applies it to every caller",
        ),
    ];
    unread_fields(doc, spec, &format!("{what} spec"), &scope, inv);
    let policy = match spec.get("traffic_policy") {
        Some(tp) => read_traffic(
            doc,
            tp,
            "spec.trafficPolicy",
            &format!("{what} trafficPolicy"),
            inv,
        )?,
        None => Traffic::default(),
    };
    let mut subsets = Vec::new();
    for (i, subset) in spec
        .get("subsets")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let subset_name = subset
            .get("name")
            .and_then(Node::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                doc.error(
                    subset,
                    &format!("spec.subsets[{i}].name"),
                    "missing: a subset needs a name",
                )
            })?
            .to_string();
        if let Some(tp) = subset.get("traffic_policy") {
            let traffic = read_traffic(
                doc,
                tp,
                &format!("spec.subsets[{i}].trafficPolicy"),
                &format!("{what} subsets[{subset_name}].trafficPolicy"),
                inv,
            )?;
            subsets.push((subset_name, traffic));
        }
    }
    let wildcard = host.contains('*');
    if wildcard {
        inv.unread(
            Origin::at(doc, spec, format!("{what} spec.host")),
            format!("{what} host {host}"),
            "a wildcard host: applied to the routes read here whose destinations it matches, \
             not to calls without a VirtualService",
        );
    } else {
        let mut settings = Policy::default();
        if let Some(setting) = policy.pool.as_ref().and_then(|p| p.connect_timeout.clone()) {
            settings.settings.push(setting);
        }
        if let Some(setting) = policy.budget.clone() {
            settings.settings.push(setting);
        }
        inv.destinations.push(DestinationPolicy {
            system: System::Istio,
            host: Host::new(host.clone(), Some(&namespace)),
            caller: None,
            policy: settings,
            origin: Origin::at(doc, node, what.clone()),
            resource: Resource {
                kind: "DestinationRule".to_string(),
                namespace: Some(namespace.clone()),
                name,
                file: doc.file.clone(),
                document: doc.index,
                path: "spec.trafficPolicy".to_string(),
            },
        });
    }
    inv.istio.rules.push(Rule {
        host,
        namespace,
        policy,
        subsets,
        origin: Origin::at(doc, node, what),
    });
    Ok(())
}

/// Reads a `trafficPolicy` at `path` (for errors), described as `what` (for origins).
fn read_traffic(
    doc: &Document,
    tp: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<Traffic, ImportError> {
    let mut traffic = Traffic::default();
    if let Some(pool) = tp.get("connection_pool") {
        traffic.pool = Some(read_pool(
            doc,
            pool,
            &format!("{path}.connectionPool"),
            &format!("{what}.connectionPool"),
            inv,
        )?);
    }
    if let Some(budget) = tp.get("retry_budget") {
        traffic.budget = Some(read_budget(
            doc,
            budget,
            &format!("{path}.retryBudget"),
            &format!("{what}.retryBudget"),
            inv,
        )?);
    }
    let informational = [
        (
            "outlierDetection",
            "ejection of failing instances: informational, not modelled per call",
        ),
        (
            "loadBalancer",
            "the balancing algorithm: the graph balances its own way (a consistent hash also \
             makes Istio's retries go back to the same instance)",
        ),
        ("tls", "TLS to the destination changes no timeout or retry"),
        (
            "portLevelSettings",
            "settings for calls on one port: the graph's calls have no port, so they are not \
             applied (Istio applies them instead of the ones above for that port)",
        ),
        ("tunnel", "TCP tunnelling changes no HTTP timeout or retry"),
        (
            "proxyProtocol",
            "the PROXY protocol changes no timeout or retry",
        ),
    ];
    unread_fields(doc, tp, what, &informational, inv);
    Ok(traffic)
}

fn read_pool(
    doc: &Document,
    pool: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<Pool, ImportError> {
    let mut out = Pool::default();
    if let Some(tcp) = pool.get("tcp") {
        for (key, value) in tcp.entries() {
            let Some(key) = key.as_str() else { continue };
            if key == "connectTimeout" || key == "connect_timeout" {
                let timeout = positive_duration(doc, value, &format!("{path}.tcp.connectTimeout"))?;
                let mut scratch = Policy::default();
                set_duration(
                    &mut scratch,
                    "connect_timeout",
                    timeout,
                    Origin::at(doc, value, format!("{what}.tcp.connectTimeout")),
                    inv,
                );
                out.connect_timeout = scratch.settings.pop();
            } else {
                inv.unread(
                    Origin::at(doc, value, format!("{what}.tcp.{key}")),
                    format!("{what}.tcp.{key}"),
                    "connection management: changes no call's timeout or retry",
                );
            }
        }
    }
    if let Some(http) = pool.get("http") {
        for (key, value) in http.entries() {
            let Some(key) = key.as_str() else { continue };
            if key == "maxRetries" || key == "max_retries" {
                value
                    .as_str()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        doc.error(
                            value,
                            &format!("{path}.http.maxRetries"),
                            "not a whole number from 0",
                        )
                    })?;
                let origin = Origin::at(doc, value, format!("{what}.http.maxRetries"));
                inv.unread(
                    origin.clone(),
                    format!("{what}.http.maxRetries"),
                    "caps the retries in flight to the destination at once (Envoy's max_retries \
                     circuit breaker), not a share of requests: the graph has no such key; it \
                     bounds the retries, so no istio-unbounded-retries finding",
                );
                out.max_retries = Some(origin);
            } else {
                inv.unread(
                    Origin::at(doc, value, format!("{what}.http.{key}")),
                    format!("{what}.http.{key}"),
                    "connection and request limits: the graph models queues per service, not \
                     per caller's pool",
                );
            }
        }
    }
    Ok(out)
}

/// `retryBudget { percent, minRetryConcurrency, budgetInterval }` → `retry_budget = { ratio =
/// percent / 100, min_per_sec = minRetryConcurrency }`, approximately: Envoy caps the retries
/// in flight at `percent` of the requests in flight (never below `minRetryConcurrency`), the
/// graph caps retries over 10 s.
fn read_budget(
    doc: &Document,
    budget: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<Setting, ImportError> {
    let percent = match budget.get("percent") {
        Some(node) => node
            .as_f64()
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| {
                doc.error(
                    node,
                    &format!("{path}.percent"),
                    "not a percentage from 0 to 100",
                )
            })?,
        // "Defaults to 20%."
        None => 20.0,
    };
    let min = match budget.get("min_retry_concurrency") {
        Some(node) => node.as_u64().ok_or_else(|| {
            doc.error(
                node,
                &format!("{path}.minRetryConcurrency"),
                "not a whole number from 0",
            )
        })?,
        // "Defaults to 3."
        None => 3,
    };
    let origin = Origin::at(doc, budget, what.to_string());
    let ratio = percent / 100.0;
    // A whole ratio keeps its `.0`: TOML's 1 is an integer, the graph's ratio a number.
    let ratio = if ratio.fract() == 0.0 {
        format!("{ratio:.1}")
    } else {
        format!("{ratio}")
    };
    let value = format!("{{ ratio = {ratio}, min_per_sec = {} }}", min.min(10_000));
    inv.unread(
        origin.clone(),
        what.to_string(),
        format!(
            "approximate: Istio caps concurrent retries at {percent}% of the requests in flight \
             (at least {min}), stormguard caps retries per 10 s: written as ratio {ratio}, \
             min_per_sec {}",
            min.min(10_000)
        ),
    );
    if let Some(node) = budget.get("budget_interval") {
        let interval = duration(doc, node, &format!("{path}.budgetInterval"))?;
        if !interval.is_zero() {
            inv.unread(
                Origin::at(doc, node, format!("{what}.budgetInterval")),
                format!("{what}.budgetInterval"),
                "counts the requests of that interval, not only those in flight: closer to the \
                 graph's rate budget, whose window stays 10 s",
            );
        }
    }
    Ok(Setting::new("retry_budget", value, origin))
}
