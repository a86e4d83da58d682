//! Passive health checking: an instance that keeps failing is left out of the choice for a while.
//!
//! ## Why eject
//! The balancer picks by requests in flight, and an instance that refuses connections at once
//! never has any: it looks the least loaded and keeps being picked. With one of three instances
//! down, a third of all first attempts then need a retry, more than a 20% retry budget allows, and
//! requests fail although two healthy instances are idle. Retries should cover the failures nobody
//! could see coming, not the same dead instance request after request. So each outcome is
//! [recorded](OutlierDetector::record), and an instance that failed enough times in a row is
//! *ejected*: left out of [`choose_healthy`](super::choose_healthy) until its ejection ends.
//!
//! ## The rules, next to Envoy's and linkerd's
//! | | stormguard | Envoy outlier detection | linkerd failure accrual |
//! |---|---|---|---|
//! | connect refused / timed out | 1 in a row | 5 (`consecutive_local_origin_failure`, only when split from 5xx; else with the 5xx) | 7 in a row, any failure |
//! | 5xx, reset after sending | 5 in a row | 5 (`consecutive_5xx`) | 7 in a row |
//! | ejection time | 1 s, doubled per ejection, at most 30 s | 30 s × ejections, at most 300 s | backoff 1 s .. 60 s |
//! | back in | on probation: the next failure ejects again, a success forgives | after the time | one probe request |
//! | at most ejected | 50%, at least one, never all | 10%, at least one | no limit |
//!
//! Why these numbers:
//! - **One connection failure** ejects. A refusal is definite: nothing listens on that port, and
//!   the next connection a millisecond later will be refused too. Every further attempt there
//!   costs a retry from the budget that real failures need. A connect timeout is nearly as clear
//!   (the instance cannot even accept), and a false ejection costs little: one second of that
//!   instance's share moved to the others, within the limit below. Envoy waits for 5 and linkerd
//!   for 7 because they count every kind of failure together.
//! - **Five 5xx or resets** in a row, as Envoy: a 5xx may belong to one bad request rather than
//!   the instance, so one is not enough; five in a row from one instance while others answer is.
//!   Timeouts are not counted: from the balancer an attempt cut short by a per-try timeout looks
//!   like a hedge that lost or a client that left, and a slow instance already loses the choice
//!   through its requests in flight.
//! - **1 s, doubling to 30 s**: an instance restarting (a deploy) is back within a probe or two,
//!   while a dead one costs one failed attempt per 30 s per client. Envoy's 30 s base would keep a
//!   restarted instance out for half a minute; linkerd's 1 s .. 60 s backoff is the model here.
//! - **Probation**: after an ejection, the instance takes traffic again; one failure ejects it
//!   for twice as long, one success forgives it (the doubling starts again from 1 s).
//! - **At most 50% ejected** (rounded down, at least one, never the last): a failure that is not
//!   the instances' own (a shared database down, every instance answering 503) must not pile all
//!   the load onto one survivor; 50% at most doubles the load on the rest. Envoy's 10% with "at
//!   least one" allows one of two or three instances as well, but only one of ten.
//!
//! The detector is plain data: no clock (`now` is an argument) and no lock. The `Balance` layer
//! (feature `tower`) holds one behind a mutex; the simulator can drive one on virtual time.
#![cfg_attr(feature = "tower", doc = "See [`Balance`](crate::layer::Balance).")]

use std::time::{Duration, Instant};

use crate::classify::AttemptResult;

/// The settings of an [`OutlierDetector`]. The [`Default`] is the recommended setting; the module
/// documentation says why each number.
///
/// Every value is meaningful: a threshold of 0 turns that kind of ejection off, a `max_ejection`
/// below `base_ejection` caps every ejection at `max_ejection`, and a percent above 100 is 100.
///
/// ```
/// use std::time::Duration;
/// use stormguard::instance::EjectionConfig;
///
/// let config = EjectionConfig {
///     failures: 0, // never eject for 5xx, only for refused connections
///     ..EjectionConfig::default()
/// };
/// assert_eq!(config.connect_failures, 1);
/// assert_eq!(config.base_ejection, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EjectionConfig {
    /// Connection failures (refused, connect timeout) in a row that eject an instance: 1.
    pub connect_failures: u32,
    /// Failures after the request was sent (a 5xx, a reset) in a row that eject an instance: 5.
    pub failures: u32,
    /// The first ejection's length; each further one, not forgiven by a success, doubles: 1 s.
    pub base_ejection: Duration,
    /// The longest ejection: 30 s.
    pub max_ejection: Duration,
    /// The most instances ejected at once, as a percent of all (rounded down, but at least one
    /// when above 0, and never every instance): 50.
    pub max_ejected_percent: u32,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        EjectionConfig {
            connect_failures: 1,
            failures: 5,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

impl EjectionConfig {
    /// How long the `k`-th ejection in a row (1 for the first) lasts.
    pub fn ejection_time(&self, k: u32) -> Duration {
        let doublings = k.saturating_sub(1).min(31);
        self.base_ejection
            .saturating_mul(1 << doublings)
            .min(self.max_ejection)
    }

    /// How many of `n` instances may be ejected at once.
    pub fn max_ejected(&self, n: usize) -> usize {
        if n <= 1 || self.max_ejected_percent == 0 {
            return 0;
        }
        let percent = self.max_ejected_percent.min(100) as usize;
        (n * percent / 100).max(1).min(n - 1)
    }
}

/// What one attempt says about the health of the instance it went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instance answered, with anything but a 5xx.
    Success,
    /// No connection: refused, or not established in time.
    ConnectFailure,
    /// A 5xx, or the connection failed after the request was sent.
    Failure,
}

impl Outcome {
    /// What an attempt's result says of its instance; `None` for a timeout after the request was
    /// sent, which the module documentation explains is not counted.
    ///
    /// ```
    /// use stormguard::classify::AttemptResult;
    /// use stormguard::instance::Outcome;
    ///
    /// assert_eq!(Outcome::of(AttemptResult::ConnectRefused), Some(Outcome::ConnectFailure));
    /// let ok = AttemptResult::Response { status: 404, retry_after: None };
    /// assert_eq!(Outcome::of(ok), Some(Outcome::Success));
    /// assert_eq!(Outcome::of(AttemptResult::TimeoutAfterWritten), None);
    /// ```
    pub fn of(result: AttemptResult) -> Option<Outcome> {
        match result {
            AttemptResult::Response { .. } | AttemptResult::Grpc { .. } => {
                match result.http_status() {
                    Some(status) if status >= 500 => Some(Outcome::Failure),
                    _ => Some(Outcome::Success),
                }
            }
            AttemptResult::ConnectRefused | AttemptResult::ConnectTimeout => {
                Some(Outcome::ConnectFailure)
            }
            AttemptResult::ResetBeforeWritten
            | AttemptResult::RefusedStream
            | AttemptResult::ErrorAfterWritten => Some(Outcome::Failure),
            AttemptResult::TimeoutAfterWritten => None,
        }
    }
}

/// One instance's record.
#[derive(Clone, Copy, Debug, Default)]
struct Record {
    connect_failures: u32,
    failures: u32,
    /// Ejections not yet forgiven by a success: the `k` of the next ejection's length.
    ejections: u32,
    /// Until when the instance is ejected (the last ejection, which may be over).
    ejected: Ejected,
}

/// The end of an instance's last ejection, kept as an instant rather than a start and a
/// length: whether an instance is ejected is then one comparison, where a subtraction of
/// instants (a `timespec` subtraction with its carries) on every instance of every choice
/// made a choice among 1,000 instances cost more than the rest of an attempt.
#[derive(Clone, Copy, Debug, Default)]
enum Ejected {
    /// Never ejected.
    #[default]
    Never,
    /// Ejected before the instant, not from it on.
    Until(Instant),
    /// Ejected for longer than an instant can count from its start: for good.
    Forever,
}

impl Record {
    fn is_ejected(&self, now: Instant) -> bool {
        match self.ejected {
            Ejected::Never => false,
            Ejected::Until(until) => now < until,
            Ejected::Forever => true,
        }
    }
}

/// Counts each instance's failures in a row and says which instances are ejected.
///
/// ```
/// use std::time::{Duration, Instant};
/// use stormguard::instance::{EjectionConfig, Outcome, OutlierDetector};
///
/// let mut detector = OutlierDetector::new(EjectionConfig::default(), 3);
/// let t0 = Instant::now();
/// // Instance 2 refuses a connection: ejected for 1 s.
/// assert_eq!(detector.record(2, Outcome::ConnectFailure, t0), Some(Duration::from_secs(1)));
/// assert_eq!(detector.ejected(t0), vec![false, false, true]);
/// // After the second, it is on probation: one more refusal ejects it for 2 s.
/// let t1 = t0 + Duration::from_secs(1);
/// assert!(!detector.is_ejected(2, t1));
/// assert_eq!(detector.record(2, Outcome::ConnectFailure, t1), Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Debug)]
pub struct OutlierDetector {
    config: EjectionConfig,
    records: Vec<Record>,
}

impl OutlierDetector {
    /// A detector for `instances` instances, none ejected.
    pub fn new(config: EjectionConfig, instances: usize) -> Self {
        OutlierDetector {
            config,
            records: vec![Record::default(); instances],
        }
    }

    /// The settings.
    pub fn config(&self) -> &EjectionConfig {
        &self.config
    }

    /// How many instances it watches.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it watches none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records what an attempt to `instance` came to at `now`. Returns the ejection's length when
    /// this outcome ejected the instance.
    ///
    /// An outcome that arrives while its instance is ejected is ignored: it was sent before the
    /// ejection or only because every other choice was worse, and says nothing new. An instance
    /// out of range is ignored.
    pub fn record(&mut self, instance: usize, outcome: Outcome, now: Instant) -> Option<Duration> {
        let record = self.records.get(instance)?;
        if record.is_ejected(now) {
            return None;
        }
        let on_probation = record.ejections > 0;
        let config = self.config;
        let record = &mut self.records[instance];
        let threshold = match outcome {
            Outcome::Success => {
                *record = Record::default();
                return None;
            }
            Outcome::ConnectFailure => {
                record.connect_failures = record.connect_failures.saturating_add(1);
                (config.connect_failures > 0).then_some(config.connect_failures)
            }
            Outcome::Failure => {
                record.failures = record.failures.saturating_add(1);
                (config.failures > 0).then_some(config.failures)
            }
        }?;
        let count = match outcome {
            Outcome::ConnectFailure => record.connect_failures,
            _ => record.failures,
        };
        if count < threshold && !on_probation {
            return None;
        }
        // Over the limit, the instance stays in; its count stands, so the first failure after
        // another instance comes back ejects it.
        let ejected_now = self.records.iter().filter(|r| r.is_ejected(now)).count();
        if ejected_now >= config.max_ejected(self.records.len()) {
            return None;
        }
        let record = &mut self.records[instance];
        record.ejections = record.ejections.saturating_add(1);
        record.connect_failures = 0;
        record.failures = 0;
        let length = config.ejection_time(record.ejections);
        record.ejected = now
            .checked_add(length)
            .map_or(Ejected::Forever, Ejected::Until);
        Some(length)
    }

    /// A detector for a changed set of instances: new instance `i` keeps the record of old
    /// instance `from[i]` (its failures in a row, its ejection and how often it was ejected),
    /// and starts clean when `from[i]` is `None`. For a balancer whose instances come and go
    /// (DNS discovery, a reload): an instance that stays keeps what it earned, so a failing
    /// instance is not let back in by a refresh that found it again.
    ///
    /// ```
    /// use std::time::Instant;
    /// use stormguard::instance::{EjectionConfig, Outcome, OutlierDetector};
    ///
    /// let mut detector = OutlierDetector::new(EjectionConfig::default(), 3);
    /// let now = Instant::now();
    /// detector.record(2, Outcome::ConnectFailure, now);
    /// // Instance 0 left, 2 is now at 0, and a new one came at 1.
    /// let carried = detector.carried(&[Some(2), None]);
    /// assert_eq!(carried.ejected(now), vec![true, false]);
    /// ```
    pub fn carried(&self, from: &[Option<usize>]) -> OutlierDetector {
        OutlierDetector {
            config: self.config,
            records: from
                .iter()
                .map(|old| {
                    old.and_then(|i| self.records.get(i).copied())
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// Whether `instance` is ejected at `now`.
    pub fn is_ejected(&self, instance: usize, now: Instant) -> bool {
        self.records
            .get(instance)
            .is_some_and(|r| r.is_ejected(now))
    }

    /// Which instances are ejected at `now`, as [`choose_healthy`](super::choose_healthy) takes
    /// them.
    pub fn ejected(&self, now: Instant) -> Vec<bool> {
        self.records.iter().map(|r| r.is_ejected(now)).collect()
    }

    /// [`ejected`](Self::ejected) written into `out` (one flag per instance, as many as both
    /// have): a balancer choosing while an instance is suspect calls this for every request,
    /// and a list on the stack costs it no allocation.
    pub fn ejected_into(&self, now: Instant, out: &mut [bool]) {
        for (flag, record) in out.iter_mut().zip(&self.records) {
            *flag = record.is_ejected(now);
        }
    }

    /// Whether `instance` has a failure or an ejection not yet forgiven: whether a success there
    /// would change anything. Lets a caller skip recording (and locking) on the common path.
    pub fn is_suspect(&self, instance: usize) -> bool {
        self.records
            .get(instance)
            .is_some_and(|r| r.connect_failures > 0 || r.failures > 0 || r.ejections > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn detector(n: usize) -> (OutlierDetector, Instant) {
        (
            OutlierDetector::new(EjectionConfig::default(), n),
            Instant::now(),
        )
    }

    #[test]
    fn one_refusal_ejects_for_the_base_time() {
        let (mut d, t0) = detector(3);
        assert_eq!(d.record(1, Outcome::ConnectFailure, t0), Some(S));
        assert!(d.is_ejected(1, t0));
        assert!(d.is_ejected(1, t0 + S - Duration::from_nanos(1)));
        assert!(!d.is_ejected(1, t0 + S));
        assert_eq!(d.ejected(t0), vec![false, true, false]);
    }

    #[test]
    fn ejected_into_writes_what_ejected_returns() {
        let (mut d, t0) = detector(3);
        d.record(1, Outcome::ConnectFailure, t0);
        let mut flags = [true; 3];
        d.ejected_into(t0, &mut flags);
        assert_eq!(flags.to_vec(), d.ejected(t0));
        assert_eq!(flags, [false, true, false]);
        d.ejected_into(t0 + 2 * S, &mut flags);
        assert_eq!(flags, [false; 3]);
    }

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_between_resets_the_count() {
        let (mut d, t0) = detector(3);
        for _ in 0..4 {
            assert_eq!(d.record(0, Outcome::Failure, t0), None);
        }
        d.record(0, Outcome::Success, t0);
        for _ in 0..4 {
            assert_eq!(d.record(0, Outcome::Failure, t0), None);
        }
        assert_eq!(d.record(0, Outcome::Failure, t0), Some(S));
        assert!(d.is_ejected(0, t0));
    }

    #[test]
    fn ejections_double_up_to_the_maximum() {
        let (mut d, mut now) = detector(2);
        let mut lengths = Vec::new();
        for _ in 0..8 {
            let length = d.record(0, Outcome::ConnectFailure, now).unwrap();
            lengths.push(length.as_secs());
            // On probation as soon as the ejection ends: one failure ejects again.
            now += length;
        }
        assert_eq!(lengths, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_success_on_probation_forgives_the_past_ejections() {
        let (mut d, t0) = detector(2);
        d.record(0, Outcome::ConnectFailure, t0);
        let t1 = t0 + S;
        assert_eq!(d.record(0, Outcome::ConnectFailure, t1), Some(2 * S));
        let t2 = t1 + 2 * S;
        assert!(d.is_suspect(0));
        d.record(0, Outcome::Success, t2);
        assert!(!d.is_suspect(0));
        assert_eq!(d.record(0, Outcome::ConnectFailure, t2), Some(S));
    }

    #[test]
    fn probation_takes_one_failure_of_either_kind() {
        let (mut d, t0) = detector(2);
        d.record(0, Outcome::ConnectFailure, t0);
        assert_eq!(d.record(0, Outcome::Failure, t0 + S), Some(2 * S));
    }

    #[test]
    fn outcomes_while_ejected_are_ignored() {
        let (mut d, t0) = detector(2);
        d.record(0, Outcome::ConnectFailure, t0);
        let during = t0 + S / 2;
        assert_eq!(d.record(0, Outcome::ConnectFailure, during), None);
        d.record(0, Outcome::Success, during);
        assert!(d.is_ejected(0, during), "a late success does not end it");
        // Still the first ejection's doubling when it fails on probation.
        assert_eq!(d.record(0, Outcome::ConnectFailure, t0 + S), Some(2 * S));
    }

    #[test]
    fn at_most_half_are_ejected_and_never_all() {
        let (mut d, t0) = detector(4);
        assert!(d.record(0, Outcome::ConnectFailure, t0).is_some());
        assert!(d.record(1, Outcome::ConnectFailure, t0).is_some());
        assert_eq!(d.record(2, Outcome::ConnectFailure, t0), None, "2 of 4");
        assert_eq!(d.ejected(t0), vec![true, true, false, false]);
        // When a slot frees, the next failure ejects the instance held back.
        assert!(d.record(2, Outcome::ConnectFailure, t0 + S).is_some());

        let (mut two, t0) = detector(2);
        assert!(two.record(0, Outcome::ConnectFailure, t0).is_some());
        assert_eq!(two.record(1, Outcome::ConnectFailure, t0), None);
        let (mut one, t0) = detector(1);
        assert_eq!(one.record(0, Outcome::ConnectFailure, t0), None);
    }

    #[test]
    fn the_limit_rounds_down_but_allows_one() {
        let config = EjectionConfig::default();
        let limits: Vec<usize> = (0..=5).map(|n| config.max_ejected(n)).collect();
        assert_eq!(limits, vec![0, 0, 1, 1, 2, 2]);
        let ten = EjectionConfig {
            max_ejected_percent: 10,
            ..config
        };
        assert_eq!((ten.max_ejected(3), ten.max_ejected(30)), (1, 3));
        let all = EjectionConfig {
            max_ejected_percent: 250,
            ..config
        };
        assert_eq!(all.max_ejected(3), 2);
        let none = EjectionConfig {
            max_ejected_percent: 0,
            ..config
        };
        assert_eq!(none.max_ejected(3), 0);
    }

    #[test]
    fn a_zero_threshold_turns_that_kind_off() {
        let config = EjectionConfig {
            connect_failures: 0,
            ..EjectionConfig::default()
        };
        let mut d = OutlierDetector::new(config, 3);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(d.record(0, Outcome::ConnectFailure, t0), None);
        }
        for _ in 0..4 {
            assert_eq!(d.record(0, Outcome::Failure, t0), None);
        }
        assert_eq!(d.record(0, Outcome::Failure, t0), Some(S));
    }

    #[test]
    fn out_of_range_instances_are_ignored() {
        let (mut d, t0) = detector(2);
        assert_eq!(d.record(7, Outcome::ConnectFailure, t0), None);
        assert!(!d.is_ejected(7, t0));
        assert!(!d.is_suspect(7));
    }

    #[test]
    fn ejection_time_saturates() {
        let config = EjectionConfig {
            max_ejection: Duration::MAX,
            ..EjectionConfig::default()
        };
        assert_eq!(config.ejection_time(0), S);
        assert_eq!(config.ejection_time(u32::MAX), S * (1 << 31));
    }
}
