//! Round trip (issue 13, item 4): `import(export(g))` has the policies of `g`, for every target.
//!
//! Random graphs whose calls' policies stay within what each target can express (the
//! generators below say, per target, which values those are: the readers' meaning of each
//! field, inverted by the writers) are exported to new resources, read back with the import's
//! own path (`read_paths`, `inventory`, `assemble` with the graph's calls as `--base`), and
//! every call's policy is compared with the graph's, key by key. `retry_on` is compared by
//! meaning (which statuses, gRPC codes and failures it retries), since `gateway-error` and
//! `502, 503, 504` are one set written two ways.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use stormguard::backoff::Backoff;
use stormguard::classify::RetryOn;
use stormguard_graph::model::{Call, LimiterSpec};
use stormguard_mesh::export::{self, Existing, Target};

/// One call's policy, as the generator draws it (milliseconds).
#[derive(Clone, Debug)]
struct Spec {
    request_timeout: Option<u64>,
    timeout: Option<u64>,
    connect_timeout: Option<u64>,
    max_attempts: u32,
    retry_on: Vec<String>,
    backoff: String,
    limiter: Option<String>,
    hedge: Option<u64>,
}

impl Spec {
    /// The call's keys as a graph file writes them.
    fn toml(&self) -> String {
        let mut out = String::new();
        let ms = |key: &str, v: Option<u64>, out: &mut String| {
            if let Some(v) = v {
                out.push_str(&format!("{key} = \"{v}ms\"\n"));
            }
        };
        ms("request_timeout", self.request_timeout, &mut out);
        ms("timeout", self.timeout, &mut out);
        ms("connect_timeout", self.connect_timeout, &mut out);
        out.push_str(&format!("max_attempts = {}\n", self.max_attempts));
        let items: Vec<String> = self.retry_on.iter().map(|c| format!("\"{c}\"")).collect();
        out.push_str(&format!("retry_on = [{}]\n", items.join(", ")));
        out.push_str(&format!("backoff = \"{}\"\n", self.backoff));
        if let Some(limiter) = &self.limiter {
            out.push_str(limiter);
            out.push('\n');
        }
        if let Some(delay) = self.hedge {
            out.push_str(&format!(
                "hedge = {{ delay = \"{delay}ms\", max_extra = 1.0 }}\n"
            ));
        }
        if self.max_attempts > 1 || self.hedge.is_some() {
            // Every mesh retries any method: the graph says so.
            out.push_str("idempotent = true\n");
        }
        out
    }
}

/// The graph (`full`) and its calls without policies (`base`, what `--base` gives): `web`
/// calls `d0`, `d1`, ... with `specs`, and `batch`, when given, calls the same destinations
/// with its own.
fn graphs(specs: &[Spec], batch: &[Spec]) -> (String, String) {
    let mut full = String::from("[entry]\nservice = \"web\"\n");
    let mut base = full.clone();
    for (caller, specs) in [("web", specs), ("batch", batch)] {
        if caller == "batch" && specs.is_empty() {
            continue;
        }
        full.push_str(&format!("[services.{caller}]\n"));
        base.push_str(&format!("[services.{caller}]\n"));
        for (i, spec) in specs.iter().enumerate() {
            let head = format!("[[services.{caller}.calls]]\nto = \"d{i}\"\n");
            full.push_str(&head);
            full.push_str(&spec.toml());
            base.push_str(&head);
        }
    }
    for i in 0..specs.len().max(batch.len()) {
        full.push_str(&format!("[services.d{i}]\n"));
        base.push_str(&format!("[services.d{i}]\n"));
    }
    (full, base)
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

/// Timeouts: a request timeout, an attempt's timeout at most it, a connect timeout at most that.
fn timeouts() -> impl Strategy<Value = (u64, u64, u64)> {
    (100u64..5000)
        .prop_flat_map(|r| (Just(r), 50u64..=r))
        .prop_flat_map(|(r, t)| (Just(r), Just(t), 1u64..=t))
}

/// Envoy's and Istio's retry conditions that read back as written: `reset` comes with
/// `timeout` (Envoy retries a per-try timeout under it) and every failed connection and
/// stream, `reset-before-request` with failed connections, `5xx` and `gateway-error` with
/// every reset (Envoy's include them), or alone (then written as statuses).
fn envoy_retry_on() -> impl Strategy<Value = Vec<String>> {
    (
        subset(&[
            "connect-failure",
            "refused-stream",
            "reset-before-request",
            "409",
            "429",
            "503",
            "unavailable",
            "cancelled",
            "resource-exhausted",
        ]),
        prop_oneof![
            Just(vec![]),
            Just(vec!["reset", "timeout"]),
            Just(vec![
                "5xx",
                "connect-failure",
                "refused-stream",
                "reset",
                "timeout"
            ]),
            Just(vec!["gateway-error"])
        ],
    )
        .prop_map(|(mut a, b)| {
            a.extend(b.into_iter().map(str::to_string));
            // Envoy's reset is any failed connection or stream; its reset-before-request
            // includes a failed connect.
            if a.iter().any(|c| c == "reset") {
                a.extend(["connect-failure", "refused-stream"].map(str::to_string));
            }
            if a.iter().any(|c| c == "reset-before-request") || a.is_empty() {
                a.push("connect-failure".into());
            }
            a
        })
}

fn budget() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(Some("retry_budget = \"none\"".to_string())),
        (1u32..=100, 1u32..=50).prop_map(|(p, m)| Some(format!(
            "retry_budget = {{ ratio = {}, min_per_sec = {m} }}",
            f64::from(p) / 100.0
        ))),
    ]
}

fn istio() -> impl Strategy<Value = Spec> {
    (timeouts(), 1u32..=5, envoy_retry_on(), 1u64..100, budget()).prop_map(
        |((r, t, c), n, retry_on, b, limiter)| {
            Spec {
                request_timeout: Some(r),
                // Istio has a per-try timeout only with retries: one attempt has the route's.
                timeout: Some(if n > 1 { t } else { r }),
                connect_timeout: Some(c.min(if n > 1 { t } else { r })),
                max_attempts: n,
                retry_on,
                backoff: format!("full-jitter(base={b}ms, cap={}ms)", b * 10),
                limiter,
                hedge: None,
            }
        },
    )
}

fn envoy() -> impl Strategy<Value = Spec> {
    (
        timeouts(),
        any::<bool>(),
        1u32..=5,
        envoy_retry_on(),
        (1u64..100, 1u64..=20),
        budget(),
    )
        .prop_map(
            |((r, t, c), no_route_timeout, n, retry_on, (b, cap), limiter)| Spec {
                request_timeout: (!no_route_timeout).then_some(r),
                timeout: Some(t),
                connect_timeout: Some(c),
                max_attempts: n,
                retry_on,
                backoff: format!("full-jitter(base={b}ms, cap={}ms)", b * cap),
                limiter,
                hedge: None,
            },
        )
}

fn gateway() -> impl Strategy<Value = Spec> {
    (
        timeouts(),
        (any::<bool>(), any::<bool>()),
        1u32..=5,
        subset(&["408", "429", "500", "502", "503", "504"]),
        prop_oneof![Just(None), (1u64..100).prop_map(Some)],
    )
        .prop_map(|((r, t, _), (has_r, has_t), n, mut codes, floor)| {
            // A retry stanza also retries connection errors (the API's SHOULD).
            codes.extend(["connect-failure", "reset", "timeout"].map(str::to_string));
            Spec {
                request_timeout: has_r.then_some(r),
                timeout: has_t.then_some(t),
                connect_timeout: None,
                max_attempts: n,
                retry_on: codes,
                backoff: match floor {
                    None => "none".into(),
                    Some(x) => format!("equal-jitter(base={}ms, cap={}ms)", 2 * x, 20 * x),
                },
                limiter: Some("retry_budget = \"none\"".into()),
                hedge: None,
            }
        })
}

fn linkerd() -> impl Strategy<Value = Spec> {
    (
        timeouts(),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        1u32..=5,
        subset(&["5xx", "gateway-error", "409", "429", "503"]),
    )
        .prop_map(
            |((r, t, _), (has_r, has_t, retry_timeout), n, mut retry_on)| {
                retry_on.push("refused-stream".into());
                if has_t && retry_timeout {
                    retry_on.push("timeout".into());
                }
                Spec {
                    request_timeout: has_r.then_some(r),
                    timeout: has_t.then_some(t),
                    connect_timeout: None,
                    max_attempts: n,
                    retry_on,
                    backoff: "equal-jitter(base=50ms, cap=250ms)".into(),
                    limiter: Some("retry_budget = \"none\"".into()),
                    hedge: None,
                }
            },
        )
}

fn grpc() -> impl Strategy<Value = Spec> {
    (
        100u64..5000,
        1u32..=5,
        subset(&["unavailable", "cancelled", "resource-exhausted", "deadline-exceeded", "aborted", "internal"]),
        (1u64..100, 1u64..=20),
        prop_oneof![
            Just(None),
            (1u32..=200, prop::sample::select(vec![1u32, 2, 4, 5, 8, 10])).prop_map(|(c, k)| Some((c * k, k))),
        ],
        prop_oneof![Just(None), (1u64..100).prop_map(Some)],
    )
        .prop_map(|(r, n, mut codes, (b, cap), bucket, hedge)| {
            if codes.is_empty() {
                codes.push("unavailable".into());
            }
            let hedge = hedge.filter(|_| n > 1);
            Spec {
                // gRPC's deadline is the only timeout: each attempt may use all of it.
                request_timeout: Some(r),
                timeout: Some(r),
                connect_timeout: None,
                max_attempts: n,
                retry_on: codes,
                backoff: if hedge.is_some() {
                    "none".into()
                } else {
                    format!("full-jitter(base={b}ms, cap={}ms)", b * cap)
                },
                limiter: Some(match bucket {
                    Some((capacity, cost)) => format!(
                        "token_bucket = {{ capacity = {capacity}, retry_cost = {cost}, timeout_cost = {cost} }}"
                    ),
                    None => "retry_budget = \"none\"".into(),
                }),
                hedge,
            }
        })
}

/// What a `retry_on` retries, whatever its spelling.
fn meaning(on: &RetryOn) -> (Vec<u16>, Vec<u32>, [bool; 5]) {
    (
        (400..=599).filter(|s| on.status(*s)).collect(),
        (1..=16).filter(|c| on.grpc(*c)).collect(),
        [
            on.connect_failure(),
            on.refused_stream(),
            on.reset_before_request(),
            on.reset_after_request(),
            on.timeout(),
        ],
    )
}

/// The differences between the graph's call and the imported one.
fn differences(want: &Call, got: &Call) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, same: bool, w: String, g: String| {
        if !same {
            out.push(format!("{key}: exported {w}, imported {g}"));
        }
    };
    check(
        "request_timeout",
        want.request_timeout == got.request_timeout,
        format!("{:?}", want.request_timeout),
        format!("{:?}", got.request_timeout),
    );
    check(
        "timeout",
        want.timeout == got.timeout,
        format!("{:?}", want.timeout),
        format!("{:?}", got.timeout),
    );
    check(
        "connect_timeout",
        want.connect_timeout == got.connect_timeout,
        format!("{:?}", want.connect_timeout),
        format!("{:?}", got.connect_timeout),
    );
    check(
        "max_attempts",
        want.max_attempts == got.max_attempts,
        want.max_attempts.to_string(),
        got.max_attempts.to_string(),
    );
    check(
        "hedge",
        want.hedge == got.hedge,
        format!("{:?}", want.hedge),
        format!("{:?}", got.hedge),
    );
    if want.max_attempts > 1 || want.hedge.is_some() {
        // How to retry matters only to a call that retries.
        check(
            "retry_on",
            meaning(&want.retry_on) == meaning(&got.retry_on),
            want.retry_on.to_string(),
            got.retry_on.to_string(),
        );
        check(
            "backoff",
            want.backoff == got.backoff,
            want.backoff.to_string(),
            got.backoff.to_string(),
        );
        check(
            "limiter",
            limiter_eq(want.limiter, got.limiter),
            format!("{:?}", want.limiter),
            format!("{:?}", got.limiter),
        );
        check(
            "idempotent",
            want.is_idempotent() == got.is_idempotent(),
            want.idempotent.to_string(),
            got.idempotent.to_string(),
        );
    }
    out
}

fn limiter_eq(a: Option<LimiterSpec>, b: Option<LimiterSpec>) -> bool {
    match (a, b) {
        (
            Some(LimiterSpec::Budget {
                ratio: r1,
                min_per_sec: m1,
            }),
            Some(LimiterSpec::Budget {
                ratio: r2,
                min_per_sec: m2,
            }),
        ) => (r1 - r2).abs() < 1e-9 && m1 == m2,
        (a, b) => a == b,
    }
}

static DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn scratch(target: Target) -> PathBuf {
    let n = DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("roundtrip-{target}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Exports `specs` to `target`, imports the result onto the graph's calls, and returns what
/// differs per call.
fn round_trip(target: Target, specs: &[Spec], batch: &[Spec]) -> Result<(), TestCaseError> {
    let (full, base) = graphs(specs, batch);
    let graph = stormguard_graph::parse("g.toml", &full)
        .map_err(|e| TestCaseError::fail(format!("generated graph: {e}\n{full}")))?;
    let exported = export::export(&graph, target, &Existing::default());
    let dir = scratch(target);
    for file in &exported.files {
        std::fs::write(dir.join(&file.path), &file.text).unwrap();
    }
    let files: Vec<String> = exported.files.iter().map(|f| f.text.clone()).collect();
    let documents = stormguard_mesh::read_paths(std::slice::from_ref(&dir))
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", files.join("\n---\n"))))?;
    let inventory = stormguard_mesh::inventory(&documents)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", files.join("\n---\n"))))?;
    let imported = stormguard_mesh::assemble(
        &inventory,
        &stormguard_mesh::Options {
            base: Some(("base.toml".into(), base)),
            inputs: vec![dir.display().to_string()],
        },
    )
    .map_err(|e| TestCaseError::fail(format!("assemble: {e}")))?;
    let back = stormguard_graph::parse("imported.toml", &imported.toml)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", imported.toml)))?;
    let _ = std::fs::remove_dir_all(&dir);
    for caller in ["web", "batch"] {
        let (Some(want), Some(got)) = (graph.services.get(caller), back.services.get(caller))
        else {
            continue;
        };
        prop_assert_eq!(want.calls.len(), got.calls.len(), "{}", imported.toml);
        for (w, g) in want.calls.iter().zip(&got.calls) {
            let diff = differences(w, g);
            prop_assert!(
                diff.is_empty(),
                "{target} {caller} -> {}: {}\n--- graph:\n{full}\n--- exported:\n{}\n--- imported:\n{}",
                w.to,
                diff.join("; "),
                files.join("\n---\n"),
                imported.toml
            );
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // Deterministic: the same cases on every run (a fixed seed: the algorithm alone left the
    // seed random, and a run failed now and then on a case the next run did not draw).
    ProptestConfig {
        cases: 256,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5704_e3a0),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn istio_round_trip(specs in prop::collection::vec(istio(), 1..4)) {
        round_trip(Target::Istio, &specs, &[])?;
    }

    /// Istio's routes match on the caller (`sourceLabels`): two callers of the same
    /// destinations keep their own policies.
    #[test]
    fn istio_round_trip_by_caller(
        mut specs in prop::collection::vec(istio(), 1..3),
        mut batch in prop::collection::vec(istio(), 1..3),
    ) {
        // A DestinationRule is the destination's, for every caller: the two callers share its
        // connect timeout and budget (when they differ, the export lists the conflict).
        for (web, batch) in specs.iter_mut().zip(batch.iter_mut()) {
            let connect = web.connect_timeout.min(batch.connect_timeout);
            web.connect_timeout = connect;
            batch.connect_timeout = connect;
            batch.limiter = web.limiter.clone();
        }
        round_trip(Target::Istio, &specs, &batch)?;
    }

    #[test]
    fn envoy_round_trip(
        specs in prop::collection::vec(envoy(), 1..4),
        batch in prop::collection::vec(envoy(), 0..3),
    ) {
        // An Envoy bootstrap is one caller's: each caller keeps its own policies.
        round_trip(Target::Envoy, &specs, &batch)?;
    }

    #[test]
    fn gateway_api_round_trip(specs in prop::collection::vec(gateway(), 1..4)) {
        round_trip(Target::GatewayApi, &specs, &[])?;
    }

    #[test]
    fn linkerd_round_trip(specs in prop::collection::vec(linkerd(), 1..4)) {
        round_trip(Target::Linkerd, &specs, &[])?;
    }

    #[test]
    fn grpc_round_trip(mut specs in prop::collection::vec(grpc(), 1..4)) {
        // One service config holds one retryThrottling, for every service of the channel.
        let limiter = specs[0].limiter.clone();
        specs.iter_mut().for_each(|s| s.limiter = limiter.clone());
        round_trip(Target::Grpc, &specs, &[])?;
    }
}

/// Not a round trip but its premise: what a target cannot express is listed, never dropped
/// silently, e.g. a budget in Linkerd's annotations or a per-attempt timeout in gRPC.
#[test]
fn what_cannot_be_expressed_is_listed() {
    let specs = [Spec {
        request_timeout: Some(2000),
        timeout: Some(500),
        connect_timeout: Some(100),
        max_attempts: 3,
        retry_on: vec!["connect-failure".into(), "503".into()],
        backoff: "full-jitter(base=25ms, cap=1s)".into(),
        limiter: Some("retry_budget = { ratio = 0.1, min_per_sec = 5 }".into()),
        hedge: None,
    }];
    let (full, _) = graphs(&specs, &[]);
    let graph = stormguard_graph::parse("g.toml", &full).unwrap();
    let cases = [
        (Target::Linkerd, "retry_budget"),
        (Target::Grpc, "timeout"),
        (Target::Istio, "backoff"),
        (Target::GatewayApi, "connect_timeout"),
        (Target::Envoy, "retry_budget"),
    ];
    for (target, key) in cases {
        let out = export::export(&graph, target, &Existing::default());
        assert!(
            out.unexpressed.iter().any(|u| u.key == key),
            "{target} {key}: {:#?}",
            out.unexpressed
        );
    }
    let _ = Duration::ZERO;
    let _ = Backoff::None;
}
