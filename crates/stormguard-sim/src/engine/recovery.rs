//! When a run recovered from what was done to it: the figure that tells a storm that ends with
//! its trigger from a metastable failure that outlives it.
//!
//! A pure function of the timeline and the triggers, so that it can be checked on hand-made
//! timelines and recomputed by anyone who holds the outcome.

use std::time::Duration;

use super::outcome::{Step, Trigger};

/// The share of the pre-fault goodput a second must reach to count as recovered.
const RECOVERED_SHARE: f64 = 0.95;

/// How many seconds in a row goodput must stay recovered: one good second inside a storm is
/// luck, five are a recovery.
const HOLD_STEPS: usize = 5;

/// The first whole second at or after the end of the last trigger from which every second of
/// [`HOLD_STEPS`] has goodput at least [`RECOVERED_SHARE`] of the level before the first trigger
/// (a second without arrivals counts as recovered: nothing failed in it).
///
/// The level is the mean goodput of the whole seconds before the first trigger starts, leaving
/// out second 0 when there are others (queues start empty, so it flatters the system). `None`
/// without triggers, without a second with arrivals before them, or when the run ends before
/// goodput held for [`HOLD_STEPS`] seconds.
pub(crate) fn recovered_at(timeline: &[Step], triggers: &[Trigger]) -> Option<Duration> {
    let first_start = triggers.iter().map(|t| t.from).min()?;
    let last_end = triggers.iter().map(|t| t.to).max()?;
    let whole_before = usize::try_from(first_start.as_secs())
        .unwrap_or(usize::MAX)
        .min(timeline.len());
    let before = &timeline[..whole_before];
    let warm_up = usize::from(before.len() > 1);
    let (sum, count) = before[warm_up..]
        .iter()
        .filter_map(Step::goodput)
        .fold((0.0, 0u32), |(sum, n), g| (sum + g, n + 1));
    if count == 0 {
        return None;
    }
    let threshold = RECOVERED_SHARE * sum / f64::from(count);
    let recovered = |step: &Step| step.goodput().is_none_or(|g| g >= threshold);
    let from = last_end.as_secs() + u64::from(last_end.subsec_nanos() > 0);
    let from = usize::try_from(from).ok()?;
    (from..timeline.len())
        .take_while(|s| s + HOLD_STEPS <= timeline.len())
        .find(|&s| timeline[s..s + HOLD_STEPS].iter().all(recovered))
        .map(|s| Duration::from_secs(timeline[s].at_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline of 100 users a second with these successes.
    fn timeline(succeeded: &[u64]) -> Vec<Step> {
        succeeded
            .iter()
            .enumerate()
            .map(|(k, &ok)| Step {
                at_s: k as u64,
                users: 100,
                succeeded: ok,
                ..Step::default()
            })
            .collect()
    }

    fn trigger(from_ms: u64, to_ms: u64) -> Trigger {
        Trigger {
            from: Duration::from_millis(from_ms),
            to: Duration::from_millis(to_ms),
            label: "db: down".into(),
        }
    }

    #[test]
    fn recovery_is_the_first_second_after_the_end_that_holds_for_five() {
        // Level: seconds 1 and 2 (second 0 is warm-up) at 90%; recovered means >= 85.5.
        let steps = timeline(&[10, 90, 90, 90, 0, 0, 50, 86, 86, 86, 86, 86, 20]);
        assert_eq!(
            recovered_at(&steps, &[trigger(3_000, 5_500)]),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn the_latest_end_counts_and_a_dip_restarts_the_count() {
        let steps = timeline(&[99, 99, 0, 99, 99, 99, 50, 99, 99, 99, 99, 99]);
        let triggers = [trigger(2_000, 3_000), trigger(2_500, 4_000)];
        assert_eq!(
            recovered_at(&steps, &triggers),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn a_second_without_users_counts_as_recovered() {
        let mut steps = timeline(&[99, 99, 0, 99, 0, 99, 99, 99]);
        steps[4].users = 0;
        assert_eq!(
            recovered_at(&steps, &[trigger(2_000, 2_500)]),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn no_recovery_without_triggers_a_baseline_or_five_seconds_left() {
        let steps = timeline(&[99, 99, 0, 99, 99, 99, 99, 99]);
        assert_eq!(recovered_at(&steps, &[]), None);
        assert_eq!(recovered_at(&steps, &[trigger(500, 1_000)]), None);
        assert_eq!(recovered_at(&steps, &[trigger(2_000, 3_500)]), None);
        assert_eq!(
            recovered_at(&steps, &[trigger(2_000, 2_500)]),
            Some(Duration::from_secs(3)),
            "seconds 3..7 are the last five"
        );
    }

    #[test]
    fn a_single_second_before_the_trigger_is_the_baseline() {
        let steps = timeline(&[80, 0, 77, 77, 77, 77, 77]);
        assert_eq!(
            recovered_at(&steps, &[trigger(1_000, 2_000)]),
            Some(Duration::from_secs(2))
        );
    }
}
