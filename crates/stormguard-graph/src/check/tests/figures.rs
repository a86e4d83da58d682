//! The model's figures on small graphs, computed by hand.

use stormguard::backoff::Backoff;
use stormguard::estimate::LogNormal;

use super::*;

#[test]
fn parallel_runs_cost_their_slowest_and_sequential_calls_add() {
    // a's own 10 ms + max(10 + 100, 200) + 50 + max(30, 40) = 300 ms.
    let report = Builder::new("a")
        .service("a", |s| s.latency = fixed_latency(10))
        .call("a", "b", |c| {
            timed(100)(c);
            c.connect_timeout = Some(ms(10));
            c.parallel = true;
        })
        .call("a", "c", |c| {
            c.timeout = Some(ms(200));
            c.parallel = true;
        })
        .call("a", "d", |c| c.timeout = Some(ms(50)))
        .call("a", "e", |c| {
            c.timeout = Some(ms(30));
            c.parallel = true;
        })
        .call("a", "f", |c| {
            c.timeout = Some(ms(40));
            c.parallel = true;
        })
        .check();
    assert!(approx(report.services["a"].worst_case_ms, 300.0));
}

#[test]
fn a_call_costs_count_times_its_attempts_and_backoff_caps() {
    // 3 * (4 * 100 + (10 + 20 + 25)) = 1365 ms, plus a's own 10 ms: the timeout covers
    // connecting, so the connect timeout adds nothing.
    let report = Builder::new("a")
        .service("a", |s| s.latency = fixed_latency(10))
        .call("a", "b", |c| {
            c.timeout = Some(ms(100));
            c.connect_timeout = Some(ms(10));
            c.count = 3;
            c.max_attempts = 4;
            c.backoff = Backoff::Exponential {
                base: ms(10),
                cap: ms(25),
            };
        })
        .check();
    assert!(approx(report.services["a"].worst_case_ms, 1375.0));
}

#[test]
fn without_a_timeout_an_attempt_waits_the_round_trip_plus_the_callee() {
    // b: 7 + 20 = 27 ms. a: 10 + 2 * max(3 connect, 2 rtt + 27) = 68 ms: without a timeout
    // an attempt lasts the round trip and the callee's worst case, or a connect that never
    // completes, whichever is longer.
    let report = Builder::new("a")
        .service("a", |s| s.latency = fixed_latency(10))
        .service("b", |s| s.latency = fixed_latency(7))
        .service("c", |s| s.latency = fixed_latency(1))
        .call("a", "b", |c| {
            c.connect_timeout = Some(ms(3));
            c.rtt = ms(2);
            c.max_attempts = 2;
        })
        .call("b", "c", |c| c.timeout = Some(ms(20)))
        .check();
    assert!(approx(report.services["b"].worst_case_ms, 27.0));
    assert!(approx(report.services["a"].worst_case_ms, 68.0));
    assert!(approx(report.services["c"].worst_case_ms, 1.0));
}

#[test]
fn own_latency_counts_at_the_p999_of_its_fit() {
    let report = Builder::new("a")
        .service("a", |s| {
            s.latency = Latency {
                p50: ms(4),
                p99: ms(40),
            }
        })
        .check();
    let expected = LogNormal::fit(ms(4), ms(40)).unwrap().quantile(0.999);
    let worst = report.services["a"].worst_case_ms;
    // Reported to the µs.
    assert!((worst - expected.as_secs_f64() * 1000.0).abs() <= 0.0005);
    assert_eq!(worst, (worst * 1000.0).round() / 1000.0);
    // 4 ms * 10^(3.0902 / 2.3263), by hand.
    assert!((85.0..85.4).contains(&worst), "{worst}");
}

fn brooker(set: impl Fn(usize, &mut Call) + Copy) -> Report {
    let names = ["l0", "l1", "l2", "l3", "l4", "l5"];
    let mut builder = Builder::new("l0");
    for (k, pair) in names.windows(2).enumerate() {
        builder = builder.call(pair[0], pair[1], move |c| {
            timed(100)(c);
            c.max_attempts = 3;
            set(k, c);
        });
    }
    builder.check()
}

#[test]
fn five_layers_of_three_attempts_give_243_at_the_bottom() {
    let report = brooker(|_, _| {});
    let amplification: Vec<f64> = ["l0", "l1", "l2", "l3", "l4", "l5"]
        .iter()
        .map(|s| report.services[*s].amplification)
        .collect();
    assert_eq!(amplification, [1.0, 3.0, 9.0, 27.0, 81.0, 243.0]);
    assert_eq!(report.services["l5"].sustained_amplification, 243.0);
    assert_eq!(report.services["l5"].depth, 5);
    assert_eq!(fired(&report, "retry-amplification"), ["l3", "l4", "l5"]);
    let bottom = report
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification" && place(f) == "l5")
        .unwrap();
    assert_eq!(bottom.value, Some(243.0));
    assert_eq!(bottom.limit, Some(10.0));
    assert!(
        bottom.message.contains("243 attempts"),
        "{}",
        bottom.message
    );
}

#[test]
fn budgets_bring_the_sustained_figure_down_and_buckets_to_one() {
    // Without a reserve, each layer lets a tenth of its requests be retried: 1.1^5.
    let ratio_only = brooker(|_, c| {
        c.limiter = Some(LimiterSpec::Budget {
            ratio: 0.1,
            min_per_sec: 0,
        })
    });
    assert!(approx(
        ratio_only.services["l5"].sustained_amplification,
        1.1f64.powi(5)
    ));
    // With the reserve of 10 retries a second, shared by the requests each call makes at 100
    // users a second (100, then 120, 142, ...): 1.1 + 10 / requests a second, layer on layer.
    let budgeted = brooker(|_, c| c.limiter = Some(budget(0.1)));
    let bottom = budgeted.services["l5"];
    assert_eq!(bottom.amplification, 243.0);
    let mut sustained = 1.0;
    for _ in 0..5 {
        sustained *= 1.1 + 10.0 / (100.0 * sustained);
    }
    assert!(approx(bottom.sustained_amplification, sustained));
    let at_bottom = budgeted
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification" && place(f) == "l5")
        .unwrap();
    assert!(at_bottom.message.contains("243 attempts"));
    assert!(
        at_bottom
            .message
            .contains("2.22 sustained while the retry budgets hold"),
        "{}",
        at_bottom.message
    );

    // A drained bucket lets no retry through; one whose retries cost nothing never drains, and
    // every attempt is made.
    for (retry_cost, sustained) in [(5, 1.0), (0, 243.0)] {
        let bucketed = brooker(|_, c| {
            c.limiter = Some(LimiterSpec::TokenBucket {
                capacity: 500,
                retry_cost,
                timeout_cost: 10,
            })
        });
        assert_eq!(bucketed.services["l5"].sustained_amplification, sustained);
    }

    // Budgets on the top two layers only: 1.2 (100 requests a second), 1.1 + 10 / 120, 3^3.
    let mixed = brooker(|k, c| {
        if k < 2 {
            c.limiter = Some(budget(0.1));
        }
    });
    assert!(approx(
        mixed.services["l5"].sustained_amplification,
        1.2 * (1.1 + 10.0 / 120.0) * 27.0
    ));
}

#[test]
fn a_budget_never_counts_more_than_the_attempts_allowed() {
    let report = Builder::new("a")
        .call("a", "b", |c| {
            c.max_attempts = 2;
            c.limiter = Some(budget(5.0));
            c.count = 3;
        })
        .check();
    assert_eq!(report.services["b"].sustained_amplification, 6.0);
}

#[test]
fn a_diamond_sums_amplification_over_its_paths() {
    // a -> b -> d: 2 * (2 * 2 calls) = 8; a -> c -> d: 3 * 1 = 3; a -> d: 1. Total 12.
    let report = Builder::new("a")
        .call("a", "b", |c| c.max_attempts = 2)
        .call("a", "c", |c| c.max_attempts = 3)
        .call("a", "d", |_| {})
        .call("b", "d", |c| {
            c.max_attempts = 2;
            c.count = 2;
        })
        .call("c", "d", |_| {})
        .check();
    assert_eq!(report.services["d"].amplification, 12.0);
    assert_eq!(report.services["d"].sustained_amplification, 12.0);
    assert_eq!(report.services["d"].depth, 2);
    assert_eq!(report.services["b"].depth, 1);
    assert!(fired(&report, "call-cycle").is_empty());
}

#[test]
fn services_the_entry_does_not_reach_get_no_figures_but_are_still_judged() {
    let report = Builder::new("a")
        .call("a", "b", timed(100))
        .call("x", "y", |_| {})
        .check();
    let names: Vec<&str> = report.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(fired(&report, "missing-timeout"), ["x->y"]);
}

#[test]
fn a_missing_entry_service_gives_no_figures_and_no_panic() {
    let mut graph = Builder::new("a").call("a", "b", timed(100)).build();
    graph.entry.service = "nowhere".to_string();
    let report = check(&graph);
    assert!(report.services.is_empty());
    assert!(report.findings.is_empty());
}

#[test]
fn findings_are_ordered_by_service_then_call_then_severity_and_counted() {
    let report = Builder::new("b")
        .call("b", "c", |c| {
            c.timeout = Some(ms(100));
            c.max_attempts = 2;
            c.idempotent = Idempotent::No;
            c.retry_on = stormguard::classify::RetryOn::parse_list(["timeout", "503"]).unwrap();
            c.backoff = Backoff::default();
            c.limiter = Some(budget(0.1));
        })
        .call("b", "a", |_| {})
        .call("a", "c", |_| {})
        .service("c", |s| s.instances = 2)
        .check();
    assert_eq!(
        found(&report),
        [
            ("missing-timeout", "a->c".to_string()),
            ("missing-connect-timeout", "a->c".to_string()),
            ("missing-connect-timeout", "b->c".to_string()),
            ("non-idempotent-retry", "b->c".to_string()),
            ("missing-timeout", "b->a".to_string()),
            ("missing-connect-timeout", "b->a".to_string()),
        ]
    );
    assert_eq!(report.summary.errors, 2);
    assert_eq!(report.summary.warnings, 4);
    assert_eq!(report.summary.infos, 0);
}

#[test]
fn figures_are_reported_without_float_noise() {
    // 1.2 (a tenth retried, and the reserve's 10 a second over 100 requests) * 3 is
    // 3.5999999999999996 in floats; the report says 3.6.
    let report = Builder::new("a")
        .service("a", |s| s.latency = fixed_latency(1))
        .call("a", "b", |c| {
            c.max_attempts = 3;
            c.limiter = Some(budget(0.1));
        })
        .call("b", "c", |c| {
            c.count = 3;
            c.timeout = Some(Duration::from_nanos(212_991_407));
        })
        .service("b", |s| s.latency = fixed_latency(1))
        .check();
    assert_eq!(report.services["c"].sustained_amplification, 3.6);
    assert_eq!(report.services["c"].amplification, 9.0);
    // b: 1 ms + 3 * 212.991407 ms = 639.974221 ms, to the µs.
    assert_eq!(report.services["b"].worst_case_ms, 639.974);
    let json = serde_json::to_string(&report.services["c"]).unwrap();
    assert!(json.contains("\"sustained_amplification\":3.6,"), "{json}");
}

#[test]
fn a_hedged_call_adds_at_most_its_max_extra_per_request() {
    // Two attempts, hedged with at most 10% extra: a request earns a tenth of a copy when it
    // begins, whichever attempt spends it, so b gets at most 2.1 per request to a, and c, one
    // attempt below b, 2.1 as well; with a retry budget of 0.2 holding (and its reserve of 10
    // retries a second over the call's 100 requests a second), 1.3 + 0.1.
    let report = Builder::new("a")
        .call("a", "b", |c| {
            timed(100)(c);
            c.max_attempts = 2;
            c.hedge = Some(crate::model::HedgeSpec {
                delay: stormguard::hedge::HedgeDelay::Fixed(ms(50)),
                max_extra: 0.1,
            });
            c.limiter = Some(crate::model::LimiterSpec::Budget {
                ratio: 0.2,
                min_per_sec: 10,
            });
        })
        .call("b", "c", timed(50))
        .check();
    assert!(approx(report.services["b"].amplification, 2.1));
    assert!(approx(report.services["c"].amplification, 2.1));
    assert!(approx(report.services["b"].sustained_amplification, 1.4));
}

#[test]
fn a_hedge_on_a_call_that_is_not_idempotent_adds_nothing() {
    // Never sent (both copies could run): a POST's hedge setting is inert, and check says so
    // elsewhere (non-idempotent-retry); the load figures count only what is sent.
    let report = Builder::new("a")
        .call("a", "b", |c| {
            timed(100)(c);
            c.idempotent = crate::model::Idempotent::No;
            c.hedge = Some(crate::model::HedgeSpec {
                delay: stormguard::hedge::HedgeDelay::Fixed(ms(50)),
                max_extra: 0.1,
            });
        })
        .check();
    assert!(approx(report.services["b"].amplification, 1.0));
}
