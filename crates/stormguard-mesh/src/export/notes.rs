//! What every mesh target shares about what it cannot express: proxies retry any method and
//! pass no deadline downstream, and Envoy-based backoffs take a base only.

use std::borrow::Cow;

use stormguard::classify::RetryOn;
use stormguard_graph::model::Call;

use super::Fields;

/// Notes every mesh proxy shares: it retries any method, and it does not pass the remaining
/// budget downstream. `retries_written`: whether the call's retries were written at all.
pub(super) fn proxy_notes(call: &Call, system: &str, retries_written: bool, f: &mut Fields) {
    if retries_written && call.max_attempts > 1 && !call.is_idempotent() {
        f.cannot(
            "idempotent",
            format!(
                "{system} retries any method: this call's requests ({}, idempotent = {}) are \
                 written to be retried only on what stormguard retries of them, the failures \
                 before the request was sent and the answers that decline it",
                call.method, call.idempotent
            ),
        );
    }
    if call.propagate_deadline {
        f.cannot(
            "propagate_deadline",
            format!("{system} does not pass the remaining budget downstream: keep it in the application"),
        );
    }
}

/// The base delay of a backoff, and what a system that only takes a base (and applies its
/// own full jitter) loses of it.
pub(super) fn backoff_base(
    backoff: &stormguard::backoff::Backoff,
    system: &str,
    default_cap_factor: Option<u32>,
    f: &mut Fields,
) -> Option<std::time::Duration> {
    use stormguard::backoff::Backoff;
    match *backoff {
        Backoff::None => {
            f.cannot(
                "backoff",
                format!("{system} always waits between retries: its default base applies"),
            );
            None
        }
        Backoff::FullJitter { base, cap } => {
            if let Some(factor) = default_cap_factor {
                if cap != base * factor {
                    f.cannot(
                        "backoff",
                        format!(
                            "{system} has no backoff cap: Envoy's {factor} × base = {} applies, \
                             not {}",
                            stormguard::duration::format(base * factor),
                            stormguard::duration::format(cap)
                        ),
                    );
                }
            }
            Some(base)
        }
        Backoff::Constant(delay) => {
            f.cannot(
                "backoff",
                format!(
                    "{system} has no constant backoff: full jitter from base {} instead",
                    stormguard::duration::format(delay)
                ),
            );
            Some(delay)
        }
        Backoff::Exponential { base, .. }
        | Backoff::EqualJitter { base, .. }
        | Backoff::DecorrelatedJitter { base, .. } => {
            f.cannot(
                "backoff",
                format!("{system} has no choice of jitter: full jitter from the same base instead of {backoff}"),
            );
            Some(base)
        }
    }
}

/// Envoy's full jitter grows as (2^N − 1) × base, stormguard's as 2^(N−1) × base: from the
/// third attempt on, Envoy's ceilings are higher (until the cap).
pub(super) fn envoy_growth_note(call: &Call, system: &str, f: &mut Fields) {
    if call.max_attempts > 2 {
        if let stormguard::backoff::Backoff::FullJitter { .. } = call.backoff {
            f.cannot(
                "backoff",
                format!(
                    "approximate: {system}'s full jitter grows as (2^N-1) x base, stormguard's \
                     as 2^(N-1) x base (same first wait, longer later ones up to the cap)"
                ),
            );
        }
    }
}

/// `call` as an Envoy-based mesh (Envoy, Istio) may retry it. Such a proxy answers 503 itself
/// (UNAVAILABLE to a gRPC client) when the connection to the application drops after the
/// request was forwarded (response flags UC, UR), and in a mesh the server's own sidecar does
/// so for a request its application may have applied before it failed. stormguard's proxy
/// answers such a reset 502, so 503 is a declined request there; through Envoy it is not, and a
/// request that is not idempotent is not retried on it: it goes, with a note, and a call left
/// with nothing to retry makes one attempt.
pub(super) fn envoy_safe<'c>(call: &'c Call, system: &str, f: &mut Fields) -> Cow<'c, Call> {
    if call.is_idempotent() || call.max_attempts <= 1 {
        return Cow::Borrowed(call);
    }
    let unsafe_here = crate::envoy_names::answered_by_sidecar_after_forward;
    let conditions = call.retry_on.conditions();
    if !conditions.iter().any(unsafe_here) {
        return Cow::Borrowed(call);
    }
    let kept = conditions
        .iter()
        .filter(|c| !unsafe_here(c))
        .fold(RetryOn::none(), |set, c| set.with(*c));
    f.cannot(
        "retry_on",
        format!(
            "503 and unavailable: {system} answers them itself when the connection to the \
             application drops after the request was forwarded, and this call's requests ({}, \
             idempotent = {}) may have been applied: not retried{}",
            call.method,
            call.idempotent,
            if kept.is_empty() {
                ", so no retry is written"
            } else {
                ""
            }
        ),
    );
    let mut safe = call.clone();
    safe.retry_on = kept;
    if kept.is_empty() {
        safe.max_attempts = 1;
    }
    Cow::Owned(safe)
}
