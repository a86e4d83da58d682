//! The outlier detector a [`Balance`](super::Balance) and its clones share, kept off the path of
//! a healthy request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::instance::{Outcome, OutlierDetector};
use crate::layer::clock;
use crate::metrics::{Event, Observer};

/// One balancer's detector, its metrics, and a lock-free summary of it.
///
/// Nearly every outcome is a success at an instance with nothing against it, which changes
/// nothing, and nearly every choice is made with no instance suspect, when none can be ejected.
/// Both are read from atomics, so a healthy request takes no lock and reads no clock.
pub(super) struct Health {
    detector: Mutex<OutlierDetector>,
    /// `detector.is_suspect(i)`, written under the lock.
    suspect: Box<[AtomicBool]>,
    /// How many are suspect, written under the lock.
    suspects: AtomicUsize,
    observer: Arc<dyn Observer>,
    target: Arc<str>,
    /// Each instance's name (its address), for the log line of an ejection.
    names: Arc<[Arc<str>]>,
}

impl Health {
    pub(super) fn new(
        detector: OutlierDetector,
        names: Arc<[Arc<str>]>,
        observer: Arc<dyn Observer>,
        target: Arc<str>,
    ) -> Self {
        let suspect: Box<[AtomicBool]> = (0..detector.len())
            .map(|i| AtomicBool::new(detector.is_suspect(i)))
            .collect();
        let suspects = suspect.iter().filter(|s| s.load(Ordering::Relaxed)).count();
        Health {
            detector: Mutex::new(detector),
            suspect,
            suspects: AtomicUsize::new(suspects),
            observer,
            target,
            names,
        }
    }

    /// The detector as it is now, to carry into a changed set of instances.
    pub(super) fn detector(&self) -> OutlierDetector {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, OutlierDetector> {
        // The detector's state is a set of counters, valid after any panic.
        self.detector.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which instances are ejected now, or `None` when no instance can be.
    pub(super) fn ejected(&self) -> Option<Vec<bool>> {
        if self.suspects.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = clock::now();
        Some(self.lock().ejected(now))
    }

    /// [`ejected`](Self::ejected) into `out` (one flag per instance); false when no instance
    /// can be ejected, and `out` is then untouched.
    pub(super) fn ejected_into(&self, out: &mut [bool]) -> bool {
        if self.suspects.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let now = clock::now();
        self.lock().ejected_into(now, out);
        true
    }

    /// Records what an attempt to `instance` came to (`None`: nothing to record), and reports an
    /// ejection to the observer.
    /// `id` is the instance's stable number, which the observer is told.
    pub(super) fn record(&self, instance: usize, id: usize, outcome: Option<Outcome>) {
        let Some(outcome) = outcome else {
            return;
        };
        if outcome == Outcome::Success && !self.suspect[instance].load(Ordering::Relaxed) {
            return;
        }
        let now = clock::now();
        let ejected = {
            let mut detector = self.lock();
            let ejected = detector.record(instance, outcome, now);
            let suspect = detector.is_suspect(instance);
            if self.suspect[instance].swap(suspect, Ordering::Relaxed) != suspect {
                if suspect {
                    self.suspects.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.suspects.fetch_sub(1, Ordering::Relaxed);
                }
            }
            ejected
        };
        if let Some(duration) = ejected {
            tracing::info!(
                target: "stormguard::balance",
                balancer = %self.target,
                instance = %self.names[instance],
                ?duration,
                ?outcome,
                "instance ejected after failing in a row"
            );
            self.observer.observe(
                &self.target,
                Event::Ejected {
                    instance: id,
                    duration,
                },
            );
            self.observer
                .instance_ejected(&self.target, &self.names[instance], duration);
        }
    }
}
