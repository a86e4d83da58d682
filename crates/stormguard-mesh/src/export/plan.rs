//! From a graph's calls to what a target writes per destination: each call's fields, grouped
//! by destination and endpoint, one policy chosen where a resource can hold only one.

use std::collections::BTreeMap;

use stormguard_graph::model::{Call, LimiterSpec};
use stormguard_graph::Graph;

use super::val::Val;

use super::{
    Assign, Conflict, DestinationPlan, Fields, PerCaller, RoutePlan, Seg, Target, Unexpressed,
    Writer,
};

/// The graph's calls, with their policies, as the target writes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Per destination (per caller for Envoy), in name order.
    pub destinations: Vec<DestinationPlan>,
    /// What each call's target cannot express.
    pub unexpressed: Vec<Unexpressed>,
    /// Policies one resource could not all hold.
    pub conflicts: Vec<Conflict>,
}

/// One call, from where.
struct CallRef<'g> {
    caller: &'g str,
    /// The caller as a conflict names it: with the caller's endpoint when it has named ones
    /// (`frontend (checkout-browse)`), since two endpoints of one caller may hold different
    /// policies for one destination, and "wrote frontend's; not frontend's" said nothing.
    label: String,
    to: &'g str,
    endpoint: Option<&'g str>,
    call: &'g Call,
}

/// Every call the target's resources hold: the mesh's. An imported graph makes a caller's
/// sidecar explicit where the application has its own client settings (a service
/// `CALLER-sidecar` that only CALLER calls, see [`crate::assemble`]): the application's calls to
/// it are the application's own, which no mesh resource holds, and the sidecar's calls are the
/// caller's calls through the mesh.
fn calls(graph: &Graph) -> Vec<CallRef<'_>> {
    let sidecars = sidecars(graph);
    let mut out = Vec::new();
    for (name, service) in &graph.services {
        let caller = sidecars.get(name.as_str()).copied().unwrap_or(name);
        for endpoint in service.each_endpoint() {
            for call in endpoint.calls {
                if sidecars.contains_key(call.to.as_str()) {
                    continue;
                }
                out.push(CallRef {
                    caller,
                    label: match endpoint.name {
                        Some(name) => format!("{caller} ({name})"),
                        None => caller.to_string(),
                    },
                    to: &call.to,
                    endpoint: call.endpoint.as_deref(),
                    call,
                });
            }
        }
    }
    out
}

/// The explicit sidecars of a graph, with the caller each stands for: a service named
/// `CALLER-sidecar` (or `CALLER-sidecar-N`) that CALLER alone calls.
pub(super) fn sidecars(graph: &Graph) -> std::collections::BTreeMap<&str, &str> {
    let mut callers: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for (name, service) in &graph.services {
        for endpoint in service.each_endpoint() {
            for call in endpoint.calls {
                callers
                    .entry(call.to.as_str())
                    .or_default()
                    .insert(name.as_str());
            }
        }
    }
    callers
        .into_iter()
        .filter_map(|(to, from)| {
            let [caller] = from.into_iter().collect::<Vec<_>>()[..] else {
                return None;
            };
            let rest = to.strip_prefix(caller)?.strip_prefix("-sidecar")?;
            let numbered = rest
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            (rest.is_empty() || numbered).then_some((to, caller))
        })
        .collect()
}

/// Groups `items` (caller, value) by equal values, largest group first (ties: first seen).
fn partition<T: PartialEq + Clone>(items: &[(String, T)]) -> Vec<(Vec<String>, T)> {
    let mut groups: Vec<(Vec<String>, T)> = Vec::new();
    for (caller, value) in items {
        match groups.iter_mut().find(|(_, v)| v == value) {
            Some((callers, _)) => {
                if !callers.contains(caller) {
                    callers.push(caller.clone())
                }
            }
            None => groups.push((vec![caller.clone()], value.clone())),
        }
    }
    // Stable: among equal sizes the first seen stays first.
    groups.sort_by_key(|(callers, _)| std::cmp::Reverse(callers.len()));
    groups
}

/// How `other`'s values differ from `written`'s, for a person.
fn difference(written: &[Assign], other: &[Assign]) -> String {
    // A value removed reads as none, not as YAML's `~`.
    let shown = |v: &Val| match v {
        Val::Remove => "none".to_string(),
        v => v.to_yaml_inline(),
    };
    let text = |a: &Assign| format!("{} {}", path_text(&a.path), shown(&a.value));
    let mut parts = Vec::new();
    for a in other {
        match written.iter().find(|w| w.path == a.path) {
            Some(w) if w.value == a.value => {}
            Some(w) => parts.push(format!(
                "{} {} instead of {}",
                path_text(&a.path),
                shown(&a.value),
                shown(&w.value)
            )),
            None => parts.push(text(a)),
        }
    }
    for w in written {
        if !other.iter().any(|a| a.path == w.path) {
            parts.push(format!("no {}", path_text(&w.path)));
        }
    }
    // A key two of the policy's parts both set (an Istio route's and its destination's) is
    // said once.
    let mut said = Vec::with_capacity(parts.len());
    for part in parts {
        if !said.contains(&part) {
            said.push(part);
        }
    }
    said.join(", ")
}

pub(super) fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// One call as the plan holds it: who makes it and what the target writes for it.
struct Member<'g> {
    caller: String,
    label: String,
    call: &'g Call,
    fields: Fields,
}

/// (to, caller for Envoy) → endpoint → the calls.
type ByDestination<'g> =
    BTreeMap<(String, Option<String>), BTreeMap<Option<String>, Vec<Member<'g>>>>;

/// Whether a call can send more than one attempt: only such a call is held back by a retry
/// budget or a token bucket, so only such calls have a say in a limiter that a resource holds
/// for several callers.
fn retries(call: &Call) -> bool {
    call.max_attempts > 1 || call.hedge.is_some()
}

/// The limiter a resource that several calls share holds (an Istio `DestinationRule`, an
/// Envoy cluster, a gRPC `retryThrottling`).
///
/// A call that never retries is not limited by it, so only the calls that retry choose; a
/// limiter the target cannot write is no choice. Among retry budgets the strictest (the
/// lowest ratio, then the smallest reserve), among token buckets the one with the fewest
/// retries in a full bucket: each caller then retries at most as its own policy allows, where
/// the largest group of callers chose before, and a caller that does not retry at all could
/// outvote the budget of one that does (the Istio example's `DestinationRule` lost
/// place-order's budget to browse, which makes one attempt).
fn shared_limiter(
    writer: &dyn Writer,
    calls: &[&Call],
    fallback: Option<LimiterSpec>,
) -> Option<LimiterSpec> {
    let retrying: Vec<&Call> = calls.iter().copied().filter(|c| retries(c)).collect();
    if retrying.is_empty() {
        // No caller is limited by it: the most common policy's, as for any other value.
        return fallback;
    }
    let written: Vec<LimiterSpec> = retrying
        .iter()
        .filter_map(|c| c.limiter)
        .filter(|l| writer.writes_limiter(l))
        .collect();
    let budget = written
        .iter()
        .filter_map(|l| match *l {
            LimiterSpec::Budget { ratio, min_per_sec } => Some((ratio, min_per_sec, *l)),
            LimiterSpec::TokenBucket { .. } => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, _, l)| l);
    let bucket = || {
        written
            .iter()
            .filter_map(|l| match *l {
                LimiterSpec::TokenBucket {
                    capacity,
                    retry_cost,
                    ..
                } => Some((f64::from(capacity) / f64::from(retry_cost.max(1)), *l)),
                LimiterSpec::Budget { .. } => None,
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, l)| l)
    };
    // None that the target can write: the first retrying caller's, which it writes as it
    // would for that caller alone.
    budget
        .or_else(bucket)
        .or_else(|| retrying.first().and_then(|c| c.limiter))
}

/// The connect timeout a resource that several calls share holds: the longest that any sets.
/// A connection given up too early fails a caller that cannot retry it (one lost SYN waits a
/// second for its retransmission); one given up late only delays a caller that retries on
/// another instance.
fn shared_connect_timeout(calls: &[&Call]) -> Option<std::time::Duration> {
    calls.iter().filter_map(|c| c.connect_timeout).max()
}

/// `member`'s values of a shared part (`part` of its fields) as they would be with the
/// `limiter` the part holds: a call that does not retry is indifferent to the limiter, so it
/// conflicts with the written values only on what it does care about.
fn as_shared(
    writer: &dyn Writer,
    member: &Member<'_>,
    limiter: Option<LimiterSpec>,
    part: fn(Fields) -> Vec<Assign>,
) -> Vec<Assign> {
    if retries(member.call) || member.call.limiter == limiter {
        return part(member.fields.clone());
    }
    part(writer.fields(&Call {
        limiter,
        ..member.call.clone()
    }))
}

/// A caller's own values of a shared part, with those the written part holds for it too taken
/// as written: the same value (whether written or left to the default), or a default of its
/// own where the part leaves the setting to the system (each caller then reads back its own).
/// So a conflict names only what differs for the caller.
fn as_written(own: Vec<Assign>, written: &[Assign]) -> Vec<Assign> {
    own.into_iter()
        .map(|mine| {
            let same = written.iter().find(|w| {
                w.path == mine.path
                    && (w.value == mine.value
                        || (w.only_to_replace && mine.only_to_replace && w.value != Val::Remove))
            });
            same.cloned().unwrap_or(mine)
        })
        .collect()
}

fn root_values(fields: Fields) -> Vec<Assign> {
    fields.route.into_iter().filter(|a| a.from_root).collect()
}

fn destination_values(fields: Fields) -> Vec<Assign> {
    fields.destination
}

/// The graph as stormguard runs it, for a mesh that retries and hedges any method: a call that
/// is not idempotent retries only the part of its `retry_on` safe for any method
/// ([`Call::retried_on`]: failures before the request was sent, answers that decline it), makes
/// one attempt when that part is empty, and is never hedged. Written as listed, a `timeout` or
/// `5xx` on a POST would have the mesh replay a request that may have been applied, which
/// neither the proxy nor `sim` does (`proxy_notes` says what was written instead).
fn as_run(graph: &Graph) -> std::borrow::Cow<'_, Graph> {
    fn run(call: &mut Call) {
        if call.is_idempotent() {
            return;
        }
        call.hedge = None;
        let kept = call.retried_on();
        if kept.is_empty() {
            call.max_attempts = 1;
        } else {
            call.retry_on = kept;
        }
    }
    let changes = |call: &Call| {
        !call.is_idempotent()
            && (call.hedge.is_some()
                || (call.max_attempts > 1 && call.retried_on() != call.retry_on))
    };
    let any = graph.services.values().any(|service| {
        service.calls.iter().any(changes)
            || service
                .endpoints
                .iter()
                .any(|endpoint| endpoint.calls.iter().any(changes))
    });
    if !any {
        return std::borrow::Cow::Borrowed(graph);
    }
    let mut graph = graph.clone();
    for service in graph.services.values_mut() {
        service.calls.iter_mut().for_each(run);
        for endpoint in &mut service.endpoints {
            endpoint.calls.iter_mut().for_each(run);
        }
    }
    std::borrow::Cow::Owned(graph)
}

/// What [`as_run`] leaves out of a call that is not idempotent, as notes: retries of which
/// none is ever sent, and a hedge.
fn never_run(graph: &Graph) -> Vec<Unexpressed> {
    let mut out = Vec::new();
    for c in calls(graph) {
        let call = c.call;
        if call.is_idempotent() {
            continue;
        }
        let mut note = |key, why: String| {
            out.push(Unexpressed {
                caller: c.caller.to_string(),
                to: c.to.to_string(),
                endpoint: c.endpoint.map(str::to_string),
                key,
                why,
            })
        };
        if call.max_attempts > 1 && call.retried_on().is_empty() {
            note(
                "retry_on",
                format!(
                    "{}: none of it is retried for requests that are not idempotent ({}), so \
                     no retry is written",
                    call.retry_on, call.method
                ),
            );
        }
        if call.hedge.is_some() {
            note(
                "hedge",
                format!(
                    "requests that are not idempotent ({}) are never hedged: not written",
                    call.method
                ),
            );
        }
    }
    out
}

/// Groups the graph's calls by destination and writes each call's fields for `target`,
/// choosing one policy where a resource can hold only one.
pub fn plan(graph: &Graph, target: Target) -> Plan {
    let writer = target.writer();
    let mut result = Plan {
        unexpressed: never_run(graph),
        ..Plan::default()
    };
    let graph = &as_run(graph);
    let mut by_destination: ByDestination<'_> = BTreeMap::new();
    for c in calls(graph) {
        let fields = writer.fields(c.call);
        for (key, why) in &fields.unexpressed {
            result.unexpressed.push(Unexpressed {
                caller: c.caller.to_string(),
                to: c.to.to_string(),
                endpoint: c.endpoint.map(str::to_string),
                key,
                why: why.clone(),
            });
        }
        let caller = (writer.per_caller() == PerCaller::Everything).then(|| c.caller.to_string());
        let endpoint = c
            .endpoint
            .filter(|_| writer.routes_by_endpoint())
            .map(str::to_string);
        by_destination
            .entry((c.to.to_string(), caller))
            .or_default()
            .entry(endpoint)
            .or_default()
            .push(Member {
                caller: c.caller.to_string(),
                label: c.label.clone(),
                call: c.call,
                fields,
            });
    }
    let shared = shared_root_values(writer, &by_destination, &mut result);
    for ((to, caller), endpoints) in by_destination {
        let mut routes = Vec::new();
        let mut members: Vec<Member<'_>> = Vec::new();
        // Named endpoints first: an unnamed route matches every request.
        let mut ordered: Vec<_> = endpoints.into_iter().collect();
        ordered.sort_by_key(|(ep, _)| ep.is_none());
        for (endpoint, calls) in ordered {
            let label = match &endpoint {
                Some(ep) => format!("{to} ({ep})"),
                None => to.clone(),
            };
            // The values held once for every destination are the ones chosen for all.
            let route_of = |f: &Fields| -> Vec<Assign> {
                let mut route: Vec<Assign> =
                    f.route.iter().filter(|a| !a.from_root).cloned().collect();
                route.extend(shared.iter().cloned());
                route
            };
            let route_values: Vec<(String, Vec<Assign>)> = calls
                .iter()
                .map(|m| (m.caller.clone(), route_of(&m.fields)))
                .collect();
            let labeled: Vec<(String, Vec<Assign>)> = calls
                .iter()
                .map(|m| (m.label.clone(), route_of(&m.fields)))
                .collect();
            // Callers whose requests are not idempotent: a resource that holds one policy for
            // every caller must hold theirs (written as stormguard runs them, `as_run`), or a
            // retry meant for the others would replay their requests.
            let not_idempotent: Vec<String> = calls
                .iter()
                .filter(|m| !m.call.is_idempotent())
                .map(|m| m.caller.clone())
                .collect();
            members.extend(calls);
            let groups = partition(&route_values);
            // The import's placeholder caller stands for every client: no route matches it
            // by its labels (a `sourceLabels: {app: mesh-callers}` route matches no pod).
            let by_caller = groups
                .iter()
                .skip(1)
                .all(|(callers, _)| !callers.iter().any(|c| c == crate::assemble::PLACEHOLDER));
            if groups.len() > 1 && writer.per_caller() == PerCaller::Routes && by_caller {
                // Caller-specific routes first, the most common policy as the catch-all.
                for (callers, fields) in groups.iter().skip(1) {
                    routes.push(RoutePlan {
                        endpoint: endpoint.clone(),
                        callers: Some(callers.clone()),
                        fields: fields.clone(),
                        placeholder: false,
                    });
                }
                routes.push(RoutePlan {
                    endpoint: endpoint.clone(),
                    callers: None,
                    fields: groups[0].1.clone(),
                    placeholder: false,
                });
                continue;
            }
            let placeholder = groups.len() == 1
                && groups[0]
                    .0
                    .iter()
                    .all(|c| c == crate::assemble::PLACEHOLDER);
            let chosen = groups
                .iter()
                .position(|(callers, _)| callers.iter().any(|c| not_idempotent.contains(c)))
                .unwrap_or(0);
            if groups.len() > 1 {
                let mut conflict = conflict(&label, "route", &groups[chosen].1, &labeled);
                if groups[chosen].0.iter().any(|c| not_idempotent.contains(c)) {
                    conflict.why = Some(
                        "the policy of requests that are not idempotent, the one that replays \
                         no caller's",
                    );
                }
                result.conflicts.push(conflict);
            }
            routes.push(RoutePlan {
                endpoint,
                callers: None,
                fields: groups[chosen].1.clone(),
                placeholder,
            });
        }
        let destination = shared_destination(writer, &members);
        let labeled: Vec<(String, Vec<Assign>)> = members
            .iter()
            .map(|m| {
                let values = as_shared(writer, m, destination.1, destination_values);
                (m.label.clone(), as_written(values, &destination.0))
            })
            .collect();
        if labeled.iter().any(|(_, values)| *values != destination.0) {
            result
                .conflicts
                .push(conflict(&to, "destination", &destination.0, &labeled));
        }
        result.destinations.push(DestinationPlan {
            to,
            caller,
            routes,
            destination: destination.0,
            port: None,
            instances: Vec::new(),
            namespace: None,
        });
    }
    // One note per caller, callee and key: two endpoints of a caller that call one service
    // said the same thing twice.
    let mut seen = std::collections::BTreeSet::new();
    result.unexpressed.retain(|u| seen.insert(u.to_string()));
    result
}

/// The values a destination's own resource holds for all of `members`, and the limiter they
/// were written from: the most common caller's policy (ties: the first seen), with the
/// longest connect timeout ([`shared_connect_timeout`]) and the limiter of the callers that
/// retry ([`shared_limiter`]).
fn shared_destination(
    writer: &dyn Writer,
    members: &[Member<'_>],
) -> (Vec<Assign>, Option<LimiterSpec>) {
    let by_caller: Vec<(String, Vec<Assign>)> = members
        .iter()
        .map(|m| (m.caller.clone(), m.fields.destination.clone()))
        .collect();
    let groups = partition(&by_caller);
    let Some(most) = groups.first() else {
        return (Vec::new(), None);
    };
    let base = members
        .iter()
        .find(|m| m.fields.destination == most.1)
        .expect("a group's values are a member's");
    let calls: Vec<&Call> = members.iter().map(|m| m.call).collect();
    let limiter = shared_limiter(writer, &calls, base.call.limiter);
    let merged = Call {
        connect_timeout: shared_connect_timeout(&calls),
        limiter,
        ..base.call.clone()
    };
    let mut written = writer.fields(&merged).destination;
    // A value left to the system's default (written only over a file's own) is so for the
    // resource only when it is so for every caller sharing it: a connect timeout that is one
    // caller's timeout-clamped default is another's explicit setting, which the default would
    // not give it.
    for assign in written
        .iter_mut()
        .filter(|a| a.only_to_replace && a.value != Val::Remove)
    {
        // Each its own default (even a different one, as a connect timeout clamped to each
        // caller's timeout): left out, each reads back its own.
        let everyone = members.iter().all(|m| {
            m.fields
                .destination
                .iter()
                .any(|own| own.path == assign.path && own.only_to_replace)
        });
        if !everyone {
            assign.only_to_replace = false;
        }
    }
    (written, limiter)
}

/// The values held once for every destination (a gRPC `retryThrottling`), chosen from every
/// call's as [`shared_limiter`] says, with a conflict where callers that care disagree.
fn shared_root_values(
    writer: &dyn Writer,
    by_destination: &ByDestination<'_>,
    result: &mut Plan,
) -> Vec<Assign> {
    let members: Vec<(&str, &Member<'_>)> = by_destination
        .iter()
        .flat_map(|((to, _), endpoints)| endpoints.values().flatten().map(|m| (to.as_str(), m)))
        .collect();
    if members
        .iter()
        .all(|(_, m)| m.fields.route.iter().all(|a| !a.from_root))
    {
        return Vec::new();
    }
    let calls: Vec<&Call> = members.iter().map(|(_, m)| m.call).collect();
    let limiter = shared_limiter(writer, &calls, calls[0].limiter);
    let written = root_values(writer.fields(&Call {
        limiter,
        ..calls[0].clone()
    }));
    let labeled: Vec<(String, Vec<Assign>)> = members
        .iter()
        .map(|(to, m)| {
            let values = as_shared(writer, m, limiter, root_values);
            (format!("{} -> {to}", m.label), values)
        })
        .collect();
    if labeled.iter().any(|(_, values)| *values != written) {
        result
            .conflicts
            .push(conflict("every destination", "shared", &written, &labeled));
    }
    written
}

/// The conflict at `label`: `written` is the policy chosen (by caller, [`partition`]'s first
/// group), and each call is named by its label in `labeled`, with its values: those holding
/// `written` are the written, the others the not written, with how theirs differ.
fn conflict(
    label: &str,
    part: &'static str,
    written: &[Assign],
    labeled: &[(String, Vec<Assign>)],
) -> Conflict {
    let mut conflict = Conflict {
        to: label.to_string(),
        part,
        written: Vec::new(),
        why: None,
        not_written: Vec::new(),
    };
    for (name, values) in labeled {
        if values.as_slice() == written {
            if !conflict.written.contains(name) {
                conflict.written.push(name.clone());
            }
        } else {
            let item = (name.clone(), difference(written, values));
            if !conflict.not_written.contains(&item) {
                conflict.not_written.push(item);
            }
        }
    }
    conflict
}

#[cfg(test)]
mod difference_tests {
    use super::*;

    /// A value one caller's policy removes reads as none, where it read as YAML's `~`
    /// ("10s instead of ~": a third review).
    #[test]
    fn a_removed_value_reads_as_none() {
        let path = ["metadata", "annotations", "timeout.linkerd.io/request"];
        let written = [Assign::remove(&path)];
        let other = [Assign::new(&path, Val::Str("10s".into()))];
        assert_eq!(
            difference(&written, &other),
            "metadata.annotations.timeout.linkerd.io/request 10s instead of none"
        );
        assert_eq!(
            difference(&other, &written),
            "metadata.annotations.timeout.linkerd.io/request none instead of 10s"
        );
        // The same difference twice (two parts of a policy set the key) is said once.
        let twice = [other[0].clone(), other[0].clone()];
        assert_eq!(
            difference(&written, &twice),
            "metadata.annotations.timeout.linkerd.io/request 10s instead of none"
        );
    }
}
