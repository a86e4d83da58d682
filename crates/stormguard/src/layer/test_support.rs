//! Mock services and a recording observer for the layers' tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};

use crate::metrics::{Event, Observer};

/// Records every event, for assertions.
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub(crate) fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| f(e)).count()
    }
}

impl Observer for Recorder {
    fn observe(&self, _target: &str, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// Counts calls, shared between a mock service and the test.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<AtomicU32>);

impl Calls {
    /// Counts one call and returns its number (0 for the first).
    pub(crate) fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A client's body: each chunk arrives `every` after the one before it.
pub(crate) struct Trickle {
    chunks: VecDeque<Bytes>,
    every: Duration,
    next: Option<Pin<Box<tokio::time::Sleep>>>,
}

pub(crate) fn trickle(chunks: &[&'static str], every: Duration) -> Trickle {
    Trickle {
        chunks: chunks
            .iter()
            .map(|c| Bytes::from_static(c.as_bytes()))
            .collect(),
        every,
        next: None,
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        let every = self.every;
        let sleep = self
            .next
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        std::task::ready!(std::future::Future::poll(sleep.as_mut(), cx));
        self.next = None;
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
}
