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
    let (first_start, last_end) = window(triggers)?;
    let threshold = threshold(timeline, first_start)?;
    let recovered = |step: &Step| step.goodput().is_none_or(|g| g >= threshold);
    let from = usize::try_from(first_second_after(last_end)).ok()?;
    (from..timeline.len())
        .take_while(|s| s + HOLD_STEPS <= timeline.len())
        .find(|&s| timeline[s..s + HOLD_STEPS].iter().all(recovered))
        .map(|s| Duration::from_secs(timeline[s].at_s))
}

/// The goodput a second must reach to count as recovered; `None` without a level before the
/// first trigger, or with a level of nothing (no request succeeded before it: every second
/// would count as recovered, and a run that never answered anyone "recovered" at once).
fn threshold(timeline: &[Step], first_start: Duration) -> Option<f64> {
    let (sum, count) = goodput_before(timeline, first_start)?;
    (sum > 0.0).then(|| RECOVERED_SHARE * sum / f64::from(count))
}

/// The first second of the run's last seconds, from the end of the last trigger on, that all
/// count as recovered, when fewer than [`HOLD_STEPS`] of them do: goodput came back, and the
/// run ended before it could hold. `None` when the last second is not recovered.
fn back_at_the_end(timeline: &[Step], triggers: &[Trigger]) -> Option<u64> {
    let (first_start, last_end) = window(triggers)?;
    let threshold = threshold(timeline, first_start)?;
    let from = usize::try_from(first_second_after(last_end)).ok()?;
    let tail = timeline.get(from..)?;
    let recovered = tail
        .iter()
        .rev()
        .take_while(|step| step.goodput().is_none_or(|g| g >= threshold))
        .count();
    (recovered > 0 && recovered < HOLD_STEPS).then(|| tail[tail.len() - recovered].at_s)
}

/// Why the recovery figure (`Outcome::recovered_at`) cannot say whether a run recovered, when it
/// cannot: then its `None` is not "never", and a report must not say that a system stayed down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmeasured {
    /// No second with arrivals before the first trigger: no level to return to (a fault from
    /// the start of the run).
    NoLevelBefore,
    /// The run ends fewer than 5 whole seconds after the last trigger (the seconds goodput must
    /// hold to count as recovered): too soon to see a recovery hold.
    EndsTooSoon,
    /// No user request succeeded before the first trigger: a level of nothing, which every
    /// second reaches.
    NothingBefore,
    /// Goodput came back at this second and held to the end of the run, which ended before it
    /// held for 5 seconds: not "never".
    BackAtTheEnd(u64),
}

impl Unmeasured {
    /// The reason in words, after "not measured: ".
    pub fn words(self) -> String {
        match self {
            Unmeasured::NoLevelBefore => {
                "no whole second with user arrivals comes before the first fault or load step \
                 (it starts in the first second, or no users arrive), so there is no level \
                 before it to return to"
                    .to_string()
            }
            Unmeasured::EndsTooSoon => format!(
                "the run ends less than {HOLD_STEPS}s after the last fault or load step, too \
                 soon to see goodput hold"
            ),
            Unmeasured::NothingBefore => "no user request succeeded before the first fault or \
                 load step, so there is no level to return to"
                .to_string(),
            Unmeasured::BackAtTheEnd(at) => format!(
                "goodput came back at {at}s and held to the end of the run, which ends before \
                 it held for {HOLD_STEPS}s"
            ),
        }
    }
}

/// Whether the recovery figure (`Outcome::recovered_at`) can tell, on this timeline and these
/// triggers (some), whether the run recovered; `None` when it can (its `None` is then "never").
pub fn unmeasured(timeline: &[Step], triggers: &[Trigger]) -> Option<Unmeasured> {
    let (first_start, last_end) = window(triggers)?;
    if goodput_before(timeline, first_start).is_none() {
        return Some(Unmeasured::NoLevelBefore);
    }
    if threshold(timeline, first_start).is_none() {
        return Some(Unmeasured::NothingBefore);
    }
    let seconds_after = (timeline.len() as u64).saturating_sub(first_second_after(last_end));
    if seconds_after < HOLD_STEPS as u64 {
        return Some(Unmeasured::EndsTooSoon);
    }
    if recovered_at(timeline, triggers).is_some() {
        return None;
    }
    back_at_the_end(timeline, triggers).map(Unmeasured::BackAtTheEnd)
}

/// The start of the first trigger and the end of the last; `None` without triggers.
fn window(triggers: &[Trigger]) -> Option<(Duration, Duration)> {
    let first_start = triggers.iter().map(|t| t.from).min()?;
    let last_end = triggers.iter().map(|t| t.to).max()?;
    Some((first_start, last_end))
}

/// The sum and the count of the goodputs of the whole seconds before `first_start` (whose mean
/// is the level), second 0 left out when there are others (queues start empty, so it flatters
/// the system); `None` without a second with arrivals among them.
fn goodput_before(timeline: &[Step], first_start: Duration) -> Option<(f64, u32)> {
    let whole_before = usize::try_from(first_start.as_secs())
        .unwrap_or(usize::MAX)
        .min(timeline.len());
    let before = &timeline[..whole_before];
    let warm_up = usize::from(before.len() > 1);
    let (sum, count) = before[warm_up..]
        .iter()
        .filter_map(Step::goodput)
        .fold((0.0, 0u32), |(sum, n), g| (sum + g, n + 1));
    (count > 0).then_some((sum, count))
}

/// The first whole second at or after `end`.
fn first_second_after(end: Duration) -> u64 {
    end.as_secs() + u64::from(end.subsec_nanos() > 0)
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
            service: Some("db".to_string()),
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

    /// Each `None` of the test above but the first is one `unmeasured` names, so that a report
    /// says "not measured" there and "never" only where goodput did not come back.
    #[test]
    fn unmeasured_tells_a_missing_baseline_or_too_short_a_run_from_never() {
        let steps = timeline(&[99, 99, 0, 99, 99, 99, 99, 99]);
        assert_eq!(unmeasured(&steps, &[]), None);
        assert_eq!(
            unmeasured(&steps, &[trigger(500, 1_000)]),
            Some(Unmeasured::NoLevelBefore)
        );
        assert_eq!(
            unmeasured(&steps, &[trigger(2_000, 3_500)]),
            Some(Unmeasured::EndsTooSoon)
        );
        assert_eq!(unmeasured(&steps, &[trigger(2_000, 2_500)]), None);
        // Measurable and never back: `None` from both, and the report says "never".
        let down = timeline(&[99, 99, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(unmeasured(&down, &[trigger(2_000, 3_000)]), None);
        assert_eq!(recovered_at(&down, &[trigger(2_000, 3_000)]), None);
    }

    /// A run that answered no one before the fault has no level to return to: "recovered" at
    /// once was said of a graph whose entry timed out every request.
    #[test]
    fn a_level_of_nothing_is_not_recovered_from() {
        let steps = timeline(&[0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(recovered_at(&steps, &[trigger(2_000, 3_000)]), None);
        assert_eq!(
            unmeasured(&steps, &[trigger(2_000, 3_000)]),
            Some(Unmeasured::NothingBefore)
        );
    }

    /// Goodput back for the last three seconds of the run is not "never": it came back, and
    /// the run ended before it held for five.
    #[test]
    fn goodput_back_for_the_last_seconds_is_not_never() {
        let steps = timeline(&[99, 99, 0, 0, 0, 0, 0, 0, 99, 99, 99]);
        let fault = [trigger(2_000, 3_000)];
        assert_eq!(recovered_at(&steps, &fault), None);
        assert_eq!(
            unmeasured(&steps, &fault),
            Some(Unmeasured::BackAtTheEnd(8))
        );
        assert!(Unmeasured::BackAtTheEnd(8)
            .words()
            .starts_with("goodput came back at 8s"));
        // Down to the end: never, as before.
        let down = timeline(&[99, 99, 0, 0, 0, 0, 0, 0, 99, 99, 0]);
        assert_eq!(unmeasured(&down, &fault), None);
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
