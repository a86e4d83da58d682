//! stormguard's `retry_on` conditions in each system's own words: the inverse of the readers'
//! mapping (docs/import-mapping.md; Envoy's and Istio's names in `crate::envoy_names`), with
//! what a system cannot say.

use stormguard::classify::{grpc_name, Condition, RetryOn};

/// The gRPC statuses Envoy's (and Istio's, Linkerd's) `retry_on` can name
/// (`x-envoy-retry-grpc-on`): cancelled, deadline-exceeded, resource-exhausted, internal,
/// unavailable.
pub const ENVOY_GRPC: [u8; 5] = [1, 4, 8, 13, 14];

/// A `retry_on` in Envoy's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvoyRetryOn {
    /// Condition names (`connect-failure`, `5xx`, `unavailable`).
    pub names: Vec<String>,
    /// Single statuses (Envoy's `retriable_status_codes`, Istio's integers in `retryOn`).
    pub statuses: Vec<u16>,
    /// What cannot be said, and what Envoy does instead.
    pub unexpressed: Vec<String>,
}

/// `retry_on` in Envoy's (and Istio's) names. `per_try_timeout`: whether attempts have a
/// timeout of their own (Envoy retries its expiry under `reset`, `5xx` and `gateway-error`).
pub fn envoy(retry_on: &RetryOn, per_try_timeout: bool) -> EnvoyRetryOn {
    let mut out = EnvoyRetryOn::default();
    for condition in retry_on.conditions() {
        match condition {
            Condition::ConnectFailure => out.names.push("connect-failure".into()),
            Condition::RefusedStream => out.names.push("refused-stream".into()),
            Condition::Reset => out.names.push("reset".into()),
            Condition::ResetBeforeRequest => out.names.push("reset-before-request".into()),
            Condition::Status5xx => out.names.push("5xx".into()),
            Condition::GatewayError => out.names.push("gateway-error".into()),
            Condition::Status(status) => out.statuses.push(status),
            Condition::Grpc(code) if ENVOY_GRPC.contains(&code) => out
                .names
                .push(grpc_name(u32::from(code)).unwrap_or("unknown").into()),
            Condition::Grpc(code) => out.unexpressed.push(format!(
                "gRPC status {} is not one Envoy retries on (only cancelled, deadline-exceeded, \
                 internal, resource-exhausted, unavailable): not written",
                grpc_name(u32::from(code)).unwrap_or("unknown")
            )),
            Condition::Timeout => {}
        }
    }
    // Envoy's 5xx and gateway-error also retry every reset (connect failures, refused
    // streams, disconnects): without all of those, the statuses are said one by one.
    let resets =
        retry_on.connect_failure() && retry_on.refused_stream() && retry_on.reset_after_request();
    if !resets {
        for (condition, range) in [
            (Condition::Status5xx, 500..=599),
            (Condition::GatewayError, 502..=504),
        ] {
            if retry_on.has(condition) {
                let name = condition.to_string();
                out.names.retain(|n| *n != name);
                out.statuses.extend(range);
            }
        }
        out.statuses.sort_unstable();
        out.statuses.dedup();
    }
    // Envoy's `reset` is any failed connection or stream, its `reset-before-request` includes
    // a failed connect (`envoy_names`): said without those, they retry more.
    if retry_on.reset_after_request() && !(retry_on.connect_failure() && retry_on.refused_stream())
    {
        out.unexpressed.push(
            "reset: Envoy's (and Istio's) reset also retries connect failures and refused \
             streams"
                .into(),
        );
    } else if retry_on.has(Condition::ResetBeforeRequest) && !retry_on.connect_failure() {
        out.unexpressed.push(
            "reset-before-request: Envoy's (and Istio's) reset-before-request also retries \
             connect failures"
                .into(),
        );
    }
    let covers_timeout = retry_on.reset_after_request();
    if retry_on.timeout() && !covers_timeout {
        out.unexpressed.push(
            "timeout: Envoy retries an attempt's timeout only under reset, 5xx or \
             gateway-error, which would retry more: not written"
                .into(),
        );
    }
    if !retry_on.timeout() && covers_timeout && per_try_timeout {
        out.unexpressed.push(
            "no timeout: Envoy's reset, 5xx and gateway-error also retry an attempt that \
             reached its per-try timeout"
                .into(),
        );
    }
    out
}

/// Every single status `retry_on` names, `5xx` and `gateway-error` spelled out (Gateway API's
/// `codes`).
pub fn statuses(retry_on: &RetryOn) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for condition in retry_on.conditions() {
        match condition {
            Condition::Status(s) => out.push(s),
            Condition::Status5xx => out.extend(500..=599),
            Condition::GatewayError => out.extend(502..=504),
            _ => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The gRPC status names `retry_on` lists, as a service config writes them (`UNAVAILABLE`).
pub fn grpc_upper(retry_on: &RetryOn) -> Vec<String> {
    retry_on
        .conditions()
        .into_iter()
        .filter_map(|c| match c {
            Condition::Grpc(code) => grpc_name(u32::from(code)),
            _ => None,
        })
        .map(|name| name.to_ascii_uppercase().replace('-', "_"))
        .collect()
}

/// The conditions of `retry_on` that are not gRPC statuses, as text.
pub fn non_grpc(retry_on: &RetryOn) -> Vec<String> {
    retry_on
        .conditions()
        .into_iter()
        .filter(|c| !matches!(c, Condition::Grpc(_)))
        .map(|c| c.to_string())
        .collect()
}

/// Whether two Envoy `retry_on` texts (Istio's `retryOn` is handed to Envoy as it is) mean the
/// same graph conditions, as the import reads them: an edit keeps the file's own spelling
/// (`5xx`) where the graph's (`connect-failure,refused-stream,reset,5xx`) says the same.
pub(super) fn same_retry_on(file: &str, written: &str) -> bool {
    let read = |text: &str| {
        crate::istio::retry_on::map(text, true).ok().map(|m| {
            let mut conditions = m.conditions;
            conditions.sort();
            (conditions, m.unread.is_empty())
        })
    };
    match (read(file), read(written)) {
        (Some((a, true)), Some((b, true))) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_names_statuses_and_what_it_cannot_say() {
        let on = RetryOn::parse_list([
            "connect-failure",
            "reset",
            "timeout",
            "503",
            "unavailable",
            "data-loss",
        ])
        .unwrap();
        let e = envoy(&on, true);
        assert_eq!(e.names, ["connect-failure", "reset", "unavailable"]);
        assert_eq!(e.statuses, [503]);
        assert_eq!(e.unexpressed.len(), 2, "{:?}", e.unexpressed);
        assert!(e.unexpressed[0].contains("data-loss"));
        // Envoy's reset would also retry refused streams.
        assert!(
            e.unexpressed[1].starts_with("reset:"),
            "{:?}",
            e.unexpressed
        );
        let all_resets = RetryOn::parse_list(["reset", "connect-failure", "refused-stream"]);
        assert!(envoy(&all_resets.unwrap(), false).unexpressed.is_empty());
        let before = RetryOn::parse_list(["reset-before-request"]).unwrap();
        assert!(envoy(&before, false).unexpressed[0].starts_with("reset-before-request:"));
        let gateway = envoy(&RetryOn::parse_list(["gateway-error"]).unwrap(), false);
        assert!(gateway.names.is_empty());
        assert_eq!(gateway.statuses, [502, 503, 504]);
        let only_timeout = envoy(&RetryOn::parse_list(["timeout"]).unwrap(), true);
        assert!(only_timeout.unexpressed[0].starts_with("timeout"));
    }

    #[test]
    fn statuses_spell_out_classes() {
        let on = RetryOn::parse_list(["gateway-error", "409"]).unwrap();
        assert_eq!(statuses(&on), [409, 502, 503, 504]);
        assert_eq!(
            grpc_upper(&RetryOn::parse_list(["deadline-exceeded"]).unwrap()),
            ["DEADLINE_EXCEEDED"]
        );
    }
}
