//! Istio: a `VirtualService` per destination (its `http[]` routes: `timeout`, `retries`), and a
//! `DestinationRule` (connect timeout, retry budget). Routes can match on the caller
//! (`sourceLabels: {app: CALLER}`), so callers with different policies each get theirs.

use std::time::Duration;

use stormguard_graph::model::{Call, LimiterSpec};

use crate::doc::Node;

use super::val::{float_text, go_duration, Val};
use super::{
    backoff_base, envoy_growth_note, envoy_safe, proxy_notes, retry_names, Assign, DestinationPlan,
    Fields, NewFile, PerCaller, Seg, Writer,
};

/// The Istio writer.
pub(super) struct Istio;

impl Writer for Istio {
    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        let safe = envoy_safe(call, "Istio", &mut f);
        let call = &*safe;
        // The route timeout bounds the whole call. A call of one attempt is bounded by the
        // earlier of its two timeouts, so that one is the route's: a fix that gives a call its
        // first timeout reaches Istio even though Istio has a per-try timeout only with retries.
        let whole = match (call.max_attempts <= 1, call.timeout, call.request_timeout) {
            (true, Some(t), Some(r)) => Some(t.min(r)),
            (true, Some(t), None) => Some(t),
            (_, _, r) => r,
        };
        match whole {
            Some(d) => f
                .route
                .push(Assign::new(&["timeout"], Val::str(go_duration(d)))),
            None => f
                .route
                .push(Assign::replacing(&["timeout"], Val::str("0s"))),
        }
        let retries_start = f.route.len();
        if call.max_attempts <= 1 {
            // Without `retries`, Istio's default two retries apply: say zero.
            f.route
                .push(Assign::new(&["retries", "attempts"], Val::Int(0)));
        } else {
            f.route.push(Assign::new(
                &["retries", "attempts"],
                Val::Int(i64::from(call.max_attempts - 1)),
            ));
            match (call.timeout, call.request_timeout) {
                // At or above the route timeout: what Istio does without one (each attempt
                // bounded by the route's), so written only over a value the file has (an
                // unchanged export added it: a fourth review; a route timeout cut below the
                // per-try one added a stale perTryTimeout and the default attempts: a fifth).
                (Some(t), r) => f.route.push(Assign {
                    only_to_replace: r.is_some_and(|r| t >= r),
                    ..Assign::new(&["retries", "perTryTimeout"], Val::str(go_duration(t)))
                }),
                (None, Some(_)) => f.cannot(
                    "timeout",
                    "none in the graph: Istio's per-try timeout is the route timeout",
                ),
                (None, None) => f.route.push(Assign::remove(&["retries", "perTryTimeout"])),
            }
            let names = retry_names::envoy(&call.retry_on, call.timeout.is_some());
            for why in names.unexpressed {
                f.cannot("retry_on", why);
            }
            let mut words = names.names;
            words.extend(names.statuses.iter().map(u16::to_string));
            if words.is_empty() {
                f.cannot(
                    "retry_on",
                    "empty: Istio retries its default conditions (connect-failure, \
                     refused-stream, unavailable, cancelled) when retryOn is empty",
                );
            } else {
                // Istio's own conditions, which a `retries` without `retryOn` already says:
                // written only over a `retryOn` the file has (an unchanged export spelled them
                // out in a stanza that had none: a third review).
                let mut sorted = words.clone();
                sorted.sort();
                let mut default = crate::istio::DEFAULT_RETRY_ON.map(str::to_string);
                default.sort();
                f.route.push(Assign {
                    only_to_replace: sorted == default,
                    ..Assign::new(&["retries", "retryOn"], Val::str(words.join(",")))
                });
            }
            if let Some(base) = backoff_base(&call.backoff, "Istio", Some(10), &mut f) {
                // Istio's default base: written only over a base the file sets.
                let default = base == Duration::from_millis(crate::istio::DEFAULT_BACKOFF_BASE_MS);
                f.route.push(Assign {
                    only_to_replace: default,
                    ..Assign::new(&["retries", "backoff"], Val::str(go_duration(base)))
                });
            }
            envoy_growth_note(call, "Istio", &mut f);
            if is_default_retry_policy(call, whole) {
                // Istio's own policy for a route without `retries`: a file without them
                // already says it, so they are written only over what the file has.
                for assign in &mut f.route[retries_start..] {
                    assign.only_to_replace = true;
                }
            }
        }
        if let Some(hedge) = call.hedge {
            f.cannot(
                "hedge",
                format!("Istio cannot hedge (delay {}): not written", hedge.delay),
            );
        }
        proxy_notes(call, "Istio", true, &mut f);
        const CONNECT_TIMEOUT: [&str; 5] = [
            "spec",
            "trafficPolicy",
            "connectionPool",
            "tcp",
            "connectTimeout",
        ];
        match call.connect_timeout {
            // Istio's default 10s (as the import clamps it to the attempt's timeout, if any): a
            // file without a connect timeout says it already, and writing it would set it for
            // every route and port to the destination (TCP too).
            Some(d) => f.destination.push(Assign {
                only_to_replace: d
                    == call
                        .timeout
                        .map_or(Duration::from_secs(10), |t| t.min(Duration::from_secs(10))),
                // Equal to the attempt's timeout: perhaps the import's clamp of a longer one,
                // which the file keeps (an unchanged export shortened a DestinationRule's
                // connect timeout for every route: a fourth review).
                keep_at_least: (call.timeout == Some(d)).then_some(d),
                ..Assign::new(&CONNECT_TIMEOUT, Val::str(go_duration(d)))
            }),
            None => {
                f.destination.push(Assign::remove(&CONNECT_TIMEOUT));
                f.cannot(
                    "connect_timeout",
                    "none in the graph: Istio's default 10s applies",
                )
            }
        }
        match call.limiter {
            Some(LimiterSpec::Budget { ratio, min_per_sec }) => {
                f.destination.push(Assign::new(
                    &["spec", "trafficPolicy", "retryBudget", "percent"],
                    Val::Float(ratio * 100.0),
                ));
                f.destination.push(Assign::new(
                    &[
                        "spec",
                        "trafficPolicy",
                        "retryBudget",
                        "minRetryConcurrency",
                    ],
                    Val::Int(i64::from(min_per_sec)),
                ));
                f.cannot(
                    "retry_budget",
                    format!(
                        "approximate: Istio's retryBudget caps concurrent retries at {}% of \
                         active requests (at least {min_per_sec}), stormguard's caps retries \
                         per 10 s",
                        float_text(ratio * 100.0)
                    ),
                );
            }
            Some(LimiterSpec::TokenBucket { .. }) => {
                f.destination
                    .push(Assign::remove(&["spec", "trafficPolicy", "retryBudget"]));
                f.cannot(
                    "token_bucket",
                    "Istio has no token bucket: not written (its retries are bounded only by \
                     connectionPool.http.maxRetries)",
                )
            }
            None => {
                f.destination
                    .push(Assign::remove(&["spec", "trafficPolicy", "retryBudget"]));
                if call.max_attempts > 1 {
                    f.cannot(
                        "retry_budget",
                        "none: Istio's default maxRetries (2^32-1 concurrent) leaves retries \
                         unbounded",
                    )
                }
            }
        }
        f
    }

    fn per_caller(&self) -> PerCaller {
        PerCaller::Routes
    }

    fn writes_limiter(&self, limiter: &LimiterSpec) -> bool {
        matches!(limiter, LimiterSpec::Budget { .. })
    }

    /// A `retryOn` that reads as the same conditions keeps the file's spelling.
    fn keeps(&self, path: &[Seg], value: &Val, existing: &Node) -> bool {
        let retry_on = matches!(path.last(), Some(Seg::Key(k)) if k == "retryOn");
        match (retry_on, value, existing.as_str()) {
            (true, Val::Str(written), Some(file)) => retry_names::same_retry_on(file, written),
            _ => false,
        }
    }

    fn route_kinds(&self) -> &'static [&'static str] {
        &["VirtualService"]
    }

    /// A subset's own `trafficPolicy` replaces the host's for routes to that subset.
    fn destination_overridden(&self, rule: &Node) -> Vec<String> {
        let subsets = rule
            .get("spec")
            .and_then(|s| s.get("subsets"))
            .map(Node::items)
            .unwrap_or_default();
        subsets
            .iter()
            .filter_map(|subset| {
                let policy = subset.get("trafficPolicy")?;
                let keys: Vec<&str> = ["retryBudget", "connectionPool"]
                    .into_iter()
                    .filter(|k| policy.get(k).is_some())
                    .collect();
                (!keys.is_empty()).then(|| {
                    format!(
                        "subset {}'s own trafficPolicy ({}) replaces the values written for \
                         routes to that subset: edit it too",
                        subset.get("name").and_then(Node::as_str).unwrap_or("?"),
                        keys.join(", ")
                    )
                })
            })
            .collect()
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &["DestinationRule"]
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let mut docs = Vec::new();
        let mut resources = Vec::new();
        for plan in plans {
            if !plan.routes.is_empty() {
                let mut http = Vec::new();
                for route in &plan.routes {
                    let mut entry = Val::map();
                    if let Some(ep) = &route.endpoint {
                        entry.set(&["name"], Val::str(ep));
                    }
                    if let Some(callers) = &route.callers {
                        let matches = callers
                            .iter()
                            .map(|c| {
                                Val::Map(vec![(
                                    "sourceLabels".into(),
                                    Val::Map(vec![("app".into(), Val::str(c))]),
                                )])
                            })
                            .collect();
                        entry.set(&["match"], Val::List(matches));
                    }
                    entry.set(
                        &["route"],
                        Val::List(vec![Val::Map(vec![(
                            "destination".into(),
                            Val::Map(vec![("host".into(), Val::str(&plan.to))]),
                        )])]),
                    );
                    for assign in &route.fields {
                        entry.put(&assign.path, assign.value.clone());
                    }
                    http.push(entry);
                }
                let doc = Val::Map(vec![
                    ("apiVersion".into(), Val::str("networking.istio.io/v1")),
                    ("kind".into(), Val::str("VirtualService")),
                    ("metadata".into(), metadata(plan)),
                    (
                        "spec".into(),
                        Val::Map(vec![
                            ("hosts".into(), Val::List(vec![Val::str(&plan.to)])),
                            ("http".into(), Val::List(http)),
                        ]),
                    ),
                ]);
                docs.push(doc.to_yaml(0));
                resources.push(format!("VirtualService {}", plan.to));
            }
            if !plan.destination.is_empty() {
                let mut doc = Val::Map(vec![
                    ("apiVersion".into(), Val::str("networking.istio.io/v1")),
                    ("kind".into(), Val::str("DestinationRule")),
                    ("metadata".into(), metadata(plan)),
                    (
                        "spec".into(),
                        Val::Map(vec![("host".into(), Val::str(&plan.to))]),
                    ),
                ]);
                for assign in &plan.destination {
                    doc.put(&assign.path, assign.value.clone());
                }
                docs.push(doc.to_yaml(0));
                resources.push(format!("DestinationRule {}", plan.to));
            }
        }
        vec![NewFile {
            name: "stormguard-istio.yaml".into(),
            text: docs.join("---\n"),
            resources,
        }]
    }
}

/// Whether `call`'s retries are Istio's own for a route without `retries` (`retry.go`'s
/// `DefaultPolicy`): two retries on its default conditions, each attempt bounded by the route
/// timeout (`whole`) alone, after its default backoff.
fn is_default_retry_policy(call: &Call, whole: Option<Duration>) -> bool {
    let names = retry_names::envoy(&call.retry_on, call.timeout.is_some());
    let mut words = names.names.clone();
    words.sort();
    let mut default: Vec<String> = crate::istio::DEFAULT_RETRY_ON
        .iter()
        .map(|w| w.to_string())
        .collect();
    default.sort();
    u64::from(call.max_attempts) == crate::istio::DEFAULT_RETRIES + 1
        && names.statuses.is_empty()
        && words == default
        && (call.timeout.is_none() || whole.is_some_and(|w| call.timeout >= Some(w)))
        && matches!(
            call.backoff,
            stormguard::backoff::Backoff::FullJitter { base, cap }
                if base == Duration::from_millis(crate::istio::DEFAULT_BACKOFF_BASE_MS)
                    && cap == base * 10
        )
}

/// A new resource's `metadata`: its destination's name, in its Service's namespace when read.
fn metadata(plan: &DestinationPlan) -> Val {
    let mut metadata = Val::Map(vec![("name".into(), Val::str(&plan.to))]);
    if let Some(namespace) = &plan.namespace {
        metadata.set(&["namespace"], Val::str(namespace));
    }
    metadata
}
