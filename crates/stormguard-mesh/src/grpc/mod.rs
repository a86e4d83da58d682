//! gRPC service configs (gRFC A6): `methodConfig[]` with `timeout`, `retryPolicy` or
//! `hedgingPolicy`, and `retryThrottling`, read with gRPC's own meaning (docs/import-mapping.md,
//! section 5; grpc/grpc `doc/service_config.md` and `service_config.proto`).
//!
//! ## Which destination a method config is for
//! A service config belongs to a channel (a server name the file does not say), and names
//! services, not hosts. Each `name` entry becomes one route: its host is the service's last
//! dotted component in lower case (`helloworld.Greeter` → `greeter`), its route name the method
//! (`None`: every method of the service). An entry with no service is the channel's default
//! config: it applies to every service the channel calls, so its route goes to the host
//! [`DEFAULT_HOST`], with a note to map it (`--base` does).
//!
//! ## Meaning kept
//! `maxAttempts` counts tries (the first included), and gRPC treats more than 5 as 5: the
//! import writes 5 and the finding [`MAX_ATTEMPTS_CAPPED`]. `timeout` is the call's deadline
//! (the earlier of it and the application's): `request_timeout`, and `timeout` too, since gRPC
//! has no per-attempt timeout (each attempt may use what is left of the deadline).

mod policy;
#[cfg(test)]
mod tests;
mod throttle;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Host, Inventory, Resource, Route, System};
use crate::source::Origin;

/// The host of a method config with no service: the channel's default for every service.
pub const DEFAULT_HOST: &str = "grpc-default";

/// The finding of a `maxAttempts` above 5, which gRPC silently treats as 5.
pub const MAX_ATTEMPTS_CAPPED: &str = "grpc-max-attempts-capped";

/// Whether `root` is a gRPC service config.
pub fn detect(root: &Node) -> bool {
    root.get("methodConfig").is_some() || root.get("retryThrottling").is_some()
}

/// Reads a service config.
///
/// # Errors
/// A malformed field, at its line: a duration that is not one, a `maxAttempts` below 2, a
/// status code gRPC does not know, both a retry and a hedging policy, a `methodConfig` name
/// with a method but no service, a service and method named twice, or a required field missing
/// (gRPC refuses such a config).
pub fn read(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    inv.saw("gRPC service config");
    let root = &doc.root;
    let throttle = match root.get("retryThrottling") {
        Some(node) => Some(throttle::read(doc, inv, node)?),
        None => None,
    };
    for (key, value) in root.entries() {
        let key = key.as_str().unwrap_or_default();
        if !matches!(
            key,
            "methodConfig" | "method_config" | "retryThrottling" | "retry_throttling"
        ) {
            inv.unread(
                Origin::at(doc, value, format!("gRPC service config {key}")),
                key,
                "sets no timeout or retry (load balancing, health checking): not read",
            );
        }
    }
    let configs = root
        .get("methodConfig")
        .map(Node::items)
        .unwrap_or_default();
    // Each name's service and method, with the methodConfig that named it first: gRPC refuses
    // a config that names one twice ("duplicated name", grpc-go's `parseServiceConfig`), which
    // was read as two endpoints with different policies.
    let mut named: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for (i, config) in configs.iter().enumerate() {
        let path = format!("methodConfig[{i}]");
        let names = config.get("name").map(Node::items).unwrap_or_default();
        if names.is_empty() {
            inv.unread(
                Origin::at(doc, config, format!("gRPC service config {path}")),
                path,
                "a methodConfig without names applies to nothing: gRPC skips it",
            );
            continue;
        }
        let mut targets = Vec::new();
        for (j, name) in names.iter().enumerate() {
            let here = format!("{path}.name[{j}]");
            let text = |key| name.get(key).and_then(Node::as_str).unwrap_or_default();
            let key = (text("service").to_string(), text("method").to_string());
            if let Some(first) = named.insert(key.clone(), i) {
                let what = match (key.0.as_str(), key.1.as_str()) {
                    ("", _) => "the default config (no service)".to_string(),
                    (service, "") => format!("service {service}"),
                    (service, method) => format!("service {service} method {method}"),
                };
                return Err(doc.error(
                    name,
                    &here,
                    format!(
                        "duplicated name: {what} is named by methodConfig[{first}] too, and gRPC \
                         refuses the whole service config (\"duplicated name\"): name each \
                         service and method once"
                    ),
                ));
            }
            targets.push(target(doc, inv, name, &here)?);
        }
        let read = policy::read(doc, inv, config, &path, throttle.as_ref())?;
        if let Some(capped) = &read.capped {
            inv.findings.push(capped.finding(targets[0].0.clone()));
        }
        for (host, method, origin) in targets {
            inv.routes.push(Route {
                system: System::Grpc,
                host,
                name: method,
                caller: None,
                method: None,
                backends: Vec::new(),
                policy: read.policy.clone(),
                origin,
                resource: Resource {
                    kind: "ServiceConfig".to_string(),
                    namespace: None,
                    name: doc.file.to_string(),
                    file: doc.file.clone(),
                    document: doc.index,
                    path: path.clone(),
                },
            });
        }
    }
    Ok(())
}

/// The host, route name and origin of one `name` entry.
fn target(
    doc: &Document,
    inv: &mut Inventory,
    name: &Node,
    path: &str,
) -> Result<(Host, Option<String>, Origin), ImportError> {
    let text = |key| {
        name.get(key)
            .and_then(Node::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let (service, method) = (text("service"), text("method"));
    let origin = Origin::at(doc, name, format!("gRPC service config {path}"));
    let host = match (service, method) {
        (Some(service), _) => service_host(service),
        (None, None) => {
            inv.unread(
                origin.clone(),
                path,
                format!(
                    "the channel's default config, for every service it calls: imported for \
                     the host {DEFAULT_HOST}; name the service it calls (a --base graph maps it)"
                ),
            );
            DEFAULT_HOST.to_string()
        }
        (None, Some(_)) => {
            return Err(doc.error(
                name,
                &format!("{path}.service"),
                "a method without a service: gRPC refuses it; write the service (e.g. \
                 helloworld.Greeter), or no method for the default config",
            ))
        }
    };
    Ok((Host::new(host, None), method.map(str::to_string), origin))
}

/// `helloworld.Greeter` → `greeter`: the service's name without its proto package, as a graph
/// service is usually named.
///
/// ```
/// assert_eq!(stormguard_mesh::grpc::service_host("helloworld.Greeter"), "greeter");
/// assert_eq!(stormguard_mesh::grpc::service_host("Echo"), "echo");
/// ```
pub fn service_host(service: &str) -> String {
    service
        .rsplit('.')
        .next()
        .unwrap_or(service)
        .to_ascii_lowercase()
}
