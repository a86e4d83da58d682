//! An Envoy cluster's connect timeout and retry circuit breaker, as a [`DestinationPolicy`].
//!
//! Envoy's meaning (cluster.proto, circuit_breaker.proto, outlier_detection.proto):
//! - `connect_timeout`: "If not set, a default value of 5s will be used";
//! - `circuit_breakers.thresholds[].retry_budget`: concurrent retries at most `budget_percent`
//!   (default 20%) of active and pending requests, and at least `min_retry_concurrency`
//!   (default 3); it overrides `max_retries`;
//! - `max_retries`: at most that many retries in flight at once (default 3);
//! - outlier detection ejects hosts: no policy of a call, listed as informational.

use std::time::Duration;

use super::{not_a_service, Reader};
use crate::doc::Node;
use crate::error::ImportError;
use crate::inventory::{DestinationPolicy, Host, Inventory, Policy, System, Workload};
use crate::source::Origin;
use crate::toml_text::{duration, duration_in_range, number};

/// Envoy's connect timeout when `connect_timeout` is unset.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's `retry_budget.budget_percent` default.
const DEFAULT_BUDGET_PERCENT: f64 = 20.0;
/// Envoy's `retry_budget.min_retry_concurrency` default.
const DEFAULT_MIN_RETRY_CONCURRENCY: u64 = 3;
/// Envoy's `max_retries` default.
const DEFAULT_MAX_RETRIES: u64 = 3;
/// The largest `min_per_sec` the graph takes.
const MAX_MIN_PER_SEC: u64 = 10_000;

/// Reads one cluster at `path`.
pub(super) fn read(
    reader: &Reader<'_>,
    inv: &mut Inventory,
    cluster: &Node,
    path: &str,
) -> Result<(), ImportError> {
    let name = cluster
        .get("name")
        .and_then(Node::as_str)
        .unwrap_or_default();
    if let Some(why) = not_a_service(name) {
        inv.unread(reader.at(cluster, path), name, why);
        return Ok(());
    }
    let mut policy = Policy::default();
    match cluster.get("connect_timeout") {
        Some(node) => {
            let field = format!("{path}.connect_timeout");
            let value = node.as_duration().filter(|d| !d.is_zero()).ok_or_else(|| {
                reader.doc.error(
                    node,
                    &field,
                    "not a duration above zero: write e.g. \"0.250s\" or 5s",
                )
            })?;
            let origin = reader.at(node, &field);
            let value = duration_in_range(value, inv, &origin, "connect_timeout");
            policy.set("connect_timeout", duration(value), origin);
        }
        None => policy.set(
            "connect_timeout",
            duration(DEFAULT_CONNECT_TIMEOUT),
            Origin::Default("Envoy default: connect_timeout 5s"),
        ),
    }
    circuit_breakers(reader, inv, cluster, path, &mut policy)?;
    static_instances(reader, inv, cluster, path, name);
    if let Some(node) = cluster.get("outlier_detection") {
        inv.unread(
            reader.at(node, &format!("{path}.outlier_detection")),
            "outlier_detection",
            "informational: ejects failing hosts (Envoy's defaults: after 5 consecutive 5xx, \
             for 30s × ejections, at most 10% of hosts, checked every 10s); no policy of a call",
        );
    }
    inv.destinations.push(DestinationPolicy {
        system: System::Envoy,
        host: Host::new(name, None),
        caller: reader.caller.clone(),
        policy,
        origin: reader.at(cluster, path),
        resource: reader.resource(name, path),
    });
    Ok(())
}

/// The kind of the [`Workload`] a static cluster's endpoints make: a service's instances when
/// no Kubernetes workload of its name gives them.
pub(crate) const ENVOY_CLUSTER: &str = "Envoy cluster";

/// A static cluster's endpoints are its service's instances (a STATIC cluster, Envoy's default
/// `type`, lists each; a DNS cluster's names may each be many, so it says nothing): what a
/// bootstrap that `export` wrote from a proxy's `instances` holds, read back.
fn static_instances(
    reader: &Reader<'_>,
    inv: &mut Inventory,
    cluster: &Node,
    path: &str,
    name: &str,
) {
    let kind = cluster
        .get("type")
        .and_then(Node::as_str)
        .unwrap_or("STATIC");
    if kind != "STATIC" {
        return;
    }
    let Some(endpoints) = cluster
        .get("load_assignment")
        .and_then(|a| a.get("endpoints"))
    else {
        return;
    };
    let count: usize = endpoints
        .items()
        .iter()
        .map(|locality| locality.get("lb_endpoints").map_or(0, |e| e.items().len()))
        .sum();
    let Ok(count) = u32::try_from(count) else {
        return;
    };
    if count == 0 {
        return;
    }
    let field = format!("{path}.load_assignment.endpoints");
    inv.workloads.push(Workload {
        kind: ENVOY_CLUSTER,
        name: name.to_string(),
        namespace: "default".to_string(),
        instances: Some((count, reader.at(endpoints, &field))),
        labels: Default::default(),
        mesh: None,
        origin: reader.at(cluster, path),
    });
}

fn circuit_breakers(
    reader: &Reader<'_>,
    inv: &mut Inventory,
    cluster: &Node,
    path: &str,
    policy: &mut Policy,
) -> Result<(), ImportError> {
    let thresholds_path = format!("{path}.circuit_breakers.thresholds");
    let thresholds = cluster
        .get("circuit_breakers")
        .and_then(|c| c.get("thresholds"))
        .map(Node::items)
        .unwrap_or_default();
    let mut default = None;
    for (i, threshold) in thresholds.iter().enumerate() {
        let priority = threshold
            .get("priority")
            .and_then(Node::as_str)
            .unwrap_or("DEFAULT");
        if matches!(priority, "DEFAULT" | "0") {
            default.get_or_insert((i, threshold));
        } else {
            inv.unread(
                reader.at(threshold, &format!("{thresholds_path}[{i}]")),
                format!("circuit_breakers priority {priority}"),
                "applies to routes of that priority only: not read",
            );
        }
    }
    let Some((i, threshold)) = default else {
        policy.set(
            "retry_budget",
            "\"none\"",
            Origin::Default("Envoy default: no retry_budget"),
        );
        inv.unread(
            reader.at(cluster, path),
            "circuit_breakers.max_retries",
            format!(
                "at most {DEFAULT_MAX_RETRIES} retries in flight at once (Envoy's default \
                 max_retries): a concurrency cap stormguard does not model"
            ),
        );
        return Ok(());
    };
    let path = format!("{thresholds_path}[{i}]");
    for key in [
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_connection_pools",
    ] {
        if let Some(node) = threshold.get(key) {
            inv.unread(
                reader.at(node, &format!("{path}.{key}")),
                format!("circuit_breakers.{key}"),
                "a concurrency cap on the cluster: sheds load, not modelled as a policy of a call",
            );
        }
    }
    let max_retries = threshold.get("max_retries");
    match threshold.get("retry_budget") {
        Some(budget) => {
            let budget_path = format!("{path}.retry_budget");
            let percent = match budget.get("budget_percent") {
                Some(node) => node
                    .as_f64()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        reader.doc.error(
                            node,
                            &format!("{budget_path}.budget_percent"),
                            "not a percentage from 0 to 100: write e.g. {value: 20}",
                        )
                    })?,
                None => DEFAULT_BUDGET_PERCENT,
            };
            let min = match budget.get("min_retry_concurrency") {
                Some(node) => node.as_u64().ok_or_else(|| {
                    reader.doc.error(
                        node,
                        &format!("{budget_path}.min_retry_concurrency"),
                        "not a whole number: write e.g. 3",
                    )
                })?,
                None => DEFAULT_MIN_RETRY_CONCURRENCY,
            };
            let origin = reader.at(budget, &budget_path);
            policy.set(
                "retry_budget",
                format!(
                    "{{ ratio = {}, min_per_sec = {} }}",
                    number(percent / 100.0),
                    min.min(MAX_MIN_PER_SEC)
                ),
                origin.clone(),
            );
            inv.unread(
                origin,
                "retry_budget",
                format!(
                    "approximate: Envoy caps concurrent retries ({percent}% of active requests, \
                     at least {min} at once), stormguard caps retries per 10 s (ratio of \
                     requests, min_per_sec a second)"
                ),
            );
            if let Some(node) = max_retries {
                inv.unread(
                    reader.at(node, &format!("{path}.max_retries")),
                    "circuit_breakers.max_retries",
                    "ignored by Envoy: retry_budget is set and overrides it",
                );
            }
        }
        None => {
            let (count, origin) = match max_retries {
                Some(node) => {
                    let field = format!("{path}.max_retries");
                    let count = node.as_u64().ok_or_else(|| {
                        reader
                            .doc
                            .error(node, &field, "not a whole number: write e.g. 3")
                    })?;
                    (count, reader.at(node, &field))
                }
                None => (DEFAULT_MAX_RETRIES, reader.at(threshold, &path)),
            };
            policy.set(
                "retry_budget",
                "\"none\"",
                Origin::Default("Envoy default: no retry_budget"),
            );
            let how_many = if count >= u64::from(u32::MAX) {
                "no limit on retries in flight (max_retries 4294967295, Istio's default)"
                    .to_string()
            } else {
                format!("at most {count} retries in flight at once (max_retries)")
            };
            inv.unread(
                origin,
                "circuit_breakers.max_retries",
                format!("{how_many}: a concurrency cap stormguard does not model"),
            );
        }
    }
    Ok(())
}
