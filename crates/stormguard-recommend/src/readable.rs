//! Durations as a person sets and reads them.
//!
//! Why round a suggestion at all: a p99.9 of 287.4 ms is an estimate from buckets, precise to
//! far less than its digits, and a timeout of "287.4ms" in a file invites the belief that it
//! was measured to the tenth of a millisecond. Rounding *up* to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5,
//! 6 or 8 times a power of ten keeps the false-timeout rate at or below the one asked for, and
//! costs at most a third more waiting (below 10 ms, whole milliseconds only: at most 2 ms more).

use std::time::Duration;

/// The steps of each decade, in units of its power of ten.
const STEPS: [f64; 10] = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0];

/// The smallest readable duration at or above `d`, in whole milliseconds (1 ms at least: no
/// network call is usefully bounded below that).
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::readable::round_up;
///
/// let ms = Duration::from_millis;
/// assert_eq!(round_up(Duration::from_micros(287_400)), ms(300));
/// assert_eq!(round_up(ms(300)), ms(300));
/// assert_eq!(round_up(ms(42)), ms(50));
/// assert_eq!(round_up(Duration::from_micros(1_230_000)), ms(1500));
/// assert_eq!(round_up(Duration::from_micros(10)), ms(1));
/// ```
pub fn round_up(d: Duration) -> Duration {
    let ms = d.as_secs_f64() * 1000.0;
    let mut decade = 1.0_f64;
    loop {
        for step in STEPS {
            let candidate = step * decade;
            if candidate.fract() != 0.0 {
                continue;
            }
            // A bound met to float precision is met: 0.3 s must stay 300 ms, not become 400.
            if candidate >= ms * (1.0 - 1e-9) {
                return Duration::from_millis(candidate.round() as u64);
            }
        }
        decade *= 10.0;
        if decade > 1e12 {
            // Past every step (over 253 years): no one sets such a timeout, but it must still
            // not be below `d`. Whole milliseconds, rounded up.
            let millis = d.as_nanos().div_ceil(1_000_000);
            return u64::try_from(millis).map_or(Duration::MAX, Duration::from_millis);
        }
    }
}

/// The readable duration nearest `d` (for where to add a bucket, which may lie below or above).
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::readable::nearest;
///
/// assert_eq!(nearest(Duration::from_millis(354)), Duration::from_millis(400));
/// assert_eq!(nearest(Duration::from_millis(320)), Duration::from_millis(300));
/// ```
pub fn nearest(d: Duration) -> Duration {
    let up = round_up(d);
    let ms = d.as_secs_f64() * 1000.0;
    let up_ms = up.as_secs_f64() * 1000.0;
    let below = STEPS
        .iter()
        .chain(std::iter::once(&10.0))
        .flat_map(|step| (0..13).map(move |p| step * 10f64.powi(p)))
        .filter(|&c| c < up_ms)
        .fold(0.0_f64, f64::max);
    if below >= 1.0 && ms - below < up_ms - ms {
        Duration::from_millis(below.round() as u64)
    } else {
        up
    }
}

/// A measured duration to read, to three significant digits: `850us`, `21.4ms`, `287ms`,
/// `1.23s`. For tables and messages; a value for a file is written with
/// [`stormguard::duration::format`] instead.
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::readable::show;
///
/// assert_eq!(show(Duration::from_micros(21_437)), "21.4ms");
/// assert_eq!(show(Duration::from_micros(287_400)), "287ms");
/// assert_eq!(show(Duration::from_millis(1234)), "1.23s");
/// assert_eq!(show(Duration::from_micros(850)), "850us");
/// assert_eq!(show(Duration::from_secs(300)), "300s");
/// ```
pub fn show(d: Duration) -> String {
    let s = d.as_secs_f64();
    // Thresholds a hair below the unit, so that 999.96 ms reads "1s", not "1000ms".
    let (value, unit) = if s >= 0.999_5 {
        (s, "s")
    } else if s >= 0.999_5e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "us")
    };
    let decimals = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_up_never_goes_down_and_costs_at_most_a_third() {
        for micros in (500..5_000_000).step_by(997) {
            let d = Duration::from_micros(micros);
            let up = round_up(d);
            assert!(up >= d, "{d:?} -> {up:?}");
            if d >= Duration::from_millis(10) {
                assert!(
                    up.as_secs_f64() <= d.as_secs_f64() * 4.0 / 3.0 + 1e-9,
                    "{d:?} -> {up:?}"
                );
            } else {
                assert!(up <= d.max(Duration::from_millis(1)) + Duration::from_millis(2));
            }
        }
    }

    #[test]
    fn past_every_step_it_still_never_goes_down() {
        // Found by fuzzing: above the last step (about 253 years) it answered 31 years.
        for d in [
            Duration::from_millis(8_000_008_000_000),
            Duration::from_secs(6_371_555_158_481_727_488),
            Duration::MAX,
        ] {
            assert!(round_up(d) >= d, "{d:?} -> {:?}", round_up(d));
        }
    }

    #[test]
    fn readable_values_are_fixed_points() {
        for ms in [
            1, 2, 5, 12, 15, 25, 30, 60, 80, 100, 250, 1000, 1500, 2000, 60_000,
        ] {
            assert_eq!(
                round_up(Duration::from_millis(ms)),
                Duration::from_millis(ms)
            );
            assert_eq!(
                nearest(Duration::from_millis(ms)),
                Duration::from_millis(ms)
            );
        }
    }

    #[test]
    fn nearest_goes_either_way() {
        assert_eq!(
            nearest(Duration::from_millis(130)),
            Duration::from_millis(120)
        );
        assert_eq!(
            nearest(Duration::from_millis(140)),
            Duration::from_millis(150)
        );
        assert_eq!(
            nearest(Duration::from_micros(900)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn show_keeps_three_significant_digits() {
        assert_eq!(show(Duration::from_millis(100)), "100ms");
        assert_eq!(show(Duration::from_micros(99_960)), "100ms");
        assert_eq!(show(Duration::from_micros(12_500)), "12.5ms");
        assert_eq!(show(Duration::from_millis(2)), "2ms");
        assert_eq!(show(Duration::ZERO), "0us");
        assert_eq!(show(Duration::from_micros(999_960)), "1s");
    }
}
