//! Linkerd's proxy metrics: `request_total` and `response_latency_ms`, with the labels
//! linkerd-viz's Prometheus adds to every series of a meshed pod (its workload, `deployment`,
//! `statefulset` or `daemonset`, from the pod's `linkerd.io/proxy-<kind>` label, and
//! `namespace`) and the ones the proxy puts on an outbound series from the destination's
//! metadata (`dst_deployment`, ..., `dst_service`, `dst_namespace`): the labels `linkerd viz
//! stat` and `linkerd viz edges` group by.
//!
//! ## Which direction
//! A call between meshed pods is counted twice: by the caller's proxy (`direction="outbound"`,
//! with the `dst_` labels) and by the callee's (`direction="inbound"`, which does not say who
//! called). So the calls come from the outbound series, and what a service received from
//! outside the mesh is its inbound requests less the outbound calls the mesh made to it (less
//! than 5% of its inbound is taken for counting noise). A service's latency is its inbound
//! `response_latency_ms` (time to the first byte of the response, as the callee's proxy saw
//! it); a call's is its outbound one. An outbound call to a host outside Kubernetes has no
//! `dst_` labels and is not read. Namespaces are not told apart.

use std::collections::BTreeMap;

use super::TrafficError;
use super::{add_histogram, known, services_of_workloads, Answers, Edge, Measured, Observed};

/// The name of the outbound request-rate query.
pub(super) const OUTBOUND: &str = "linkerd-outbound";
/// The name of the inbound request-rate query.
pub(super) const INBOUND: &str = "linkerd-inbound";
/// The name of the latency-buckets query.
pub(super) const LATENCY: &str = "linkerd-latency";

/// The share of a service's inbound requests below which its inbound less its meshed callers'
/// calls is taken for counting noise (two proxies scraped a moment apart), not outside traffic.
const OUTSIDE_NOISE: f64 = 0.05;

pub(super) fn read(answers: &Answers<'_>) -> Result<Observed, TrafficError> {
    let outbound = answers.samples(OUTBOUND)?;
    let inbound = answers.samples(INBOUND)?;
    let latencies = answers.histograms(LATENCY)?;
    let services = services_of_workloads(outbound.iter().filter_map(|(labels, rate)| {
        Some((
            workload(labels, "dst_")?,
            known(labels, "dst_service")?,
            *rate,
        ))
    }));
    let node = |workload: &str| {
        services
            .get(workload)
            .cloned()
            .unwrap_or_else(|| crate::names::graph_name(workload))
    };
    let edge_of = |labels: &BTreeMap<String, String>| -> Option<(String, String)> {
        let caller = node(workload(labels, "")?);
        let callee = known(labels, "dst_service")
            .map(crate::names::graph_name)
            .or_else(|| workload(labels, "dst_").map(node))?;
        Some((caller, callee))
    };

    let mut observed = Observed::default();
    for (labels, rate) in &outbound {
        if let Some(edge) = edge_of(labels).filter(|_| *rate > 0.0) {
            observed
                .edges
                .entry(edge)
                .and_modify(|e| e.rate.value += rate)
                .or_insert(Edge {
                    rate: Measured {
                        value: *rate,
                        query: OUTBOUND,
                    },
                    latency: None,
                });
        }
    }
    let mut received_rate: BTreeMap<String, f64> = BTreeMap::new();
    for (labels, rate) in &inbound {
        if let Some(workload) = workload(labels, "") {
            *received_rate.entry(node(workload)).or_default() += rate;
        }
    }
    for (service, rate) in received_rate {
        let meshed: f64 = observed
            .edges
            .iter()
            .filter(|((_, callee), _)| *callee == service)
            .map(|(_, e)| e.rate.value)
            .sum();
        let outside = rate - meshed;
        if outside > OUTSIDE_NOISE * rate {
            observed.outside.insert(
                service,
                Measured {
                    value: outside,
                    query: INBOUND,
                },
            );
        }
    }
    for (labels, histogram) in latencies {
        let latency = Measured {
            value: histogram,
            query: LATENCY,
        };
        match labels.get("direction").map(String::as_str) {
            Some("inbound") => {
                if let Some(workload) = workload(&labels, "") {
                    let service = node(workload);
                    let mut slot = observed.received.remove(&service);
                    add_histogram(&mut slot, latency);
                    observed.received.extend(slot.map(|l| (service, l)));
                }
            }
            Some("outbound") => {
                if let Some(edge) = edge_of(&labels).and_then(|k| observed.edges.get_mut(&k)) {
                    add_histogram(&mut edge.latency, latency);
                }
            }
            _ => {}
        }
    }
    Ok(observed)
}

/// The kinds of workload a meshed pod's series name, as linkerd-viz relabels them from the pod's
/// `linkerd.io/proxy-<kind>` label (and the proxy names a destination's, with `dst_`).
const WORKLOAD_KINDS: [&str; 3] = ["deployment", "statefulset", "daemonset"];

/// The workload of a series (`prefix` "" for the pod's own, "dst_" for its destination's).
fn workload<'a>(labels: &'a BTreeMap<String, String>, prefix: &str) -> Option<&'a str> {
    WORKLOAD_KINDS
        .iter()
        .find_map(|kind| known(labels, &format!("{prefix}{kind}")))
}
