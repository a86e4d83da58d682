//! Which instance an attempt goes to: least loaded of two random picks, never one already tried,
//! and not one that keeps failing.
//!
//! ## Why a retry goes elsewhere
//! An instance that just failed a request is the likeliest to fail it again: it is overloaded,
//! draining, or broken. Envoy's `previous_hosts` predicate sends a retry elsewhere; linkerd does
//! not, and its retries can hit the same failing pod (linkerd2#11669). A refused connection never
//! reached the server, so its retry is always safe, but only useful on a *different* instance.
//!
//! Among the instances not yet tried we take the less loaded of two random picks ("power of two
//! choices", Mitzenmacher): almost as good as least-loaded, without herding every client onto the
//! one instance that looks idle.
//!
//! ## Why skip ejected instances, and when not to
//! Load alone cannot see an instance that fails at once: it never has anything in flight. The
//! [`OutlierDetector`] ejects such an instance for a while ([`ejection`] says when and why), and
//! [`choose_healthy`] leaves it out, but only while that leaves a choice: an ejected instance is
//! merely suspected, while one this request already tried has failed it for certain. So a retry
//! still goes to an instance not yet tried whenever one exists, ejected or not.

pub mod ejection;

pub use self::ejection::{EjectionConfig, Outcome, OutlierDetector};

use rand::Rng;

/// Chooses the instance for the next attempt of one request.
///
/// `loads[i]` is instance `i`'s load (requests in flight); `tried` lists the instances this
/// request already went to, oldest first. Returns `None` only when `loads` is empty. When every
/// instance was tried, the choice avoids the most recently tried one (the one that just failed)
/// if there is another. The same as [`choose_healthy`] with no instance ejected.
///
/// ```
/// use stormguard::instance::choose;
///
/// let mut rng = stormguard::backoff::seeded(3);
/// let loads = [0, 5, 0];
/// // Instance 0 just failed: the retry goes to 2, the idle one of the others.
/// assert_eq!(choose(&loads, &[0], &mut rng), Some(2));
/// ```
pub fn choose<R: Rng + ?Sized>(loads: &[u64], tried: &[usize], rng: &mut R) -> Option<usize> {
    choose_healthy(loads, tried, &[], rng)
}

/// Chooses the instance for the next attempt of one request, leaving out ejected instances
/// while another choice remains.
///
/// `ejected[i]` says whether instance `i` is ejected ([`OutlierDetector::ejected`]); a shorter
/// slice leaves the rest in. Preferences, first that has a candidate wins, the less loaded of two
/// random candidates taken within it:
/// 1. not tried and not ejected;
/// 2. not tried (all of those are ejected): a suspected instance may still answer, while a tried
///    one has failed this request, so "a retry goes to an instance not yet tried" keeps holding;
/// 3. every instance tried: not the one that just failed, and not ejected;
/// 4. not the one that just failed.
///
/// Returns `None` only when `loads` is empty; with one instance, that one.
///
/// ```
/// use stormguard::instance::choose_healthy;
///
/// let mut rng = stormguard::backoff::seeded(3);
/// // Instance 1 refuses connections and is ejected: never chosen while 0 or 2 is left.
/// for _ in 0..20 {
///     assert_ne!(choose_healthy(&[4, 0, 4], &[], &[false, true, false], &mut rng), Some(1));
/// }
/// // Both others tried: the ejected one is still worth a try.
/// assert_eq!(choose_healthy(&[4, 0, 4], &[0, 2], &[false, true, false], &mut rng), Some(1));
/// ```
#[inline]
pub fn choose_healthy<R: Rng + ?Sized>(
    loads: &[u64],
    tried: &[usize],
    ejected: &[bool],
    rng: &mut R,
) -> Option<usize> {
    let n = loads.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return Some(0);
    }
    if tried.is_empty() && ejected.is_empty() {
        // Every first attempt with nothing ejected: the same draws as the general case over all
        // instances, without its filtering passes (a fifth of a simulated attempt's cost), and
        // inlined into the caller, where a call cost a third as much again.
        return Some(least_loaded_of_all(loads, rng));
    }
    Some(choose_filtered(loads, tried, ejected, rng))
}

/// [`choose_healthy`] with instances tried or ejected to leave out: out of line, so that only
/// the first attempt's few instructions are inlined where the balancer chooses.
#[inline(never)]
fn choose_filtered<R: Rng + ?Sized>(
    loads: &[u64],
    tried: &[usize],
    ejected: &[bool],
    rng: &mut R,
) -> usize {
    if tried.is_empty() && !ejected.contains(&true) {
        return least_loaded_of_all(loads, rng);
    }
    if loads.len() <= 64 {
        return choose_among_masks(loads, tried, ejected, rng);
    }
    choose_among_words(loads, tried, ejected, rng)
}

/// [`choose_healthy`]'s preferences over any number of instances (two or more), by scanning
/// them: the reference that [`choose_among_masks`] and [`choose_among_words`] are tested
/// against. Each candidate set is counted and picked from by asking the tried list of every
/// instance, so a choice costs instances x tried (a call of 100 attempts over 1,000 instances
/// spent 300,000 steps on each retry: a simulated minute of it took minutes).
#[cfg(test)]
fn choose_by_scans<R: Rng + ?Sized>(
    loads: &[u64],
    tried: &[usize],
    ejected: &[bool],
    rng: &mut R,
) -> usize {
    let healthy = |i: usize| !ejected.get(i).copied().unwrap_or(false);
    let untried = |i: usize| !tried.contains(&i);
    let last_failed = tried.last().copied();
    let not_last = |i: usize| Some(i) != last_failed;
    if let Some(i) = least_loaded_of_two(loads, |i| untried(i) && healthy(i), rng) {
        return i;
    }
    if let Some(i) = least_loaded_of_two(loads, untried, rng) {
        return i;
    }
    if let Some(i) = least_loaded_of_two(loads, |i| not_last(i) && healthy(i), rng) {
        return i;
    }
    // `not_last` leaves at least one of two or more instances.
    least_loaded_of_two(loads, not_last, rng).unwrap_or(0)
}

/// [`choose_healthy`]'s preferences over at most 64 instances, each a bit mask: a candidate set
/// is counted with one `popcount` and its `k`th member found by clearing `k` low bits, where the
/// general path scans every instance (and the tried list for each) once to count and twice more
/// to pick. The same candidates in the same order, so the same draws choose the same instance.
fn choose_among_masks<R: Rng + ?Sized>(
    loads: &[u64],
    tried: &[usize],
    ejected: &[bool],
    rng: &mut R,
) -> usize {
    let n = loads.len();
    debug_assert!((2..=64).contains(&n));
    let all = u64::MAX >> (64 - n);
    let mut tried_mask = 0u64;
    for &i in tried {
        if i < n {
            tried_mask |= 1 << i;
        }
    }
    let mut ejected_mask = 0u64;
    for (i, &out) in ejected.iter().take(n).enumerate() {
        ejected_mask |= u64::from(out) << i;
    }
    let not_last = match tried.last() {
        Some(&last) if last < n => all & !(1 << last),
        _ => all,
    };
    let untried = all & !tried_mask;
    [
        untried & !ejected_mask,
        untried,
        not_last & !ejected_mask,
        not_last,
    ]
    .into_iter()
    .find_map(|candidates| least_loaded_in_mask(loads, candidates, rng))
    // `not_last` leaves at least one of two or more instances.
    .unwrap_or(0)
}

/// [`choose_healthy`]'s preferences over more than 64 instances, as [`choose_among_masks`]
/// makes them over up to 64: the tried and ejected instances marked once in words of bits, a
/// candidate set counted a word at a time with `popcount` and its `k`th member found by
/// skipping whole words. The same candidates in the same order as [`choose_by_scans`], so the
/// same draws choose the same instance, in instances / 64 + tried steps.
fn choose_among_words<R: Rng + ?Sized>(
    loads: &[u64],
    tried: &[usize],
    ejected: &[bool],
    rng: &mut R,
) -> usize {
    let n = loads.len();
    let words = n.div_ceil(64);
    // Bit `i % 64` of word `i / 64` of each: instance `i` tried, ejected.
    let mut marks = vec![0u64; 2 * words];
    let (tried_words, ejected_words) = marks.split_at_mut(words);
    for &i in tried {
        if i < n {
            tried_words[i / 64] |= 1 << (i % 64);
        }
    }
    for (i, &out) in ejected.iter().take(n).enumerate() {
        ejected_words[i / 64] |= u64::from(out) << (i % 64);
    }
    let all = |w: usize| {
        if w + 1 == words && n % 64 != 0 {
            u64::MAX >> (64 - n % 64)
        } else {
            u64::MAX
        }
    };
    let last = tried.last().copied().filter(|&last| last < n);
    let not_last = |w: usize| match last {
        Some(last) if last / 64 == w => all(w) & !(1 << (last % 64)),
        _ => all(w),
    };
    let untried = |w: usize| all(w) & !tried_words[w];
    let untried_healthy = |w: usize| untried(w) & !ejected_words[w];
    let not_last_healthy = |w: usize| not_last(w) & !ejected_words[w];
    let sets: [&dyn Fn(usize) -> u64; 4] =
        [&untried_healthy, &untried, &not_last_healthy, &not_last];
    for set in sets {
        if let Some(i) = least_loaded_in_words(loads, words, set, rng) {
            return i;
        }
    }
    // `not_last` leaves at least one of two or more instances.
    0
}

/// [`least_loaded_in_mask`] over a set of more than 64 instances, word `w` of which is
/// `set(w)`.
fn least_loaded_in_words<R: Rng + ?Sized>(
    loads: &[u64],
    words: usize,
    set: &dyn Fn(usize) -> u64,
    rng: &mut R,
) -> Option<usize> {
    let nth = |mut k: usize| {
        for w in 0..words {
            let mut bits = set(w);
            let count = bits.count_ones() as usize;
            if k >= count {
                k -= count;
                continue;
            }
            for _ in 0..k {
                bits &= bits - 1;
            }
            return w * 64 + bits.trailing_zeros() as usize;
        }
        unreachable!("k < the set's count")
    };
    match (0..words).map(|w| set(w).count_ones() as usize).sum() {
        0 => None,
        1 => Some(nth(0)),
        count => {
            let (a, b) = two_distinct(count, rng);
            let (a, b) = (nth(a), nth(b));
            Some(if loads[b] < loads[a] { b } else { a })
        }
    }
}

/// The less loaded of two distinct random members of `candidates` (bit `i` for instance `i`),
/// drawn as the scans of the reference choice draw them; `None` when the set is empty.
fn least_loaded_in_mask<R: Rng + ?Sized>(
    loads: &[u64],
    candidates: u64,
    rng: &mut R,
) -> Option<usize> {
    let nth = |k: usize| {
        let mut bits = candidates;
        for _ in 0..k {
            bits &= bits - 1;
        }
        bits.trailing_zeros() as usize
    };
    match candidates.count_ones() {
        0 => None,
        1 => Some(nth(0)),
        count => {
            let (a, b) = two_distinct(count as usize, rng);
            let (a, b) = (nth(a), nth(b));
            Some(if loads[b] < loads[a] { b } else { a })
        }
    }
}

/// Two distinct numbers below `n` (at least 2), uniform, from one 64-bit draw: the high half
/// picks the first, the low half the second among the other `n - 1`, each by a multiply and a
/// shift (Lemire's reduction, without its rejection step: with `n` below 2^16 the bias is under
/// one part in 65,536). Half the draws and none of the rejection loops of two
/// `random_range` calls, on every attempt the balancer and the simulator place.
#[inline]
fn two_distinct<R: Rng + ?Sized>(n: usize, rng: &mut R) -> (usize, usize) {
    debug_assert!(n >= 2);
    let draw = rng.next_u64();
    let pick = |half: u64, among: usize| ((half * among as u64) >> 32) as usize;
    let a = pick(draw >> 32, n);
    let mut b = pick(draw & u64::from(u32::MAX), n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// The less loaded of two distinct random instances, every instance allowed, drawing the same
/// two numbers as a choice among candidates does.
#[inline]
fn least_loaded_of_all<R: Rng + ?Sized>(loads: &[u64], rng: &mut R) -> usize {
    let (a, b) = two_distinct(loads.len(), rng);
    if loads[b] < loads[a] {
        b
    } else {
        a
    }
}

/// The less loaded of two distinct random instances among those `allowed`; the one allowed
/// instance if there is only one; `None` if there is none. Draws nothing from `rng` unless there
/// are two candidates, so that a choice is reproducible from a seed.
#[cfg(test)]
fn least_loaded_of_two<R: Rng + ?Sized>(
    loads: &[u64],
    allowed: impl Fn(usize) -> bool,
    rng: &mut R,
) -> Option<usize> {
    let n = loads.len();
    let candidates = (0..n).filter(|&i| allowed(i)).count();
    let nth = |k: usize| {
        (0..n)
            .filter(|&i| allowed(i))
            .nth(k)
            .expect("k < candidates")
    };
    match candidates {
        0 => None,
        1 => Some(nth(0)),
        _ => {
            let (a, b) = two_distinct(candidates, rng);
            let (a, b) = (nth(a), nth(b));
            Some(if loads[b] < loads[a] { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_instance_is_always_chosen() {
        let mut rng = crate::backoff::seeded(1);
        assert_eq!(choose(&[9], &[0, 0], &mut rng), Some(0));
        assert_eq!(choose(&[], &[], &mut rng), None);
    }

    #[test]
    fn picks_the_less_loaded_of_two() {
        let mut rng = crate::backoff::seeded(1);
        for _ in 0..100 {
            assert_eq!(choose(&[7, 1], &[], &mut rng), Some(1));
        }
    }

    #[test]
    fn spreads_load_when_equal() {
        let mut rng = crate::backoff::seeded(5);
        let mut hits = [0u32; 4];
        for _ in 0..4000 {
            hits[choose(&[0, 0, 0, 0], &[], &mut rng).unwrap()] += 1;
        }
        // Ties keep the first pick, which is uniform.
        assert!(hits.iter().all(|&h| (850..=1150).contains(&h)), "{hits:?}");
    }

    #[test]
    fn an_untried_ejected_instance_beats_a_tried_one() {
        let mut rng = crate::backoff::seeded(2);
        for _ in 0..50 {
            // 0 failed this request; 1 and 2 are ejected: one of them still gets the retry.
            let chosen = choose_healthy(&[0, 0, 0], &[0], &[false, true, true], &mut rng);
            assert!(matches!(chosen, Some(1 | 2)), "{chosen:?}");
        }
    }

    #[test]
    fn every_instance_tried_prefers_one_not_ejected() {
        let mut rng = crate::backoff::seeded(4);
        for _ in 0..50 {
            let chosen = choose_healthy(&[0, 0, 0], &[1, 0, 2], &[true, false, false], &mut rng);
            assert_eq!(chosen, Some(1));
        }
    }

    /// `choose` as it was before ejection (with today's draw of two candidates), kept to show
    /// that ejection did not change its choices.
    fn choose_before_ejection<R: rand::Rng + ?Sized>(
        loads: &[u64],
        tried: &[usize],
        rng: &mut R,
    ) -> Option<usize> {
        let n = loads.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        let fresh = (0..n).filter(|i| !tried.contains(i)).count();
        let last_failed = tried.last().copied();
        let allowed = |i: usize| {
            if fresh > 0 {
                !tried.contains(&i)
            } else {
                Some(i) != last_failed
            }
        };
        let candidates = if fresh > 0 { fresh } else { n - 1 };
        let nth = |k: usize| (0..n).filter(|&i| allowed(i)).nth(k).unwrap();
        if candidates == 1 {
            return Some(nth(0));
        }
        let (a, b) = two_distinct(candidates, rng);
        let (a, b) = (nth(a), nth(b));
        Some(if loads[b] < loads[a] { b } else { a })
    }

    proptest! {
        /// The masks and the scans are one rule: the same draws choose the same instance.
        #[test]
        fn masks_choose_what_the_scans_choose(
            loads in proptest::collection::vec(0u64..4, 2..=64),
            tried_raw in proptest::collection::vec(0usize..80, 0..70),
            ejected in proptest::collection::vec(any::<bool>(), 0..70),
            seed in any::<u64>(),
        ) {
            let n = loads.len();
            // Mostly instances that exist, some past the end (ignored by both).
            let tried: Vec<usize> = tried_raw.into_iter().map(|i| if i < 72 { i % n } else { i }).collect();
            let mut masks_rng = crate::backoff::seeded(seed);
            let mut scans_rng = crate::backoff::seeded(seed);
            for _ in 0..4 {
                prop_assert_eq!(
                    choose_among_masks(&loads, &tried, &ejected, &mut masks_rng),
                    choose_by_scans(&loads, &tried, &ejected, &mut scans_rng)
                );
            }
        }

        /// Past 64 instances, words of bits choose what the scans choose, in instances / 64 +
        /// tried steps where the scans took instances x tried.
        #[test]
        fn words_choose_what_the_scans_choose(
            n in 65usize..=300,
            loads_raw in proptest::collection::vec(0u64..4, 300),
            tried_raw in proptest::collection::vec(0usize..400, 0..120),
            ejected in proptest::collection::vec(any::<bool>(), 0..320),
            seed in any::<u64>(),
        ) {
            let loads = &loads_raw[..n];
            // Mostly instances that exist, some past the end (ignored by both).
            let tried: Vec<usize> = tried_raw.into_iter().map(|i| if i < 380 { i % n } else { i }).collect();
            let mut words_rng = crate::backoff::seeded(seed);
            let mut scans_rng = crate::backoff::seeded(seed);
            for _ in 0..4 {
                prop_assert_eq!(
                    choose_among_words(loads, &tried, &ejected, &mut words_rng),
                    choose_by_scans(loads, &tried, &ejected, &mut scans_rng)
                );
            }
        }

        #[test]
        fn never_repeats_the_instance_that_just_failed(
            loads in proptest::collection::vec(0u64..10, 2..8),
            tried_raw in proptest::collection::vec(0usize..8, 1..10),
            seed in any::<u64>(),
        ) {
            let n = loads.len();
            let tried: Vec<usize> = tried_raw.into_iter().map(|i| i % n).collect();
            let mut rng = crate::backoff::seeded(seed);
            let chosen = choose(&loads, &tried, &mut rng).unwrap();
            prop_assert!(chosen < n);
            prop_assert_ne!(Some(chosen), tried.last().copied());
            if (0..n).any(|i| !tried.contains(&i)) {
                prop_assert!(!tried.contains(&chosen));
            }
        }

        #[test]
        fn ejected_instances_are_left_out_while_an_untried_healthy_one_remains(
            loads in proptest::collection::vec(0u64..10, 1..8),
            tried_raw in proptest::collection::vec(0usize..8, 0..10),
            ejected_raw in proptest::collection::vec(any::<bool>(), 8),
            seed in any::<u64>(),
        ) {
            let n = loads.len();
            let tried: Vec<usize> = tried_raw.into_iter().map(|i| i % n).collect();
            let ejected = &ejected_raw[..n];
            let mut rng = crate::backoff::seeded(seed);
            let chosen = choose_healthy(&loads, &tried, ejected, &mut rng).unwrap();
            prop_assert!(chosen < n);
            let untried = |i: usize| !tried.contains(&i);
            if (0..n).any(|i| untried(i) && !ejected[i]) {
                prop_assert!(untried(chosen) && !ejected[chosen]);
            }
            if (0..n).any(untried) {
                prop_assert!(untried(chosen), "a tried instance while an untried one remained");
            }
            if n > 1 {
                prop_assert_ne!(Some(chosen), tried.last().copied());
            }
            if n > 1 && !(0..n).any(untried) && (0..n).any(|i| !ejected[i] && Some(i) != tried.last().copied()) {
                prop_assert!(!ejected[chosen]);
            }
        }

        #[test]
        fn with_nothing_ejected_the_choices_are_those_from_before_ejection(
            loads in proptest::collection::vec(0u64..10, 0..8),
            tried_raw in proptest::collection::vec(0usize..8, 0..10),
            seed in any::<u64>(),
        ) {
            // The simulator's runs are reproducible from a seed: the same draws, the same picks.
            let n = loads.len().max(1);
            let tried: Vec<usize> = tried_raw.into_iter().map(|i| i % n).collect();
            let none = vec![false; loads.len()];
            let (mut a, mut b, mut c) = (
                crate::backoff::seeded(seed),
                crate::backoff::seeded(seed),
                crate::backoff::seeded(seed),
            );
            for _ in 0..3 {
                let before = choose_before_ejection(&loads, &tried, &mut a);
                prop_assert_eq!(before, choose_healthy(&loads, &tried, &none, &mut b));
                prop_assert_eq!(before, choose(&loads, &tried, &mut c));
            }
        }
    }
}
