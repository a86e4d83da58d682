//! The agenda: what happens next, in virtual time.
//!
//! Events at the same nanosecond run in the order they were scheduled, so a run never depends
//! on how a data structure happens to order equal keys: that is what makes the same seed give
//! the same outcome.
//!
//! ## Why a wheel of buckets
//! With one `BinaryHeap` of every event, popping was a third of the work of a run: a few
//! thousand events wait at once (every user's patience, every attempt's timeout) and each pop
//! sifts through a dozen levels of them. Lanes of fixed delays beside a small heap halved that,
//! but every event still paid a hash of its delay and a sift through the heap of lane heads and
//! random delays (work, backoff, arrivals): some 200 instructions an event.
//!
//! Here virtual time is cut into buckets of 262 µs to 2.1 ms (as a run's rate chooses,
//! [`Agenda::for_rate`]), and a wheel of [`SLOTS`] of them (2 to 17 seconds ahead) holds each
//! event in the bucket of its time, unsorted: scheduling
//! links it into the bucket's list, whose nodes come from one pool. A bucket is sorted only when
//! the loop reaches it, and a run has a few events per bucket, so that sort is a handful of
//! comparisons. Empty buckets are skipped with a bitmap of the occupied ones (and a summary word
//! of that bitmap), so a quiet stretch of time costs a few word scans, not a visit per bucket.
//! The rare event further ahead than the wheel (a call without a timeout waits a year) waits in
//! a heap, and joins when its bucket is the next. Each event moves once into its bucket and
//! once out of it.
//!
//! ## Lanes of timeouts
//! Nearly every attempt's timeout is taken back: the answer comes first. In the wheel, each
//! cost a node written, found again (cold) to be cancelled, and walked past (cold again) when
//! its bucket opened: a third of the wheel's traffic, for events that never fire. A timeout
//! scheduled with [`Agenda::schedule_in_lane`] goes instead to its lane (one per edge, one for
//! the users), a queue in the order of scheduling whose times only grow, as a call's timeouts
//! do: pushing is an append, cancelling marks an entry written a moment ago, and the dead ones
//! are dropped in a row. The wheel holds one marker per lane, in the bucket of its first live
//! entry; when that bucket opens, the lane's live entries of the bucket join it. A timeout
//! earlier than its lane's last (one cut short by a deadline) goes to the wheel as any event.
//!
//! The order is exact, so the wheel and the lanes change how fast the next event is found,
//! never which. A bucket is sorted by time with a stable sort, its events put in the order
//! they were scheduled first: the far heap's (an event goes to the heap only while its bucket
//! is out of the wheel's reach, so before any event of that bucket goes to the wheel or a
//! lane), in the heap's order by time and a sequence number, then the slot's list reversed (it
//! is pushed at its head, so holds its events latest first), merged with the lanes' entries of
//! the bucket, if any, by their sequence numbers. Every event takes one when it is scheduled; a
//! node and a lane entry keep its low 32 bits, enough to tell it among the fewer than 2^32
//! events a run schedules ([`super::limits::MAX_ATTEMPTS`] attempts, a handful each). An event
//! scheduled into the bucket being popped is the latest of all, and goes after the events of
//! its time.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
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
///
/// `repr(u8)`: a tag of its own, read and dispatched on at once, where the compiler had folded
/// the tag into the niche of [`Answer`]'s and decoded it with a subtraction and a select on
/// every event popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
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
    /// The agenda's own: the marker of a lane of timeouts (see the module's doc), never
    /// popped.
    Lane(u32),
}

/// `at` in the high 64 bits and the scheduling order in the low ones: one integer comparison
/// orders by time, then by scheduling order.
type Order = u128;

/// An event in the far heap, with its place in the order.
#[derive(Clone, Copy)]
struct Scheduled {
    order: Order,
    event: Event,
}

impl Scheduled {
    fn at(&self) -> u64 {
        (self.order >> 64) as u64
    }
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
    // Reversed, so that the max-heap of far events pops the earliest, and a bucket sorted by it
    // holds its earliest event last, where `Vec::pop` takes it.
    fn cmp(&self, other: &Self) -> Ordering {
        other.order.cmp(&self.order)
    }
}

/// Log2 of the bucket width of the tests' agendas: 262 µs, the narrowest a run may choose.
#[cfg(test)]
const BUCKET_BITS: u32 = 18;

/// The bucket widths a run's rate may choose ([`Agenda::for_rate`]), as log2 of nanoseconds:
/// 262 µs (a wheel of 2.1 s, past every round trip, backoff and most timeouts) to 2.1 ms
/// (17 s). Narrower, and a busy run's user timeouts would go to the far heap.
const BITS: std::ops::RangeInclusive<u32> = 18..=21;

/// The events a bucket is sized to hold, by the estimate of [`Agenda::for_rate`]'s caller. Too
/// few, and nearly every pop pays for finding and opening a bucket; too many, and each is
/// sorted, and shifted into when an event is scheduled into the bucket being popped, at length.
/// Thirteen puts the benchmark's storm and healthy graph in 1 ms buckets, where they cost 1-2%
/// fewer instructions per attempt than in 262 µs ones, and its storm side by side four and
/// eight times in 262 µs buckets, where they cost 2% and 7% fewer than in 1 ms ones.
const EVENTS_PER_BUCKET: f64 = 13.0;

/// Buckets in the wheel: a power of two, so a bucket's slot is its number's low bits.
const SLOTS: usize = 1 << 13;

/// Words of the bitmap of occupied slots, and of its summary (a bit per non-zero word).
const WORDS: usize = SLOTS / 64;
const SUMMARY: usize = WORDS.div_ceil(64);

/// Which slots hold events: one bit per slot, and one per word of those, so that the next
/// occupied slot is found in a few word operations however far it is.
struct Occupied {
    words: Box<[u64; WORDS]>,
    summary: [u64; SUMMARY],
}

impl Occupied {
    fn new() -> Self {
        Occupied {
            words: Box::new([0; WORDS]),
            summary: [0; SUMMARY],
        }
    }

    fn set(&mut self, slot: usize) {
        let word = slot / 64;
        self.words[word] |= 1 << (slot % 64);
        self.summary[word / 64] |= 1 << (word % 64);
    }

    fn clear(&mut self, slot: usize) {
        let word = slot / 64;
        self.words[word] &= !(1 << (slot % 64));
        if self.words[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
    }

    /// The first occupied slot at or after `from` (not wrapping), if any.
    fn first_from(&self, from: usize) -> Option<usize> {
        let word = from / 64;
        let bits = self.words[word] & (u64::MAX << (from % 64));
        if bits != 0 {
            return Some(word * 64 + bits.trailing_zeros() as usize);
        }
        let next = word + 1;
        for at in next / 64..SUMMARY {
            let mut words = self.summary[at];
            if at == next / 64 {
                // `next % 64` is below 64 here: `next` is at most `WORDS`, and `at` a summary
                // word that exists.
                words &= u64::MAX << (next % 64);
            }
            if words != 0 {
                let word = at * 64 + words.trailing_zeros() as usize;
                return Some(word * 64 + self.words[word].trailing_zeros() as usize);
            }
        }
        None
    }
}

/// An event due in the bucket being popped.
#[derive(Clone, Copy)]
struct Due {
    at: u64,
    event: Event,
}

/// An event in a slot's list.
#[derive(Clone, Copy)]
struct Node {
    event: Event,
    /// The event's time within its bucket (the bucket is the slot's: the time's high bits).
    at_low: u32,
    /// The low 32 bits of the event's sequence number.
    seq: u32,
    /// The next node of the list: of the same slot while it waits, of the free ones after.
    next: u32,
    /// Whether the event still waits in its slot: false once it was cancelled, or moved out
    /// of the wheel and the node freed.
    waiting: bool,
}

/// A timeout waiting in its lane.
#[derive(Clone, Copy)]
struct Entry {
    at: u64,
    event: Event,
    /// The low 32 bits of its sequence number.
    seq: u32,
    /// False once cancelled: dropped when the lane gets to it.
    live: bool,
}

/// The timeouts of one edge (or of the users), in the order they were scheduled, their times
/// never decreasing: `entries[head..]`.
///
/// A `Vec` read from `head` rather than a `VecDeque`: no wrapping index on every push, read and
/// cancel; the entries taken are dropped from the buffer once they are most of it.
#[derive(Default)]
struct Lane {
    entries: Vec<Entry>,
    head: usize,
    /// Entries dropped from the buffer so far: `entries[i]` is entry `dropped + i` of the lane,
    /// the number a handle names.
    dropped: u64,
    /// Whether its marker waits in the wheel: from the push into an empty lane until the
    /// marker comes up and finds no entry left. One at most, however often the lane empties.
    marked: bool,
    /// The time of the last entry pushed: the marker waits in the bucket of an entry no later
    /// (whose entries may all be gone, cancelled), so no later entry may be earlier.
    last_at: u64,
}

impl Lane {
    fn first(&self) -> Option<&Entry> {
        self.entries.get(self.head)
    }

    /// Takes the first entry off.
    fn take_first(&mut self) {
        self.head += 1;
        if self.head == self.entries.len() {
            self.dropped += self.head as u64;
            self.entries.clear();
            self.head = 0;
        } else if self.head >= 64 && self.head * 2 >= self.entries.len() {
            self.dropped += self.head as u64;
            self.entries.drain(..self.head);
            self.head = 0;
        }
    }

    /// Entry `number` of the lane, if it still waits in it.
    fn entry_mut(&mut self, number: u64) -> Option<&mut Entry> {
        let index = usize::try_from(number.checked_sub(self.dropped)?).ok()?;
        if index < self.head {
            return None;
        }
        self.entries.get_mut(index)
    }
}

/// Where an event waits, to cancel it with [`Agenda::cancel`]: its node in the wheel, its
/// entry in a lane ([`LANE`] set, the lane above bit [`LANE_SHIFT`], the entry's number
/// below), or [`Handle::NONE`] for an event in the bucket being popped or in the far heap,
/// which is never cancelled and fires, as any event may, after its subject is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handle(u64);

impl Handle {
    /// An event that cannot be cancelled.
    pub(crate) const NONE: Handle = Handle(u64::MAX);
}

/// A handle's bit for a lane's entry.
const LANE: u64 = 1 << 63;
/// Where a lane handle's lane starts: 2^40 entries a lane, 2^23 lanes.
const LANE_SHIFT: u32 = 40;

/// The end of a list of nodes.
const NIL: u32 = u32::MAX;

/// Events waiting to happen, earliest first, and of equal times the first scheduled.
pub(crate) struct Agenda {
    /// The events of bucket `cursor` not popped yet, `current[head..]`, sorted earliest first,
    /// and of equal times the first scheduled first. Popped from the front, by moving `head`,
    /// so that an event scheduled into the bucket, usually later than those it holds, goes in
    /// at or near the end.
    current: Vec<Due>,
    head: usize,
    /// Log2 of a bucket's width in nanoseconds.
    bits: u32,
    /// The bucket of the last event popped (`now >> bits`): every event waiting is in
    /// it or after it.
    cursor: u64,
    /// Slot `b % SLOTS` heads the list, in `nodes`, of the events of bucket `b`, unsorted, for
    /// the buckets after `cursor` and less than [`SLOTS`] after it. A boxed array rather than a
    /// `Vec`: its length is known, so a slot number masked below [`SLOTS`] indexes it without a
    /// bounds check.
    heads: Box<[u32; SLOTS]>,
    /// The events of every slot, linked, and the free nodes.
    ///
    /// One pool rather than a `Vec` per slot: the events waiting stay in a few contiguous
    /// pages, and a freed node, still in cache, is the next one taken. With a `Vec` per slot,
    /// each schedule wrote to a buffer of its own among thousands: fewer instructions than the
    /// heap it replaced, yet more CPU time, from cache and TLB misses.
    nodes: Vec<Node>,
    /// The first free node of `nodes`, [`NIL`] when none is.
    free: u32,
    occupied: Occupied,
    /// Events [`SLOTS`] buckets or more after the cursor when they were scheduled.
    far: BinaryHeap<Scheduled>,
    /// The sequence number of the next event scheduled: its order among equal times.
    seq: u64,
    /// The lanes of timeouts, by the number the engine gives each ([`Agenda::schedule_in_lane`]).
    lanes: Vec<Lane>,
    /// Live entries in the lanes.
    in_lanes: usize,
    /// While a bucket opens: the low bits of the sequence numbers of the wheel's events, and
    /// the lanes whose markers came up. Kept to reuse their buffers.
    seqs: Vec<u32>,
    opened: Vec<u32>,
    /// While lanes open: their entries joining the bucket, then all its events from the wheel
    /// and the lanes, with their sequence numbers.
    joining: Vec<(u64, Due)>,
    /// Where a bucket's events are sorted to, then exchanged with `current`; kept to reuse its
    /// buffer.
    sorted: Vec<Due>,
    /// The time of the last event popped: no event may be scheduled before it.
    now: u64,
    /// Events waiting in the wheel's slots, not cancelled: with those of the bucket being
    /// popped and of the far heap, what [`len`](Self::len) counts. Kept for the wheel alone,
    /// so that popping and scheduling into the bucket being popped count nothing.
    in_wheel: usize,
}

impl Agenda {
    /// An agenda of buckets of 2^[`BUCKET_BITS`] ns.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_bits(BUCKET_BITS)
    }

    /// An agenda for a run expected to handle `events_per_second`: buckets sized to hold
    /// [`EVENTS_PER_BUCKET`] each, within [`BITS`]. The width changes how fast the next event
    /// is found, never which.
    pub(crate) fn for_rate(events_per_second: f64) -> Self {
        let width = EVENTS_PER_BUCKET / events_per_second * 1e9;
        // Saturating: an infinite width (no events) takes the widest, NaN the narrowest.
        let bits = (width.log2().round() as u32).clamp(*BITS.start(), *BITS.end());
        Self::with_bits(bits)
    }

    fn with_bits(bits: u32) -> Self {
        Agenda {
            bits,
            current: Vec::new(),
            head: 0,
            cursor: 0,
            heads: Box::new([NIL; SLOTS]),
            nodes: Vec::new(),
            free: NIL,
            occupied: Occupied::new(),
            far: BinaryHeap::new(),
            seq: 0,
            lanes: Vec::new(),
            in_lanes: 0,
            seqs: Vec::new(),
            opened: Vec::new(),
            joining: Vec::new(),
            sorted: Vec::new(),
            now: 0,
            in_wheel: 0,
        }
    }

    /// How many events wait: what bounds a run's memory.
    pub(crate) fn len(&self) -> usize {
        (self.current.len() - self.head) + self.in_wheel + self.far.len() + self.in_lanes
    }

    /// Schedules `event` at `at`, which must not be before the last event popped: virtual time
    /// only moves forward, and an event in the past is a bug of the engine.
    ///
    /// Inlined, with the panic out of line: a push onto a bucket costs less than the call did.
    #[inline(always)]
    pub(crate) fn schedule(&mut self, at: u64, event: Event) -> Handle {
        if at < self.now {
            in_the_past(at, self.now);
        }
        let seq = self.seq;
        self.seq += 1;
        let bucket = at >> self.bits;
        let ahead = bucket - self.cursor;
        if ahead == 0 {
            // Later in the bucket being popped, and scheduled after all of its events: after
            // those of its time, which pop first.
            // Shifted into place from the end, usually by none or a few: cheaper than a
            // search and `Vec::insert`, whose move of the rest is a call to `memmove`.
            let due = Due { at, event };
            let current = &mut self.current;
            let mut place = current.len();
            current.push(due);
            while place > self.head && current[place - 1].at > at {
                current[place] = current[place - 1];
                place -= 1;
            }
            current[place] = due;
            Handle::NONE
        } else if ahead < SLOTS as u64 {
            let slot = bucket as usize % SLOTS;
            let node = Node {
                event,
                at_low: (at & self.low_mask()) as u32,
                seq: seq as u32,
                next: self.heads[slot],
                waiting: true,
            };
            let index = self.store(node);
            self.heads[slot] = index;
            self.occupied.set(slot);
            self.in_wheel += 1;
            Handle(u64::from(index))
        } else {
            self.far.push(Scheduled {
                order: (Order::from(at) << 64) | Order::from(seq),
                event,
            });
            Handle::NONE
        }
    }

    /// Schedules timeout `event` at `at` in lane `lane` (see the module's doc), unless its
    /// time is in the bucket being popped, beyond the wheel, or before the lane's last: then as
    /// [`schedule`](Self::schedule) does. The order of events is the same either way.
    #[inline(always)]
    pub(crate) fn schedule_in_lane(&mut self, lane: usize, at: u64, event: Event) -> Handle {
        let bucket = at >> self.bits;
        let ahead = bucket.wrapping_sub(self.cursor);
        if at < self.now || ahead == 0 || ahead >= SLOTS as u64 {
            return self.schedule(at, event);
        }
        if lane >= self.lanes.len() {
            self.add_lanes(lane);
        }
        let the_lane = &mut self.lanes[lane];
        // Behind its marker's bucket, an entry would be found late: while the lane is marked,
        // its times may only grow.
        if the_lane.marked && the_lane.last_at > at {
            return self.schedule(at, event);
        }
        the_lane.last_at = at;
        let first = !the_lane.marked;
        let seq = self.seq;
        self.seq += 1;
        let number = the_lane.dropped + the_lane.entries.len() as u64;
        the_lane.entries.push(Entry {
            at,
            event,
            seq: seq as u32,
            live: true,
        });
        self.in_lanes += 1;
        if first {
            self.mark(lane, bucket);
        }
        Handle(LANE | ((lane as u64) << LANE_SHIFT) | number)
    }

    /// Lanes up to `lane`, none having had an entry yet.
    #[cold]
    #[inline(never)]
    fn add_lanes(&mut self, lane: usize) {
        assert!(lane < 1 << (63 - LANE_SHIFT), "fewer than 2^23 lanes");
        self.lanes.resize_with(lane + 1, Lane::default);
    }

    /// Puts lane `lane`'s marker in the wheel, in `bucket` (after the cursor, within the
    /// wheel): the bucket of its first live entry.
    fn mark(&mut self, lane: usize, bucket: u64) {
        self.lanes[lane].marked = true;
        let slot = bucket as usize % SLOTS;
        let node = Node {
            event: Event::Lane(lane as u32),
            at_low: 0,
            seq: 0,
            next: self.heads[slot],
            waiting: true,
        };
        let index = self.store(node);
        self.heads[slot] = index;
        self.occupied.set(slot);
    }

    /// The bits of a time below its bucket's.
    fn low_mask(&self) -> u64 {
        (1 << self.bits) - 1
    }

    /// The whole sequence number whose low 32 bits are `low`: of an event scheduled fewer than
    /// 2^32 events ago.
    fn full_seq(&self, low: u32) -> u64 {
        self.seq - u64::from((self.seq as u32).wrapping_sub(low))
    }

    /// Takes back `event`, scheduled at `handle`, if it still waits in the wheel: an attempt
    /// answered before its timeout need not have the timeout popped, sorted and dispatched only
    /// to find the attempt gone. A handle whose node has since been freed or reused for another
    /// event holds a different event (or none waiting) and cancels nothing, so a late or
    /// repeated cancel is harmless; an event that is not cancelled fires as before.
    #[inline(always)]
    pub(crate) fn cancel(&mut self, handle: Handle, event: Event) {
        if handle == Handle::NONE {
            return;
        }
        if handle.0 & LANE != 0 {
            let lane = &mut self.lanes[((handle.0 & !LANE) >> LANE_SHIFT) as usize];
            let Some(entry) = lane.entry_mut(handle.0 & ((1 << LANE_SHIFT) - 1)) else {
                return;
            };
            if entry.live && entry.event == event {
                entry.live = false;
                self.in_lanes -= 1;
                // The oldest goes with the dead behind it, so that the lane holds no more than
                // from its oldest live entry on, and stays in cache. Its marker, in an earlier
                // bucket or the same, moves on when it comes up.
                while lane.first().is_some_and(|first| !first.live) {
                    lane.take_first();
                }
            }
            return;
        }
        let node = &mut self.nodes[handle.0 as usize];
        if node.waiting && node.event == event {
            node.waiting = false;
            self.in_wheel -= 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        // A bucket whose events were all cancelled comes out empty: on to the next.
        while self.head == self.current.len() {
            self.advance()?;
        }
        let next = self.current[self.head];
        self.head += 1;
        self.now = next.at;
        Some((self.now, next.event))
    }

    /// Puts `node` in a free node of the pool, the one freed last, and returns its index.
    ///
    /// Inlined into [`schedule`](Self::schedule), with the pool's growth, which only the start
    /// of a run needs, out of line.
    #[inline(always)]
    fn store(&mut self, node: Node) -> u32 {
        let index = if self.free == NIL {
            self.grow()
        } else {
            let index = self.free;
            self.free = self.nodes[index as usize].next;
            index
        };
        self.nodes[index as usize] = node;
        index
    }

    /// Adds a node to the pool, none being free, and returns its index.
    ///
    /// Not given the node: a value passed to a call, even a cold one, lives in memory on the
    /// path every schedule takes, written a field at a time and read back whole, a load that
    /// waits for those stores to land (see [`in_the_past`]).
    #[cold]
    #[inline(never)]
    fn grow(&mut self) -> u32 {
        let index = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&index| index != NIL)
            .expect("fewer than 2^32 - 1 events wait at once");
        self.nodes.push(Node {
            event: Event::UserArrival,
            at_low: 0,
            seq: 0,
            next: NIL,
            waiting: false,
        });
        index
    }

    /// Moves the cursor to the next bucket that holds an event, from the wheel or the far
    /// heap, and sorts that bucket's events into `current`; `None` when none waits.
    fn advance(&mut self) -> Option<()> {
        let base = self.cursor as usize % SLOTS;
        let wheel = self
            .occupied
            .first_from((base + 1) % SLOTS)
            .or_else(|| self.occupied.first_from(0))
            .map(|slot| self.cursor + ((slot + SLOTS - base) % SLOTS) as u64);
        let far = self.far.peek().map(|e| e.at() >> self.bits);
        let next = match (wheel, far) {
            (Some(w), Some(f)) => Some(w.min(f)),
            (w, f) => w.or(f),
        };
        let Some(bucket) = next else {
            // Nothing waits. The cursor may have moved past the present, to buckets whose
            // events were all cancelled: back to the present's, so that an event scheduled
            // after this (at or after the present) is never in a bucket before the cursor.
            self.cursor = self.now >> self.bits;
            return None;
        };
        self.cursor = bucket;
        self.current.clear();
        self.head = 0;
        // The heap's events of the bucket were all scheduled before the wheel's: first, in
        // the order the heap pops them (by time, then scheduling).
        while let Some(top) = self.far.peek_mut() {
            if top.at() >> self.bits != bucket {
                break;
            }
            let scheduled = PeekMut::pop(top);
            self.current.push(Due {
                at: scheduled.at(),
                event: scheduled.event,
            });
        }
        if wheel == Some(bucket) {
            let from_wheel = self.current.len();
            let slot = bucket as usize % SLOTS;
            let base = bucket << self.bits;
            self.seqs.clear();
            let mut index = std::mem::replace(&mut self.heads[slot], NIL);
            while index != NIL {
                let node = &mut self.nodes[index as usize];
                if node.waiting {
                    node.waiting = false;
                    if let Event::Lane(lane) = node.event {
                        self.opened.push(lane);
                    } else {
                        self.current.push(Due {
                            at: base | u64::from(node.at_low),
                            event: node.event,
                        });
                        self.seqs.push(node.seq);
                    }
                }
                let next = node.next;
                node.next = self.free;
                self.free = index;
                index = next;
            }
            self.occupied.clear(slot);
            self.in_wheel -= self.current.len() - from_wheel;
            // A slot's list holds its events latest scheduled first.
            self.current[from_wheel..].reverse();
            if !self.opened.is_empty() {
                self.seqs.reverse();
                self.open_lanes(bucket, from_wheel);
            }
        }
        sort_earliest_first(&mut self.current, bucket << self.bits, &mut self.sorted);
        Some(())
    }

    /// The lanes whose markers came up with `bucket` (in `opened`): their live entries of the
    /// bucket join the wheel's, `current[from_wheel..]` (their sequence numbers in `seqs`), in
    /// the order all were scheduled; each marker moves to its lane's next live entry. Rare: a
    /// marker waits for a live entry, and nearly every entry is cancelled before its time.
    #[cold]
    #[inline(never)]
    fn open_lanes(&mut self, bucket: u64, from_wheel: usize) {
        let mut joining = std::mem::take(&mut self.joining);
        for i in 0..self.opened.len() {
            self.open_lane(self.opened[i] as usize, bucket, &mut joining);
        }
        self.opened.clear();
        if !joining.is_empty() {
            for (&seq, &due) in self.seqs.iter().zip(&self.current[from_wheel..]) {
                joining.push((self.full_seq(seq), due));
            }
            joining.sort_unstable_by_key(|&(seq, _)| seq);
            self.current.truncate(from_wheel);
            self.current.extend(joining.drain(..).map(|(_, due)| due));
        }
        self.joining = joining;
    }

    /// Lane `lane`'s marker came up with `bucket`: its live entries of the bucket go to
    /// `joining` with their sequence numbers, the dead ones before its first live entry after
    /// it are dropped, and the marker moves to that entry's bucket.
    fn open_lane(&mut self, lane: usize, bucket: u64, joining: &mut Vec<(u64, Due)>) {
        let bits = self.bits;
        self.lanes[lane].marked = false;
        loop {
            let Some(&entry) = self.lanes[lane].first() else {
                return;
            };
            let of = entry.at >> bits;
            if entry.live && of > bucket {
                // Within the wheel: it was when scheduled, and the cursor has only moved on.
                self.mark(lane, of);
                return;
            }
            self.lanes[lane].take_first();
            if entry.live {
                debug_assert_eq!(
                    of, bucket,
                    "a marker waits in its first live entry's bucket"
                );
                self.in_lanes -= 1;
                let due = Due {
                    at: entry.at,
                    event: entry.event,
                };
                joining.push((self.full_seq(entry.seq), due));
            }
        }
    }
}

#[cold]
#[inline(never)]
fn in_the_past(at: u64, now: u64) -> ! {
    // Not the event itself: passed by value to a call, it would be built in memory on the
    // path every event takes, a byte and a word at a time, then read back 16 bytes at once
    // into its node, a load that waits for both stores to land.
    panic!("an event scheduled at {at} ns, before the current time {now} ns")
}

/// Sorts a bucket's events (of times `base..base + 2^bits`) earliest first, keeping the order
/// of events of equal times (stable), through `scratch`.
///
/// Why by rank, with no branch on the data: a bucket holds a dozen events in random order, and
/// an insertion sort's inner loop ends at a place no predictor can guess, about one mispredicted
/// branch per event, each costing more than the rank's comparisons. Each event's rank is the
/// number of keys below its own, counted over a fixed array of keys (its time within the bucket
/// and, below it, its place, so that equal times keep their order and no two keys are equal),
/// which the compiler turns into a few vector comparisons; the event is then written at its
/// rank. A bucket of more than [`RANKED_LARGE`] events, rare, goes to the general sort.
fn sort_earliest_first(events: &mut Vec<Due>, base: u64, scratch: &mut Vec<Due>) {
    match events.len() {
        0 | 1 => {}
        n if n <= RANKED_FEW => sort_by_rank::<RANKED_FEW>(events, base, scratch),
        n if n <= RANKED_TINY => sort_by_rank::<RANKED_TINY>(events, base, scratch),
        n if n <= RANKED_SMALL => sort_by_rank::<RANKED_SMALL>(events, base, scratch),
        n if n <= RANKED_LARGE => sort_by_rank::<RANKED_LARGE>(events, base, scratch),
        _ => events.sort_by_key(|e| e.at),
    }
}

/// The bucket sizes sorted by rank, in keys compared per event: a bucket is ranked over the
/// smallest that holds it, as a storm's buckets hold a few events where a steady run's hold a
/// dozen (measured: the tiers of 4 and 8 made the storm 3-4% faster, the steady run no slower).
const RANKED_FEW: usize = 4;
const RANKED_TINY: usize = 8;
const RANKED_SMALL: usize = 16;
const RANKED_LARGE: usize = 32;

/// Bits of a rank key below the time: an event's place among at most [`RANKED_LARGE`].
const PLACE_BITS: u32 = 5;

fn sort_by_rank<const N: usize>(events: &mut Vec<Due>, base: u64, scratch: &mut Vec<Due>) {
    debug_assert!(events.len() <= N && N <= 1 << PLACE_BITS);
    // A time within a bucket is below 2^21 ns (`BITS`), so a key is below 2^26, and the
    // padding, `i32::MAX`, is above every key: counted below none. Signed, for the vector
    // comparison the target has.
    let mut keys = [i32::MAX; N];
    for (i, (key, event)) in keys.iter_mut().zip(events.iter()).enumerate() {
        debug_assert!(event.at - base < 1 << *BITS.end());
        *key = (((event.at - base) as i32) << PLACE_BITS) | i as i32;
    }
    // Every place is written below (the ranks are a permutation of the events), so the
    // scratch is only sized, not filled: a copy per bucket cost a `memcpy` call.
    scratch.truncate(events.len());
    if let Some(&first) = events.first() {
        scratch.resize(events.len(), first);
    }
    for (i, event) in events.iter().enumerate() {
        let key = keys[i];
        let rank = keys.iter().map(|&k| usize::from(k < key)).sum::<usize>();
        scratch[rank] = *event;
    }
    std::mem::swap(events, scratch);
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

    const BUCKET_NANOS: u64 = 1 << BUCKET_BITS;

    /// Buckets of every size the rank sort takes and beyond, with times in a narrow range so
    /// that many are equal: the same order as a stable sort by time.
    #[test]
    fn a_bucket_sorts_by_time_keeping_the_order_of_equal_times() {
        let mut rng = seeded(11);
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..40).map(|_| slab.insert(())).collect();
        let mut scratch = Vec::new();
        for bits in [BUCKET_BITS, *BITS.end()] {
            let base = 7 << bits;
            for len in 0..=40 {
                for spread in [3, 1 << bits] {
                    let mut events: Vec<Due> = keys[..len]
                        .iter()
                        .map(|&key| Due {
                            at: base + rng.random_range(0..spread),
                            event: Event::Retry(key),
                        })
                        .collect();
                    let mut expected: Vec<(u64, Event)> =
                        events.iter().map(|d| (d.at, d.event)).collect();
                    expected.sort_by_key(|&(at, _)| at);
                    sort_earliest_first(&mut events, base, &mut scratch);
                    let got: Vec<(u64, Event)> = events.iter().map(|d| (d.at, d.event)).collect();
                    assert_eq!(got, expected, "{len} events over {spread} ns");
                }
            }
        }
    }

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
        /// Per event, whether it was cancelled: skipped when popped.
        cancelled: Vec<bool>,
        /// Events scheduled, neither popped nor cancelled.
        live: usize,
    }

    impl Reference {
        fn schedule(&mut self, at: u64, key: Key) {
            self.heap.push(Reverse((at, self.keys.len())));
            self.keys.push(key);
            self.cancelled.push(false);
            self.live += 1;
        }

        /// Pops both and checks they agree, and that the agenda counts what waits; the time
        /// popped, if any.
        fn pop_both(&mut self, agenda: &mut Agenda, seed: u64) -> Option<u64> {
            let mut expected = None;
            while let Some(Reverse((at, n))) = self.heap.pop() {
                if !self.cancelled[n] {
                    expected = Some((at, self.keys[n]));
                    self.live -= 1;
                    break;
                }
            }
            let popped = agenda.pop().map(|(at, event)| match event {
                Event::Retry(key) => (at, key),
                other => panic!("the test schedules only retries, popped {other:?}"),
            });
            assert_eq!(popped, expected, "seed {seed}");
            assert_eq!(agenda.len(), self.live, "seed {seed}");
            popped.map(|(at, _)| at)
        }
    }

    /// Schedules and pops at random, in the engine's pattern (every event at or after the last
    /// popped), and checks every pop against the reference. Delays mix the `fixed` ones (many
    /// events a fixed delay apart, half of them through lanes), zero (many events at one
    /// nanosecond, in the bucket being popped), a few nanoseconds, random milliseconds of work,
    /// a year's `NO_TIMEOUT` (beyond the wheel) and a saturated `u64::MAX`.
    fn agrees_with_the_reference(seed: u64, steps: usize, fixed: &[u64]) {
        agrees_on(Agenda::new(), seed, steps, fixed);
    }

    /// [`agrees_with_the_reference`] on `agenda`, of any bucket width.
    fn agrees_on(mut agenda: Agenda, seed: u64, steps: usize, fixed: &[u64]) {
        let mut rng = seeded(seed);
        let mut reference = Reference::default();
        let mut keys = Slab::new();
        let mut now = 0u64;
        let year = nanos(NO_TIMEOUT);
        let mut handles: Vec<(Handle, usize, Key)> = Vec::new();
        for _ in 0..steps {
            if rng.random_bool(0.45) {
                now = reference.pop_both(&mut agenda, seed).unwrap_or(now);
                continue;
            }
            if !handles.is_empty() && rng.random_bool(0.1) {
                // Cancel an event scheduled earlier: one still in the wheel goes (the agenda
                // then counts one fewer), any other stays and fires.
                let (handle, n, key) = handles[rng.random_range(0..handles.len())];
                let before = agenda.len();
                agenda.cancel(handle, Event::Retry(key));
                if agenda.len() + 1 == before {
                    assert!(!reference.cancelled[n], "seed {seed}: cancelled twice");
                    reference.cancelled[n] = true;
                    reference.live -= 1;
                } else {
                    assert_eq!(agenda.len(), before, "seed {seed}");
                }
                continue;
            }
            // A fixed delay goes to its own lane half the time, as a call's timeouts do: its
            // times grow, except a shorter one (a deadline's) now and then, which the lane
            // refuses.
            let mut lane = None;
            let delay = match rng.random_range(0..12) {
                0..=4 => {
                    let which = rng.random_range(0..fixed.len());
                    if rng.random_bool(0.5) {
                        lane = Some(which);
                    }
                    fixed[which]
                }
                5 => 0,
                6 => rng.random_range(1..4),
                7..=9 => rng.random_range(0..2_000_000_000),
                10 => year + rng.random_range(0..3),
                _ => u64::MAX,
            };
            let delay = match lane {
                Some(_) if rng.random_bool(0.05) => delay / 2,
                _ => delay,
            };
            let at = now.saturating_add(delay);
            let key = keys.insert(());
            let handle = match lane {
                Some(lane) => agenda.schedule_in_lane(lane, at, Event::Retry(key)),
                None => agenda.schedule(at, Event::Retry(key)),
            };
            handles.push((handle, reference.keys.len(), key));
            reference.schedule(at, key);
            assert_eq!(agenda.len(), reference.live, "seed {seed}");
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
    fn every_bucket_width_a_rate_may_choose_pops_in_order() {
        for bits in BITS {
            for seed in 0..20 {
                agrees_on(Agenda::with_bits(bits), seed, 5_000, &FIXED);
            }
        }
    }

    #[test]
    fn lane_entries_pop_in_order_among_the_wheel_s_and_cancelled_ones_never() {
        let mut agenda = Agenda::new();
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..5).map(|_| slab.insert(())).collect();
        let at = 5 * BUCKET_NANOS + 7;
        agenda.schedule(at, Event::Retry(keys[0]));
        let lane = agenda.schedule_in_lane(0, at, Event::Retry(keys[1]));
        agenda.schedule(at, Event::Retry(keys[2]));
        let cancelled = agenda.schedule_in_lane(0, at + 1, Event::Retry(keys[3]));
        agenda.schedule_in_lane(0, at + 3 * BUCKET_NANOS, Event::Retry(keys[4]));
        assert_ne!(
            lane,
            Handle::NONE,
            "a timeout in the wheel's reach waits in its lane"
        );
        agenda.cancel(cancelled, Event::Retry(keys[3]));
        assert_eq!(agenda.len(), 4);
        let popped: Vec<(u64, Event)> = std::iter::from_fn(|| agenda.pop()).collect();
        let expected = [(at, 0), (at, 1), (at, 2), (at + 3 * BUCKET_NANOS, 4)];
        assert_eq!(
            popped,
            expected.map(|(at, k)| (at, Event::Retry(keys[k]))).to_vec()
        );
        assert_eq!(agenda.len(), 0);
    }

    #[test]
    fn a_lane_emptied_by_cancelling_takes_no_timeout_before_its_marker() {
        let mut agenda = Agenda::new();
        let mut slab = Slab::new();
        let (late, early) = (slab.insert(()), slab.insert(()));
        let far = 40 * BUCKET_NANOS;
        let handle = agenda.schedule_in_lane(0, far, Event::Retry(late));
        agenda.cancel(handle, Event::Retry(late));
        // The lane is empty, its marker waits at `far`: an earlier timeout goes to the wheel.
        agenda.schedule_in_lane(0, 3 * BUCKET_NANOS, Event::Retry(early));
        agenda.schedule_in_lane(0, far + 1, Event::Retry(late));
        assert_eq!(agenda.pop(), Some((3 * BUCKET_NANOS, Event::Retry(early))));
        assert_eq!(agenda.pop(), Some((far + 1, Event::Retry(late))));
        assert_eq!(agenda.pop(), None);
        // One marker at most: a lane emptied and filled again a thousand times holds none
        // of the old ones.
        for round in 0..1_000u64 {
            let at = far + 10 * BUCKET_NANOS + round;
            let handle = agenda.schedule_in_lane(0, at, Event::Retry(late));
            assert_ne!(handle, Handle::NONE, "in the lane");
            agenda.cancel(handle, Event::Retry(late));
        }
        assert!(agenda.nodes.len() < 4, "{} nodes", agenda.nodes.len());
        assert_eq!((agenda.len(), agenda.pop()), (0, None));
    }

    #[test]
    fn an_event_and_a_node_stay_small() {
        // A node is what every schedule writes and every pop reads.
        assert_eq!(std::mem::size_of::<Event>(), 16);
        assert_eq!(std::mem::size_of::<Node>(), 32);
        assert_eq!(std::mem::size_of::<Due>(), 24);
    }

    #[test]
    fn a_busier_run_gets_narrower_buckets_within_the_range() {
        let bits = |rate: f64| Agenda::for_rate(rate).bits;
        // The benchmark's storm, some 10,000 events a second: 1 ms buckets.
        assert_eq!(bits(9_600.0), 20);
        assert_eq!(bits(80_000.0), *BITS.start());
        assert_eq!(bits(1e12), *BITS.start());
        assert_eq!(bits(10.0), *BITS.end());
        assert_eq!(bits(0.0), *BITS.end());
        assert_eq!(bits(f64::NAN), *BITS.start());
    }

    #[test]
    fn long_runs_with_thousands_waiting_pop_in_order() {
        agrees_with_the_reference(2024, 200_000, &FIXED);
    }

    #[test]
    fn delays_at_the_edges_of_buckets_and_of_the_wheel_pop_in_order() {
        let span = BUCKET_NANOS * SLOTS as u64;
        let edges: Vec<u64> = [BUCKET_NANOS, span, 2 * span, 3 * span / 2]
            .iter()
            .flat_map(|&d| [d - 1, d, d + 1])
            .collect();
        agrees_with_the_reference(7, 200_000, &edges);
        let many: Vec<u64> = (1..2_000).map(|n| n * 1_000_000).collect();
        agrees_with_the_reference(8, 200_000, &many);
    }

    #[test]
    fn a_crowded_bucket_pops_in_order() {
        for (seed, crowd) in [(1, 5), (2, 16), (3, 17), (4, 300)] {
            let mut rng = seeded(seed);
            let mut agenda = Agenda::new();
            let mut reference = Reference::default();
            let mut keys = Slab::new();
            for _ in 0..crowd {
                let at = BUCKET_NANOS + rng.random_range(0..BUCKET_NANOS / 1_000) * 1_000;
                let key = keys.insert(());
                agenda.schedule(at, Event::Retry(key));
                reference.schedule(at, key);
            }
            while reference.pop_both(&mut agenda, seed).is_some() {}
        }
    }

    #[test]
    fn an_event_beyond_the_wheel_and_one_scheduled_later_at_the_same_time_keep_their_order() {
        let mut agenda = Agenda::new();
        let mut slab = Slab::new();
        let (first, second) = (slab.insert(()), slab.insert(()));
        let at = 3 * BUCKET_NANOS * SLOTS as u64 + 5;
        agenda.schedule(at, Event::Retry(first));
        assert_eq!(agenda.far.len(), 1, "beyond the wheel");
        // Time passes until the same instant is within the wheel.
        agenda.schedule(at - 10, Event::UserArrival);
        assert!(matches!(agenda.pop(), Some((t, Event::UserArrival)) if t == at - 10));
        agenda.schedule(at, Event::Retry(second));
        assert!(matches!(agenda.pop(), Some((t, Event::Retry(k))) if t == at && k == first));
        assert!(matches!(agenda.pop(), Some((t, Event::Retry(k))) if t == at && k == second));
        assert!(agenda.pop().is_none());
        assert_eq!(agenda.len(), 0);
    }
}
