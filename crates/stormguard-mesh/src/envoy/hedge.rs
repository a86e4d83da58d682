//! Envoy's `hedge_on_per_try_timeout` as a stormguard hedge.
//!
//! Envoy sends a hedged request at each per-try timeout, without cancelling the first, up to
//! `num_retries` of them per request; stormguard's `max_extra` is a share of requests. The
//! closest is `max_extra = 1.0` (every request may be hedged once), with a note.

use super::retry::Retries;
use super::route::{PerTry, Scope};
use super::Reader;
use crate::doc::Node;
use crate::error::ImportError;
use crate::inventory::Inventory;
use crate::source::Origin;
use crate::toml_text::{bare_duration, number};

/// `hedge = { delay = per_try_timeout, max_extra = 1.0 }` when the route hedges on its per-try
/// timeout; `None` otherwise (with a note when a hedge policy does nothing).
pub(super) fn hedge(
    reader: &Reader<'_>,
    inv: &mut Inventory,
    scope: &Scope<'_>,
    action: &Node,
    action_path: &str,
    per_try: Option<&PerTry>,
    retries: &Retries,
) -> Result<Option<(String, Origin)>, ImportError> {
    let (hp, path) = match action.get("hedge_policy") {
        Some(hp) => (hp, format!("{action_path}.hedge_policy")),
        None => match scope.vhost.get("hedge_policy") {
            Some(hp) => (hp, format!("{}.hedge_policy", scope.vhost_path)),
            None => return Ok(None),
        },
    };
    for key in ["initial_requests", "additional_request_chance"] {
        if let Some(node) = hp.get(key) {
            inv.unread(
                reader.at(node, &format!("{path}.{key}")),
                key,
                "not implemented in Envoy: it changes nothing",
            );
        }
    }
    let Some(on) = hp.get("hedge_on_per_try_timeout") else {
        return Ok(None);
    };
    let field = format!("{path}.hedge_on_per_try_timeout");
    let on_value = on.as_bool().ok_or_else(|| {
        reader
            .doc
            .error(on, &field, "not a boolean: write true or false")
    })?;
    if !on_value {
        return Ok(None);
    }
    let origin = reader.at(on, &field);
    let (Some(per_try), true) = (per_try, retries.max_attempts.0 > 1) else {
        inv.unread(
            origin,
            "hedge_on_per_try_timeout",
            "no effect: Envoy hedges only when a per_try_timeout is set and the retry policy \
             retries",
        );
        return Ok(None);
    };
    let extra = retries.max_attempts.0 - 1;
    inv.unread(
        origin.clone(),
        "hedge_on_per_try_timeout",
        format!(
            "approximate: Envoy sends up to {extra} hedged request(s) per request (its \
             num_retries), one at each per-try timeout, with no limit on their share; \
             stormguard's max_extra is a share of requests, so max_extra = 1.0 (every request \
             may be hedged) is the closest, and a second hedge of one request is not modelled"
        ),
    );
    Ok(Some((
        format!(
            "{{ delay = \"{}\", max_extra = {} }}",
            bare_duration(per_try.value),
            number(1.0)
        ),
        origin,
    )))
}
