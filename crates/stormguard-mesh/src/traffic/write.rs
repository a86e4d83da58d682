//! The base graph as a graph file: every value followed by `# prometheus: QUERY over WINDOW`
//! and the figures it was worked out from.

use std::fmt::Write as _;

use super::shape::{EntryWhy, Graph, Service};
use super::Mesh;
use crate::toml_text::{decimal, latency, quoted};

pub(super) fn toml(graph: &Graph, source: &str, window: &str, meshes: &[Mesh]) -> String {
    let mut out = String::new();
    let metrics: Vec<&str> = meshes
        .iter()
        .map(|m| match m {
            Mesh::Istio => "Istio's istio_requests_total and istio_request_duration_milliseconds",
            Mesh::Linkerd => "Linkerd's request_total and response_latency_ms",
        })
        .collect();
    let source: String = source.chars().filter(|c| !c.is_control()).collect();
    let _ = writeln!(
        out,
        "# Who calls whom, how often and how fast, over the last {window}: {source}, from\n\
         # {}.\n\
         # A call's count is its calls per request of the caller; calls made by a share of the\n\
         # requests only are endpoints, weighted by that share. A service's latency is its own\n\
         # work: the latency of the requests it received less, quantile by quantile, that of\n\
         # the calls each request makes (exact when they rise and fall together; the p99 is\n\
         # low otherwise).\n",
        metrics.join(" and ")
    );

    let entry = &graph.entry;
    let why = match entry.why {
        EntryWhy::Outside(_) => "the only service receiving requests from outside the mesh",
        EntryWhy::Root(_) => "called by no one, it calls others: an ingress gateway",
        EntryWhy::Placeholder(_) => "several services receive requests from outside the mesh",
        EntryWhy::Busiest(_) => "every service is called by another: the busiest",
    };
    let note =
        |query: &str, detail: &str| format!("# prometheus: {query} over {window} ({detail})");
    let q = entry.why.query();
    let _ = writeln!(out, "[entry]");
    let _ = writeln!(out, "service = {} {}", quoted(&entry.service), note(q, why));
    let _ = writeln!(
        out,
        "rate = {} {}",
        number(entry.rate),
        note(q, "requests a second from outside the mesh")
    );

    for service in &graph.services {
        write_service(&mut out, service, &note);
    }
    out
}

fn write_service(out: &mut String, service: &Service, note: &dyn Fn(&str, &str) -> String) {
    let name = &service.name;
    let _ = writeln!(out, "\n[services.{}]", key(name));
    if service.placeholder {
        let _ = writeln!(
            out,
            "# The users: a placeholder that calls each service receiving requests from outside the\n\
             # mesh, by its share of them; it does no work of its own.\n\
             latency = {{ p50 = \"1us\", p99 = \"1us\" }}"
        );
    } else if let Some(own) = &service.latency {
        let mut detail = format!(
            "received p50 {}, p99 {}",
            latency(own.received.0),
            latency(own.received.1)
        );
        if own.from_callers {
            detail.push_str(" as its callers measured it");
        }
        if !service.calls.is_empty() {
            let _ = write!(
                detail,
                "; its calls p50 {}, p99 {}",
                latency(own.calls.0),
                latency(own.calls.1)
            );
        }
        if own.floored {
            detail.push_str("; below 1us raised to 1us");
        }
        let _ = writeln!(
            out,
            "latency = {{ p50 = {}, p99 = {} }} {}",
            quoted(&latency(own.p50)),
            quoted(&latency(own.p99)),
            note(own.query, &detail)
        );
    } else {
        let _ = writeln!(
            out,
            "# latency: no histogram measured it; stormguard's default applies"
        );
    }
    let calls_note = |i: usize| {
        let call = &service.calls[i];
        let from = if service.placeholder {
            format!(
                "{} of {} requests a second from outside the mesh",
                number(call.rate.value),
                number(service.received)
            )
        } else if service.root {
            format!(
                "{} calls a second; {name} receives none the mesh reports, so one request per call",
                number(call.rate.value)
            )
        } else {
            format!(
                "{} calls a second over {} requests a second: {} per request",
                number(call.rate.value),
                number(service.received),
                number(call.per_request)
            )
        };
        note(call.rate.query, &from)
    };
    if service.endpoints.is_empty() {
        for (i, call) in service.calls.iter().enumerate() {
            let _ = writeln!(out, "\n[[services.{}.calls]]", key(name));
            let _ = writeln!(out, "to = {} {}", quoted(&call.to), calls_note(i));
            if call.whole > 1 {
                let _ = writeln!(out, "count = {} {}", call.whole, calls_note(i));
            }
        }
        return;
    }
    for endpoint in &service.endpoints {
        let table = format!("services.{}.endpoints.{}", key(name), key(&endpoint.name));
        let _ = writeln!(out, "\n[{table}]");
        let made: Vec<String> = service
            .calls
            .iter()
            .zip(&endpoint.counts)
            .filter(|(_, &n)| n > 0)
            .map(|(call, &n)| match n {
                1 => format!("{} once", call.to),
                n => format!("{} {n} times", call.to),
            })
            .collect();
        let what = if made.is_empty() {
            "the share of requests that call no one".to_string()
        } else {
            format!("the share of requests that call {}", made.join(", "))
        };
        let query = service.calls.first().map_or("", |c| c.rate.query);
        let _ = writeln!(
            out,
            "weight = {} {}",
            weight(endpoint.weight),
            note(query, &what)
        );
        for (i, (call, &count)) in service.calls.iter().zip(&endpoint.counts).enumerate() {
            if count == 0 {
                continue;
            }
            let _ = writeln!(out, "\n[[{table}.calls]]");
            let _ = writeln!(out, "to = {} {}", quoted(&call.to), calls_note(i));
            if count > 1 {
                let _ = writeln!(out, "count = {count} {}", calls_note(i));
            }
        }
    }
}

/// A graph name as a TOML key: bare when it can be (graph names are letters, digits, `-`, `_`).
fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// A rate or ratio: at most three decimals, always with a point (a TOML float).
fn number(value: f64) -> String {
    decimal(value, 3)
}

/// An endpoint's weight: four decimals, never 0 (the graph takes weights above 0).
fn weight(share: f64) -> String {
    decimal(share.max(0.0001), 4)
}
