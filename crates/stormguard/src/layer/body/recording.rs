//! [`Recording`]: the client's body streamed to the first attempt as it arrives, with a copy
//! kept (up to the replay limit) for another attempt.
//!
//! ## Why record rather than read first
//! Reading the whole body before the first attempt held every request with a body for as long
//! as its client took to send it, even one that could never be sent again; and a gRPC stream
//! whose client waits for a reply before it sends more could not be read to its end at all, so
//! whether it could be retried came down to a timer. Recorded, the first attempt streams the
//! body as it arrives, and each frame read is kept for a later attempt, which replays the copy
//! and then goes on from the client's body where the earlier attempt left it (the design of
//! linkerd2-proxy's `ReplayBody`).
//!
//! ## What is guaranteed
//! - No attempt waits for the body: a frame goes to the attempt that reads it at once.
//! - One attempt reads the client's body: the latest one [`Recording::hand_on`] made. An earlier
//!   attempt whose request lingers (a connection still writing it) may replay the copy, but
//!   gets an error, never an empty or cut-short body, where it would need more.
//! - The copy holds at most the limit (and the one frame that passed it). Past the limit the
//!   copy is dropped and no other attempt can be made; the attempt reading goes on to the end.
//! - A body not yet polled can be handed to another attempt whatever its size, but only after
//!   an attempt that sent nothing (refused, no connection in time): nothing of it reached a
//!   server. What decides is whether the body was touched, not what the error says.
//! - A hedge is made only from a complete copy, which it then holds on its own
//!   ([`Recording::replay_complete`]), so it never waits on the original's reading nor cuts the
//!   original's body short. [`Recording::poll_complete`] reads ahead of the original into the
//!   copy (within the limit) so that a server slow to read does not hold the hedge back.
//! - Dropping the [`Recording`] says that no attempt will follow: the copy is freed as soon as
//!   the attempt reading is past it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::chunks::Chunks;
use super::{BoxError, Inner, ReplayBody};

/// What every attempt of one request shares: the client's body and the copy of what was read.
#[derive(Debug)]
struct State<B> {
    /// The data frames read from `base` on: all of them while the copy is kept; once it is
    /// dropped, those read ahead that the owner has yet to send.
    chunks: Chunks,
    /// The number (from the body's start) of the first frame in `chunks`.
    base: usize,
    /// Data frames read from the client's body so far.
    read_frames: usize,
    /// Bytes read from the client's body so far.
    read_bytes: usize,
    limit: usize,
    /// No other attempt can be made: the body passed the limit, failed, or no attempt follows.
    dropped: bool,
    /// The trailers the client's body ended with.
    trailers: Option<HeaderMap>,
    /// The client's body, until it ends or fails.
    rest: Option<Pin<Box<B>>>,
    /// Why the client's body failed, for the attempts that did not read the error themselves.
    failed: Option<String>,
    /// The error itself, when the read-ahead read it: the owner's, which sends it on as it is
    /// (a layer below may tell an error by its type, as the proxy tells a body too large).
    failed_error: Option<BoxError>,
    /// Whether the client's body was ever polled.
    touched: bool,
    /// The attempt that may read the client's body.
    owner: u32,
    /// The next frame the owner sends.
    owner_next: usize,
    /// The owner, waiting for the client's body after the read-ahead took its place there.
    owner_waker: Option<Waker>,
    /// No attempt can follow (the retry or hedge loop ended).
    closed: bool,
    /// The read-ahead, waiting for the client's body.
    ahead_waker: Option<Waker>,
}

type Shared<B> = Arc<Mutex<State<B>>>;

fn lock<B>(shared: &Shared<B>) -> MutexGuard<'_, State<B>> {
    // Nothing panics while the lock is held, and the state is consistent at every step anyway.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

impl<B> State<B> {
    fn ended(&self) -> bool {
        self.rest.is_none()
    }

    /// No other attempt can be made: frames the owner has sent go; those it has not stay.
    fn drop_copy(&mut self) {
        self.dropped = true;
        while self.base < self.owner_next && self.chunks.pop_front().is_some() {
            self.base += 1;
        }
    }

    /// Whether another attempt may have the body: its copy is kept, or nothing of it was read
    /// and the earlier attempt sent nothing (`not_sent`).
    fn can_hand_on(&self, not_sent: bool) -> bool {
        !self.dropped || (not_sent && !self.touched)
    }

    /// Once no attempt can follow, the copy goes as the owner gets past it.
    fn release_if_unused(&mut self) {
        if self.closed && !self.dropped {
            self.drop_copy();
        }
    }
}

impl<B> State<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Polls the client's body, keeping what it gives; the frame is returned to the reader.
    /// `owner` says who reads: the owner, which sends the frame itself, or the read-ahead,
    /// which leaves it in the copy for the owner.
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        owner: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.touched = true;
        let rest = self.rest.as_mut().expect("read only before the end");
        let polled = rest.as_mut().poll_frame(cx);
        let at_end = rest.is_end_stream();
        let frame = match polled {
            Poll::Pending => {
                let waiting = if owner {
                    &mut self.owner_waker
                } else {
                    &mut self.ahead_waker
                };
                *waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                self.end();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(error))) => {
                let error: BoxError = error.into();
                // For every other attempt, which must not end its body as if it were whole.
                self.failed = Some(error.to_string());
                self.rest = None;
                self.drop_copy();
                self.wake_other(owner);
                if owner {
                    return Poll::Ready(Some(Err(error)));
                }
                let told = error.to_string().into();
                self.failed_error = Some(error);
                return Poll::Ready(Some(Err(told)));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            self.read_frames += 1;
            self.read_bytes = self.read_bytes.saturating_add(data.len());
            if owner {
                self.owner_next = self.read_frames;
                if !self.dropped && self.read_bytes > self.limit {
                    self.drop_copy();
                }
                if self.dropped {
                    // Nothing kept: the owner is past everything read.
                    self.base = self.read_frames;
                } else {
                    self.chunks.push_back(data.clone());
                }
            } else {
                // Kept for the owner even past the limit: it has yet to send it.
                self.chunks.push_back(data.clone());
                if self.read_bytes > self.limit {
                    self.drop_copy();
                }
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            if !self.dropped {
                match &mut self.trailers {
                    Some(copied) => copied.extend(trailers.clone()),
                    None => self.trailers = Some(trailers.clone()),
                }
            }
        }
        if at_end || frame.is_trailers() {
            // Trailers end a body.
            self.end();
        } else {
            self.wake_other(owner);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    /// The client's body ended: neither reader polls it again.
    fn end(&mut self) {
        self.rest = None;
        wake(&mut self.owner_waker);
        wake(&mut self.ahead_waker);
    }

    /// The other reader may be waiting on a body that wakes only the last to poll it.
    fn wake_other(&mut self, owner: bool) {
        wake(if owner {
            &mut self.ahead_waker
        } else {
            &mut self.owner_waker
        });
    }
}

/// The retry or hedge layer's hold on a recorded body: it makes the bodies of later attempts.
/// Dropped, it tells the recording that no attempt will follow, so that the copy is freed as
/// soon as the attempt reading is past it (a long gRPC stream does not keep its first 64 KiB
/// to its end).
#[derive(Debug)]
pub(crate) struct Recording<B> {
    shared: Shared<B>,
}

/// One attempt's view of a recorded body: where it is in the copy.
#[derive(Debug)]
pub(super) struct Replica<B> {
    shared: Shared<B>,
    id: u32,
    /// The next data frame this attempt sends, counted from the body's start.
    next: usize,
    /// Whether this attempt is past the end: trailers sent, or the end reached without them.
    done: bool,
}

impl<B: Body> Recording<B> {
    /// Starts recording `body`, keeping a copy of up to `limit` bytes: returns the first
    /// attempt's body, which streams as the client sends, and the hold that makes later ones.
    /// A body whose size hint says it will pass the limit is not copied at all.
    pub(crate) fn start(body: B, limit: usize) -> (ReplayBody<B>, Recording<B>) {
        let over = body.size_hint().lower() > limit as u64;
        let ended = body.is_end_stream();
        let state = State {
            chunks: Chunks::default(),
            base: 0,
            read_frames: 0,
            read_bytes: 0,
            limit,
            dropped: over,
            trailers: None,
            rest: (!ended).then(|| Box::pin(body)),
            failed: None,
            failed_error: None,
            touched: false,
            owner: 0,
            owner_next: 0,
            owner_waker: None,
            closed: false,
            ahead_waker: None,
        };
        let shared = Arc::new(Mutex::new(state));
        let first = ReplayBody {
            inner: Inner::Recorded(Replica {
                shared: shared.clone(),
                id: 0,
                next: 0,
                done: false,
            }),
        };
        (first, Recording { shared })
    }
}

impl<B> Recording<B> {
    /// Whether another attempt could be given the body now (see [`Recording::hand_on`]),
    /// without handing it on: the policy decides first, and the earlier attempt's request
    /// keeps its body unless a retry is sent.
    pub(crate) fn can_hand_on(&self, not_sent: bool) -> bool {
        lock(&self.shared).can_hand_on(not_sent)
    }

    /// The body of the next attempt: the copy replayed, then the client's body from where the
    /// earlier attempt left it. `None` when the copy was dropped, unless the body was never
    /// polled and the earlier attempt sent nothing (`not_sent`). From now on only the new
    /// attempt reads the client's body.
    pub(crate) fn hand_on(&self, not_sent: bool) -> Option<ReplayBody<B>> {
        let mut state = lock(&self.shared);
        if !state.can_hand_on(not_sent) {
            return None;
        }
        state.owner = state.owner.checked_add(1)?;
        state.owner_next = 0;
        // The earlier owner's wait is over: woken, it finds the body handed on.
        wake(&mut state.owner_waker);
        Some(ReplayBody {
            inner: Inner::Recorded(Replica {
                shared: self.shared.clone(),
                id: state.owner,
                next: 0,
                done: false,
            }),
        })
    }

    /// A replay of the whole body, for a hedge, holding its own copy (the chunks are shared,
    /// not copied): `None` unless the client's body has ended within the limit.
    pub(crate) fn replay_complete(&self) -> Option<ReplayBody<B>> {
        let state = lock(&self.shared);
        (state.ended() && !state.dropped && state.failed.is_none()).then(|| ReplayBody {
            inner: Inner::Replay {
                chunks: state.chunks.to_deque(),
                trailers: state.trailers.clone().map(Box::new),
            },
        })
    }
}

impl<B> Recording<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Reads the client's body ahead of the attempt into the copy, as far as it comes and
    /// within the limit: ready with `true` once it ended within the limit, with `false` once it
    /// passed the limit or failed. The attempt then sends what was read ahead from the copy.
    pub(crate) fn poll_complete(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = lock(&self.shared);
        loop {
            if state.dropped || state.failed.is_some() {
                return Poll::Ready(false);
            }
            if state.ended() {
                return Poll::Ready(true);
            }
            if state.read(cx, false).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<B> Drop for Recording<B> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.closed = true;
        state.release_if_unused();
        // The read-ahead is over: an owner waiting on it polls the client's body itself.
        state.ahead_waker = None;
        wake(&mut state.owner_waker);
    }
}

impl<B> Replica<B> {
    /// Whether a later attempt could still send this body again.
    pub(super) fn is_replayable(&self) -> bool {
        !lock(&self.shared).dropped
    }
}

impl<B> Replica<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut guard = lock(&self.shared);
        let state = &mut *guard;
        let owner = self.id == state.owner;
        if self.next < state.read_frames {
            // Behind the client's body: from the copy, if this attempt may still have it.
            let kept = (owner || !state.dropped)
                .then(|| self.next.checked_sub(state.base))
                .flatten()
                .and_then(|i| state.chunks.get(i));
            let Some(chunk) = kept else {
                return Poll::Ready(Some(Err(
                    "the request body passed the replay limit; it cannot be sent again".into(),
                )));
            };
            let chunk = chunk.clone();
            self.next += 1;
            if owner {
                state.owner_next = self.next;
                if state.dropped {
                    // No one else can use it.
                    state.chunks.pop_front();
                    state.base += 1;
                }
                state.release_if_unused();
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.ended() {
            if std::mem::replace(&mut self.done, true) {
                return Poll::Ready(None);
            }
            if let Some(error) = state.failed_error.take().filter(|_| owner) {
                return Poll::Ready(Some(Err(error)));
            }
            if let Some(failed) = &state.failed {
                return Poll::Ready(Some(Err(failed.clone().into())));
            }
            return Poll::Ready(state.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        if !owner {
            return Poll::Ready(Some(Err(
                "the request body was handed to another attempt".into()
            )));
        }
        let polled = state.read(cx, true);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => self.next = state.read_frames,
            // Read from the client: the end, the trailers or an error is this attempt's last.
            Poll::Ready(_) => self.done = true,
            Poll::Pending => {}
        }
        if self.done {
            self.next = state.read_frames;
        }
        polled
    }

    pub(super) fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let mut state = lock(&self.shared);
        if self.next < state.read_frames {
            return false;
        }
        if !state.ended() {
            if self.id != state.owner {
                // Another attempt's body now: not ended, so that the poll reports the error
                // rather than the client sending an empty body.
                return false;
            }
            if !state.rest.as_ref().is_some_and(|rest| rest.is_end_stream()) {
                return false;
            }
            state.end();
        }
        state.trailers.is_none() && state.failed.is_none()
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let state = lock(&self.shared);
        let owner = self.id == state.owner;
        if self.next < state.base || (state.dropped && !owner) {
            return SizeHint::default();
        }
        let copied: u64 = state
            .chunks
            .iter_from(self.next - state.base)
            .map(|b| b.len() as u64)
            .sum();
        let rest = match &state.rest {
            Some(rest) if owner => rest.size_hint(),
            Some(_) => SizeHint::default(),
            // Trailers follow the data: a hint of an exact length would have the body framed
            // by its length (`Content-Length`), which cannot carry them.
            None if state.trailers.is_some() => SizeHint::new(),
            None => SizeHint::with_exact(0),
        };
        // A fresh hint: raising the rest's lower bound first could put it above the rest's
        // upper bound, which http-body asserts against.
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(copied));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(copied));
        }
        hint
    }
}

impl<B> Drop for Replica<B> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        if self.id == state.owner {
            // The owner's attempt is over. The read-ahead may be waiting on a body that would
            // have woken the owner only: woken, it polls the body itself.
            state.owner_waker = None;
            wake(&mut state.ahead_waker);
        }
    }
}

#[cfg(test)]
impl<B> Recording<B> {
    /// Counts the chunks the copy holds, even after the hold is dropped: for tests.
    pub(super) fn copy_counter(&self) -> impl Fn() -> usize {
        let shared = self.shared.clone();
        move || lock(&shared).chunks.len()
    }
}
