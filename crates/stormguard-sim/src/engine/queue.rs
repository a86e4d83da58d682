//! Which queued request a free worker takes, and which are too old to take: the policy of a
//! service's `queue_discipline` and `queue_timeout`, as plain data and pure functions of the
//! queue's age, so that [`super::service`] only pops and drops.
//!
//! The rule is `stormguard_graph::model::Codel`'s (Facebook's controlled delay with adaptive
//! LIFO, Maurer 2015), read when a worker would take a request: a queue not empty at any moment
//! of the last `interval` is overloaded, and serves the newest first, dropping what waited past
//! `target`; otherwise it serves the oldest first, dropping what waited past `interval`. A
//! `queue_timeout` bounds the wait under every discipline, CoDel's included.

use stormguard_graph::model::{QueueDiscipline, Service};

use super::model::nanos;

/// One service's queue policy in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueuePolicy {
    discipline: Discipline,
    /// `queue_timeout`, if any.
    timeout: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Discipline {
    #[default]
    Fifo,
    Lifo,
    Codel {
        target: u64,
        interval: u64,
    },
}

/// What a free worker does with its instance's queue at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Take {
    /// Take from the back (the newest) rather than the front.
    pub(crate) newest_first: bool,
    /// A request that waited longer than this is dropped with a 503 instead of taken.
    pub(crate) limit: Option<u64>,
}

impl QueuePolicy {
    /// The policy of `service`'s keys.
    pub(crate) fn of(service: &Service) -> QueuePolicy {
        let discipline = match service.queue_discipline {
            QueueDiscipline::Fifo => Discipline::Fifo,
            QueueDiscipline::Lifo => Discipline::Lifo,
            QueueDiscipline::Codel(codel) => Discipline::Codel {
                target: nanos(codel.target),
                interval: nanos(codel.interval),
            },
        };
        QueuePolicy {
            discipline,
            timeout: service.queue_timeout.map(nanos),
        }
    }

    /// Whether any request can ever be too old to take: false for a plain FIFO or LIFO queue,
    /// whose instance then never looks at a queued request's age.
    pub(crate) fn expires(&self) -> bool {
        self.timeout.is_some() || matches!(self.discipline, Discipline::Codel { .. })
    }

    /// What a worker does at `now` with a non-empty queue that has held requests without a
    /// break since `nonempty_since`.
    pub(crate) fn take(&self, now: u64, nonempty_since: u64) -> Take {
        let (newest_first, limit) = match self.discipline {
            Discipline::Fifo => (false, None),
            Discipline::Lifo => (true, None),
            Discipline::Codel { target, interval } => {
                let overloaded = now.saturating_sub(nonempty_since) > interval;
                if overloaded {
                    (true, Some(target))
                } else {
                    (false, Some(interval))
                }
            }
        };
        let limit = match (limit, self.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Take {
            newest_first,
            limit,
        }
    }
}

impl Take {
    /// Whether a request queued at `queued_at` is too old to take at `now`.
    pub(crate) fn stale(&self, now: u64, queued_at: u64) -> bool {
        self.limit
            .is_some_and(|limit| now.saturating_sub(queued_at) > limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stormguard_graph::model::Codel;

    use super::*;

    const MS: u64 = 1_000_000;

    fn policy(discipline: QueueDiscipline, timeout: Option<u64>) -> QueuePolicy {
        let graph =
            stormguard_graph::parse("g.toml", "[entry]\nservice = \"a\"\n[services.a]\n").unwrap();
        let mut service = graph.services["a"].clone();
        service.queue_discipline = discipline;
        service.queue_timeout = timeout.map(Duration::from_nanos);
        QueuePolicy::of(&service)
    }

    #[test]
    fn fifo_and_lifo_never_drop_without_a_timeout() {
        let fifo = policy(QueueDiscipline::Fifo, None);
        let lifo = policy(QueueDiscipline::Lifo, None);
        assert!(!fifo.expires() && !lifo.expires());
        assert!(!fifo.take(10_000 * MS, 0).newest_first);
        assert!(lifo.take(10_000 * MS, 0).newest_first);
        assert!(!lifo.take(10_000 * MS, 0).stale(10_000 * MS, 0));
    }

    #[test]
    fn a_queue_timeout_drops_what_waited_longer_with_any_discipline() {
        for discipline in [QueueDiscipline::Fifo, QueueDiscipline::Lifo] {
            let take = policy(discipline, Some(50 * MS)).take(100 * MS, 0);
            assert!(take.stale(100 * MS, 49 * MS), "waited 51ms");
            assert!(!take.stale(100 * MS, 50 * MS), "waited 50ms");
        }
    }

    #[test]
    fn codel_serves_fifo_with_the_interval_until_the_queue_has_not_emptied_for_an_interval() {
        let codel = policy(QueueDiscipline::Codel(Codel::default()), None);
        assert!(codel.expires());
        // Non-empty for 100 ms exactly: not yet overloaded.
        let calm = codel.take(100 * MS, 0);
        assert_eq!((calm.newest_first, calm.limit), (false, Some(100 * MS)));
        // For longer: newest first, and 5 ms is the most a request may have waited.
        let overloaded = codel.take(100 * MS + 1, 0);
        assert_eq!(
            (overloaded.newest_first, overloaded.limit),
            (true, Some(5 * MS))
        );
        // A shorter queue_timeout still binds.
        let bounded = policy(QueueDiscipline::Codel(Codel::default()), Some(MS));
        assert_eq!(bounded.take(0, 0).limit, Some(MS));
    }
}
