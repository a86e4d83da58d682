//! Durations as text, one syntax for every config of the project.
//!
//! ## Why a text syntax of our own?
//! Graph files, the proxy config and backoff texts (`full-jitter(base=25ms, cap=1s)`) all hold
//! durations, and a bare `10` is the classic misconfiguration: ten seconds or ten milliseconds?
//! So every duration here carries a unit, the parser says exactly what was wrong, and [`format()`]
//! prints one canonical text that [`parse`] reads back to the same [`Duration`], nanosecond for
//! nanosecond, so a config that is read and written again never drifts.
//!
//! The syntax is an unsigned decimal number immediately followed by a unit: `ns`, `us` (or `µs`),
//! `ms`, `s`, `m`, `h`. Examples: `250ms`, `2s`, `1m`, `1.5s`, `0s`.
//!
//! ```rust
//! use std::time::Duration;
//! use stormguard::duration;
//!
//! let d = duration::parse("1.5s").unwrap();
//! assert_eq!(d, Duration::from_millis(1500));
//! assert_eq!(duration::format(d), "1500ms");
//! assert!(duration::parse("10").is_err()); // ten what?
//! ```

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The units in descending size, with their length in nanoseconds. `format` picks the first that
/// divides a duration exactly, so the order matters.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration text that [`parse`] refused.
///
/// It exists so a config error names the offending text and shows the valid syntax, instead of
/// a bare "invalid digit". The Display text has the form
/// `invalid duration "<input>": <problem>; use a number followed by ns, us, ms, s, m or h, e.g. "250ms"`.
///
/// ```rust
/// let err = stormguard::duration::parse("10").unwrap_err();
/// assert_eq!(err.input(), "10");
/// assert!(err.to_string().contains("missing unit"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {problem}; use a number followed by ns, us, ms, s, m or h, e.g. \"250ms\""
)]
pub struct DurationError {
    input: String,
    problem: String,
}

impl DurationError {
    fn new(input: &str, problem: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            problem: problem.into(),
        }
    }

    /// The text that was given, untrimmed, so callers can point at it.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it, without the reminder of the valid syntax.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Parses a duration such as `250ms`, `1.5s` or `2m`.
///
/// Surrounding whitespace is ignored; no space is allowed between the number and the unit. A
/// fraction must resolve to a whole number of nanoseconds (`1.5ns` is refused rather than
/// silently rounded). Durations above [`Duration::MAX`] are refused, never wrapped.
///
/// ```rust
/// use std::time::Duration;
/// assert_eq!(stormguard::duration::parse(" 250ms ").unwrap(), Duration::from_millis(250));
/// assert!(stormguard::duration::parse("-1s").is_err());
/// ```
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(DurationError::new(s, "empty text"));
    }
    if text.starts_with('-') {
        return Err(DurationError::new(s, "durations cannot be negative"));
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    if number.is_empty() {
        return Err(DurationError::new(
            s,
            "it does not start with a number (no sign, NaN or infinity)",
        ));
    }
    let unit_nanos = match unit {
        "" => return Err(DurationError::new(s, "missing unit")),
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        other if other.starts_with(char::is_whitespace) => {
            return Err(DurationError::new(
                s,
                "space between number and unit; write them together",
            ));
        }
        other => {
            return Err(DurationError::new(s, format!("unknown unit {other:?}")));
        }
    };
    let total =
        number_to_nanos(number, unit_nanos).map_err(|problem| DurationError::new(s, problem))?;
    nanos_to_duration(total)
        .ok_or_else(|| DurationError::new(s, "too large: the maximum is about 584 billion years"))
}

/// Converts `number` (digits with an optional fraction) times `unit_nanos` to whole nanoseconds,
/// exactly: no floating point, so `0.1s` is 100 000 000 ns and not one off.
fn number_to_nanos(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let malformed = || format!("malformed number {number:?}");
    if whole.is_empty() || fraction.is_some_and(|f| f.is_empty() || f.contains('.')) {
        return Err(malformed());
    }
    let too_large = || "too large: the maximum is about 584 billion years".to_owned();
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    nanos = nanos.checked_mul(unit_nanos).ok_or_else(too_large)?;
    if let Some(fraction) = fraction {
        // Digits past the unit's precision must all be zero, or the value is finer than 1 ns.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            let digit = u128::from(digit - b'0');
            if scale % 10 != 0 {
                if digit != 0 {
                    return Err("more precise than one nanosecond".to_owned());
                }
                continue;
            }
            scale /= 10;
            nanos = nanos.checked_add(digit * scale).ok_or_else(too_large)?;
        }
    }
    Ok(nanos)
}

fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    // The remainder is below 10^9, so it fits in a u32.
    Some(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Prints a duration in its canonical text: the largest unit among `h`, `m`, `s`, `ms`, `us`,
/// `ns` that divides it exactly, as an integer (`1500ms`, `1s`, `2m`, `0s` for zero).
///
/// Guarantee: `parse(&format(d)) == Ok(d)` for every [`Duration`], so printed configs read back
/// identically.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::duration::format;
/// assert_eq!(format(Duration::from_micros(1500)), "1500us");
/// assert_eq!(format(Duration::from_secs(120)), "2m");
/// assert_eq!(format(Duration::ZERO), "0s");
/// ```
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (unit, unit_nanos) = UNITS
        .iter()
        .copied()
        .find(|&(_, unit_nanos)| nanos % unit_nanos == 0)
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / unit_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7μs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_fractions_exactly() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("0.001ms"), Ok(Duration::from_nanos(1000)));
        assert_eq!(parse("1.25m"), Ok(Duration::from_secs(75)));
        assert_eq!(parse("1.000000000000s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("1.0ns"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(parse("  \t250ms\n"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn missing_unit_message_names_input_and_syntax() {
        let message = parse("10").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid duration \"10\": missing unit; use a number followed by ns, us, ms, s, m or h, e.g. \"250ms\""
        );
    }

    #[test]
    fn refuses_bad_texts_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("-1s", "negative"),
            ("NaN", "number"),
            ("nans", "number"),
            ("inf", "number"),
            ("+1s", "number"),
            ("ms", "number"),
            ("10 ms", "space"),
            ("10d", "unknown unit \"d\""),
            ("10sec", "unknown unit"),
            ("1.5ns", "nanosecond"),
            ("1.s", "malformed"),
            ("1..5s", "malformed"),
            ("1.2.3s", "malformed"),
            (".5s", "number"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("18446744073709551616s", "too large"),
            ("1s5ms", "unknown unit"),
        ];
        for (input, expected) in cases {
            let err = parse(input).expect_err(input);
            assert!(
                err.to_string().contains(expected),
                "{input:?}: {err} should contain {expected:?}"
            );
            assert_eq!(err.input(), input);
        }
    }

    #[test]
    fn accepts_the_largest_duration() {
        assert_eq!(parse(&format(Duration::MAX)), Ok(Duration::MAX));
        assert_eq!(
            parse("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn formats_with_largest_exact_unit() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(1)), "1s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_micros(1500)), "1500us");
        assert_eq!(format(Duration::from_nanos(1)), "1ns");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(nanos in 0u64..=1_000_000_000_000_000) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn round_trips_over_the_whole_range(secs in any::<u64>(), subsec in 0u32..1_000_000_000) {
            let d = Duration::new(secs, subsec);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_of_number_and_unit_matches_arithmetic(value in 0u64..1_000, unit in 0usize..6) {
            let (name, unit_nanos) = UNITS[unit];
            let expected = Duration::from_nanos(value * unit_nanos as u64);
            prop_assert_eq!(parse(&format!("{value}{name}")), Ok(expected));
        }
    }
}
