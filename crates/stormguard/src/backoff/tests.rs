use super::*;
use proptest::prelude::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn growing(kind: usize, base: Duration, cap: Duration) -> Backoff {
    match kind % 4 {
        0 => Backoff::Exponential { base, cap },
        1 => Backoff::FullJitter { base, cap },
        2 => Backoff::EqualJitter { base, cap },
        _ => Backoff::DecorrelatedJitter { base, cap },
    }
}

fn base_and_cap(backoff: Backoff) -> Option<(Duration, Duration)> {
    match backoff {
        Backoff::Exponential { base, cap }
        | Backoff::FullJitter { base, cap }
        | Backoff::EqualJitter { base, cap }
        | Backoff::DecorrelatedJitter { base, cap } => Some((base, cap)),
        Backoff::None | Backoff::Constant(_) => None,
    }
}

/// The largest delay a backoff may ever wait, whatever the retry.
fn absolute_limit(backoff: Backoff) -> Duration {
    match backoff {
        Backoff::None => Duration::ZERO,
        Backoff::Constant(delay) => delay,
        _ => base_and_cap(backoff).map_or(Duration::ZERO, |(_, cap)| cap),
    }
}

fn duration_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=1_000_000_000_000_000).prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_micros),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::MAX),
    ]
}

/// Valid policies, as the parser accepts them: 0 < base <= cap.
fn valid_growing() -> impl Strategy<Value = Backoff> {
    (0usize..4, duration_strategy(), duration_strategy())
        .prop_filter_map("needs 0 < base", |(kind, a, b)| {
            (!a.min(b).is_zero()).then(|| growing(kind, a.min(b), a.max(b)))
        })
}

/// Any value of the enum, including ones the parser refuses (base > cap, zero base).
fn any_backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        Just(Backoff::None),
        duration_strategy().prop_map(Backoff::Constant),
        (0usize..4, duration_strategy(), duration_strategy())
            .prop_map(|(kind, base, cap)| growing(kind, base, cap)),
    ]
}

/// c(n) by its definition, in u128 with explicit saturation, as an oracle.
fn reference_ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
    let mut value = base.as_nanos();
    for _ in 1..retry.max(1) {
        if value >= cap.as_nanos() {
            break;
        }
        value *= 2;
    }
    saturating_duration(value).min(cap)
}

#[test]
fn first_retry_ceiling_is_base_and_doubles() {
    let backoff = Backoff::FullJitter {
        base: ms(25),
        cap: ms(1000),
    };
    let ceilings: Vec<Duration> = (1..=8).map(|n| backoff.ceiling(n)).collect();
    let expected = [25, 50, 100, 200, 400, 800, 1000, 1000].map(ms);
    assert_eq!(ceilings, expected);
    assert_eq!(backoff.ceiling(0), ms(25));
}

#[test]
fn ceilings_saturate_for_every_retry_number() {
    let tiny_base = Backoff::Exponential {
        base: Duration::from_nanos(1),
        cap: Duration::MAX,
    };
    assert_eq!(tiny_base.ceiling(64), Duration::from_nanos(1 << 63));
    assert_eq!(tiny_base.ceiling(u32::MAX), Duration::MAX);
    let huge = Backoff::EqualJitter {
        base: Duration::MAX,
        cap: Duration::MAX,
    };
    assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);
    let decorrelated = Backoff::DecorrelatedJitter {
        base: Duration::from_nanos(1),
        cap: Duration::MAX,
    };
    assert_eq!(decorrelated.ceiling(u32::MAX), Duration::MAX);
    assert_eq!(decorrelated.ceiling(2), Duration::from_nanos(9));
}

#[test]
fn worst_case_total_is_fast_and_saturates_for_huge_retry_counts() {
    let backoff = Backoff::FullJitter {
        base: ms(25),
        cap: ms(1000),
    };
    let total = backoff.worst_case_total(u32::MAX);
    // 25+50+...+800 = 1575 ms, then 1 s for each of the other u32::MAX - 6 retries.
    assert_eq!(
        total,
        ms(1575) + Duration::from_secs(u64::from(u32::MAX) - 6)
    );
    let huge = Backoff::Constant(Duration::MAX);
    assert_eq!(huge.worst_case_total(u32::MAX), Duration::MAX);
    assert_eq!(Backoff::None.worst_case_total(u32::MAX), Duration::ZERO);
    assert_eq!(backoff.worst_case_total(0), Duration::ZERO);
}

#[test]
fn constant_and_none_ignore_the_retry_number() {
    let mut rng = seeded(1);
    let mut constant = Backoff::Constant(ms(100)).schedule();
    let mut none = Backoff::None.schedule();
    for _ in 0..100 {
        assert_eq!(constant.next_delay(&mut rng), ms(100));
        assert_eq!(none.next_delay(&mut rng), Duration::ZERO);
    }
    assert_eq!(Backoff::Constant(ms(100)).max_delay(7), ms(100));
    assert_eq!(Backoff::None.max_delay(7), Duration::ZERO);
}

#[test]
fn only_randomised_kinds_are_jittered() {
    assert!(!Backoff::None.is_jittered());
    assert!(!Backoff::Constant(ms(1)).is_jittered());
    assert!(!growing(0, ms(1), ms(2)).is_jittered());
    assert!((1..4).all(|kind| growing(kind, ms(1), ms(2)).is_jittered()));
}

#[test]
fn default_is_envoys_base_with_ten_times_cap() {
    assert_eq!(
        Backoff::default(),
        Backoff::FullJitter {
            base: ms(25),
            cap: ms(250)
        }
    );
}

#[test]
fn retry_count_saturates() {
    let mut schedule = Backoff::FullJitter {
        base: ms(1),
        cap: ms(10),
    }
    .schedule();
    schedule.retries_so_far = u32::MAX - 1;
    let mut rng = seeded(0);
    for _ in 0..3 {
        assert!(schedule.next_delay(&mut rng) <= ms(10));
        assert_eq!(schedule.retries_so_far(), u32::MAX);
    }
}

#[test]
fn full_jitter_mean_is_half_the_ceiling() {
    let backoff = Backoff::FullJitter {
        base: ms(25),
        cap: ms(1000),
    };
    let ceiling = backoff.ceiling(3).as_nanos() as f64;
    let mut rng = seeded(2024);
    let samples = 100_000;
    let mut sum = 0f64;
    for _ in 0..samples {
        let mut schedule = backoff.schedule();
        schedule.retries_so_far = 2;
        sum += schedule.next_delay(&mut rng).as_nanos() as f64;
    }
    let mean = sum / f64::from(samples);
    assert!(
        (mean / (ceiling / 2.0) - 1.0).abs() < 0.02,
        "mean {mean} vs {}",
        ceiling / 2.0
    );
}

#[test]
fn jittered_kinds_reach_both_ends_of_their_range() {
    let mut rng = seeded(9);
    let full = Backoff::FullJitter {
        base: Duration::from_nanos(3),
        cap: ms(1),
    };
    let equal = Backoff::EqualJitter {
        base: Duration::from_nanos(3),
        cap: ms(1),
    };
    let mut seen_full = std::collections::BTreeSet::new();
    let mut seen_equal = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        seen_full.insert(full.schedule().next_delay(&mut rng).as_nanos());
        seen_equal.insert(equal.schedule().next_delay(&mut rng).as_nanos());
    }
    assert_eq!(seen_full.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(seen_equal.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

proptest! {
    #[test]
    fn every_delay_is_within_max_delay_and_cap(backoff in any_backoff(), seed in any::<u64>()) {
        let mut rng = seeded(seed);
        let mut schedule = backoff.schedule();
        for retry in 1..=40 {
            let max = backoff.max_delay(retry);
            prop_assert!(max <= absolute_limit(backoff));
            prop_assert!(backoff.max_delay(retry + 1) >= max);
            prop_assert_eq!(backoff.ceiling(retry), max);
            let delay = schedule.next_delay(&mut rng);
            prop_assert!(delay <= max, "retry {}: {:?} > {:?}", retry, delay, max);
            prop_assert_eq!(schedule.retries_so_far(), retry);
        }
    }

    #[test]
    fn ceiling_matches_its_definition(backoff in valid_growing(), retry in 0u32..200) {
        let (base, cap) = base_and_cap(backoff).unwrap();
        if !matches!(backoff, Backoff::DecorrelatedJitter { .. }) {
            prop_assert_eq!(backoff.ceiling(retry), reference_ceiling(base, cap, retry));
            prop_assert_eq!(backoff.ceiling(1), base);
        }
    }

    #[test]
    fn exponential_waits_exactly_the_ceiling(backoff in valid_growing(), seed in any::<u64>()) {
        let (base, cap) = base_and_cap(backoff).unwrap();
        let exponential = Backoff::Exponential { base, cap };
        let mut schedule = exponential.schedule();
        let mut rng = seeded(seed);
        let mut previous = Duration::ZERO;
        for retry in 1..=100 {
            let delay = schedule.next_delay(&mut rng);
            prop_assert_eq!(delay, exponential.ceiling(retry));
            prop_assert!(delay >= previous);
            previous = delay;
        }
        prop_assert_eq!(previous, reference_ceiling(base, cap, 100));
    }

    #[test]
    fn full_jitter_stays_in_zero_to_ceiling(backoff in valid_growing(), seed in any::<u64>()) {
        let (base, cap) = base_and_cap(backoff).unwrap();
        let full = Backoff::FullJitter { base, cap };
        let (mut schedule, mut rng) = (full.schedule(), seeded(seed));
        for retry in 1..=64 {
            prop_assert!(schedule.next_delay(&mut rng) <= reference_ceiling(base, cap, retry));
        }
    }

    #[test]
    fn equal_jitter_stays_in_upper_half(backoff in valid_growing(), seed in any::<u64>()) {
        let (base, cap) = base_and_cap(backoff).unwrap();
        let equal = Backoff::EqualJitter { base, cap };
        let (mut schedule, mut rng) = (equal.schedule(), seeded(seed));
        for retry in 1..=64 {
            let ceiling = reference_ceiling(base, cap, retry);
            let delay = schedule.next_delay(&mut rng);
            prop_assert!(delay >= ceiling / 2 && delay <= ceiling);
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_cap(backoff in valid_growing(), seed in any::<u64>()) {
        let (base, cap) = base_and_cap(backoff).unwrap();
        let decorrelated = Backoff::DecorrelatedJitter { base, cap };
        let (mut schedule, mut rng) = (decorrelated.schedule(), seeded(seed));
        let mut previous = base;
        for _ in 1..=64 {
            let delay = schedule.next_delay(&mut rng);
            prop_assert!(delay >= base && delay <= cap);
            prop_assert!(delay.as_nanos() <= previous.as_nanos() * 3);
            previous = delay;
        }
    }

    #[test]
    fn same_seed_gives_same_delays(backoff in any_backoff(), seed in any::<u64>()) {
        let run = |mut rng: JitterRng| {
            let mut schedule = backoff.schedule();
            (0..32).map(|_| schedule.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(seeded(seed)), run(seeded(seed)));
    }

    #[test]
    fn worst_case_total_is_the_sum_of_max_delays(backoff in any_backoff(), retries in 0u32..300) {
        let sum = (1..=retries).map(|n| backoff.max_delay(n).as_nanos()).sum::<u128>();
        prop_assert_eq!(backoff.worst_case_total(retries), saturating_duration(sum));
    }
}

/// A delay in u128 nanoseconds becomes the `Duration` of exactly that many nanoseconds on both
/// sides of u64's range (the short path and the long one), and the longest one past it.
#[test]
fn saturating_duration_is_exact_across_u64_s_range() {
    let max = u128::from(u64::MAX);
    for nanos in [
        0,
        1,
        999_999_999,
        1_000_000_000,
        1_500_000_001,
        max - 1,
        max,
    ] {
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap();
        let expected = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        assert_eq!(saturating_duration(nanos), expected, "{nanos}");
    }
    let past = saturating_duration(max + 1);
    assert_eq!(past.as_nanos(), max + 1);
    assert_eq!(saturating_duration(u128::MAX), Duration::MAX);
}
