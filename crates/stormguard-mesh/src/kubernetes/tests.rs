//! The Kubernetes reader on a `kubectl get -o yaml` List (`tests/data/istio/kubectl-get.yaml`).

use std::path::PathBuf;

use crate::doc::parse_documents;
use crate::inventory::{Inventory, System, Workload};

fn list() -> Inventory {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/istio/kubectl-get.yaml");
    let documents = crate::read_paths(&[path]).unwrap();
    crate::inventory(&documents).unwrap()
}

fn workload<'a>(inv: &'a Inventory, name: &str) -> &'a Workload {
    inv.workloads
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", inv.workloads))
}

fn line(origin: &crate::source::Origin) -> u32 {
    origin.file_line().map_or(0, |(_, line, _)| line)
}

#[test]
fn replicas_become_instances_with_their_line() {
    let inv = list();
    let productpage = workload(&inv, "productpage-v1");
    assert_eq!(productpage.kind, "Deployment");
    assert_eq!(productpage.namespace, "bookinfo");
    let (count, origin) = productpage.instances.as_ref().unwrap();
    assert_eq!((*count, line(origin)), (3, 62));
    assert_eq!(
        productpage.labels.get("version").map(String::as_str),
        Some("v1")
    );
    assert_eq!(line(&productpage.origin), 50);
    // No replicas: Kubernetes makes one.
    let reviews = workload(&inv, "reviews-v1");
    let (count, origin) = reviews.instances.as_ref().unwrap();
    assert_eq!(
        (*count, origin.to_string().as_str()),
        (1, "Kubernetes default")
    );
    let ratings = workload(&inv, "ratings-v1");
    assert_eq!(ratings.kind, "StatefulSet");
    assert_eq!(
        ratings.instances.as_ref().map(|(n, o)| (*n, line(o))),
        Some((2, 105))
    );
    assert_eq!(inv.kinds.get("Deployment"), Some(&3));
}

#[test]
fn services_keep_their_selector() {
    let inv = list();
    let service = workload(&inv, "productpage");
    assert_eq!(service.kind, "Service");
    assert!(service.instances.is_none());
    assert_eq!(
        service.labels.get("app").map(String::as_str),
        Some("productpage")
    );
    assert_eq!(service.labels.len(), 1);
}

#[test]
fn meshes_from_namespace_labels_and_pod_templates() {
    let inv = list();
    let namespace = inv
        .meshes
        .iter()
        .find(|m| m.namespace.as_deref() == Some("bookinfo"))
        .unwrap();
    assert_eq!(
        (namespace.system, line(&namespace.origin)),
        (System::Istio, 8)
    );
    // A pod label opts in, in the default namespace.
    let billing = workload(&inv, "legacy-billing");
    assert_eq!(billing.namespace, "default");
    assert_eq!(
        billing.mesh.as_ref().map(|(s, o)| (*s, line(o))),
        Some((System::Istio, 131))
    );
    // An annotation opts out: listed, since the namespace's label would cover it.
    assert!(workload(&inv, "ratings-v1").mesh.is_none());
    assert!(inv
        .unread
        .iter()
        .any(|u| u.what.contains("ratings-v1") && u.why.contains("opt out")));
    // A kind read by no one is listed.
    assert!(inv.unread.iter().any(|u| u.what == "ConfigMap"));
}

#[test]
fn linkerd_namespace_annotation() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    linkerd.io/inject: enabled\n";
    let documents = parse_documents("ns.yaml", text).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    assert_eq!(inv.meshes.len(), 1);
    assert_eq!(inv.meshes[0].system, System::Linkerd);
    assert_eq!(line(&inv.meshes[0].origin), 6);
}

#[test]
fn malformed_replicas_and_missing_name() {
    let text =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  replicas: three\n";
    let documents = parse_documents("d.yaml", text).unwrap();
    assert_eq!(
        crate::inventory(&documents).unwrap_err().to_string(),
        "d.yaml:6:13: `spec.replicas`: not a whole number of replicas (0 or more)"
    );
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n";
    let documents = parse_documents("s.yaml", text).unwrap();
    let error = crate::inventory(&documents).unwrap_err().to_string();
    assert!(error.starts_with("s.yaml:1:11: `metadata.name`"), "{error}");
}
