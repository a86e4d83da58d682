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

/// Every successful user request's latency with its step, kept as they come: packed into one
/// `u64` each (the latency above, the step in the low bits), as [`sort`](Self::sort) sorts
/// them, so that a run holds 8 bytes a request rather than 16 and the end of the run neither
/// packs them nor allocates the sorted list anew. A latency too long to pack beside the step
/// (over 2^47 ns, some 39 hours, with a day of steps) turns the whole list into pairs, sorted
/// each on their own.
pub(crate) struct StepLatencies {
    /// Bits that hold every step number, and `steps` for none.
    bits: u32,
    /// The step number that stands for none.
    none: u64,
    packed: Vec<u64>,
    /// The list as pairs, once a latency did not fit.
    pairs: Option<Vec<(u64, u32)>>,
}

impl StepLatencies {
    /// An empty list for a timeline of `steps` steps.
    pub(crate) fn new(steps: usize) -> Self {
        let none = steps as u64;
        StepLatencies {
            bits: u64::BITS - none.leading_zeros(),
            none,
            packed: Vec::new(),
            pairs: None,
        }
    }

    /// One latency, of a request that arrived in `step` (the step count or more: none).
    pub(crate) fn push(&mut self, latency: u64, step: u32) {
        let step = u64::from(step).min(self.none);
        if self.pairs.is_none() && self.bits < u64::BITS && latency.leading_zeros() >= self.bits {
            self.packed.push((latency << self.bits) | step);
        } else {
            self.push_pair(latency, step);
        }
    }

    /// A latency too long to pack, or one after it: the list goes on as pairs.
    #[cold]
    #[inline(never)]
    fn push_pair(&mut self, latency: u64, step: u64) {
        let (bits, packed) = (self.bits, &mut self.packed);
        let pairs = self.pairs.get_or_insert_with(|| {
            let mask = 1u64.checked_shl(bits).map_or(u64::MAX, |b| b - 1);
            let pairs = packed.iter().map(|&v| (v >> bits, (v & mask) as u32));
            let pairs = pairs.collect();
            *packed = Vec::new();
            pairs
        });
        pairs.push((latency, step as u32));
    }

    /// One sorted list of all the latencies and one per step, `counts[k]` long for step `k`
    /// (`counts.len()` is the step count given to [`new`](Self::new)).
    pub(crate) fn sort(self, counts: &[u64]) -> (Vec<u64>, Vec<Vec<u64>>) {
        if let Some(pairs) = &self.pairs {
            return sort_pairs(pairs, counts);
        }
        let mut per_step = per_step_lists(counts);
        let (bits, mut values) = (self.bits, self.packed);
        sort_above(&mut values, bits);
        let mask = (1u64 << bits) - 1;
        for v in &mut values {
            let latency = *v >> bits;
            if let Some(list) = per_step.get_mut((*v & mask) as usize) {
                list.push(latency);
            }
            *v = latency;
        }
        (values, per_step)
    }
}

/// An empty list for each step, with room for its `counts[k]` latencies.
fn per_step_lists(counts: &[u64]) -> Vec<Vec<u64>> {
    counts
        .iter()
        .map(|&n| Vec::with_capacity(usize::try_from(n).unwrap_or(0)))
        .collect()
}

/// [`StepLatencies::sort`] for a list that could not be packed: every list sorted on its own.
fn sort_pairs(latencies: &[(u64, u32)], counts: &[u64]) -> (Vec<u64>, Vec<Vec<u64>>) {
    // Too long a latency or too many steps to pack: sort each list on its own.
    let mut per_step = per_step_lists(counts);
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

    /// What [`StepLatencies::sort`] must give: each list gathered, then sorted on its own.
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
    fn a_latency_too_long_to_pack_turns_the_list_into_pairs_and_loses_nothing() {
        let steps = 86_400;
        let latencies = [
            (5, 3),
            (1 << 40, 86_400),
            (7, 3),
            (u64::MAX, 2),
            (2, 2),
            (9, 0),
        ];
        let mut list = StepLatencies::new(steps);
        let mut counts = vec![0u64; steps];
        for &(latency, step) in &latencies {
            list.push(latency, step);
            if let Some(n) = counts.get_mut(step as usize) {
                *n += 1;
            }
        }
        assert!(list.pairs.is_some(), "spilled at u64::MAX");
        assert_eq!(list.sort(&counts), by_step_reference(&latencies, steps));
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
            let mut list = StepLatencies::new(steps);
            for &(latency, step) in &latencies {
                list.push(latency, step);
            }
            assert_eq!(
                list.sort(&counts),
                by_step_reference(&latencies, steps),
                "{len} latencies below {top} in {steps} steps"
            );
        }
    }
}
