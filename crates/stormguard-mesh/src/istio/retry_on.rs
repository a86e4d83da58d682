//! `retries.retryOn`: Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` names and bare
//! HTTP statuses, as the graph's `retry_on` conditions.
//!
//! ## Why not one name for one name
//! The graph's conditions are narrow (`5xx` is statuses 500-599 only; `reset` is a failed
//! connection only), Envoy's are wide. Envoy's `wouldRetryFromReset`
//! (`source/common/router/retry_state_impl.cc`) retries *any* reset, a failed connection
//! included, under `reset`, `5xx` and `gateway-error` alike ("we count an upstream reset as a
//! 5xx"), and a per-try timeout is such a reset (`onPerTryTimeoutCommon` calls
//! `maybeRetryReset(LocalReset, ...)`), so each of those three maps to several graph
//! conditions, `timeout` among them when a per-try timeout is set. The other names map one to
//! one; the ones that depend on response headers stormguard does not model are listed as
//! unread.

/// What a `retryOn` text means in graph conditions.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Mapped {
    /// The conditions, in first-mention order, without repeats.
    pub conditions: Vec<String>,
    /// Names read but not mapped, with why.
    pub unread: Vec<(String, &'static str)>,
}

impl Mapped {
    fn push(&mut self, condition: &str) {
        if !self.conditions.iter().any(|c| c == condition) {
            self.conditions.push(condition.to_string());
        }
    }
}

/// Envoy's wide conditions: each also retries every failed connection and stream (and a
/// per-try timeout, see the module's doc).
const RESETS: [&str; 3] = ["connect-failure", "refused-stream", "reset"];

/// The names Istio's validation accepts (`pkg/config/validation`, `supportedRetryOnPolicies`).
const KNOWN: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Maps a `retryOn` text (`"5xx,reset,503"`). `per_try_timeout`: whether the route sets
/// `perTryTimeout`, whose expiry Envoy retries under `5xx`, `gateway-error` and `reset` (without
/// it the attempt's timeout is the route's, and "a request that times out will not be
/// retried").
///
/// # Errors
/// The first name Istio refuses, with the names it accepts.
pub(super) fn map(text: &str, per_try_timeout: bool) -> Result<Mapped, String> {
    let mut out = Mapped::default();
    let mut wide = false;
    let mut codes_listed = false;
    let mut codes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // Istio moves every integer that is an HTTP status to `retriable_status_codes` and
        // turns on `retriable-status-codes` (`retry.go` `parseRetryOn`).
        if let Ok(status) = part.parse::<u16>() {
            match status {
                400..=599 => codes.push(part.to_string()),
                100..=399 => out.unread.push((
                    part.to_string(),
                    "a status below 400 is a success or a redirect: the graph retries only \
                     failures",
                )),
                _ => return Err(format!("{part} is not an HTTP status")),
            }
            continue;
        }
        match part {
            "5xx" | "gateway-error" | "reset" => {
                out.push(part);
                RESETS.iter().for_each(|c| out.push(c));
                wide = true;
            }
            // A failed connection is also "before the request" for Envoy.
            "reset-before-request" => {
                out.push("reset-before-request");
                out.push("connect-failure");
            }
            "connect-failure" | "refused-stream" => out.push(part),
            "retriable-4xx" => out.push("409"),
            "retriable-status-codes" => codes_listed = true,
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable" => out.push(part),
            "retriable-headers" => out.unread.push((
                part.to_string(),
                "retries responses whose headers match retriable_headers, which a \
                 VirtualService cannot set: it retries nothing here",
            )),
            "envoy-ratelimited" => out.unread.push((
                part.to_string(),
                "retries responses carrying x-envoy-ratelimited, which the graph does not model",
            )),
            "http3-post-connect-failure" => out.unread.push((
                part.to_string(),
                "an HTTP/3 failure after connecting, which the graph does not model",
            )),
            _ => {
                return Err(format!(
                    "{part:?} is not a retry condition Istio accepts: use {} or an HTTP status",
                    KNOWN.join(", ")
                ))
            }
        }
    }
    if codes_listed && codes.is_empty() {
        out.unread.push((
            "retriable-status-codes".to_string(),
            "lists no status code, so it retries nothing",
        ));
    }
    codes.iter().for_each(|c| out.push(c));
    if wide && per_try_timeout {
        out.push("timeout");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stormguard::classify::Condition;

    fn conditions(text: &str, per_try: bool) -> Vec<String> {
        map(text, per_try).unwrap().conditions
    }

    #[test]
    fn wide_names_cover_resets_and_per_try_timeouts() {
        assert_eq!(
            conditions("5xx", true),
            [
                "5xx",
                "connect-failure",
                "refused-stream",
                "reset",
                "timeout"
            ]
        );
        assert_eq!(
            conditions("gateway-error", false),
            [
                "gateway-error",
                "connect-failure",
                "refused-stream",
                "reset"
            ]
        );
        // connect-failure and refused-stream are not resets of a started request: a per-try
        // timeout is not retried under them.
        assert_eq!(
            conditions("connect-failure,refused-stream", true),
            ["connect-failure", "refused-stream"]
        );
    }

    #[test]
    fn statuses_and_grpc_names() {
        assert_eq!(
            conditions("503, retriable-4xx ,unavailable", false),
            ["409", "unavailable", "503"]
        );
        let mapped = map("retriable-status-codes,envoy-ratelimited", false).unwrap();
        assert!(mapped.conditions.is_empty());
        assert_eq!(mapped.unread.len(), 2);
    }

    #[test]
    fn every_condition_written_is_one_the_graph_accepts() {
        let all = KNOWN.join(",") + ",429,503";
        for condition in conditions(&all, true) {
            condition
                .parse::<Condition>()
                .unwrap_or_else(|e| panic!("{condition}: {e}"));
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        let error = map("5xx,retry-everything", false).unwrap_err();
        assert!(error.contains("retry-everything"), "{error}");
        assert!(map("999", false).is_err());
    }
}
