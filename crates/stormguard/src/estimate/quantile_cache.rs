//! The quantiles a [`LatencyEstimator`](super::LatencyEstimator) last computed, readable without
//! its lock.
//!
//! Why: a quantile scans the whole histogram (about 3 300 counters), and the proxy asked for
//! the same two or three quantiles (the p50 an attempt is expected to take, the p99.9 of an
//! adaptive timeout, the p95 of a hedge delay) on every request, under the estimator's one
//! lock. Here each of a few quantiles is kept with the generation of the histogram it was
//! computed from; the estimator starts a new generation when its window moves or after a set
//! number of records, and until then a reader takes the kept value from two atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many distinct quantiles are kept: the p50, an adaptive timeout's and a hedge's, and one
/// to spare. A quantile past these is computed under the lock every time, as before.
const SLOTS: usize = 4;
/// A slot that holds no quantile yet: the bits of a NaN, which no clamped `q` is.
const EMPTY: u64 = u64::MAX;

/// A few quantiles and the generation each was computed at.
///
/// Writes happen under the estimator's lock only (one writer at a time); reads need none. A
/// slot's `q` is written once, after its first value, so a reader that finds `q` finds a value
/// computed for it; a value may be rewritten while it is read, always with a newer one.
pub(super) struct QuantileCache {
    /// The generation of the live histogram: a value computed at another is stale. Starts at 1,
    /// so an empty slot (generation 0) is never current.
    generation: AtomicU64,
    slots: [Slot; SLOTS],
}

struct Slot {
    /// The bits of the `q` this slot holds, or [`EMPTY`].
    q: AtomicU64,
    /// The quantile, in microseconds.
    micros: AtomicU64,
    /// The generation `micros` was computed at.
    generation: AtomicU64,
}

impl QuantileCache {
    pub(super) fn new() -> Self {
        QuantileCache {
            generation: AtomicU64::new(1),
            slots: std::array::from_fn(|_| Slot {
                q: AtomicU64::new(EMPTY),
                micros: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The value kept for `q` (its bits), if it was computed in the current generation.
    #[inline]
    pub(super) fn get(&self, q: u64) -> Option<u64> {
        let generation = self.generation.load(Ordering::Acquire);
        self.slots.iter().find_map(|slot| {
            (slot.q.load(Ordering::Acquire) == q
                && slot.generation.load(Ordering::Acquire) == generation)
                .then(|| slot.micros.load(Ordering::Relaxed))
        })
    }

    /// Keeps `micros` as the quantile `q` (its bits) of the current generation, in its slot or
    /// a free one; with every slot taken by other quantiles, keeps nothing. Under the lock.
    pub(super) fn put(&self, q: u64, micros: u64) {
        let generation = self.generation.load(Ordering::Relaxed);
        for slot in &self.slots {
            let held = slot.q.load(Ordering::Relaxed);
            if held == q || held == EMPTY {
                slot.micros.store(micros, Ordering::Relaxed);
                slot.generation.store(generation, Ordering::Release);
                if held == EMPTY {
                    slot.q.store(q, Ordering::Release);
                }
                return;
            }
        }
    }

    /// Makes every kept value stale: the live histogram changed enough. Under the lock.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_read_until_invalidated() {
        let cache = QuantileCache::new();
        let (p50, p99) = (0.5f64.to_bits(), 0.99f64.to_bits());
        assert_eq!(cache.get(p50), None, "nothing kept yet");
        cache.put(p50, 20);
        assert_eq!(cache.get(p50), Some(20));
        assert_eq!(cache.get(p99), None);
        cache.invalidate();
        assert_eq!(cache.get(p50), None, "stale");
        cache.put(p50, 30);
        assert_eq!(cache.get(p50), Some(30), "the same slot again");
    }

    #[test]
    fn quantiles_past_the_slots_are_not_kept() {
        let cache = QuantileCache::new();
        let qs: Vec<u64> = (1..=SLOTS as u32 + 1)
            .map(|i| (f64::from(i) / 10.0).to_bits())
            .collect();
        for (i, &q) in qs.iter().enumerate() {
            cache.put(q, i as u64);
        }
        for (i, &q) in qs[..SLOTS].iter().enumerate() {
            assert_eq!(cache.get(q), Some(i as u64));
        }
        assert_eq!(cache.get(qs[SLOTS]), None);
    }
}
