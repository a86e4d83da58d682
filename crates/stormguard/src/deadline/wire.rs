//! The wire formats a deadline travels in between hops.
//!
//! Three headers carry a remaining time in practice: stormguard's own millisecond budget, gRPC's
//! `grpc-timeout`, and Envoy's `x-envoy-expected-rq-timeout-ms`. Reading all three lets a
//! stormguard hop sit between gRPC clients and Envoy sidecars without losing the deadline; taking
//! the smallest keeps a hop from granting itself more time than any caller upstream is waiting.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header stormguard writes downstream: the remaining budget in whole milliseconds, as a
/// plain ASCII integer (`"250"`).
///
/// It exists because a relative budget survives clock skew between hosts, where an absolute
/// deadline would not.
pub const BUDGET_HEADER: &str = "stormguard-budget-ms";

/// gRPC's deadline header: 1 to 8 ASCII digits and one unit letter (`"250m"`), as the gRPC over
/// HTTP/2 specification defines it. Read so that a gRPC caller's deadline is honoured.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Envoy's header telling the upstream how long Envoy will wait, in whole milliseconds. Read so that
/// an Envoy hop's timeout bounds our budget; removed by [`write_budget`] because a stale, larger
/// value forwarded downstream would promise time that no longer exists.
pub const ENVOY_EXPECTED_TIMEOUT_HEADER: &str = "x-envoy-expected-rq-timeout-ms";

const BUDGET_NAME: HeaderName = HeaderName::from_static(BUDGET_HEADER);
const GRPC_TIMEOUT_NAME: HeaderName = HeaderName::from_static(GRPC_TIMEOUT_HEADER);
const ENVOY_EXPECTED_TIMEOUT_NAME: HeaderName =
    HeaderName::from_static(ENVOY_EXPECTED_TIMEOUT_HEADER);

/// The most digits a `grpc-timeout` value may have, per the gRPC specification.
const GRPC_MAX_DIGITS: usize = 8;
const GRPC_MAX_VALUE: u128 = 99_999_999;

/// What a well-formed `grpc-timeout` looks like, for error messages.
const GRPC_FORMAT: &str =
    "1 to 8 ASCII digits followed by one unit of H, M, S, m, u or n (for example `250m`)";
/// What a well-formed millisecond header looks like, for error messages.
const MILLIS_FORMAT: &str = "a non-negative integer number of milliseconds (for example `250`)";

/// Why a deadline could not be read from the wire.
///
/// A malformed deadline is an error rather than "no deadline" because silently dropping it would
/// let a hop work longer than its caller waits, the very waste deadlines exist to prevent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    /// A `grpc-timeout` value did not follow the gRPC specification.
    #[error("grpc-timeout value `{value}` is malformed ({problem}): expected {GRPC_FORMAT}")]
    MalformedGrpcTimeout {
        /// The value as received (lossily decoded when it was not UTF-8).
        value: String,
        /// Which rule the value broke.
        problem: &'static str,
    },
    /// A deadline header carried a value that could not be parsed.
    #[error("header `{header}` has malformed value `{value}`: expected {expected}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// The value as received (lossily decoded when it was not UTF-8).
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by exactly one unit, `H` (hours),
/// `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds).
///
/// Zero (`"0n"`) is accepted although the specification says "positive": it means the caller's
/// time is already spent, which a hop should learn rather than reject. Whitespace, signs and
/// fractions are rejected. The largest value, `99999999H`, fits in a [`Duration`], so parsing
/// never overflows.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m").unwrap(), Duration::from_millis(250));
/// assert!(parse_grpc_timeout("123456789m").is_err()); // 9 digits
/// ```
pub fn parse_grpc_timeout(s: &str) -> Result<Duration, DeadlineError> {
    let malformed = |problem| DeadlineError::MalformedGrpcTimeout {
        value: s.to_owned(),
        problem,
    };
    let Some(unit) = s.chars().last() else {
        return Err(malformed("empty value"));
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() {
        return Err(malformed("no digits before the unit"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            "the value before the unit is not all ASCII digits",
        ));
    }
    if digits.len() > GRPC_MAX_DIGITS {
        return Err(malformed("more than 8 digits"));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| malformed("the digits do not form an integer"))?;
    match unit {
        'H' => Ok(Duration::from_secs(value * 3600)),
        'M' => Ok(Duration::from_secs(value * 60)),
        'S' => Ok(Duration::from_secs(value)),
        'm' => Ok(Duration::from_millis(value)),
        'u' => Ok(Duration::from_micros(value)),
        'n' => Ok(Duration::from_nanos(value)),
        _ => Err(malformed("unknown unit")),
    }
}

/// Formats a duration as a `grpc-timeout` value in the finest unit whose count fits in 8 digits.
///
/// The count is rounded DOWN: a callee must never be told it has more time than remains, so
/// `parse_grpc_timeout(&format_grpc_timeout(d)) <= d`, and the loss is less than one of the chosen
/// unit (at most a millisecond for anything under a day). Durations beyond `99999999H` (about
/// 11 400 years) are clamped to it, the largest value the format can carry.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::deadline::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(3600)), "3600000m");
/// ```
pub fn format_grpc_timeout(d: Duration) -> String {
    const UNITS: [(char, u128); 6] = [
        ('n', 1),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ];
    let nanos = d.as_nanos();
    for (unit, unit_nanos) in UNITS {
        let count = nanos / unit_nanos;
        if count <= GRPC_MAX_VALUE {
            return format!("{count}{unit}");
        }
    }
    format!("{GRPC_MAX_VALUE}H")
}

/// Reads the caller's remaining budget from every deadline header it understands
/// ([`BUDGET_HEADER`], [`GRPC_TIMEOUT_HEADER`], [`ENVOY_EXPECTED_TIMEOUT_HEADER`]).
///
/// Returns `Ok(None)` when none is present. When several are present, or one is repeated, the
/// SMALLEST wins: each is a promise that someone upstream stops waiting by then, and the earliest
/// such promise is the one that binds. Surrounding spaces and tabs are ignored; anything else that
/// is malformed is an error naming the header and the value, checked even when a smaller valid
/// value is also present, so that a broken upstream is noticed rather than masked.
///
/// ```rust
/// use std::time::Duration;
/// use http::HeaderMap;
/// use stormguard::deadline::budget_from_headers;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("stormguard-budget-ms", "900".parse().unwrap());
/// headers.insert("grpc-timeout", "300m".parse().unwrap());
/// assert_eq!(budget_from_headers(&headers).unwrap(), Some(Duration::from_millis(300)));
/// ```
pub fn budget_from_headers(headers: &HeaderMap) -> Result<Option<Duration>, DeadlineError> {
    let mut smallest: Option<Duration> = None;
    // One pass over the headers, comparing names: a request carries few headers, and hashing
    // three custom names for a lookup each costs more than that on every request.
    for (name, value) in headers {
        if let Some(budget) = budget_of(name, value) {
            let budget = budget?;
            smallest = Some(smallest.map_or(budget, |s| s.min(budget)));
        }
    }
    Ok(smallest)
}

/// The budget one header carries: `None` when `name` is not a deadline header, else its value
/// parsed (or why it could not be). For mechanisms that already walk the headers once for other
/// reasons; [`budget_from_headers`] is this over every header, keeping the smallest.
///
/// ```rust
/// use http::{HeaderName, HeaderValue};
/// use std::time::Duration;
/// use stormguard::deadline::budget_of;
///
/// let grpc = HeaderName::from_static("grpc-timeout");
/// assert_eq!(budget_of(&grpc, &HeaderValue::from_static("2S")).unwrap().unwrap(), Duration::from_secs(2));
/// assert!(budget_of(&http::header::ACCEPT, &HeaderValue::from_static("*/*")).is_none());
/// ```
pub fn budget_of(
    name: &HeaderName,
    value: &HeaderValue,
) -> Option<Result<Duration, DeadlineError>> {
    let header = if *name == BUDGET_NAME {
        BUDGET_HEADER
    } else if *name == GRPC_TIMEOUT_NAME {
        GRPC_TIMEOUT_HEADER
    } else if *name == ENVOY_EXPECTED_TIMEOUT_NAME {
        ENVOY_EXPECTED_TIMEOUT_HEADER
    } else {
        return None;
    };
    Some(parse_header_value(header, value))
}

fn parse_header_value(
    header: &'static str,
    value: &HeaderValue,
) -> Result<Duration, DeadlineError> {
    let expected = if header == GRPC_TIMEOUT_HEADER {
        GRPC_FORMAT
    } else {
        MILLIS_FORMAT
    };
    let malformed = || DeadlineError::MalformedHeader {
        header,
        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        expected,
    };
    let text = value
        .to_str()
        .map_err(|_| malformed())?
        .trim_matches([' ', '\t']);
    if header == GRPC_TIMEOUT_HEADER {
        return parse_grpc_timeout(text).map_err(|_| malformed());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    // All digits, so the only failure left is overflow: far more than any real budget, which
    // would more likely be a bug upstream than a deadline, so it is reported, not saturated.
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| malformed())
}

/// Writes `budget` downstream, replacing whatever deadline headers the request arrived with.
///
/// Sets [`BUDGET_HEADER`] to whole milliseconds, rounded DOWN so the callee never gets more time
/// than remains. When `grpc` is true also sets [`GRPC_TIMEOUT_HEADER`] (see
/// [`format_grpc_timeout`]); when it is false an incoming `grpc-timeout` is removed, as is
/// [`ENVOY_EXPECTED_TIMEOUT_HEADER`] always, so that no stale, larger value is forwarded to a
/// callee that reads only that header.
///
/// ```rust
/// use std::time::Duration;
/// use http::HeaderMap;
/// use stormguard::deadline::write_budget;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-envoy-expected-rq-timeout-ms", "15000".parse().unwrap());
/// write_budget(&mut headers, Duration::from_micros(250_900), true);
/// assert_eq!(headers["stormguard-budget-ms"], "250");
/// assert_eq!(headers["grpc-timeout"], "250900u");
/// assert!(!headers.contains_key("x-envoy-expected-rq-timeout-ms"));
/// ```
pub fn write_budget(headers: &mut HeaderMap, budget: Duration, grpc: bool) {
    write_budget_value(headers, budget, budget_value(budget), grpc);
}

/// The [`BUDGET_HEADER`] value for `budget`: whole milliseconds, rounded down, clamped so that
/// every value written can be read back by [`budget_from_headers`]. Made once, it can be written
/// on many requests with [`write_budget_value`] without formatting it again.
///
/// ```rust
/// use std::time::Duration;
/// assert_eq!(stormguard::deadline::budget_value(Duration::from_micros(1999)), "1");
/// ```
pub fn budget_value(budget: Duration) -> HeaderValue {
    let millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    // Under steady load the budgets written are a few values (a route's timeout less the
    // reserve, and that less a millisecond or so): each thread keeps the last few made, so that
    // most requests take a shared copy instead of formatting and allocating one.
    thread_local! {
        static RECENT: std::cell::RefCell<[Option<(u64, HeaderValue)>; RECENT_BUDGETS]> =
            const { std::cell::RefCell::new([const { None }; RECENT_BUDGETS]) };
    }
    let slot = (millis % RECENT_BUDGETS as u64) as usize;
    RECENT
        .try_with(|recent| {
            let mut recent = recent.borrow_mut();
            match &recent[slot] {
                Some((made, value)) if *made == millis => value.clone(),
                _ => {
                    let value = HeaderValue::from(millis);
                    recent[slot] = Some((millis, value.clone()));
                    value
                }
            }
        })
        .unwrap_or_else(|_| HeaderValue::from(millis))
}

/// How many budget header values [`budget_value`] keeps per thread.
const RECENT_BUDGETS: usize = 4;

/// [`write_budget`] with the [`BUDGET_HEADER`] value already made by [`budget_value`]`(budget)`.
pub fn write_budget_value(
    headers: &mut HeaderMap,
    budget: Duration,
    value: HeaderValue,
    grpc: bool,
) {
    insert_budget_value(headers, budget, value, grpc, true);
}

/// [`write_budget_value`] for a caller that has read every header already: `stale` says whether
/// a [`GRPC_TIMEOUT_HEADER`] or [`ENVOY_EXPECTED_TIMEOUT_HEADER`] may be present. The retry
/// layer's prologue walks the headers anyway, so that the request nearly every caller sends
/// (no deadline header) is spared a second walk comparing each name with both.
pub(crate) fn insert_budget_value(
    headers: &mut HeaderMap,
    budget: Duration,
    value: HeaderValue,
    grpc: bool,
    stale: bool,
) {
    headers.insert(BUDGET_NAME, value);
    if grpc {
        let value = HeaderValue::try_from(format_grpc_timeout(budget))
            .expect("digits and a unit letter are a valid header value");
        headers.insert(GRPC_TIMEOUT_NAME, value);
    }
    // Removing an absent header still hashes its name; a scan of the few headers a request
    // carries is cheaper, and nearly always finds nothing to remove.
    let is_stale = |name: &HeaderName| {
        (!grpc && *name == GRPC_TIMEOUT_NAME) || *name == ENVOY_EXPECTED_TIMEOUT_NAME
    };
    if stale && headers.keys().any(is_stale) {
        if !grpc {
            headers.remove(GRPC_TIMEOUT_NAME);
        }
        headers.remove(ENVOY_EXPECTED_TIMEOUT_NAME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn grpc_timeout_parses_every_unit() {
        let cases = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("0n", Duration::ZERO),
            ("00000001S", Duration::from_secs(1)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_grpc_timeout(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn grpc_timeout_rejects_malformed_values() {
        for text in [
            "",
            "m",
            "123456789m",
            "-5m",
            "+5m",
            "5",
            "5s",
            "5ms",
            "5x",
            "5 m",
            " 5m",
            "5m ",
            "1.5S",
            "５m",
            "5µ",
        ] {
            let err = parse_grpc_timeout(text).expect_err(text);
            assert!(
                matches!(&err, DeadlineError::MalformedGrpcTimeout { value, .. } if value == text),
                "{text}: {err}"
            );
            assert!(err.to_string().contains("H, M, S, m, u or n"), "{err}");
        }
    }

    #[test]
    fn grpc_timeout_formats_in_the_finest_fitting_unit() {
        let cases = [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_nanos(100_000_999), "100000u"),
            (Duration::from_secs(3600), "3600000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(99_999_999 * 60 + 59), "99999999M"),
            (Duration::from_secs(100_000_000 * 60), "1666666H"),
            (Duration::MAX, "99999999H"),
        ];
        for (d, want) in cases {
            assert_eq!(format_grpc_timeout(d), want, "{d:?}");
        }
    }

    #[test]
    fn headers_absent_means_no_budget() {
        assert_eq!(budget_from_headers(&HeaderMap::new()), Ok(None));
        assert_eq!(budget_from_headers(&headers(&[("x-other", "5")])), Ok(None));
    }

    #[test]
    fn the_smallest_header_wins() {
        let cases: [(&[(&str, &str)], u64); 6] = [
            (&[(BUDGET_HEADER, "250")], 250),
            (&[(GRPC_TIMEOUT_HEADER, "1S")], 1000),
            (&[(ENVOY_EXPECTED_TIMEOUT_HEADER, "15000")], 15_000),
            (
                &[(BUDGET_HEADER, "900"), (GRPC_TIMEOUT_HEADER, "300m")],
                300,
            ),
            (
                &[
                    (BUDGET_HEADER, "900"),
                    (GRPC_TIMEOUT_HEADER, "1S"),
                    (ENVOY_EXPECTED_TIMEOUT_HEADER, "120"),
                ],
                120,
            ),
            (&[(BUDGET_HEADER, "900"), (BUDGET_HEADER, " 40\t")], 40),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                budget_from_headers(&headers(pairs)),
                Ok(Some(Duration::from_millis(want))),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_errors_naming_header_and_value() {
        let cases: [(&str, &str); 7] = [
            (BUDGET_HEADER, "-5"),
            (BUDGET_HEADER, "+5"),
            (BUDGET_HEADER, ""),
            (BUDGET_HEADER, "99999999999999999999999"),
            (ENVOY_EXPECTED_TIMEOUT_HEADER, "1.5"),
            (GRPC_TIMEOUT_HEADER, "123456789m"),
            (GRPC_TIMEOUT_HEADER, "5q"),
        ];
        for (name, value) in cases {
            // A valid smaller value beside it does not hide the broken one.
            let mut map = headers(&[(BUDGET_HEADER, "1")]);
            map.append(name, HeaderValue::from_static(value));
            let err = budget_from_headers(&map).expect_err(value);
            assert_eq!(
                err,
                DeadlineError::MalformedHeader {
                    header: match name {
                        BUDGET_HEADER => BUDGET_HEADER,
                        GRPC_TIMEOUT_HEADER => GRPC_TIMEOUT_HEADER,
                        _ => ENVOY_EXPECTED_TIMEOUT_HEADER,
                    },
                    value: value.to_owned(),
                    expected: if name == GRPC_TIMEOUT_HEADER {
                        GRPC_FORMAT
                    } else {
                        MILLIS_FORMAT
                    },
                }
            );
            let message = err.to_string();
            assert!(
                message.contains(name) && message.contains(value),
                "{message}"
            );
        }
        let mut map = HeaderMap::new();
        map.insert(BUDGET_HEADER, HeaderValue::from_bytes(b"\xff1").unwrap());
        assert!(budget_from_headers(&map)
            .unwrap_err()
            .to_string()
            .contains('\u{fffd}'));
    }

    #[test]
    fn write_budget_replaces_incoming_deadlines() {
        let mut map = headers(&[
            (BUDGET_HEADER, "9000"),
            (BUDGET_HEADER, "8000"),
            (GRPC_TIMEOUT_HEADER, "9S"),
            (ENVOY_EXPECTED_TIMEOUT_HEADER, "15000"),
        ]);
        write_budget(&mut map, Duration::from_micros(1_999), true);
        assert_eq!(map.get_all(BUDGET_HEADER).iter().count(), 1);
        assert_eq!(map[BUDGET_HEADER], "1");
        assert_eq!(map[GRPC_TIMEOUT_HEADER], "1999000n");
        assert!(!map.contains_key(ENVOY_EXPECTED_TIMEOUT_HEADER));
        assert_eq!(
            budget_from_headers(&map),
            Ok(Some(Duration::from_millis(1)))
        );

        write_budget(&mut map, Duration::from_millis(250), false);
        assert_eq!(map[BUDGET_HEADER], "250");
        assert!(!map.contains_key(GRPC_TIMEOUT_HEADER));

        write_budget(&mut map, Duration::ZERO, true);
        assert_eq!(map[BUDGET_HEADER], "0");
        assert_eq!(map[GRPC_TIMEOUT_HEADER], "0n");

        write_budget(&mut map, Duration::MAX, true);
        assert_eq!(map[BUDGET_HEADER], u64::MAX.to_string().as_str());
        assert_eq!(map[GRPC_TIMEOUT_HEADER], "99999999H");
        write_budget(&mut map, Duration::MAX, false);
        assert_eq!(
            budget_from_headers(&map),
            Ok(Some(Duration::from_millis(u64::MAX)))
        );
    }

    proptest! {
        #[test]
        fn grpc_format_round_trips_rounding_down_by_less_than_one_unit(
            secs in 0u64..=(99_999_999 * 3600), nanos in 0u32..1_000_000_000,
        ) {
            let d = Duration::new(secs, nanos);
            let text = format_grpc_timeout(d);
            let back = parse_grpc_timeout(&text).unwrap();
            prop_assert!(back <= d, "{text} {back:?} > {d:?}");
            let unit = match text.chars().last().unwrap() {
                'n' => Duration::from_nanos(1),
                'u' => Duration::from_micros(1),
                'm' => Duration::from_millis(1),
                'S' => Duration::from_secs(1),
                'M' => Duration::from_secs(60),
                _ => Duration::from_secs(3600),
            };
            prop_assert!(d - back < unit, "{d:?} -> {text}");
            prop_assert!(text.len() <= GRPC_MAX_DIGITS + 1);
        }

        #[test]
        fn grpc_parse_accepts_exactly_the_spec_grammar(text in "[0-9+-]{0,10}[HMSmunsx ]?") {
            let digits = &text[..text.len().saturating_sub(1)];
            let valid = text.len() >= 2
                && "HMSmun".contains(text.chars().last().unwrap())
                && digits.len() <= 8
                && digits.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(parse_grpc_timeout(&text).is_ok(), valid, "{}", text);
        }

        #[test]
        fn written_budget_reads_back_rounded_down_to_the_millisecond(
            micros in 0u64..=u64::MAX / 1000, grpc in any::<bool>(),
        ) {
            let budget = Duration::from_micros(micros);
            let mut map = HeaderMap::new();
            write_budget(&mut map, budget, grpc);
            let back = budget_from_headers(&map).unwrap().unwrap();
            let millis = Duration::from_millis(budget.as_millis() as u64);
            prop_assert!(millis <= budget && budget - millis < Duration::from_millis(1));
            let want = if grpc {
                millis.min(parse_grpc_timeout(&format_grpc_timeout(budget)).unwrap())
            } else {
                millis
            };
            prop_assert_eq!(back, want);
        }
    }
}
