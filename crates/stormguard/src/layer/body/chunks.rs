//! [`Chunks`]: the data frames a recording keeps, the first of them inline.

use std::collections::VecDeque;

use bytes::Bytes;

/// A queue of data frames whose first frame is held inline.
///
/// Why: nearly every request body that is recorded at all is small and comes as one frame, and
/// a `VecDeque` allocated its buffer for it, on every such request. Only a second frame costs
/// an allocation here. Invariant: `first` is empty only when `more` is too.
#[derive(Debug, Default)]
pub(super) struct Chunks {
    first: Option<Bytes>,
    more: VecDeque<Bytes>,
}

impl Chunks {
    pub(super) fn push_back(&mut self, chunk: Bytes) {
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.more.push_back(chunk);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.first.take();
        if front.is_some() {
            self.first = self.more.pop_front();
        }
        front
    }

    /// The frame at `index` from the front.
    pub(super) fn get(&self, index: usize) -> Option<&Bytes> {
        match index {
            0 => self.first.as_ref(),
            i => self.more.get(i - 1),
        }
    }

    /// How many frames are kept: for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// The frames from `index` on, in order.
    pub(super) fn iter_from(&self, index: usize) -> impl Iterator<Item = &Bytes> {
        let first = self.first.iter().skip(index);
        first.chain(
            self.more
                .range(index.saturating_sub(1).min(self.more.len())..),
        )
    }

    /// A copy of every frame (the bytes shared, not copied), as a replayed body holds them.
    pub(super) fn to_deque(&self) -> VecDeque<Bytes> {
        self.first.iter().chain(&self.more).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn frames_come_out_in_the_order_they_went_in_whatever_the_mix() {
        let mut chunks = Chunks::default();
        let mut model = VecDeque::new();
        // Pushes and pops interleaved, so that the inline slot empties and refills.
        let ops = [1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0];
        for (n, push) in ops.into_iter().enumerate() {
            if push == 1 {
                chunks.push_back(bytes(n as u8));
                model.push_back(bytes(n as u8));
            } else {
                assert_eq!(chunks.pop_front(), model.pop_front());
            }
            assert_eq!(chunks.len(), model.len());
            assert_eq!(chunks.to_deque(), model);
            for i in 0..=model.len() {
                assert_eq!(chunks.get(i), model.get(i));
                let from: Vec<_> = chunks.iter_from(i).collect();
                assert_eq!(from, model.range(i..).collect::<Vec<_>>());
            }
        }
    }
}
