//! Fitting a service's worst case within a budget by cutting the timeouts of its calls: what
//! `entry-budget` does to the entry against what a user waits, and `timeout-inversion` to a
//! callee against what its caller waits. Both then name timeouts checked against the model's own
//! sum, so setting them stops the rule.

use std::time::Duration;

use super::{call_name, duration_value, set};
use crate::check::figures::{attempts, backoff_ms, Model};
use crate::model::Call;
use crate::report::Edit;

/// Node `s`'s calls as they run (see [`Model::groups`]), each with its cost, costliest first;
/// of two that cost the same, the earlier in the file first (a stable sort).
pub(super) fn costly_groups(model: &Model<'_>, s: usize) -> Vec<(Vec<usize>, f64)> {
    let mut groups: Vec<(Vec<usize>, f64)> = model
        .groups(s)
        .into_iter()
        .map(|group| {
            let cost = model.group_cost_ms(s, &group);
            (group, cost)
        })
        .collect();
    groups.sort_by(|a, b| b.1.total_cmp(&a.1));
    groups
}

/// New timeouts for a service's calls that bring its worst case within a budget.
pub(super) struct Fit {
    /// What was cut, as a fix names it: "the call", "the parallel run", "its calls".
    pub what: &'static str,
    /// What that costs now, in ms.
    pub cost_ms: f64,
    /// The new timeout of each call cut, by index.
    pub cuts: Vec<(usize, Duration)>,
    /// The service's worst case with the cuts, in ms.
    pub worst_ms: f64,
}

impl Fit {
    /// `timeout = "X" on a -> b`, one per cut.
    pub fn settings(&self, model: &Model<'_>, s: usize) -> Vec<String> {
        self.cuts
            .iter()
            .map(|&(i, timeout)| {
                let call = &model.nodes[s].calls[i];
                // The connect timeout is inside the attempt's: it follows a cut below it.
                let connect = match call.connect_timeout {
                    Some(connect) if connect > timeout => {
                        format!(" (and connect_timeout = {})", duration_value(timeout))
                    }
                    _ => String::new(),
                };
                format!(
                    "timeout = {}{connect} on {}",
                    duration_value(timeout),
                    call_name(model, s, i)
                )
            })
            .collect()
    }

    /// The cuts as the settings `check --fix` writes.
    pub fn edits(&self, model: &Model<'_>, s: usize) -> Vec<Edit> {
        self.cuts
            .iter()
            .map(|&(i, timeout)| set(model, s, i, "timeout", &duration_value(timeout)))
            .collect()
    }
}

/// New timeouts for `s`'s calls (`groups`, costliest first) that bring its worst case within
/// `budget_ms`, each one `viable` accepts (by call index and timeout): the costliest group that
/// can absorb the whole excess alone, else every group cut in the same proportion. `None` when
/// neither can (the service's own work alone is over the budget, or a cut is not viable).
///
/// One group first, since a fix that changes one setting is easier to review than one that
/// changes them all.
pub(super) fn within(
    model: &Model<'_>,
    s: usize,
    groups: &[(Vec<usize>, f64)],
    budget_ms: f64,
    viable: impl Fn(usize, Duration) -> bool,
) -> Option<Fit> {
    let viable = |cuts: &[(usize, Duration)]| cuts.iter().all(|&(i, t)| viable(i, t));
    let excess = model.worst_case_ms[s] - budget_ms;
    let one = groups.iter().find_map(|(group, cost)| {
        let cuts = cut_group(model, s, group, cost - excess, budget_ms)?;
        if !viable(&cuts) {
            return None;
        }
        let what = if group.len() == 1 {
            "the call"
        } else {
            "the parallel run"
        };
        Some(Fit {
            what,
            cost_ms: *cost,
            worst_ms: model.worst_case_ms_with(s, &cuts),
            cuts,
        })
    });
    one.or_else(|| {
        let cuts = cut_in_proportion(model, s, groups, budget_ms)?;
        viable(&cuts).then(|| Fit {
            what: "its calls",
            cost_ms: groups.iter().map(|(_, cost)| cost).sum(),
            worst_ms: model.worst_case_ms_with(s, &cuts),
            cuts,
        })
    })
}

/// Every group of `s`'s calls cut to the same share of its cost, the share that leaves room for
/// `s`'s own work within `budget_ms`; `None` when its own work fills the budget or a call cannot
/// get there.
fn cut_in_proportion(
    model: &Model<'_>,
    s: usize,
    groups: &[(Vec<usize>, f64)],
    budget_ms: f64,
) -> Option<Vec<(usize, Duration)>> {
    let room = budget_ms - model.own_worst_ms(s);
    let total: f64 = groups.iter().map(|(_, cost)| cost).sum();
    if room <= 0.0 || total <= 0.0 {
        return None;
    }
    let share = room / total;
    let mut cuts = Vec::new();
    for (group, cost) in groups {
        cuts.extend(cuts_to(model, s, group, cost * share)?);
    }
    settled(model, s, cuts, budget_ms)
}

/// [`cuts_to`] `target` for one group, [`settled`] within `budget_ms`.
fn cut_group(
    model: &Model<'_>,
    s: usize,
    group: &[usize],
    target: f64,
    budget_ms: f64,
) -> Option<Vec<(usize, Duration)>> {
    let cuts = cuts_to(model, s, group, target)?;
    settled(model, s, cuts, budget_ms)
}

/// The timeouts that bring every call of `group` (of service `s`) to cost at most `target` ms,
/// for the calls above it; `None` when one cannot get there with a timeout of at least a µs.
fn cuts_to(
    model: &Model<'_>,
    s: usize,
    group: &[usize],
    target: f64,
) -> Option<Vec<(usize, Duration)>> {
    if target <= 0.0 {
        return None;
    }
    group
        .iter()
        .filter(|&&i| model.call_cost_ms(s, i) > target)
        .map(|&i| Some((i, timeout_within(&model.nodes[s].calls[i], target)?)))
        .collect()
}

/// `cuts` if they bring `s`'s worst case, as the model sums it, within `budget_ms`; else each one
/// unit lower, when float noise put the exact value a hair over; `None` when that is still over.
fn settled(
    model: &Model<'_>,
    s: usize,
    mut cuts: Vec<(usize, Duration)>,
    budget_ms: f64,
) -> Option<Vec<(usize, Duration)>> {
    if model.worst_case_ms_with(s, &cuts) <= budget_ms {
        return Some(cuts);
    }
    for cut in &mut cuts {
        cut.1 = step_down(cut.1)?;
    }
    (model.worst_case_ms_with(s, &cuts) <= budget_ms).then_some(cuts)
}

/// The longest timeout, a whole ms (or µs below 1 ms), with which `call` costs at most
/// `target` ms; `None` when even a µs is too long. One below the call's connect timeout takes
/// the connect timeout down with it ([`Fit::settings`] says so, and `check --fix` writes both):
/// a connect timeout sized to ride out a lost SYN once made the cut impossible, and the fix
/// said no value fixed the graph.
fn timeout_within(call: &Call, target: f64) -> Option<Duration> {
    let tries = f64::from(attempts(call));
    let waited = (target / f64::from(call.count) - backoff_ms(call)) / tries;
    // A whole value computed as 74.99999999999999 is still 75.
    let whole_ms = (waited + 1e-9).floor();
    if whole_ms >= 1.0 {
        return Some(Duration::from_millis(whole_ms as u64));
    }
    let micros = (waited * 1000.0 + 1e-6).floor();
    (micros >= 1.0).then(|| Duration::from_micros(micros as u64))
}

/// One unit (a ms, or a µs below 2 ms) shorter, the precision [`timeout_within`] gives.
fn step_down(timeout: Duration) -> Option<Duration> {
    let unit = if timeout >= Duration::from_millis(2) && timeout.subsec_micros() % 1000 == 0 {
        Duration::from_millis(1)
    } else {
        Duration::from_micros(1)
    };
    timeout.checked_sub(unit).filter(|t| !t.is_zero())
}
