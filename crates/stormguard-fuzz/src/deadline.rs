//! The deadline headers a request arrives with (`stormguard-budget-ms`, `grpc-timeout`,
//! `x-envoy-expected-rq-timeout-ms`), and the budget the proxy writes downstream from them.
//!
//! An input is a header block, one `name:value` a line (the value as it comes, spaces
//! included); lines whose name or value HTTP would not carry are left out.
//!
//! Promises checked: a budget read is never larger than the header said, whatever the header's
//! spelling (an independent reading of each value bounds it); of several headers the smallest
//! binds, and one malformed header is an error even beside valid ones; a budget written
//! downstream in either format reads back as no more than it was, and less by under one unit
//! of the format; a deadline made from any budget read has no more time than the budget.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use stormguard::deadline::{
    budget_from_headers, budget_of, budget_value, format_grpc_timeout, parse_grpc_timeout,
    write_budget, Deadline, DeadlinePolicy, BUDGET_HEADER, ENVOY_EXPECTED_TIMEOUT_HEADER,
    GRPC_TIMEOUT_HEADER,
};

/// Runs one input: a header block, `name:value` per line.
pub fn run(data: &[u8]) {
    let headers = header_block(data);
    let mut smallest: Option<Duration> = None;
    let mut malformed = false;
    for (name, value) in &headers {
        let Some(read) = budget_of(name, value) else {
            continue;
        };
        let said = said(name.as_str(), value.as_bytes());
        match read {
            Ok(budget) => {
                let Some(said) = said else {
                    panic!("{name}: {value:?} read as {budget:?}, but it says no whole budget");
                };
                assert!(
                    budget <= said,
                    "{name}: {value:?} read as {budget:?}, more than the {said:?} it says"
                );
                smallest = Some(smallest.map_or(budget, |s| s.min(budget)));
                check_written(budget);
            }
            Err(error) => {
                malformed = true;
                assert!(
                    error.to_string().contains(name.as_str()),
                    "the error does not name {name}: {error}"
                );
            }
        }
    }
    match budget_from_headers(&headers) {
        Ok(read) => {
            assert!(!malformed, "a malformed deadline header was let through");
            assert_eq!(read, smallest, "the smallest budget does not bind");
        }
        Err(_) => assert!(malformed, "refused headers that each read well"),
    }
}

/// The lines of `data` that make a header: a valid name before the first `:`, a valid value
/// after it.
fn header_block(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

/// What a deadline header says, read here apart from the library: the number before the unit
/// times the unit, with surrounding spaces and tabs left out; `None` when it is not a number
/// and a unit. An upper bound on what the library may read from it.
fn said(name: &str, value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let (digits, unit_nanos): (&str, u128) = match name {
        BUDGET_HEADER | ENVOY_EXPECTED_TIMEOUT_HEADER => (text, 1_000_000),
        GRPC_TIMEOUT_HEADER => {
            let unit = text.chars().last()?;
            let nanos = match unit {
                'H' => 3_600_000_000_000,
                'M' => 60_000_000_000,
                'S' => 1_000_000_000,
                'm' => 1_000_000,
                'u' => 1_000,
                'n' => 1,
                _ => return None,
            };
            (&text[..text.len() - 1], nanos)
        }
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = digits.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// What the proxy writes downstream for `budget`, read back.
fn check_written(budget: Duration) {
    let grpc = format_grpc_timeout(budget);
    let read = parse_grpc_timeout(&grpc).expect("a written grpc-timeout reads back");
    assert!(
        read <= budget,
        "{budget:?} written as {grpc} reads {read:?}"
    );
    let unit = said(
        GRPC_TIMEOUT_HEADER,
        format!("1{}", &grpc[grpc.len() - 1..]).as_bytes(),
    )
    .expect("the written unit is a unit");
    // Beyond the format's largest value the budget is clamped to it, not rounded.
    if budget - read >= unit {
        assert_eq!(
            grpc, "99999999H",
            "{budget:?} written as {grpc} loses a whole unit"
        );
    }
    let millis = budget_value(budget);
    let read = said(BUDGET_HEADER, millis.as_bytes()).expect("a written budget is digits");
    assert!(
        read <= budget,
        "{budget:?} written as {millis:?} reads {read:?}"
    );
    for grpc in [false, true] {
        let mut headers = HeaderMap::new();
        headers.insert(ENVOY_EXPECTED_TIMEOUT_HEADER, HeaderValue::from(u64::MAX));
        write_budget(&mut headers, budget, grpc);
        let read = budget_from_headers(&headers)
            .expect("what is written reads back")
            .expect("a budget is written");
        assert!(read <= budget, "{budget:?} written reads back as {read:?}");
    }
    // Any instant will do; tokio's reads the same clock as std's outside a paused runtime.
    let now = tokio::time::Instant::now().into_std();
    let deadline = Deadline::after(now, budget);
    assert!(deadline.remaining(now) <= budget);
    let policy = DeadlinePolicy::default();
    if let Some(timeout) = policy.attempt_timeout(Some(deadline), now) {
        assert!(timeout <= policy.per_try_timeout && timeout <= budget);
    }
}
