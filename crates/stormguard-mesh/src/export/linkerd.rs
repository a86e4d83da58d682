//! Linkerd: an `HTTPRoute` per destination (attached to its Service), whose
//! `retry.linkerd.io/*` and `timeout.linkerd.io/*` annotations carry the policy. Annotations
//! are per route resource, so a destination's endpoints share one policy. A destination whose
//! policy the files give as its Service's annotations, with no route of its own, is written in
//! those annotations; a route that inherits a family of them unchanged is given none of it
//! ([`inherited`]).
//!
//! No `ServiceProfile` is written, although it is where Linkerd keeps a retry budget: Linkerd
//! turns a Service's annotation retries and timeouts off once a profile exists for it, so a
//! profile written for the budget would silently drop the counts and timeouts. The budget is
//! listed as not expressible instead.

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard::classify::Condition;
use stormguard_graph::model::{Call, LimiterSpec};

use super::gateway::{backend_ref, http_route};
use super::key_of;
use super::val::{go_duration, Val};
use super::{proxy_notes, Assign, DestinationPlan, Fields, NewFile, Path, Writer};
use crate::inventory::Resource;

/// The gRPC statuses Linkerd retries by `retry.linkerd.io/grpc` (its policy controller refuses
/// any other), as the import names them.
const LINKERD_GRPC: [&str; 5] = [
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// What an export says of a call's gRPC retry conditions until a `GRPCRoute` among the files
/// takes them (`retry.linkerd.io/grpc`, an [`Assign::only_on`]): the export takes the saying
/// back for a destination whose route is one.
pub(super) const GRPC_ONLY_ON_ROUTE: &str = "written only into a GRPCRoute the files have \
     (Linkerd reads retry.linkerd.io/grpc there alone, and the graph does not say the call is \
     gRPC)";

/// The backoff Linkerd's proxy applies to annotation retries (25 ms doubling, jittered, at
/// most 250 ms), as the import reads it.
const LINKERD_BACKOFF: &str = "equal-jitter(base=50ms, cap=250ms)";

/// Routes of `dest` made to send once (their retry annotations removed, see
/// [`Linkerd::fields`]) while its Service, among the files read, sets retries by annotation:
/// such a route would take the Service's retries, since Linkerd's policy controller reads a
/// route with no retry annotation as having none of its own (and `retry.linkerd.io/limit: "0"`
/// as no limit given). The closest it reads is `limit: "1"` with no conditions: no status and
/// no timeout is retried, only a request refused before it was sent (a refused stream, no
/// endpoint ready), at most once. Written so, and said in `notes`.
///
/// Why: the import reads such a route as the Service's retries, `check --fix` cuts it to one
/// attempt, and an export that only removed the route's annotations left the retries in force.
pub(super) fn under_service_retries(
    dest: &mut DestinationPlan,
    existing: &super::Existing,
    route_name: &str,
    notes: &mut Vec<String>,
) {
    // As Linkerd decides it (a limit above 0, a timeout or conditions), read as the import
    // reads it; what the reading lists is the import's to say, not the export's.
    let service_retries = super::core_services(existing, &dest.to).any(|doc| {
        let mut scratch = crate::inventory::Inventory::default();
        crate::linkerd::annotations::read(doc, &doc.root, "Service", &dest.to, &mut scratch)
            .is_ok_and(|a| a.retry_for(false).is_some() || a.retry_for(true).is_some())
    });
    if !service_retries {
        return;
    }
    let limit = ["metadata", "annotations", "retry.linkerd.io/limit"];
    let limit_path = super::edit::keys(&limit);
    let mut changed = false;
    for route in &mut dest.routes {
        for assign in &mut route.fields {
            if assign.path == limit_path && assign.value == Val::Remove {
                *assign = annotation("retry.linkerd.io/limit", "1".to_string());
                changed = true;
            }
        }
    }
    if changed {
        notes.push(format!(
            "{route_name}: one attempt, under the retry annotations of Service {0}, is written as \
             retry.linkerd.io/limit \"1\" with no conditions (Linkerd reads a route without \
             retry annotations as taking the Service's, and limit \"0\" as none given): no \
             status or timeout is retried, only a request refused before it was sent, once; \
             for one attempt exactly, take the retry annotations off the Service (and put them \
             on the routes that should retry)",
            existing.service_label(&dest.to)
        ));
    }
}

/// The annotations of the resource `root`, as (key, value) pairs.
fn annotations(root: &crate::doc::Node) -> Vec<(String, String)> {
    root.get("metadata")
        .and_then(|m| m.get("annotations"))
        .map(|a| {
            a.entries()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The annotations of `route`'s Service, graph service `to`: of its name, in the namespace its
/// parentRef names (a route in `front` may attach to a Service in `other`), else the route's.
fn service_annotations(
    existing: &super::Existing,
    to: &str,
    route: &crate::doc::Node,
) -> Vec<(String, String)> {
    let namespace = |root: &crate::doc::Node| {
        root.get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(crate::doc::Node::as_str)
            .unwrap_or("default")
            .to_string()
    };
    let parent = route
        .get("spec")
        .and_then(|s| s.get("parentRefs"))
        .map(crate::doc::Node::items)
        .unwrap_or_default()
        .iter()
        .find_map(|r| r.get("namespace").and_then(crate::doc::Node::as_str))
        .map_or_else(|| namespace(route), str::to_string);
    super::core_services(existing, to)
        .find(|doc| namespace(&doc.root) == parent)
        .map(|doc| annotations(&doc.root))
        .unwrap_or_default()
}

/// Each callee endpoint of graph service `to` with the request timeout the graph's calls give
/// it: a `policy.linkerd.io` route's rules, once imported, are its endpoints (`rule-N`, or the
/// rule's name), each with its rule's `timeouts.request`.
fn rule_timeouts(graph: &stormguard_graph::Graph, to: &str) -> BTreeMap<String, Option<Duration>> {
    let mut out = BTreeMap::new();
    for (_, _, _, call) in graph.each_call() {
        if let (true, Some(endpoint)) = (call.to == to, &call.endpoint) {
            out.entry(endpoint.clone()).or_insert(call.request_timeout);
        }
    }
    out
}

/// Whether the graph's calls give each rule of `route` the request timeout it has (a rule's
/// `0s`, as none), by the endpoint the import makes of each rule.
fn rules_as_the_graph_says(
    route: &crate::doc::Node,
    per_rule: &BTreeMap<String, Option<Duration>>,
) -> bool {
    let rules = route
        .get("spec")
        .and_then(|s| s.get("rules"))
        .map(crate::doc::Node::items)
        .unwrap_or_default();
    rules.iter().enumerate().all(|(i, rule)| {
        let name = rule
            .get("name")
            .and_then(crate::doc::Node::as_str)
            .map_or_else(|| format!("rule-{i}"), str::to_string);
        let spec = rule
            .get("timeouts")
            .and_then(|t| t.get("request"))
            .and_then(crate::doc::Node::as_duration)
            .filter(|d| !d.is_zero());
        per_rule.get(&name).is_some_and(|graph| *graph == spec)
    })
}

/// Each rule's `timeouts.request` of `route`, a `policy.linkerd.io` HTTPRoute; `None` for any
/// other kind, whose rules' timeouts Linkerd does not read (a Gateway API HTTPRoute's).
fn spec_requests(route: &crate::doc::Node) -> Option<Vec<Option<String>>> {
    let policy_route = route
        .get("apiVersion")
        .and_then(crate::doc::Node::as_str)
        .is_some_and(|v| v.starts_with("policy.linkerd.io/"))
        && route.get("kind").and_then(crate::doc::Node::as_str) == Some("HTTPRoute");
    if !policy_route {
        return None;
    }
    let rules = route.get("spec").and_then(|s| s.get("rules"));
    Some(
        rules
            .map(|rules| {
                rules
                    .items()
                    .iter()
                    .map(|rule| {
                        rule.get("timeouts")
                            .and_then(|t| t.get("request"))
                            .and_then(crate::doc::Node::as_str)
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// What to say of a `policy.linkerd.io` HTTPRoute whose rules give `timeouts.request` when the
/// graph's request timeout, written as `fields` (`skipped`: those left as the route has them),
/// is not what they say. Linkerd's policy controller takes the route's
/// `timeout.linkerd.io/request` annotation first and a rule's `timeouts.request` only without
/// one (`convert_linkerd_rule` in linkerd2's `policy-controller/k8s/index/src/outbound/index/
/// http.rs`), so the annotation written is what runs; the rules' values, left as they were,
/// would say otherwise to whoever reads the file, and with no annotation they still apply.
pub(super) fn spec_timeout_note(
    existing: &super::Existing,
    to: &str,
    route: &crate::doc::Node,
    fields: &[Assign],
    skipped: &[bool],
    graph: &stormguard_graph::Graph,
) -> Option<String> {
    let requests = spec_requests(route)?;
    let mut spec: Vec<String> = requests.iter().flatten().cloned().collect();
    if spec.is_empty() {
        return None;
    }
    if requests.iter().any(|r| *r != requests[0]) {
        // Rules that differ: their timeouts are not written (see `inherited`); said when the
        // graph's are not theirs, rule by rule (the graph's calls read only here: a route whose
        // rules agree, nearly every one, costs no walk over them).
        let per_rule = rule_timeouts(graph, to);
        return (!rules_as_the_graph_says(route, &per_rule)).then(|| {
            let mut listed = spec.clone();
            listed.dedup();
            let graph: Vec<String> = per_rule
                .iter()
                .map(|(endpoint, d)| {
                    format!("{endpoint} {}", d.map_or("none".to_string(), go_duration))
                })
                .collect();
            format!(
                "its rules give their own timeouts.request ({}), which one \
                 timeout.linkerd.io/request would override for every rule: the graph's \
                 ({}) are not written; set them in the rules",
                listed.join(", "),
                graph.join(", ")
            )
        });
    }
    let key = "timeout.linkerd.io/request";
    let path = super::edit::keys(&["metadata", "annotations", key]);
    let (assign, _) = fields
        .iter()
        .zip(skipped)
        .find(|(a, skipped)| !**skipped && a.path == path)?;
    let own = annotations(route);
    let had = own.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let differ = spec.iter().any(|s| *s != spec[0]);
    spec.dedup();
    let listed = spec.join(", ");
    match &assign.value {
        // As the file has it: nothing is written.
        Val::Str(value) if had == Some(value.as_str()) => None,
        Val::Str(value) if spec.iter().all(|s| s == value) => None,
        Val::Str(value) if differ => Some(format!(
            "{key}: {value} is written, which Linkerd applies to every rule, over their own \
             timeouts.request ({listed}): one value for the route is all the graph gives it"
        )),
        Val::Str(value) => Some(format!(
            "{key}: {value} is written, which Linkerd applies over the rules' timeouts.request \
             ({listed}): change them to {value}, or remove them, so that the file says what runs"
        )),
        Val::Remove => {
            let service = service_annotations(existing, to, route);
            let instead = match service.iter().find(|(k, _)| k == key) {
                Some((_, v)) => format!(
                    "; with them removed, its Service's {key} ({v}) applies: remove that too"
                ),
                None => ": remove them for none".to_string(),
            };
            Some(format!(
                "the graph gives no request timeout, but the rules' timeouts.request \
                 ({listed}) still apply (Linkerd takes them when the route has no {key} \
                 annotation){instead}"
            ))
        }
        _ => None,
    }
}

/// Which of `fields`, for a route the file has (`route`, the route resource's root), the route
/// has already by inheritance: Linkerd gives a route its Service's annotations of a family
/// (`timeout.linkerd.io/*`, or `retry.linkerd.io/*`) when the route sets none of that family.
/// A family the route sets none of, whose every value the graph asks is the Service's (a key
/// removed where the Service has none), is left as it is: written on the route it would say
/// again what the Service says, and would stop following the Service's when that changes. The
/// import reads such a route's values from its Service, so a graph sent back unchanged adds
/// nothing.
pub(super) fn inherited(
    existing: &super::Existing,
    to: &str,
    route: &crate::doc::Node,
    fields: &[Assign],
) -> Vec<bool> {
    let annotation_key = |assign: &Assign| -> Option<String> {
        let path: Vec<&str> = assign.path.iter().filter_map(key_of).collect();
        match path.as_slice() {
            ["metadata", "annotations", key] if assign.path.len() == 3 => Some(key.to_string()),
            _ => None,
        }
    };
    let own = annotations(route);
    let service = service_annotations(existing, to, route);
    // A `policy.linkerd.io` HTTPRoute's own `timeouts` are the route's timeout family, as the
    // import reads them: its Service's timeout annotations do not apply.
    // Only a `policy.linkerd.io` HTTPRoute's `timeouts.request` is read (other kinds' and keys'
    // are not applied); with rules that differ, none is taken as the route's.
    let spec_requests = spec_requests(route).unwrap_or_default();
    let spec_timeouts = spec_requests.iter().any(Option::is_some);
    // What the route's spec says of the timeout family, as annotations would: its request
    // timeout, when every rule gives the same.
    let spec_family: Option<Vec<(String, String)>> =
        match spec_requests.first() {
            Some(Some(first)) if spec_requests.iter().all(|r| r.as_ref() == Some(first)) => Some(
                vec![("timeout.linkerd.io/request".to_string(), first.clone())],
            ),
            _ => None,
        };
    // The other protocol's retry conditions, which Linkerd does not read for this kind of route
    // (`retry.linkerd.io/grpc` on an HTTPRoute, `http` on a GRPCRoute): no part of what it takes.
    let other_protocol = match route.get("kind").and_then(crate::doc::Node::as_str) {
        Some("GRPCRoute") => "retry.linkerd.io/http",
        _ => "retry.linkerd.io/grpc",
    };
    let mut skip = vec![false; fields.len()];
    for family in ["timeout.linkerd.io/", "retry.linkerd.io/"] {
        if own.iter().any(|(k, _)| k.starts_with(family)) {
            continue;
        }
        // A route whose spec sets its timeouts takes none of its Service's: the graph's values
        // are compared with what its spec says (a round trip adds no annotation repeating it).
        let source = if family == "timeout.linkerd.io/" && spec_timeouts {
            match &spec_family {
                Some(spec) => spec,
                None => {
                    // Rules with request timeouts of their own that differ: one annotation would
                    // give every rule one, so the request timeout is not written (the graph's
                    // route has one value for all its rules; `spec_timeout_note` says when the
                    // graph's per-rule values are not the rules'). The family's other keys are
                    // written as the graph says.
                    for (i, a) in fields.iter().enumerate() {
                        if annotation_key(a).as_deref() == Some("timeout.linkerd.io/request") {
                            skip[i] = true;
                        }
                    }
                    continue;
                }
            }
        } else {
            &service
        };
        let members: Vec<(usize, String)> = fields
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, annotation_key(a)?)))
            .filter(|(_, key)| key.starts_with(family))
            .collect();
        let theirs = |key: &str| {
            source
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let same = members
            .iter()
            .filter(|(_, key)| key != other_protocol)
            .all(|(i, key)| match &fields[*i].value {
                Val::Str(value) => theirs(key) == Some(value.as_str()),
                Val::Remove => theirs(key).is_none(),
                _ => false,
            });
        // The family's keys the Service sets that the graph does not write would be
        // inherited too: the graph's values are the Service's only if it writes each of them.
        let covered = source
            .iter()
            .filter(|(k, _)| k.starts_with(family) && k != other_protocol)
            .all(|(k, _)| members.iter().any(|(_, key)| key == k));
        if same && covered {
            for (i, _) in members {
                skip[i] = true;
            }
        }
    }
    skip
}

/// Whether graph destination `to` has a `ServiceProfile` among the files read: Linkerd applies
/// its routes, not route annotations, while it exists.
pub(super) fn profiled(existing: &super::Existing, to: &str) -> bool {
    existing
        .inventory
        .routes
        .iter()
        .any(|r| r.resource.kind == "ServiceProfile" && existing.is_service(&r.host, to))
}

/// The note for a destination whose policy is a `ServiceProfile`'s among the files read, when
/// the graph's policy leaves a new route nothing to write (one attempt and no timeout, say,
/// after `check --fix`): the profile, which export does not write, keeps retrying, and the
/// export said nothing of it. `None` when the destination has no profile, or when a route is
/// written for it (its own note says the profile takes precedence).
///
/// Why a note and not an edit: a profile holds a policy per route (`isRetryable`, `timeout`),
/// and the export plans one per Linkerd destination.
pub(super) fn profile_left_alone(
    existing: &super::Existing,
    plan: &DestinationPlan,
) -> Option<String> {
    let profile =
        existing.inventory.routes.iter().find(|r| {
            r.resource.kind == "ServiceProfile" && existing.is_service(&r.host, &plan.to)
        })?;
    let fields: Vec<&Assign> = plan.routes.iter().flat_map(|r| &r.fields).collect();
    if fields
        .iter()
        .any(|a| !a.only_to_replace && a.only_on.is_none())
    {
        return None;
    }
    let removes = |key: &str| {
        let path = super::edit::keys(&["metadata", "annotations", key]);
        fields
            .iter()
            .any(|a| a.path == path && a.value == Val::Remove)
    };
    let mut set = Vec::new();
    if removes("retry.linkerd.io/limit") {
        set.push("isRetryable: false");
    }
    if removes("timeout.linkerd.io/request") {
        set.push("no timeout");
    }
    if set.is_empty() {
        return None;
    }
    Some(format!(
        "{}: its policy is the ServiceProfile {} in {} (Linkerd applies a profile, not route \
         annotations, while it exists), which export does not write: set {} on its routes \
         there, or delete it, as Linkerd's defaults without it are the graph's policy",
        plan.to,
        profile.resource.name,
        profile.resource.file,
        set.join(" and ")
    ))
}

/// The Linkerd writer.
pub(super) struct Linkerd;

fn annotation(key: &str, value: String) -> Assign {
    Assign::new(&["metadata", "annotations", key], Val::Str(value))
}

impl Writer for Linkerd {
    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        let remove = |key: &str| Assign::remove(&["metadata", "annotations", key]);
        match call.request_timeout {
            Some(d) => f
                .route
                .push(annotation("timeout.linkerd.io/request", go_duration(d))),
            None => f.route.push(remove("timeout.linkerd.io/request")),
        }
        let retries = call.max_attempts > 1;
        // An attempt's timeout is retried under retry.linkerd.io/timeout, and ends the call
        // under timeout.linkerd.io/response.
        if let Some(t) = call.timeout {
            if retries && call.retry_on.timeout() {
                f.route
                    .push(annotation("retry.linkerd.io/timeout", go_duration(t)));
                f.route.push(remove("timeout.linkerd.io/response"));
            } else {
                f.route
                    .push(annotation("timeout.linkerd.io/response", go_duration(t)));
                f.route.push(remove("retry.linkerd.io/timeout"));
            }
        } else {
            f.route.push(remove("timeout.linkerd.io/response"));
            f.route.push(remove("retry.linkerd.io/timeout"));
        }
        if call.timeout.is_none() && retries && call.retry_on.timeout() {
            f.cannot(
                "retry_on",
                "timeout: Linkerd retries an attempt's timeout only with \
                 retry.linkerd.io/timeout, and the graph gives no timeout: not written",
            );
        }
        if !retries {
            for key in ["http", "grpc", "limit", "timeout"] {
                f.route.push(remove(&format!("retry.linkerd.io/{key}")));
            }
        }
        if retries {
            let mut http = Vec::new();
            let mut grpc = Vec::new();
            for c in call.retry_on.conditions() {
                match c {
                    Condition::Status5xx => http.push("5xx".to_string()),
                    Condition::GatewayError => http.push("gateway-error".to_string()),
                    Condition::Status(s) => http.push(s.to_string()),
                    Condition::Timeout | Condition::RefusedStream => {}
                    Condition::Grpc(_) if LINKERD_GRPC.contains(&c.to_string().as_str()) => {
                        grpc.push(c.to_string());
                        // Taken back by the export once a GRPCRoute among the files takes it.
                        f.cannot("retry_on", format!("{c}: {GRPC_ONLY_ON_ROUTE}"));
                    }
                    Condition::Grpc(_) => f.cannot(
                        "retry_on",
                        format!(
                            "{c}: Linkerd retries only cancelled, deadline-exceeded, internal, \
                             resource-exhausted and unavailable: not written"
                        ),
                    ),
                    other => f.cannot(
                        "retry_on",
                        format!(
                            "{other}: Linkerd does not retry connection errors (only refused \
                             streams): not written"
                        ),
                    ),
                }
            }
            if !call.retry_on.refused_stream() {
                f.cannot(
                    "retry_on",
                    "no refused-stream: Linkerd always retries a refused stream",
                );
            }
            if http.is_empty() {
                f.route.push(remove("retry.linkerd.io/http"));
            } else {
                f.route
                    .push(annotation("retry.linkerd.io/http", http.join(",")));
            }
            if grpc.is_empty() {
                f.route.push(remove("retry.linkerd.io/grpc"));
            } else {
                f.route.push(Assign {
                    only_on: Some("GRPCRoute"),
                    ..annotation("retry.linkerd.io/grpc", grpc.join(","))
                });
            }
            f.route.push(annotation(
                "retry.linkerd.io/limit",
                (call.max_attempts - 1).to_string(),
            ));
            if call.backoff.to_string() != LINKERD_BACKOFF {
                f.cannot(
                    "backoff",
                    format!(
                        "Linkerd has no backoff setting: its own {LINKERD_BACKOFF} applies, not \
                         {}",
                        call.backoff
                    ),
                );
            }
        }
        match call.limiter {
            Some(LimiterSpec::Budget { .. }) if call.max_attempts > 1 => f.cannot(
                "retry_budget",
                "Linkerd's retry annotations have no budget (a ServiceProfile's retryBudget would \
                 turn the annotations off): not written",
            ),
            Some(LimiterSpec::TokenBucket { .. }) => {
                f.cannot("token_bucket", "Linkerd has no token bucket: not written")
            }
            _ => {}
        }
        if call.connect_timeout.is_some() {
            f.cannot(
                "connect_timeout",
                "Linkerd has no connect timeout per route: not written",
            );
        }
        if call.hedge.is_some() {
            f.cannot("hedge", "Linkerd cannot hedge: not written");
        }
        proxy_notes(call, "Linkerd", true, &mut f);
        f
    }

    fn routes_by_endpoint(&self) -> bool {
        false
    }

    /// A Service last: its annotations are a destination's policy when no route of its own is
    /// in the files (the import reads them so), and are edited there rather than copied into a
    /// new HTTPRoute.
    fn route_kinds(&self) -> &'static [&'static str] {
        &["HTTPRoute", "GRPCRoute", "Service"]
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    fn names_port(&self, plan: &DestinationPlan) -> Option<&'static str> {
        (!plan.routes.is_empty()).then_some("HTTPRoute backendRef")
    }

    /// Annotations are the resource's, whichever rule the reader pointed at.
    fn route_prefix(&self, resource: &Resource) -> Path {
        let _ = resource;
        Vec::new()
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let mut docs = Vec::new();
        let mut resources = Vec::new();
        for plan in plans.iter().filter(|p| !p.routes.is_empty()) {
            let mut annotations = Val::map();
            for assign in plan.routes.iter().flat_map(|r| &r.fields) {
                let path: Vec<&str> = assign.path.iter().filter_map(key_of).collect();
                if let Some(key) = path.get(2) {
                    annotations.set(&[key], assign.value.clone());
                }
            }
            let rules = Val::List(vec![Val::Map(vec![(
                "backendRefs".into(),
                backend_ref(plan),
            )])]);
            docs.push(http_route(plan, rules, Some(annotations)).to_yaml(0));
            resources.push(format!("HTTPRoute {}", plan.to));
        }
        vec![NewFile {
            name: "stormguard-linkerd.yaml".into(),
            text: docs.join("---\n"),
            resources,
        }]
    }
}
