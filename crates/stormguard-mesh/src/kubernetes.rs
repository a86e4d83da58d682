//! Kubernetes: `Service`, `Deployment` and `StatefulSet` (names, replicas as instances, the mesh
//! their pods join) and `Namespace` (mesh injection labels).
//!
//! ## Why
//! A graph needs services and their instances, and a mesh's defaults apply only where its
//! sidecars run: Istio's two silent retries per hop exist in a namespace labelled
//! `istio-injection=enabled` and nowhere else. These resources carry no timeout or retry; they
//! say who exists, how many, and inside which mesh.

use std::collections::BTreeMap;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, MeshEvidence, System, Workload};
use crate::source::Origin;

/// The namespace a manifest without `metadata.namespace` lands in (kubectl's, with the default
/// context).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Reads one Kubernetes resource (`node` is its root: a document's, or an item of a `List`).
///
/// # Errors
/// A malformed field, at its line: no `metadata.name`, `spec.replicas` that is not a
/// non-negative whole number, labels or a selector that are not a mapping of texts.
pub fn read(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    inv.saw(kind);
    match kind {
        "Deployment" | "StatefulSet" => read_workload(doc, node, kind, inv),
        "Service" => read_service(doc, node, inv),
        "Namespace" => read_namespace(doc, node, inv),
        _ => {
            inv.unread(
                Origin::at(doc, node, kind),
                kind,
                "a Kubernetes kind stormguard does not read: it sets no timeout or retry",
            );
            Ok(())
        }
    }
}

/// The resource's `metadata.namespace`, or [`DEFAULT_NAMESPACE`].
pub fn namespace_of(node: &Node) -> String {
    node.get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .filter(|ns| !ns.trim().is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// The resource's `metadata.name`.
///
/// # Errors
/// No name, at the resource's line.
pub fn name_of(doc: &Document, node: &Node, kind: &str) -> Result<String, ImportError> {
    node.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            doc.error(
                node,
                "metadata.name",
                format!("a {kind} without a name: write metadata.name"),
            )
        })
}

/// A mapping of texts (labels, annotations, a selector); `field` names it in an error.
///
/// # Errors
/// A node that is not a mapping, or a value that is a mapping or a sequence.
pub fn string_map(
    doc: &Document,
    node: Option<&Node>,
    field: &str,
) -> Result<BTreeMap<String, String>, ImportError> {
    let mut out = BTreeMap::new();
    let Some(node) = node else {
        return Ok(out);
    };
    if !node.is_map() {
        return Err(doc.error(node, field, "not a mapping of names to texts"));
    }
    for (key, value) in node.entries() {
        let (Some(key), Some(text)) = (key.as_str(), value.as_str()) else {
            return Err(doc.error(value, field, "a value that is not a text"));
        };
        if value.is_null() {
            continue;
        }
        out.insert(key.to_string(), text.to_string());
    }
    Ok(out)
}

fn read_workload(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    let name = name_of(doc, node, kind)?;
    let namespace = namespace_of(node);
    let spec = node.get("spec");
    let instances = match spec.and_then(|s| s.get("replicas")) {
        Some(replicas) => {
            let count = replicas
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    doc.error(
                        replicas,
                        "spec.replicas",
                        "not a whole number of replicas (0 or more)",
                    )
                })?;
            if count == 0 {
                inv.unread(
                    Origin::at(doc, replicas, format!("{kind} {name} spec.replicas")),
                    format!("{kind} {name} spec.replicas: 0"),
                    "scaled to zero: kept as 0 instances, which a graph cannot run",
                );
            }
            (
                count,
                Origin::at(doc, replicas, format!("{kind} {name} spec.replicas")),
            )
        }
        // Kubernetes defaults `replicas` to 1 for both kinds (a HorizontalPodAutoscaler, which
        // is not read, may change it at run time).
        None => (1, System::Kubernetes.default_origin()),
    };
    let template = spec.and_then(|s| s.get("template"));
    let metadata = template.and_then(|t| t.get("metadata"));
    let labels = string_map(
        doc,
        metadata.and_then(|m| m.get("labels")),
        "spec.template.metadata.labels",
    )?;
    let annotations_node = metadata.and_then(|m| m.get("annotations"));
    let annotations = string_map(doc, annotations_node, "spec.template.metadata.annotations")?;
    let mesh = pod_mesh(doc, metadata, &labels, &annotations, kind, &name, inv);
    inv.workloads.push(Workload {
        kind: if kind == "Deployment" {
            "Deployment"
        } else {
            "StatefulSet"
        },
        name,
        namespace,
        instances: Some(instances),
        labels,
        mesh,
        origin: Origin::at(doc, node, kind),
    });
    Ok(())
}

/// The mesh a pod template joins by its own label or annotation (Istio reads
/// `sidecar.istio.io/inject` as a label first, then as an annotation; Linkerd reads the
/// `linkerd.io/inject` annotation). An explicit opt-out is listed: a per-namespace mesh would
/// otherwise cover the workload.
fn pod_mesh(
    doc: &Document,
    metadata: Option<&Node>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    kind: &str,
    name: &str,
    inv: &mut Inventory,
) -> Option<(System, Origin)> {
    let at = |section: &str, key: &str| -> Origin {
        let node = metadata
            .and_then(|m| m.get(section))
            .and_then(|s| s.get(key))
            .or(metadata);
        match node {
            Some(node) => Origin::at(
                doc,
                node,
                format!("{kind} {name} spec.template.metadata.{section}.{key}"),
            ),
            None => System::Kubernetes.default_origin(),
        }
    };
    const ISTIO: &str = "sidecar.istio.io/inject";
    const LINKERD: &str = "linkerd.io/inject";
    let istio = labels
        .get(ISTIO)
        .map(|v| (v, "labels"))
        .or_else(|| annotations.get(ISTIO).map(|v| (v, "annotations")));
    if let Some((value, section)) = istio {
        if value.trim().eq_ignore_ascii_case("true") {
            return Some((System::Istio, at(section, ISTIO)));
        }
        inv.unread(
            at(section, ISTIO),
            format!("{kind} {name}: {ISTIO}: {value}"),
            "the pods opt out of Istio's sidecar: calls from and to them get no Istio policy, \
             whatever their namespace's label says (the import records meshes per namespace \
             and per opted-in workload)",
        );
        return None;
    }
    match annotations.get(LINKERD).map(|v| v.trim()) {
        Some("enabled" | "ingress") => Some((System::Linkerd, at("annotations", LINKERD))),
        Some(value) => {
            inv.unread(
                at("annotations", LINKERD),
                format!("{kind} {name}: {LINKERD}: {value}"),
                "the pods opt out of Linkerd's proxy, whatever their namespace says",
            );
            None
        }
        None => None,
    }
}

fn read_service(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    let name = name_of(doc, node, "Service")?;
    let namespace = namespace_of(node);
    let spec = node.get("spec");
    let labels = string_map(doc, spec.and_then(|s| s.get("selector")), "spec.selector")?;
    if let Some(external) = spec
        .and_then(|s| s.get("externalName"))
        .and_then(Node::as_str)
    {
        inv.unread(
            Origin::at(doc, node, format!("Service {name} spec.externalName")),
            format!("Service {name} spec.externalName: {external}"),
            "an alias of another host: calls to it are calls to that host, read as a service \
             of its own here",
        );
    }
    inv.workloads.push(Workload {
        kind: "Service",
        name,
        namespace,
        instances: None,
        labels,
        mesh: None,
        origin: Origin::at(doc, node, "Service"),
    });
    Ok(())
}

fn read_namespace(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    let name = name_of(doc, node, "Namespace")?;
    let metadata = node.get("metadata");
    let labels_node = metadata.and_then(|m| m.get("labels"));
    let labels = string_map(doc, labels_node, "metadata.labels")?;
    let annotations_node = metadata.and_then(|m| m.get("annotations"));
    let annotations = string_map(doc, annotations_node, "metadata.annotations")?;
    // The line of the label or annotation that says it (of the section, or the resource, if
    // the key is absent).
    let at = |section: Option<&Node>, kind: &str, key: &str| -> Origin {
        let what = format!("Namespace {name} {kind} {key}");
        match section.and_then(|s| s.get(key)).or(section) {
            Some(n) => Origin::at(doc, n, what),
            None => Origin::at(doc, node, what),
        }
    };
    let injection = labels.get("istio-injection").map(|v| v.trim());
    // A revision label injects that revision's sidecar, unless injection is disabled, which
    // wins.
    let istio = match (injection, labels.contains_key("istio.io/rev")) {
        (Some("enabled"), _) => Some("istio-injection"),
        (Some("disabled"), _) | (_, false) => None,
        (_, true) => Some("istio.io/rev"),
    };
    let linkerd = annotations.get("linkerd.io/inject").map(|v| v.trim()) == Some("enabled");
    let evidence = [
        istio.map(|key| (System::Istio, at(labels_node, "label", key))),
        linkerd.then(|| {
            let origin = at(annotations_node, "annotation", "linkerd.io/inject");
            (System::Linkerd, origin)
        }),
    ];
    for (system, origin) in evidence.into_iter().flatten() {
        inv.meshes.push(MeshEvidence {
            system,
            namespace: Some(name.clone()),
            origin,
        });
    }
    if let Some(mode) = labels.get("istio.io/dataplane-mode") {
        inv.unread(
            at(labels_node, "label", "istio.io/dataplane-mode"),
            format!("Namespace {name}: istio.io/dataplane-mode: {mode}"),
            "Istio's ambient mode: no sidecar, so routes apply only through a waypoint proxy, \
             which the import does not model",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
