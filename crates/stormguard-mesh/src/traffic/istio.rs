//! Istio's standard metrics: `istio_requests_total` and `istio_request_duration_milliseconds`,
//! by `reporter`, `source_workload`, `destination_workload` and `destination_service_name`.
//!
//! ## Which reporter
//! Both sidecars of a call report it: the caller's with `reporter="source"`, the callee's with
//! `reporter="destination"`. The destination's report is the one read where there is one:
//! it is the only one that sees requests from outside the mesh (an unmeshed client, a load
//! balancer: `source_workload="unknown"`), which make the entry, and its latency is the
//! callee's own time, the network left out, which is what a service's `latency` is. The source's
//! report fills in calls no destination sidecar reports: to an unmeshed destination (a
//! database without a sidecar, an external API) and from an ingress gateway, which reports as
//! source only. Reading both without preference would count a meshed call twice.
//!
//! ## Names
//! A callee is its Kubernetes Service (`destination_service_name`: the host its routes are
//! written for, so the imported policies find the call), else its workload; a call to
//! Envoy's `PassthroughCluster` (hosts outside the registry) has neither and is not read. A caller is known
//! by its workload only (`source_workload`); it becomes the Service that the same workload is
//! seen serving as a destination, so that `reviews-v1`'s calls leave from `reviews`.
//! Namespaces are not told apart.

use std::collections::BTreeMap;

use stormguard_recommend::histogram::Histogram;

use super::TrafficError;
use super::{add_histogram, known, services_of_workloads, Answers, Edge, Measured, Observed};

/// The name of the request-rate query.
pub(super) const REQUESTS: &str = "istio-requests";
/// The name of the latency-buckets query.
pub(super) const LATENCY: &str = "istio-latency";

/// Who reported a figure: the destination's report is preferred (see the module's doc).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reporter {
    Destination,
    Other,
}

fn reporter(labels: &BTreeMap<String, String>) -> Reporter {
    match labels.get("reporter").map(String::as_str) {
        Some("destination") => Reporter::Destination,
        _ => Reporter::Other,
    }
}

/// (caller, callee): the caller `None` for outside the mesh.
type Key = (Option<String>, String);

pub(super) fn read(answers: &Answers<'_>) -> Result<Observed, TrafficError> {
    let rates = answers.samples(REQUESTS)?;
    let latencies = answers.histograms(LATENCY)?;
    let services = services_of_workloads(
        rates
            .iter()
            .map(|(labels, rate)| (labels, *rate))
            .chain(latencies.iter().map(|(labels, h)| (labels, h.total())))
            .filter_map(|(labels, rate)| {
                Some((
                    known(labels, "destination_workload")?,
                    service_name(labels)?,
                    rate,
                ))
            }),
    );
    let key = |labels: &BTreeMap<String, String>| -> Option<Key> {
        let callee = service_name(labels)
            .map(crate::names::graph_name)
            .or_else(|| known(labels, "destination_workload").map(|w| node(&services, w)))?;
        let caller = known(labels, "source_workload").map(|w| node(&services, w));
        Some((caller, callee))
    };

    let mut rate_by: BTreeMap<(Key, Reporter), f64> = BTreeMap::new();
    for (labels, rate) in &rates {
        if let Some(k) = key(labels) {
            *rate_by.entry((k, reporter(labels))).or_default() += rate;
        }
    }
    let mut latency_by: BTreeMap<(Key, Reporter), Option<Measured<Histogram>>> = BTreeMap::new();
    for (labels, histogram) in latencies {
        if let Some(k) = key(&labels) {
            add_histogram(
                latency_by.entry((k, reporter(&labels))).or_default(),
                Measured {
                    value: histogram,
                    query: LATENCY,
                },
            );
        }
    }

    let mut observed = Observed::default();
    // The BTreeMap orders a key's Destination report before its Other one: the first seen wins.
    for ((k, reporter), rate) in &rate_by {
        if *rate <= 0.0 {
            continue;
        }
        let (caller, callee) = k.clone();
        let Some(caller) = caller else {
            observed.outside.entry(callee).or_insert(Measured {
                value: *rate,
                query: REQUESTS,
            });
            continue;
        };
        let edge = (caller, callee);
        if observed.edges.contains_key(&edge) {
            continue;
        }
        let latency = latency_by.get(&(k.clone(), *reporter)).cloned().flatten();
        let rate = Measured {
            value: *rate,
            query: REQUESTS,
        };
        observed.edges.insert(edge, Edge { rate, latency });
    }
    // What a service received: every destination report into it, callers and outside alike
    // (a service no destination sidecar reports gets its callers' reports in `shape`).
    for (((_, callee), reporter), latency) in &latency_by {
        if let (Reporter::Destination, Some(latency)) = (reporter, latency.clone()) {
            let mut slot = observed.received.remove(callee);
            add_histogram(&mut slot, latency);
            observed.received.extend(slot.map(|l| (callee.clone(), l)));
        }
    }
    Ok(observed)
}

/// The Service a call went to: `destination_service_name`, unless it is one of the clusters
/// Envoy sends to when no Service matched (`PassthroughCluster` for any host outside the mesh's
/// registry, `BlackHoleCluster`, `InboundPassthroughCluster...` for a port no Service
/// declares), which lump unrelated destinations together; then the workload names the callee,
/// and with no workload either the call is not read.
fn service_name(labels: &BTreeMap<String, String>) -> Option<&str> {
    known(labels, "destination_service_name").filter(|name| {
        !matches!(*name, "PassthroughCluster" | "BlackHoleCluster")
            && !name.starts_with("InboundPassthroughCluster")
    })
}

/// The graph service of a workload.
fn node(services: &BTreeMap<String, String>, workload: &str) -> String {
    services
        .get(workload)
        .cloned()
        .unwrap_or_else(|| crate::names::graph_name(workload))
}
