//! Where jitter's randomness comes from.
//!
//! The policy core takes its RNG as an argument, so the choice of seed is the caller's. Three
//! choices cover the uses: a fixed seed for tests and the simulator ([`seeded`]), a seed derived
//! from the host's identity so that one host always produces the same sequence, which Brooker
//! recommends for debuggability ([`for_host`]), and a per-process seed when neither matters
//! ([`from_process_entropy`]). The same stable host hash spreads periodic jobs over their period
//! ([`jittered_period`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;

/// The RNG that drives jitter: PCG64 MCG ("pcg64_fast"). Small (16 bytes), fast, statistically
/// sound for delays, and portable: a seed gives the same sequence on every platform and release
/// of `rand_pcg` 0.9, which is what makes seeded tests and per-host sequences reproducible. Not
/// cryptographic, and need not be.
pub type JitterRng = rand_pcg::Pcg64Mcg;

/// An RNG with a fixed seed, for tests and simulations: the same seed gives the same delays.
///
/// ```rust
/// use rand::RngCore;
/// let (mut a, mut b) = (stormguard::backoff::seeded(3), stormguard::backoff::seeded(3));
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
pub fn seeded(seed: u64) -> JitterRng {
    JitterRng::seed_from_u64(seed)
}

/// An RNG seeded from a host's identity: one host always produces the same jitter sequence, so
/// an incident can be replayed, while different hosts still spread out (Brooker's advice).
///
/// The seed is the FNV-1a 64-bit hash of the UTF-8 bytes of `host_id`, a fixed algorithm chosen
/// over std's `DefaultHasher`, whose output may change between Rust releases. Pair it with
/// [`host_identity`] to find the id.
///
/// ```rust
/// use rand::RngCore;
/// use stormguard::backoff::for_host;
/// assert_eq!(for_host("web-1").next_u64(), for_host("web-1").next_u64());
/// assert_ne!(for_host("web-1").next_u64(), for_host("web-2").next_u64());
/// ```
pub fn for_host(host_id: &str) -> JitterRng {
    seeded(host_seed(host_id))
}

/// The seed [`for_host`] uses, for mechanisms that derive one generator per request from it
/// (seed mixed with a request counter) rather than share one generator behind a lock.
///
/// ```rust
/// assert_eq!(stormguard::backoff::host_seed("web-1"), stormguard::backoff::host_seed("web-1"));
/// ```
pub fn host_seed(host_id: &str) -> u64 {
    fnv1a_64(host_id.as_bytes())
}

/// A non-deterministic RNG, the default when no host identity or seed is wanted.
///
/// Seeded from std's per-process random hash keys (`RandomState`, itself seeded by the OS) and a
/// process-wide counter, so that every call, on any thread, gets a different seed without an
/// extra dependency and without I/O of our own.
///
/// ```rust
/// use rand::RngCore;
/// use stormguard::backoff::from_process_entropy;
/// assert_ne!(from_process_entropy().next_u64(), from_process_entropy().next_u64());
/// ```
pub fn from_process_entropy() -> JitterRng {
    seeded(process_entropy_seed())
}

/// The seed [`from_process_entropy`] uses: different on every call and in every process.
///
/// ```rust
/// use stormguard::backoff::process_entropy_seed;
/// assert_ne!(process_entropy_seed(), process_entropy_seed());
/// ```
pub fn process_entropy_seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// This host's identity for [`for_host`] and [`jittered_period`], if one can be found.
///
/// Looks, in order, at the `STORMGUARD_HOST_ID` environment variable (set it to pin the identity,
/// e.g. to a pod name), the `HOSTNAME` environment variable, `/proc/sys/kernel/hostname`, and
/// `/etc/hostname`; the first non-empty value, trimmed, wins. This is the only function of the
/// backoff module that does I/O (environment and file reads); call it once at start-up, not per
/// request. `None` when all four are missing or empty.
///
/// ```rust
/// if let Some(id) = stormguard::backoff::host_identity() {
///     assert!(!id.is_empty() && id.trim() == id);
/// }
/// ```
pub fn host_identity() -> Option<String> {
    let from_env = |name: &str| std::env::var(name).ok();
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    first_identity([
        from_env("STORMGUARD_HOST_ID"),
        from_env("HOSTNAME"),
        from_file("/proc/sys/kernel/hostname"),
        from_file("/etc/hostname"),
    ])
}

fn first_identity(candidates: [Option<String>; 4]) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .map(|candidate| candidate.trim().to_owned())
        .find(|candidate| !candidate.is_empty())
}

/// A stable per-host offset in `[0, period)` (zero for a zero period).
///
/// Periodic jobs (refreshes, health reports, cron-like tasks) that all fire at the top of the
/// minute hit their dependency as a herd; each host should wait this offset first. The same
/// `host_id` always gets the same offset, on every release (FNV-1a 64 of the id, mixed with the
/// SplitMix64 finalizer, scaled by multiply-high), and offsets over many ids are spread
/// uniformly over the period.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::backoff::jittered_period;
/// let minute = Duration::from_secs(60);
/// let offset = jittered_period(minute, "web-1");
/// assert!(offset < minute);
/// assert_eq!(offset, jittered_period(minute, "web-1"));
/// ```
pub fn jittered_period(period: Duration, host_id: &str) -> Duration {
    let hash = u128::from(splitmix64_finalize(fnv1a_64(host_id.as_bytes())));
    let period = period.as_nanos();
    // floor(hash × period / 2^64), split so it cannot overflow: period < 2^94, hash < 2^64.
    let offset = hash * (period >> 64) + ((hash * (period & u128::from(u64::MAX))) >> 64);
    super::saturating_duration(offset)
}

/// FNV-1a, 64-bit: fixed constants, so the value never changes with the Rust release.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// SplitMix64's output mix: FNV's high bits change little between ids like `host-1` and
/// `host-2`, and multiply-high reads the high bits, so they are avalanched first.
fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::RngCore;

    fn first_values(mut rng: JitterRng) -> Vec<u64> {
        (0..16).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn host_sequences_are_stable_and_distinct() {
        assert_eq!(first_values(for_host("a")), first_values(for_host("a")));
        assert_ne!(first_values(for_host("a")), first_values(for_host("b")));
        assert_eq!(
            first_values(for_host("a")),
            first_values(seeded(fnv1a_64(b"a")))
        );
    }

    #[test]
    fn host_sequence_is_pinned_across_releases() {
        // A change here breaks the promise that a host replays the same jitter after upgrading.
        assert_eq!(for_host("a").next_u64(), PINNED_FOR_HOST_A);
        assert_eq!(
            jittered_period(Duration::from_secs(60), "a"),
            PINNED_OFFSET_A
        );
    }

    const PINNED_FOR_HOST_A: u64 = 1_810_046_786_457_653_715;
    const PINNED_OFFSET_A: Duration = Duration::from_nanos(645_209_838);

    #[test]
    fn process_entropy_differs_per_call_and_thread() {
        let here: Vec<u64> = (0..100)
            .map(|_| from_process_entropy().next_u64())
            .collect();
        let there: Vec<u64> = std::thread::spawn(|| {
            (0..100)
                .map(|_| from_process_entropy().next_u64())
                .collect()
        })
        .join()
        .unwrap();
        let mut all: Vec<u64> = here.into_iter().chain(there).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200);
    }

    #[test]
    fn first_non_empty_identity_wins_trimmed() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            first_identity([None, s("  "), s("web-1\n"), s("x")]),
            s("web-1")
        );
        assert_eq!(
            first_identity([s("pinned"), s("host"), None, None]),
            s("pinned")
        );
        assert_eq!(first_identity([None, None, None, s("\n")]), None);
    }

    #[test]
    fn host_identity_is_trimmed_when_found() {
        if let Some(id) = host_identity() {
            assert!(!id.is_empty());
            assert_eq!(id.trim(), id);
        }
    }

    #[test]
    fn zero_period_gives_zero_offset() {
        assert_eq!(jittered_period(Duration::ZERO, "host-1"), Duration::ZERO);
    }

    #[test]
    fn offsets_spread_uniformly_over_hosts() {
        let period = Duration::from_secs(60);
        let mut buckets = [0u32; 10];
        for host in 0..10_000 {
            let offset = jittered_period(period, &format!("host-{host}"));
            assert!(offset < period);
            buckets[(offset.as_nanos() * 10 / period.as_nanos()) as usize] += 1;
        }
        for (bucket, count) in buckets.iter().enumerate() {
            assert!(
                (800..=1200).contains(count),
                "bucket {bucket}: {count} in {buckets:?}"
            );
        }
    }

    #[test]
    fn largest_period_stays_in_range() {
        for host in ["a", "b", "host-1", ""] {
            assert!(jittered_period(Duration::MAX, host) < Duration::MAX);
        }
    }

    proptest! {
        #[test]
        fn offset_is_below_period_and_stable(
            nanos in 1u64..=u64::MAX,
            host in "\\PC{0,20}",
        ) {
            let period = Duration::from_nanos(nanos);
            let offset = jittered_period(period, &host);
            prop_assert!(offset < period);
            prop_assert_eq!(offset, jittered_period(period, &host));
        }

        #[test]
        fn same_seed_same_sequence(seed in any::<u64>()) {
            prop_assert_eq!(first_values(seeded(seed)), first_values(seeded(seed)));
        }
    }
}
