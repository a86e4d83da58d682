//! Istio's values read and written: durations Istio accepts, within the graph's range, and
//! Envoy's backoff. The texts themselves come from `crate::toml_text`, the one writer of graph
//! values.

use std::time::Duration;

use crate::doc::{parse_duration, Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, Policy};
use crate::source::Origin;
use crate::toml_text::{self, duration_in_range, full_jitter, MAX_DURATION, MIN_DURATION};

/// A duration written by `toml_text::duration`, back (for comparisons between settings).
pub(super) fn duration_of(text: &str) -> Option<Duration> {
    parse_duration(text.trim().trim_matches('"'))
}

/// Reads a duration field Istio reads (`1h/1m/1s/1ms`, or proto3 JSON's `"0.250s"`).
///
/// # Errors
/// Not a duration, at its line, naming `field`.
pub(super) fn duration(doc: &Document, node: &Node, field: &str) -> Result<Duration, ImportError> {
    node.as_duration().ok_or_else(|| {
        doc.error(
            node,
            field,
            format!(
                "{:?} is not a duration: write e.g. 2s, 250ms or 1m",
                node.as_str().unwrap_or("(a mapping or list)")
            ),
        )
    })
}

/// Reads a duration Istio requires to be at least 1ms (`perTryTimeout`, `backoff`,
/// `connectTimeout`: "MUST be >=1ms").
///
/// # Errors
/// Not a duration, or under 1ms, at its line.
pub(super) fn positive_duration(
    doc: &Document,
    node: &Node,
    field: &str,
) -> Result<Duration, ImportError> {
    let value = duration(doc, node, field)?;
    if value < Duration::from_millis(1) {
        return Err(doc.error(
            node,
            field,
            "must be at least 1ms (Istio refuses less): remove the field for Istio's default",
        ));
    }
    Ok(value)
}

/// Sets `key` to `duration`, clamped to the graph's 1h (with a note: Istio would wait longer).
pub(super) fn set_duration(
    policy: &mut Policy,
    key: &'static str,
    duration: Duration,
    origin: Origin,
    inv: &mut Inventory,
) {
    let what = format!("{key} of {}s", duration.as_secs());
    let duration = duration_in_range(duration, inv, &origin, &what);
    policy.set(key, toml_text::duration(duration), origin);
}

/// Envoy's backoff for base interval `base`, as the graph writes it: fully jittered, capped
/// at Envoy's default `max_interval` of 10 × base (Istio sets only the base). The growth
/// differs (Envoy: [0, (2^N − 1)·base); the graph: [0, 2^(N−1)·base]); the reader lists that
/// once per file.
pub(super) fn envoy_backoff(base: Duration) -> String {
    let base = base.clamp(MIN_DURATION, MAX_DURATION);
    full_jitter(base, (base * 10).min(MAX_DURATION))
}

/// Lists each of `fields` (camelCase, as manifests write them) that `node` has, as
/// `{what}.{field}` at the field's line, with why it is not read. Whether any was there.
pub(super) fn unread_fields(
    doc: &Document,
    node: &Node,
    what: &str,
    fields: &[(&str, &str)],
    inv: &mut Inventory,
) -> bool {
    let mut any = false;
    for (field, why) in fields {
        if let Some(value) = node.get(field) {
            let described = format!("{what}.{field}");
            inv.unread(Origin::at(doc, value, described.clone()), described, *why);
            any = true;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back() {
        assert_eq!(duration_of("\"250ms\""), Some(Duration::from_millis(250)));
    }

    #[test]
    fn envoy_backoff_caps_at_ten_bases() {
        assert_eq!(
            envoy_backoff(Duration::from_millis(25)),
            "\"full-jitter(base=25ms, cap=250ms)\""
        );
        assert_eq!(
            envoy_backoff(Duration::from_secs(1)),
            "\"full-jitter(base=1s, cap=10s)\""
        );
        assert_eq!(
            envoy_backoff(Duration::from_secs(600)),
            "\"full-jitter(base=600s, cap=3600s)\""
        );
    }
}
