//! `retries.retryOn`: Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` names and bare
//! HTTP statuses, as the graph's `retry_on` conditions.
//!
//! Istio hands the names to Envoy as they are, so each name means what the Envoy reader reads
//! (`crate::envoy_names`, which says why `reset`, `5xx` and `gateway-error` are several graph
//! conditions); this module adds Istio's own part: integers are statuses, and a name Istio's
//! validation refuses is an error.

use crate::envoy_names::{meaning, Meaning, NAMES};

/// What a `retryOn` text means in graph conditions.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Mapped {
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

/// Maps a `retryOn` text (`"5xx,reset,503"`). `per_try_timeout`: whether the route sets
/// `perTryTimeout`, whose expiry Envoy retries under `5xx`, `gateway-error` and `reset` (without
/// it the attempt's timeout is the route's, and "a request that times out will not be
/// retried").
///
/// # Errors
/// The first name Istio refuses, with the names it accepts.
pub(crate) fn map(text: &str, per_try_timeout: bool) -> Result<Mapped, String> {
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
        match meaning(part) {
            Meaning::Conditions {
                conditions,
                retries_per_try_timeout,
            } => {
                conditions.iter().for_each(|c| out.push(c));
                wide |= retries_per_try_timeout;
            }
            Meaning::RetriableStatusCodes => codes_listed = true,
            // Envoy's reason is its `retriable_headers`, which Istio does not expose.
            Meaning::Unmapped(_) if part == "retriable-headers" => out.unread.push((
                part.to_string(),
                "retries responses whose headers match retriable_headers, which a \
                 VirtualService cannot set: it retries nothing here",
            )),
            Meaning::Unmapped(why) => out.unread.push((part.to_string(), why)),
            Meaning::Unknown => {
                return Err(format!(
                    "{part:?} is not a retry condition Istio accepts: use {} or an HTTP status",
                    NAMES.join(", ")
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
        let all = NAMES.join(",") + ",429,503";
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
