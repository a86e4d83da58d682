//! A three-service graph and a report on it, built by hand so the renderers are tested apart
//! from the parser and the rules.

mod json;
mod mermaid;
mod sarif;
mod text;

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard::backoff::Backoff;

use crate::model::{Call, CheckConfig, Entry, Graph, Idempotent, Latency, Service, Span};
use crate::report::{Finding, Report, ServiceFigures, Severity, Summary};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn call(to: &str, timeout: Option<Duration>, max_attempts: u32, line: usize) -> Call {
    Call {
        to: to.to_string(),
        endpoint: None,
        timeout,
        request_timeout: None,
        connect_timeout: Some(ms(30)),
        rtt: ms(1),
        max_attempts,
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
        span: Span { line, column: 1 },
    }
}

pub(super) fn service(name: &str, calls: Vec<Call>, line: usize) -> Service {
    Service {
        name: name.to_string(),
        instances: 2,
        concurrency: 16,
        queue: 64,
        latency: Latency::default(),
        contention: Duration::ZERO,
        queue_discipline: Default::default(),
        queue_timeout: None,
        calls,
        endpoints: Vec::new(),
        span: Span { line, column: 1 },
    }
}

pub(super) fn graph_of(entry: &str, services: Vec<Service>) -> Graph {
    Graph {
        entry: Entry {
            service: entry.to_string(),
            timeout: ms(10_000),
            rate: 100.0,
            span: Span { line: 1, column: 1 },
        },
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        check: CheckConfig::default(),
        scenarios: BTreeMap::new(),
        assumed: Default::default(),
    }
}

/// web -> api (1s, 2 attempts, budgeted) -> db (500ms, 3 attempts), amplification limit 5.
pub(super) fn three_services() -> Graph {
    let mut web_api = call("api", Some(ms(1000)), 2, 8);
    web_api.limiter = Some(crate::model::LimiterSpec::Budget {
        ratio: 0.1,
        min_per_sec: 10,
    });
    let mut graph = graph_of(
        "web",
        vec![
            service("web", vec![web_api], 5),
            service("api", vec![call("db", Some(ms(500)), 3, 16)], 13),
            service("db", vec![], 20),
        ],
    );
    graph.check.max_amplification = 5.0;
    graph
}

pub(super) fn finding(rule: &'static str, severity: Severity, place: Place<'_>) -> Finding {
    let (from, to, service, span) = match place {
        Place::Call(from, to, line) => (
            Some(from.to_string()),
            Some(to.to_string()),
            None,
            Some(Span { line, column: 1 }),
        ),
        Place::Service(name, line) => (
            None,
            None,
            Some(name.to_string()),
            line.map(|line| Span { line, column: 1 }),
        ),
        Place::Graph => (None, None, None, None),
    };
    Finding {
        rule,
        severity,
        from,
        to,
        service,
        message: format!("{rule} fired."),
        fix: format!("fix {rule}"),
        value: None,
        limit: None,
        span,
        edits: Vec::new(),
    }
}

/// Where a hand-made finding is.
pub(super) enum Place<'a> {
    Call(&'a str, &'a str, usize),
    Service(&'a str, Option<usize>),
    Graph,
}

pub(super) fn summary_of(findings: &[Finding]) -> Summary {
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    Summary {
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
    }
}

fn figures(worst_case_ms: f64, amplification: f64, sustained: f64, depth: u32) -> ServiceFigures {
    ServiceFigures {
        worst_case_ms,
        amplification,
        sustained_amplification: sustained,
        depth,
    }
}

fn said(mut finding: Finding, message: &str, fix: &str, measured: Option<(f64, f64)>) -> Finding {
    finding.message = message.to_string();
    finding.fix = fix.to_string();
    finding.value = measured.map(|m| m.0);
    finding.limit = measured.map(|m| m.1);
    finding
}

/// What check would say about [`three_services`], near enough for rendering.
pub(super) fn three_services_report() -> Report {
    let findings = vec![
        said(
            finding("timeout-inversion", Severity::Error, Place::Call("web", "api", 8)),
            "api may keep working 1.61s on one request, but web waits 1s per attempt: web gives up while api still retries.",
            "timeout = \"1.7s\" on web -> api, or propagate_deadline = true",
            Some((1609.7, 1000.0)),
        ),
        said(
            finding("too-many-attempts", Severity::Warning, Place::Call("api", "db", 16)),
            "3 attempts on api -> db: a failing db gets three times the load.",
            "max_attempts = 2",
            Some((3.0, 2.0)),
        ),
        said(
            finding("retry-without-backoff", Severity::Warning, Place::Call("api", "db", 16)),
            "api retries db at once: a struggling db gets the retries while it is down.",
            "backoff = \"full-jitter(base=25ms, cap=250ms)\"",
            None,
        ),
        said(
            finding("retry-amplification", Severity::Error, Place::Service("db", Some(20))),
            "db receives up to 6 attempts per user request when calls below web fail (limit 5).",
            "max_attempts = 1 on api -> db, so only web -> api retries",
            Some((6.0, 5.0)),
        ),
    ];
    Report {
        summary: summary_of(&findings),
        findings,
        services: [
            ("web".to_string(), figures(2098.4, 1.0, 1.0, 0)),
            ("api".to_string(), figures(1609.7, 2.0, 1.1, 1)),
            ("db".to_string(), figures(31.6, 6.0, 3.3, 2)),
        ]
        .into_iter()
        .collect(),
        endpoints: Default::default(),
    }
}
