//! `attempts-cannot-fit`: more attempts than the request timeout leaves room for.
//!
//! A call's `request_timeout` bounds the whole call, its `timeout` each attempt. When attempts
//! time out, attempt n starts after n - 1 whole timeouts and the waits between them; once that is
//! past the request timeout, attempt n and every later one never run. The setting then says more
//! than the call does: a reader (or an Istio `attempts: 4` with `perTryTimeout: 4s` under a 10 s
//! route timeout) believes in retries that cannot happen when they are most wanted. A `timeout`
//! equal to the `request_timeout` (each attempt takes what is left, as Envoy without a per-try
//! timeout and gRPC do) promises no retry after a timeout, and is not judged.

use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::duration::format;

use super::{CallAt, Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{ms, retries};
use crate::report::Severity;

/// Every per-call rule on attempts against the request timeout.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    attempts_cannot_fit(at, out);
}

/// The shortest wait a backoff makes before retry `retry` (1 is the first retry): what no RNG
/// can shorten. Full jitter may wait nothing; equal jitter waits at least half its ceiling;
/// decorrelated jitter at least its base (or its cap, when lower); `constant` and `exponential`
/// wait exactly their ceiling.
fn smallest_wait(backoff: &Backoff, retry: u32) -> Duration {
    match *backoff {
        Backoff::None | Backoff::FullJitter { .. } => Duration::ZERO,
        Backoff::Constant(_) | Backoff::Exponential { .. } => backoff.ceiling(retry),
        Backoff::EqualJitter { .. } => backoff.ceiling(retry) / 2,
        Backoff::DecorrelatedJitter { base, cap } => base.min(cap),
    }
}

/// When each attempt starts, if every attempt before it runs its whole `timeout` and each wait
/// is the backoff's shortest: attempt 1 at zero, attempt n after n - 1 timeouts and the shortest
/// waits before retries 1 to n - 1.
fn starts(timeout: Duration, backoff: &Backoff, attempts: u32) -> Vec<Duration> {
    let mut starts = Vec::with_capacity(attempts as usize);
    let mut start = Duration::ZERO;
    for n in 1..=attempts {
        if n > 1 {
            start = start
                .saturating_add(timeout)
                .saturating_add(smallest_wait(backoff, n - 1));
        }
        starts.push(start);
    }
    starts
}

/// `attempts-cannot-fit` (warning): with every attempt timing out, an attempt would start at or
/// after the request timeout, so attempts after the k-th never run. The fix is `max_attempts = k`
/// (what runs), which `check --fix` writes, or a timeout short enough for every attempt to run
/// whole.
fn attempts_cannot_fit(at: &CallAt<'_, '_>, out: &mut Findings) {
    let call = at.call;
    let (Some(timeout), Some(request)) = (call.timeout, call.request_timeout) else {
        return;
    };
    // A per-attempt timeout as long as the whole call is "each attempt takes what is left"
    // (Envoy's and Istio's route without `per_try_timeout`, gRPC's deadline): its retries
    // follow fast failures (a refused connection, a 503), which still fit, and a timeout ends
    // the call by design ("a request that times out will not be retried", Envoy's docs). Only
    // a per-attempt timeout shorter than the call promises retries after timeouts.
    // A call that retries nothing (not idempotent, nothing it lists retried for it:
    // `non-idempotent-retry`) makes one attempt, which fits.
    if !retries(call) || timeout >= request {
        return;
    }
    let starts = starts(timeout, &call.backoff, call.max_attempts);
    let fit = starts.iter().take_while(|start| **start < request).count() as u32;
    if fit >= call.max_attempts {
        return;
    }
    let waits: Duration = (1..call.max_attempts)
        .map(|retry| smallest_wait(&call.backoff, retry))
        .fold(Duration::ZERO, Duration::saturating_add);
    let total = timeout
        .saturating_mul(call.max_attempts)
        .saturating_add(waits);
    let waited = if waits.is_zero() {
        String::new()
    } else {
        format!(" + at least {} of backoff", format(waits))
    };
    let first_out = starts[fit as usize];
    let plural = if fit == 1 { "" } else { "s" };
    // A timeout that lets every attempt run whole, whatever the backoff draws (its longest
    // waits: with the shortest, a full-jitter wait of more than nothing cut the last attempt
    // short), if one of at least 1 ms does.
    let longest_waits: Duration = (1..call.max_attempts)
        .map(|retry| call.backoff.max_delay(retry))
        .fold(Duration::ZERO, Duration::saturating_add);
    let whole = request
        .checked_sub(longest_waits)
        .map(|left| left / call.max_attempts)
        .map(|each| Duration::from_millis(each.as_millis() as u64))
        .filter(|each| *each >= Duration::from_millis(1));
    let mut fix = format!("max_attempts = {fit}");
    if let Some(each) = whole {
        fix.push_str(&format!(
            ", or timeout = \"{}\" so that all {} attempts run whole, whatever the backoff \
             waits",
            format(each),
            call.max_attempts
        ));
    }
    out.on_call(
        at,
        Said {
            rule: "attempts-cannot-fit",
            severity: Severity::Warning,
            message: format!(
                "{} allows {} attempts of {}{waited} = {} within a request_timeout of {}: when \
                 attempts time out, attempt {} would start at {}, after the request has ended, \
                 so attempts after the {} never run (only {fit} attempt{plural} can start)",
                at.edge(),
                call.max_attempts,
                format(timeout),
                format(total),
                format(request),
                fit + 1,
                format(first_out),
                ordinal(fit),
            ),
            fix,
            value: Some(Figure::Ms(ms(total))),
            limit: Some(Figure::Ms(ms(request))),
            edits: vec![at.set("max_attempts", &fit.to_string())],
        },
    );
}

/// `1st`, `2nd`, `3rd`, `4th`, ... `11th`, `21st`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_smallest_waits_of_each_backoff() {
        let parse = |s: &str| s.parse::<Backoff>().unwrap();
        assert_eq!(
            smallest_wait(&parse("full-jitter(base=25ms, cap=1s)"), 3),
            Duration::ZERO
        );
        assert_eq!(smallest_wait(&parse("constant(40ms)"), 3), d(40));
        assert_eq!(
            smallest_wait(&parse("exponential(base=25ms, cap=1s)"), 3),
            d(100)
        );
        assert_eq!(
            smallest_wait(&parse("equal-jitter(base=20ms, cap=1s)"), 2),
            d(20)
        );
        assert_eq!(
            smallest_wait(&parse("decorrelated-jitter(base=30ms, cap=1s)"), 5),
            d(30)
        );
        assert_eq!(smallest_wait(&Backoff::None, 1), Duration::ZERO);
    }

    #[test]
    fn attempts_start_after_the_timeouts_and_waits_before_them() {
        let backoff: Backoff = "constant(100ms)".parse().unwrap();
        assert_eq!(starts(d(1000), &backoff, 3), [d(0), d(1100), d(2200)]);
    }

    #[test]
    fn ordinals() {
        let all: Vec<String> = [1, 2, 3, 4, 11, 12, 21, 22, 113].map(ordinal).to_vec();
        assert_eq!(
            all,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "21st", "22nd", "113th"]
        );
    }
}
