//! The backoff text (`full-jitter(base=25ms, cap=1s)`) and the durations inside it, and what the
//! policy core computes from every backoff it accepts.
//!
//! Promises checked: a backoff prints as a text that parses back to itself, and printing is
//! canonical (a printed text prints the same again); a growing backoff has a non-zero base no
//! larger than its cap; no delay exceeds the cap and the worst case never shrinks with more
//! retries; a schedule never waits longer than the worst case of its retry; the worst-case total
//! of every retry there can be is computed at once. A duration prints as a text that parses
//! back to itself.

use std::time::Duration;

use stormguard::backoff::{self, Backoff};
use stormguard::duration;

/// Retries whose delays are checked one by one: past 64 every growing kind is at its cap.
const RETRIES: u32 = 70;

/// Runs one input (UTF-8 text; other bytes are not a backoff text and are skipped).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = duration::parse(text) {
        let printed = duration::format(parsed);
        assert_eq!(
            duration::parse(&printed),
            Ok(parsed),
            "{text:?} printed as {printed:?}"
        );
    }
    let parsed: Backoff = match text.parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let printed = parsed.to_string();
    assert_eq!(
        printed.parse::<Backoff>(),
        Ok(parsed),
        "{text:?} printed as {printed:?}"
    );
    assert_eq!(parsed.to_string(), printed, "printing is not canonical");
    let cap = match parsed {
        Backoff::None => Duration::ZERO,
        Backoff::Constant(delay) => delay,
        Backoff::Exponential { base, cap }
        | Backoff::FullJitter { base, cap }
        | Backoff::EqualJitter { base, cap }
        | Backoff::DecorrelatedJitter { base, cap } => {
            assert!(!base.is_zero(), "{printed}: zero base accepted");
            assert!(base <= cap, "{printed}: base above cap accepted");
            cap
        }
    };
    check_delays(parsed, cap);
}

/// The worst cases and a seeded schedule of `backoff`, whose largest delay is `cap`.
fn check_delays(backoff: Backoff, cap: Duration) {
    let mut previous = Duration::ZERO;
    let mut total = Duration::ZERO;
    for retry in 1..=RETRIES {
        let worst = backoff.max_delay(retry);
        assert!(worst <= cap, "{backoff}: retry {retry} may wait {worst:?}");
        assert!(
            worst >= previous,
            "{backoff}: retry {retry} waits less than the one before"
        );
        assert_eq!(backoff.ceiling(retry), worst);
        previous = worst;
        total = total.saturating_add(worst);
        assert_eq!(backoff.worst_case_total(retry), total, "{backoff}: {retry}");
    }
    assert_eq!(
        backoff.max_delay(u32::MAX),
        cap,
        "{backoff}: the plateau is not the cap"
    );
    assert!(backoff.worst_case_total(u32::MAX) >= total);
    assert_eq!(backoff.max_delay(0), backoff.max_delay(1));
    let mut schedule = backoff.schedule();
    let mut rng = backoff::seeded(7);
    for retry in 1..=RETRIES {
        let delay = schedule.next_delay(&mut rng);
        assert!(
            delay <= backoff.max_delay(retry),
            "{backoff}: retry {retry} waited {delay:?}"
        );
        assert_eq!(schedule.retries_so_far(), retry);
    }
}
