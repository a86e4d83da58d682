//! The base graph from a Prometheus server: who calls whom, how often, and how fast, as the
//! mesh's own sidecars measured it, for `stormguard import --prometheus URL [--window DUR]`.
//!
//! ## Why the mesh's metrics
//! A mesh's sidecars count every request between workloads and time it, whatever the
//! applications do, so the calls of 200 services are already in Prometheus: Istio's
//! `istio_requests_total` and `istio_request_duration_milliseconds` by source and destination
//! workload, Linkerd's `request_total` and `response_latency_ms` by `deployment` and
//! `dst_deployment`. The import then puts the policies it read from the manifests on these
//! calls.
//!
//! ## How
//! [`queries`] says what to ask for a window (the HTTP is the caller's); [`base_graph`] turns
//! the answers into a graph file: each service with its latency, each call with how many times
//! a request makes it, the entry with its rate, and every value followed by a comment
//! `# prometheus: QUERY over WINDOW` naming the query it comes from. The meanings (which
//! reporter, what a service's own latency is, how a call made by some requests only is written)
//! are in `istio`, `linkerd` and `shape`.

mod istio;
mod linkerd;
mod shape;
#[cfg(test)]
mod tests;
mod write;

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard_recommend::histogram::Histogram;
use stormguard_recommend::prometheus_api::{self, ApiError};

/// The mesh whose metric names a query uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mesh {
    /// Istio (Envoy sidecars and gateways, Istio's standard metrics).
    Istio,
    /// Linkerd (linkerd2-proxy, scraped by linkerd-viz's Prometheus configuration).
    Linkerd,
}

/// One instant query to run at the server's present time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Its short name, written in the comment after every value it gave
    /// (`# prometheus: istio-requests over 10m`).
    pub name: &'static str,
    /// The mesh it reads.
    pub mesh: Mesh,
    /// The PromQL.
    pub promql: String,
}

/// Why no base graph came out of the answers.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// An answer that is not a usable instant vector (a refusal, not JSON, a bad sample).
    #[error("querying {query} ({promql}): {source}")]
    Answer {
        /// The query's name.
        query: &'static str,
        /// Its PromQL.
        promql: String,
        /// What is wrong with the answer.
        source: ApiError,
    },
    /// No query counted a request: nothing to build a graph from.
    #[error(
        "no request between workloads in the last {window}: neither Istio's istio_requests_total \
         nor Linkerd's request_total has traffic there; check that the server scrapes the \
         mesh's proxies, or widen --window"
    )]
    NoTraffic {
        /// The window, as written in the queries.
        window: String,
    },
}

/// Linkerd's labels of a pod's workload, and of its destination's (see `linkerd`).
const WORKLOADS: &str = "deployment, statefulset, daemonset";
const DST_WORKLOADS: &str = "dst_deployment, dst_statefulset, dst_daemonset";

/// The queries for `window`: Istio's then Linkerd's. Every one is run; a mesh that is not there
/// answers empty vectors.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::traffic::queries;
///
/// let q = queries(Duration::from_secs(600));
/// assert_eq!(q[0].name, "istio-requests");
/// assert!(q[0].promql.contains("rate(istio_requests_total[600s])"));
/// ```
pub fn queries(window: Duration) -> Vec<Query> {
    let w = prometheus_api::range(window);
    let query = |name, mesh, promql: String| Query { name, mesh, promql };
    vec![
        query(
            istio::REQUESTS,
            Mesh::Istio,
            format!(
                "sum by (reporter, source_workload, destination_workload, \
                 destination_service_name) (rate(istio_requests_total[{w}]))"
            ),
        ),
        query(
            istio::LATENCY,
            Mesh::Istio,
            format!(
                "sum by (le, reporter, source_workload, destination_workload, \
                 destination_service_name) (rate(istio_request_duration_milliseconds_bucket[{w}]))"
            ),
        ),
        query(
            linkerd::OUTBOUND,
            Mesh::Linkerd,
            format!(
                "sum by ({WORKLOADS}, {DST_WORKLOADS}, dst_service) \
                 (rate(request_total{{direction=\"outbound\"}}[{w}]))"
            ),
        ),
        query(
            linkerd::INBOUND,
            Mesh::Linkerd,
            format!("sum by ({WORKLOADS}) (rate(request_total{{direction=\"inbound\"}}[{w}]))"),
        ),
        query(
            linkerd::LATENCY,
            Mesh::Linkerd,
            format!(
                "sum by (le, direction, {WORKLOADS}, {DST_WORKLOADS}, dst_service) \
                 (rate(response_latency_ms_bucket[{w}]))"
            ),
        ),
    ]
}

/// The base graph file from the answers to [`queries`] (each query with the JSON body the
/// server answered), measured over `window`; `source` (the server's address) is named in the
/// file's header. The file parses with `stormguard_graph::parse`.
///
/// # Errors
/// An answer that is not an instant vector of the Prometheus HTTP API; no traffic at all.
pub fn base_graph(
    source: &str,
    window: Duration,
    answers: &[(Query, String)],
) -> Result<String, TrafficError> {
    let w = stormguard::duration::format(window);
    let mut observed = Observed::default();
    for mesh in [Mesh::Istio, Mesh::Linkerd] {
        let mine: Vec<&(Query, String)> = answers.iter().filter(|(q, _)| q.mesh == mesh).collect();
        if mine.is_empty() {
            continue;
        }
        let seen = match mesh {
            Mesh::Istio => istio::read(&Answers(mine))?,
            Mesh::Linkerd => linkerd::read(&Answers(mine))?,
        };
        if !seen.edges.is_empty() || !seen.outside.is_empty() {
            observed.meshes.push(mesh);
        }
        observed.absorb(seen);
    }
    if observed.meshes.is_empty() {
        return Err(TrafficError::NoTraffic { window: w });
    }
    let graph = shape::shape(&observed);
    Ok(write::toml(&graph, source, &w, &observed.meshes))
}

/// A figure with the labels of its series.
type Labelled<T> = (BTreeMap<String, String>, T);

/// The answers of one mesh's queries, by name.
struct Answers<'a>(Vec<&'a (Query, String)>);

impl Answers<'_> {
    fn find(&self, name: &'static str) -> Option<&(Query, String)> {
        self.0.iter().copied().find(|(q, _)| q.name == name)
    }

    /// The samples of a rate query; none when it was not asked.
    fn samples(&self, name: &'static str) -> Result<Vec<prometheus_api::Sample>, TrafficError> {
        let Some((query, json)) = self.find(name) else {
            return Ok(Vec::new());
        };
        prometheus_api::samples(json).map_err(|source| TrafficError::Answer {
            query: name,
            promql: query.promql.clone(),
            source,
        })
    }

    /// The histograms of a bucket query, by their labels; none when it was not asked.
    fn histograms(&self, name: &'static str) -> Result<Vec<Labelled<Histogram>>, TrafficError> {
        let Some((query, json)) = self.find(name) else {
            return Ok(Vec::new());
        };
        let series =
            prometheus_api::series(name, json, None).map_err(|source| TrafficError::Answer {
                query: name,
                promql: query.promql.clone(),
                source,
            })?;
        Ok(series
            .into_iter()
            .map(|s| (s.labels, s.histogram))
            .collect())
    }
}

/// A figure and the query it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured<T> {
    /// The figure.
    pub value: T,
    /// The name of the query that gave it.
    pub query: &'static str,
}

/// One caller calling one callee, over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Calls a second.
    pub rate: Measured<f64>,
    /// Their latency as the mesh measured it, in milliseconds.
    pub latency: Option<Measured<Histogram>>,
}

/// What the mesh measured, by graph service name (a Kubernetes Service where the metrics name
/// one, else the workload).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Calls between services: (caller, callee).
    pub edges: BTreeMap<(String, String), Edge>,
    /// Requests a second each service received from outside the mesh.
    pub outside: BTreeMap<String, Measured<f64>>,
    /// The latency of the requests each service received (all callers), in milliseconds.
    pub received: BTreeMap<String, Measured<Histogram>>,
    /// The meshes that reported traffic.
    pub meshes: Vec<Mesh>,
}

impl Observed {
    /// Adds another mesh's figures (a cluster half on each mesh has disjoint calls).
    fn absorb(&mut self, other: Observed) {
        for (key, edge) in other.edges {
            match self.edges.get_mut(&key) {
                Some(mine) => {
                    mine.rate.value += edge.rate.value;
                    if let Some(latency) = edge.latency {
                        add_histogram(&mut mine.latency, latency);
                    }
                }
                None => {
                    self.edges.insert(key, edge);
                }
            }
        }
        for (name, rate) in other.outside {
            self.outside
                .entry(name)
                .and_modify(|r| r.value += rate.value)
                .or_insert(rate);
        }
        for (name, latency) in other.received {
            let mut slot = self.received.remove(&name);
            add_histogram(&mut slot, latency);
            if let Some(merged) = slot {
                self.received.insert(name, merged);
            }
        }
    }
}

/// Adds `more` to the histogram in `slot`. Histograms on different bucket ladders cannot be
/// added without inventing where requests fell; then the one with more requests stays.
fn add_histogram(slot: &mut Option<Measured<Histogram>>, more: Measured<Histogram>) {
    let merged = match slot.take() {
        None => more,
        Some(mine) => match mine.value.merged(&more.value) {
            Some(sum) => Measured {
                value: sum,
                query: mine.query,
            },
            None if more.value.total() > mine.value.total() => more,
            None => mine,
        },
    };
    *slot = Some(merged);
}

/// A label's value when it names something: not absent, empty or Istio's `unknown`.
fn known<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    labels
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "unknown")
}

/// Each workload's Service, from samples that name both (the one with the most traffic when a
/// workload backs several), so that a workload's calls leave from the graph service its
/// callers call.
fn services_of_workloads<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
) -> BTreeMap<String, String> {
    let mut rates: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for (workload, service, rate) in pairs {
        *rates
            .entry(workload)
            .or_default()
            .entry(service)
            .or_default() += rate;
    }
    rates
        .into_iter()
        .filter_map(|(workload, services)| {
            let best = services
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)))?;
            Some((workload.to_string(), crate::names::graph_name(best.0)))
        })
        .collect()
}
