//! `queue-outlives-caller`: a FIFO queue that can hold a request longer than its callers wait.
//!
//! Under sustained overload a FIFO queue fills and stays full, and the request a free worker
//! takes is the one that has waited longest: a full queue's worth of work. When that wait is
//! longer than the callers' timeout, every request the service works on is one whose caller
//! has already given up, and goodput collapses while every worker is busy (Cockcroft:
//! processing the oldest first "is often a bad policy, as you may never get to do work that
//! someone is still actually waiting for"; `examples/graphs/queue-overload.toml`, where `sim`
//! measures 9% goodput with FIFO against 55% to 68% with the cures).
//!
//! The wait is the simulator's: `queue` requests ahead, served `concurrency` at a time, each
//! holding its worker for the capacity rule's mean hold ([`super::capacity`]). The callers'
//! wait is the shortest per-attempt `timeout` of the calls into the service, and the users'
//! `entry.timeout` for the entry service.

use stormguard::duration::format;

use super::{Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{ms, Model};
use crate::model::QueueDiscipline;
use crate::report::{Edit, Severity};

/// The callers' shortest wait, in ms, and who waits that long (`web -> search waits`, or
/// `users wait`).
fn shortest_wait(model: &Model<'_>, svc: usize) -> Option<(f64, String)> {
    let mut shortest: Option<(f64, String)> = None;
    let mut consider = |wait_ms: f64, who: String| {
        if shortest.as_ref().is_none_or(|(least, _)| wait_ms < *least) {
            shortest = Some((wait_ms, who));
        }
    };
    if model.entry == Some(svc) {
        consider(ms(model.graph.entry.timeout), "users wait".to_string());
    }
    for n in model.service_nodes[svc].clone() {
        for &(caller, i) in &model.callers[n] {
            if let Some(timeout) = model.nodes[caller].calls[i].timeout {
                consider(ms(timeout), super::call_name(model, caller, i) + " waits");
            }
        }
    }
    shortest
}

/// The mean time a request of service `svc` holds a worker with every worker busy, in ms: its
/// nodes' holds in the shares the entry sends them (their plain mean where none reaches),
/// plus its contention from every other worker.
fn hold_ms(model: &Model<'_>, svc: usize) -> f64 {
    let nodes = model.service_nodes[svc].clone();
    let weight = |n: usize| {
        if model.reachable[n] {
            model.fan_out[n]
        } else {
            0.0
        }
    };
    let total: f64 = nodes.clone().map(weight).sum();
    let free = if total > 0.0 {
        nodes
            .map(|n| weight(n) * model.mean_hold_ms[n])
            .sum::<f64>()
            / total
    } else {
        let count = nodes.len().max(1) as f64;
        nodes.map(|n| model.mean_hold_ms[n]).sum::<f64>() / count
    };
    let service = model.services[svc];
    free + ms(service.contention) * f64::from(service.concurrency.saturating_sub(1))
}

/// `queue-outlives-caller` on service `svc`, a warning.
pub(super) fn on_service(model: &Model<'_>, svc: usize, out: &mut Findings) {
    let service = model.services[svc];
    if service.queue_discipline != QueueDiscipline::Fifo
        || service.queue_timeout.is_some()
        || service.queue == 0
    {
        return;
    }
    let Some((caller_ms, who)) = shortest_wait(model, svc) else {
        return;
    };
    let hold = hold_ms(model, svc);
    let wait_ms = f64::from(service.queue) * hold / f64::from(service.concurrency.max(1));
    if wait_ms <= caller_ms {
        return;
    }
    // Half of what the caller's timeout leaves after the work: the rest is for the work's tail.
    let timeout_ms = ((caller_ms - hold) / 2.0).floor();
    let queue_timeout = (timeout_ms >= 1.0).then(|| {
        format!(
            ", or keep FIFO with queue_timeout = \"{}\" (half of what {} leaves after the work: \
             a 503 for what waited longer)",
            super::ms_text(timeout_ms),
            super::ms_text(caller_ms),
        )
    });
    out.on_service(
        model,
        svc,
        Said {
            rule: "queue-outlives-caller",
            severity: Severity::Warning,
            message: format!(
                "{}'s FIFO queue holds up to {} requests per instance, {} of work at {} workers \
                 x {hold:.1}ms held per request, past the {} {who}: under sustained \
                 overload it works only on requests whose callers have given up, and goodput \
                 collapses while every worker is busy (the oldest first \"is often a bad \
                 policy, as you may never get to do work that someone is still actually \
                 waiting for\", Cockcroft)",
                service.name,
                service.queue,
                super::ms_text(wait_ms),
                service.concurrency,
                format(std::time::Duration::from_secs_f64(caller_ms / 1000.0)),
            ),
            fix: format!(
                "queue_discipline = \"codel\" (Facebook's adaptive LIFO with CoDel: once the \
                 queue has not emptied for 100ms, the newest first and a 503 for what waited \
                 over 5ms){}",
                queue_timeout.unwrap_or_default()
            ),
            value: Some(Figure::Ms(wait_ms)),
            limit: Some(Figure::Ms(caller_ms)),
            edits: vec![Edit::on_service(
                &service.name,
                "queue_discipline",
                "\"codel\"",
            )],
        },
    );
}
