use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread;

const SECOND: Duration = Duration::from_secs(1);

fn drain(budget: &RetryBudget, now: Instant) -> usize {
    let mut n = 0;
    while budget.try_withdraw(now) {
        n += 1;
    }
    n
}

#[test]
fn is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RetryBudget>();
}

#[test]
fn ratio_0_3_allows_exactly_30_retries_per_100_requests() {
    let budget = RetryBudget::new(10 * SECOND, 0, 0.3).unwrap();
    let t0 = Instant::now();
    (0..100).for_each(|_| budget.deposit(t0));
    // tower 0.5 truncates 1/0.3 to a withdraw of 3 deposits and would allow 33.
    assert_eq!(drain(&budget, t0), 30);
}

#[test]
fn ratio_0_15_allows_exactly_15_retries_per_100_requests() {
    let budget = RetryBudget::new(10 * SECOND, 0, 0.15).unwrap();
    let t0 = Instant::now();
    (0..100).for_each(|_| budget.deposit(t0));
    assert_eq!(drain(&budget, t0), 15);
    assert!((budget.balance(t0) - 0.0).abs() < 1e-9);
}

#[test]
fn fractional_deposits_accumulate_exactly() {
    let budget = RetryBudget::new(10 * SECOND, 0, 0.000_001).unwrap();
    let t0 = Instant::now();
    (0..999_999).for_each(|_| budget.deposit(t0));
    assert!(!budget.try_withdraw(t0));
    budget.deposit(t0);
    assert!(budget.try_withdraw(t0));
    assert!(!budget.try_withdraw(t0));
}

#[test]
fn reserve_alone_allows_min_per_sec_times_ttl_retries_and_no_more() {
    let budget = RetryBudget::new(10 * SECOND, 10, 0.0).unwrap();
    let t0 = Instant::now();
    assert_eq!(budget.balance(t0), 100.0);
    assert_eq!(drain(&budget, t0), 100);
    assert!(!budget.try_withdraw(t0 + 5 * SECOND));
    // The withdrawals expire after the ttl, which makes the reserve available again.
    assert_eq!(drain(&budget, t0 + 10 * SECOND), 100);
}

#[test]
fn reserve_scales_with_a_fractional_ttl() {
    let budget = RetryBudget::new(Duration::from_millis(2500), 4, 0.0).unwrap();
    assert_eq!(drain(&budget, Instant::now()), 10);
}

#[test]
fn deposits_expire_after_the_ttl() {
    let ttl = 10 * SECOND;
    let budget = RetryBudget::new(ttl, 0, 1.0).unwrap();
    let t0 = Instant::now();
    (0..10).for_each(|_| budget.deposit(t0));
    // Still live in the last slot of the window...
    assert_eq!(budget.balance(t0 + ttl * 9 / 10), 10.0);
    assert_eq!(budget.balance(t0 + ttl - Duration::from_nanos(1)), 10.0);
    // ...and gone once the ttl has passed.
    assert_eq!(budget.balance(t0 + ttl), 0.0);
    assert!(!budget.try_withdraw(t0 + ttl));
}

#[test]
fn deposits_expire_after_a_long_idle_gap() {
    let budget = RetryBudget::new(SECOND, 0, 1.0).unwrap();
    let t0 = Instant::now();
    budget.deposit(t0);
    budget.deposit(t0 + SECOND / 2);
    assert_eq!(budget.balance(t0 + 1000 * SECOND), 0.0);
    budget.deposit(t0 + 1000 * SECOND);
    assert_eq!(budget.balance(t0 + 1000 * SECOND), 1.0);
}

#[test]
fn zero_ratio_and_zero_reserve_allow_no_retries() {
    let budget = RetryBudget::new(SECOND, 0, 0.0).unwrap();
    let t0 = Instant::now();
    (0..10_000).for_each(|_| budget.deposit(t0));
    assert!(!budget.try_withdraw(t0));
    assert!(!budget.try_withdraw(t0 + 3 * SECOND));
}

#[test]
fn balance_goes_negative_while_retries_outlive_their_deposits() {
    let budget = RetryBudget::new(10 * SECOND, 0, 1.0).unwrap();
    let t0 = Instant::now();
    (0..5).for_each(|_| budget.deposit(t0));
    assert_eq!(drain(&budget, t0 + 5 * SECOND), 5);
    // The deposits expire first; the debt lasts until the retries expire too.
    assert_eq!(budget.balance(t0 + 10 * SECOND), -5.0);
    budget.deposit(t0 + 10 * SECOND);
    assert!(!budget.try_withdraw(t0 + 10 * SECOND));
    assert_eq!(budget.balance(t0 + 15 * SECOND), 1.0);
}

#[test]
fn now_earlier_than_seen_counts_in_the_current_slot() {
    let budget = RetryBudget::new(10 * SECOND, 0, 1.0).unwrap();
    let t0 = Instant::now() + 100 * SECOND;
    budget.deposit(t0 + 20 * SECOND - Duration::from_nanos(1));
    budget.deposit(t0 + 20 * SECOND);
    // Late callers, even from before the epoch: recorded as now, never reviving old slots.
    budget.deposit(t0 + 5 * SECOND);
    budget.deposit(t0 - 50 * SECOND);
    assert!(budget.try_withdraw(t0));
    assert_eq!(budget.balance(t0), 3.0);
    // All of them belong to the slot of t0 + 20 s and expire with it.
    assert_eq!(budget.balance(t0 + 29 * SECOND), 3.0);
    assert_eq!(budget.balance(t0 + 30 * SECOND), 0.0);
}

/// The slot a time goes to is told without a division while it is the current one: the same
/// slot as the division gives, at and around every boundary, and never an older one.
#[test]
fn the_slot_of_a_time_is_the_division_s_at_every_boundary() {
    let budget = RetryBudget::new(SECOND, 0, 1.0).unwrap();
    let slot = budget.slot_nanos();
    let t0 = Instant::now();
    assert_eq!(budget.advance_to(t0), 0);
    let mut seen = 0;
    for boundary in [1, 2, 3, 7, 10, 11, 25, 1_000] {
        for nanos in [boundary * slot - 1, boundary * slot, boundary * slot + 1] {
            let index = budget.advance_to(t0 + Duration::from_nanos(nanos));
            seen = seen.max(nanos / slot);
            assert_eq!(index, seen, "{nanos} ns");
        }
        // An earlier time, back in an older slot, counts in the current one.
        let earlier = budget.advance_to(t0 + Duration::from_nanos(slot / 2));
        assert_eq!(earlier, seen);
    }
}

#[test]
fn new_rejects_out_of_range_parameters_and_says_what_is_valid() {
    let too_short = RetryBudget::new(Duration::from_millis(999), 1, 0.2).unwrap_err();
    assert_eq!(
        too_short,
        BudgetError::TtlOutOfRange {
            ttl: Duration::from_millis(999)
        }
    );
    assert!(too_short.to_string().contains("between 1s and 60s"));
    assert!(RetryBudget::new(61 * SECOND, 1, 0.2).is_err());
    for ratio in [-0.1, 1.000_001, 1000.0, f64::NAN, f64::INFINITY] {
        let err = RetryBudget::new(SECOND, 1, ratio).unwrap_err();
        assert!(matches!(err, BudgetError::RatioOutOfRange { .. }));
        assert!(err.to_string().contains("finite number from 0 to 1"));
    }
    assert!(RetryBudget::new(SECOND, 0, 0.0).is_ok());
    assert!(RetryBudget::new(60 * SECOND, u32::MAX, 1.0).is_ok());
}

#[test]
fn extreme_parameters_do_not_overflow() {
    let budget = RetryBudget::new(60 * SECOND, u32::MAX, 1.0).unwrap();
    let t0 = Instant::now();
    (0..1000).for_each(|_| budget.deposit(t0));
    let expected = f64::from(u32::MAX) * 60.0 + 1000.0;
    assert!((budget.balance(t0) - expected).abs() / expected < 1e-12);
    assert!(budget.try_withdraw(t0 + Duration::from_secs(1 << 40)));
}

#[test]
fn recommended_is_finagles_defaults() {
    let budget = RetryBudget::recommended();
    assert_eq!(budget.ttl(), 10 * SECOND);
    assert_eq!(budget.min_per_sec(), 10);
    assert_eq!(budget.ratio(), 0.2);
    assert_eq!(budget.balance(Instant::now()), 100.0);
    assert!(format!("{budget:?}").contains("ratio: 0.2"));
}

#[test]
fn concurrent_deposits_and_withdrawals_never_overdraw_or_lose_deposits() {
    let budget = Arc::new(RetryBudget::new(10 * SECOND, 10, 0.2).unwrap());
    let now = Instant::now();
    let successes = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (budget, successes) = (budget.clone(), successes.clone());
            thread::spawn(move || {
                for _ in 0..10_000 {
                    budget.deposit(now);
                    if budget.try_withdraw(now) {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    // floor(0.2 * 80_000 + 10 * 10): every withdrawal follows a deposit of less than one retry,
    // so the balance ends below one retry and every whole retry earned was spent.
    assert_eq!(successes.load(Ordering::Relaxed), 16_100);
    assert!((budget.balance(now) - 0.0).abs() < 1e-9);
}

#[test]
fn concurrent_withdrawals_from_the_reserve_get_exactly_the_reserve() {
    let budget = Arc::new(RetryBudget::new(10 * SECOND, 37, 0.0).unwrap());
    let now = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let budget = budget.clone();
            thread::spawn(move || (0..10_000).filter(|_| budget.try_withdraw(now)).count())
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 370);
    assert_eq!(budget.balance(now), 0.0);
}

#[test]
fn concurrent_use_across_rotations_stays_within_bounds_and_consistent() {
    let ttl = 10 * SECOND;
    let budget = Arc::new(RetryBudget::new(ttl, 10, 0.2).unwrap());
    let t0 = Instant::now();
    let step = Duration::from_millis(3);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let budget = budget.clone();
            thread::spawn(move || {
                let mut successes = 0usize;
                for i in 0..10_000u32 {
                    let now = t0 + step * i;
                    budget.deposit(now);
                    successes += usize::from(budget.try_withdraw(now));
                }
                successes
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // T = 30 s = 3 ttl: at most 0.2 * 80_000 + 100 * (3 + 1).
    assert!(total <= 16_400, "{total} retries allowed");
    assert!(total >= 15_000, "{total} retries allowed: too conservative");
    // Once everything has expired, exactly the reserve is left: no unit lost or created by
    // rotations that raced with deposits and withdrawals.
    assert_eq!(budget.balance(t0 + step * 10_000 + ttl), 100.0);
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Deposit,
    Withdraw,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Deposit), Just(Op::Withdraw)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The budget is compared with a plain log of events per slot: same decisions, same
    /// balance, and the ratio invariant at every decision and over the whole run.
    #[test]
    fn decisions_match_a_reference_log_and_respect_the_ratio(
        ttl_millis in 1000u64..=20_000,
        min_per_sec in 0u32..=3,
        ratio_millis in 0i64..=1000,
        events in proptest::collection::vec((0u64..3000, op()), 1..300),
    ) {
        let ttl = Duration::from_millis(ttl_millis);
        let ratio = ratio_millis as f64 / 1000.0;
        let budget = RetryBudget::new(ttl, min_per_sec, ratio).unwrap();
        let ratio_units = ratio_millis * 1000;
        prop_assert_eq!(budget.deposit_units(), ratio_units);
        let reserve_units = i64::from(min_per_sec) * ttl_millis as i64 * 1000;
        let slot_nanos = (ttl.as_nanos() / SLOTS as u128) as u64;
        prop_assert_eq!(budget.slot_nanos(), slot_nanos);

        let t0 = Instant::now();
        let mut elapsed = Duration::ZERO;
        let mut epoch = None;
        let mut log: Vec<(u64, Op)> = Vec::new();
        let (mut deposits, mut retries) = (0i64, 0i64);
        for (advance_millis, op) in events {
            elapsed += Duration::from_millis(advance_millis);
            let now = t0 + elapsed;
            let epoch = *epoch.get_or_insert(elapsed);
            let index = ((elapsed - epoch).as_nanos() / u128::from(slot_nanos)) as u64;
            let live = |log: &[(u64, Op)]| {
                let live = log.iter().filter(|(i, _)| i + SLOTS as u64 > index);
                let d = live.clone().filter(|(_, o)| matches!(o, Op::Deposit)).count() as i64;
                (d, live.count() as i64 - d)
            };
            match op {
                Op::Deposit => {
                    budget.deposit(now);
                    deposits += 1;
                    log.push((index, op));
                }
                Op::Withdraw => {
                    let (d, w) = live(&log);
                    let expected = reserve_units + ratio_units * d - UNITS_PER_RETRY * w
                        >= UNITS_PER_RETRY;
                    prop_assert_eq!(budget.try_withdraw(now), expected);
                    if expected {
                        retries += 1;
                        log.push((index, op));
                        let (d, w) = live(&log);
                        prop_assert!(w * UNITS_PER_RETRY <= ratio_units * d + reserve_units);
                    }
                }
            }
            let (d, w) = live(&log);
            let reference = reserve_units + ratio_units * d - UNITS_PER_RETRY * w;
            prop_assert_eq!(budget.balance(now), reference as f64 / UNITS_PER_RETRY as f64);
        }
        // Whole run: retries <= ratio * deposits + reserve * (T / ttl + 1).
        let run = (elapsed - epoch.unwrap()).as_nanos() as i128;
        let ttl_nanos = ttl.as_nanos() as i128;
        prop_assert!(
            i128::from(retries * UNITS_PER_RETRY) * ttl_nanos
                <= i128::from(ratio_units * deposits) * ttl_nanos
                    + i128::from(reserve_units) * (run + ttl_nanos)
        );
    }

    /// Any ratio in range is applied to within 1e-6 of a retry per request, and every whole
    /// retry earned can be spent.
    #[test]
    fn any_ratio_is_exact_to_a_millionth(ratio in 0.0f64..=1.0, requests in 1u32..200) {
        let budget = RetryBudget::new(SECOND, 0, ratio).unwrap();
        let now = Instant::now();
        (0..requests).for_each(|_| budget.deposit(now));
        let earned = budget.balance(now);
        let requests = f64::from(requests);
        prop_assert!((earned - ratio * requests).abs() <= 0.5e-6 * requests + 1e-9);
        if earned < 1000.0 {
            prop_assert_eq!(drain(&budget, now) as f64, earned.floor());
        }
    }
}
