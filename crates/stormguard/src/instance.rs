//! Which instance an attempt goes to: least loaded of two random picks, never one already tried.
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

use rand::Rng;

/// Chooses the instance for the next attempt of one request.
///
/// `loads[i]` is instance `i`'s load (requests in flight); `tried` lists the instances this
/// request already went to, oldest first. Returns `None` only when `loads` is empty. When every
/// instance was tried, the choice avoids the most recently tried one (the one that just failed)
/// if there is another.
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
    let n = loads.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return Some(0);
    }
    let untried = |i: &usize| !tried.contains(i);
    let fresh = (0..n).filter(untried).count();
    let last_failed = tried.last().copied();
    let allowed = |i: usize| {
        if fresh > 0 {
            !tried.contains(&i)
        } else {
            Some(i) != last_failed
        }
    };
    let candidates = if fresh > 0 { fresh } else { n - 1 };
    let nth = |k: usize| {
        (0..n)
            .filter(|&i| allowed(i))
            .nth(k)
            .expect("k < candidates")
    };
    if candidates == 1 {
        return Some(nth(0));
    }
    let a = rng.random_range(0..candidates);
    let mut b = rng.random_range(0..candidates - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (nth(a), nth(b));
    Some(if loads[b] < loads[a] { b } else { a })
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

    proptest! {
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
    }
}
