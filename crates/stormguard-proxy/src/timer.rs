//! The instants the proxy arms its timers with: `at + after`, saturating.
//!
//! `tokio::time::Instant + Duration` panics past the end of the clock. The settings file bounds
//! every timer to an hour (`stormguard_graph::parse::ranges`), but a `Listen` can be built in
//! code, and a panic in a connection's task is a connection dropped without a word: every
//! instant computed from a configured duration goes through [`later`], which clamps it to a
//! century ahead (`stormguard::deadline::later`), a timer that never fires.

use std::time::Duration;

use tokio::time::Instant;

/// The instant `after` past `at`, or a century past it when that is past the end of the clock.
pub(crate) fn later(at: Instant, after: Duration) -> Instant {
    Instant::from_std(stormguard::deadline::later(at.into_std(), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_duration_is_a_century_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }
}
