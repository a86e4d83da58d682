//! `retry-amplification`: how many attempts reach a service per user request when everything
//! below the entry fails, and which calls to change to bring that under the limit.
//!
//! Its own module because its fix needs more than one call's settings: the figure is a sum over
//! every path, so the fix names the calls on those paths, found by a bounded walk up the
//! callers, and checks against the model's what-if figures that the change it names is enough.

use super::{num_text, push_call_name, set, Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{attempts, retries, Model};
use crate::model::Call;
use crate::report::{Edit, Severity};

/// How many calls a fix names before it says there are more: enough for any hand-written
/// graph, and a message that stays one line in a generated one.
const NAMED: usize = 6;

/// How many services the walk up from a service visits, at most, to find the calls to name. It
/// runs once per finding, and a graph of 10,000 services may have as many findings; bounded,
/// the rule stays linear in the graph, and a fix that hits the bound says there are more.
const WALK: usize = 64;

/// Every per-service amplification rule: judged on a service as a whole, since its endpoints
/// share its instances, and the load that overwhelms them is every endpoint's together.
pub(super) fn on_service(model: &Model<'_>, s: usize, walker: &mut Walker, out: &mut Findings) {
    retry_amplification(model, s, walker, out);
}

/// Calls on paths from the entry to a service, nearest first.
struct Named {
    /// (caller, call index) of each call found.
    calls: Vec<(usize, usize)>,
    /// Whether there may be more than those (more than [`NAMED`], or the walk hit [`WALK`]).
    more: bool,
}

impl Named {
    /// `max_attempts = attempts` on every call found: the fix's edits. A list cut at [`NAMED`]
    /// is completed by the next `check --fix` round, which finds the rest.
    fn attempts_edits(&self, model: &Model<'_>, attempts: &str) -> Vec<Edit> {
        self.calls
            .iter()
            .map(|&(s, i)| set(model, s, i, "max_attempts", attempts))
            .collect()
    }

    /// The calls as a list a person reads (`a, b and c`), topmost first, each followed by
    /// `detail` of it; when the list is cut, it ends with "other `rest`" (or is "the `rest`"
    /// when nothing was found).
    fn text(&self, model: &Model<'_>, rest: &str, detail: impl Fn(&Call) -> String) -> String {
        let mut calls = self.calls.clone();
        calls.sort_by_key(|&(s, i)| (model.depth[s], s, i));
        let items = calls.len() + usize::from(self.more);
        let mut out = String::new();
        for (k, &(s, i)) in calls.iter().enumerate() {
            out.push_str(separator(k, items));
            push_call_name(&mut out, model, s, i);
            out.push_str(&detail(&model.nodes[s].calls[i]));
        }
        if self.more {
            out.push_str(separator(calls.len(), items));
            out.push_str(if calls.is_empty() { "the " } else { "other " });
            out.push_str(rest);
        }
        out
    }
}

/// What goes before item `k` of `items` in a list a person reads: nothing, ", " or " and ".
fn separator(k: usize, items: usize) -> &'static str {
    match k {
        0 => "",
        _ if k + 1 == items => " and ",
        _ => ", ",
    }
}

/// No detail after a call's name.
fn plain(_: &Call) -> String {
    String::new()
}

/// A call's count after its name.
fn with_count(call: &Call) -> String {
    format!(" (count {})", call.count)
}

/// Walks up the callers of a service, reusing its memory from one walk to the next: the rule
/// walks once or more per finding, and a graph of 10,000 services may have as many findings, so
/// a walk costs the services it visits and nothing per service of the graph.
pub(super) struct Walker {
    /// Per service, the walk that last saw it.
    seen_in: Vec<u32>,
    /// The current walk's number; 0 is no walk, so a fresh `seen_in` has seen nothing.
    walk: u32,
    queue: Vec<usize>,
}

impl Walker {
    /// A walker for `model`'s nodes.
    pub(super) fn new(model: &Model<'_>) -> Walker {
        Walker {
            seen_in: vec![0; model.nodes.len()],
            walk: 0,
            queue: Vec::new(),
        }
    }

    /// The calls on paths from the entry to service `svc` (any of its endpoints) for which
    /// `wanted(caller, index)` holds, found breadth first up the callers from it, so the nearest
    /// first.
    fn calls_above(
        &mut self,
        model: &Model<'_>,
        svc: usize,
        wanted: impl Fn(usize, usize) -> bool,
    ) -> Named {
        self.walk += 1;
        if self.walk == u32::MAX {
            self.seen_in.fill(0);
            self.walk = 1;
        }
        self.queue.clear();
        for s in model.service_nodes[svc].clone() {
            self.queue.push(s);
            self.seen_in[s] = self.walk;
        }
        let mut calls = Vec::new();
        let mut next = 0;
        while let Some(&service) = self.queue.get(next) {
            next += 1;
            for &(caller, i) in &model.callers[service] {
                // A call that reaches several endpoints of the service is found once per
                // endpoint; it is one call to change.
                if calls.contains(&(caller, i)) {
                    continue;
                }
                if wanted(caller, i) {
                    calls.push((caller, i));
                    if calls.len() > NAMED {
                        calls.truncate(NAMED);
                        return Named { calls, more: true };
                    }
                }
                if self.seen_in[caller] != self.walk {
                    if self.queue.len() == WALK {
                        return Named { calls, more: true };
                    }
                    self.seen_in[caller] = self.walk;
                    self.queue.push(caller);
                }
            }
        }
        Named { calls, more: false }
    }
}

/// `retry-amplification` (error): the worst-case attempts a service receives per user request
/// when calls below the entry fail exceed `max_amplification`. The figure is the product
/// of `max_attempts * count` along every path, summed over paths (243 at the bottom of five
/// layers of three attempts). Retry budgets do not change it (they cap retries once they have
/// drained, not the attempts a burst of failures makes first), so the sustained figure is quoted
/// beside it and no budget is offered as the fix.
///
/// The fix names the calls to change, the least change the model's figures show is enough:
/// one attempt on every retrying call with another retrying layer above it (the
/// `layered-retries` findings), and at most two on the topmost; else one attempt on every
/// retrying call; else that, and the fan-out from `count` too. When no call on any path retries,
/// the figure is all fan-out (`count`, and paths that meet), and so is the fix: fewer calls per
/// request, or a `max_amplification` that allows the fan-out if it is meant.
fn retry_amplification(model: &Model<'_>, s: usize, walker: &mut Walker, out: &mut Findings) {
    if !model.service_nodes[s].clone().any(|n| model.reachable[n]) {
        return;
    }
    let amplification = model.service_sum(s, &model.amplification);
    let limit = model.graph.check.max_amplification;
    if amplification <= limit {
        return;
    }
    let retry_layers = model.service_nodes[s]
        .clone()
        .map(|n| model.retry_layers[n])
        .max()
        .unwrap_or(0);
    let (message, fix, edits) = if retry_layers == 0 {
        // Batching calls is a change to the code, and raising the threshold the owner's choice.
        let (message, fix) = fan_out_only(model, s, walker, amplification, limit);
        (message, fix, Vec::new())
    } else {
        retried(model, s, walker, amplification, limit)
    };
    out.on_service(
        model,
        s,
        Said {
            rule: "retry-amplification",
            severity: Severity::Error,
            message,
            fix,
            value: Some(Figure::Number(amplification)),
            limit: Some(Figure::Number(limit)),
            edits,
        },
    );
}

/// The smallest `max_amplification` a figure meets, as the file would give it.
fn threshold_fix(figure: f64) -> String {
    format!("[check] max_amplification = {}", num_text(figure.ceil()))
}

/// Message and fix when no call on any path to `s` retries: the figure is the fan-out.
fn fan_out_only(
    model: &Model<'_>,
    s: usize,
    walker: &mut Walker,
    amplification: f64,
    limit: f64,
) -> (String, String) {
    let name = &model.services[s].name;
    let entry = &model.graph.entry.service;
    let counted = walker.calls_above(model, s, |u, i| model.nodes[u].calls[i].count > 1);
    let rest = format!("calls with a count above {name}");
    let none_counted = counted.calls.is_empty() && !counted.more;
    let cause = if none_counted {
        format!("the paths from {entry} that meet at {name}")
    } else {
        format!("count on {}", counted.text(model, &rest, with_count))
    };
    let message = format!(
        "{name} receives up to {} requests per user request, limit {}, though no call on any \
         path to it retries: the load is the fan-out from {cause}, which {name} serves on every \
         user request, not only when something fails",
        num_text(amplification),
        num_text(limit)
    );
    let fewer = if none_counted {
        format!("call {name} from fewer places per request (e.g. once, passing the answer down)")
    } else {
        format!(
            "batch the calls to lower count on {}",
            counted.text(model, &rest, plain)
        )
    };
    let fix = format!(
        "{fewer}, or {} if this fan-out is meant",
        threshold_fix(amplification)
    );
    (message, fix)
}

/// Message, fix and its edits when calls on the paths to `s` retry; the edits are the attempts
/// the fix names, not the fan-out, which no setting lowers.
fn retried(
    model: &Model<'_>,
    s: usize,
    walker: &mut Walker,
    amplification: f64,
    limit: f64,
) -> (String, String, Vec<Edit>) {
    let name = &model.services[s].name;
    let call = |u: usize, i: usize| &model.nodes[u].calls[i];
    let sustained = model.service_sum(s, &model.sustained);
    let with_budgets = if sustained < amplification {
        format!(
            "; {} sustained while the retry budgets hold, but a budget does not lower this worst \
             case",
            num_text(sustained)
        )
    } else {
        String::new()
    };
    let message = format!(
        "{name} receives up to {} attempts per user request when calls below {} fail, \
         limit {}{with_budgets}: retries multiply at every layer, so a struggling service gets a \
         multiple of its load exactly when it can least take it (Brooker)",
        num_text(amplification),
        model.graph.entry.service,
        num_text(limit)
    );
    let one_layer = model.service_sum(s, &model.one_layer_amplification);
    let fan_out = model.service_sum(s, &model.fan_out);
    let mut edits = Vec::new();
    let fix = if one_layer <= limit {
        // A call that is not idempotent is judged as any other: it retries only what never
        // reached its callee (`retries` and `attempts` count that), which is as safe at the
        // topmost layer as on an idempotent call.
        let layered = walker.calls_above(model, s, |u, i| {
            retries(call(u, i)) && model.retry_layers[u] >= 1
        });
        let topmost = walker.calls_above(model, s, |u, i| {
            attempts(call(u, i)) > 2 && model.retry_layers[u] == 0
        });
        edits.extend(layered.attempts_edits(model, "1"));
        edits.extend(topmost.attempts_edits(model, "2"));
        let mut changes = Vec::new();
        if !layered.calls.is_empty() || layered.more {
            changes.push(format!(
                "max_attempts = 1 on {}",
                layered.text(
                    model,
                    &format!("calls layered-retries flags above {name}"),
                    plain
                )
            ));
        }
        if !topmost.calls.is_empty() || topmost.more {
            changes.push(format!(
                "max_attempts = 2 on {}",
                topmost.text(
                    model,
                    &format!("topmost retrying calls above {name}"),
                    plain
                )
            ));
        }
        format!(
            "{}: retries at one layer, so {name} receives at most {}",
            changes.join(", and "),
            num_text(one_layer)
        )
    } else {
        let retrying = walker.calls_above(model, s, |u, i| retries(call(u, i)));
        edits.extend(retrying.attempts_edits(model, "1"));
        let no_retries = format!(
            "max_attempts = 1 on {}",
            retrying.text(model, &format!("retrying calls above {name}"), plain)
        );
        if fan_out <= limit {
            format!("{no_retries}: {name} then receives {}", num_text(fan_out))
        } else {
            let counted = walker.calls_above(model, s, |u, i| call(u, i).count > 1);
            let fewer = if counted.calls.is_empty() && !counted.more {
                String::new()
            } else {
                format!(
                    "batch the calls to lower count on {}, or ",
                    counted.text(model, &format!("calls with a count above {name}"), plain)
                )
            };
            format!(
                "{no_retries}; the fan-out alone then still gives {}: {fewer}{}",
                num_text(fan_out),
                threshold_fix(fan_out)
            )
        }
    };
    (message, fix, edits)
}
