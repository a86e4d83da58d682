//! From measured rates and latencies to the graph's shape: the entry, each service's calls per
//! request, its endpoints, its own latency.
//!
//! ## Calls per request
//! A call's `count` is the calls a second from caller to callee over the requests a second
//! the caller received (from every caller and from outside). A service that no one calls but
//! that calls others (an ingress gateway, which Istio does not report receiving anything) is
//! taken to receive one request per call it makes: a router. A figure within 5% above a whole
//! number is that number (counting noise); the rest of a figure is a share of the requests that
//! make one call more: 0.6 is "6 requests in 10 make the call", 2.5 is "every request makes it
//! twice, and half make it a third time". No call is dropped however rare.
//!
//! ## Endpoints for the shares
//! A graph call is made by every request of its service, so the calls made by a share of the
//! requests become endpoints ([`layout`]): the shares laid one after another around a circle
//! of circumference 1, each endpoint an arc between two ends, making the calls whose shares
//! cover it. Each call is then made by exactly its share of the requests, calls whose shares
//! add up to at most 1 are never made by the same request (a gateway that sends each request
//! to one backend), and the endpoints are at most one more than the calls. Within an endpoint
//! the calls are in callee name order and sequential: the metrics say neither order nor
//! parallelism.
//!
//! ## A service's own latency
//! A graph service's `latency` is its own work, its calls left out, while the mesh measures
//! the time of the requests it received, calls included. So each quantile (p50, p99) is the
//! received one less the calls' same quantile times their calls per request. Quantiles add
//! exactly when the parts rise and fall together; for independent parts the received p99 is
//! less than the sum of theirs, so the own p99 comes out low (the simulated p99 then stays at or
//! below the measured one). A result below 1us (the calls measured longer than the requests
//! around them: another reporter, another window edge) is written as 1us, with a comment.

use std::collections::{BTreeMap, BTreeSet};

use stormguard_recommend::histogram::Histogram;

use super::{add_histogram, Measured, Observed};

/// A share of a call's requests within this of the whole number above is that number.
const WHOLE_TOLERANCE: f64 = 0.05;

/// The most calls per request a graph call takes.
const MAX_COUNT: u32 = 1000;

/// The least own latency a graph takes, in milliseconds (1us).
const MIN_LATENCY_MS: f64 = 0.001;

/// The graph to write.
#[derive(Debug)]
pub(super) struct Graph {
    pub entry: Entry,
    /// Services in name order, the placeholder (if any) first.
    pub services: Vec<Service>,
}

/// Where users come in.
#[derive(Debug)]
pub(super) struct Entry {
    pub service: String,
    pub rate: f64,
    pub why: EntryWhy,
}

/// Why that service is the entry.
#[derive(Debug)]
pub(super) enum EntryWhy {
    /// It alone receives requests from outside the mesh, this many a second by that query.
    Outside(&'static str),
    /// No one calls it, and it calls others (an ingress gateway): its calls, by that query.
    Root(&'static str),
    /// Several services receive requests from outside: a placeholder calls each.
    Placeholder(&'static str),
    /// Every service is called by another (a cycle): the busiest is taken.
    Busiest(&'static str),
}

impl EntryWhy {
    /// The query the entry's rate comes from.
    pub fn query(&self) -> &'static str {
        match self {
            EntryWhy::Outside(q) | EntryWhy::Root(q) | EntryWhy::Placeholder(q) => q,
            EntryWhy::Busiest(q) => q,
        }
    }
}

#[derive(Debug)]
pub(super) struct Service {
    pub name: String,
    /// Requests a second it received.
    pub received: f64,
    /// It received none that the mesh reports (a router, see the module's doc).
    pub root: bool,
    pub placeholder: bool,
    pub latency: Option<Own>,
    pub calls: Vec<Call>,
    /// Empty when every call is made by every request.
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
pub(super) struct Call {
    pub to: String,
    pub rate: Measured<f64>,
    /// Calls per request, as measured.
    pub per_request: f64,
    /// Calls every request makes.
    pub whole: u32,
    /// The share of requests that make one more.
    pub share: f64,
}

#[derive(Debug)]
pub(super) struct Endpoint {
    pub name: String,
    /// Its share of the service's requests.
    pub weight: f64,
    /// Calls each of its requests makes, by index into `Service::calls` (0: not made).
    pub counts: Vec<u32>,
}

/// A service's own latency and how it was worked out, in milliseconds.
#[derive(Debug)]
pub(super) struct Own {
    pub p50: f64,
    pub p99: f64,
    pub received: (f64, f64),
    pub calls: (f64, f64),
    pub query: &'static str,
    /// From its callers' reports: no report of its own.
    pub from_callers: bool,
    /// A quantile came out below 1us and was raised to it.
    pub floored: bool,
}

pub(super) fn shape(observed: &Observed) -> Graph {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (caller, callee) in observed.edges.keys() {
        names.insert(caller.clone());
        names.insert(callee.clone());
    }
    names.extend(observed.outside.keys().cloned());
    names.extend(observed.received.keys().cloned());

    // Each service's requests received and latency, in one pass over the edges (a mesh of
    // thousands of calls stays linear).
    let mut into: BTreeMap<&str, f64> = BTreeMap::new();
    for ((_, callee), edge) in &observed.edges {
        *into.entry(callee).or_default() += edge.rate.value;
    }
    for (name, outside) in &observed.outside {
        *into.entry(name).or_default() += outside.value;
    }
    let latencies = received_latencies(observed);
    fn out_of<'a>(
        observed: &'a Observed,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a (String, String), &'a super::Edge)> {
        observed
            .edges
            .range((name.to_string(), String::new())..)
            .take_while(move |((c, _), _)| c == name)
    }

    let mut services: Vec<Service> = names
        .iter()
        .map(|name| {
            let mut received = into.get(name.as_str()).copied().unwrap_or(0.0);
            let root = received <= 0.0;
            if root {
                received = out_of(observed, name).map(|(_, e)| e.rate.value).sum();
            }
            let calls: Vec<Call> = out_of(observed, name)
                .map(|((_, callee), edge)| {
                    let per_request = if received > 0.0 {
                        edge.rate.value / received
                    } else {
                        0.0
                    };
                    let (whole, share) = split(per_request);
                    Call {
                        to: callee.clone(),
                        rate: edge.rate.clone(),
                        per_request,
                        whole,
                        share,
                    }
                })
                .collect();
            let endpoints = endpoints(&calls);
            Service {
                name: name.clone(),
                received,
                root,
                placeholder: false,
                latency: own_latency(observed, &latencies, name, &calls),
                calls,
                endpoints,
            }
        })
        .collect();

    let entry = entry(observed, &mut services);
    Graph { entry, services }
}

/// The entry: the one service receiving outside requests (or, for a router no one calls, its
/// calls); several → a placeholder `users` calling each by its share.
fn entry(observed: &Observed, services: &mut Vec<Service>) -> Entry {
    let mut candidates: Vec<(String, f64, EntryWhy)> = Vec::new();
    for service in services.iter() {
        if let Some(outside) = observed.outside.get(&service.name) {
            candidates.push((
                service.name.clone(),
                outside.value,
                EntryWhy::Outside(outside.query),
            ));
        } else if service.root && service.received > 0.0 {
            let query = service.calls.first().map_or("", |c| c.rate.query);
            candidates.push((
                service.name.clone(),
                service.received,
                EntryWhy::Root(query),
            ));
        }
    }
    if candidates.len() == 1 {
        let (service, rate, why) = candidates.remove(0);
        return Entry { service, rate, why };
    }
    if candidates.is_empty() {
        // Every service is called by another: the busiest stands for where users come in.
        let busiest = services
            .iter()
            .max_by(|a, b| a.received.total_cmp(&b.received).then(b.name.cmp(&a.name)));
        let (service, rate) =
            busiest.map_or((String::new(), 0.0), |s| (s.name.clone(), s.received));
        let query = observed.edges.values().next().map_or("", |e| e.rate.query);
        return Entry {
            service,
            rate,
            why: EntryWhy::Busiest(query),
        };
    }
    let total: f64 = candidates.iter().map(|c| c.1).sum();
    let mut name = "users".to_string();
    let mut n = 1;
    while services.iter().any(|s| s.name == name) {
        n += 1;
        name = format!("users-{n}");
    }
    let query = candidates.first().map_or("", |c| c.2.query());
    let calls: Vec<Call> = candidates
        .iter()
        .map(|(to, rate, why)| {
            let query = why.query();
            let per_request = rate / total;
            let (whole, share) = split(per_request);
            Call {
                to: to.clone(),
                rate: Measured {
                    value: *rate,
                    query,
                },
                per_request,
                whole,
                share,
            }
        })
        .collect();
    let endpoints = endpoints(&calls);
    services.insert(
        0,
        Service {
            name: name.clone(),
            received: total,
            root: true,
            placeholder: true,
            latency: None,
            calls,
            endpoints,
        },
    );
    Entry {
        service: name,
        rate: total,
        why: EntryWhy::Placeholder(query),
    }
}

/// Calls per request as (calls every request makes, share of requests that make one more).
fn split(per_request: f64) -> (u32, f64) {
    let whole = (per_request + WHOLE_TOLERANCE).floor();
    let share = per_request - whole;
    if whole >= f64::from(MAX_COUNT) {
        return (MAX_COUNT, 0.0);
    }
    if whole >= 1.0 && share < WHOLE_TOLERANCE {
        return (whole as u32, 0.0);
    }
    (whole as u32, share.max(0.0))
}

/// The endpoints that give each call its share (none when every call is whole).
fn endpoints(calls: &[Call]) -> Vec<Endpoint> {
    let shares: Vec<f64> = calls.iter().map(|c| c.share).collect();
    if shares.iter().all(|&s| s <= 0.0) {
        return Vec::new();
    }
    let mut taken: BTreeSet<String> = BTreeSet::new();
    layout(&shares)
        .into_iter()
        .map(|(weight, covered)| {
            let extra: Vec<&str> = calls
                .iter()
                .zip(&covered)
                .filter(|(_, &c)| c)
                .map(|(call, _)| call.to.as_str())
                .collect();
            let base = if extra.is_empty() {
                "rest".to_string()
            } else {
                format!("to-{}", extra.join("-"))
            };
            let mut name = base.clone();
            let mut n = 1;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
            let counts = calls
                .iter()
                .zip(&covered)
                .map(|(call, &c)| call.whole + u32::from(c))
                .collect();
            Endpoint {
                name,
                weight,
                counts,
            }
        })
        .collect()
}

/// The shares (each from 0 to below 1) laid one after another around a circle of circumference
/// 1: the arcs between consecutive ends, each with its length and which shares cover it; arcs
/// covered alike are one. Each share is covered by exactly its length; shares adding up to at
/// most 1 never overlap. In order of first position.
///
/// With shares 0.6 and 0.7: share 0 covers [0, 0.6), share 1 covers [0.6, 1) and [0, 0.3).
pub(super) fn layout(shares: &[f64]) -> Vec<(f64, Vec<bool>)> {
    let mut starts = Vec::with_capacity(shares.len());
    let mut ends: Vec<f64> = vec![0.0];
    let mut at = 0.0_f64;
    for &share in shares {
        starts.push(at);
        if share > 0.0 {
            ends.push(at.rem_euclid(1.0));
            at += share;
            ends.push(at.rem_euclid(1.0));
        }
    }
    ends.sort_by(f64::total_cmp);
    ends.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let mut arcs: Vec<(f64, Vec<bool>)> = Vec::new();
    for (i, &from) in ends.iter().enumerate() {
        let to = ends.get(i + 1).copied().unwrap_or(1.0);
        let length = to - from;
        if length < 1e-9 {
            continue;
        }
        let middle = from + length / 2.0;
        let covered: Vec<bool> = shares
            .iter()
            .zip(&starts)
            .map(|(&share, &start)| share > 0.0 && (middle - start).rem_euclid(1.0) < share)
            .collect();
        match arcs.iter_mut().find(|(_, c)| *c == covered) {
            Some(arc) => arc.0 += length,
            None => arcs.push((length, covered)),
        }
    }
    arcs
}

/// `name`'s own latency (see the module's doc); `None` when no histogram measured it.
fn own_latency(
    observed: &Observed,
    latencies: &BTreeMap<String, (Measured<Histogram>, bool)>,
    name: &str,
    calls: &[Call],
) -> Option<Own> {
    let (received, from_callers) = latencies.get(name).cloned()?;
    let p50 = received.value.quantile(0.5)?;
    let p99 = received.value.quantile(0.99)?;
    let mut spent = (0.0, 0.0);
    for call in calls {
        let latency = observed
            .edges
            .get(&(name.to_string(), call.to.clone()))
            .and_then(|e| e.latency.clone())
            .or_else(|| latencies.get(&call.to).map(|(l, _)| l.clone()));
        if let Some(latency) = latency {
            spent.0 += call.per_request * latency.value.quantile(0.5).unwrap_or(0.0);
            spent.1 += call.per_request * latency.value.quantile(0.99).unwrap_or(0.0);
        }
    }
    let own50 = p50 - spent.0;
    let own99 = p99 - spent.1;
    let floored = own50 < MIN_LATENCY_MS || own99 < MIN_LATENCY_MS;
    let own50 = own50.max(MIN_LATENCY_MS);
    Some(Own {
        p50: own50,
        p99: own99.max(own50),
        received: (p50, p99),
        calls: spent,
        query: received.query,
        from_callers,
        floored,
    })
}

/// The latency of the requests each service received: its own report, else its callers'
/// reports of their calls to it (an unmeshed service), and whether it is the latter.
fn received_latencies(observed: &Observed) -> BTreeMap<String, (Measured<Histogram>, bool)> {
    let mut from_callers: BTreeMap<&str, Option<Measured<Histogram>>> = BTreeMap::new();
    for ((_, callee), edge) in &observed.edges {
        if let Some(latency) = &edge.latency {
            if !observed.received.contains_key(callee) {
                add_histogram(from_callers.entry(callee).or_default(), latency.clone());
            }
        }
    }
    let mut out: BTreeMap<String, (Measured<Histogram>, bool)> = observed
        .received
        .iter()
        .map(|(name, latency)| (name.clone(), (latency.clone(), false)))
        .collect();
    for (name, latency) in from_callers {
        if let Some(latency) = latency {
            out.insert(name.to_string(), (latency, true));
        }
    }
    out
}

#[cfg(test)]
pub(super) fn split_for_tests(per_request: f64) -> (u32, f64) {
    split(per_request)
}
