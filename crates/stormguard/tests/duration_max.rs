//! The largest durations a caller can hand the policy core, through its public API: none may
//! panic. A file's values are bounded when it is read (timeouts and waits to an hour), but a
//! program builds policies in code, and `Instant + Duration` panics past the end of the clock;
//! every instant the core computes from a duration it was given must saturate instead.
//!
//! `a_backoff_of_duration_max_is_decided_without_a_panic` panicked before
//! `stormguard::deadline::later` (the retry decision added the backoff to `now`).

#![allow(clippy::disallowed_methods)] // an origin for instants: no test here waits on a clock

use std::time::{Duration, Instant};

use stormguard::backoff::{seeded, Backoff};
use stormguard::classify::AttemptResult;
use stormguard::deadline::{later, Deadline, DeadlinePolicy, MAX_BUDGET};
use stormguard::estimate::{AdaptiveConnectTimeout, AdaptiveTimeout, LatencyEstimator};
use stormguard::hedge::{HedgeDelay, HedgePolicy, HedgeRace, RaceStart};
use stormguard::instance::{EjectionConfig, Outcome, OutlierDetector};
use stormguard::policy::{Decision, Limiter, RetryPolicy};

const MAX: Duration = Duration::MAX;

fn unavailable(retry_after: Option<Duration>) -> AttemptResult {
    AttemptResult::Response {
        status: 503,
        retry_after,
    }
}

/// Every backoff kind with every duration at its largest.
fn largest_backoffs() -> [Backoff; 5] {
    [
        Backoff::Constant(MAX),
        Backoff::Exponential {
            base: MAX,
            cap: MAX,
        },
        Backoff::FullJitter {
            base: MAX,
            cap: MAX,
        },
        Backoff::EqualJitter {
            base: MAX,
            cap: MAX,
        },
        Backoff::DecorrelatedJitter {
            base: MAX,
            cap: MAX,
        },
    ]
}

#[test]
fn a_backoff_of_duration_max_is_decided_without_a_panic() {
    let now = Instant::now();
    let mut rng = seeded(1);
    for backoff in largest_backoffs() {
        let policy = RetryPolicy::recommended()
            .with_backoff(backoff)
            .with_max_attempts(100)
            .with_limiter(Limiter::Unlimited);
        // Without a deadline the retry waits as long as it was told.
        let mut state = policy.begin(now);
        let decision = policy.decide(&mut state, unavailable(None), true, None, now, &mut rng);
        assert!(
            matches!(decision, Decision::Retry { after, .. } if after >= MAX_BUDGET),
            "{backoff:?}: {decision:?}"
        );
        // With one, a wait past it is no retry.
        let deadline = Some(Deadline::after(now, Duration::from_secs(1)));
        let mut state = policy.begin(now);
        let decision = policy.decide(&mut state, unavailable(None), true, deadline, now, &mut rng);
        assert!(
            matches!(decision, Decision::GiveUp(_)),
            "{backoff:?}: {decision:?}"
        );
        assert_eq!(backoff.worst_case_total(u32::MAX), MAX);
        let mut schedule = backoff.schedule();
        for _ in 0..3 {
            assert!(schedule.next_delay(&mut rng) <= MAX);
        }
    }
}

#[test]
fn a_server_asking_for_duration_max_is_decided_without_a_panic() {
    let now = Instant::now();
    let mut rng = seeded(2);
    let policy = RetryPolicy::recommended().with_limiter(Limiter::Unlimited);
    let mut state = policy.begin(now);
    let _ = policy.decide(
        &mut state,
        unavailable(Some(MAX)),
        true,
        None,
        now,
        &mut rng,
    );
}

#[test]
fn timeouts_of_duration_max_bound_nothing_and_panic_nowhere() {
    let now = Instant::now();
    let policy = RetryPolicy {
        deadline: DeadlinePolicy {
            per_try_timeout: MAX,
            reserve: MAX,
        },
        ..RetryPolicy::recommended()
    }
    .with_overall_timeout(MAX)
    .with_expected_latency(MAX);
    for incoming in [None, Some(Deadline::after(now, MAX))] {
        let deadline = policy.request_deadline(incoming, now);
        assert!(deadline.is_some());
        let _ = policy.should_start(deadline, now, MAX);
        let _ = policy.attempt_timeout(deadline, now, Some(MAX));
    }
    assert!(later(now, MAX) > now);
    assert_eq!(Deadline::after(now, MAX).remaining(now), MAX_BUDGET);
}

#[test]
fn a_hedge_after_duration_max_never_fires_and_never_panics() {
    let now = Instant::now();
    let policy = HedgePolicy::new(HedgeDelay::Fixed(MAX), 1.0).unwrap();
    policy.on_request(now);
    let delay = policy.delay(None, now);
    assert_eq!(delay, Some(MAX));
    let mut race: HedgeRace<AttemptResult> = HedgeRace::start(
        &policy,
        RaceStart {
            delay,
            deadline: Some(Deadline::after(now, MAX)),
            ..RaceStart::new(now, true)
        },
    );
    // A delay past the attempt's deadline is no hedge.
    assert_eq!(race.hedge_delay(), None);
    let _ = race.on_timer(&policy, later(now, MAX));
}

#[test]
fn estimators_and_detectors_of_duration_max_panic_nowhere() {
    let now = Instant::now();
    let estimator = LatencyEstimator::new(MAX).with_min_samples(1);
    estimator.record(now, MAX);
    estimator.record(later(now, MAX), MAX);
    let _ = estimator.quantile(later(now, MAX), 0.99);
    let adaptive = AdaptiveTimeout::new(0.001, MAX, MAX).unwrap();
    assert_eq!(adaptive.timeout(&estimator, now), MAX);
    let connect = AdaptiveConnectTimeout::new(10.0, MAX, MAX).unwrap();
    assert_eq!(connect.timeout(&estimator, now), MAX);
    let config = EjectionConfig {
        base_ejection: MAX,
        max_ejection: MAX,
        ..EjectionConfig::default()
    };
    assert_eq!(config.ejection_time(u32::MAX), MAX);
    let mut detector = OutlierDetector::new(config, 2);
    assert_eq!(detector.record(0, Outcome::ConnectFailure, now), Some(MAX));
    assert!(detector.is_ejected(0, later(now, MAX)));
}
