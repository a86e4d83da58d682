//! What the retry layer reads of a request head and of a response: deadline, idempotency, gRPC,
//! and how an attempt's answer classifies.

use super::*;

/// What the retry layer needs to know of a request head, read in one pass over its headers.
pub(super) struct RequestFacts {
    pub(super) deadline: Option<Deadline>,
    pub(super) idempotent: bool,
    pub(super) grpc: bool,
    /// Whether a deadline header (well-formed or not) came with the request.
    pub(super) budget_headers: bool,
}

impl RequestFacts {
    pub(super) fn read(parts: &http::request::Parts, now: Instant) -> Self {
        // A deadline set by an outer layer wins over the headers, whose values then need no
        // parsing (the outer layer wrote them from that deadline).
        let outer = parts.extensions.get::<Deadline>().copied();
        let mut budget: Option<Duration> = None;
        let mut keyed = false;
        let mut grpc = false;
        let mut budget_headers = false;
        for (name, value) in &parts.headers {
            if *name == http::header::CONTENT_TYPE {
                grpc = value.as_bytes().starts_with(b"application/grpc");
            } else if *name == IDEMPOTENCY_KEY {
                keyed |= is_idempotency_key(value);
            } else if outer.is_some() {
                budget_headers |= is_budget_header(name);
            } else if let Some(parsed) = budget_of(name, value) {
                budget_headers = true;
                match parsed {
                    Ok(b) => budget = Some(budget.map_or(b, |s| s.min(b))),
                    Err(error) => tracing::debug!(%error, "ignoring a malformed deadline header"),
                }
            }
        }
        let deadline = outer.or_else(|| budget.map(|b| Deadline::after(now, b)));
        RequestFacts {
            deadline,
            idempotent: keyed || is_idempotent_method(&parts.method),
            grpc,
            budget_headers,
        }
    }
}

/// Whether `name` is one of the deadline headers [`budget_of`] reads.
fn is_budget_header(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        BUDGET_HEADER | GRPC_TIMEOUT_HEADER | ENVOY_EXPECTED_TIMEOUT_HEADER
    )
}

/// The deadline a request carries: an extension set by an outer layer, else its budget headers.
pub(crate) fn incoming_deadline(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    now: Instant,
) -> Option<Deadline> {
    if let Some(deadline) = extensions.get::<Deadline>() {
        return Some(*deadline);
    }
    // The smallest of the well-formed budgets: one malformed header must not drop the deadline
    // the others carry, or the callee would work on for a caller that is gone.
    let mut budget: Option<Duration> = None;
    for (name, value) in headers {
        match budget_of(name, value) {
            Some(Ok(b)) => budget = Some(budget.map_or(b, |s| s.min(b))),
            Some(Err(error)) => tracing::debug!(%error, "ignoring a malformed deadline header"),
            None => {}
        }
    }
    budget.map(|b| Deadline::after(now, b))
}

/// `start + timeout` as a tokio instant, saturating instead of overflowing: a per-try timeout
/// of `Duration::MAX` means "none".
pub(crate) fn until(start: Instant, timeout: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(Deadline::after(start, timeout).instant())
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub(crate) fn response_result<RB>(response: &Response<RB>) -> AttemptResult {
    let status = response.status().as_u16();
    let headers = response.headers();
    if status == 200 {
        // A gRPC failure before any message is a "trailers-only" response: HTTP 200 with the
        // grpc-status in its headers, classified by its gRPC code (`retry_on` names them).
        // A code past 16 is UNKNOWN (2), as gRPC's own clients read it.
        if let Some(code) = find(headers, &GRPC_STATUS)
            .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
            .filter(|code| *code != 0)
        {
            return AttemptResult::Grpc {
                code: u8::try_from(code).ok().filter(|c| *c <= 16).unwrap_or(2),
                pushback: parse_grpc_pushback(headers.get(GRPC_RETRY_PUSHBACK)),
            };
        }
    }
    let retry_after = if status == 429 || status == 503 {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::UNIX_EPOCH + wall_offset()))
    } else {
        None
    };
    AttemptResult::Response {
        status,
        retry_after,
    }
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_RETRY_PUSHBACK: http::HeaderName =
    http::HeaderName::from_static("grpc-retry-pushback-ms");

/// Up to this many fields, [`find`] scans rather than looks up.
const SCANNED: usize = 16;

/// The first value of `name` in `headers`, as [`HeaderMap::get`] gives it.
///
/// Why: `grpc-status` is looked for in every 200 (by the retry layer, and again by the
/// balancer's health record), and is nearly never there. A lookup hashes the name byte by byte
/// first (some 150 instructions, callgrind); a scan of a response's few fields compares each
/// name by its kind first, and a standard name (most of a response's) is never a custom one.
/// A response with more fields is looked up, so a long head costs no more than before.
fn find<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Option<&'h http::HeaderValue> {
    if headers.len() > SCANNED {
        return headers.get(name);
    }
    headers
        .iter()
        .find_map(|(field, value)| (field == name).then_some(value))
}

/// Wall-clock time for HTTP dates in `Retry-After`. The one place the layers read the wall
/// clock: an HTTP date cannot be read against anything else.
fn wall_offset() -> Duration {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `find` answers as `HeaderMap::get` does, scanned or looked up: absent, once, after
    /// other custom names, the first of several values, and past `SCANNED` fields.
    #[test]
    fn find_gives_what_get_gives() {
        let mut maps = Vec::new();
        let mut map = HeaderMap::new();
        map.insert("server", "nginx".parse().unwrap());
        map.insert("content-length", "3".parse().unwrap());
        maps.push(map.clone());
        map.insert("grpc-message", "x".parse().unwrap());
        map.insert("grpc-statu", "9".parse().unwrap());
        maps.push(map.clone());
        map.append("grpc-status", "14".parse().unwrap());
        map.append("grpc-status", "0".parse().unwrap());
        maps.push(map.clone());
        for n in 0..SCANNED {
            map.insert(
                http::HeaderName::try_from(format!("x-field-{n}")).unwrap(),
                "v".parse().unwrap(),
            );
        }
        assert!(map.len() > SCANNED);
        maps.push(map.clone());
        map.remove("grpc-status");
        maps.push(map);
        for map in &maps {
            for name in [&GRPC_STATUS, &GRPC_RETRY_PUSHBACK, &http::header::SERVER] {
                assert_eq!(find(map, name), map.get(name), "{name} in {map:?}");
            }
        }
        assert_eq!(find(&maps[2], &GRPC_STATUS).unwrap(), "14");
    }
}
