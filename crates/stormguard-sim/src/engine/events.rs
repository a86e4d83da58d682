//! The agenda: what happens next, in virtual time.
//!
//! Events at the same nanosecond run in the order they were scheduled (a sequence number breaks
//! ties), so a run never depends on how the heap happens to order equal keys: that is what makes
//! the same seed give the same outcome.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use stormguard::classify::AttemptResult;

use super::slab::Key;

/// An answer on its way back: the few outcomes a callee sends, in one byte rather than a whole
/// [`AttemptResult`], because every response sits in the heap and a smaller heap is a faster one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200.
    Ok,
    /// 503: rejected, an injected error, or a required call failed.
    Unavailable,
    /// The connection was refused: the instance is down.
    Refused,
}

impl Answer {
    pub(crate) fn result(self) -> AttemptResult {
        match self {
            Answer::Ok => AttemptResult::Response {
                status: 200,
                retry_after: None,
            },
            Answer::Unavailable => AttemptResult::Response {
                status: 503,
                retry_after: None,
            },
            Answer::Refused => AttemptResult::ConnectRefused,
        }
    }
}

/// Something that happens at one instant of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// The next user request arrives at the entry service.
    UserArrival,
    /// An attempt reaches the instance it was sent to.
    Arrive(Key),
    /// The caller's per-attempt timeout (or the user's patience) runs out.
    AttemptTimeout(Key),
    /// The caller's connect timeout runs out on a connection never answered.
    ConnectTimeout(Key),
    /// The outcome of an attempt reaches its caller.
    Response(Key, Answer),
    /// A request's own work on an instance is done.
    WorkDone(Key),
    /// A call's backoff is over: its next attempt goes out.
    Retry(Key),
    /// An attempt's hedge delay is over: a copy may go to another instance.
    Hedge(Key),
}

/// `at` in the high 64 bits and the sequence number in the low ones: one integer comparison
/// orders by time, then by scheduling order, which is most of what the heap does.
struct Scheduled {
    key: u128,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed, so that the max-heap pops the earliest event, and of equal times the first
    // scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// Events waiting to happen, earliest first.
pub(crate) struct Agenda {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Agenda {
    pub(crate) fn new() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub(crate) fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            key: (u128::from(at) << 64) | u128::from(self.seq),
            event,
        });
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|s| ((s.key >> 64) as u64, s.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_times_keep_the_order_they_were_scheduled_in() {
        let mut agenda = Agenda::new();
        agenda.schedule(5, Event::UserArrival);
        let mut slab = super::super::slab::Slab::new();
        let key = slab.insert(());
        agenda.schedule(5, Event::Retry(key));
        agenda.schedule(1, Event::WorkDone(key));
        assert!(matches!(agenda.pop(), Some((1, Event::WorkDone(_)))));
        assert!(matches!(agenda.pop(), Some((5, Event::UserArrival))));
        assert!(matches!(agenda.pop(), Some((5, Event::Retry(_)))));
        assert!(agenda.pop().is_none());
    }
}
