//! A sliding-window latency quantile estimator.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::quantile_cache::QuantileCache;

/// How many sub-windows the window is cut into: data ages out within one window, and a quantile
/// always sees at least three quarters of a window.
const SUB_WINDOWS: u64 = 4;
/// The largest latency kept apart from others, in microseconds (one hour); longer ones are
/// recorded as one hour, which is already past any sane timeout.
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Two significant figures: quantiles are within 1% of a recorded value, ample for a timeout or
/// a hedge delay, in 52 KiB per estimator where three figures (0.1%) took 920 KiB: every
/// route of the proxy keeps one.
const SIGNIFICANT_FIGURES: u8 = 2;
/// A histogram's counter: 32 bits, half the memory (and the cache lines a record touches) of
/// 64. A sub-window would need four billion samples in one bucket to saturate one, and
/// recording saturates rather than wraps.
type Count = u32;
/// The shortest window accepted; shorter ones are raised to it.
const MIN_WINDOW: Duration = Duration::from_millis(1);
/// Below this many samples a p99.9 is a guess, so quantiles are withheld.
const DEFAULT_MIN_SAMPLES: u64 = 100;

/// Estimates latency quantiles of one target over a sliding window of time.
///
/// Why: a timeout set from a fixed number is wrong the day the downstream changes; Brooker's rule
/// sets it at the downstream's measured p99.9, and hedging after the p95 needs the p95 now, not
/// last month's. This keeps the last `window` of latencies in an HDR histogram (microseconds,
/// two significant figures, 1 us to 1 hour; zero is recorded as 1 us and longer values as
/// 1 hour) so any quantile is within 1% of a recorded latency.
///
/// The window is a ring of 4 sub-windows of `window / 4` each. Recording goes into the current
/// one; when time passes a sub-window it is emptied and reused. So a latency stops counting at
/// most `window` after it was recorded, and a quantile always covers at least 3/4 of a window.
///
/// Time: the first `now` passed to any method fixes the start of sub-window 0. A `now` earlier
/// than the latest seen (clocks read on different threads race) counts as the current
/// sub-window; nothing panics.
///
/// Concurrency: all methods take `&self`. One `Mutex` guards the ring: `record` is O(1) under
/// it, a sub-window expiry subtracts one histogram. [`quantile`](Self::quantile) reads the value
/// it last computed for the same `q` when no record has come since (or fewer than
/// [`with_quantile_refresh`](Self::with_quantile_refresh) records) and the window has not moved;
/// otherwise it scans the histogram (about 3 300 counters). Keep one estimator per target and
/// share it (e.g. in an `Arc`). Memory is about 52 KiB per estimator (four histograms, one per
/// sub-window), and 13 KiB more once a quantile was asked (their sum).
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::estimate::LatencyEstimator;
///
/// let estimator = LatencyEstimator::new(Duration::from_secs(60)).with_min_samples(10);
/// let t0 = Instant::now();
/// for ms in 1..=100 {
///     estimator.record(t0, Duration::from_millis(ms));
/// }
/// let p50 = estimator.quantile(t0, 0.5).unwrap();
/// assert!(p50 >= Duration::from_millis(50) && p50 <= Duration::from_micros(50_500));
/// // A window and a bit later everything has aged out.
/// assert_eq!(estimator.count(t0 + Duration::from_secs(61)), 0);
/// ```
pub struct LatencyEstimator {
    shape: Shape,
    ring: Mutex<Ring>,
}

/// [`LatencyEstimator`] for one thread: the same window and the same answers, behind a
/// `RefCell` instead of a `Mutex`.
///
/// Why: the simulator runs one event loop per thread and records a latency for most attempts,
/// then reads the maximum for most decisions; a `Mutex` costs two atomic read-modify-writes per
/// call there, with no other thread to guard against. The ring and every rule are the ones of
/// [`LatencyEstimator`], so a simulated route estimates exactly as the proxy's does.
///
/// ```rust
/// use std::time::{Duration, Instant};
/// use stormguard::estimate::LocalLatencyEstimator;
///
/// let estimator = LocalLatencyEstimator::new(Duration::from_secs(60)).with_min_samples(1);
/// let t0 = Instant::now();
/// estimator.record(t0, Duration::from_millis(7));
/// let max = estimator.max(t0).unwrap();
/// // Within 1% of what was recorded, as the shared estimator's.
/// assert!(max >= Duration::from_millis(7) && max <= Duration::from_micros(7_070));
/// ```
pub struct LocalLatencyEstimator {
    shape: Shape,
    ring: RefCell<Ring>,
}

/// What the retry and hedge policies read from a latency estimator, whichever its kind
/// ([`LatencyEstimator`] shared between threads, [`LocalLatencyEstimator`] on one).
pub trait LatencyQuantiles {
    /// The latency below which a fraction `q` of the live window's samples fall, within 1%;
    /// `None` below the minimum number of samples.
    fn quantile(&self, now: Instant, q: f64) -> Option<Duration>;

    /// The longest latency in the live window, within 1%, read in O(1); `None` exactly when
    /// [`quantile`](Self::quantile) is.
    fn max(&self, now: Instant) -> Option<Duration>;
}

/// The window's lengths and the samples a quantile needs: what both kinds of estimator share.
#[derive(Clone, Copy)]
struct Shape {
    window: Duration,
    sub_window: Duration,
    min_samples: u64,
    /// Records after which kept quantiles are computed again (1: after every record).
    refresh: u64,
}

impl Shape {
    fn new(window: Duration) -> Self {
        let window = window.max(MIN_WINDOW);
        Shape {
            window,
            sub_window: window / SUB_WINDOWS as u32,
            min_samples: DEFAULT_MIN_SAMPLES,
            refresh: 1,
        }
    }
}

struct Ring {
    /// Start of sub-window 0, fixed by the first `now` seen.
    epoch: Option<Instant>,
    /// The latest sub-window seen, counted from `epoch`.
    current: u64,
    /// The last `now` moved to: the simulator records a latency and reads the maximum at one
    /// instant, and a repeated instant needs no subtraction of `Instant`s (a hundred
    /// instructions) to find its sub-window again.
    last_now: Option<Instant>,
    /// When sub-window `current + 1` starts (`None`: not known, or past the end of time): any
    /// `now` before it is in the current sub-window or earlier, which counts as the current
    /// one, so most calls need one comparison instead of a subtraction and a division.
    next_start: Option<Instant>,
    /// Slot `i % SUB_WINDOWS` holds sub-window `i`; `holds` says which `i` it last held.
    slots: Vec<Slot>,
    /// The sum of the slots still inside the window, so a quantile needs no merge.
    live: Live,
    /// Records since the kept quantiles were last made stale.
    since_refresh: u64,
    /// Quantiles computed since then, by `q`.
    quantiles: QuantileCache,
}

struct Slot {
    holds: u64,
    histogram: Histogram<Count>,
}

/// The live window: its count and maximum always, and the sum of its slots as one histogram
/// from the first quantile asked on.
///
/// Why not the histogram from the start: most estimators are only asked whether the longest
/// latency fits in the time left ([`max`](LatencyQuantiles::max)), which the count and the
/// maximum answer; a second histogram record on every latency was the largest cost of
/// recording one. The first quantile sums the slots once (what the live histogram would hold
/// by then), and from then on each record goes to both, as before. The answers are the same
/// either way: the maximum is kept as the histogram keeps it (the top of the largest recorded
/// value's bucket), and recomputed from the slots when one expires, as the histogram's is when
/// a subtraction removes it.
enum Live {
    /// No quantile asked yet: the samples in the live slots, and the largest, in microseconds,
    /// as the histogram reads it (the top of its bucket).
    Summary { count: u64, max: u64 },
    /// The sum of the live slots.
    Kept(Histogram<Count>),
}

fn empty_histogram() -> Histogram<Count> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGNIFICANT_FIGURES)
        .expect("1 us .. 1 h at 3 significant figures are valid histogram bounds")
}

impl LatencyEstimator {
    /// An empty estimator over `window` (60 s is a good default: long enough for a p99.9 at
    /// modest traffic, short enough to follow a deploy). Windows shorter than 1 ms are raised
    /// to 1 ms. Quantiles need at least 100 samples; see [`with_min_samples`](Self::with_min_samples).
    pub fn new(window: Duration) -> Self {
        LatencyEstimator {
            shape: Shape::new(window),
            ring: Mutex::new(Ring::new()),
        }
    }

    /// Sets how many samples the live window needs before [`quantile`](Self::quantile) answers.
    ///
    /// A p99.9 from 50 samples is the maximum of 50 samples; 100 (the default) is the least
    /// that makes a p99 mean anything, and 1000 makes a p99.9 trustworthy. Zero is treated as one:
    /// an empty window never has a quantile.
    pub fn with_min_samples(mut self, min_samples: u64) -> Self {
        self.shape.min_samples = min_samples;
        self
    }

    /// Lets [`quantile`](Self::quantile) answer with the value it computed for the same `q` up
    /// to `records - 1` records ago, as long as the window has not moved since.
    ///
    /// Why: a quantile scans the whole histogram (about 3 300 counters, a few microseconds).
    /// A proxy that reads a p50, a p99.9 timeout and a p95 hedge delay on every request spent
    /// more on those scans than on the rest of its policy; with `records` at 64, it scans about
    /// once per 64 requests and reads the kept value otherwise. The answer then leaves out at most
    /// the last `records - 1` latencies: the same distribution, a little late. The default, 1,
    /// counts every record in every quantile (a repeated read with no record between still
    /// takes the kept value). Zero is treated as one. The sample minimum
    /// ([`with_min_samples`](Self::with_min_samples)) is always checked on the live count.
    ///
    /// ```rust
    /// use std::time::{Duration, Instant};
    /// use stormguard::estimate::LatencyEstimator;
    ///
    /// let estimator = LatencyEstimator::new(Duration::from_secs(60))
    ///     .with_min_samples(1)
    ///     .with_quantile_refresh(64);
    /// let t0 = Instant::now();
    /// estimator.record(t0, Duration::from_millis(10));
    /// let p99 = estimator.quantile(t0, 0.99).unwrap(); // computed: 10 ms
    /// estimator.record(t0, Duration::from_millis(500));
    /// assert_eq!(estimator.quantile(t0, 0.99), Some(p99)); // kept: one record since
    /// assert!(estimator.max(t0).unwrap() >= Duration::from_millis(500)); // always live
    /// ```
    pub fn with_quantile_refresh(mut self, records: u64) -> Self {
        self.shape.refresh = records.max(1);
        self
    }

    /// Records one observed latency at `now`.
    ///
    /// O(1) under the lock, plus one histogram subtraction when `now` starts a new sub-window.
    pub fn record(&self, now: Instant, latency: Duration) {
        self.lock().record(&self.shape, now, latency);
    }

    /// The latency below which a fraction `q` of the live window's samples fall, within 1%.
    ///
    /// `None` while the live window has fewer than the minimum samples (100 unless set with
    /// [`with_min_samples`](Self::with_min_samples)), so callers fall back to a safe default
    /// rather than trust noise. `q` is clamped to `[0, 1]`; NaN counts as 1, the conservative end.
    /// With [`with_quantile_refresh`](Self::with_quantile_refresh), the value may leave out the
    /// latest few records.
    pub fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        self.lock().quantile(&self.shape, now, q)
    }

    /// The longest latency in the live window, within 1%: an upper bound of every quantile,
    /// read in O(1) (the histogram keeps it), where a quantile scans the histogram.
    ///
    /// `None` exactly when [`quantile`](Self::quantile) is, so that a caller can ask "does every
    /// quantile fit in this much time?" first and scan only when the answer is no.
    pub fn max(&self, now: Instant) -> Option<Duration> {
        self.lock().max(&self.shape, now)
    }

    /// How many samples the live window holds at `now`.
    pub fn count(&self, now: Instant) -> u64 {
        self.lock().count(&self.shape, now)
    }

    /// The window length: no sample older than this counts.
    pub fn window(&self) -> Duration {
        self.shape.window
    }

    /// How many samples a quantile needs, as set by [`with_min_samples`](Self::with_min_samples).
    pub fn min_samples(&self) -> u64 {
        self.shape.min_samples
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Every update leaves the ring consistent before it can panic, so a poisoned lock is
        // still a good ring.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LocalLatencyEstimator {
    /// [`LatencyEstimator::new`] for one thread.
    pub fn new(window: Duration) -> Self {
        LocalLatencyEstimator {
            shape: Shape::new(window),
            ring: RefCell::new(Ring::new()),
        }
    }

    /// [`LatencyEstimator::with_min_samples`].
    pub fn with_min_samples(mut self, min_samples: u64) -> Self {
        self.shape.min_samples = min_samples;
        self
    }

    /// [`LatencyEstimator::with_quantile_refresh`].
    pub fn with_quantile_refresh(mut self, records: u64) -> Self {
        self.shape.refresh = records.max(1);
        self
    }

    /// [`LatencyEstimator::record`].
    pub fn record(&self, now: Instant, latency: Duration) {
        self.ring.borrow_mut().record(&self.shape, now, latency);
    }

    /// [`LatencyEstimator::quantile`].
    pub fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        self.ring.borrow_mut().quantile(&self.shape, now, q)
    }

    /// [`LatencyEstimator::max`].
    pub fn max(&self, now: Instant) -> Option<Duration> {
        self.ring.borrow_mut().max(&self.shape, now)
    }

    /// [`LatencyEstimator::count`].
    pub fn count(&self, now: Instant) -> u64 {
        self.ring.borrow_mut().count(&self.shape, now)
    }

    /// [`LatencyEstimator::window`].
    pub fn window(&self) -> Duration {
        self.shape.window
    }

    /// [`LatencyEstimator::min_samples`].
    pub fn min_samples(&self) -> u64 {
        self.shape.min_samples
    }
}

impl LatencyQuantiles for LatencyEstimator {
    fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        LatencyEstimator::quantile(self, now, q)
    }

    fn max(&self, now: Instant) -> Option<Duration> {
        LatencyEstimator::max(self, now)
    }
}

impl LatencyQuantiles for LocalLatencyEstimator {
    fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        LocalLatencyEstimator::quantile(self, now, q)
    }

    fn max(&self, now: Instant) -> Option<Duration> {
        LocalLatencyEstimator::max(self, now)
    }
}

impl Ring {
    fn new() -> Self {
        Ring {
            epoch: None,
            current: 0,
            last_now: None,
            next_start: None,
            slots: (0..SUB_WINDOWS)
                .map(|_| Slot {
                    holds: 0,
                    histogram: empty_histogram(),
                })
                .collect(),
            live: Live::Summary { count: 0, max: 0 },
            since_refresh: 0,
            quantiles: QuantileCache::new(),
        }
    }

    fn record(&mut self, shape: &Shape, now: Instant, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, HIGHEST_MICROS);
        let current = self.advance(shape, now);
        let slot = &mut self.slots[(current % SUB_WINDOWS) as usize];
        slot.holds = current;
        slot.histogram.saturating_record(micros);
        match &mut self.live {
            Live::Summary { count, max } => {
                *count += 1;
                if micros > *max {
                    // Rare once the window has seen its range: the bucket's top, once.
                    *max = slot.histogram.highest_equivalent(micros);
                }
            }
            Live::Kept(live) => live.saturating_record(micros),
        }
        self.since_refresh += 1;
        if self.since_refresh >= shape.refresh {
            self.since_refresh = 0;
            self.quantiles.invalidate();
        }
    }

    fn quantile(&mut self, shape: &Shape, now: Instant, q: f64) -> Option<Duration> {
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        self.advance(shape, now);
        if self.count_live() < shape.min_samples.max(1) {
            return None;
        }
        let key = q.to_bits();
        if let Some(micros) = self.quantiles.get(key) {
            return Some(Duration::from_micros(micros));
        }
        let micros = self.kept_live().value_at_quantile(q).min(HIGHEST_MICROS);
        self.quantiles.put(key, micros);
        Some(Duration::from_micros(micros))
    }

    fn max(&mut self, shape: &Shape, now: Instant) -> Option<Duration> {
        self.advance(shape, now);
        if self.count_live() < shape.min_samples.max(1) {
            return None;
        }
        let longest = match &self.live {
            Live::Summary { max, .. } => *max,
            Live::Kept(live) => live.max(),
        };
        Some(Duration::from_micros(longest.min(HIGHEST_MICROS)))
    }

    fn count(&mut self, shape: &Shape, now: Instant) -> u64 {
        self.advance(shape, now);
        self.count_live()
    }

    /// Samples in the live window.
    fn count_live(&self) -> u64 {
        match &self.live {
            Live::Summary { count, .. } => *count,
            Live::Kept(live) => live.len(),
        }
    }

    /// The live histogram, summed from the slots if no quantile was asked before.
    fn kept_live(&mut self) -> &Histogram<Count> {
        if let Live::Summary { .. } = self.live {
            let mut live = empty_histogram();
            for slot in &self.slots {
                // Equal bounds: adding cannot fail.
                let _ = live.add(&slot.histogram);
            }
            self.live = Live::Kept(live);
        }
        match &self.live {
            Live::Kept(live) => live,
            Live::Summary { .. } => unreachable!("kept above"),
        }
    }

    /// Moves the ring to the sub-window of `now`, emptying the slots that fell out of the
    /// window, and returns the current sub-window.
    ///
    /// Inlined, with the move to a new sub-window out of line: nearly every call is answered by
    /// the two comparisons here.
    #[inline]
    fn advance(&mut self, shape: &Shape, now: Instant) -> u64 {
        // The same instant finds the same sub-window, and the ring has not moved since.
        if self.last_now == Some(now) {
            return self.current;
        }
        self.last_now = Some(now);
        if self.next_start.is_some_and(|next| now < next) {
            return self.current;
        }
        self.advance_to(shape, now)
    }

    /// [`advance`](Self::advance) past the current sub-window's known end.
    #[inline(never)]
    fn advance_to(&mut self, shape: &Shape, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        // u64 nanoseconds (585 years) and a u64 division: a u128 one costs far more, per record.
        let elapsed = now.saturating_duration_since(epoch);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        let sub_window = u64::try_from(shape.sub_window.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let index = nanos / sub_window;
        if index <= self.current {
            self.next_start = sub_window_start(epoch, self.current + 1, sub_window);
            return self.current;
        }
        let Ring { slots, live, .. } = self;
        let mut consistent = true;
        let mut expired = false;
        for slot in slots.iter_mut() {
            if slot.holds.saturating_add(SUB_WINDOWS) <= index && !slot.histogram.is_empty() {
                if let Live::Kept(live) = live {
                    consistent &= live.subtract(&slot.histogram).is_ok();
                }
                slot.histogram.reset();
                expired = true;
            }
        }
        match live {
            Live::Kept(live) if !consistent => {
                // Unreachable with equal bounds and exact counts; rebuilding keeps `live` the
                // sum of the slots even so.
                live.reset();
                for slot in slots.iter() {
                    let _ = live.add(&slot.histogram);
                }
            }
            Live::Summary { count, max } if expired => {
                // What is left: the slots' counts, and the largest of their maxima (each the
                // top of its bucket, whose top is itself).
                *count = slots.iter().map(|slot| slot.histogram.len()).sum();
                *max = slots
                    .iter()
                    .filter(|slot| !slot.histogram.is_empty())
                    .map(|slot| slot.histogram.max())
                    .max()
                    .unwrap_or(0);
            }
            _ => {}
        }
        self.current = index;
        self.next_start = sub_window_start(epoch, index + 1, sub_window);
        self.since_refresh = 0;
        self.quantiles.invalidate();
        index
    }
}

/// When sub-window `index` starts, `None` past the end of `Instant`'s range.
fn sub_window_start(epoch: Instant, index: u64, sub_window: u64) -> Option<Instant> {
    let nanos = index.checked_mul(sub_window)?;
    epoch.checked_add(Duration::from_nanos(nanos))
}

impl fmt::Debug for LatencyEstimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.lock();
        f.debug_struct("LatencyEstimator")
            .field("window", &self.shape.window)
            .field("min_samples", &self.shape.min_samples)
            .field("quantile_refresh", &self.shape.refresh)
            .field("live_samples", &ring.count_live())
            .finish()
    }
}

impl fmt::Debug for LocalLatencyEstimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLatencyEstimator")
            .field("window", &self.shape.window)
            .field("min_samples", &self.shape.min_samples)
            .field("live_samples", &self.ring.borrow().count_live())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::LogNormal;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    fn within(actual: Duration, expected: Duration, rel: f64) -> bool {
        let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
        ((a - e) / e).abs() <= rel
    }

    #[test]
    fn quantiles_match_exact_sample_quantiles() {
        let model = LogNormal::fit(4 * MS, 40 * MS).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(42);
        let estimator = LatencyEstimator::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut samples: Vec<Duration> = (0..100_000).map(|_| model.sample(&mut rng)).collect();
        for (i, &latency) in samples.iter().enumerate() {
            estimator.record(t0 + Duration::from_micros(i as u64), latency);
        }
        samples.sort();
        assert_eq!(estimator.count(t0 + Duration::from_secs(1)), 100_000);
        for q in [0.5, 0.99, 0.999] {
            let exact = samples[(q * samples.len() as f64).ceil() as usize - 1];
            let estimated = estimator.quantile(t0 + Duration::from_secs(1), q).unwrap();
            assert!(
                within(estimated, exact, 0.01),
                "q {q}: {estimated:?} vs {exact:?}"
            );
        }
    }

    #[test]
    fn the_local_estimator_answers_as_the_shared_one() {
        let model = LogNormal::fit(4 * MS, 40 * MS).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let shared = LatencyEstimator::new(Duration::from_secs(8));
        let local = LocalLatencyEstimator::new(Duration::from_secs(8));
        let t0 = Instant::now();
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_millis(i);
            let latency = model.sample(&mut rng);
            shared.record(now, latency);
            local.record(now, latency);
            if i % 97 == 0 {
                assert_eq!(shared.count(now), local.count(now));
                assert_eq!(shared.max(now), local.max(now));
                for q in [0.5, 0.99] {
                    assert_eq!(shared.quantile(now, q), local.quantile(now, q));
                }
            }
        }
        assert_eq!(
            (local.window(), local.min_samples()),
            (shared.window(), 100)
        );
    }

    #[test]
    fn old_latencies_age_out() {
        let window = Duration::from_secs(60);
        let estimator = LatencyEstimator::new(window);
        let t0 = Instant::now();
        let step = Duration::from_millis(100);
        let mut t = t0;
        while t < t0 + window {
            estimator.record(t, 10 * MS);
            t += step;
        }
        let p50 = estimator.quantile(t - step, 0.5).unwrap();
        assert!(within(p50, 10 * MS, 0.01), "{p50:?}");
        while t < t0 + 2 * window {
            estimator.record(t, 100 * MS);
            t += step;
        }
        let p50 = estimator.quantile(t - step, 0.5).unwrap();
        assert!(within(p50, 100 * MS, 0.01), "{p50:?}");
        assert_eq!(estimator.count(t - step), 600);
        let later = t0 + 4 * window;
        assert_eq!(estimator.count(later), 0);
        assert_eq!(estimator.quantile(later, 0.5), None);
    }

    #[test]
    fn a_quantile_keeps_three_quarters_of_a_window() {
        let estimator = LatencyEstimator::new(Duration::from_secs(4)).with_min_samples(1);
        let t0 = Instant::now();
        for s in 0..4u64 {
            estimator.record(t0 + Duration::from_secs(s), Duration::from_millis(s + 1));
        }
        assert_eq!(estimator.count(t0 + Duration::from_millis(3_999)), 4);
        // Sub-window 0 leaves at 4 s; the others stay.
        assert_eq!(estimator.count(t0 + Duration::from_secs(4)), 3);
        assert_eq!(estimator.count(t0 + Duration::from_millis(6_999)), 1);
        assert_eq!(estimator.count(t0 + Duration::from_secs(7)), 0);
    }

    #[test]
    fn time_going_backwards_counts_as_now() {
        let estimator = LatencyEstimator::new(Duration::from_secs(4)).with_min_samples(1);
        let t0 = Instant::now() + Duration::from_secs(10);
        estimator.record(t0 + Duration::from_secs(3), MS);
        estimator.record(t0, 2 * MS);
        estimator.record(t0 - Duration::from_secs(10), 3 * MS);
        assert_eq!(estimator.count(t0), 3);
        assert_eq!(estimator.count(t0 + Duration::from_secs(3)), 3);
        assert_eq!(estimator.count(t0 + Duration::from_secs(4)), 3);
        assert_eq!(estimator.count(t0 + Duration::from_secs(7)), 0);
    }

    #[test]
    fn extremes_are_clamped_and_min_samples_respected() {
        let estimator = LatencyEstimator::new(Duration::ZERO).with_min_samples(3);
        assert_eq!(estimator.window(), MIN_WINDOW);
        assert_eq!(estimator.min_samples(), 3);
        let t0 = Instant::now();
        estimator.record(t0, Duration::ZERO);
        estimator.record(t0, Duration::MAX);
        assert_eq!(estimator.quantile(t0, 0.5), None);
        assert_eq!(estimator.max(t0), None, "withheld like a quantile");
        estimator.record(t0, Duration::from_nanos(10));
        assert_eq!(estimator.quantile(t0, 0.0), Some(Duration::from_micros(1)));
        assert_eq!(estimator.quantile(t0, 0.5), Some(Duration::from_micros(1)));
        let top = estimator.quantile(t0, 2.0).unwrap();
        assert_eq!(top, Duration::from_secs(3_600));
        assert_eq!(estimator.quantile(t0, f64::NAN), Some(top));
        assert_eq!(estimator.max(t0), Some(top));
        let empty = LatencyEstimator::new(Duration::from_secs(1)).with_min_samples(0);
        assert_eq!(empty.quantile(t0, 0.5), None);
        assert!(format!("{empty:?}").contains("live_samples: 0"));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(3_600)));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let estimator = Arc::clone(&estimator);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let now = t0 + Duration::from_millis(i % 1_000);
                        estimator.record(now, Duration::from_micros(1 + thread * 10_000 + i));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(estimator.count(t0 + Duration::from_secs(1)), 80_000);
        let max = estimator.quantile(t0, 1.0).unwrap();
        assert!(within(max, Duration::from_micros(80_000), 0.01), "{max:?}");
    }

    #[test]
    fn every_record_counts_by_default() {
        let estimator = LatencyEstimator::new(Duration::from_secs(60)).with_min_samples(1);
        let t0 = Instant::now();
        estimator.record(t0, MS);
        let top = estimator.quantile(t0, 1.0).unwrap();
        assert!(within(top, MS, 0.01), "{top:?}");
        assert_eq!(estimator.quantile(t0, 1.0), Some(top), "kept, the same");
        estimator.record(t0, 100 * MS);
        let top = estimator.quantile(t0, 1.0).unwrap();
        assert!(within(top, 100 * MS, 0.01), "{top:?}");
        assert_eq!(estimator.max(t0), Some(top));
    }

    #[test]
    fn kept_quantiles_are_computed_again_after_refresh_records_or_a_move() {
        let estimator = LatencyEstimator::new(Duration::from_secs(4))
            .with_min_samples(1)
            .with_quantile_refresh(3);
        let t0 = Instant::now();
        estimator.record(t0, MS);
        let top = estimator.quantile(t0, 1.0).unwrap();
        assert!(within(top, MS, 0.01), "{top:?}");
        estimator.record(t0, 100 * MS);
        assert_eq!(
            estimator.quantile(t0, 1.0),
            Some(top),
            "kept: two records of three"
        );
        assert!(
            estimator.max(t0).unwrap() >= 100 * MS,
            "the maximum is always live"
        );
        assert_eq!(estimator.count(t0), 2);
        // Another quantile is computed when first asked, from everything recorded.
        assert!(estimator.quantile(t0, 0.99).unwrap() >= 100 * MS);
        estimator.record(t0, 100 * MS);
        assert!(
            estimator.quantile(t0, 1.0).unwrap() >= 100 * MS,
            "three records: again"
        );
        // The window moving makes them stale too: the first sub-window has aged out.
        estimator.record(t0 + Duration::from_secs(1), 5 * MS);
        let later = t0 + Duration::from_secs(4);
        assert_eq!(estimator.count(later), 1);
        let top = estimator.quantile(later, 1.0).unwrap();
        assert!(within(top, 5 * MS, 0.01), "{top:?}");
        // Below the sample minimum nothing is kept: the count decides at once.
        let estimator = LatencyEstimator::new(Duration::from_secs(60))
            .with_min_samples(2)
            .with_quantile_refresh(100);
        estimator.record(t0, MS);
        assert_eq!(estimator.quantile(t0, 0.5), None);
        estimator.record(t0, MS);
        assert!(estimator.quantile(t0, 0.5).is_some());
        assert!(format!("{estimator:?}").contains("quantile_refresh: 100"));
    }

    #[test]
    fn reads_while_others_record_stay_in_range() {
        let estimator = Arc::new(
            LatencyEstimator::new(Duration::from_secs(3_600))
                .with_min_samples(1)
                .with_quantile_refresh(16),
        );
        let t0 = Instant::now();
        estimator.record(t0, MS);
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let estimator = Arc::clone(&estimator);
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let now = t0 + Duration::from_millis(i % 1_000);
                        if thread % 2 == 0 {
                            estimator.record(now, Duration::from_micros(1_000 + i));
                        } else {
                            let q = estimator.quantile(now, 0.5).unwrap();
                            let max = estimator.max(now).unwrap();
                            assert!(q >= Duration::from_micros(990) && q <= 7 * MS, "{q:?}");
                            assert!(max <= 7 * MS, "{max:?}");
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(estimator.count(t0 + Duration::from_secs(1)), 10_001);
    }

    proptest! {
        /// An estimator read only for its count and maximum keeps no live histogram; one
        /// asked for a quantile does, from then on. Both answer alike at every step, across
        /// sub-windows expiring (steps of up to 3 s in a 4 s window), and the first quantile
        /// asked late agrees with the one kept all along.
        #[test]
        fn the_live_summary_answers_as_the_live_histogram(
            records in prop::collection::vec((1u64..5_000_000, 0u64..3_000), 1..100),
        ) {
            let window = Duration::from_secs(4);
            let kept = LocalLatencyEstimator::new(window).with_min_samples(1);
            let summary = LocalLatencyEstimator::new(window).with_min_samples(1);
            // One sample at the start: both count sub-windows from it, and the quantile asked
            // of `kept` makes it keep its live histogram from there on.
            let t0 = Instant::now();
            kept.record(t0, MS);
            summary.record(t0, MS);
            prop_assert!(kept.quantile(t0, 0.5).is_some());
            let mut now = t0;
            for &(micros, step_ms) in &records {
                now += Duration::from_millis(step_ms);
                kept.record(now, Duration::from_micros(micros));
                summary.record(now, Duration::from_micros(micros));
                let later = now + Duration::from_millis(step_ms);
                prop_assert_eq!(kept.count(later), summary.count(later));
                prop_assert_eq!(kept.max(later), summary.max(later));
                prop_assert_eq!(kept.max(now), summary.max(now));
            }
            for q in [0.0, 0.5, 0.99, 1.0] {
                prop_assert_eq!(kept.quantile(now, q), summary.quantile(now, q));
            }
        }

        #[test]
        fn quantiles_are_ordered_and_bounded(
            latencies in prop::collection::vec(1u64..10_000_000, 1..300),
            offsets in prop::collection::vec(0u64..200_000, 1..300),
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let estimator = LatencyEstimator::new(Duration::from_secs(60)).with_min_samples(1);
            let t0 = Instant::now();
            let mut latest = t0;
            for (i, &micros) in latencies.iter().enumerate() {
                let now = t0 + Duration::from_millis(offsets[i % offsets.len()]);
                latest = latest.max(now);
                estimator.record(now, Duration::from_micros(micros));
            }
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let count = estimator.count(latest);
            prop_assert!(count >= 1 && count <= latencies.len() as u64);
            let q_lo = estimator.quantile(latest, lo).unwrap();
            let q_hi = estimator.quantile(latest, hi).unwrap();
            prop_assert!(q_lo <= q_hi);
            let smallest = *latencies.iter().min().unwrap();
            let largest = *latencies.iter().max().unwrap();
            prop_assert!(q_lo.as_micros() as f64 >= smallest as f64 * 0.99);
            prop_assert!(q_hi.as_micros() as f64 <= largest as f64 * 1.01);
            // The maximum bounds every quantile, and is one: the top one.
            let max = estimator.max(latest).unwrap();
            prop_assert!(q_hi <= max);
            prop_assert_eq!(estimator.quantile(latest, 1.0), Some(max));
        }

        #[test]
        fn count_is_exactly_the_samples_within_the_window(
            seconds in prop::collection::vec(0u64..40, 0..200),
            query in 0u64..60,
        ) {
            let estimator = LatencyEstimator::new(Duration::from_secs(8));
            let t0 = Instant::now();
            let mut sorted = seconds.clone();
            sorted.sort();
            // The epoch is fixed at t0 so that sub-windows are whole pairs of seconds.
            estimator.count(t0);
            for &s in &sorted {
                estimator.record(t0 + Duration::from_secs(s), MS);
            }
            let latest = sorted.last().copied().unwrap_or(0).max(query);
            let current = latest / 2;
            let expected = sorted.iter().filter(|&&s| s / 2 + SUB_WINDOWS > current).count();
            prop_assert_eq!(estimator.count(t0 + Duration::from_secs(query)), expected as u64);
        }
    }
}
