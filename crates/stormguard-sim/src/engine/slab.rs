//! Storage for the requests, attempts and calls alive in a run, reused as they finish.
//!
//! Events name what they are about by [`Key`]; an event may fire after its subject is gone (a
//! timeout after the response came), so a key carries a generation and a stale key finds nothing
//! instead of whatever took the slot next.

/// Names one stored value; stale once the value is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: u32,
    /// Always odd: the generation of an occupied slot (see [`Slab`]).
    generation: u32,
}

struct Entry<T> {
    /// Odd while the slot holds a value, even while it is free: a key, whose generation is
    /// odd, matches only the value it was made for, and a lookup is one comparison.
    generation: u32,
    /// The value, or the last one removed (kept until the slot is reused, never read).
    value: T,
}

/// A generational slab: values live in a `Vec`, freed slots are reused, so a long run holds only
/// what is alive at once.
///
/// A removed value stays in its slot until the slot is reused, rather than an `Option` being
/// emptied: a lookup then checks the generation alone, and the engine does several per event.
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
}

impl Key {
    /// The slot the value lives in: a place in storage kept beside the slab (the jobs beside
    /// the attempts they serve), which lives no longer than the value, needs no key of its own.
    #[inline]
    pub(crate) fn slot(self) -> usize {
        self.index as usize
    }

    /// A key that names nothing: its generation, even, matches no stored value.
    pub(crate) const NONE: Key = Key {
        index: u32::MAX,
        generation: 0,
    };
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The key the next [`insert`](Self::insert) returns, so that events naming a value can be
    /// scheduled before it is stored with their handles.
    #[inline]
    pub(crate) fn next_key(&self) -> Key {
        match self.free.last() {
            Some(&index) => Key {
                index,
                generation: self.entries[index as usize].generation.wrapping_add(1),
            },
            None => Key {
                index: u32::try_from(self.entries.len()).expect("fewer than 2^32 live values"),
                generation: 1,
            },
        }
    }

    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> Key {
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            entry.generation = entry.generation.wrapping_add(1);
            entry.value = value;
            return Key {
                index,
                generation: entry.generation,
            };
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 live values");
        self.entries.push(Entry {
            generation: 1,
            value,
        });
        Key {
            index,
            generation: 1,
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation).then_some(&entry.value)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        (entry.generation == key.generation).then_some(&mut entry.value)
    }

    /// Stores a value made in place: `reuse` turns the value a free slot still holds (removed
    /// earlier) into the new one, else `fresh` makes it. For a large value whose old one holds
    /// what the new one can keep (a buffer, fields the new one sets later anyway), rewriting
    /// the few fields that differ costs less than moving a whole value in.
    #[inline]
    pub(crate) fn insert_with(
        &mut self,
        reuse: impl FnOnce(&mut T),
        fresh: impl FnOnce() -> T,
    ) -> Key {
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            entry.generation = entry.generation.wrapping_add(1);
            reuse(&mut entry.value);
            return Key {
                index,
                generation: entry.generation,
            };
        }
        self.insert(fresh())
    }

    /// Frees the value's slot and gives the value, left there until the slot is reused; `None`
    /// when the key is stale.
    #[inline]
    pub(crate) fn remove(&mut self, key: Key) -> Option<&mut T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(key.index);
        Some(&mut entry.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_after_its_slot_is_reused() {
        let mut slab = Slab::new();
        let a = slab.insert(1);
        assert_eq!(slab.remove(a).copied(), Some(1));
        assert_eq!(slab.get(a), None);
        let next = slab.next_key();
        let b = slab.insert(2);
        assert_eq!(b, next);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&2));
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.next_key(), slab.insert(3));
    }

    #[test]
    fn insert_with_reuses_a_free_slot_s_value_or_makes_a_fresh_one() {
        let mut slab = Slab::new();
        let a = slab.insert(vec![1, 2]);
        slab.remove(a).expect("live").clear();
        // The freed slot's buffer is handed back to be reused.
        let b = slab.insert_with(|v| v.push(3), || unreachable!("a slot is free"));
        assert_eq!(slab.get(b), Some(&vec![3]));
        assert_eq!(slab.get(a), None);
        let c = slab.insert_with(|_| unreachable!("no slot is free"), || vec![4]);
        assert_eq!(slab.get(c), Some(&vec![4]));
    }
}
