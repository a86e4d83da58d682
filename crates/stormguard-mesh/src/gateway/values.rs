//! Policy values shared by the Gateway API and Linkerd readers (durations clamped with a note,
//! status conditions), and the notes written once per file. The texts come from
//! `crate::toml_text`, the one writer of graph values.

use std::time::Duration;

use crate::inventory::Inventory;
use crate::source::Origin;
use crate::toml_text::{self, duration_in_range};

/// Writes `d` as the graph does (`toml_text::duration`), clamped to 1h with a note at
/// `origin`: the Gateway API's and Linkerd's durations may be longer than the graph takes.
pub(crate) fn duration_noting(d: Duration, origin: &Origin, inv: &mut Inventory) -> String {
    toml_text::duration(duration_in_range(d, inv, origin, "a duration over 1h"))
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
