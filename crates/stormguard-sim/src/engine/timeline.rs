//! The run second by second, counted as it happens.
//!
//! Totals say how bad a run was; only a timeline says whether a storm ended with its trigger or
//! outlived it. The counts live in flat vectors indexed by step and service so that counting an
//! attempt is one addition; the per-step maps of [`Step`] are built once, at the end.

use std::collections::BTreeMap;

use super::outcome::Step;
use super::sort::StepLatencies;
use super::state::InstanceState;

/// One step of the timeline, in virtual nanoseconds.
pub(crate) const SECOND: u64 = 1_000_000_000;

/// What each whole second of `0..duration` saw; the drain after `duration` is not counted, so
/// that every step is a second of offered load.
pub(crate) struct Timeline {
    services: usize,
    steps: usize,
    /// The step the event loop is in; `steps` or more once past the duration.
    current: usize,
    users: Vec<u64>,
    succeeded: Vec<u64>,
    /// Every successful user request's latency with the step it arrived in (`steps` when in
    /// none): one list, sorted once at the end into the run's and each step's.
    latencies: StepLatencies,
    /// `attempts[step * services + service]`.
    attempts: Vec<u64>,
    /// `max_queue[step * services + service]`.
    max_queue: Vec<u64>,
}

impl Timeline {
    /// An empty timeline of `duration_ns` rounded up to whole seconds: a last, partial second
    /// still had users arriving.
    pub(crate) fn new(services: usize, duration_ns: u64) -> Self {
        let steps = usize::try_from(duration_ns.div_ceil(SECOND)).unwrap_or(usize::MAX);
        Timeline {
            services,
            steps,
            current: 0,
            users: vec![0; steps],
            succeeded: vec![0; steps],
            latencies: StepLatencies::new(steps),
            attempts: vec![0; steps * services],
            max_queue: vec![0; steps * services],
        }
    }

    /// The loop reached `at`, in a later second than the last event's: the seconds entered
    /// start with the queues as they are (nothing happened in between to change them), so a
    /// queue that stays long shows in every second it lasts, not only where it grew.
    ///
    /// `instances` holds every service's instances one after another, `spans` each service's
    /// first one and how many.
    pub(crate) fn enter(
        &mut self,
        at: u64,
        instances: &[InstanceState],
        spans: impl Iterator<Item = (usize, usize)>,
    ) {
        let step = usize::try_from(at / SECOND).unwrap_or(usize::MAX);
        let first = self.current + 1;
        self.current = step;
        let last = step.min(self.steps.saturating_sub(1));
        if first > last {
            return;
        }
        for (s, (start, len)) in spans.enumerate() {
            let longest = instances[start..start + len]
                .iter()
                .map(|i| i.queue.len() as u64)
                .max()
                .unwrap_or(0);
            for k in first..=last {
                self.max_queue[k * self.services + s] = longest;
            }
        }
    }

    fn index(&self, service: usize) -> Option<usize> {
        (self.current < self.steps).then(|| self.current * self.services + service)
    }

    /// An attempt reached `service` now.
    pub(crate) fn attempt(&mut self, service: usize) {
        if let Some(i) = self.index(service) {
            self.attempts[i] += 1;
        }
    }

    /// An instance of `service` now queues `len` requests.
    pub(crate) fn queued(&mut self, service: usize, len: u64) {
        if let Some(i) = self.index(service) {
            let longest = &mut self.max_queue[i];
            *longest = (*longest).max(len);
        }
    }

    /// A user request arrived now.
    pub(crate) fn user_arrived(&mut self) {
        if let Some(users) = self.users.get_mut(self.current) {
            *users += 1;
        }
    }

    /// The user request that arrived at `arrived_at` was answered with success after
    /// `latency_ns`: counted in the second it arrived, where its load was offered.
    pub(crate) fn user_succeeded(&mut self, arrived_at: u64, latency_ns: u64) {
        let step = usize::try_from(arrived_at / SECOND).unwrap_or(usize::MAX);
        let in_step = if step < self.steps {
            self.succeeded[step] += 1;
            step
        } else {
            self.steps
        };
        let in_step = u32::try_from(in_step).unwrap_or(u32::MAX);
        self.latencies.push(latency_ns, in_step);
    }

    /// Every successful user request's latency, sorted, and the steps, with each service present
    /// by name in every step, even at zero, so a plot needs no gaps filled.
    pub(crate) fn into_steps(self, names: &[&str]) -> (Vec<u64>, Vec<Step>) {
        let services = self.services;
        let (all, per_step) = self.latencies.sort(&self.succeeded);
        let mut latencies = per_step.into_iter();
        let steps = (0..self.steps)
            .map(|k| {
                let latency_ns = latencies.next().unwrap_or_default();
                let row = |counts: &[u64]| {
                    names
                        .iter()
                        .zip(&counts[k * services..(k + 1) * services])
                        .map(|(name, n)| ((*name).to_string(), *n))
                        .collect::<BTreeMap<_, _>>()
                };
                Step {
                    at_s: k as u64,
                    users: self.users[k],
                    succeeded: self.succeeded[k],
                    latency_ns,
                    attempts: row(&self.attempts),
                    max_queue: row(&self.max_queue),
                }
            })
            .collect();
        (all, steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One service's instances, with queues of `lengths`.
    fn queues(lengths: &[usize]) -> Vec<InstanceState> {
        lengths
            .iter()
            .map(|&n| {
                let mut instance = InstanceState::default();
                let mut slab = super::super::slab::Slab::new();
                for _ in 0..n {
                    instance.queue.push_back(slab.insert(()));
                }
                instance
            })
            .collect()
    }

    #[test]
    fn a_queue_that_stays_long_counts_in_every_second_it_lasts() {
        let mut timeline = Timeline::new(1, 4 * SECOND);
        timeline.queued(0, 3);
        // Nothing happens in seconds 1 and 2; the next event is in second 3, with 2 queued.
        timeline.enter(3 * SECOND + 5, &queues(&[2, 1]), [(0, 2)].into_iter());
        timeline.attempt(0);
        let (_, steps) = timeline.into_steps(&["db"]);
        let longest: Vec<u64> = steps.iter().map(|s| s.max_queue["db"]).collect();
        assert_eq!(longest, [3, 2, 2, 2]);
        let attempts: Vec<u64> = steps.iter().map(|s| s.attempts["db"]).collect();
        assert_eq!(attempts, [0, 0, 0, 1]);
    }

    #[test]
    fn a_user_counts_in_the_second_it_arrived_and_the_drain_is_not_counted() {
        let mut timeline = Timeline::new(1, 2 * SECOND + 1);
        timeline.user_arrived();
        timeline.user_succeeded(SECOND / 2, 7);
        timeline.enter(5 * SECOND, &queues(&[9]), [(0, 1)].into_iter());
        timeline.attempt(0);
        timeline.queued(0, 10);
        timeline.user_arrived();
        let (_, steps) = timeline.into_steps(&["db"]);
        assert_eq!(steps.len(), 3, "a partial last second is a step");
        assert_eq!((steps[0].users, steps[0].succeeded), (1, 1));
        assert_eq!(steps[0].latency_ns, [7]);
        assert_eq!(steps[0].goodput(), Some(1.0));
        assert!(steps.iter().all(|s| s.attempts["db"] == 0));
        assert_eq!(steps[2].max_queue["db"], 9, "entered with 9 queued");
    }
}
