//! An Envoy route's timeout, retry policy and hedge policy in the graph's keys.
//!
//! Envoy's meaning, field by field (route_components.proto, router_filter.rst):
//! - `RouteAction.timeout` bounds the whole call, retries included: `request_timeout`; unset is
//!   Envoy's 15 s, `0s` disables it;
//! - the route's `retry_policy` replaces its virtual host's whole (no merge); none means no
//!   retry; `num_retries` counts retries (default 1), so `max_attempts = num_retries + 1`;
//! - `per_try_timeout` bounds each attempt: `timeout`; unset, each attempt may use the route
//!   timeout, so `timeout = request_timeout`;
//! - backoff is fully jittered from `base_interval` (25 ms) to `max_interval` (10 × base);
//! - `request_headers_to_add` of `x-envoy-max-retries`, `x-envoy-upstream-rq-timeout-ms` and
//!   `x-envoy-upstream-rq-per-try-timeout-ms` change the values as the router reads them; the
//!   other `x-envoy-*` retry headers are listed as unread.

use std::time::Duration;

use super::hedge::hedge;
use super::retry::retries;
use super::{items, not_a_service, Reader};
use crate::doc::Node;
use crate::error::ImportError;
use crate::inventory::{Backend, Host, Inventory, Policy, Route, System};
use crate::source::Origin;
use crate::toml_text::{bare_duration, duration, duration_in_range, string_list};

/// Envoy's route timeout when `timeout` is unset.
pub(crate) const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's backoff base when `retry_back_off` is unset (runtime `upstream.base_retry_backoff_ms`).
pub(crate) const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

/// Reads every route of a `RouteConfiguration` at `path`.
pub(super) fn read_route_config(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    rc: &Node,
    path: &str,
) -> Result<(), ImportError> {
    let name = rc
        .get("name")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    for (v, vhost) in items(rc, "virtual_hosts") {
        let vhost_path = format!("{path}.virtual_hosts[{v}]");
        let routes = vhost.get("routes").map(Node::items).unwrap_or_default();
        for (r, route) in routes.iter().enumerate() {
            let scope = Scope {
                rc,
                vhost,
                route,
                rc_name: &name,
                vhost_path: &vhost_path,
                path: format!("{vhost_path}.routes[{r}]"),
                only_route: routes.len() == 1,
            };
            read_route(reader, inv, &scope)?;
        }
    }
    Ok(())
}

/// One route and what encloses it.
pub(super) struct Scope<'a> {
    pub(super) rc: &'a Node,
    pub(super) vhost: &'a Node,
    pub(super) route: &'a Node,
    pub(super) rc_name: &'a str,
    pub(super) vhost_path: &'a str,
    pub(super) path: String,
    /// Whether it is its virtual host's only route.
    pub(super) only_route: bool,
}

fn read_route(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    scope: &Scope<'_>,
) -> Result<(), ImportError> {
    let route = scope.route;
    let Some(action) = route.get("route") else {
        let what = ["redirect", "direct_response"]
            .into_iter()
            .find(|k| route.get(k).is_some())
            .unwrap_or("route without an upstream");
        inv.unread(
            reader.at(route, &scope.path),
            what,
            "Envoy answers it itself: no upstream call to time out or retry",
        );
        return Ok(());
    };
    let action_path = format!("{}.route", scope.path);
    let Some(backends) = backends(reader, inv, action, &action_path)? else {
        return Ok(());
    };
    let host = backends[0].host.clone();
    if let Some(why) = not_a_service(&host.name) {
        inv.unread(reader.at(action, &action_path), host.name.clone(), why);
        return Ok(());
    }
    let backends = if backends.len() == 1 {
        Vec::new()
    } else {
        backends
    };
    let (name, method) = name_and_method(scope);
    let policy = policy(reader, inv, scope, action, &action_path)?;
    inv.routes.push(Route {
        system: System::Envoy,
        host,
        name,
        caller: reader.caller.clone(),
        method,
        backends,
        policy,
        origin: reader.at(route, &scope.path),
        resource: reader.resource(scope.rc_name, &scope.path),
    });
    Ok(())
}

/// The clusters a `RouteAction` sends to, first the one the route is for; `None` (and a note)
/// when the cluster is chosen per request.
fn backends(
    reader: &Reader<'_>,
    inv: &mut Inventory,
    action: &Node,
    path: &str,
) -> Result<Option<Vec<Backend>>, ImportError> {
    if let Some(cluster) = action.get("cluster") {
        let name = cluster.as_str().unwrap_or_default();
        return Ok(Some(vec![Backend {
            host: Host::new(name, None),
            weight: 1.0,
            origin: reader.at(cluster, &format!("{path}.cluster")),
        }]));
    }
    if let Some(weighted) = action.get("weighted_clusters") {
        let mut backends = Vec::new();
        for (i, cluster) in items(weighted, "clusters") {
            let cluster_path = format!("{path}.weighted_clusters.clusters[{i}]");
            let name = cluster
                .get("name")
                .and_then(Node::as_str)
                .unwrap_or_default();
            let weight = match cluster.get("weight") {
                None => 0.0,
                Some(w) => w.as_f64().filter(|w| *w >= 0.0).ok_or_else(|| {
                    reader.doc.error(
                        w,
                        &format!("{cluster_path}.weight"),
                        "not a weight: write a whole number such as 50",
                    )
                })?,
            };
            backends.push(Backend {
                host: Host::new(name, None),
                weight,
                origin: reader.at(cluster, &cluster_path),
            });
        }
        if !backends.is_empty() {
            return Ok(Some(backends));
        }
    }
    let what = [
        "cluster_header",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ]
    .into_iter()
    .find(|k| action.get(k).is_some())
    .unwrap_or("route without a cluster");
    inv.unread(
        reader.at(action, path),
        what,
        "the cluster is chosen per request: a static reading cannot tell which",
    );
    Ok(None)
}

/// The route's name (its `name`, else its match), `None` for a virtual host's only route when
/// it matches every request; and the one method it matches, if its headers say.
fn name_and_method(scope: &Scope<'_>) -> (Option<String>, Option<String>) {
    let route = scope.route;
    let matcher = route.get("match");
    let method = matcher
        .map(|m| m.get("headers").map(Node::items).unwrap_or_default())
        .unwrap_or_default()
        .iter()
        .find(|h| h.get("name").and_then(Node::as_str) == Some(":method"))
        .and_then(|h| {
            h.get("exact_match")
                .or_else(|| h.get("string_match").and_then(|s| s.get("exact")))
                .and_then(Node::as_str)
                .map(str::to_ascii_uppercase)
        });
    let pattern = matcher.and_then(|m| {
        ["path", "prefix", "path_separated_prefix"]
            .into_iter()
            .find_map(|k| m.get(k).and_then(Node::as_str))
            .or_else(|| {
                m.get("safe_regex")
                    .and_then(|r| r.get("regex"))
                    .and_then(Node::as_str)
            })
    });
    let catch_all = matches!(pattern, None | Some("" | "/"))
        && method.is_none()
        && matcher.is_none_or(|m| m.get("headers").is_none());
    if scope.only_route && catch_all {
        return (None, None);
    }
    let name = route
        .get("name")
        .and_then(Node::as_str)
        .filter(|n| !n.is_empty())
        .or(pattern)
        .map(str::to_string);
    (name, method)
}

/// A duration field that must be one.
pub(super) fn duration_of(
    reader: &Reader<'_>,
    node: &Node,
    field: &str,
) -> Result<Duration, ImportError> {
    reader
        .doc
        .duration(node, field, "\"0.250s\", 250ms or {seconds: 1, nanos: 0}")
}

/// A whole-number field that must be one.
pub(super) fn count_of(reader: &Reader<'_>, node: &Node, field: &str) -> Result<u64, ImportError> {
    node.as_u64().ok_or_else(|| {
        reader
            .doc
            .error(node, field, "not a whole number: write e.g. 2 (or \"2\")")
    })
}

/// A header that the route adds to every request it forwards.
pub(super) struct AddedHeader<'a> {
    pub(super) name: String,
    pub(super) value: &'a Node,
    pub(super) path: String,
}

/// `request_headers_to_add` of the route, its virtual host and its route configuration, the
/// route's first (the router sees the route's value when several levels set one).
fn added_headers<'a>(scope: &'a Scope<'a>) -> Vec<AddedHeader<'a>> {
    let levels = [
        (scope.route, scope.path.clone()),
        (scope.vhost, scope.vhost_path.to_string()),
        (scope.rc, String::from("route_config")),
    ];
    let mut headers: Vec<AddedHeader<'a>> = Vec::new();
    for (node, path) in levels {
        for (i, option) in items(node, "request_headers_to_add") {
            let Some(header) = option.get("header") else {
                continue;
            };
            let (Some(key), Some(value)) = (
                header.get("key").and_then(Node::as_str),
                header.get("value"),
            ) else {
                continue;
            };
            let name = key.to_ascii_lowercase();
            if headers.iter().any(|h| h.name == name) {
                continue;
            }
            headers.push(AddedHeader {
                name,
                value,
                path: format!("{path}.request_headers_to_add[{i}].header.value"),
            });
        }
    }
    headers
}

/// The per-try timeout in effect and where it comes from.
pub(super) struct PerTry {
    pub(super) value: Duration,
    pub(super) origin: Origin,
}

fn policy(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    scope: &Scope<'_>,
    action: &Node,
    action_path: &str,
) -> Result<Policy, ImportError> {
    let mut policy = Policy::default();
    let headers = added_headers(scope);
    let header = |name: &str| headers.iter().find(|h| h.name == name);

    // The whole call.
    let mut request_timeout = match action.get("timeout") {
        Some(node) => {
            let field = format!("{action_path}.timeout");
            let value = duration_of(reader, node, &field)?;
            (!value.is_zero()).then(|| (value, reader.at(node, &field)))
        }
        None => Some((
            DEFAULT_ROUTE_TIMEOUT,
            Origin::Default("Envoy default: route timeout 15s, retries included"),
        )),
    };
    if let Some(h) = header("x-envoy-upstream-rq-timeout-ms") {
        let ms = count_of(reader, h.value, &h.path)?;
        let origin = reader.at(h.value, &h.path);
        request_timeout = (ms > 0).then(|| (Duration::from_millis(ms), origin));
    }

    // The retry policy: the route's replaces its virtual host's whole.
    let (retry_policy, rp_path) = match action.get("retry_policy") {
        Some(rp) => (Some(rp), format!("{action_path}.retry_policy")),
        None => (
            scope.vhost.get("retry_policy"),
            format!("{}.retry_policy", scope.vhost_path),
        ),
    };
    for (key, why) in [
        (
            "idle_timeout",
            "a route idle timer (no bytes for that long): stormguard has no idle timeout",
        ),
        (
            "max_stream_duration",
            "caps the stream, or takes the caller's grpc-timeout header as the route timeout \
             (grpc_timeout_header_max): a per-request deadline a static reading cannot see",
        ),
        (
            "max_grpc_timeout",
            "takes the caller's grpc-timeout header (capped by this value, 0s = no cap) as the \
             route timeout: a per-request deadline a static reading cannot see",
        ),
        (
            "grpc_timeout_offset",
            "shortens the caller's grpc-timeout: not read",
        ),
    ] {
        if let Some(node) = action.get(key) {
            inv.unread(reader.at(node, &format!("{action_path}.{key}")), key, why);
        }
    }
    for key in ["retry_policy_typed_config"] {
        if let Some(node) = action.get(key).or_else(|| scope.vhost.get(key)) {
            inv.unread(
                reader.at(node, key),
                key,
                "a retry policy extension: not read",
            );
        }
    }

    // Each attempt.
    let mut per_try = None;
    if let Some(node) = retry_policy.and_then(|rp| rp.get("per_try_timeout")) {
        let field = format!("{rp_path}.per_try_timeout");
        let value = duration_of(reader, node, &field)?;
        if !value.is_zero() {
            per_try = Some(PerTry {
                value,
                origin: reader.at(node, &field),
            });
        }
    }
    if let Some(h) = header("x-envoy-upstream-rq-per-try-timeout-ms") {
        let ms = count_of(reader, h.value, &h.path)?;
        let value = Duration::from_millis(ms);
        let origin = reader.at(h.value, &h.path);
        if ms > 0 && request_timeout.as_ref().is_none_or(|(rt, _)| value < *rt) {
            per_try = Some(PerTry { value, origin });
        } else {
            inv.unread(
                origin,
                "x-envoy-upstream-rq-per-try-timeout-ms",
                "Envoy ignores a per-try timeout header that is not below the route timeout",
            );
        }
    }

    let retries = retries(
        reader,
        inv,
        retry_policy,
        &rp_path,
        per_try.as_ref(),
        &headers,
    )?;

    // Hedging turns the per-try timeout into the hedge's delay: the first attempt keeps running.
    let hedge = hedge(
        reader,
        inv,
        scope,
        action,
        action_path,
        per_try.as_ref(),
        &retries,
    )?;

    if let Some((value, origin)) = &request_timeout {
        let value = duration_in_range(*value, inv, origin, "timeout");
        policy.set("request_timeout", duration(value), origin.clone());
    }
    let attempt_timeout = match (&per_try, &hedge) {
        (Some(per_try), None) => Some((per_try.value, per_try.origin.clone())),
        _ => request_timeout.as_ref().map(|(value, _)| {
            (
                *value,
                Origin::Default(if hedge.is_some() {
                    "Envoy default: a hedged attempt is not cut at per_try_timeout, only by the route timeout"
                } else {
                    "Envoy default: per_try_timeout unset, each attempt may use the route timeout"
                }),
            )
        }),
    };
    if let Some((mut value, origin)) = attempt_timeout {
        if let Some((rt, _)) = &request_timeout {
            if value > *rt {
                inv.unread(
                    origin.clone(),
                    "per_try_timeout",
                    format!(
                        "{} is above the route timeout {}: the route timeout ends every \
                         attempt first, so timeout is written as {}",
                        bare_duration(value),
                        bare_duration(*rt),
                        bare_duration(*rt)
                    ),
                );
                value = *rt;
            }
        }
        let value = duration_in_range(value, inv, &origin, "per_try_timeout");
        policy.set("timeout", duration(value), origin);
    }

    policy.set(
        "max_attempts",
        retries.max_attempts.0.to_string(),
        retries.max_attempts.1.clone(),
    );
    if retries.max_attempts.0 > 1 || hedge.is_some() {
        if let Some((conditions, origin)) = &retries.retry_on {
            policy.set("retry_on", string_list(conditions), origin.clone());
        }
        if let Some((text, origin)) = &retries.backoff {
            policy.set("backoff", text.clone(), origin.clone());
        }
        policy.set(
            "idempotent",
            "true",
            Origin::Default("Envoy default: retries any method"),
        );
    }
    if let Some((text, origin)) = hedge {
        policy.set("hedge", text, origin);
    }
    Ok(policy)
}
