//! `over-capacity` and `retries-over-capacity`: the load a service must carry at the entry's
//! rate against what its workers can carry (Little's law).
//!
//! Every other rule judges what happens when something fails; these judge whether a service can
//! carry its load at all, and whether the retries above it can keep it over capacity once a
//! failure has made them retry. The second is the metastable failure of Bronson et al.
//! (HotOS'21): the trigger ends, the retries do not, and the service never catches up
//! (`examples/graphs/retry-storm.toml`).
//!
//! The model is the simulator's, so that `check` and `sim` agree: a request holds one of its
//! instance's `concurrency` workers from the start of its own work until it answers, its calls
//! included; its own work is drawn from the lognormal fitted to its p50 and p99, plus
//! `contention` for every other request holding a worker on the instance. With every worker
//! busy, an instance serves `concurrency / hold` requests a second, where `hold` is the mean
//! own latency (the lognormal's mean, not its median), plus `contention x (concurrency - 1)`,
//! plus its calls' mean time ([`Model::mean_hold_ms`]). A service with endpoints is judged on
//! the mix of its endpoints' holds in the shares of its load.

use std::fmt::Write;

use stormguard::duration::format;

use super::{Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{ms, Model};
use crate::parse::ranges::{Bounds, CONCURRENCY, INSTANCES};
use crate::report::Severity;

/// The utilisation a fix sizes a service for: 70%, the usual headroom, since a queue's wait
/// grows without bound as utilisation nears 1 (at 70% an M/M/1 queue waits 2.3 times the
/// service time; at 95%, 19 times), and so that a spike or a few retries still fit.
pub(super) const HEADROOM: f64 = 0.7;

/// Every capacity rule on service `svc`: judged on the service as a whole, since its endpoints
/// share its workers.
pub(super) fn on_service(model: &Model<'_>, svc: usize, out: &mut Findings) {
    let normal = Load::of(model, svc, &model.fan_out);
    if normal.per_sec <= 0.0 {
        return;
    }
    let worst = Load::of(model, svc, &model.amplification);
    if normal.per_sec > normal.capacity {
        out.on_service(model, svc, over_capacity(model, svc, &normal, &worst));
        return;
    }
    let sustained = Load::of(model, svc, &model.sustained);
    if sustained.per_sec > sustained.capacity {
        out.on_service(model, svc, retries_held(model, svc, &normal, &sustained));
    } else if worst.per_sec > worst.capacity {
        out.on_service(
            model,
            svc,
            retries_burst(model, svc, &normal, &sustained, &worst),
        );
    }
}

/// The requests a second a service receives under one of the model's per-user-request figures
/// (fan-out, worst-case or sustained amplification), and what it can carry of that mix.
struct Load {
    /// Requests a second: the entry's rate times the figure, summed over the service's nodes.
    per_sec: f64,
    /// The mean time a request of this mix holds a worker with every worker busy, in ms.
    hold_ms: f64,
    /// The requests a second its workers carry: `instances x concurrency / hold`.
    capacity: f64,
    /// `hold_ms` without contention, for a fix that changes the concurrency.
    free_hold_ms: f64,
    /// Contention per other request in flight, in ms.
    contention_ms: f64,
}

impl Load {
    fn of(model: &Model<'_>, svc: usize, figure: &[f64]) -> Load {
        let service = model.services[svc];
        let rate = model.graph.entry.rate;
        let contention_ms = ms(service.contention);
        let concurrency = f64::from(service.concurrency.max(1));
        let mut per_sec = 0.0;
        let mut held = 0.0;
        for n in model.service_nodes[svc].clone() {
            if !model.reachable[n] {
                continue;
            }
            let r = rate * figure[n];
            per_sec += r;
            held += r * model.mean_hold_ms[n];
        }
        let free_hold_ms = if per_sec > 0.0 { held / per_sec } else { 0.0 };
        let hold_ms = free_hold_ms + contention_ms * (concurrency - 1.0);
        let capacity = capacity(service.instances, concurrency, hold_ms);
        Load {
            per_sec,
            hold_ms,
            capacity,
            free_hold_ms,
            contention_ms,
        }
    }

    /// `instances = N` that carries this load at [`HEADROOM`], within the range a file may hold.
    fn instances_needed(&self, concurrency: u32) -> Option<u32> {
        let needed =
            (self.per_sec * self.hold_ms / 1000.0 / (HEADROOM * f64::from(concurrency))).ceil();
        let Bounds::Whole(_, max) = INSTANCES.bounds else {
            unreachable!("instances are whole")
        };
        (needed <= max as f64).then_some(needed.max(1.0) as u32)
    }

    /// `concurrency = N` that carries this load at [`HEADROOM`] on `instances`, if any: each
    /// worker more adds its contention to every request's hold, so an instance never carries
    /// more than `1 / contention` a second, however many workers it has.
    fn concurrency_needed(&self, instances: u32) -> Option<u32> {
        let target = self.per_sec / (HEADROOM * f64::from(instances)) / 1000.0; // per ms
        let (a, c) = (self.free_hold_ms, self.contention_ms);
        // n / (a + c (n - 1)) >= target  <=>  n (1 - target c) >= target (a - c).
        let room = 1.0 - target * c;
        if room <= 0.0 {
            return None;
        }
        let needed = (target * (a - c) / room).ceil().max(1.0);
        let Bounds::Whole(_, max) = CONCURRENCY.bounds else {
            unreachable!("concurrency is whole")
        };
        (needed <= max as f64).then_some(needed as u32)
    }
}

/// Requests a second that `instances x concurrency` workers carry when each is held `hold_ms`.
fn capacity(instances: u32, concurrency: f64, hold_ms: f64) -> f64 {
    if hold_ms <= 0.0 {
        return f64::INFINITY;
    }
    f64::from(instances) * concurrency / (hold_ms / 1000.0)
}

/// A rate in requests a second, as messages write it: whole above 10, else two decimals.
fn per_sec(x: f64) -> String {
    if x >= 10.0 && x.is_finite() {
        format!("{x:.0}/s")
    } else {
        format!("{}/s", super::num_text((x * 100.0).round() / 100.0))
    }
}

/// How the capacity was computed, for a message: the workers, and what a request holds one
/// for, part by part.
fn how(model: &Model<'_>, svc: usize, load: &Load) -> String {
    let service = model.services[svc];
    let own = model.own_mean_ms(model.service_nodes[svc].start);
    let mut out = format!(
        "{} instance{} x {} workers / {:.1}ms held per request ({:.1}ms own work, the mean of \
         the lognormal fitted to its p50 and p99",
        service.instances,
        if service.instances == 1 { "" } else { "s" },
        service.concurrency,
        load.hold_ms,
        own,
    );
    let calls = load.free_hold_ms - own;
    if calls >= 0.05 {
        let _ = write!(out, ", + {calls:.1}ms waiting on its calls");
    }
    if load.contention_ms > 0.0 {
        let _ = write!(
            out,
            ", + contention {} x {} other requests in flight",
            format(service.contention),
            service.concurrency.saturating_sub(1)
        );
    }
    out.push(')');
    out
}

/// The fix's sizing: `instances = N` or `concurrency = M` carrying `load` at [`HEADROOM`].
fn sizing(model: &Model<'_>, svc: usize, load: &Load) -> String {
    let service = model.services[svc];
    let instances = load.instances_needed(service.concurrency);
    let concurrency = load.concurrency_needed(service.instances);
    let pct = (HEADROOM * 100.0).round();
    let what = format!("carry {} at {pct}% utilisation", per_sec(load.per_sec));
    match (instances, concurrency) {
        (Some(i), Some(c)) => format!(
            "instances = {i}, or concurrency = {c} if an instance can work on that many requests \
             at once: either would {what}"
        ),
        (Some(i), None) => format!(
            "instances = {i}, which would {what} (no concurrency would: each worker more adds \
             its contention to every request)"
        ),
        (None, Some(c)) => format!(
            "concurrency = {c} if an instance can work on that many requests at once, which \
             would {what}"
        ),
        (None, None) => format!(
            "no instances or concurrency a file may hold would {what}: cut its latency or the \
             calls that reach it"
        ),
    }
}

/// `over-capacity` (error): the service's normal load, with no failure and no retry, is above
/// what its workers carry, so requests queue until its queues fill and then are rejected.
fn over_capacity(model: &Model<'_>, svc: usize, normal: &Load, worst: &Load) -> Said {
    let name = &model.services[svc].name;
    let rate = model.graph.entry.rate;
    let lost = (1.0 - normal.capacity / normal.per_sec) * 100.0;
    let retried = if worst.per_sec > normal.per_sec {
        format!(
            "; with every attempt at the worst failure it would get {}",
            per_sec(worst.per_sec)
        )
    } else {
        String::new()
    };
    Said {
        rule: "over-capacity",
        severity: Severity::Error,
        message: format!(
            "{name} must carry {} at {} user requests/s (its endpoints' shares and the calls' \
             counts, no retry) but can carry {}: {} (Little's law). With no fault at all its \
             queues fill and about {lost:.0}% of its requests are rejected{retried}",
            per_sec(normal.per_sec),
            super::num_text(rate),
            per_sec(normal.capacity),
            how(model, svc, normal),
        ),
        fix: sizing(model, svc, normal),
        value: Some(Figure::Number(normal.per_sec)),
        limit: Some(Figure::Number(normal.capacity)),
        // How many instances to run is the deployment's choice, not a call's setting.
        edits: Vec::new(),
    }
}

/// `retries-over-capacity` (error): the retries the calls above make while their budgets hold
/// carry the service over capacity, so once a failure has made them retry, the retries alone
/// keep it overloaded after the failure ends: a metastable failure.
fn retries_held(model: &Model<'_>, svc: usize, normal: &Load, sustained: &Load) -> Said {
    let name = &model.services[svc].name;
    Said {
        rule: "retries-over-capacity",
        severity: Severity::Error,
        message: format!(
            "{name} carries its normal load of {} but, with the retries the calls above it make \
             while their retry budgets hold (sustained amplification), gets {} against the {} \
             it can carry: {}. Once a failure makes its callers retry, the retries alone hold \
             it over capacity, its answers stay slow enough to be retried, and it stays down \
             after the failure ends (a metastable failure)",
            per_sec(normal.per_sec),
            per_sec(sustained.per_sec),
            per_sec(sustained.capacity),
            how(model, svc, sustained),
        ),
        fix: format!(
            "a retry budget on the retrying calls above it (retry_budget = {{ ratio = 0.1, \
             min_per_sec = 10 }} caps their retries at a tenth of their requests), or {}",
            sizing(model, svc, sustained)
        ),
        value: Some(Figure::Number(sustained.per_sec)),
        limit: Some(Figure::Number(sustained.capacity)),
        edits: Vec::new(),
    }
}

/// `retries-over-capacity` (warning): every attempt at the worst failure carries the service
/// over capacity, but the budgets above it cap the retries within it once drained, so it
/// queues and rejects during the burst and recovers after.
fn retries_burst(
    model: &Model<'_>,
    svc: usize,
    normal: &Load,
    sustained: &Load,
    worst: &Load,
) -> Said {
    let name = &model.services[svc].name;
    Said {
        rule: "retries-over-capacity",
        severity: Severity::Warning,
        message: format!(
            "{name} carries its normal load of {} but, with every attempt the calls above it \
             may make at the worst failure, gets {} against the {} it can carry: {}. Their retry \
             budgets bring that to {} once drained, within capacity, so it recovers after the \
             failure, but the burst before queues and is rejected",
            per_sec(normal.per_sec),
            per_sec(worst.per_sec),
            per_sec(worst.capacity),
            how(model, svc, worst),
            per_sec(sustained.per_sec),
        ),
        fix: format!(
            "fewer attempts above it (retry-amplification and layered-retries name the calls), \
             or {}",
            sizing(model, svc, worst)
        ),
        value: Some(Figure::Number(worst.per_sec)),
        limit: Some(Figure::Number(worst.capacity)),
        edits: Vec::new(),
    }
}
