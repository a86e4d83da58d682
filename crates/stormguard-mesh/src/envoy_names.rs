//! Envoy's retry condition names (`retry_on`, `x-envoy-retry-on`, `x-envoy-retry-grpc-on`) as
//! the graph's `retry_on` conditions: the one table the Envoy and Istio readers read with, and
//! that the export writers (`export::retry_names`) invert.
//!
//! ## Why not one name for one name
//! The graph's conditions are narrow (`5xx` is statuses 500-599 only; `reset` is a failed
//! connection after it was made only), Envoy's are wide. Envoy's `wouldRetryFromReset`
//! (`source/common/router/retry_state_impl.cc`) retries *any* reset under `reset`, and under
//! `5xx` and `gateway-error` alike ("we count an upstream reset as a 5xx"): a failed connection
//! (`LocalConnectionFailure`, `RemoteConnectionFailure`, `ConnectionTimeout`) and a refused
//! stream are resets too. `reset-before-request` retries a reset while the request has not
//! started, which a failed connection always is. A per-try timeout is a local reset of a
//! started request (`onPerTryTimeoutCommon` calls `maybeRetryReset`), so `reset`, `5xx` and
//! `gateway-error` retry it (`timeout` joins when a per-try timeout is set) and
//! `reset-before-request` does not. The other names map one to one; the ones that depend on
//! response headers stormguard does not model are unmapped, with why.

/// What one Envoy name means in the graph's conditions.
#[derive(Debug, PartialEq)]
pub(crate) enum Meaning {
    /// These conditions (the name's own first); `retries_per_try_timeout`: Envoy also retries
    /// an attempt's per-try timeout under this name.
    Conditions {
        conditions: &'static [&'static str],
        retries_per_try_timeout: bool,
    },
    /// The codes of `retriable_status_codes` (Istio: the integers in `retryOn`).
    RetriableStatusCodes,
    /// A condition the graph has no equivalent of, and why.
    Unmapped(&'static str),
    /// Not a name Envoy knows.
    Unknown,
}

/// Every name Envoy accepts (and Istio's validation, `supportedRetryOnPolicies`).
pub(crate) const NAMES: [&str; 16] = [
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

/// The meaning of one trimmed name (case matters: Envoy refuses `5XX`).
pub(crate) fn meaning(name: &str) -> Meaning {
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
        "reset" => conditions(&["reset", "connect-failure", "refused-stream"], true),
        "reset-before-request" => conditions(&["reset-before-request", "connect-failure"], false),
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

/// Whether `condition` is an answer an Envoy sidecar (Envoy's, Istio's) may give itself after a
/// request was forwarded: 503 (UNAVAILABLE to gRPC), when the connection to the application
/// drops before its answer (response flags UC, UR). Through such a mesh it does not say the
/// work was declined, so a request that is not idempotent is not retried on it: the export's
/// writers and the import's `mesh-retries-non-idempotent` both ask here.
pub(crate) fn answered_by_sidecar_after_forward(
    condition: &stormguard::classify::Condition,
) -> bool {
    use stormguard::classify::Condition;
    matches!(condition, Condition::Status(503) | Condition::Grpc(14))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stormguard::classify::RetryOn;

    fn on(name: &str) -> RetryOn {
        let Meaning::Conditions { conditions, .. } = meaning(name) else {
            panic!("{name} is not mapped");
        };
        RetryOn::parse_list(conditions.iter().copied()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn every_name_envoy_knows_has_a_meaning_the_graph_accepts() {
        for name in NAMES {
            match meaning(name) {
                Meaning::Conditions { .. } => {
                    on(name);
                }
                Meaning::RetriableStatusCodes | Meaning::Unmapped(_) => {}
                Meaning::Unknown => panic!("{name} is in NAMES but unknown"),
            }
        }
        assert_eq!(meaning("5XX"), Meaning::Unknown);
    }

    #[test]
    fn every_reset_name_retries_a_failed_connection() {
        // wouldRetryFromReset: a connection failure is a reset, and `reset`, `5xx`,
        // `gateway-error` retry every reset; `reset-before-request` every reset before the
        // request started, which a failed connection is.
        for name in ["reset", "5xx", "gateway-error", "reset-before-request"] {
            assert!(on(name).connect_failure(), "{name}");
            assert!(on(name).reset_before_request(), "{name}");
        }
        for name in ["reset", "5xx", "gateway-error"] {
            assert!(on(name).refused_stream(), "{name}");
            assert!(on(name).reset_after_request(), "{name}");
        }
        // A started request that fails is not retried under reset-before-request, nor a
        // per-try timeout.
        assert!(!on("reset-before-request").reset_after_request());
        assert_eq!(
            meaning("reset-before-request"),
            Meaning::Conditions {
                conditions: &["reset-before-request", "connect-failure"],
                retries_per_try_timeout: false
            }
        );
        // Status names are statuses, not resets.
        assert!(!on("retriable-4xx").connect_failure());
    }
}
