//! A graph model written back as a graph file, for the round-trip property: the test's own
//! writer, so that what the parser reads is checked against an independent statement of the
//! format (header names, key names, text forms of durations, backoffs and hedge delays).

use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::classify::RetryOn;
use stormguard::duration::format;

use super::locate::KeyPath;
use super::policy_keys::HEDGE_MAX_EXTRA;
use crate::model::{
    Call, CheckConfig, Codel, Graph, Idempotent, Latency, LimiterSpec, QueueDiscipline, Scenario,
    Service, Span,
};

/// Text being written; with `terse`, values equal to their default are left out.
struct Writer {
    out: String,
    terse: bool,
}

impl Writer {
    fn line(&mut self, text: String) {
        self.out.push_str(&text);
        self.out.push('\n');
    }

    fn key(&mut self, key: &str, text: String) {
        self.line(format!("{key} = {text}"));
    }

    fn optional(&mut self, key: &str, text: Option<String>) {
        if let Some(text) = text {
            self.key(key, text);
        }
    }

    fn unless_default<T: PartialEq>(&mut self, key: &str, value: T, default: T, text: String) {
        if !(self.terse && value == default) {
            self.key(key, text);
        }
    }

    fn service(&mut self, name: &str, s: &Service) {
        self.line(format!("\n[services.{}]", toml_key(name)));
        self.unless_default("instances", s.instances, 1, s.instances.to_string());
        self.unless_default("concurrency", s.concurrency, 16, s.concurrency.to_string());
        self.unless_default("queue", s.queue, 64, s.queue.to_string());
        let (p50, p99) = (duration(s.latency.p50), duration(s.latency.p99));
        let latency = format!("{{ p50 = {p50}, p99 = {p99} }}");
        self.unless_default("latency", s.latency, Latency::default(), latency);
        let contention = duration(s.contention);
        self.unless_default("contention", s.contention, Duration::ZERO, contention);
        let discipline = format!("{:?}", s.queue_discipline.name());
        let fifo = QueueDiscipline::Fifo;
        self.unless_default("queue_discipline", s.queue_discipline, fifo, discipline);
        if let QueueDiscipline::Codel(codel) = s.queue_discipline {
            let (target, interval) = (duration(codel.target), duration(codel.interval));
            let text = format!("{{ target = {target}, interval = {interval} }}");
            self.unless_default("codel", codel, Codel::default(), text);
        }
        self.optional("queue_timeout", s.queue_timeout.map(duration));
        for call in &s.calls {
            self.line(format!("[[services.{}.calls]]", toml_key(name)));
            self.call(call);
        }
    }

    fn call(&mut self, c: &Call) {
        self.key("to", format!("{:?}", c.to));
        self.optional("timeout", c.timeout.map(duration));
        self.optional("request_timeout", c.request_timeout.map(duration));
        self.optional("connect_timeout", c.connect_timeout.map(duration));
        self.unless_default("rtt", c.rtt, Duration::from_millis(1), duration(c.rtt));
        self.unless_default(
            "max_attempts",
            c.max_attempts,
            1,
            c.max_attempts.to_string(),
        );
        let backoff = format!("\"{}\"", c.backoff);
        self.unless_default("backoff", c.backoff, Backoff::default(), backoff);
        match c.limiter {
            Some(LimiterSpec::Budget { ratio, min_per_sec }) => self.key(
                "retry_budget",
                format!("{{ ratio = {ratio:?}, min_per_sec = {min_per_sec} }}"),
            ),
            Some(LimiterSpec::TokenBucket {
                capacity,
                retry_cost,
                timeout_cost,
            }) => self.key(
                "token_bucket",
                format!(
                    "{{ capacity = {capacity}, retry_cost = {retry_cost}, \
                     timeout_cost = {timeout_cost} }}"
                ),
            ),
            None => self.key("retry_budget", "\"none\"".to_string()),
        }
        let retry_on: Vec<String> = c
            .retry_on
            .conditions()
            .iter()
            .map(|condition| format!("\"{condition}\""))
            .collect();
        let retry_on = format!("[{}]", retry_on.join(", "));
        self.unless_default("retry_on", c.retry_on, RetryOn::default(), retry_on);
        let idempotent = c.idempotent.to_string();
        self.unless_default("idempotent", c.idempotent, Idempotent::ByMethod, idempotent);
        let method = format!("{:?}", c.method);
        self.unless_default("method", c.method.as_str(), "GET", method);
        self.unless_default("count", c.count, 1, c.count.to_string());
        self.unless_default("parallel", c.parallel, false, c.parallel.to_string());
        self.unless_default("required", c.required, true, c.required.to_string());
        self.optional(
            "hedge",
            c.hedge.map(|h| match h.max_extra {
                extra if self.terse && extra == HEDGE_MAX_EXTRA => {
                    format!("{{ delay = \"{}\" }}", h.delay)
                }
                extra => format!("{{ delay = \"{}\", max_extra = {extra:?} }}", h.delay),
            }),
        );
        let propagate = c.propagate_deadline.to_string();
        self.unless_default("propagate_deadline", c.propagate_deadline, true, propagate);
    }

    fn check(&mut self, check: &CheckConfig) {
        let defaults = CheckConfig::default();
        if self.terse && *check == defaults {
            return;
        }
        self.line("\n[check]".to_string());
        for (key, value, default) in [
            (
                "max_amplification",
                check.max_amplification,
                defaults.max_amplification,
            ),
            (
                "connect_timeout_rtt_multiple",
                check.connect_timeout_rtt_multiple,
                defaults.connect_timeout_rtt_multiple,
            ),
            (
                "false_timeout_rate",
                check.false_timeout_rate,
                defaults.false_timeout_rate,
            ),
        ] {
            self.unless_default(key, value, default, format!("{value:?}"));
        }
    }

    fn scenario(&mut self, name: &str, s: &Scenario) {
        let name = toml_key(name);
        self.line(format!("\n[scenarios.{name}]"));
        self.key("duration", duration(s.duration));
        self.optional("rate", s.rate.map(|rate| format!("{rate:?}")));
        for f in &s.faults {
            self.line(format!("[[scenarios.{name}.faults]]"));
            self.key("service", format!("{:?}", f.service));
            self.key("from", duration(f.from));
            self.key("to", duration(f.to));
            self.unless_default("slowdown", f.slowdown, 1.0, format!("{:?}", f.slowdown));
            self.unless_default(
                "error_rate",
                f.error_rate,
                0.0,
                format!("{:?}", f.error_rate),
            );
            let status = f.error_status.to_string();
            self.unless_default("error_status", f.error_status, 503, status);
            self.unless_default("down", f.down, false, f.down.to_string());
            self.unless_default("blackhole", f.blackhole, false, f.blackhole.to_string());
            self.optional("instances", f.instances.map(|n| n.to_string()));
        }
        for step in &s.load {
            self.line(format!("[[scenarios.{name}.load]]"));
            self.key("from", duration(step.from));
            self.key("to", duration(step.to));
            self.key("rate", format!("{:?}", step.rate));
        }
    }
}

/// A key as a TOML header or key: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    KeyPath::default().key(name).to_string()
}

fn duration(d: Duration) -> String {
    format!("\"{}\"", format(d))
}

/// The graph as a file; with `terse`, every value equal to its default is left out.
pub(super) fn write(graph: &Graph, terse: bool) -> String {
    let mut writer = Writer {
        out: String::new(),
        terse,
    };
    let e = &graph.entry;
    writer.line("[entry]".to_string());
    writer.key("service", format!("{:?}", e.service));
    let timeout = duration(e.timeout);
    writer.unless_default("timeout", e.timeout, Duration::from_secs(10), timeout);
    writer.unless_default("rate", e.rate, 100.0, format!("{:?}", e.rate));
    for (name, service) in &graph.services {
        writer.service(name, service);
    }
    writer.check(&graph.check);
    for (name, scenario) in &graph.scenarios {
        writer.scenario(name, scenario);
    }
    writer.out
}

/// The graph with every span zeroed: spans depend on the layout, not on the model.
pub(super) fn without_spans(mut graph: Graph) -> Graph {
    graph.entry.span = Span::default();
    for service in graph.services.values_mut() {
        service.span = Span::default();
        for call in &mut service.calls {
            call.span = Span::default();
        }
    }
    for scenario in graph.scenarios.values_mut() {
        scenario.span = Span::default();
    }
    // What the text left to the defaults, as the spans, is of the text, not of the model: a
    // writer may spell a default out or leave it.
    graph.assumed = Default::default();
    graph
}
