//! Policy values as the graph file writes them (durations, lists, status conditions), shared by
//! the Gateway API and Linkerd readers, and the notes written once per file.

use std::time::Duration;

use crate::inventory::Inventory;
use crate::source::Origin;

/// The longest timeout or wait the graph accepts (its range: 1ms to 1h).
const MAX: Duration = Duration::from_secs(3600);

/// A duration as the graph writes it: whole seconds as `"2s"`, anything else in whole
/// milliseconds rounded up (`"1500ms"`, `"1ms"` for 10us: the graph has no sub-millisecond
/// timeout), with the quotes. A duration over an hour is written as one hour and `true` is
/// returned, so that the caller lists the clamp.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::gateway::values::duration;
/// assert_eq!(duration(Duration::from_millis(1500)), ("\"1500ms\"".to_string(), false));
/// assert_eq!(duration(Duration::from_secs(2)), ("\"2s\"".to_string(), false));
/// assert_eq!(duration(Duration::from_micros(10)), ("\"1ms\"".to_string(), false));
/// assert_eq!(duration(Duration::from_secs(7200)), ("\"3600s\"".to_string(), true));
/// ```
pub fn duration(d: Duration) -> (String, bool) {
    if d > MAX {
        return ("\"3600s\"".to_string(), true);
    }
    if d.subsec_nanos() == 0 && d.as_secs() > 0 {
        return (format!("\"{}s\"", d.as_secs()), false);
    }
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    (format!("\"{ms}ms\""), false)
}

/// Writes `duration(d)`, and lists a clamp at `origin`.
pub(crate) fn duration_noting(d: Duration, origin: &Origin, inv: &mut Inventory) -> String {
    let (text, clamped) = duration(d);
    if clamped {
        inv.unread(
            origin.clone(),
            "a duration over 1h",
            "written as 1h: the graph's timeouts and waits are 1ms to 1h",
        );
    }
    text
}

/// A TOML list of strings: `["5xx", "reset"]`.
///
/// ```
/// let items = vec!["5xx".to_string(), "reset".to_string()];
/// assert_eq!(stormguard_mesh::gateway::values::list(&items), "[\"5xx\", \"reset\"]");
/// ```
pub fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `retry_on` conditions of an inclusive HTTP status range, in the graph's names: the whole
/// 5xx range is `5xx`, 502 to 504 is `gateway-error` (the graph's meaning of both is exactly
/// those statuses), anything else each status from 400 to 599 alone. Statuses below 400 are
/// not errors the graph retries: the second value says how many were left out.
///
/// ```
/// use stormguard_mesh::gateway::values::status_conditions;
/// assert_eq!(status_conditions(500, 599), (vec!["5xx".to_string()], 0));
/// assert_eq!(status_conditions(502, 504), (vec!["gateway-error".to_string()], 0));
/// assert_eq!(status_conditions(500, 501), (vec!["500".to_string(), "501".to_string()], 0));
/// assert_eq!(status_conditions(399, 400), (vec!["400".to_string()], 1));
/// ```
pub fn status_conditions(min: u16, max: u16) -> (Vec<String>, u16) {
    let below = if min < 400 && min <= max {
        max.min(399) - min + 1
    } else {
        0
    };
    let (low, high) = (min.max(400), max.min(599));
    if (low, high) == (500, 599) {
        return (vec!["5xx".to_string()], below);
    }
    if (low, high) == (502, 504) {
        return (vec!["gateway-error".to_string()], below);
    }
    ((low..=high).map(|s| s.to_string()).collect(), below)
}

/// Adds `items` to `list`, keeping the first of each.
pub(crate) fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Lists `what` at `origin` unless this file already lists it: a note that holds for the whole
/// file (an approximation every route of it shares) is written once.
pub(crate) fn note_once(inv: &mut Inventory, origin: Origin, what: &str, why: &str) {
    let file = origin.file_line().map(|(f, _, _)| f.to_string());
    let seen = inv
        .unread
        .iter()
        .any(|u| u.what == what && u.origin.file_line().map(|(f, _, _)| f.to_string()) == file);
    if !seen {
        inv.unread(origin, what, why);
    }
}
