//! Byte sizes as the proxy's settings file writes them: `"8MiB"`, `"64KiB"`, `"512B"`, `"1GiB"`.
//!
//! Here, beside durations' reading, because it is a value syntax of the project's files like a
//! duration, and the table of ranges ([`super::ranges`]) states the sizes' ranges in it.
//!
//! ## Why binary units only
//! `MB` means 10^6 to a disk vendor and 2^20 to most proxies' configs; a body limit that is off
//! by 5% is the kind of surprise nobody finds until a request fails. Only the IEC binary units
//! (`KiB` = 1024) are accepted, with `B` for bytes, and the error for `MB` or `k` says which to
//! write instead. A whole number is required: `1.5MiB` is refused rather than rounded, as
//! `stormguard::duration::parse` refuses `1.5ns`.

/// The units, largest first, so that [`format`] picks the largest that divides exactly.
const UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// A size text that is not valid, with what would be.
///
/// Displayed as `invalid size "<input>": <problem>; use a whole number followed by B, KiB,
/// MiB, GiB or TiB, e.g. "64KiB"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {input:?}: {problem}; use a whole number followed by B, KiB, MiB, GiB or TiB \
     (powers of 1024), e.g. \"64KiB\" or \"8MiB\""
)]
pub struct SizeError {
    input: String,
    problem: String,
}

impl SizeError {
    fn new(input: &str, problem: impl Into<String>) -> Self {
        SizeError {
            input: input.to_string(),
            problem: problem.into(),
        }
    }
}

/// Parses a size such as `"64KiB"` into bytes.
///
/// Surrounding whitespace is ignored; no space is allowed between the number and the unit.
/// Sizes above `u64::MAX` bytes are refused, never wrapped.
///
/// ```
/// use stormguard_graph::parse::size;
///
/// assert_eq!(size::parse("8MiB"), Ok(8 * 1024 * 1024));
/// assert_eq!(size::parse("512B"), Ok(512));
/// assert!(size::parse("8MB").unwrap_err().to_string().contains("use MiB"));
/// ```
pub fn parse(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SizeError::new(text, "empty text"));
    }
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    if number.is_empty() {
        return Err(SizeError::new(
            text,
            "it does not start with a whole number (no sign)",
        ));
    }
    if unit.starts_with('.') {
        return Err(SizeError::new(
            text,
            "fractions are not accepted; use a smaller unit, e.g. \"1536KiB\" for 1.5 MiB",
        ));
    }
    let multiplier = match unit {
        "" => return Err(SizeError::new(text, "missing unit (write \"B\" for bytes)")),
        _ => match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, multiplier)) => *multiplier,
            None => return Err(SizeError::new(text, unknown_unit(unit))),
        },
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| SizeError::new(text, "too large: at most 16777215TiB"))
}

/// What is wrong with `unit`, naming the binary unit meant when the file wrote a decimal or
/// lower-case one.
fn unknown_unit(unit: &str) -> String {
    let meant = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "k" | "ki" => Some("KiB"),
        "m" | "mi" => Some("MiB"),
        "g" | "gi" => Some("GiB"),
        "t" | "ti" => Some("TiB"),
        "" => Some("B"),
        _ => None,
    };
    match meant {
        Some(meant) => format!("unknown unit {unit:?}: use {meant}"),
        None => format!("unknown unit {unit:?}"),
    }
}

/// Writes `bytes` in the largest unit that divides it exactly, so that [`parse`] reads it back
/// to the same number: `8388608` is `"8MiB"`, `1000` is `"1000B"`.
///
/// ```
/// use stormguard_graph::parse::size;
///
/// assert_eq!(size::format(64 * 1024), "64KiB");
/// assert_eq!(size::format(1000), "1000B");
/// assert_eq!(size::parse(&size::format(12345)), Ok(12345));
/// ```
pub fn format(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    let (unit, multiplier) = UNITS
        .iter()
        .copied()
        .find(|&(_, multiplier)| bytes % multiplier == 0)
        .unwrap_or(("B", 1));
    format!("{}{unit}", bytes / multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_a_power_of_1024() {
        assert_eq!(parse("512B"), Ok(512));
        assert_eq!(parse("64KiB"), Ok(65_536));
        assert_eq!(parse("8MiB"), Ok(8_388_608));
        assert_eq!(parse("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse("2TiB"), Ok(2 << 40));
        assert_eq!(parse(" 0B "), Ok(0));
    }

    #[test]
    fn decimal_and_lower_case_units_name_the_binary_one() {
        for (text, meant) in [
            ("8MB", "use MiB"),
            ("8mb", "use MiB"),
            ("64k", "use KiB"),
            ("64kb", "use KiB"),
            ("1G", "use GiB"),
            ("1gib", "use GiB"),
            ("5b", "use B"),
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(meant), "{text}: {message}");
            assert!(
                message.starts_with(&format!("invalid size {text:?}")),
                "{message}"
            );
        }
    }

    #[test]
    fn malformed_sizes_say_what_is_wrong() {
        for (text, problem) in [
            ("", "empty text"),
            ("  ", "empty text"),
            ("-1KiB", "no sign"),
            ("KiB", "does not start with a whole number"),
            ("1.5MiB", "fractions are not accepted"),
            ("64", "missing unit"),
            ("64 KiB", "unknown unit \" KiB\""),
            ("64furlongs", "unknown unit \"furlongs\""),
            ("99999999999999999999B", "too large"),
            ("16777216TiB", "too large"),
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(problem), "{text:?}: {message}");
            assert!(message.contains("e.g. \"64KiB\""), "{message}");
        }
    }

    #[test]
    fn the_largest_size_is_accepted() {
        assert_eq!(parse("16777215TiB"), Ok(16_777_215 << 40));
        assert_eq!(parse(&format!("{}B", u64::MAX)), Ok(u64::MAX));
    }

    #[test]
    fn format_uses_the_largest_exact_unit_and_round_trips() {
        assert_eq!(format(0), "0B");
        assert_eq!(format(1), "1B");
        assert_eq!(format(1024), "1KiB");
        assert_eq!(format(1536), "1536B");
        assert_eq!(format(3 << 20), "3MiB");
        assert_eq!(format(1 << 30), "1GiB");
        assert_eq!(format(5 << 40), "5TiB");
        for bytes in [0, 1, 1023, 1024, 1025, 65_536, 8_388_608, u64::MAX, 1 << 50] {
            assert_eq!(parse(&format(bytes)), Ok(bytes), "{bytes}");
        }
    }
}
