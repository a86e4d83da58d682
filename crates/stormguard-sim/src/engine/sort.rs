//! Sorting the users' latencies at the end of a run.
//!
//! A run keeps every successful user request's latency, to report exact percentiles: tens of
//! thousands a simulated minute, sorted for the whole run and per second of the timeline.
//! A comparison sort spent some 200 instructions on each latency; a radix sort on 11-bit digits
//! needs three passes for latencies under 2^33 ns (8.6 s), each a count and a scatter, and took
//! a quarter off that work on the benchmark's storm. A sort of integers has one result whatever
//! its method, so the outcome is the same.
//!
//! Sorting each second's latencies again cost more than the whole run's (a second holds a few
//! hundred, and each radix pass clears and sums 2048 counters), so the latencies are sorted
//! once, each with its second packed in the low bits below it, and dealt out in order to their
//! seconds: each second's list comes out sorted, as a sub-sequence of a sorted list.

/// Bits of one digit: 2048 counters, which fit in the first level of cache.
const DIGIT_BITS: u32 = 11;

/// Below this many values a comparison sort is as fast, without the counters to clear.
const RADIX_FROM: usize = 512;

/// Sorts `values` in ascending order.
pub(crate) fn sort_nanos(values: &mut Vec<u64>) {
    sort_above(values, 0);
}

/// Sorts `latencies` (each with its step, `counts.len()` or more for none) into one sorted
/// list of all of them and one per step, `counts[k]` long for step `k`.
pub(crate) fn sort_by_step(latencies: &[(u64, u32)], counts: &[u64]) -> (Vec<u64>, Vec<Vec<u64>>) {
    let steps = counts.len();
    let mut per_step: Vec<Vec<u64>> = counts
        .iter()
        .map(|&n| Vec::with_capacity(usize::try_from(n).unwrap_or(0)))
        .collect();
    // Bits that hold every step number, and `steps` for none.
    let step_bits = u64::BITS - (steps as u64).leading_zeros();
    let largest = latencies.iter().map(|&(l, _)| l).max().unwrap_or(0);
    let fits = step_bits < u64::BITS && largest.leading_zeros() >= step_bits;
    if !fits {
        // Too long a latency or too many steps to pack: sort each list on its own.
        let mut all: Vec<u64> = latencies.iter().map(|&(l, _)| l).collect();
        for &(latency, step) in latencies {
            if let Some(list) = per_step.get_mut(step as usize) {
                list.push(latency);
            }
        }
        sort_nanos(&mut all);
        for list in &mut per_step {
            sort_nanos(list);
        }
        return (all, per_step);
    }
    let none = steps as u64;
    let mut packed: Vec<u64> = latencies
        .iter()
        .map(|&(l, step)| (l << step_bits) | u64::from(step).min(none))
        .collect();
    sort_above(&mut packed, step_bits);
    let mask = (1u64 << step_bits) - 1;
    let mut all = Vec::with_capacity(packed.len());
    for v in packed {
        let latency = v >> step_bits;
        all.push(latency);
        if let Some(list) = per_step.get_mut((v & mask) as usize) {
            list.push(latency);
        }
    }
    (all, per_step)
}

/// Sorts `values` in ascending order of their bits above the lowest `skip` (fewer than 64),
/// keeping the order of values equal there when it radix sorts (a comparison sort orders them
/// by their low bits, which for the latencies of [`sort_by_step`] makes no difference).
fn sort_above(values: &mut Vec<u64>, skip: u32) {
    if values.len() < RADIX_FROM {
        values.sort_unstable();
        return;
    }
    let largest = values.iter().copied().max().unwrap_or(0) >> skip;
    let passes = (u64::BITS - largest.leading_zeros()).div_ceil(DIGIT_BITS);
    let mask = (1u64 << DIGIT_BITS) - 1;
    let mut scratch = vec![0u64; values.len()];
    for pass in 0..passes {
        let shift = skip + pass * DIGIT_BITS;
        let digit = |v: u64| ((v >> shift) & mask) as usize;
        let mut starts = [0usize; 1 << DIGIT_BITS];
        for &v in values.iter() {
            starts[digit(v)] += 1;
        }
        let mut sum = 0;
        for start in starts.iter_mut() {
            let count = *start;
            *start = sum;
            sum += count;
        }
        for &v in values.iter() {
            let at = &mut starts[digit(v)];
            scratch[*at] = v;
            *at += 1;
        }
        std::mem::swap(values, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use stormguard::backoff::seeded;

    use super::*;

    #[test]
    fn sorts_as_a_comparison_sort_does() {
        let mut rng = seeded(3);
        for (len, top) in [
            (0, 1),
            (10, 100),
            (511, 1 << 20),
            (512, 1 << 20),
            (5_000, 1 << 33),
        ] {
            for top in [top, u64::MAX] {
                let mut values: Vec<u64> = (0..len).map(|_| rng.random_range(0..top)).collect();
                let mut expected = values.clone();
                expected.sort_unstable();
                sort_nanos(&mut values);
                assert_eq!(values, expected, "{len} values below {top}");
            }
        }
        let mut zeros = vec![0; 1_000];
        sort_nanos(&mut zeros);
        assert_eq!(zeros, vec![0; 1_000]);
    }

    /// What [`sort_by_step`] must give: each list gathered, then sorted on its own.
    fn by_step_reference(latencies: &[(u64, u32)], steps: usize) -> (Vec<u64>, Vec<Vec<u64>>) {
        let mut all: Vec<u64> = latencies.iter().map(|&(l, _)| l).collect();
        all.sort_unstable();
        let mut per_step = vec![Vec::new(); steps];
        for &(latency, step) in latencies {
            if let Some(list) = per_step.get_mut(step as usize) {
                list.push(latency);
            }
        }
        for list in &mut per_step {
            list.sort_unstable();
        }
        (all, per_step)
    }

    #[test]
    fn sorting_by_step_gives_each_step_and_the_whole_run_sorted() {
        let mut rng = seeded(5);
        for (len, steps, top) in [
            (0, 0, 1),
            (100, 0, 1 << 30),
            (300, 7, 1 << 30),
            (5_000, 60, 1 << 33),
            (5_000, 1, 1 << 40),
            (5_000, 86_400, 1 << 30),
            (2_000, 30, u64::MAX),
            (600, 30, u64::MAX >> 4),
        ] {
            let latencies: Vec<(u64, u32)> = (0..len)
                .map(|_| {
                    let step = rng.random_range(0..=steps as u32);
                    (rng.random_range(0..top), step)
                })
                .collect();
            let mut counts = vec![0u64; steps];
            for &(_, step) in &latencies {
                if let Some(n) = counts.get_mut(step as usize) {
                    *n += 1;
                }
            }
            assert_eq!(
                sort_by_step(&latencies, &counts),
                by_step_reference(&latencies, steps),
                "{len} latencies below {top} in {steps} steps"
            );
        }
    }
}
