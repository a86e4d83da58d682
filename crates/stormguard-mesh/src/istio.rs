//! Istio: `VirtualService` and `DestinationRule`, and the defaults Istio's sidecars apply where
//! nothing is set (see docs/import-mapping.md, section 2).
//!
//! ## Why Istio's defaults are written out
//! Istio's most consequential setting is the one nobody writes: an `http` route without
//! `retries` gets two retries (on `connect-failure,refused-stream,unavailable,cancelled`), and
//! Istio lifts Envoy's `max_retries` circuit breaker to 2^32−1, so nothing but a
//! `DestinationRule`'s `retryBudget` bounds them. Four hops of sidecars make 3^4 = 81 attempts
//! at the bottom. Every value Istio applies silently is written here with the origin
//! "Istio default", read from Istio's own code (`pilot/pkg/networking/core/route/retry/retry.go`,
//! `route.go`) and API (`networking/v1alpha3/*.proto`), not Envoy's defaults (Istio sets the
//! route timeout to 0, off, where Envoy's default is 15 s).
//!
//! ## How
//! [`read`] translates one resource: a `VirtualService`'s `http` routes into
//! [`Route`](crate::inventory::Route)s (one per host and route, Istio's defaults written in),
//! a `DestinationRule`'s host-level `trafficPolicy` into a
//! [`DestinationPolicy`](crate::inventory::DestinationPolicy). A `DestinationRule` governs the
//! calls a route sends to its host or subset wherever either is written, so the rules wait in
//! [`Pending`] until [`resolve`] (called by [`crate::inventory()`] after every document)
//! applies them to the routes and emits the finding `istio-unbounded-retries`.

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, MeshEvidence, Policy, System};
use crate::source::Origin;

mod destination_rule;
mod resolve;
pub(crate) mod retry_on;
mod route_policy;
mod values;
mod virtual_service;

pub use resolve::resolve;

/// The id of the finding for a route that retries with nothing to bound its retries.
pub const UNBOUNDED_RETRIES: &str = "istio-unbounded-retries";

/// Istio's retries when a route says nothing (`retry.go` `DefaultPolicy`: `NumRetries: 2`).
pub(crate) const DEFAULT_RETRIES: u64 = 2;

/// Istio's default `retryOn` (`retry.go`: `connect-failure,refused-stream,unavailable,
/// cancelled,retriable-status-codes`; the last retries nothing without codes, and 503 is no
/// longer added since `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY` defaults to true).
pub(crate) const DEFAULT_RETRY_ON: [&str; 4] = [
    "connect-failure",
    "refused-stream",
    "unavailable",
    "cancelled",
];

/// Envoy's backoff base when Istio sets none (Istio writes no `retry_back_off`).
pub(crate) const DEFAULT_BACKOFF_BASE_MS: u64 = 25;

/// MeshConfig `connectTimeout`'s default, which every cluster gets unless a `DestinationRule`
/// sets `connectionPool.tcp.connectTimeout` (destination_rule.proto: "Default is 10s").
const DEFAULT_CONNECT_TIMEOUT: &str = "\"10s\"";

/// The origin of a value Istio applies where the files are silent.
const ISTIO_DEFAULT: Origin = Origin::Default("Istio default");

/// The origin of `idempotent = true` on a route that retries: Envoy does not look at the
/// method.
const RETRIES_ANY_METHOD: Origin = Origin::Default("Istio default: retries any method");

/// What the Istio reader keeps until every document is read: the `DestinationRule`s, and the
/// subset each backend of each Istio route names. [`resolve`] applies the one to the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    rules: Vec<destination_rule::Rule>,
    routes: Vec<virtual_service::RouteTargets>,
    /// Files whose backoff approximation is already listed (once per file is enough).
    backoff_noted: Vec<std::sync::Arc<str>>,
    /// Whether [`resolve`] has run (it runs once).
    resolved: bool,
}

/// Reads one Istio resource (`networking.istio.io`, any of `v1`, `v1beta1`, `v1alpha3`: the
/// fields read are the same in all three). Every Istio resource shows that its namespace runs
/// Istio.
///
/// # Errors
/// A malformed field, at its line: a duration that is not one, negative `attempts`, a
/// `retryOn` name Istio refuses, a destination without `host`.
pub fn read(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    inv.saw(kind);
    let namespace = crate::kubernetes::namespace_of(node);
    if !inv
        .meshes
        .iter()
        .any(|m| m.system == System::Istio && m.namespace.as_deref() == Some(&namespace))
    {
        inv.meshes.push(MeshEvidence {
            system: System::Istio,
            namespace: Some(namespace),
            origin: Origin::at(doc, node, kind),
        });
    }
    match kind {
        "VirtualService" => virtual_service::read(doc, node, inv),
        "DestinationRule" => destination_rule::read(doc, node, inv),
        _ => {
            let why = match kind {
                "Gateway" => {
                    "configures an edge load balancer's listeners; the routes through it are \
                     the VirtualServices bound to it, read on their own"
                }
                "ServiceEntry" => {
                    "adds a host to Istio's registry: calls to it get Istio's defaults, or the \
                     VirtualService and DestinationRule written for it"
                }
                "Sidecar" => {
                    "limits which hosts a sidecar sees and how it listens; it sets no route \
                     timeout or retry"
                }
                "EnvoyFilter" => {
                    "patches Envoy's configuration directly: what it does to timeouts and \
                     retries cannot be read from the patch; import the sidecar's /config_dump \
                     to see the result"
                }
                "WorkloadEntry" | "WorkloadGroup" => {
                    "registers endpoints outside Kubernetes; it sets no timeout or retry"
                }
                "ProxyConfig" => "proxy process settings; no timeout or retry",
                _ => "an Istio kind stormguard does not read",
            };
            inv.unread(Origin::at(doc, node, kind), kind, why);
            Ok(())
        }
    }
}

/// The policy Istio's sidecars apply to a call to a destination that no `VirtualService`
/// routes (`BuildDefaultHTTPOutboundRoute`): two retries on its default conditions with
/// Envoy's backoff, no request or per-try timeout (Istio sets the route timeout to 0), a 10 s
/// connect timeout, and no retry budget (Istio lifts the `max_retries` circuit breaker to
/// 2^32−1). A `DestinationRule` for the destination overrides `connect_timeout` and
/// `retry_budget`.
///
/// ```
/// let policy = stormguard_mesh::istio::default_policy();
/// assert_eq!(policy.get("max_attempts").unwrap().value, "3");
/// assert_eq!(policy.get("retry_budget").unwrap().value, "\"none\"");
/// assert!(policy.get("timeout").is_none());
/// ```
pub fn default_policy() -> Policy {
    let mut policy = Policy::default();
    policy.set("connect_timeout", DEFAULT_CONNECT_TIMEOUT, ISTIO_DEFAULT);
    policy.set(
        "max_attempts",
        (DEFAULT_RETRIES + 1).to_string(),
        ISTIO_DEFAULT,
    );
    policy.set(
        "retry_on",
        crate::toml_text::string_list(&DEFAULT_RETRY_ON),
        ISTIO_DEFAULT,
    );
    policy.set(
        "backoff",
        values::envoy_backoff(std::time::Duration::from_millis(DEFAULT_BACKOFF_BASE_MS)),
        ISTIO_DEFAULT,
    );
    policy.set("retry_budget", "\"none\"", ISTIO_DEFAULT);
    policy.set("idempotent", "true", RETRIES_ANY_METHOD);
    policy
}

#[cfg(test)]
mod tests;
