//! Linkerd: `ServiceProfile` routes and `retryBudget` ([`profile`]), the `retry.linkerd.io/*`
//! and `timeout.linkerd.io/*` annotations on Services and routes ([`annotations`]; the routes
//! themselves: see [`crate::gateway`]), Linkerd's defaults, and the precedence between them
//! ([`resolve`]).
//!
//! ## Why a pass after reading
//! Which settings apply to a Service depends on documents that may come in any order: a route's
//! annotations replace *all* of its Service's annotations of the same family (retries, or
//! timeouts), a Service's annotations apply to its routes that set none, and a `ServiceProfile`
//! with routes replaces both (the proxy takes the profile's routes instead of the policy's). The
//! readers keep what they found in [`Inventory::linkerd`]; [`resolve`], run by
//! [`crate::inventory()`] once every document is read, writes the policies.

pub mod annotations;
pub mod profile;
mod resolve;

#[cfg(test)]
mod tests;

pub use annotations::Annotations;
pub use resolve::resolve;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Host, Inventory, MeshEvidence, Policy, Resource, System};
use crate::source::Origin;

/// What the readers found of Linkerd that [`resolve`] has yet to apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    /// Services with Linkerd annotations.
    pub services: Vec<PendingService>,
    /// Routes (rules of `HTTPRoute`s and `GRPCRoute`s) on a Service, already in
    /// [`Inventory::routes`], whose policy depends on their Service.
    pub routes: Vec<PendingRoute>,
}

/// A Service's Linkerd annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingService {
    /// The Service.
    pub host: Host,
    /// Its annotations.
    pub annotations: Annotations,
    /// The Service, for a route of its own and for `export`.
    pub resource: Resource,
}

/// A route on a Service, whose Linkerd policy is resolved with its Service's.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRoute {
    /// The route in [`Inventory::routes`] (found by its resource: file, document, path).
    pub resource: Resource,
    /// Its Service.
    pub host: Host,
    /// A `GRPCRoute` (Linkerd reads `retry.linkerd.io/grpc` on it, `/http` on the others).
    pub grpc: bool,
    /// Whether it is Linkerd's as read (a `policy.linkerd.io` route, or one with Linkerd
    /// annotations); a Gateway API route becomes Linkerd's when its Service is.
    pub linkerd: bool,
    /// Its own annotations (and, for a `policy.linkerd.io` `HTTPRoute`, its rule's
    /// `timeouts.request` as Linkerd reads it).
    pub annotations: Annotations,
}

/// Reads a `ServiceProfile`, or a `Service`'s Linkerd annotations (the Service itself is the
/// Kubernetes reader's: this one does not count it).
///
/// # Errors
/// A malformed field, at its line.
pub fn read(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    match kind {
        "ServiceProfile" => profile::read(doc, node, inv),
        "Service" => read_service(doc, node, inv),
        _ => Ok(()),
    }
}

fn read_service(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    let metadata = node.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .unwrap_or("default")
        .to_string();
    let annotations = annotations::read(doc, node, "Service", &name, inv)?;
    let Some(origin) = annotations.origin.clone() else {
        return Ok(());
    };
    inv.meshes.push(MeshEvidence {
        system: System::Linkerd,
        namespace: Some(namespace.clone()),
        origin: origin.clone(),
    });
    inv.linkerd.services.push(PendingService {
        host: Host::new(name.clone(), Some(&namespace)),
        annotations,
        resource: Resource {
            kind: "Service".into(),
            namespace: Some(namespace),
            name,
            file: doc.file.clone(),
            document: doc.index,
            path: "metadata.annotations".into(),
        },
    });
    Ok(())
}

/// The policy Linkerd's proxies apply to a call to a destination with no profile and no
/// annotations: no retry (retries are opt-in, by annotation or profile) and no timeout (the
/// proxy's default route sets none).
pub fn default_policy() -> Policy {
    let mut policy = Policy::default();
    policy.set(
        "max_attempts",
        "1",
        Origin::Default("Linkerd default: no retry without annotations or a ServiceProfile"),
    );
    policy
}
