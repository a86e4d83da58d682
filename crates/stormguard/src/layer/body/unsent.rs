//! [`Unsent`]: a body too large to buffer, which may still go to another instance as long as no
//! attempt has read a byte of it.
//!
//! ## Why
//! A body above the buffer limit is streamed once and never replayed: once any of it went out,
//! the server may have acted on it. But a refused connection sends nothing, and "a refused
//! connection always may be" retried. So the body waits in a slot; the first poll of an
//! attempt's body takes it out for good, and until then the retry loop can give it to the next
//! attempt instead. What decides is whether the body was touched, not what the error says: a
//! body polled even once is never sent again.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{BoxError, Inner, ReplayBody, Streaming};

/// The slot a streamed-once body waits in, and which attempt may take it.
#[derive(Debug)]
struct Slot<B> {
    /// The attempt allowed to take the body: the latest one it was handed to.
    owner: u32,
    body: Option<Streaming<B>>,
}

type Shared<B> = Arc<Mutex<Slot<B>>>;

fn lock<B>(slot: &Shared<B>) -> MutexGuard<'_, Slot<B>> {
    // Nothing panics while the lock is held, and a slot is consistent at every step anyway.
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// One attempt's right to take the body out of its slot, at its first poll.
#[derive(Debug)]
pub(super) struct Claim<B> {
    slot: Shared<B>,
    attempt: u32,
}

impl<B> Claim<B> {
    /// Takes the body out, for this attempt to stream; an error if another attempt was handed
    /// it since (the body is theirs) or it is gone.
    pub(super) fn take(&self) -> Result<Streaming<B>, BoxError> {
        let mut slot = lock(&self.slot);
        match slot.body.take() {
            Some(body) if slot.owner == self.attempt => Ok(body),
            taken => {
                slot.body = taken;
                Err("the request body was handed to another attempt".into())
            }
        }
    }

    /// Looks at the body without taking it (its size, whether it is empty); `None` when this
    /// claim can no longer take it.
    pub(super) fn peek<T>(&self, look: impl FnOnce(&Streaming<B>) -> T) -> Option<T> {
        let slot = lock(&self.slot);
        slot.body
            .as_ref()
            .filter(|_| slot.owner == self.attempt)
            .map(look)
    }
}

/// The retry loop's hold on a streamed-once body: it can hand the body to another attempt while
/// no attempt has polled it.
pub(crate) struct Unsent<B> {
    slot: Shared<B>,
}

impl<B> Unsent<B> {
    /// Puts a body that streams once into a slot: returns the body for the first attempt, and
    /// the hold. A replayable body needs no slot and comes back as it is.
    pub(crate) fn hold(body: ReplayBody<B>) -> (ReplayBody<B>, Option<Unsent<B>>) {
        let streaming = match body.inner {
            Inner::Once(streaming) => streaming,
            inner => return (ReplayBody { inner }, None),
        };
        let slot = Arc::new(Mutex::new(Slot {
            owner: 0,
            body: Some(streaming),
        }));
        let first = ReplayBody {
            inner: Inner::Unpolled(Claim {
                slot: slot.clone(),
                attempt: 0,
            }),
        };
        (first, Some(Unsent { slot }))
    }

    /// The body for the next attempt, if no attempt has polled it: from now on only that attempt
    /// can take it, so an earlier attempt's request, wherever it lingers, can no longer send it.
    pub(crate) fn hand_on(&self) -> Option<ReplayBody<B>> {
        let mut slot = lock(&self.slot);
        slot.body.as_ref()?;
        slot.owner += 1;
        Some(ReplayBody {
            inner: Inner::Unpolled(Claim {
                slot: self.slot.clone(),
                attempt: slot.owner,
            }),
        })
    }
}
