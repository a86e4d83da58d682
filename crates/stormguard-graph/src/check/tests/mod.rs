//! Tests of the figures and rules, on graphs built in code with the file's defaults, so that
//! they do not depend on the parser.

use std::time::Duration;

use stormguard::backoff::Backoff;

use super::check;
use crate::model::{
    Call, CheckConfig, Endpoint, Entry, Graph, Idempotent, Latency, LimiterSpec, Service, Span,
};
use crate::report::{Finding, Report};

mod amplification;
mod capacity;
mod docs;
mod endpoints;
mod examples;
mod figures;
mod queues;
mod retries;
mod scale;
mod shape;
mod timeouts;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds graphs with the file's defaults: services and calls are added as named.
pub(super) struct Builder {
    graph: Graph,
}

impl Builder {
    /// A graph whose users come in at `entry` (timeout 10 s, like the file's default).
    pub fn new(entry: &str) -> Builder {
        let mut builder = Builder {
            graph: Graph {
                entry: Entry {
                    service: entry.to_string(),
                    timeout: Duration::from_secs(10),
                    rate: 100.0,
                    span: Span::default(),
                },
                services: Default::default(),
                check: CheckConfig::default(),
                scenarios: Default::default(),
                assumed: Default::default(),
            },
        };
        builder.service_mut(entry);
        builder
    }

    fn service_mut(&mut self, name: &str) -> &mut Service {
        let line = self.graph.services.len() + 1;
        self.graph
            .services
            .entry(name.to_string())
            .or_insert_with(|| Service {
                name: name.to_string(),
                instances: 1,
                concurrency: 16,
                queue: 64,
                latency: Latency::default(),
                contention: Duration::ZERO,
                queue_discipline: Default::default(),
                queue_timeout: None,
                calls: Vec::new(),
                endpoints: Vec::new(),
                span: Span { line, column: 1 },
            })
    }

    /// Adds (or changes) service `name`.
    pub fn service(mut self, name: &str, set: impl FnOnce(&mut Service)) -> Builder {
        set(self.service_mut(name));
        self
    }

    /// Gives every service added so far (and not changed after) `instances`.
    pub fn instances_everywhere(mut self, instances: u32) -> Builder {
        for service in self.graph.services.values_mut() {
            service.instances = instances;
        }
        self
    }

    /// Adds a call from `from` to `to` with the file's defaults, then `set` applied; both
    /// services are added if new.
    pub fn call(mut self, from: &str, to: &str, set: impl FnOnce(&mut Call)) -> Builder {
        let call = self.new_call(to, set);
        self.service_mut(from).calls.push(call);
        self
    }

    /// Adds a call to `to` to endpoint `endpoint` of `from`, as [`Builder::call`] does; the
    /// endpoint is added with `weight` if new.
    pub fn endpoint_call(
        mut self,
        (from, endpoint, weight): (&str, &str, f64),
        to: &str,
        set: impl FnOnce(&mut Call),
    ) -> Builder {
        let call = self.new_call(to, set);
        let service = self.service_mut(from);
        let line = service.span.line * 100 + service.endpoints.len();
        if service.endpoint(endpoint).is_none() {
            service.endpoints.push(Endpoint {
                name: endpoint.to_string(),
                weight,
                calls: Vec::new(),
                span: Span { line, column: 1 },
            });
        }
        let endpoints = &mut service.endpoints;
        let at = endpoints.iter().position(|e| e.name == endpoint).unwrap();
        endpoints[at].calls.push(call);
        self
    }

    fn new_call(&mut self, to: &str, set: impl FnOnce(&mut Call)) -> Call {
        self.service_mut(to);
        let mut call = Call {
            to: to.to_string(),
            endpoint: None,
            timeout: None,
            request_timeout: None,
            connect_timeout: None,
            rtt: ms(1),
            max_attempts: 1,
            backoff: Backoff::None,
            limiter: None,
            idempotent: Idempotent::ByMethod,
            method: "GET".to_string(),
            retry_on: stormguard::classify::RetryOn::default(),
            count: 1,
            parallel: false,
            required: true,
            hedge: None,
            propagate_deadline: false,
            span: Span::default(),
        };
        set(&mut call);
        call
    }

    /// Changes the entry.
    pub fn entry(mut self, set: impl FnOnce(&mut Entry)) -> Builder {
        set(&mut self.graph.entry);
        self
    }

    /// Changes the thresholds.
    pub fn config(mut self, set: impl FnOnce(&mut CheckConfig)) -> Builder {
        set(&mut self.graph.check);
        self
    }

    pub fn build(self) -> Graph {
        self.graph
    }

    pub fn check(self) -> Report {
        check(&self.graph)
    }
}

/// A call with a timeout and a connect timeout that fire nothing by themselves.
pub(super) fn timed(timeout: u64) -> impl FnOnce(&mut Call) {
    move |c| {
        c.timeout = Some(ms(timeout));
        c.connect_timeout = Some(ms(5));
    }
}

/// A retrying call that fires no retry rule by itself (two attempts, jittered, budgeted).
pub(super) fn retrying(timeout: u64) -> impl FnOnce(&mut Call) {
    move |c| {
        timed(timeout)(c);
        c.max_attempts = 2;
        c.backoff = Backoff::default();
        c.limiter = Some(budget(0.1));
    }
}

pub(super) fn budget(ratio: f64) -> LimiterSpec {
    LimiterSpec::Budget {
        ratio,
        min_per_sec: 10,
    }
}

/// A latency of `p50` and `p99` ms.
pub(super) fn latency_ms(p50: u64, p99: u64) -> Latency {
    Latency {
        p50: ms(p50),
        p99: ms(p99),
    }
}

/// A latency without spread, so the p99.9 is exactly `n` ms.
pub(super) fn fixed_latency(n: u64) -> Latency {
    Latency {
        p50: ms(n),
        p99: ms(n),
    }
}

/// Where a finding is: `from->to` for a call, the service's name otherwise.
pub(super) fn place(f: &Finding) -> String {
    match (&f.from, &f.to, &f.service) {
        (Some(from), Some(to), _) => format!("{from}->{to}"),
        (_, _, Some(service)) => service.clone(),
        _ => String::new(),
    }
}

/// Every finding as `(rule, place)`, in report order.
pub(super) fn found(report: &Report) -> Vec<(&'static str, String)> {
    report.findings.iter().map(|f| (f.rule, place(f))).collect()
}

/// The places where `rule` fired.
pub(super) fn fired(report: &Report, rule: &str) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(place)
        .collect()
}

/// The one finding of `rule`; panics (failing the test) unless there is exactly one.
pub(super) fn only<'r>(report: &'r Report, rule: &str) -> &'r Finding {
    let all: Vec<&Finding> = report.findings.iter().filter(|f| f.rule == rule).collect();
    assert_eq!(all.len(), 1, "{rule}: {all:#?}");
    all[0]
}

pub(super) fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}
