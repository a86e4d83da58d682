//! The issue's example read field by field, the defaults, spans and key paths.

use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::classify::{Condition, RetryOn};
use stormguard::hedge::HedgeDelay;

use super::locate::{KeyPath, Lines};
use super::*;
use crate::model::{
    Call, CheckConfig, Fault, HedgeSpec, Idempotent, Latency, LimiterSpec, LoadStep, Scenario, Span,
};

/// The graph file of issue 3 as written there (comments included), with the `api` service it
/// calls defined so the file is complete, and the simulator's scenario from its issue.
const ISSUE_EXAMPLE: &str = r#"[entry]                      # where users come in
service = "web"
timeout = "10s"              # how long a user waits (default 10s)
rate = 200                   # user requests per second (used by sim; default 100)

[services.web]
instances = 3                # default 1
concurrency = 32             # requests one instance works on at once (sim; default 16)
queue = 64                   # requests waiting per instance before it rejects (sim; default 64)
latency = { p50 = "4ms", p99 = "40ms" }   # its own work, without its calls (lognormal fit)

[[services.web.calls]]       # calls run in order; a run of calls with parallel = true runs at once
to = "api"
timeout = "1s"               # each attempt, from its start, connecting included
request_timeout = "2s"       # the whole call, every attempt and wait (default none)
connect_timeout = "30ms"
rtt = "1ms"                  # network round trip (default 1ms)
max_attempts = 2             # including the first (default 1)
backoff = "full-jitter(base=25ms, cap=250ms)"   # the default; the library's text form
retry_budget = { ratio = 0.1, min_per_sec = 10 }   # or token_bucket = { capacity = 500, retry_cost = 5, timeout_cost = 10 }
retry_on = ["default", "409"]   # the failures retried (default list: connect-failure, ...)
idempotent = "by-method"     # true, false or "by-method" (the default)
method = "PUT"               # the call's HTTP method (default GET)
count = 1                    # sequential calls per request, e.g. a loop over items (default 1)
parallel = false             # default false
required = true              # false: failure is tolerated (an "expediting" call; default true)
hedge = { delay = "50ms", max_extra = 0.05 }
propagate_deadline = false   # pass the remaining budget downstream (default true)

[services.api]
instances = 2

[check]                      # thresholds, all optional
max_amplification = 10
connect_timeout_rtt_multiple = 10
false_timeout_rate = 0.001

[services.db]
contention = "10ms"           # new service key (default 0)
[scenarios.db-slow]
duration = "120s"
rate = 300                    # optional override of entry.rate
[[scenarios.db-slow.faults]]
service = "db"
from = "30s"
to = "45s"
slowdown = 10.0               # default 1.0
error_rate = 0.0              # default 0
down = false
blackhole = false
instances = 1                 # default all (None)
[[scenarios.db-slow.load]]
from = "20s"
to = "25s"
rate = 600
"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(line: usize, column: usize) -> Span {
    Span { line, column }
}

#[test]
fn the_issue_example_reads_every_field_as_written() {
    let graph = parse("example.toml", ISSUE_EXAMPLE).unwrap();
    assert_eq!(graph.entry.service, "web");
    assert_eq!(graph.entry.timeout, ms(10_000));
    assert_eq!(graph.entry.rate, 200.0);
    assert_eq!(graph.entry.span, at(1, 1));

    let web = &graph.services["web"];
    assert_eq!(web.name, "web");
    assert_eq!((web.instances, web.concurrency, web.queue), (3, 32, 64));
    assert_eq!(
        web.latency,
        Latency {
            p50: ms(4),
            p99: ms(40)
        }
    );
    assert_eq!(web.contention, Duration::ZERO);
    assert_eq!(web.span, at(6, 1));
    assert_eq!(
        web.calls,
        vec![Call {
            to: "api".to_string(),
            endpoint: None,
            timeout: Some(ms(1000)),
            request_timeout: Some(ms(2000)),
            connect_timeout: Some(ms(30)),
            rtt: ms(1),
            max_attempts: 2,
            backoff: Backoff::FullJitter {
                base: ms(25),
                cap: ms(250)
            },
            limiter: Some(LimiterSpec::Budget {
                ratio: 0.1,
                min_per_sec: 10
            }),
            idempotent: Idempotent::ByMethod,
            method: "PUT".to_string(),
            retry_on: RetryOn::default().with(Condition::Status(409)),
            count: 1,
            parallel: false,
            required: true,
            hedge: Some(HedgeSpec {
                delay: HedgeDelay::Fixed(ms(50)),
                max_extra: 0.05
            }),
            propagate_deadline: false,
            span: at(12, 1),
        }]
    );

    assert_eq!(graph.services["api"].instances, 2);
    assert_eq!(graph.services["api"].span, at(30, 1));
    assert_eq!(graph.services["db"].contention, ms(10));
    assert_eq!(
        graph.services.keys().collect::<Vec<_>>(),
        ["api", "db", "web"]
    );
    assert_eq!(
        graph.check,
        CheckConfig {
            max_amplification: 10.0,
            connect_timeout_rtt_multiple: 10.0,
            false_timeout_rate: 0.001,
        }
    );

    assert_eq!(
        graph.scenarios["db-slow"],
        Scenario {
            duration: ms(120_000),
            rate: Some(300.0),
            faults: vec![Fault {
                service: "db".to_string(),
                from: ms(30_000),
                to: ms(45_000),
                slowdown: 10.0,
                error_rate: 0.0,
                error_status: 503,
                down: false,
                blackhole: false,
                instances: Some(1),
            }],
            load: vec![LoadStep {
                from: ms(20_000),
                to: ms(25_000),
                rate: 600.0
            }],
            span: at(40, 1),
        }
    );
}

/// A fault that changes nothing (no slowdown, error rate, down or blackhole) is refused at its
/// place: simulated, it reported a recovery from nothing.
#[test]
fn a_fault_that_changes_nothing_is_refused() {
    let text = "[entry]\nservice = \"a\"\n[services.a]\n[scenarios.s]\nduration = \"1m\"\n\
                [[scenarios.s.faults]]\nservice = \"a\"\nfrom = \"1s\"\nto = \"2s\"\n\
                slowdown = 1\nerror_rate = 0\n";
    let error = parse("d.toml", text).unwrap_err();
    assert_eq!(
        (error.line, error.key.as_deref()),
        (6, Some("scenarios.s.faults[0]"))
    );
    assert!(
        error
            .message
            .contains("this fault changes nothing: give it slowdown (above 1)"),
        "{error}"
    );
    for effect in [
        "slowdown = 2",
        "error_rate = 0.1",
        "down = true",
        "blackhole = true",
    ] {
        let base = text.replace("slowdown = 1\nerror_rate = 0\n", "");
        parse("d.toml", &format!("{base}{effect}\n")).unwrap_or_else(|e| panic!("{effect}: {e}"));
    }
}

#[test]
fn every_default_is_applied() {
    let text = "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"b\"\n\
                [services.b]\n[scenarios.s]\nduration = \"1m\"\n\
                [[scenarios.s.faults]]\nservice = \"b\"\nfrom = \"1s\"\nto = \"2s\"\n\
                error_rate = 0.5\n";
    let graph = parse("d.toml", text).unwrap();
    assert_eq!(graph.entry.timeout, ms(10_000));
    assert_eq!(graph.entry.rate, 100.0);
    let a = &graph.services["a"];
    assert_eq!((a.instances, a.concurrency, a.queue), (1, 16, 64));
    assert_eq!(a.latency, Latency::default());
    assert_eq!(
        a.latency,
        Latency {
            p50: ms(1),
            p99: ms(10)
        }
    );
    assert_eq!(a.contention, Duration::ZERO);
    assert_eq!(
        a.calls[0],
        Call {
            to: "b".to_string(),
            endpoint: None,
            timeout: None,
            request_timeout: None,
            connect_timeout: None,
            rtt: ms(1),
            max_attempts: 1,
            backoff: Backoff::FullJitter {
                base: ms(25),
                cap: ms(250)
            },
            limiter: Some(LimiterSpec::Budget {
                ratio: 0.2,
                min_per_sec: 10
            }),
            idempotent: Idempotent::ByMethod,
            method: "GET".to_string(),
            retry_on: RetryOn::default(),
            count: 1,
            parallel: false,
            required: true,
            hedge: None,
            propagate_deadline: true,
            span: at(4, 1),
        }
    );
    assert!(graph.services["b"].calls.is_empty());
    assert_eq!(graph.check, CheckConfig::default());
    let scenario = &graph.scenarios["s"];
    assert_eq!((scenario.rate, scenario.load.len()), (None, 0));
    let fault = &scenario.faults[0];
    assert_eq!((fault.slowdown, fault.error_status), (1.0, 503));
    assert_eq!(
        (fault.down, fault.blackhole, fault.instances),
        (false, false, None)
    );
}

#[test]
fn limiter_and_hedge_sub_keys_have_defaults() {
    let text = "[entry]\nservice = \"a\"\n[services.a]\n\
                [[services.a.calls]]\nto = \"a\"\nretry_budget = {}\nhedge = { delay = \"p95\" }\n\
                [[services.a.calls]]\nto = \"a\"\ntoken_bucket = {}\n";
    let calls = &parse("d.toml", text).unwrap().services["a"].calls;
    assert_eq!(
        calls[0].limiter,
        Some(LimiterSpec::Budget {
            ratio: 0.2,
            min_per_sec: 10
        })
    );
    assert_eq!(
        calls[0].hedge,
        Some(HedgeSpec {
            delay: HedgeDelay::Quantile(0.95),
            max_extra: 0.05
        })
    );
    assert_eq!(
        calls[1].limiter,
        Some(LimiterSpec::TokenBucket {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10
        })
    );
}

#[test]
fn spans_point_at_headers_inline_tables_and_implicit_services() {
    let text = "entry = { service = \"a\" }\n\
                [[services.a.calls]]\nto = \"b\"\n\
                [[services.a.calls]]\nto = \"b\"\n\
                [services.b]\n\
                [scenarios]\n  s = { duration = \"1s\" }\n";
    let graph = parse("s.toml", text).unwrap();
    assert_eq!(graph.entry.span, at(1, 9));
    // `a` has no header of its own: its name in the first header that names it.
    assert_eq!(graph.services["a"].span, at(2, 12));
    let spans: Vec<Span> = graph.services["a"].calls.iter().map(|c| c.span).collect();
    assert_eq!(spans, [at(2, 1), at(4, 1)]);
    assert_eq!(graph.services["b"].span, at(6, 1));
    assert_eq!(graph.scenarios["s"].span, at(8, 7));
}

#[test]
fn a_missing_timeout_is_left_to_the_rules() {
    let text = "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"a\"\n";
    let call = &parse("t.toml", text).unwrap().services["a"].calls[0];
    assert_eq!((call.timeout, call.connect_timeout), (None, None));
}

#[test]
fn positions_count_characters_and_lines_from_one() {
    let lines = Lines::new("ab\nµx\n\nz");
    assert_eq!(lines.position(0), at(1, 1));
    assert_eq!(lines.position(2), at(1, 3));
    assert_eq!(lines.position(3), at(2, 1));
    assert_eq!(lines.position(5), at(2, 2)); // after the two bytes of µ
    assert_eq!(lines.position(4), at(2, 1)); // inside µ: clamped back to its start
    assert_eq!(lines.position(7), at(3, 1));
    assert_eq!(lines.position(8), at(4, 1));
    assert_eq!(lines.position(100), at(4, 2));
}

#[test]
fn key_paths_quote_keys_that_are_not_bare() {
    let path = KeyPath::default()
        .key("services")
        .key("a.b")
        .key("calls")
        .index(2)
        .key("to");
    assert_eq!(path.to_string(), "services.\"a.b\".calls[2].to");
    assert_eq!(KeyPath::default().key("").to_string(), "\"\"");
}

#[test]
fn the_display_form_is_file_line_column_key_message() {
    let error = ParseError {
        file: "g.toml".to_string(),
        line: 3,
        column: 7,
        key: Some("entry.rate".to_string()),
        message: "bad".to_string(),
    };
    assert_eq!(error.to_string(), "g.toml:3:7: `entry.rate`: bad");
    let error = ParseError { key: None, ..error };
    assert_eq!(error.to_string(), "g.toml:3:7: bad");
}
