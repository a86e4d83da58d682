//! A classic Prometheus histogram and the two readings `recommend` takes of it: a quantile, and
//! the share of requests at or below a value.
//!
//! ## Why exactly Prometheus's arithmetic
//! A user compares what `recommend` says with their dashboards, which run `histogram_quantile`.
//! Any other estimate (a fitted curve, a different interpolation) would give a second p99.9 for
//! the same data and a reason to distrust both. So [`Histogram::quantile`] is Prometheus's
//! `bucketQuantile` step for step: buckets sorted and duplicates coalesced, counts forced
//! monotonic, linear interpolation inside the bucket holding the rank, the lowest bucket taken
//! to start at 0, and a rank in the `+Inf` bucket answered with the highest finite bound (the
//! estimate is then a floor, which [`crate::suggest`] warns about).

/// One bucket: requests that took at most `upper`, counted cumulatively as Prometheus exposes
/// them (`_bucket{le="0.25"} 42`: 42 requests took 0.25 or less).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The `le` bound, in the unit of the series (`f64::INFINITY` for `+Inf`).
    pub upper: f64,
    /// Requests at or below `upper`, cumulative.
    pub count: f64,
}

/// A histogram's cumulative buckets, sorted by bound, duplicates coalesced, counts monotonic.
///
/// Built from buckets in any order, as scraped or as a query answered them:
///
/// ```
/// use stormguard_recommend::histogram::{Bucket, Histogram};
///
/// let h = Histogram::new([
///     Bucket { upper: f64::INFINITY, count: 100.0 },
///     Bucket { upper: 0.1, count: 50.0 },
///     Bucket { upper: 0.2, count: 90.0 },
/// ]);
/// // Rank 99 lies in the +Inf bucket: Prometheus answers the highest finite bound.
/// assert_eq!(h.quantile(0.99), Some(0.2));
/// // Rank 70 is halfway through (0.1, 0.2].
/// assert!((h.quantile(0.7).unwrap() - 0.15).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    buckets: Vec<Bucket>,
}

/// The share of requests at or below a value, and how far to trust it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Share {
    /// The value is a bucket bound: the share is counted, not estimated.
    Exact(f64),
    /// The value lies inside a bucket: the share is interpolated linearly within it.
    Interpolated(f64),
    /// The value lies above the highest finite bound: at least this share (the requests of the
    /// `+Inf` bucket may or may not be under it).
    AtLeast(f64),
}

impl Share {
    /// The figure, whatever its kind.
    pub fn value(self) -> f64 {
        match self {
            Share::Exact(v) | Share::Interpolated(v) | Share::AtLeast(v) => v,
        }
    }
}

impl Histogram {
    /// The histogram of `buckets`, in any order. Buckets with the same bound are added
    /// together and counts that fall with a rising bound (a scrape racing with observations,
    /// float error after `rate`) are raised to the count before them, as Prometheus does.
    pub fn new(buckets: impl IntoIterator<Item = Bucket>) -> Self {
        let mut buckets: Vec<Bucket> = buckets.into_iter().filter(|b| !b.upper.is_nan()).collect();
        buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
        let mut coalesced: Vec<Bucket> = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            match coalesced.last_mut() {
                Some(last) if last.upper == bucket.upper => last.count += bucket.count,
                _ => coalesced.push(bucket),
            }
        }
        let mut max = f64::NEG_INFINITY;
        for bucket in &mut coalesced {
            if bucket.count < max {
                bucket.count = max;
            }
            max = bucket.count;
        }
        Histogram { buckets: coalesced }
    }

    /// The buckets, sorted by bound.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Whether the last bucket is `+Inf`; without it Prometheus computes no quantile at all,
    /// since the requests above the last bound are not counted anywhere.
    pub fn has_inf(&self) -> bool {
        self.buckets
            .last()
            .is_some_and(|b| b.upper == f64::INFINITY)
    }

    /// Requests counted: the `+Inf` bucket's count (0 without one).
    pub fn total(&self) -> f64 {
        if self.has_inf() {
            self.buckets.last().map_or(0.0, |b| b.count)
        } else {
            0.0
        }
    }

    /// The `q` quantile (0 to 1) as Prometheus's `histogram_quantile` computes it; `None` where
    /// Prometheus answers NaN: no `+Inf` bucket, fewer than two buckets, no requests, or `q`
    /// outside 0 to 1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || !self.has_inf() || self.buckets.len() < 2 {
            return None;
        }
        let b = &self.buckets;
        let observations = b[b.len() - 1].count;
        if observations == 0.0 {
            return None;
        }
        let mut rank = q * observations;
        // Searched among the finite buckets only: a rank beyond them all lands past the end.
        let i = b[..b.len() - 1].partition_point(|bucket| bucket.count < rank);
        if i == b.len() - 1 {
            return Some(b[b.len() - 2].upper);
        }
        if i == 0 && b[0].upper <= 0.0 {
            return Some(b[0].upper);
        }
        let end = b[i].upper;
        let mut count = b[i].count;
        let start = if i > 0 {
            count -= b[i - 1].count;
            rank -= b[i - 1].count;
            b[i - 1].upper
        } else {
            0.0
        };
        Some(start + (end - start) * (rank / count))
    }

    /// The bucket `(lower, upper]` a value lies in; the lowest bucket starts at 0 and a value
    /// above every finite bound lies in `(highest, +Inf]`. `None` without buckets.
    pub fn bucket_of(&self, value: f64) -> Option<(f64, f64)> {
        let i = self.buckets.partition_point(|bucket| bucket.upper < value);
        let upper = self
            .buckets
            .get(i)
            .map_or(f64::INFINITY, |bucket| bucket.upper);
        let lower = match i.checked_sub(1) {
            Some(j) => self.buckets.get(j)?.upper,
            None if self.buckets.is_empty() => return None,
            None => 0.0_f64.min(upper),
        };
        Some((lower, upper))
    }

    /// The share of requests that took at most `value` (Mux's Apdex-style figure for a
    /// timeout: the share it lets through), interpolated linearly inside a bucket as
    /// [`Histogram::quantile`] is, so that the share at the `q` quantile is `q`. `None` when
    /// no request was counted.
    pub fn share_at_or_below(&self, value: f64) -> Option<Share> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let finite = &self.buckets[..self.buckets.len() - 1];
        let i = finite.partition_point(|bucket| bucket.upper < value);
        let Some(bucket) = finite.get(i) else {
            let below = finite.last().map_or(0.0, |b| b.count);
            // With nothing in the `+Inf` bucket past the highest bound, every request is under
            // the value: exactly all, where ">=100%" was printed.
            if below >= total {
                return Some(Share::Exact(1.0));
            }
            return Some(Share::AtLeast(below / total));
        };
        if bucket.upper == value {
            return Some(Share::Exact(bucket.count / total));
        }
        let (lower, below) = match i.checked_sub(1) {
            Some(j) => (finite[j].upper, finite[j].count),
            None => (0.0_f64.min(bucket.upper), 0.0),
        };
        if value <= lower || bucket.upper <= lower {
            return Some(Share::Exact(below / total));
        }
        let inside = (bucket.count - below) * (value - lower) / (bucket.upper - lower);
        Some(Share::Interpolated((below + inside) / total))
    }

    /// The sum of two histograms with the same bounds (two instances, or two routes a call's
    /// `metrics` key both matches); `None` when the bounds differ, since counts at different
    /// bounds cannot be added without inventing where requests fell.
    pub fn merged(&self, other: &Histogram) -> Option<Histogram> {
        if self.buckets.len() != other.buckets.len()
            || self
                .buckets
                .iter()
                .zip(&other.buckets)
                .any(|(a, b)| a.upper != b.upper)
        {
            return None;
        }
        Some(Histogram {
            buckets: self
                .buckets
                .iter()
                .zip(&other.buckets)
                .map(|(a, b)| Bucket {
                    upper: a.upper,
                    count: a.count + b.count,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn h(pairs: &[(f64, f64)]) -> Histogram {
        Histogram::new(pairs.iter().map(|&(upper, count)| Bucket { upper, count }))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    /// Hand-computed: 10 in (0, 0.1], 80 in (0.1, 0.2], 9 in (0.2, 0.4], 1 above.
    fn ladder() -> Histogram {
        h(&[(0.1, 10.0), (0.2, 90.0), (0.4, 99.0), (INF, 100.0)])
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_holding_the_rank() {
        let l = ladder();
        // rank 50: 40 of the 80 in (0.1, 0.2] -> 0.1 + 0.1 * 40/80.
        assert!(close(l.quantile(0.5), 0.15));
        // rank 95: 5 of the 9 in (0.2, 0.4] -> 0.2 + 0.2 * 5/9.
        assert!(close(l.quantile(0.95), 0.2 + 0.2 * 5.0 / 9.0));
        // rank 99 is exactly the count at 0.4: the first bucket reaching it is (0.2, 0.4].
        assert!(close(l.quantile(0.99), 0.4));
    }

    #[test]
    fn the_lowest_bucket_starts_at_zero() {
        // rank 5: half of the 10 in (0, 0.1].
        assert!(close(ladder().quantile(0.05), 0.05));
        // A lowest bound at or below 0 is answered as is (Prometheus's rule for it).
        let negative = h(&[(-1.0, 10.0), (1.0, 20.0), (INF, 20.0)]);
        assert!(close(negative.quantile(0.1), -1.0));
    }

    #[test]
    fn a_rank_in_the_inf_bucket_is_the_highest_finite_bound() {
        // rank 99.9 > 99: beyond every finite bucket.
        assert!(close(ladder().quantile(0.999), 0.4));
        assert!(close(ladder().quantile(1.0), 0.4));
    }

    #[test]
    fn no_quantile_where_prometheus_answers_nan() {
        assert_eq!(h(&[(0.1, 5.0), (0.2, 9.0)]).quantile(0.5), None, "no +Inf");
        assert_eq!(h(&[(INF, 9.0)]).quantile(0.5), None, "one bucket");
        assert_eq!(h(&[(0.1, 0.0), (INF, 0.0)]).quantile(0.5), None, "empty");
        assert_eq!(ladder().quantile(1.5), None);
        assert_eq!(ladder().quantile(-0.1), None);
    }

    #[test]
    fn order_duplicates_and_falling_counts_are_mended() {
        // Given out of order, 0.2 twice (added), and 0.4 below 0.2's count (raised).
        let messy = h(&[
            (INF, 100.0),
            (0.2, 40.0),
            (0.1, 10.0),
            (0.2, 50.0),
            (0.4, 80.0),
        ]);
        assert_eq!(
            messy.buckets()[1],
            Bucket {
                upper: 0.2,
                count: 90.0
            }
        );
        assert_eq!(
            messy.buckets()[2],
            Bucket {
                upper: 0.4,
                count: 90.0
            }
        );
        assert_eq!(messy.total(), 100.0);
    }

    #[test]
    fn the_share_under_a_value_inverts_the_quantile() {
        let l = ladder();
        assert_eq!(l.share_at_or_below(0.2), Some(Share::Exact(0.9)));
        let Some(Share::Interpolated(half)) = l.share_at_or_below(0.15) else {
            panic!("inside a bucket");
        };
        assert!((half - 0.5).abs() < 1e-12);
        let Some(Share::Interpolated(low)) = l.share_at_or_below(0.05) else {
            panic!("inside the lowest bucket");
        };
        assert!((low - 0.05).abs() < 1e-12);
        assert_eq!(l.share_at_or_below(5.0), Some(Share::AtLeast(0.99)));
        // Nothing past the highest bound: all of them, exactly.
        let all_under = h(&[(0.05, 100.0), (INF, 100.0)]);
        assert_eq!(all_under.share_at_or_below(1.0), Some(Share::Exact(1.0)));
        assert_eq!(l.share_at_or_below(0.0), Some(Share::Exact(0.0)));
        for q in [0.03, 0.3, 0.5, 0.93, 0.97] {
            let x = l.quantile(q).unwrap();
            assert!(
                (l.share_at_or_below(x).unwrap().value() - q).abs() < 1e-9,
                "{q}"
            );
        }
    }

    #[test]
    fn buckets_of_values() {
        let l = ladder();
        assert_eq!(l.bucket_of(0.05), Some((0.0, 0.1)));
        assert_eq!(l.bucket_of(0.1), Some((0.0, 0.1)));
        assert_eq!(l.bucket_of(0.3), Some((0.2, 0.4)));
        assert_eq!(l.bucket_of(7.0), Some((0.4, INF)));
        assert_eq!(h(&[]).bucket_of(1.0), None);
    }

    #[test]
    fn histograms_merge_only_with_the_same_bounds() {
        let sum = ladder().merged(&ladder()).unwrap();
        assert_eq!(sum.total(), 200.0);
        assert!(close(sum.quantile(0.5), 0.15));
        assert_eq!(ladder().merged(&h(&[(0.1, 1.0), (INF, 1.0)])), None);
    }
}
