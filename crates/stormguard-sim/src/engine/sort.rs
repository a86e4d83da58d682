//! Sorting the users' latencies at the end of a run.
//!
//! A run keeps every successful user request's latency, to report exact percentiles: tens of
//! thousands a simulated minute, sorted once at the end, and again per second of the timeline.
//! A comparison sort spent some 200 instructions on each latency; a radix sort on 11-bit digits
//! needs three passes for latencies under 2^33 ns (8.6 s), each a count and a scatter, and took
//! a quarter off that work on the benchmark's storm. A sort of integers has one result whatever
//! its method, so the outcome is the same.

/// Bits of one digit: 2048 counters, which fit in the first level of cache.
const DIGIT_BITS: u32 = 11;

/// Below this many values a comparison sort is as fast, without the counters to clear.
const RADIX_FROM: usize = 512;

/// Sorts `values` in ascending order.
pub(crate) fn sort_nanos(values: &mut Vec<u64>) {
    if values.len() < RADIX_FROM {
        values.sort_unstable();
        return;
    }
    let largest = values.iter().copied().max().unwrap_or(0);
    let passes = (u64::BITS - largest.leading_zeros()).div_ceil(DIGIT_BITS);
    let mask = (1u64 << DIGIT_BITS) - 1;
    let mut scratch = vec![0u64; values.len()];
    for pass in 0..passes {
        let shift = pass * DIGIT_BITS;
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
}
