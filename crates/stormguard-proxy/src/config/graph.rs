//! The settings as a service graph, so that `stormguard check` and `stormguard sim` read a proxy
//! settings file as they read a graph file: what they say of a route is what the proxy does
//! with it, since a route's policy already is a graph [`Call`](stormguard_graph::model::Call).
//!
//! ## The graph
//! - One calling service, the application beside the sidecar, named [`APP`] (`app-2`, `app-3`,
//!   ... when an upstream already has that name). It is the entry: users call it.
//! - Its endpoints are the routes, one per route, named by the route, each of weight 1: the
//!   file says which requests a route takes, not how many, so each route gets an equal share.
//!   Each endpoint makes one call, the route's (`route.call`), to its upstream. Findings name a
//!   route's call `app/ROUTE -> UPSTREAM`, at the route's line.
//! - One service per upstream that a route sends to, named by the upstream, with as many
//!   instances as it lists. Its latency is unknown to the proxy's file: it gets a graph file's
//!   default (p50 1 ms, p99 10 ms), so the rules that weigh a timeout against a latency judge
//!   the timeouts against that, and the figures are those of the policies, not of the services.
//!   It is placed at the first route that sends to it, the line a finding on it points to.
//! - What a user waits (`entry.timeout`) and the user rate are a graph file's defaults, 10 s and
//!   100 requests a second, since the proxy's file does not say; the application's own work
//!   and its instances (1) too. There are no scenarios: `sim` runs the routes as they are.

use std::collections::BTreeMap;

use stormguard_graph::model::{CheckConfig, Endpoint, Entry, Graph, Latency, Service, Span};

use super::model::Config;

/// The name of the calling service: the application whose requests the sidecar forwards.
pub const APP: &str = "app";

/// What a user waits when the file does not say: a graph file's default `entry.timeout`.
const ENTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// User requests per second when the file does not say: a graph file's default `entry.rate`.
const ENTRY_RATE: f64 = 100.0;

/// The settings `config` as a service graph (see the module docs): [`APP`] calling each route's
/// upstream from an endpoint per route.
///
/// ```
/// use stormguard_proxy::config;
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001", "127.0.0.1:9002"]
/// [[routes]]
/// name = "users"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// let graph = config::to_graph(&config);
/// assert_eq!(graph.entry.service, "app");
/// let app = &graph.services["app"];
/// assert_eq!(app.endpoints[0].name, "users");
/// assert_eq!(app.endpoints[0].calls[0].to, "api");
/// assert_eq!(graph.services["api"].instances, 2);
/// ```
pub fn to_graph(config: &Config) -> Graph {
    let app = caller_name(config);
    let first_span = config
        .routes
        .first()
        .map_or_else(Span::default, |r| r.call.span);
    let mut services = BTreeMap::new();
    for route in &config.routes {
        let Some(upstream) = config.upstreams.get(&route.upstream) else {
            continue;
        };
        services
            .entry(route.upstream.clone())
            .or_insert_with(|| Service {
                name: route.upstream.clone(),
                // A discovered upstream has as many instances as DNS says when it runs: the
                // graph judges it as one, the case where a retry has nowhere else to go.
                instances: u32::try_from(upstream.instances.len())
                    .unwrap_or(u32::MAX)
                    .max(1),
                ..service(&route.upstream, route.call.span)
            });
    }
    let endpoints = config
        .routes
        .iter()
        .map(|route| Endpoint {
            name: route.name.clone(),
            weight: 1.0,
            calls: vec![route.call.clone()],
            span: route.call.span,
        })
        .collect();
    services.insert(
        app.clone(),
        Service {
            endpoints,
            ..service(&app, first_span)
        },
    );
    Graph {
        entry: Entry {
            service: app,
            timeout: ENTRY_TIMEOUT,
            rate: ENTRY_RATE,
            span: first_span,
        },
        services,
        check: CheckConfig::default(),
        scenarios: BTreeMap::new(),
        assumed: Default::default(),
    }
}

/// [`APP`], or `app-2`, `app-3` ... when an upstream has the name.
fn caller_name(config: &Config) -> String {
    std::iter::once(APP.to_string())
        .chain((2..).map(|n| format!("{APP}-{n}")))
        .find(|name| !config.upstreams.contains_key(name))
        .expect("the names are endless and the upstreams are not")
}

/// A service of a graph file's defaults, without calls.
fn service(name: &str, span: Span) -> Service {
    Service {
        name: name.to_string(),
        instances: 1,
        concurrency: 16,
        queue: 64,
        latency: Latency::default(),
        contention: std::time::Duration::ZERO,
        queue_discipline: Default::default(),
        queue_timeout: None,
        calls: Vec::new(),
        endpoints: Vec::new(),
        span,
    }
}

/// Whether `text` reads as a proxy settings file rather than a graph file: a TOML document with
/// `routes` or `upstreams` and no `entry`, the table every graph file has. Text that is not TOML
/// is neither; the caller's parser says where it breaks.
///
/// ```
/// use stormguard_proxy::config::is_settings_file;
///
/// assert!(is_settings_file("[upstreams.api]\ninstances = [\"127.0.0.1:1\"]\n"));
/// assert!(!is_settings_file("[entry]\nservice = \"web\"\n"));
/// assert!(!is_settings_file("[entry\n"));
/// ```
pub fn is_settings_file(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    !table.contains_key("entry")
        && (table.contains_key("routes") || table.contains_key("upstreams"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> Graph {
        to_graph(&super::super::parse("p.toml", text).unwrap())
    }

    const TWO_ROUTES: &str = r#"
[upstreams.api]
instances = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
[upstreams.app]
instances = ["127.0.0.1:9004"]
[[routes]]
name = "users"
match = { path_prefix = "/users" }
upstream = "api"
timeout = "2s"
[[routes]]
name = "legacy"
upstream = "app"
timeout = "1s"
max_attempts = 3
request_timeout = "3s"
"#;

    #[test]
    fn each_route_is_an_endpoint_of_the_caller_calling_its_upstream() {
        let graph = graph(TWO_ROUTES);
        // An upstream is named app, so the caller is not.
        assert_eq!(graph.entry.service, "app-2");
        let caller = &graph.services["app-2"];
        let routes: Vec<(&str, f64, &str, u32)> = caller
            .endpoints
            .iter()
            .map(|e| {
                let call = &e.calls[0];
                (
                    e.name.as_str(),
                    e.weight,
                    call.to.as_str(),
                    call.max_attempts,
                )
            })
            .collect();
        assert_eq!(
            routes,
            [("users", 1.0, "api", 1), ("legacy", 1.0, "app", 3)]
        );
        assert!(caller.calls.is_empty());
        assert_eq!(
            (
                graph.services["api"].instances,
                graph.services["app"].instances
            ),
            (3, 1)
        );
        // Every place is a line of the proxy's file: the routes', and each upstream at the
        // first route that sends to it.
        assert_eq!(
            caller.endpoints[1].span,
            Span {
                line: 11,
                column: 1
            }
        );
        assert_eq!(
            graph.services["app"].span,
            Span {
                line: 11,
                column: 1
            }
        );
        assert_eq!(graph.services["api"].span, Span { line: 6, column: 1 });
        assert_eq!(graph.entry.timeout, ENTRY_TIMEOUT);
    }

    #[test]
    fn the_example_settings_file_is_a_settings_file() {
        let text = include_str!("../../../../examples/proxy/stormguard.toml");
        assert!(is_settings_file(text));
        let graph = graph(text);
        assert_eq!(graph.services["app"].endpoints[0].name, "api");
        assert!(!is_settings_file(
            TWO_ROUTES
                .replace(
                    "[upstreams.api]",
                    "[entry]\nservice = \"x\"\n[upstreams.api]"
                )
                .as_str()
        ));
    }
}
