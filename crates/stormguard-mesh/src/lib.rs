//! # stormguard-mesh
//!
//! Reads the timeouts and retries a team already runs, where they live (Envoy, Istio, Linkerd,
//! Gateway API routes, gRPC service configs, Kubernetes workloads), into a stormguard graph that
//! `check`, `sim` and `recommend` read; and writes a graph's policies back in each system's own
//! resources ([`export`]).
//!
//! ## Why
//! Nobody types a graph of 200 services by hand, and the settings that multiply across hops are
//! already written down, in manifests no tool reads across the graph: Istio retries twice per
//! hop by default, so four hops of sidecars make 3^4 = 81 attempts at the bottom, and an
//! application's own retries sit on top. Cockcroft's first step is the inventory.
//!
//! ## How
//! [`read_paths`] reads files and directories into [`doc::Document`]s (YAML or JSON, every node
//! with its line); [`inventory()`] hands each document to the reader of its kind (one module per
//! system), which translates its fields into the graph's policy keys with the system's own
//! meaning and defaults ([`inventory::Inventory`]); [`assemble()`] puts those policies on calls
//! (of a base graph, of Prometheus's edges, or of a placeholder caller) and writes the graph
//! with a comment naming the source of every value. Each system's meaning, field by field, is
//! in `docs/import-mapping.md`.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod assemble;
pub mod doc;
pub mod envoy;
mod envoy_names;
pub mod error;
pub mod export;
pub mod gateway;
pub mod grpc;
pub mod inventory;
pub mod istio;
pub mod kubernetes;
pub mod linkerd;
pub mod names;
pub mod rules;
pub mod source;
/// The versions of `group` whose resources stormguard reads, as a list for a message, when
/// `api_version` is not one of them; `None` for a known version, or a group it does not read.
fn unknown_version(group: &str, api_version: &str) -> Option<&'static str> {
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let known: &[&str] = match group {
        "networking.istio.io" => &["v1", "v1beta1", "v1alpha3"],
        "gateway.networking.k8s.io" => &["v1", "v1beta1", "v1alpha2", "v1alpha3"],
        "policy.linkerd.io" => &["v1beta1", "v1beta2", "v1beta3", "v1alpha1"],
        "linkerd.io" => &["v1alpha1", "v1alpha2"],
        "apps" | "" => &["v1"],
        _ => return None,
    };
    if known.contains(&version) {
        return None;
    }
    Some(match group {
        "networking.istio.io" => "v1, v1beta1, v1alpha3",
        "gateway.networking.k8s.io" => "v1, v1beta1, v1alpha2, v1alpha3",
        "policy.linkerd.io" => "v1beta1, v1beta2, v1beta3, v1alpha1",
        "linkerd.io" => "v1alpha1, v1alpha2",
        _ => "v1",
    })
}

#[cfg(test)]
mod testing;
pub mod toml_text;
pub mod traffic;

pub use assemble::{assemble, Imported, Options};
pub use error::ImportError;
pub use inventory::Inventory;

use doc::{Document, Node};
use source::Origin;

/// The largest file read: an Envoy `/config_dump` of a large mesh is tens of MB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The most files read from the paths given (a directory of a whole cluster's manifests is a
/// few thousand).
pub const MAX_FILES: usize = 100_000;

/// The most bytes read from all the files together: every document stays in memory, parsed,
/// until the graph is made, and a parsed document takes several times its text. A whole
/// cluster's manifests and a config dump of a large mesh together are well under a tenth of it;
/// without this bound, [`MAX_FILES`] files of [`MAX_FILE_BYTES`] each could be asked for.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// Reads every file named, and every `.yaml`, `.yml` and `.json` file under every directory named
/// (recursively, in name order, skipping hidden entries and not following symbolic links to
/// directories), into documents.
///
/// # Errors
/// A path that does not exist or cannot be read; a file that is not YAML or JSON, at its line;
/// a file over [`MAX_FILE_BYTES`], more than [`MAX_FILES`] files, or more than
/// [`MAX_TOTAL_BYTES`] in all.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Document>, ImportError> {
    read_paths_within(paths, MAX_FILE_BYTES, MAX_TOTAL_BYTES)
}

/// [`read_paths`] with its byte limits as arguments, so that a test can reach them.
fn read_paths_within(
    paths: &[PathBuf],
    max_file: u64,
    max_total: u64,
) -> Result<Vec<Document>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| file_error(path, &e.to_string()))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
        if files.len() > MAX_FILES {
            return Err(file_error(path, &format!("more than {MAX_FILES} files")));
        }
    }
    let mut documents = Vec::new();
    let mut total = 0u64;
    for file in files {
        let text = stormguard_graph::input::read_text_at_most(&file, max_file)
            .map_err(|e| file_error(&file, &e.to_string()))?;
        total = total.saturating_add(text.len() as u64);
        if total > max_total {
            let limit = if max_total % (1 << 20) == 0 {
                format!("{} MiB", max_total >> 20)
            } else {
                format!("{max_total} bytes")
            };
            return Err(file_error(
                &file,
                &format!(
                    "the files read up to this one hold more than {limit} in all, the limit \
                     of one import: import fewer files, or the namespaces that matter"
                ),
            ));
        }
        documents.extend(doc::parse_documents(&file.display().to_string(), &text)?);
    }
    Ok(documents)
}

fn file_error(path: &Path, message: &str) -> ImportError {
    ImportError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, &e.to_string()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| file_error(&path, &e.to_string()))?;
        if file_type.is_dir() {
            walk(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) && (file_type.is_file() || path.is_file())
        {
            files.push(path);
        }
        if files.len() > MAX_FILES {
            return Err(file_error(dir, &format!("more than {MAX_FILES} files")));
        }
    }
    Ok(())
}

/// Hands each document to the reader of its kind: Kubernetes resources by `apiVersion` and
/// `kind` (a `List`'s items each), Envoy bootstraps and config dumps, gRPC service configs. A
/// document of no kind read here is listed in [`Inventory::unread`]. Last, Istio's
/// `DestinationRule`s are applied to the routes they govern, wherever each was read
/// ([`istio::resolve`]).
///
/// # Errors
/// A malformed field of a kind that is read, at its line.
pub fn inventory(documents: &[Document]) -> Result<Inventory, ImportError> {
    let mut inv = Inventory::default();
    for document in documents {
        read_document(document, &document.root, &mut inv, 0)?;
    }
    istio::resolve(&mut inv);
    // Linkerd's precedence needs every document: a route's Service, a ServiceProfile.
    linkerd::resolve(&mut inv);
    Ok(inv)
}

fn read_document(
    doc: &Document,
    node: &Node,
    inv: &mut Inventory,
    depth: usize,
) -> Result<(), ImportError> {
    let api_version = node.get("apiVersion").and_then(Node::as_str);
    let kind = node.get("kind").and_then(Node::as_str);
    match (api_version, kind) {
        (Some(api_version), Some(kind)) => {
            let group = api_version.split('/').next().unwrap_or_default();
            let group = if api_version.contains('/') { group } else { "" };
            if let Some(versions) = unknown_version(group, api_version) {
                let at = node.get("apiVersion").unwrap_or(node);
                return Err(doc.error(
                    at,
                    "apiVersion",
                    format!(
                        "{api_version} is not a version of {} that stormguard knows ({versions}): \
                         the API server refuses an unknown version, and its fields may not mean \
                         what this version's do",
                        if group.is_empty() {
                            "the core API"
                        } else {
                            group
                        }
                    ),
                ));
            }
            match (group, kind) {
                (_, "List") | (_, "ConfigMapList") if depth == 0 => {
                    for item in node.get("items").map(Node::items).unwrap_or_default() {
                        read_document(doc, item, inv, depth + 1)?;
                    }
                }
                ("networking.istio.io", _) => istio::read(doc, node, kind, inv)?,
                ("gateway.networking.k8s.io" | "policy.linkerd.io", "HTTPRoute" | "GRPCRoute") => {
                    gateway::read(doc, node, kind, inv)?
                }
                ("linkerd.io", "ServiceProfile") => linkerd::read(doc, node, kind, inv)?,
                ("", "Service") => {
                    kubernetes::read(doc, node, kind, inv)?;
                    linkerd::read(doc, node, kind, inv)?;
                }
                ("apps", "Deployment" | "StatefulSet") | ("", "Namespace") => {
                    kubernetes::read(doc, node, kind, inv)?
                }
                _ => {
                    inv.saw(kind);
                    inv.unread(
                        Origin::at(doc, node, format!("{kind} ({api_version})")),
                        kind,
                        "a kind stormguard does not read: it sets no timeout or retry",
                    );
                }
            }
        }
        _ if envoy::detect(node) => envoy::read(doc, inv)?,
        _ if grpc::detect(node) => grpc::read(doc, inv)?,
        _ => inv.unread(
            Origin::at(doc, node, ""),
            "document",
            "not a Kubernetes resource (no apiVersion and kind), an Envoy bootstrap or config \
             dump, or a gRPC service config",
        ),
    }
    Ok(())
}

#[cfg(test)]
mod read_tests {
    use super::*;

    /// A version of a group stormguard reads that is none of the group's is refused at its
    /// line, as the API server refuses it: `networking.istio.io/v9` was read as v1.
    #[test]
    fn an_unknown_version_of_a_known_group_is_refused_at_its_line() {
        let text = "apiVersion: networking.istio.io/v9\nkind: VirtualService\nmetadata:\n  \
                    name: r\nspec:\n  hosts: [r]\n";
        let err = crate::testing::inventory_of("vs.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("vs.yaml:1:"), "{err}");
        assert!(
            err.contains("networking.istio.io/v9 is not a version of networking.istio.io"),
            "{err}"
        );
        for known in [
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
        ] {
            let text = text.replace("networking.istio.io/v9", known);
            assert!(
                crate::testing::inventory_of("vs.yaml", &text).is_ok(),
                "{known}"
            );
        }
        // A group it does not read is listed as before, whatever its version.
        let other = "apiVersion: example.com/v42\nkind: Widget\nmetadata:\n  name: w\n";
        assert!(crate::testing::inventory_of("w.yaml", other).is_ok());
    }

    #[test]
    fn the_files_together_are_bounded_as_well_as_each_one() {
        let dir = std::env::temp_dir().join(format!("sg-read-bound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: x\n";
        for name in ["a.yaml", "b.yaml", "c.yaml"] {
            std::fs::write(dir.join(name), doc).unwrap();
        }
        let paths = [dir.clone()];
        let each = doc.len() as u64;
        // Each file within the per-file limit; all three over the total: the error names the
        // third, where the total passed.
        let err = read_paths_within(&paths, each, 2 * each + 1).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.yaml"), "{text}");
        assert!(text.contains("in all"), "{text}");
        assert_eq!(read_paths_within(&paths, each, 3 * each).unwrap().len(), 3);
        // One file over the per-file limit is refused as before.
        assert!(read_paths_within(&paths, each - 1, u64::MAX).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
