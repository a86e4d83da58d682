//! `over-capacity` and `retries-over-capacity`: the load at the entry's rate against
//! `instances x concurrency / hold` (Little's law), with the simulator's hold (own work plus the
//! calls' time), firing and not, and sized fixes.

use super::*;
use crate::report::Severity;

/// web (fixed 1 ms, 64 workers) calls db (fixed 10 ms, one instance of 4 workers: 400/s) once
/// per user request, at `rate` users a second.
fn web_db(rate: f64) -> Builder {
    Builder::new("web")
        .entry(|e| e.rate = rate)
        .service("web", |s| {
            s.latency = fixed_latency(1);
            s.concurrency = 64;
            s.instances = 2;
        })
        .call("web", "db", timed(200))
        .service("db", |s| {
            s.latency = fixed_latency(10);
            s.concurrency = 4;
        })
}

#[test]
fn over_capacity_fires_where_the_normal_load_is_above_workers_over_hold() {
    let report = web_db(1000.0).check();
    assert_eq!(fired(&report, "over-capacity"), ["db"]);
    let finding = only(&report, "over-capacity");
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(finding.value, Some(1000.0));
    assert_eq!(finding.limit, Some(400.0));
    // 1000/s x 10 ms / (70% x 4 workers) = 3.6 instances; 1000/s x 10 ms / 70% = 14.3 workers.
    assert!(finding.fix.contains("instances = 4"), "{}", finding.fix);
    assert!(finding.fix.contains("concurrency = 15"), "{}", finding.fix);
    assert!(finding.fix.contains("70% utilisation"), "{}", finding.fix);
    assert!(
        finding.message.contains("60% of its requests"),
        "{}",
        finding.message
    );
    // Only the error: the retries rule is for a service that carries its normal load.
    assert_eq!(
        fired(&report, "retries-over-capacity"),
        Vec::<String>::new()
    );
}

#[test]
fn over_capacity_is_silent_where_the_workers_carry_the_load() {
    let report = web_db(399.0).check();
    assert_eq!(fired(&report, "over-capacity"), Vec::<String>::new());
    // The fix's instances carry it.
    let report = web_db(1000.0).service("db", |s| s.instances = 4).check();
    assert_eq!(fired(&report, "over-capacity"), Vec::<String>::new());
}

#[test]
fn a_request_holds_its_worker_while_its_calls_run_as_in_the_simulator() {
    // web's own work (1 ms) would carry 128,000/s; with db's 10 ms and the 1 ms round trip it
    // holds a worker 12 ms: 2 x 64 / 12 ms = 10,667/s.
    let report = web_db(11_000.0)
        .service("db", |s| s.instances = 1000)
        .service("db", |s| s.concurrency = 1000)
        .check();
    assert_eq!(fired(&report, "over-capacity"), ["web"]);
    let finding = only(&report, "over-capacity");
    assert!(
        (finding.limit.unwrap() - 128_000.0 / 12.0).abs() < 1e-3,
        "{finding:?}"
    );
    assert!(
        finding.message.contains("11.0ms waiting on its calls"),
        "{}",
        finding.message
    );
}

#[test]
fn the_mean_of_the_fitted_lognormal_is_used_not_its_median() {
    // p50 40 ms, p99 120 ms: sigma = ln 3 / 2.326, mean = 40 ms x e^(sigma^2 / 2) = 44.7 ms,
    // so 100 workers carry 2,237/s, not the 2,500/s the median would say.
    let report = web_db(2300.0)
        .service("db", |s| {
            s.latency = Latency {
                p50: ms(40),
                p99: ms(120),
            };
            s.concurrency = 100;
        })
        .check();
    let finding = only(&report, "over-capacity");
    let mean_s = 0.040 * ((3f64.ln() / 2.326_347_874_040_840_8).powi(2) / 2.0).exp();
    assert!(
        (finding.limit.unwrap() - 100.0 / mean_s).abs() < 1e-3,
        "{finding:?}"
    );
    assert!(
        finding.message.contains("44.7ms own work"),
        "{}",
        finding.message
    );
}

#[test]
fn endpoints_shares_and_counts_make_the_load() {
    // browse (9 in 10) calls catalog 3 times, checkout (1 in 10) calls orders once: at 100
    // users/s catalog gets 270/s, above the 200/s of 2 workers of 10 ms; orders gets 10/s.
    let report = Builder::new("gateway")
        .service("gateway", |s| s.latency = fixed_latency(1))
        .endpoint_call(("gateway", "browse", 9.0), "catalog", |c| {
            timed(100)(c);
            c.count = 3;
        })
        .endpoint_call(("gateway", "checkout", 1.0), "orders", timed(100))
        .service("catalog", |s| {
            s.latency = fixed_latency(10);
            s.concurrency = 2;
        })
        .service("orders", |s| {
            s.latency = fixed_latency(10);
            s.concurrency = 2;
        })
        .instances_everywhere(2)
        .service("catalog", |s| s.instances = 1)
        .service("orders", |s| s.instances = 1)
        .check();
    assert_eq!(fired(&report, "over-capacity"), ["catalog"]);
    let finding = only(&report, "over-capacity");
    assert!(approx(finding.value.unwrap(), 270.0));
    assert!(approx(finding.limit.unwrap(), 200.0));
    // The gateway is judged on its endpoints' mix: browse holds 1 + 3 x 11 = 34 ms, checkout
    // 1 + 11 = 12 ms, 31.8 ms in their shares; 2 x 16 / 31.8 ms = 1006/s, above its 100/s.
    assert_eq!(
        fired(&report, "retries-over-capacity"),
        Vec::<String>::new()
    );
}

/// api calls db (fixed 40 ms, 2 x 50 workers: 2,500/s) with `attempts` and `limiter` at
/// 1,000 users/s.
fn retried(attempts: u32, limiter: Option<LimiterSpec>) -> Report {
    Builder::new("api")
        .entry(|e| e.rate = 1000.0)
        .service("api", |s| {
            s.latency = fixed_latency(1);
            s.concurrency = 1000;
            s.instances = 2;
        })
        .call("api", "db", |c| {
            timed(300)(c);
            c.max_attempts = attempts;
            c.backoff = Backoff::default();
            c.limiter = limiter;
        })
        .service("db", |s| {
            s.latency = fixed_latency(40);
            s.concurrency = 50;
            s.instances = 2;
        })
        .check()
}

#[test]
fn retries_that_hold_a_service_over_capacity_without_a_budget_are_an_error() {
    let report = retried(3, None);
    assert_eq!(fired(&report, "over-capacity"), Vec::<String>::new());
    let finding = only(&report, "retries-over-capacity");
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(finding.service.as_deref(), Some("db"));
    assert_eq!(finding.value, Some(3000.0));
    assert_eq!(finding.limit, Some(2500.0));
    assert!(
        finding.message.contains("metastable"),
        "{}",
        finding.message
    );
    // 3000/s x 40 ms / (70% x 50) = 3.4 instances.
    assert!(finding.fix.contains("instances = 4"), "{}", finding.fix);
    assert!(finding.fix.contains("retry_budget"), "{}", finding.fix);
}

#[test]
fn retries_a_budget_caps_within_capacity_are_a_warning() {
    // Every attempt is still 3,000/s, but with the budget 1,110/s once drained: 1,000 requests
    // a second, a tenth of them retried, and the reserve's 10 retries a second.
    let finding = {
        let report = retried(3, Some(budget(0.1)));
        only(&report, "retries-over-capacity").clone()
    };
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("1110/s once drained"),
        "{}",
        finding.message
    );
}

#[test]
fn retries_within_capacity_fire_nothing() {
    let report = retried(2, None);
    assert_eq!(
        fired(&report, "retries-over-capacity"),
        Vec::<String>::new()
    );
    let report = retried(1, None);
    assert_eq!(
        fired(&report, "retries-over-capacity"),
        Vec::<String>::new()
    );
    assert_eq!(fired(&report, "over-capacity"), Vec::<String>::new());
}

#[test]
fn contention_caps_what_concurrency_can_give() {
    // 2 ms per other request in flight: an instance never carries more than 500/s, so only
    // instances carry 1,500/s.
    let report = web_db(1500.0)
        .service("db", |s| {
            s.contention = ms(2);
            s.concurrency = 100;
            s.instances = 2;
        })
        .check();
    let finding = only(&report, "over-capacity");
    assert!(
        finding.fix.contains("no concurrency would"),
        "{}",
        finding.fix
    );
    // 1500/s x (10 + 2 x 99) ms / (70% x 100) = 4.5 instances.
    assert!(finding.fix.contains("instances = 5"), "{}", finding.fix);
}

fn example(name: &str) -> Report {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/graphs")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    check(&crate::parse(&path.display().to_string(), &text).unwrap())
}

#[test]
fn the_retry_storm_example_that_never_recovers_in_sim_is_an_error() {
    // db carries 2 x 1000 / (44.7 ms + 2 ms x 999) = 979/s; api's four attempts without a
    // budget are 1,200/s at 300 users/s, the ceiling the example's comment names.
    let report = example("retry-storm.toml");
    let finding = only(&report, "retries-over-capacity");
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(finding.service.as_deref(), Some("db"));
    assert_eq!(finding.value, Some(1200.0));
    assert!((finding.limit.unwrap() - 979.1).abs() < 0.1, "{finding:?}");
    assert!(report.summary.errors > 0);

    // With the budget it recovers in sim: only the burst is over capacity.
    let report = example("retry-storm-budget.toml");
    let finding = only(&report, "retries-over-capacity");
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(report.summary.errors, 0);
}
