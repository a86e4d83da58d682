//! Kubernetes: `Service`, `Deployment` and `StatefulSet` (names, replicas as instances, the mesh
//! their pods join) and `Namespace` (mesh injection labels).

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::Inventory;

/// Reads one Kubernetes resource (`node` is its root: a document's, or an item of a `List`).
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
