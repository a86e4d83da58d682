//! Envoy: a bootstrap per caller (an Envoy is one sidecar's), its routes (`timeout`,
//! `retry_policy`, `hedge_policy`) in a virtual host per destination and its clusters
//! (`connect_timeout`, the `retry_budget` circuit breaker). Durations in proto3's JSON form
//! (`0.25s`), as Envoy reads them.

use stormguard::backoff::Backoff;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::{Call, LimiterSpec};

use super::edit::{parse_path, Seg};
use super::val::{float_text, proto_duration, Val};
use super::{
    envoy_growth_note, envoy_safe, proxy_notes, retry_names, Assign, DestinationPlan, Fields,
    NewFile, Path, PerCaller, Writer,
};
use crate::inventory::Resource;

/// The Envoy writer.
pub(super) struct Envoy;

fn at(path: &str, value: Val) -> Assign {
    Assign {
        path: parse_path(path),
        value,
        from_root: false,
        only_to_replace: false,
        only_on: None,
        keep_at_least: None,
    }
}

/// Removes `path` where the user's file has it.
fn remove(path: &str) -> Assign {
    Assign {
        only_to_replace: true,
        ..at(path, Val::Remove)
    }
}

impl Writer for Envoy {
    /// A bootstrap's virtual host and cluster are what route to a destination at all: one
    /// written with Envoy's defaults only is still written.
    fn omits_what_says_only_defaults(&self) -> bool {
        false
    }

    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        let safe = envoy_safe(call, "Envoy", &mut f);
        let call = &*safe;
        // Envoy's default route timeout is 15 s: "none" is written as 0s, and 15 s only over
        // a timeout the file sets (a route without one already says it).
        f.route.push(Assign {
            only_to_replace: call.request_timeout == Some(crate::envoy::DEFAULT_ROUTE_TIMEOUT),
            ..at(
                "route.timeout",
                Val::str(call.request_timeout.map_or("0s".into(), proto_duration)),
            )
        });
        if call.max_attempts > 1 {
            let names = retry_names::envoy(&call.retry_on, call.timeout.is_some());
            for why in names.unexpressed {
                f.cannot("retry_on", why);
            }
            let mut words = names.names;
            if !names.statuses.is_empty() {
                words.push("retriable-status-codes".into());
            }
            if words.is_empty() {
                f.cannot(
                    "retry_on",
                    "empty: Envoy retries nothing with an empty retry_on",
                );
            }
            f.route
                .push(at("route.retry_policy.retry_on", Val::str(words.join(","))));
            f.route.push(at(
                "route.retry_policy.num_retries",
                Val::Int(i64::from(call.max_attempts - 1)),
            ));
            match call.timeout {
                // A per-try timeout of the route's whole timeout is what Envoy does without
                // one (each attempt may use what is left of the route's): written only over a
                // value the file has, so that a graph read from a route without one and sent
                // back unchanged adds nothing.
                Some(t) if call.request_timeout == Some(t) => f.route.push(Assign {
                    only_to_replace: true,
                    ..at(
                        "route.retry_policy.per_try_timeout",
                        Val::str(proto_duration(t)),
                    )
                }),
                Some(t) => f.route.push(at(
                    "route.retry_policy.per_try_timeout",
                    Val::str(proto_duration(t)),
                )),
                None => f.route.push(remove("route.retry_policy.per_try_timeout")),
            }
            let backoff = match call.backoff {
                Backoff::None => {
                    f.cannot(
                        "backoff",
                        "Envoy always waits between retries: its default 25ms base applies",
                    );
                    None
                }
                Backoff::FullJitter { base, cap } => Some((base, cap)),
                Backoff::Constant(d) => {
                    f.cannot(
                        "backoff",
                        format!("Envoy has no choice of jitter: full jitter up to {} instead of constant", proto_duration(d)),
                    );
                    Some((d, d))
                }
                other @ (Backoff::Exponential { base, cap }
                | Backoff::EqualJitter { base, cap }
                | Backoff::DecorrelatedJitter { base, cap }) => {
                    f.cannot(
                        "backoff",
                        format!("Envoy has no choice of jitter: full jitter with the same base and cap instead of {other}"),
                    );
                    Some((base, cap))
                }
            };
            if let Some((base, cap)) = backoff {
                // Envoy's defaults (25 ms, 10 × base) only over a backoff the file sets.
                let default = base == crate::envoy::DEFAULT_BASE_INTERVAL && cap == base * 10;
                f.route.push(Assign {
                    only_to_replace: default,
                    ..at(
                        "route.retry_policy.retry_back_off.base_interval",
                        Val::str(proto_duration(base)),
                    )
                });
                f.route.push(Assign {
                    only_to_replace: default,
                    ..at(
                        "route.retry_policy.retry_back_off.max_interval",
                        Val::str(proto_duration(cap)),
                    )
                });
            }
            envoy_growth_note(call, "Envoy", &mut f);
            if names.statuses.is_empty() {
                f.route
                    .push(remove("route.retry_policy.retriable_status_codes"));
            } else {
                f.route.push(at(
                    "route.retry_policy.retriable_status_codes",
                    Val::List(
                        names
                            .statuses
                            .iter()
                            .map(|s| Val::Int(i64::from(*s)))
                            .collect(),
                    ),
                ));
            }
        } else {
            match call.timeout {
                // One attempt with a timeout of its own: a retry policy of no retries holds it.
                Some(t) if call.request_timeout != Some(t) => {
                    f.route
                        .push(at("route.retry_policy.num_retries", Val::Int(0)));
                    f.route.push(at(
                        "route.retry_policy.per_try_timeout",
                        Val::str(proto_duration(t)),
                    ));
                }
                _ => f.route.push(Assign {
                    only_to_replace: true,
                    ..at("route.retry_policy.num_retries", Val::Int(0))
                }),
            }
        }
        if call.hedge.is_none() {
            f.route.push(remove("route.hedge_policy"));
        }
        if let Some(hedge) = call.hedge {
            match (hedge.delay, call.timeout) {
                (HedgeDelay::Fixed(d), Some(t)) if d == t && call.max_attempts > 1 => {
                    f.route.push(at(
                        "route.hedge_policy.hedge_on_per_try_timeout",
                        Val::Bool(true),
                    ));
                    f.cannot(
                        "hedge",
                        format!(
                            "approximate: Envoy bounds hedges by num_retries, not by a share \
                             (max_extra = {})",
                            float_text(hedge.max_extra)
                        ),
                    );
                }
                _ => f.cannot(
                    "hedge",
                    format!(
                        "Envoy hedges only on the per-try timeout, with retries: a hedge after \
                         {} is not written",
                        hedge.delay
                    ),
                ),
            }
        }
        proxy_notes(call, "Envoy", true, &mut f);
        match call.connect_timeout {
            // Envoy's default 5 s, or it as the import clamps it to the attempt's timeout:
            // only over a connect timeout the file sets.
            Some(d)
                if d == crate::envoy::DEFAULT_CONNECT_TIMEOUT
                    || Some(d)
                        == call
                            .timeout
                            .map(|t| t.min(crate::envoy::DEFAULT_CONNECT_TIMEOUT)) =>
            {
                f.destination.push(Assign {
                    only_to_replace: true,
                    ..at("connect_timeout", Val::str(proto_duration(d)))
                })
            }
            Some(d) => f
                .destination
                .push(at("connect_timeout", Val::str(proto_duration(d)))),
            None => f.cannot(
                "connect_timeout",
                "none in the graph: Envoy's default 5s applies",
            ),
        }
        match call.limiter {
            Some(LimiterSpec::Budget { ratio, min_per_sec }) => {
                f.destination.push(at(
                    "circuit_breakers.thresholds[0].retry_budget.budget_percent.value",
                    Val::Float(ratio * 100.0),
                ));
                f.destination.push(at(
                    "circuit_breakers.thresholds[0].retry_budget.min_retry_concurrency",
                    Val::Int(i64::from(min_per_sec)),
                ));
                f.cannot(
                    "retry_budget",
                    "approximate: Envoy's retry_budget caps concurrent retries (a share of \
                     active requests), stormguard's caps retries per 10 s",
                );
            }
            Some(LimiterSpec::TokenBucket { .. }) => {
                f.cannot("token_bucket", "Envoy has no token bucket: not written")
            }
            None if call.max_attempts > 1 => {
                f.destination
                    .push(remove("circuit_breakers.thresholds[0].retry_budget"));
                f.cannot(
                    "retry_budget",
                    "none: Envoy's max_retries circuit breaker (3 concurrent retries by default) \
                 still applies",
                )
            }
            None => f
                .destination
                .push(remove("circuit_breakers.thresholds[0].retry_budget")),
        }
        f
    }

    fn per_caller(&self) -> PerCaller {
        PerCaller::Everything
    }

    fn writes_limiter(&self, limiter: &LimiterSpec) -> bool {
        matches!(limiter, LimiterSpec::Budget { .. })
    }

    fn route_kinds(&self) -> &'static [&'static str] {
        &["bootstrap", "config_dump"]
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &["bootstrap", "config_dump"]
    }

    fn names_port(&self, plan: &DestinationPlan) -> Option<&'static str> {
        plan.instances
            .is_empty()
            .then_some("Envoy cluster endpoint")
    }

    /// The route entry (`...routes[2]`), also when the reader pointed at its action.
    fn route_prefix(&self, resource: &Resource) -> Path {
        let mut path = parse_path(&resource.path);
        if matches!(path.last(), Some(Seg::Key(k)) if k == "route") {
            path.pop();
        }
        path
    }

    /// A `retry_on` that reads as the same conditions keeps the file's spelling.
    fn keeps(&self, path: &[Seg], value: &Val, existing: &crate::doc::Node) -> bool {
        let retry_on = matches!(path.last(), Some(Seg::Key(k)) if k == "retry_on");
        match (retry_on, value, existing.as_str()) {
            (true, Val::Str(written), Some(file)) => retry_names::same_retry_on(file, written),
            _ => false,
        }
    }

    fn destination_prefix(&self, resource: &Resource) -> Path {
        parse_path(&resource.path)
    }

    fn overridden(&self, route: &crate::doc::Node) -> Vec<String> {
        route
            .get("request_headers_to_add")
            .map(crate::doc::Node::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|h| h.get("header").and_then(|h| h.get("key")).and_then(crate::doc::Node::as_str))
            .filter(|key| key.starts_with("x-envoy-retr") || key.starts_with("x-envoy-upstream-rq") || *key == "x-envoy-max-retries" || *key == "x-envoy-hedge-on-per-try-timeout")
            .map(|key| format!("its request header {key} overrides the route's policy for every request: remove it for the written values to apply"))
            .collect()
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let callers: std::collections::BTreeSet<&str> =
            plans.iter().filter_map(|p| p.caller.as_deref()).collect();
        callers
            .into_iter()
            .map(|caller| {
                let mine: Vec<&DestinationPlan> = plans
                    .iter()
                    .filter(|p| p.caller.as_deref() == Some(caller))
                    .collect();
                bootstrap(caller, &mine)
            })
            .collect()
    }
}

/// `host:port` (`[v6]:port` for an IPv6 address) as Envoy's socket address takes it: the host
/// without brackets, and the port.
fn host_port(instance: &str) -> Option<(String, i64)> {
    let (host, port) = instance.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.to_string(), i64::from(port.parse::<u16>().ok()?)))
}

fn socket(address: &str, port: i64) -> Val {
    Val::Map(vec![(
        "socket_address".into(),
        Val::Map(vec![
            ("address".into(), Val::str(address)),
            ("port_value".into(), Val::Int(port)),
        ]),
    )])
}

/// One caller's bootstrap: an outbound listener whose route configuration has a virtual host
/// per destination, and a cluster per destination.
fn bootstrap(caller: &str, plans: &[&DestinationPlan]) -> NewFile {
    let mut resources = Vec::new();
    let mut virtual_hosts = Vec::new();
    let mut clusters = Vec::new();
    for plan in plans {
        let mut routes = Vec::new();
        for route in &plan.routes {
            let mut entry = Val::map();
            if let Some(ep) = &route.endpoint {
                entry.set(&["name"], Val::str(ep));
            }
            entry.set(&["match"], Val::Map(vec![("prefix".into(), Val::str("/"))]));
            entry.set(&["route", "cluster"], Val::str(&plan.to));
            for assign in &route.fields {
                entry.put(&assign.path, assign.value.clone());
            }
            routes.push(entry);
        }
        if !routes.is_empty() {
            virtual_hosts.push(Val::Map(vec![
                ("name".into(), Val::str(&plan.to)),
                ("domains".into(), Val::List(vec![Val::str(&plan.to)])),
                ("routes".into(), Val::List(routes)),
            ]));
            resources.push(format!("route {caller} -> {}", plan.to));
        }
        let endpoints: Vec<(String, i64)> = if plan.instances.is_empty() {
            vec![(plan.to.clone(), plan.port_or_default())]
        } else {
            plan.instances.iter().filter_map(|i| host_port(i)).collect()
        };
        // Addresses alone need no resolving: a STATIC cluster (Envoy refuses a host name in
        // one); any name makes it STRICT_DNS, which resolves each.
        let static_only = endpoints
            .iter()
            .all(|(host, _)| host.parse::<std::net::IpAddr>().is_ok());
        let mut cluster = Val::Map(vec![
            ("name".into(), Val::str(&plan.to)),
            (
                "type".into(),
                Val::str(if static_only { "STATIC" } else { "STRICT_DNS" }),
            ),
        ]);
        for assign in &plan.destination {
            cluster.put(&assign.path, assign.value.clone());
        }
        cluster.set(
            &["load_assignment"],
            Val::Map(vec![
                ("cluster_name".into(), Val::str(&plan.to)),
                (
                    "endpoints".into(),
                    Val::List(vec![Val::Map(vec![(
                        "lb_endpoints".into(),
                        Val::List(
                            endpoints
                                .iter()
                                .map(|(host, port)| {
                                    Val::Map(vec![(
                                        "endpoint".into(),
                                        Val::Map(vec![("address".into(), socket(host, *port))]),
                                    )])
                                })
                                .collect(),
                        ),
                    )])]),
                ),
            ]),
        );
        clusters.push(cluster);
        resources.push(format!("cluster {caller} -> {}", plan.to));
    }
    let hcm = Val::Map(vec![
        (
            "@type".into(),
            Val::str("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
        ),
        ("stat_prefix".into(), Val::str("outbound")),
        (
            "route_config".into(),
            Val::Map(vec![
                ("name".into(), Val::str("outbound")),
                ("virtual_hosts".into(), Val::List(virtual_hosts)),
            ]),
        ),
        (
            "http_filters".into(),
            Val::List(vec![Val::Map(vec![
                ("name".into(), Val::str("envoy.filters.http.router")),
                (
                    "typed_config".into(),
                    Val::Map(vec![(
                        "@type".into(),
                        Val::str("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
                    )]),
                ),
            ])]),
        ),
    ]);
    let listener = Val::Map(vec![
        ("name".into(), Val::str("outbound")),
        ("address".into(), socket("127.0.0.1", 15001)),
        (
            "filter_chains".into(),
            Val::List(vec![Val::Map(vec![(
                "filters".into(),
                Val::List(vec![Val::Map(vec![
                    (
                        "name".into(),
                        Val::str("envoy.filters.network.http_connection_manager"),
                    ),
                    ("typed_config".into(), hcm),
                ])]),
            )])]),
        ),
    ]);
    let doc = Val::Map(vec![
        (
            "node".into(),
            Val::Map(vec![
                ("id".into(), Val::str(caller)),
                ("cluster".into(), Val::str(caller)),
            ]),
        ),
        (
            "static_resources".into(),
            Val::Map(vec![
                ("listeners".into(), Val::List(vec![listener])),
                ("clusters".into(), Val::List(clusters)),
            ]),
        ),
    ]);
    NewFile {
        name: format!("stormguard-envoy-{caller}.yaml"),
        text: doc.to_yaml(0),
        resources,
    }
}
