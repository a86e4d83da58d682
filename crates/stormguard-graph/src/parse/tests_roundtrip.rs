//! The property that pins the whole format down: a valid graph written as TOML text parses back
//! to the same model, with every key written out or, where it holds the default, left out.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use stormguard::backoff::Backoff;
use stormguard::classify::RetryOn;
use stormguard::hedge::HedgeDelay;

use super::parse;
use super::tests_writer::{without_spans, write};
use crate::model::{
    Call, CheckConfig, Codel, Entry, Fault, Graph, HedgeSpec, Idempotent, Latency, LimiterSpec,
    LoadStep, QueueDiscipline, Scenario, Service, Span,
};

/// Names that need no quoting and names that do, so headers are written and read with quotes.
const NAMES: [&str; 8] = [
    "web",
    "api",
    "db",
    "cache-1",
    "auth_v2",
    "a.b",
    "two words",
    "Z",
];

/// The default a third of the time, so that terse files leave many keys out.
fn or_default<T: Clone + std::fmt::Debug + 'static>(
    default: T,
    other: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![1 => Just(default), 2 => other].boxed()
}

fn ms() -> impl Strategy<Value = Duration> {
    (0u64..5_000).prop_map(Duration::from_millis)
}

/// A timeout, a hedge's delay: at least a millisecond, as every one of a file is.
fn timeout() -> impl Strategy<Value = Duration> {
    ms().prop_map(|d| d.max(Duration::from_millis(1)))
}

fn micros() -> impl Strategy<Value = Duration> {
    (1u64..2_000_000).prop_map(Duration::from_micros)
}

/// A number that TOML and Rust both print and read exactly (any finite f64 does; these keep
/// the failing cases readable).
fn quarter(max: u32) -> impl Strategy<Value = f64> {
    (0..=max * 4).prop_map(|n| f64::from(n) / 4.0)
}

fn backoff() -> impl Strategy<Value = Backoff> {
    (0..6u8, 1u64..500, 0u64..2_000).prop_map(|(kind, base, extra)| {
        let (base, cap) = (
            Duration::from_millis(base),
            Duration::from_millis(base + extra),
        );
        match kind {
            0 => Backoff::None,
            1 => Backoff::Constant(base),
            2 => Backoff::Exponential { base, cap },
            3 => Backoff::FullJitter { base, cap },
            4 => Backoff::EqualJitter { base, cap },
            _ => Backoff::DecorrelatedJitter { base, cap },
        }
    })
}

fn limiter() -> impl Strategy<Value = Option<LimiterSpec>> {
    prop_oneof![
        Just(None),
        (quarter(1), 0u32..100)
            .prop_map(|(ratio, min_per_sec)| Some(LimiterSpec::Budget { ratio, min_per_sec })),
        (1u32..1000, any::<u32>(), any::<u32>()).prop_map(|(capacity, a, b)| {
            Some(LimiterSpec::TokenBucket {
                capacity,
                retry_cost: a % (capacity + 1),
                timeout_cost: b % (capacity + 1),
            })
        }),
    ]
}

fn hedge() -> impl Strategy<Value = Option<HedgeSpec>> {
    let delay = prop_oneof![
        timeout().prop_map(HedgeDelay::Fixed),
        // From the text, as a file would give it, so the quantile is the parser's own f64.
        prop::sample::select(vec!["p50", "p90", "p95", "p99", "p99.9"])
            .prop_map(|text| text.parse::<HedgeDelay>().unwrap()),
    ];
    let max_extra = (0u32..=100).prop_map(|n| f64::from(n) / 100.0);
    prop::option::of(
        (delay, max_extra).prop_map(|(delay, max_extra)| HedgeSpec { delay, max_extra }),
    )
}

fn call(services: usize) -> impl Strategy<Value = Call> {
    (
        (
            0..services,
            prop::option::of(timeout()),
            prop::option::of(timeout()),
            or_default(Duration::from_millis(1), micros()),
        ),
        (
            or_default(1, 1u32..6),
            or_default(Backoff::default(), backoff()),
            limiter(),
            prop::sample::select(vec![Idempotent::Yes, Idempotent::No, Idempotent::ByMethod]),
            or_default(1, 1u32..10),
        ),
        (any::<bool>(), any::<bool>(), hedge(), any::<bool>()),
        (
            prop::option::of(ms()),
            prop::sample::select(vec!["GET", "POST", "PUT"]),
            prop::sample::select(vec![
                RetryOn::default(),
                RetryOn::none(),
                RetryOn::parse_list(["409", "unavailable", "5xx"]).unwrap(),
            ]),
        ),
    )
        .prop_map(move |(a, b, c, d)| {
            // Nor a fixed hedge delay at or above it: the attempt times out first.
            let hedge = c.2.filter(|hedge| match (hedge.delay, a.1) {
                (HedgeDelay::Fixed(delay), Some(timeout)) => delay < timeout,
                _ => true,
            });
            Call {
                to: NAMES[a.0].to_string(),
                endpoint: None,
                timeout: a.1,
                request_timeout: d
                    .0
                    .map(|extra| (a.1.unwrap_or_default() + extra).max(Duration::from_millis(1))),
                method: d.1.to_string(),
                retry_on: d.2,
                // The parser refuses a connect timeout above the attempt's.
                connect_timeout: match (a.2, a.1) {
                    (Some(connect), Some(timeout)) => Some(connect.min(timeout)),
                    (connect, _) => connect,
                },
                rtt: a.3,
                // Nor attempts to spare that nothing retries (`retry_on = []`) without a hedge.
                max_attempts: if d.2.is_empty() && hedge.is_none() {
                    1
                } else {
                    b.0
                },
                backoff: b.1,
                limiter: b.2,
                idempotent: b.3,
                count: b.4,
                parallel: c.0,
                required: c.1,
                hedge,
                propagate_deadline: c.3,
                span: Span::default(),
            }
        })
}

fn service(index: usize, services: usize) -> impl Strategy<Value = Service> {
    (
        (
            or_default(1, 1u32..6),
            or_default(16, 1u32..100),
            or_default(64, 0u32..200),
        ),
        (
            or_default(Duration::from_millis(1), micros()),
            or_default(Duration::from_micros(9001), micros()),
            prop::option::of(micros()),
        ),
        prop::collection::vec(call(services), 0..4),
        (queue_discipline(), prop::option::of(timeout())),
    )
        .prop_map(
            move |(
                (instances, concurrency, queue),
                (p50, extra, contention),
                calls,
                (queue_discipline, queue_timeout),
            )| Service {
                name: NAMES[index].to_string(),
                instances,
                concurrency,
                queue,
                latency: Latency {
                    p50,
                    p99: p50 + extra - Duration::from_micros(1),
                },
                contention: contention.unwrap_or_default(),
                queue_discipline,
                queue_timeout,
                calls,
                endpoints: Vec::new(),
                span: Span::default(),
            },
        )
}

/// Each discipline, CoDel with its defaults or with a target below its interval.
fn queue_discipline() -> impl Strategy<Value = QueueDiscipline> {
    let codel = (1u64..1_000, 1u64..1_000).prop_map(|(target, more)| {
        QueueDiscipline::Codel(Codel {
            target: Duration::from_millis(target),
            interval: Duration::from_millis(target + more),
        })
    });
    prop_oneof![
        Just(QueueDiscipline::Fifo),
        Just(QueueDiscipline::Lifo),
        Just(QueueDiscipline::Codel(Codel::default())),
        codel,
    ]
}

fn window() -> impl Strategy<Value = (Duration, Duration)> {
    (ms(), 1u64..10_000).prop_map(|(from, length)| (from, from + Duration::from_millis(length)))
}

fn scenario(services: Vec<Service>) -> impl Strategy<Value = Scenario> {
    let count = services.len();
    let fault = (
        0..count,
        window(),
        or_default(1.0, (1u32..40).prop_map(|n| f64::from(n) / 4.0)),
        or_default(0.0, (0u32..=10).prop_map(|n| f64::from(n) / 10.0)),
        (
            any::<(bool, bool)>(),
            prop::sample::select(vec![503u16, 409, 429]),
        ),
        any::<Option<u32>>(),
    )
        .prop_map(
            move |(
                i,
                (from, to),
                slowdown,
                error_rate,
                ((down, blackhole), error_status),
                instances,
            )| Fault {
                service: services[i].name.clone(),
                from,
                to,
                slowdown,
                error_rate,
                error_status,
                // A fault must change something: the parser refuses one that does not.
                down: down || (slowdown == 1.0 && error_rate == 0.0 && !blackhole),
                blackhole,
                instances: instances.map(|n| 1 + n % services[i].instances),
            },
        );
    let load = (window(), quarter(1000)).prop_map(|((from, to), rate)| LoadStep { from, to, rate });
    (
        // After every window's start (`ms()`, below 5 s): a fault or load step must start
        // before the scenario ends.
        5_000u64..1_000_000,
        prop::option::of(quarter(1000)),
        prop::collection::vec(fault, 0..3),
        prop::collection::vec(load, 0..3),
    )
        .prop_map(|(duration, rate, faults, load)| Scenario {
            duration: Duration::from_millis(duration),
            rate,
            faults,
            load,
            span: Span::default(),
        })
}

/// A valid graph of one to eight services (also `tests_fix`'s).
pub(super) fn graph() -> impl Strategy<Value = Graph> {
    (1..=NAMES.len())
        .prop_flat_map(|count| {
            let services: Vec<_> = (0..count).map(|i| service(i, count)).collect();
            (
                services,
                0..count,
                // From 1 ms: a user who waits 0s is refused.
                or_default(
                    Duration::from_secs(10),
                    (1u64..5_000).prop_map(Duration::from_millis),
                ),
                or_default(100.0, quarter(1000)),
                prop::option::of((quarter(40), quarter(40), 1u32..999)),
            )
        })
        .prop_flat_map(|(services, entry, timeout, rate, check)| {
            let scenarios = prop::collection::btree_map(
                prop::sample::select(vec!["db-slow", "spike", "x"]).prop_map(str::to_string),
                scenario(services.clone()),
                0..3,
            );
            (Just((services, entry, timeout, rate, check)), scenarios)
        })
        .prop_map(
            |((services, entry, timeout, rate, check), scenarios)| Graph {
                entry: Entry {
                    service: NAMES[entry].to_string(),
                    timeout,
                    rate,
                    span: Span::default(),
                },
                services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
                check: check.map_or_else(CheckConfig::default, |(a, b, c)| CheckConfig {
                    max_amplification: 1.0 + a,
                    connect_timeout_rtt_multiple: 1.0 + b,
                    false_timeout_rate: f64::from(c) / 1000.0,
                }),
                scenarios,
                assumed: Default::default(),
            },
        )
}

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5704_6a4d),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn written_graphs_parse_back_to_the_same_model(graph in graph(), terse in any::<bool>()) {
        let text = write(&graph, terse);
        let parsed = parse("roundtrip.toml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(without_spans(parsed), graph, "{}", text);
    }
}

#[test]
fn the_writer_quotes_names_that_are_not_bare() {
    let mut graph = parse("q.toml", "[entry]\nservice = \"a.b\"\n[services.\"a.b\"]\n").unwrap();
    graph.services.insert(
        "x".to_string(),
        Service {
            name: "x".to_string(),
            ..graph.services["a.b"].clone()
        },
    );
    let text = write(&graph, true);
    assert!(text.contains("[services.\"a.b\"]"), "{text}");
    assert_eq!(
        without_spans(parse("q.toml", &text).unwrap()),
        without_spans(graph)
    );
}
