//! The agenda: what happens next, in virtual time.
//!
//! Events at the same nanosecond run in the order they were scheduled, so a run never depends
//! on how a data structure happens to order equal keys: that is what makes the same seed give
//! the same outcome.
//!
//! ## Why lanes beside the heap
//! With one `BinaryHeap` of every event, popping was a third of the work of a run: a few
//! thousand events wait at once (every user's patience, every attempt's timeout) and each pop
//! sifts through a dozen levels of them. Yet most events are scheduled a fixed delay after the
//! present: a call's timeout, half its round trip, the user's patience. Time never goes back, so
//! the events of one fixed delay are scheduled in the order they happen, and a FIFO queue (a
//! lane) keeps them sorted for free. Only the head of each lane waits in the heap, beside the
//! events of delays drawn at random (work, backoff, arrivals), so the heap holds dozens instead
//! of thousands. A delay gets a lane the second time in a row it is seen in its slot of a small
//! table; a delay that never repeats never gets one. Measured on the benchmark
//! (`benches/sim_throughput.rs`), this took a fifth off a run's time; a radix heap and an exact
//! hierarchical timer wheel took less, as each event still moved through two or three buckets.
//!
//! The order is exact: every event carries its time and its place in the scheduling order, and
//! the heap compares both, so lanes change how fast the next event is found, never which.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

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
    /// An injected error with a status of its own (a fault's `error_status` other than 503).
    Status(u16),
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
            Answer::Status(status) => AttemptResult::Response {
                status,
                retry_after: None,
            },
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

/// `at` in the high 64 bits and the scheduling order in the low ones: one integer comparison
/// orders by time, then by scheduling order.
type Order = u128;

/// Marks an event of the heap that is no lane's head.
const NO_LANE: u32 = u32::MAX;

/// An event in the heap: any event whose delay has no lane, and the head of each lane.
struct Scheduled {
    order: Order,
    lane: u32,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed, so that the max-heap pops the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        other.order.cmp(&self.order)
    }
}

/// The events of one delay after the lane's head (which waits in the heap), in order.
#[derive(Default)]
struct Lane {
    rest: VecDeque<(Order, Event)>,
    /// Whether its head is in the heap.
    active: bool,
}

/// Slots of the table of delays: more than the distinct fixed delays of a large graph.
const DELAY_SLOTS: usize = 256;

/// Slots a delay may take, from the one its hash names: a delay whose slot is another's lane
/// still finds one.
const PROBES: usize = 4;

/// A delay seen, and its lane once it was seen twice in a row in its slot.
#[derive(Clone, Copy)]
struct Delay {
    delay: u64,
    lane: u32,
}

/// Events waiting to happen, earliest first, and of equal times the first scheduled.
pub(crate) struct Agenda {
    heap: BinaryHeap<Scheduled>,
    lanes: Vec<Lane>,
    delays: Box<[Delay; DELAY_SLOTS]>,
    seq: u64,
    /// The time of the last event popped: no event may be scheduled before it.
    now: u64,
    /// Events scheduled and not yet popped: what bounds a run's memory.
    pending: usize,
}

impl Agenda {
    pub(crate) fn new() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            lanes: Vec::new(),
            delays: Box::new(
                [Delay {
                    delay: u64::MAX,
                    lane: NO_LANE,
                }; DELAY_SLOTS],
            ),
            seq: 0,
            now: 0,
            pending: 0,
        }
    }

    /// How many events wait.
    pub(crate) fn len(&self) -> usize {
        self.pending
    }

    /// Schedules `event` at `at`, which must not be before the last event popped: virtual time
    /// only moves forward, and an event in the past is a bug of the engine.
    pub(crate) fn schedule(&mut self, at: u64, event: Event) {
        assert!(
            at >= self.now,
            "event {event:?} scheduled at {at} ns, before the current time {} ns",
            self.now
        );
        self.seq += 1;
        self.pending += 1;
        let order = (Order::from(at) << 64) | Order::from(self.seq);
        let lane = self.lane_of(at - self.now);
        if lane == NO_LANE {
            self.heap.push(Scheduled { order, lane, event });
            return;
        }
        let queue = &mut self.lanes[lane as usize];
        if queue.active {
            queue.rest.push_back((order, event));
        } else {
            queue.active = true;
            self.heap.push(Scheduled { order, lane, event });
        }
    }

    /// The lane of events `delay` after now, `NO_LANE` for a delay not seen just before in its
    /// slot.
    fn lane_of(&mut self, delay: u64) -> u32 {
        // Round delays (400ms, 2s) share low bits, so they are mixed before they pick a slot.
        let mut hash = (delay ^ (delay >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let first = (hash >> 56) as usize;
        for probe in 0..PROBES {
            let entry = &mut self.delays[(first + probe) % DELAY_SLOTS];
            if entry.delay == delay {
                if entry.lane == NO_LANE {
                    entry.lane = self.lanes.len() as u32;
                    self.lanes.push(Lane::default());
                }
                return entry.lane;
            }
            if entry.lane == NO_LANE {
                entry.delay = delay;
                return NO_LANE;
            }
        }
        NO_LANE
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        let mut top = self.heap.peek_mut()?;
        let (order, event) = (top.order, top.event);
        if top.lane != NO_LANE {
            let lane = &mut self.lanes[top.lane as usize];
            if let Some((next, next_event)) = lane.rest.pop_front() {
                top.order = next;
                top.event = next_event;
            } else {
                lane.active = false;
                PeekMut::pop(top);
            }
        } else {
            PeekMut::pop(top);
        }
        self.now = (order >> 64) as u64;
        self.pending -= 1;
        Some((self.now, event))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use rand::Rng;
    use stormguard::backoff::seeded;

    use super::super::model::{nanos, NO_TIMEOUT};
    use super::super::slab::{Key, Slab};
    use super::*;

    #[test]
    fn equal_times_keep_the_order_they_were_scheduled_in() {
        let mut agenda = Agenda::new();
        agenda.schedule(5, Event::UserArrival);
        let mut slab = Slab::new();
        let key = slab.insert(());
        agenda.schedule(5, Event::Retry(key));
        agenda.schedule(1, Event::WorkDone(key));
        assert!(matches!(agenda.pop(), Some((1, Event::WorkDone(_)))));
        assert!(matches!(agenda.pop(), Some((5, Event::UserArrival))));
        assert!(matches!(agenda.pop(), Some((5, Event::Retry(_)))));
        assert!(agenda.pop().is_none());
    }

    #[test]
    fn an_empty_agenda_pops_nothing_and_takes_events_again_afterwards() {
        let mut agenda = Agenda::new();
        assert!(agenda.pop().is_none());
        agenda.schedule(u64::MAX, Event::UserArrival);
        agenda.schedule(7, Event::UserArrival);
        assert!(matches!(agenda.pop(), Some((7, _))));
        assert!(matches!(agenda.pop(), Some((u64::MAX, _))));
        assert!(agenda.pop().is_none());
        agenda.schedule(u64::MAX, Event::UserArrival);
        assert!(matches!(agenda.pop(), Some((u64::MAX, _))));
    }

    #[test]
    #[should_panic(expected = "before the current time")]
    fn an_event_in_the_past_is_refused() {
        let mut agenda = Agenda::new();
        agenda.schedule(10, Event::UserArrival);
        agenda.pop();
        agenda.schedule(9, Event::UserArrival);
    }

    /// What the agenda must do, the obvious way: a binary heap ordered by time, then by the
    /// order of scheduling, and each event's key by that order.
    #[derive(Default)]
    struct Reference {
        heap: BinaryHeap<Reverse<(u64, usize)>>,
        keys: Vec<Key>,
    }

    impl Reference {
        fn schedule(&mut self, at: u64, key: Key) {
            self.heap.push(Reverse((at, self.keys.len())));
            self.keys.push(key);
        }

        /// Pops both and checks they agree; the time popped, if any.
        fn pop_both(&mut self, agenda: &mut Agenda, seed: u64) -> Option<u64> {
            let expected = self.heap.pop().map(|Reverse((at, n))| (at, self.keys[n]));
            let popped = agenda.pop().map(|(at, event)| match event {
                Event::Retry(key) => (at, key),
                other => panic!("the test schedules only retries, popped {other:?}"),
            });
            assert_eq!(popped, expected, "seed {seed}");
            popped.map(|(at, _)| at)
        }
    }

    /// Schedules and pops at random, in the engine's pattern (every event at or after the last
    /// popped), and checks every pop against the reference. Delays mix the `fixed` ones (which
    /// get lanes), zero (many events at one nanosecond), a few nanoseconds, random milliseconds
    /// of work, a year's `NO_TIMEOUT` and a saturated `u64::MAX`.
    fn agrees_with_the_reference(seed: u64, steps: usize, fixed: &[u64]) {
        let mut rng = seeded(seed);
        let mut agenda = Agenda::new();
        let mut reference = Reference::default();
        let mut keys = Slab::new();
        let mut now = 0u64;
        let year = nanos(NO_TIMEOUT);
        for _ in 0..steps {
            if rng.random_bool(0.45) {
                now = reference.pop_both(&mut agenda, seed).unwrap_or(now);
                continue;
            }
            let delay = match rng.random_range(0..12) {
                0..=4 => fixed[rng.random_range(0..fixed.len())],
                5 => 0,
                6 => rng.random_range(1..4),
                7..=9 => rng.random_range(0..2_000_000_000),
                10 => year + rng.random_range(0..3),
                _ => u64::MAX,
            };
            let at = now.saturating_add(delay);
            let key = keys.insert(());
            agenda.schedule(at, Event::Retry(key));
            reference.schedule(at, key);
        }
        while reference.pop_both(&mut agenda, seed).is_some() {}
    }

    /// A graph's fixed delays: half round trips, timeouts, the user's patience, no timeout.
    const FIXED: [u64; 7] = [
        500_000,
        2_500_000,
        50_000_000,
        400_000_000,
        2_000_000_000,
        3_000_000_000,
        365 * 24 * 3600 * 1_000_000_000,
    ];

    #[test]
    fn pops_in_the_order_of_a_binary_heap_by_time_then_scheduling() {
        for seed in 0..200 {
            agrees_with_the_reference(seed, 2_000, &FIXED);
        }
    }

    #[test]
    fn long_runs_with_thousands_waiting_pop_in_order() {
        agrees_with_the_reference(2024, 200_000, &FIXED);
    }

    #[test]
    fn more_fixed_delays_than_the_table_holds_still_pop_in_order() {
        let many: Vec<u64> = (1..2_000).map(|n| n * 1_000_000).collect();
        agrees_with_the_reference(7, 200_000, &many);
    }

    #[test]
    fn lanes_form_for_repeated_delays_and_not_for_random_ones() {
        let mut agenda = Agenda::new();
        for n in 0..100u64 {
            agenda.schedule(n * 7_919 + 400_000_000, Event::UserArrival);
        }
        assert_eq!(
            agenda.lanes.len(),
            0,
            "no time has passed: every delay differs"
        );
        agenda.pop();
        let now = agenda.now;
        for n in 0..100u64 {
            agenda.schedule(now + 50_000_000, Event::UserArrival);
            agenda.schedule(now + 50_000_000 + n, Event::UserArrival);
        }
        assert_eq!(agenda.lanes.len(), 1);
        assert!(agenda.lanes[0].rest.len() >= 98);
    }
}
