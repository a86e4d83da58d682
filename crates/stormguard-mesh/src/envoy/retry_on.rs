//! Envoy's `retry_on` conditions as stormguard's, with Envoy's own meaning of each.
//!
//! Read in Envoy's `router_filter.rst` (x-envoy-retry-on, x-envoy-retry-grpc-on) and its
//! `retry_state_impl.cc`: `5xx` and `gateway-error` also retry every reset of the upstream
//! request (connect failures, refused streams, disconnects and the per-try timeout, which Envoy
//! handles as a local reset), not only statuses; `reset` retries a reset or a per-try timeout
//! ("read timeout"); `reset-before-request` only a reset before the request headers were sent.

/// What one `retry_on` name means in stormguard's conditions.
#[derive(Debug, PartialEq)]
pub(super) enum Meaning {
    /// These conditions; `retries_per_try_timeout`: Envoy also retries a per-try timeout under
    /// this name (so `timeout` joins when a per-try timeout is set).
    Conditions {
        conditions: &'static [&'static str],
        retries_per_try_timeout: bool,
    },
    /// The codes of `retriable_status_codes`.
    RetriableStatusCodes,
    /// A condition stormguard has no equivalent of, and why.
    Unmapped(&'static str),
    /// Not a name Envoy knows.
    Unknown,
}

/// The meaning of one trimmed `retry_on` name.
pub(super) fn meaning(name: &str) -> Meaning {
    let conditions = |conditions, retries_per_try_timeout| Meaning::Conditions {
        conditions,
        retries_per_try_timeout,
    };
    match name {
        "5xx" => conditions(&["5xx", "connect-failure", "refused-stream", "reset"], true),
        "gateway-error" => conditions(
            &[
                "gateway-error",
                "connect-failure",
                "refused-stream",
                "reset",
            ],
            true,
        ),
        "reset" => conditions(&["reset"], true),
        "reset-before-request" => conditions(&["reset-before-request"], false),
        "connect-failure" => conditions(&["connect-failure"], false),
        "refused-stream" => conditions(&["refused-stream"], false),
        "retriable-4xx" => conditions(&["409"], false),
        "retriable-status-codes" => Meaning::RetriableStatusCodes,
        "cancelled" => conditions(&["cancelled"], false),
        "deadline-exceeded" => conditions(&["deadline-exceeded"], false),
        "internal" => conditions(&["internal"], false),
        "resource-exhausted" => conditions(&["resource-exhausted"], false),
        "unavailable" => conditions(&["unavailable"], false),
        "envoy-ratelimited" => Meaning::Unmapped(
            "retries an answer carrying x-envoy-ratelimited (Envoy's own rate limit): \
             stormguard has no such condition",
        ),
        "retriable-headers" => Meaning::Unmapped(
            "retries answers whose headers match retriable_headers: stormguard retries by \
             status and failure, not by header",
        ),
        "http3-post-connect-failure" => Meaning::Unmapped(
            "retries an HTTP/3 failure after connecting: stormguard does not model HTTP/3",
        ),
        _ => Meaning::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_condition_is_one_stormguard_accepts() {
        for name in [
            "5xx",
            "gateway-error",
            "reset",
            "reset-before-request",
            "connect-failure",
            "refused-stream",
            "retriable-4xx",
            "cancelled",
            "deadline-exceeded",
            "internal",
            "resource-exhausted",
            "unavailable",
        ] {
            let Meaning::Conditions { conditions, .. } = meaning(name) else {
                panic!("{name} is not mapped");
            };
            for condition in conditions {
                condition
                    .parse::<stormguard::classify::Condition>()
                    .unwrap_or_else(|e| panic!("{name} → {condition}: {e}"));
            }
        }
        assert_eq!(
            meaning("retriable-status-codes"),
            Meaning::RetriableStatusCodes
        );
        assert!(matches!(meaning("envoy-ratelimited"), Meaning::Unmapped(_)));
        assert_eq!(meaning("5XX"), Meaning::Unknown);
    }
}
