//! Graph service names from the many ways a destination is named: a Kubernetes short name, a
//! namespaced or fully qualified host, an Envoy cluster name as Istio writes it.

use crate::inventory::Host;

/// The Kubernetes service name and namespace a host names, if it is a cluster-local one:
/// `reviews`, `reviews.prod`, `reviews.prod.svc`, `reviews.prod.svc.cluster.local`, and Istio's
/// Envoy cluster names `outbound|9080|v1|reviews.prod.svc.cluster.local`; a port (`:9080`) is
/// dropped. For any other host (`api.example.com`), the host itself with no namespace.
///
/// ```
/// use stormguard_mesh::inventory::Host;
/// use stormguard_mesh::names::service_of;
/// let host = Host::new("outbound|9080|v1|reviews.prod.svc.cluster.local", Some("default"));
/// assert_eq!(service_of(&host), ("reviews".to_string(), Some("prod".to_string())));
/// assert_eq!(service_of(&Host::new("ratings", Some("prod"))), ("ratings".into(), Some("prod".into())));
/// assert_eq!(service_of(&Host::new("api.example.com:443", None)), ("api.example.com".into(), None));
/// ```
pub fn service_of(host: &Host) -> (String, Option<String>) {
    let mut name = host.name.trim();
    if name.contains('|') {
        name = name.rsplit('|').next().unwrap_or(name);
    }
    let name = match name.rsplit_once(':') {
        Some((before, port)) if port.chars().all(|c| c.is_ascii_digit()) => before,
        _ => name,
    };
    let name = name.trim_end_matches('.');
    let parts: Vec<&str> = name.split('.').collect();
    let cluster_local = matches!(
        parts.as_slice(),
        [_] | [_, _] | [_, _, "svc"] | [_, _, "svc", "cluster", "local"]
    );
    if !cluster_local {
        return (name.to_string(), None);
    }
    let namespace = parts
        .get(1)
        .map(|s| s.to_string())
        .or_else(|| host.namespace.clone());
    (parts[0].to_string(), namespace)
}

/// A name the graph file accepts as a service or endpoint name: ASCII letters, digits, `-` and
/// `_`; anything else becomes `-` (so `api.example.com` is `api-example-com`).
///
/// ```
/// assert_eq!(stormguard_mesh::names::graph_name("api.example.com"), "api-example-com");
/// ```
pub fn graph_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".to_string()
    } else {
        cleaned
    }
}
