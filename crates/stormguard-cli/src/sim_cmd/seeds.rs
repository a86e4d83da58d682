//! `--seeds N`: the same files and scenario run with the seeds `seed`, `seed+1`, ...,
//! `seed+N-1` on every core, and each figure reduced to a mean with its 95% confidence
//! interval, so that a comparison of two graphs says whether a difference is larger than what
//! another seed alone would make.
//!
//! Each seed's run is independent and deterministic (virtual time, seeded draws, no shared
//! state), so the figures are the same whatever the number of threads; the reduction runs in
//! seed order after all of them.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::summary::round;

/// The most seeds one command runs: a thousand give an interval about a tenth as wide as ten
/// do (it narrows with the square root of their number); more only multiply the wait.
pub(crate) const MAX_SEEDS: u32 = 1000;

/// Which seeds ran, in the JSON summary with `--seeds N` for N >= 2. The figures outside
/// `intervals` and the timeline are the first seed's.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct SeedRange {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) count: u32,
}

/// A figure over the seeds: the mean and its 95% confidence interval (Student's t with n-1
/// degrees of freedom over the per-seed values). `lower` and `upper` are `None` when fewer than
/// two seeds had the figure (a run that never recovered has no recovery time).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Interval {
    pub(crate) mean: f64,
    pub(crate) lower: Option<f64>,
    pub(crate) upper: Option<f64>,
    /// How many seeds had the figure.
    pub(crate) seeds: u32,
    /// The half-width, for the text (`±1.2`); the JSON has the bounds.
    #[serde(skip)]
    pub(crate) half: Option<f64>,
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom: exact to four
/// decimals up to 30, then interpolated in 1/df between 40, 60, 120 and the normal's 1.96 (the
/// textbook table's way; off by under 0.001).
pub(crate) fn t_975(df: u32) -> f64 {
    const SMALL: [f64; 30] = [
        12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
        2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739,
        2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
    ];
    const LARGE: [(f64, f64); 5] = [
        (30.0, 2.0423),
        (40.0, 2.0211),
        (60.0, 2.0003),
        (120.0, 1.9799),
        (f64::INFINITY, 1.9600),
    ];
    match df {
        0 => f64::NAN,
        1..=30 => SMALL[df as usize - 1],
        _ => {
            let x = 1.0 / f64::from(df);
            let (i, _) = LARGE
                .windows(2)
                .enumerate()
                .find(|(_, w)| f64::from(df) <= w[1].0)
                .expect("the last bound is infinite");
            let ((d0, t0), (d1, t1)) = (LARGE[i], LARGE[i + 1]);
            let (x0, x1) = (1.0 / d0, 1.0 / d1);
            t0 + (t1 - t0) * (x0 - x) / (x0 - x1)
        }
    }
}

impl Interval {
    /// The interval of the values the seeds had (`None`: that seed had no such figure); `None`
    /// when no seed had it.
    pub(crate) fn over(values: &[Option<f64>]) -> Option<Interval> {
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let n = present.len();
        if n == 0 {
            return None;
        }
        let mean = present.iter().sum::<f64>() / n as f64;
        let half = (n >= 2).then(|| {
            let var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_975(n as u32 - 1) * (var / n as f64).sqrt()
        });
        Some(Interval {
            mean: round(mean),
            lower: half.map(|h| round(mean - h)),
            upper: half.map(|h| round(mean + h)),
            seeds: n as u32,
            half: half.map(round),
        })
    }

    /// Whether the two intervals share a point; an interval without bounds (one seed had the
    /// figure) overlaps everything, since nothing tells how far it reaches.
    pub(crate) fn overlaps(&self, other: &Interval) -> bool {
        match (self.lower, self.upper, other.lower, other.upper) {
            (Some(l1), Some(u1), Some(l2), Some(u2)) => l1 <= u2 && l2 <= u1,
            _ => true,
        }
    }
}

/// Per figure name, the interval over the seeds' values, in seed order; a figure that some
/// seeds lack counts as missing for them.
pub(crate) fn intervals(per_seed: &[BTreeMap<String, Option<f64>>]) -> BTreeMap<String, Interval> {
    let names: std::collections::BTreeSet<&String> =
        per_seed.iter().flat_map(|f| f.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<Option<f64>> = per_seed
                .iter()
                .map(|f| f.get(name).copied().flatten())
                .collect();
            let mut interval = Interval::over(&values)?;
            // Every figure is a count, a time or a share: none goes below 0, and a share
            // (goodput, utilization) not above 1, however wide the t-interval of a few seeds
            // (goodput 99.7% ±3.2 had an upper bound of 103%).
            let most = if name.ends_with("goodput") || name.ends_with("utilization") {
                1.0
            } else {
                f64::INFINITY
            };
            interval.lower = interval.lower.map(|l| l.max(0.0));
            interval.upper = interval.upper.map(|u| u.min(most));
            Some((name.clone(), interval))
        })
        .collect()
}

/// Runs `job` for each of `tasks` indices on rayon's pool (all cores unless the caller
/// installs a smaller one); the results in index order, or the first error by index.
pub(crate) fn in_parallel<T: Send>(
    tasks: usize,
    job: impl Fn(usize) -> anyhow::Result<T> + Sync + Send,
) -> anyhow::Result<Vec<T>> {
    let results: Vec<anyhow::Result<T>> = (0..tasks).into_par_iter().map(job).collect();
    results.into_iter().collect()
}

/// How a figure reads: the unit of its mean and half-width.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unit {
    /// A count, or a mean of counts.
    Count,
    /// Two decimals: attempts per user, seconds of wasted work.
    Decimal,
    /// A share, as `86.9% ±1.2` (points).
    Percent,
    /// Milliseconds, as `text::ms` writes them.
    Ms,
    /// A moment of the run in seconds, as `at 17s ±0.5`.
    At,
    /// Seconds of work, as `2496.56s ±12.30s`.
    Seconds,
}

/// A mean or half-width of counts: as many decimals as its size needs.
fn approx(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Interval {
    /// `86.9% ±1.2`, `60.1ms ±0.4ms`, `38526 ±120`; `(k of N)` after it when only k of the N
    /// seeds had the figure.
    pub(crate) fn text(&self, unit: Unit, of: u32) -> String {
        let (mean, half) = match unit {
            Unit::Count => (approx(self.mean), self.half.map(approx)),
            Unit::Decimal => (
                format!("{:.2}", self.mean),
                self.half.map(|h| format!("{h:.2}")),
            ),
            Unit::Percent => (
                format!("{:.1}%", self.mean * 100.0),
                self.half.map(|h| format!("{:.1}", h * 100.0)),
            ),
            Unit::Ms => (
                super::text::ms(Some(self.mean)),
                self.half.map(|h| super::text::ms(Some(h))),
            ),
            Unit::At => (format!("at {}s", approx(self.mean)), self.half.map(approx)),
            Unit::Seconds => (
                format!("{:.2}s", self.mean),
                self.half.map(|h| format!("{h:.2}s")),
            ),
        };
        let mut text = match half {
            Some(half) => format!("{mean} ±{half}"),
            None => mean,
        };
        if self.seeds < of {
            text.push_str(&format!(" ({} of {of})", self.seeds));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_table() {
        for (df, t) in [
            (1, 12.706),
            (4, 2.776),
            (9, 2.262),
            (29, 2.045),
            (100, 1.984),
        ] {
            assert!((t_975(df) - t).abs() < 0.001, "df {df}: {}", t_975(df));
        }
        assert!((t_975(1_000_000) - 1.960).abs() < 0.001);
        assert!(t_975(0).is_nan());
    }

    #[test]
    fn an_interval_is_the_mean_plus_minus_t_times_the_standard_error() {
        // Mean 10, sample sd 1.5811 (1,2,...: 8,9,10,11,12), se 0.7071, t(4) 2.7764.
        let values: Vec<Option<f64>> = [8.0, 9.0, 10.0, 11.0, 12.0].map(Some).to_vec();
        let i = Interval::over(&values).unwrap();
        assert_eq!(i.mean, 10.0);
        assert_eq!(i.half, Some(1.96321));
        assert_eq!((i.lower, i.upper), (Some(8.03679), Some(11.9632)));
        assert_eq!(i.text(Unit::Count, 5), "10 ±1.96");
        let same = Interval::over(&[Some(64.0), Some(64.0)]).unwrap();
        assert_eq!(same.text(Unit::Count, 2), "64 ±0");
        let near = Interval::over(&[Some(11.5), Some(12.5)]).unwrap();
        assert!(i.overlaps(&near) && near.overlaps(&i));
        let far = Interval::over(&[Some(20.0), Some(21.0)]).unwrap();
        assert!(!i.overlaps(&far) && !far.overlaps(&i));
    }

    #[test]
    fn seeds_without_the_figure_are_left_out_and_said() {
        let i = Interval::over(&[Some(17.0), None, Some(19.0)]).unwrap();
        assert_eq!(i.seeds, 2);
        assert_eq!(i.mean, 18.0);
        assert!(
            i.text(Unit::At, 3).ends_with(" (2 of 3)"),
            "{}",
            i.text(Unit::At, 3)
        );
        let one = Interval::over(&[None, Some(5.0)]).unwrap();
        assert_eq!((one.lower, one.half), (None, None));
        assert!(one.overlaps(&i));
        assert_eq!(Interval::over(&[None, None]), None);
    }

    /// No bound past what a figure can be: goodput of 99.7% ±3.2 had an upper bound of 103%,
    /// and a p99 of 23.7ms ±37.7ms a negative lower one.
    #[test]
    fn bounds_stay_within_what_a_figure_can_be() {
        let seed = |goodput: f64, p99: f64| {
            BTreeMap::from([
                ("user.goodput".to_string(), Some(goodput)),
                ("user.latency_ms.p99".to_string(), Some(p99)),
            ])
        };
        let all = intervals(&[seed(0.995, 20.73), seed(0.999, 26.67)]);
        let goodput = &all["user.goodput"];
        assert_eq!(goodput.upper, Some(1.0));
        assert!(goodput.lower.unwrap() < 0.995);
        let p99 = &all["user.latency_ms.p99"];
        assert_eq!(p99.lower, Some(0.0));
        assert!(p99.upper.unwrap() > 26.67);
    }

    #[test]
    fn units_read_as_the_one_seed_text_does() {
        let i = Interval::over(&[Some(0.86), Some(0.87), Some(0.878)]).unwrap();
        assert!(
            i.text(Unit::Percent, 3).starts_with("86.9% ±"),
            "{}",
            i.text(Unit::Percent, 3)
        );
        let ms = Interval::over(&[Some(60.0), Some(60.2)]).unwrap();
        assert!(
            ms.text(Unit::Ms, 2).starts_with("60.1ms ±"),
            "{}",
            ms.text(Unit::Ms, 2)
        );
    }

    #[test]
    fn parallel_results_come_back_in_index_order_and_errors_by_index() {
        let squares = in_parallel(50, |i| Ok(i * i)).unwrap();
        assert_eq!(squares, (0..50).map(|i| i * i).collect::<Vec<_>>());
        let error = in_parallel(50, |i| {
            if i % 7 == 3 {
                anyhow::bail!("task {i}")
            }
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "task 3");
    }
}
