//! How much work one run may do, so that no graph, rate or duration makes `sim` run for hours
//! or grow to gigabytes with nothing to show.
//!
//! ## Why bounds of its own
//! The file's values are bounded one by one (`stormguard_graph::parse::ranges`: a rate of at most
//! a million a second, a run of at most a day), but work is their product: a million users a
//! second for a day, or a call with `count = 1000` below another, is more attempts than any
//! machine simulates, and a run that will never end looks exactly like one that is slow. So a
//! run is refused before its first event when what it must do at the least is over a bound (its
//! user requests; its timeline; the attempts its calls' counts make without a single retry), and
//! stopped while it runs when it grows past one (attempts simulated; events pending, which is
//! its memory), each time with what was too much and what to lower. A call cycle is refused
//! before anything (one request would circle until every timeout on the way expired, with
//! nothing to bound its depth), with `check`'s own `call-cycle` message.
//!
//! The bounds are far above what a run that tells anything needs (the README's runs are at
//! most tens of thousands of requests), and well below what exhausts a laptop: at two million
//! attempts a second, the most attempts take under two minutes.

use std::time::Duration;

use stormguard_graph::model::Graph;

use super::model::Model;
use super::SimError;

/// The most user requests one run may bring: rate × duration, load steps included. Ten million
/// is three hours at a thousand a second, and its latencies alone are 160 MB.
pub const MAX_USER_REQUESTS: f64 = 10_000_000.0;

/// The most cells (seconds × services) of one run's timeline, 16 bytes each: a day of a
/// hundred services.
pub const MAX_TIMELINE_CELLS: u64 = 10_000_000;

/// The most cells of one run's balancers: each calling instance keeps, per call, a count and an
/// outlier detector's record (some 50 bytes) per instance called, as each sidecar does.
pub const MAX_BALANCER_CELLS: u64 = 5_000_000;

/// The most attempts one run may simulate, users' requests included: under two minutes of a
/// core at the simulator's two million attempts a second.
pub const MAX_ATTEMPTS: u64 = 200_000_000;

/// The most events one run may hold pending at once (tens of bytes each, with what they are
/// about): what bounds its memory while it runs.
pub const MAX_PENDING: usize = 10_000_000;

/// Refuses a graph whose calls form a cycle, with `check`'s message and the place of the call
/// that closes it.
pub(crate) fn refuse_cycles(graph: &Graph) -> Result<(), SimError> {
    let report = stormguard_graph::check::check(graph);
    let Some(cycle) = report.findings.iter().find(|f| f.rule == "call-cycle") else {
        return Ok(());
    };
    Err(SimError::CallCycle {
        span: cycle.span,
        call: format!(
            "{} -> {}",
            cycle.from.as_deref().unwrap_or("?"),
            cycle.to.as_deref().unwrap_or("?")
        ),
        // check's message, less what it says of its own figures.
        message: cycle
            .message
            .replace("; the figures leave this call out", ""),
    })
}

/// Refuses a run whose least work is over a bound, before its first event.
pub(crate) fn refuse_unbounded(model: &Model) -> Result<(), SimError> {
    let duration = stormguard::duration::format(model.duration);
    let requests = model.load.expected_requests();
    if requests > MAX_USER_REQUESTS {
        return Err(SimError::Bound(format!(
            "{} user requests over {duration} ({}) are more than the {} one run may bring: \
             lower the rate or the duration (e.g. --duration)",
            whole(requests),
            rate_said(model, requests),
            whole(MAX_USER_REQUESTS),
        )));
    }
    let steps = model.duration.as_nanos().div_ceil(1_000_000_000) as u64;
    let cells = steps.saturating_mul(model.services.len() as u64);
    if cells > MAX_TIMELINE_CELLS {
        return Err(SimError::Bound(format!(
            "a timeline of {} services over {steps} seconds is {cells} cells, more than the {} \
             one run may keep: shorten the run (e.g. --duration) or simulate fewer services",
            model.services.len(),
            MAX_TIMELINE_CELLS,
        )));
    }
    let balancers: u64 = model
        .edges
        .iter()
        .map(|edge| {
            let callers = model.services[edge.from].instances as u64;
            callers * model.services[edge.to].instances as u64
        })
        .sum();
    if balancers > MAX_BALANCER_CELLS {
        return Err(SimError::Bound(format!(
            "the calls' balancers hold {balancers} counts (each calling instance, per call, one \
             per instance called), more than the {MAX_BALANCER_CELLS} one run may keep: model \
             the fleets as fewer, larger instances"
        )));
    }
    let each = attempts_per_request(model);
    let attempts = requests * each;
    if attempts > MAX_ATTEMPTS as f64 {
        return Err(SimError::Bound(format!(
            "{} user requests over {duration} at {} attempts each (the calls' counts, without \
             a single retry) are {} attempts, more than the {} one run may simulate: lower the \
             rate, the duration or the calls' counts",
            whole(requests),
            whole(each),
            whole(attempts),
            whole(MAX_ATTEMPTS as f64),
        )));
    }
    Ok(())
}

/// Why a run is stopped while it runs, if it is: `attempts` simulated so far, `pending` events,
/// at virtual time `at`.
pub(crate) fn stop(model: &Model, attempts: u64, pending: usize, at: u64) -> Result<(), SimError> {
    let reached = || {
        format!(
            "stopped at {} of virtual time, of a {} run",
            stormguard::duration::format(Duration::from_millis(at / 1_000_000)),
            stormguard::duration::format(model.duration)
        )
    };
    if attempts > MAX_ATTEMPTS {
        return Err(SimError::Bound(format!(
            "{}: {MAX_ATTEMPTS} attempts simulated, the most one run may; the graph's retries \
             and counts multiply each user request too much at this rate: lower the rate or \
             the duration, or bound the retries (max_attempts, retry_budget)",
            reached()
        )));
    }
    if pending > MAX_PENDING {
        return Err(SimError::Bound(format!(
            "{}: {MAX_PENDING} events pending at once, the most one run may hold; requests pile \
             up faster than they end: lower the rate, or give the calls timeouts",
            reached()
        )));
    }
    Ok(())
}

/// `n` rounded, with thousands separated: `10,000,000`.
fn whole(n: f64) -> String {
    // Past 10^15 a float's digits are noise: 1.2e300, not three hundred of them.
    if n >= 1e15 {
        return format!("{:.3e}", n).replace(".000e", "e");
    }
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// "N a second" when the load is one rate throughout, else "load steps included".
fn rate_said(model: &Model, requests: f64) -> String {
    if model.load.steps.is_empty() {
        format!("{} a second", model.load.base)
    } else {
        let seconds = model.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        format!(
            "{} a second on average, load steps included",
            whole(requests / seconds)
        )
    }
}

/// The attempts one user request makes at the least: itself, and every call below it `count`
/// times, each call to a service with endpoints in their shares, without a single retry or hedge.
///
/// Computed callee first over the endpoints (a depth-first search without recursion, so a chain
/// of ten thousand services does not overflow the stack); a call that closes a cycle (which
/// [`refuse_cycles`] refuses first) counts as its one attempt.
pub(crate) fn attempts_per_request(model: &Model) -> f64 {
    let first: Vec<usize> = model
        .services
        .iter()
        .scan(0, |next, s| {
            let at = *next;
            *next += s.endpoints.len();
            Some(at)
        })
        .collect();
    let nodes = first
        .last()
        .map_or(0, |&f| f + model.services[first.len() - 1].endpoints.len());
    // The share of each endpoint of its service's requests.
    let shares = |s: usize| {
        let endpoints = &model.services[s].endpoints;
        let total = endpoints
            .last()
            .map_or(1.0, |e| e.up_to)
            .max(f64::MIN_POSITIVE);
        let mut below = 0.0;
        endpoints
            .iter()
            .enumerate()
            .map(move |(e, endpoint)| {
                let share = (endpoint.up_to - below) / total;
                below = endpoint.up_to;
                (e, share)
            })
            .collect::<Vec<_>>()
    };
    // The nodes one repetition of `edge` reaches, each with its share.
    let targets = |edge: usize| -> Vec<(usize, f64)> {
        let edge = &model.edges[edge];
        match edge.to_endpoint {
            Some(e) => vec![(first[edge.to] + e, 1.0)],
            None => shares(edge.to)
                .into_iter()
                .map(|(e, share)| (first[edge.to] + e, share))
                .collect(),
        }
    };
    let edges_of = |node: usize| -> Vec<usize> {
        let s = first.partition_point(|&f| f <= node) - 1;
        model.services[s].endpoints[node - first[s]]
            .runs
            .iter()
            .flatten()
            .copied()
            .collect()
    };
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes];
    let mut each = vec![1.0; nodes];
    for root in 0..nodes {
        if state[root] != NEW {
            continue;
        }
        let mut stack = vec![root];
        while let Some(&node) = stack.last() {
            if state[node] == NEW {
                state[node] = OPEN;
                for edge in edges_of(node) {
                    for (target, _) in targets(edge) {
                        if state[target] == NEW {
                            stack.push(target);
                        }
                    }
                }
                continue;
            }
            stack.pop();
            if state[node] == DONE {
                continue;
            }
            state[node] = DONE;
            each[node] = 1.0
                + edges_of(node)
                    .into_iter()
                    .map(|edge| {
                        let reached: f64 = targets(edge)
                            .into_iter()
                            .map(|(target, share)| {
                                // A target still open closes a cycle: its one attempt.
                                let below = if state[target] == DONE {
                                    each[target]
                                } else {
                                    1.0
                                };
                                share * below
                            })
                            .sum();
                        f64::from(model.edges[edge].count) * reached
                    })
                    .sum::<f64>();
        }
    }
    shares(model.entry)
        .into_iter()
        .map(|(e, share)| share * each[first[model.entry] + e])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(whole(0.0), "0");
        assert_eq!(whole(999.4), "999");
        assert_eq!(whole(1000.0), "1,000");
        assert_eq!(whole(10_000_000.0), "10,000,000");
        // Past 10^15, no digits of float noise.
        assert_eq!(whole(1e300), "1e300");
        assert_eq!(whole(1.2345e20), "1.234e20");
    }
}
