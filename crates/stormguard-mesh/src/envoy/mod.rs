//! Envoy: a bootstrap's static resources (YAML or JSON) and an admin `/config_dump` (proto3
//! JSON: camelCase or snake_case, 64-bit integers as strings), read with Envoy's own meaning and
//! defaults (docs/import-mapping.md, section 1).
//!
//! ## What is read where
//! - routes (`route`): every `RouteConfiguration` — inline in an HTTP connection manager of a
//!   listener (a bootstrap's `static_resources.listeners`, a dump's `ListenersConfigDump`), or
//!   in a dump's `RoutesConfigDump` — gives one [`Route`](crate::inventory::Route) per route that forwards to a cluster,
//!   with its timeout, retry policy (the route's, else its virtual host's) and hedge policy;
//! - clusters (`cluster`): each cluster gives a [`DestinationPolicy`](crate::inventory::DestinationPolicy) with its connect timeout
//!   and retry circuit breaker;
//! - the caller: the bootstrap's `node.cluster` (a dump's `BootstrapConfigDump`), since a
//!   sidecar's configuration is the policy of one caller's calls.
//!
//! A dump also holds what sets no timeout or retry (secrets, endpoints); each such part is
//! listed as unread, never silently dropped.

mod cluster;
pub(crate) use cluster::{DEFAULT_CONNECT_TIMEOUT, ENVOY_CLUSTER};
pub(crate) use route::{DEFAULT_BASE_INTERVAL, DEFAULT_ROUTE_TIMEOUT};
mod hedge;
mod retry;
mod route;
#[cfg(test)]
mod tests;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, Resource};
use crate::source::Origin;

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
/// A malformed field, at its line: a timeout that is not a duration, a count that is not a
/// whole number, a `max_interval` below its `base_interval`.
pub fn read(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    let root = &doc.root;
    if root.get("configs").is_some() && root.get("static_resources").is_none() {
        inv.saw("Envoy config_dump");
        read_dump(doc, inv)
    } else {
        inv.saw("Envoy bootstrap");
        read_bootstrap(doc, inv)
    }
}

/// What every part of one file shares: the file, its kind, the caller, and whether the
/// once-per-file notes were written.
pub(crate) struct Reader<'a> {
    pub(crate) doc: &'a Document,
    /// `bootstrap` or `config_dump`, for [`Resource::kind`].
    pub(crate) kind: &'static str,
    /// The bootstrap's `node.cluster`: the service this Envoy sends for.
    pub(crate) caller: Option<String>,
    /// Whether the note on Envoy's backoff growth was written (once per file).
    pub(crate) backoff_noted: bool,
}

impl Reader<'_> {
    /// The origin of `node`, described by its path in the file.
    pub(crate) fn at(&self, node: &Node, path: &str) -> Origin {
        Origin::at(self.doc, node, format!("Envoy {} {path}", self.kind))
    }

    /// The resource of a part of the file at `path`, named `name`.
    pub(crate) fn resource(&self, name: &str, path: &str) -> Resource {
        Resource {
            kind: self.kind.to_string(),
            namespace: None,
            name: name.to_string(),
            file: self.doc.file.clone(),
            document: self.doc.index,
            path: path.to_string(),
        }
    }
}

fn caller_of(bootstrap: &Node) -> Option<String> {
    bootstrap
        .get("node")
        .and_then(|n| n.get("cluster"))
        .and_then(Node::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

fn read_bootstrap(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    let root = &doc.root;
    let mut reader = Reader {
        doc,
        kind: "bootstrap",
        caller: caller_of(root),
        backoff_noted: false,
    };
    if let Some(dynamic) = root.get("dynamic_resources") {
        inv.unread(
            reader.at(dynamic, "dynamic_resources"),
            "dynamic_resources",
            "routes and clusters sent by a control plane (xDS) are not in this file: import \
             the running Envoy's /config_dump to read them",
        );
    }
    let Some(statics) = root.get("static_resources") else {
        return Ok(());
    };
    for (i, listener) in items(statics, "listeners") {
        let path = format!("static_resources.listeners[{i}]");
        read_listener(&mut reader, inv, listener, &path)?;
    }
    for (i, cluster) in items(statics, "clusters") {
        let path = format!("static_resources.clusters[{i}]");
        cluster::read(&reader, inv, cluster, &path)?;
    }
    Ok(())
}

/// The items of sequence `key` of `node`, with their indexes.
fn items<'a>(node: &'a Node, key: &str) -> impl Iterator<Item = (usize, &'a Node)> {
    node.get(key)
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
}

fn read_dump(doc: &Document, inv: &mut Inventory) -> Result<(), ImportError> {
    let root = &doc.root;
    let configs = root.get("configs").map(Node::items).unwrap_or_default();
    // The caller first: the dump lists the bootstrap first, but nothing requires it.
    let caller = configs
        .iter()
        .filter(|c| type_of(c).ends_with(".BootstrapConfigDump"))
        .find_map(|c| c.get("bootstrap").and_then(caller_of));
    let mut reader = Reader {
        doc,
        kind: "config_dump",
        caller,
        backoff_noted: false,
    };
    for (i, config) in configs.iter().enumerate() {
        let path = format!("configs[{i}]");
        let kind = type_of(config);
        // `RoutesConfigDump.DynamicRouteConfig` (a `?resource=` dump) is read by its last part.
        let short = kind.rsplit('.').next().unwrap_or(kind);
        match short {
            // Its static resources are in the listener and cluster dumps too.
            "BootstrapConfigDump" => {}
            "ListenersConfigDump" => read_listeners_dump(&mut reader, inv, config, &path)?,
            "RoutesConfigDump" => {
                for key in ["static_route_configs", "dynamic_route_configs"] {
                    for (j, entry) in items(config, key) {
                        if let Some(rc) = entry.get("route_config") {
                            let path = format!("{path}.{key}[{j}].route_config");
                            route::read_route_config(&mut reader, inv, rc, &path)?;
                        }
                    }
                }
            }
            "ClustersConfigDump" => {
                for key in ["static_clusters", "dynamic_active_clusters"] {
                    for (j, entry) in items(config, key) {
                        if let Some(cluster) = entry.get("cluster") {
                            let path = format!("{path}.{key}[{j}].cluster");
                            cluster::read(&reader, inv, cluster, &path)?;
                        }
                    }
                }
                for (j, entry) in items(config, "dynamic_warming_clusters") {
                    inv.unread(
                        reader.at(entry, &format!("{path}.dynamic_warming_clusters[{j}]")),
                        "dynamic_warming_clusters",
                        "a cluster still warming serves no request yet: its active version is \
                         read",
                    );
                }
            }
            // `/config_dump?resource=...` lists the entries themselves.
            "StaticRouteConfig" | "DynamicRouteConfig" => {
                if let Some(rc) = config.get("route_config") {
                    let path = format!("{path}.route_config");
                    route::read_route_config(&mut reader, inv, rc, &path)?;
                }
            }
            "StaticCluster" | "DynamicCluster" => {
                if let Some(cluster) = config.get("cluster") {
                    cluster::read(&reader, inv, cluster, &format!("{path}.cluster"))?;
                }
            }
            "StaticListener" | "DynamicListener" => {
                let listener = config
                    .get("listener")
                    .or_else(|| config.get("active_state").and_then(|s| s.get("listener")));
                if let Some(listener) = listener {
                    read_listener(&mut reader, inv, listener, &format!("{path}.listener"))?;
                }
            }
            _ => {
                let empty = config.entries().iter().all(|(k, v)| {
                    k.as_str() == Some("@type") || v.items().is_empty() && !v.is_map()
                });
                if !empty {
                    inv.unread(
                        reader.at(config, &path),
                        short,
                        "this part of the dump sets no timeout or retry",
                    );
                }
            }
        }
    }
    Ok(())
}

fn type_of(node: &Node) -> &str {
    node.get("@type").and_then(Node::as_str).unwrap_or_default()
}

fn read_listeners_dump(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    config: &Node,
    path: &str,
) -> Result<(), ImportError> {
    for (j, entry) in items(config, "static_listeners") {
        if let Some(listener) = entry.get("listener") {
            let path = format!("{path}.static_listeners[{j}].listener");
            read_listener(reader, inv, listener, &path)?;
        }
    }
    for (j, entry) in items(config, "dynamic_listeners") {
        let state = entry.get("active_state");
        match state.and_then(|s| s.get("listener")) {
            Some(listener) => {
                let path = format!("{path}.dynamic_listeners[{j}].active_state.listener");
                read_listener(reader, inv, listener, &path)?;
            }
            None => inv.unread(
                reader.at(entry, &format!("{path}.dynamic_listeners[{j}]")),
                "dynamic_listeners (warming or draining)",
                "a listener that is not active serves no request",
            ),
        }
    }
    Ok(())
}

/// The route configurations of a listener's HTTP connection managers.
fn read_listener(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    listener: &Node,
    path: &str,
) -> Result<(), ImportError> {
    let mut chains: Vec<(String, &Node)> = items(listener, "filter_chains")
        .map(|(i, chain)| (format!("{path}.filter_chains[{i}]"), chain))
        .collect();
    if let Some(chain) = listener.get("default_filter_chain") {
        chains.push((format!("{path}.default_filter_chain"), chain));
    }
    for (chain_path, chain) in chains {
        for (k, filter) in items(chain, "filters") {
            let filter_path = format!("{chain_path}.filters[{k}]");
            let config = filter.get("typed_config");
            let type_url = config.map(type_of).unwrap_or_default();
            let name = filter
                .get("name")
                .and_then(Node::as_str)
                .unwrap_or_default();
            if type_url.ends_with("HttpConnectionManager")
                || name.contains("http_connection_manager")
            {
                let Some(hcm) = config else { continue };
                let hcm_path = format!("{filter_path}.typed_config");
                if let Some(rc) = hcm.get("route_config") {
                    route::read_route_config(reader, inv, rc, &format!("{hcm_path}.route_config"))?;
                } else if let Some(rds) = hcm.get("rds") {
                    // A dump lists RDS routes in its RoutesConfigDump; a bootstrap cannot.
                    if reader.kind == "bootstrap" {
                        inv.unread(
                            reader.at(rds, &format!("{hcm_path}.rds")),
                            "rds",
                            "routes sent by a control plane (RDS) are not in this file: import \
                             the running Envoy's /config_dump to read them",
                        );
                    }
                } else if let Some(scoped) = hcm.get("scoped_routes") {
                    inv.unread(
                        reader.at(scoped, &format!("{hcm_path}.scoped_routes")),
                        "scoped_routes",
                        "scoped route configurations are not read",
                    );
                }
            } else if type_url.ends_with("TcpProxy") || name.contains("tcp_proxy") {
                inv.unread(
                    reader.at(filter, &filter_path),
                    "tcp_proxy",
                    "a TCP hop has no request to time out or retry",
                );
            }
        }
    }
    Ok(())
}

/// Whether an Envoy cluster name is no service: Envoy's and Istio's catch-all clusters, and
/// Istio's inbound clusters (the sidecar's hop to its own application, not a call between
/// services).
pub(crate) fn not_a_service(cluster: &str) -> Option<&'static str> {
    if cluster.starts_with("inbound|") || cluster == "InboundPassthroughCluster" {
        Some("an inbound cluster: the sidecar's hop to its own application, not a call between services")
    } else if matches!(
        cluster,
        "BlackHoleCluster"
            | "PassthroughCluster"
            | "InboundPassthroughClusterIpv4"
            | "InboundPassthroughClusterIpv6"
    ) {
        Some("Istio's catch-all cluster: no service")
    } else {
        None
    }
}
