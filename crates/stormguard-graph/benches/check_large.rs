//! How long `check` takes on graphs far larger than any real one, and that its cost follows the
//! size of the graph, not the number of paths through it.
//!
//! The issue asks for 10,000 services and 50,000 calls checked in under a second. The layered
//! graph is that size; the chain is 10,000 deep (recursion or a per-depth cost would show); the
//! ladder has 2^4999 paths (anything that enumerates paths never finishes). Every graph is
//! generated from a fixed seed, so every run measures the same graph.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use stormguard::classify::RetryOn;
use stormguard::duration;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::{
    Call, CheckConfig, Entry, HedgeSpec, Idempotent, Latency, LimiterSpec, Service, Span,
};
use stormguard_graph::{check, parse, Graph};

const SERVICES: usize = 10_000;
const CALLS: usize = 50_000;
const CALLS_PER_SERVICE: usize = 5;

/// SplitMix64: a few lines instead of a dependency, and the same graph on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn name(i: usize) -> String {
    format!("s{i}")
}

fn empty_graph(entry: &str) -> Graph {
    Graph {
        entry: Entry {
            service: entry.to_string(),
            timeout: Duration::from_secs(10),
            rate: 100.0,
            span: Span::default(),
        },
        services: BTreeMap::new(),
        check: CheckConfig::default(),
        scenarios: BTreeMap::new(),
        assumed: Default::default(),
    }
}

fn service(name: String, rng: &mut Rng) -> Service {
    let p50 = ms(1 + rng.below(5) as u64);
    Service {
        name,
        instances: 1 + rng.below(4) as u32,
        concurrency: 16,
        queue: 64,
        latency: Latency { p50, p99: p50 * 10 },
        contention: Duration::ZERO,
        queue_discipline: Default::default(),
        queue_timeout: None,
        calls: Vec::new(),
        endpoints: Vec::new(),
        span: Span::default(),
    }
}

/// A call with a mix of settings, so every rule has something to look at.
fn call(to: String, rng: &mut Rng) -> Call {
    const TIMEOUTS: [u64; 6] = [50, 100, 200, 500, 1000, 2000];
    const BACKOFFS: [&str; 5] = [
        "none",
        "full-jitter(base=25ms, cap=250ms)",
        "exponential(base=10ms, cap=1s)",
        "constant(50ms)",
        "decorrelated-jitter(base=10ms, cap=500ms)",
    ];
    let limiter = match rng.below(10) {
        0..=2 => Some(LimiterSpec::Budget {
            ratio: 0.1,
            min_per_sec: 10,
        }),
        3 => Some(LimiterSpec::TokenBucket {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10,
        }),
        _ => None,
    };
    let hedge = rng.chance(0.05).then(|| HedgeSpec {
        delay: if rng.chance(0.5) {
            HedgeDelay::Fixed(ms(50))
        } else {
            HedgeDelay::Quantile(0.95)
        },
        max_extra: if rng.chance(0.8) { 0.05 } else { 1.0 },
    });
    Call {
        to,
        endpoint: None,
        timeout: rng.chance(0.98).then(|| ms(*rng.pick(&TIMEOUTS))),
        request_timeout: None,
        connect_timeout: rng.chance(0.9).then(|| ms(*rng.pick(&[5, 10, 30]))),
        rtt: ms(1),
        max_attempts: 1 + rng.below(3) as u32,
        backoff: rng.pick(&BACKOFFS).parse().expect("a valid backoff text"),
        limiter,
        idempotent: if rng.chance(0.95) {
            Idempotent::ByMethod
        } else {
            Idempotent::No
        },
        method: "GET".to_string(),
        retry_on: RetryOn::default(),
        count: if rng.chance(0.85) {
            1
        } else {
            2 + rng.below(4) as u32
        },
        parallel: rng.chance(0.3),
        required: rng.chance(0.9),
        hedge,
        propagate_deadline: rng.chance(0.2),
        span: Span::default(),
    }
}

/// 10,000 services in 20 layers and exactly 50,000 calls, every service reached from the entry
/// `s0`: the first layers grow fivefold (1, 5, 25, 125) so the entry's fan-out reaches them all,
/// then 16 layers of about 615. Each service calls 5 (a few 6) services of the next one to three
/// layers, targets dealt round-robin per layer so every service is called at least once.
pub fn layered_graph(seed: u64) -> Graph {
    let mut rng = Rng(seed);
    let mut sizes = vec![1, 5, 25, 125];
    let rest = SERVICES - sizes.iter().sum::<usize>();
    sizes.extend((0..16).map(|i| rest / 16 + usize::from(i < rest % 16)));
    let starts: Vec<usize> = sizes
        .iter()
        .scan(0, |next, size| {
            let start = *next;
            *next += size;
            Some(start)
        })
        .collect();
    let last = sizes.len() - 1;
    let callers = SERVICES - sizes[last];
    let fanning_out = starts[4];
    // The extra calls that make 50,000, spread evenly over the callers past the fan-out layers.
    let extra = CALLS - CALLS_PER_SERVICE * callers;
    let spread = callers - fanning_out;
    let mut dealt = vec![0usize; sizes.len()];
    let mut graph = empty_graph(&name(0));
    for (layer, (&start, &size)) in starts.iter().zip(&sizes).enumerate() {
        for i in start..start + size {
            let mut s = service(name(i), &mut rng);
            if layer < last {
                let k = i.saturating_sub(fanning_out);
                let more = i >= fanning_out && (k + 1) * extra / spread > k * extra / spread;
                for j in 0..CALLS_PER_SERVICE + usize::from(more) {
                    let target = if layer < 4 || j == 0 {
                        layer + 1
                    } else {
                        (layer + 1 + rng.below(3)).min(last)
                    };
                    let to = starts[target] + dealt[target] % sizes[target];
                    dealt[target] += 1;
                    s.calls.push(call(name(to), &mut rng));
                }
            }
            graph.services.insert(s.name.clone(), s);
        }
    }
    graph
}

/// `s0 -> s1 -> ... -> s9999`, every call retried once: 10,000 deep.
pub fn chain_graph(seed: u64) -> Graph {
    let mut rng = Rng(seed);
    let mut graph = empty_graph(&name(0));
    for i in 0..SERVICES {
        let mut s = service(name(i), &mut rng);
        if i + 1 < SERVICES {
            let mut c = call(name(i + 1), &mut rng);
            c.max_attempts = 2;
            s.calls.push(c);
        }
        graph.services.insert(s.name.clone(), s);
    }
    graph
}

/// 5,000 rungs of two services, each calling both of the next rung: 10,000 services, 19,997
/// calls, 2^4999 paths from the entry to the bottom.
pub fn ladder_graph(seed: u64) -> Graph {
    let mut rng = Rng(seed);
    let rungs = SERVICES / 2;
    let mut graph = empty_graph(&name(0));
    for i in 0..SERVICES {
        let mut s = service(name(i), &mut rng);
        let rung = i / 2;
        if rung + 1 < rungs {
            for to in [2 * (rung + 1), 2 * (rung + 1) + 1] {
                s.calls.push(call(name(to), &mut rng));
            }
        }
        graph.services.insert(s.name.clone(), s);
    }
    // The entry's partner on rung 0 is called by nobody; the entry calls it too.
    let partner = call(name(1), &mut rng);
    graph
        .services
        .get_mut(&name(0))
        .expect("s0 exists")
        .calls
        .push(partner);
    graph
}

/// `graph` as a graph file, so the benchmark can include the parser: `[entry]`, `[check]` and
/// every service with its calls, each setting written whenever the model holds it (defaults
/// too, so the file does not depend on the parser's defaults). Scenarios are left out; none of
/// these graphs has any.
pub fn graph_to_toml(graph: &Graph) -> String {
    let mut out = String::new();
    let entry = &graph.entry;
    let _ = write!(
        out,
        "[entry]\nservice = {}\ntimeout = {}\nrate = {:?}\n\n",
        quoted(&entry.service),
        quoted(&duration::format(entry.timeout)),
        entry.rate
    );
    let check = &graph.check;
    let _ = write!(
        out,
        "[check]\nmax_amplification = {:?}\nconnect_timeout_rtt_multiple = {:?}\nfalse_timeout_rate = {:?}\n",
        check.max_amplification, check.connect_timeout_rtt_multiple, check.false_timeout_rate
    );
    for (name, s) in &graph.services {
        let table = format!("services.{}", key(name));
        let _ = write!(
            out,
            "\n[{table}]\ninstances = {}\nconcurrency = {}\nqueue = {}\nlatency = {{ p50 = {}, p99 = {} }}\n",
            s.instances,
            s.concurrency,
            s.queue,
            quoted(&duration::format(s.latency.p50)),
            quoted(&duration::format(s.latency.p99)),
        );
        if !s.contention.is_zero() {
            let _ = writeln!(
                out,
                "contention = {}",
                quoted(&duration::format(s.contention))
            );
        }
        for c in &s.calls {
            write_call(&mut out, &table, c);
        }
    }
    out
}

fn write_call(out: &mut String, table: &str, c: &Call) {
    let _ = write!(out, "\n[[{table}.calls]]\nto = {}\n", quoted(&c.to));
    if let Some(timeout) = c.timeout {
        let _ = writeln!(out, "timeout = {}", quoted(&duration::format(timeout)));
    }
    if let Some(connect) = c.connect_timeout {
        let _ = writeln!(
            out,
            "connect_timeout = {}",
            quoted(&duration::format(connect))
        );
    }
    let _ = write!(
        out,
        "rtt = {}\nmax_attempts = {}\n",
        quoted(&duration::format(c.rtt)),
        c.max_attempts
    );
    let _ = writeln!(out, "backoff = {}", quoted(&c.backoff.to_string()));
    match c.limiter {
        Some(LimiterSpec::Budget { ratio, min_per_sec }) => {
            let _ = writeln!(
                out,
                "retry_budget = {{ ratio = {ratio:?}, min_per_sec = {min_per_sec} }}"
            );
        }
        Some(LimiterSpec::TokenBucket {
            capacity,
            retry_cost,
            timeout_cost,
        }) => {
            let _ = writeln!(out, "token_bucket = {{ capacity = {capacity}, retry_cost = {retry_cost}, timeout_cost = {timeout_cost} }}");
        }
        None => {
            let _ = writeln!(out, "retry_budget = \"none\"");
        }
    }
    let _ = write!(
        out,
        "idempotent = {}\ncount = {}\nparallel = {}\nrequired = {}\npropagate_deadline = {}\n",
        c.idempotent, c.count, c.parallel, c.required, c.propagate_deadline
    );
    if let Some(hedge) = c.hedge {
        let delay = quoted(&hedge.delay.to_string());
        let extra = hedge.max_extra;
        let _ = writeln!(out, "hedge = {{ delay = {delay}, max_extra = {extra:?} }}");
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_string()
    } else {
        quoted(name)
    }
}

fn calls(graph: &Graph) -> usize {
    graph.services.values().map(|s| s.calls.len()).sum()
}

/// Services reached from the entry: a graph with unreached services would measure less work
/// than its size claims.
fn reached(graph: &Graph) -> usize {
    let mut seen = std::collections::HashSet::from([graph.entry.service.as_str()]);
    let mut todo = vec![graph.entry.service.as_str()];
    while let Some(name) = todo.pop() {
        for c in &graph.services[name].calls {
            if seen.insert(c.to.as_str()) {
                todo.push(c.to.as_str());
            }
        }
    }
    seen.len()
}

fn check_large(c: &mut Criterion) {
    let layered = layered_graph(3);
    let chain = chain_graph(5);
    let ladder = ladder_graph(7);
    for graph in [&layered, &chain, &ladder] {
        assert_eq!(reached(graph), SERVICES);
    }
    assert_eq!(calls(&layered), CALLS);
    let toml = graph_to_toml(&layered);
    // Tells a fault of this writer apart from one of the parser when parse + check is skipped.
    toml.parse::<toml::Table>()
        .expect("the generated graph file is valid TOML");

    let mut group = c.benchmark_group("check_large");
    group.sample_size(10);
    group.bench_function("check 10k services, 50k calls, 20 layers", |b| {
        b.iter(|| check::check(black_box(&layered)))
    });
    match parse("generated.toml", &toml) {
        Ok(parsed) => {
            assert_eq!(
                (parsed.services.len(), calls(&parsed)),
                (SERVICES, CALLS),
                "the generated file parses to the generated graph's size"
            );
            let label = format!(
                "parse + check 10k services, 50k calls ({} MB of TOML)",
                toml.len() >> 20
            );
            group.bench_function(label, |b| {
                b.iter(|| {
                    check::check(&parse("generated.toml", black_box(&toml)).expect("parsed above"))
                })
            });
        }
        // Said loudly rather than panicking, so the check figures above are still reported.
        Err(error) => {
            eprintln!("SKIPPED parse + check: the generated graph file does not parse: {error}")
        }
    }
    group.bench_function("check a chain 10k deep", |b| {
        b.iter(|| check::check(black_box(&chain)))
    });
    group.bench_function("check a ladder with 2^4999 paths", |b| {
        b.iter(|| check::check(black_box(&ladder)))
    });
    group.finish();
}

criterion_group!(benches, check_large);
criterion_main!(benches);
