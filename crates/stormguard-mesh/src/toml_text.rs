//! The graph's value texts as the readers write them: durations in whole milliseconds or
//! seconds, quoted strings, lists of strings.
//!
//! ## Why one writer
//! Every reader turns a foreign duration (`"0.250s"`, `{seconds: 1, nanos: 5e8}`, `1m30s`) into
//! the graph's syntax, and the graph refuses a timeout outside 1ms to 1h: writing them in one
//! place keeps `250ms` from coming out as `0.25s` in one system and `250ms` in another, and
//! makes the rounding (sub-millisecond values up to 1ms) and the clamp (over an hour down to
//! one, with a note) the same for all.

use std::time::Duration;

use crate::inventory::Inventory;
use crate::source::Origin;

/// The longest duration the graph takes for a timeout, a backoff delay or a hedge delay.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The smallest non-zero duration the graph takes.
pub const MIN_DURATION: Duration = Duration::from_millis(1);

/// A non-zero duration as the graph writes it, quoted: whole seconds as `"2s"`, anything else
/// in milliseconds (`"250ms"`, `"1500ms"`), a fraction of a millisecond rounded up (`"1ms"`
/// for 100µs). No clamp: see [`duration_in_range`].
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::toml_text::duration;
/// assert_eq!(duration(Duration::from_millis(1500)), "\"1500ms\"");
/// assert_eq!(duration(Duration::from_secs(15)), "\"15s\"");
/// assert_eq!(duration(Duration::from_micros(100)), "\"1ms\"");
/// ```
pub fn duration(d: Duration) -> String {
    format!("\"{}\"", bare_duration(d))
}

/// [`duration`] without the quotes, for texts that hold a duration (`full-jitter(base=25ms,
/// cap=250ms)`).
pub fn bare_duration(d: Duration) -> String {
    let millis = d.as_nanos().div_ceil(1_000_000).max(1);
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// `d` within the graph's range for a delay (1ms to 1h): a longer one is clamped to an hour
/// and an [`Inventory::unread`] note says so, at `origin`, about `what`.
pub fn duration_in_range(
    d: Duration,
    inv: &mut Inventory,
    origin: &Origin,
    what: &str,
) -> Duration {
    if d > MAX_DURATION {
        inv.unread(
            origin.clone(),
            what,
            format!(
                "{} is over the graph's limit of 1h: written as 1h (a call allowed that long \
                 has outlived every caller)",
                bare_duration(d)
            ),
        );
        MAX_DURATION
    } else {
        d.max(MIN_DURATION)
    }
}

/// A fully jittered backoff as the graph writes it, quoted: `"full-jitter(base=25ms,
/// cap=250ms)"`. The Envoy, Istio and gRPC readers all map their backoff to it.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::toml_text::full_jitter;
/// let text = full_jitter(Duration::from_millis(25), Duration::from_millis(250));
/// assert_eq!(text, "\"full-jitter(base=25ms, cap=250ms)\"");
/// ```
pub fn full_jitter(base: Duration, cap: Duration) -> String {
    format!(
        "\"full-jitter(base={}, cap={})\"",
        bare_duration(base),
        bare_duration(cap)
    )
}

/// A quoted TOML string (the readers' texts hold no quote or backslash, but a name from a file
/// might).
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML list of strings: `["connect-failure", "503"]`.
///
/// ```
/// assert_eq!(stormguard_mesh::toml_text::string_list(&["a", "b"]), "[\"a\", \"b\"]");
/// ```
pub fn string_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quoted(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// A share or ratio as the graph writes it: at most four decimals, no trailing zeros (`0.2`,
/// `1.0`).
pub fn number(value: f64) -> String {
    decimal(value, 4)
}

/// A TOML float with at most `decimals` decimals, no trailing zeros and always a point (`0.2`,
/// `1.0`, `12.5`): what [`number`] writes, with the precision the caller's figure has (a rate
/// from Prometheus, a weight).
///
/// ```
/// assert_eq!(stormguard_mesh::toml_text::decimal(12.3456, 3), "12.346");
/// assert_eq!(stormguard_mesh::toml_text::decimal(3.0, 3), "3.0");
/// ```
pub fn decimal(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = text.trim_end_matches('0');
    if text.ends_with('.') {
        format!("{text}0")
    } else {
        text.to_string()
    }
}

/// A measured latency (`ms` milliseconds, e.g. a p50 from Prometheus) as a duration text the
/// graph reads, unquoted: whole microseconds, at least 1us and at most 1h, in ms (`6.5ms`), us
/// (`250us`) or whole seconds (`2s`). Finer than [`bare_duration`], whose values are
/// configured timeouts in whole milliseconds.
///
/// ```
/// assert_eq!(stormguard_mesh::toml_text::latency(7.5), "7.5ms");
/// assert_eq!(stormguard_mesh::toml_text::latency(0.25), "250us");
/// ```
pub fn latency(ms: f64) -> String {
    let micros = (ms * 1000.0).round().clamp(1.0, 3_600_000_000.0) as u64;
    if micros % 1_000_000 == 0 {
        return format!("{}s", micros / 1_000_000);
    }
    if micros < 1000 {
        return format!("{micros}us");
    }
    let whole = micros / 1000;
    let fraction = micros % 1000;
    if fraction == 0 {
        format!("{whole}ms")
    } else {
        let fraction = format!("{fraction:03}");
        format!("{whole}.{}ms", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_and_clamp() {
        assert_eq!(bare_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(bare_duration(Duration::from_nanos(1_000_001)), "2ms");
        assert_eq!(bare_duration(Duration::from_secs(120)), "120s");
        let mut inv = Inventory::default();
        let origin = Origin::Default("test");
        let long = duration_in_range(Duration::from_secs(7200), &mut inv, &origin, "x");
        assert_eq!(long, MAX_DURATION);
        assert_eq!(inv.unread.len(), 1);
        assert_eq!(
            duration_in_range(Duration::from_micros(3), &mut inv, &origin, "x"),
            MIN_DURATION
        );
    }

    proptest::proptest! {
        /// The text reads back as the duration rounded up to the millisecond, and the graph
        /// accepts it as a timeout.
        #[test]
        fn durations_read_back_rounded_up(nanos in 1u64..3_600_000_000_000) {
            let d = Duration::from_nanos(nanos);
            let text = bare_duration(d);
            let back = crate::doc::parse_duration(&text).unwrap();
            proptest::prop_assert!(back >= d && back - d < Duration::from_millis(1), "{text}");
            proptest::prop_assert!(back.as_nanos() % 1_000_000 == 0);
        }
    }

    #[test]
    fn numbers_and_lists() {
        assert_eq!(number(0.2), "0.2");
        assert_eq!(number(1.0), "1.0");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(string_list::<&str>(&[]), "[]");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn latencies_are_written_as_the_graph_reads_them() {
        assert_eq!(latency(7.5), "7.5ms");
        assert_eq!(latency(45.0), "45ms");
        assert_eq!(latency(0.25), "250us");
        assert_eq!(latency(0.0), "1us");
        assert_eq!(latency(2000.0), "2s");
        assert_eq!(latency(1234.5678), "1234.568ms");
        for text in ["7.5ms", "250us", "1234.568ms"] {
            assert!(stormguard::duration::parse(text).is_ok(), "{text}");
        }
    }
}
