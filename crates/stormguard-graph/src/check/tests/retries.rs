//! Each retry and hedge rule, firing and not.

use stormguard::backoff::Backoff;
use stormguard::classify::RetryOn;
use stormguard::hedge::HedgeDelay;

use super::*;
use crate::model::HedgeSpec;
use crate::report::Severity;

/// a -> b with `set` applied to a call that is otherwise clean; b has two instances.
fn one_call(set: impl FnOnce(&mut Call)) -> Report {
    Builder::new("a")
        .service("b", |s| s.instances = 2)
        .call("a", "b", |c| {
            retrying(100)(c);
            set(c);
        })
        .check()
}

#[test]
fn a_clean_retrying_call_fires_nothing() {
    let report = one_call(|_| {});
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

#[test]
fn layered_retries_fires_below_the_first_retrying_layer_even_across_a_plain_one() {
    let report = Builder::new("a")
        .call("a", "b", retrying(100))
        .call("b", "c", timed(100))
        .call("c", "d", retrying(100))
        .call("a", "e", timed(100))
        .call("e", "f", retrying(100))
        .instances_everywhere(2)
        .check();
    assert_eq!(fired(&report, "layered-retries"), ["c->d"]);
    assert_eq!(only(&report, "layered-retries").value, Some(2.0));
    // Its fix, one attempt on c -> d, stops it.
    let fixed = Builder::new("a")
        .call("a", "b", retrying(100))
        .call("b", "c", timed(100))
        .call("c", "d", timed(100))
        .instances_everywhere(2)
        .check();
    assert!(fired(&fixed, "layered-retries").is_empty());
}

#[test]
fn too_many_attempts_fires_above_two() {
    let report = one_call(|c| c.max_attempts = 3);
    assert_eq!(only(&report, "too-many-attempts").fix, "max_attempts = 2");
    assert!(fired(&one_call(|c| c.max_attempts = 2), "too-many-attempts").is_empty());
}

#[test]
fn retry_without_backoff_fires_only_when_retrying() {
    let report = one_call(|c| c.backoff = Backoff::None);
    assert_eq!(
        only(&report, "retry-without-backoff").fix,
        "backoff = \"full-jitter(base=25ms, cap=250ms)\""
    );
    let single = one_call(|c| {
        c.backoff = Backoff::None;
        c.max_attempts = 1;
    });
    assert!(single.findings.is_empty());
}

#[test]
fn a_zero_constant_backoff_is_no_backoff() {
    let report = one_call(|c| c.backoff = Backoff::Constant(ms(0)));
    let finding = only(&report, "retry-without-backoff");
    assert_eq!(
        finding.fix,
        "backoff = \"full-jitter(base=25ms, cap=250ms)\""
    );
    assert!(
        finding.message.contains("constant(0s), which never waits"),
        "{}",
        finding.message
    );
    assert!(fired(&report, "backoff-without-jitter").is_empty());
    // The same for a growing kind with a zero base, which only code can build.
    let zero_base = one_call(|c| {
        c.backoff = Backoff::Exponential {
            base: ms(0),
            cap: ms(100),
        }
    });
    assert_eq!(
        found(&zero_base),
        [("retry-without-backoff", "a->b".to_string())]
    );
    // The fix, set, fires neither backoff rule.
    assert!(one_call(|c| c.backoff = Backoff::default())
        .findings
        .is_empty());
}

#[test]
fn backoff_without_jitter_fixes_fire_nothing_when_set() {
    for backoff in [
        Backoff::Constant(ms(100)),
        Backoff::Exponential {
            base: ms(25),
            cap: ms(1000),
        },
        // Built in code with the base above the cap, which the parser refuses: the fix must
        // still be a text the parser accepts.
        Backoff::Exponential {
            base: ms(500),
            cap: ms(100),
        },
    ] {
        let report = one_call(|c| c.backoff = backoff);
        let fix = &only(&report, "backoff-without-jitter").fix;
        let text = fix
            .strip_prefix("backoff = \"")
            .and_then(|t| t.strip_suffix('"'))
            .unwrap();
        let fixed: Backoff = text.parse().unwrap_or_else(|e| panic!("{fix}: {e}"));
        assert!(one_call(|c| c.backoff = fixed).findings.is_empty(), "{fix}");
    }
}

#[test]
fn backoff_without_jitter_fires_on_constant_and_exponential_when_retrying() {
    let exponential = Backoff::Exponential {
        base: ms(25),
        cap: ms(1000),
    };
    let report = one_call(|c| c.backoff = exponential);
    assert_eq!(
        only(&report, "backoff-without-jitter").fix,
        "backoff = \"full-jitter(base=25ms, cap=1s)\""
    );
    let constant = one_call(|c| c.backoff = Backoff::Constant(ms(100)));
    assert_eq!(
        only(&constant, "backoff-without-jitter").fix,
        "backoff = \"full-jitter(base=100ms, cap=100ms)\""
    );
    let never_runs = one_call(|c| {
        c.backoff = exponential;
        c.max_attempts = 1;
    });
    assert!(never_runs.findings.is_empty());
}

#[test]
fn retry_without_budget_fires_without_a_budget_or_a_bucket() {
    let report = one_call(|c| c.limiter = None);
    assert_eq!(place(only(&report, "retry-without-budget")), "a->b");
    let bucket = one_call(|c| {
        c.limiter = Some(LimiterSpec::TokenBucket {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10,
        })
    });
    assert!(bucket.findings.is_empty());
}

#[test]
fn non_idempotent_retry_fires_where_the_file_lists_what_is_never_done() {
    // The default retry_on on a call that is not idempotent: refused connections and declined
    // answers are retried (safe), timeouts are not (documented); nothing to say.
    let safe = one_call(|c| c.idempotent = Idempotent::No);
    assert!(safe.findings.is_empty(), "{:#?}", safe.findings);
    let listed = |items: &[&str]| {
        let on = RetryOn::parse_list(items.iter().copied()).unwrap();
        one_call(move |c| {
            c.idempotent = Idempotent::No;
            c.retry_on = on;
        })
    };
    let some = listed(&["timeout", "5xx", "connect-failure", "409"]);
    let finding = only(&some, "non-idempotent-retry");
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains(
            "its retry_on's timeout is never retried; its retry_on's 5xx is retried only as 503"
        ),
        "{}",
        finding.message
    );
    assert!(finding
        .fix
        .starts_with(r#"retry_on = ["connect-failure", "409", "503"] (what is retried)"#));
    assert_eq!(
        finding.edits,
        [crate::report::Edit::set(
            "a",
            "b",
            0,
            "retry_on",
            r#"["connect-failure", "409", "503"]"#
        )]
    );
    // Nothing listed is ever retried: one attempt, as the proxy and sim make.
    let none = listed(&["timeout", "502"]);
    let finding = only(&none, "non-idempotent-retry");
    assert!(finding
        .message
        .contains("timeout and 502 are never retried"));
    assert_eq!(
        finding.edits,
        [crate::report::Edit::set("a", "b", 0, "max_attempts", "1")]
    );
    // A list that extends the default is judged on what it adds.
    assert!(listed(&["default", "409"]).findings.is_empty());
    let extended = listed(&["default", "500"]);
    let finding = only(&extended, "non-idempotent-retry");
    assert!(finding
        .message
        .contains("its retry_on's 500 is never retried"));
    // The default part is not judged, and stays as the file says it.
    assert_eq!(
        finding.edits,
        [crate::report::Edit::set(
            "a",
            "b",
            0,
            "retry_on",
            r#"["default"]"#
        )]
    );
    // A POST under the default "by-method" says why it is not idempotent.
    let post = one_call(|c| {
        c.method = "POST".to_string();
        c.retry_on = RetryOn::parse_list(["timeout", "503"]).unwrap();
    });
    assert!(only(&post, "non-idempotent-retry")
        .message
        .contains("a -> b is not idempotent (POST requests)"));
    // The same lists on an idempotent call are retried as listed.
    let idempotent = one_call(|c| c.retry_on = RetryOn::parse_list(["timeout"]).unwrap());
    assert!(idempotent.findings.is_empty());
    let hedged = one_call(|c| {
        c.idempotent = Idempotent::No;
        c.max_attempts = 1;
        c.hedge = Some(HedgeSpec {
            delay: HedgeDelay::Fixed(ms(50)),
            max_extra: 0.05,
        });
    });
    let finding = only(&hedged, "non-idempotent-retry");
    assert!(finding.message.contains("its hedge is never sent"));
    assert!(finding.fix.starts_with("no hedge"));
    let once = one_call(|c| {
        c.idempotent = Idempotent::No;
        c.max_attempts = 1;
    });
    assert!(once.findings.is_empty());
}

/// A call that retries nothing (not idempotent, and only `timeout` listed) makes one attempt in
/// the proxy and the simulator, so check counts one: no amplification, no `too-many-attempts`
/// whose fix (2) would disagree with `non-idempotent-retry`'s (1).
#[test]
fn a_call_that_retries_nothing_counts_one_attempt() {
    let report = Builder::new("a")
        .call("a", "b", |c| {
            c.timeout = Some(ms(100));
            c.connect_timeout = Some(ms(3));
            c.max_attempts = 4;
            c.request_timeout = Some(ms(150));
            c.idempotent = Idempotent::No;
            c.retry_on = RetryOn::parse_list(["timeout"]).unwrap();
            c.hedge = Some(HedgeSpec {
                delay: HedgeDelay::Fixed(ms(50)),
                max_extra: 0.8,
            });
        })
        .service("b", |s| s.instances = 2)
        .check();
    // Neither the retries nor the hedge are sent: no rule weighs them.
    for rule in [
        "too-many-attempts",
        "attempts-cannot-fit",
        "hedge-without-budget",
    ] {
        assert_eq!(fired(&report, rule), Vec::<String>::new(), "{rule}");
    }
    assert_eq!(report.services["b"].amplification, 1.0);
    let finding = only(&report, "non-idempotent-retry");
    assert_eq!(
        finding.edits,
        [
            crate::report::Edit::set("a", "b", 0, "max_attempts", "1"),
            crate::report::Edit::remove("a", "b", 0, "hedge")
        ]
    );
}

#[test]
fn single_instance_retry_fires_on_retries_to_one_instance() {
    let report = one_call(|_| {});
    assert!(report.findings.is_empty());
    let single = Builder::new("a").call("a", "b", retrying(100)).check();
    let finding = only(&single, "single-instance-retry");
    assert_eq!(
        finding.fix,
        "max_attempts = 1, or instances = 2 or more on b"
    );
    assert_eq!(
        finding.edits,
        [crate::report::Edit::set("a", "b", 0, "max_attempts", "1")]
    );
}

#[test]
fn hedge_without_budget_fires_from_half_the_requests() {
    let hedge = |max_extra| {
        one_call(move |c| {
            c.hedge = Some(HedgeSpec {
                delay: HedgeDelay::Quantile(0.95),
                max_extra,
            })
        })
    };
    let report = hedge(1.0);
    assert_eq!(
        only(&report, "hedge-without-budget").fix,
        "hedge = { delay = \"p95\", max_extra = 0.05 }"
    );
    assert!(hedge(0.5)
        .findings
        .iter()
        .any(|f| f.rule == "hedge-without-budget"));
    // The default (a hedge without max_extra) and anything below half are budgets.
    assert!(hedge(0.05).findings.is_empty());
    assert!(hedge(0.49).findings.is_empty());
}

#[test]
fn attempts_cannot_fit_fires_when_an_attempt_would_start_after_the_request_timeout() {
    // Istio's shape: 4 attempts of 4 s under a 10 s route timeout. The third starts at 8 s, the
    // fourth would at 12 s.
    let report = one_call(|c| {
        c.timeout = Some(ms(4000));
        c.request_timeout = Some(ms(10_000));
        c.max_attempts = 4;
        c.backoff = Backoff::default();
    });
    let finding = only(&report, "attempts-cannot-fit");
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(
        finding.message,
        "a -> b allows 4 attempts of 4s = 16s within a request_timeout of 10s: when attempts \
         time out, attempt 4 would start at 12s, after the request has ended, so attempts after \
         the 3rd never run (only 3 attempts can start)"
    );
    // 10 s less the backoff's longest waits (25, 50 and 100 ms), over 4 (2456 ms), would be
    // the other way out; but the 3 attempts that fit are more than `too-many-attempts` leaves,
    // so the fix says its 2 (the fixes agree), which makes 4 attempts moot.
    assert_eq!(
        finding.fix,
        "max_attempts = 2, as too-many-attempts asks (which does for this rule too)"
    );
    assert_eq!(
        (finding.value, finding.limit),
        (Some(16_000.0), Some(10_000.0))
    );
    assert_eq!(
        finding.edits,
        // The rule's own value, for `--fix` (which writes the 2 `too-many-attempts` asks first).
        [crate::report::Edit::set("a", "b", 0, "max_attempts", "3")]
    );
}

#[test]
fn attempts_cannot_fit_counts_the_backoffs_smallest_waits() {
    // 3 x 1 s fit in 2.5 s only if no wait: a constant 300 ms wait pushes the third to 2.6 s.
    let with = |backoff: &str| {
        one_call(|c| {
            c.timeout = Some(ms(1000));
            c.request_timeout = Some(ms(2500));
            c.max_attempts = 3;
            c.backoff = backoff.parse().unwrap();
        })
    };
    let report = with("constant(300ms)");
    let finding = only(&report, "attempts-cannot-fit");
    assert!(
        finding
            .message
            .contains("3 attempts of 1s + at least 600ms of backoff = 3600ms"),
        "{}",
        finding.message
    );
    assert!(finding.message.contains("attempt 3 would start at 2600ms"));
    assert!(finding
        .fix
        .starts_with("max_attempts = 2, or timeout = \"633ms\""));
    // Full jitter may wait nothing: the third attempt can start at 2 s.
    assert!(fired(
        &with("full-jitter(base=300ms, cap=1s)"),
        "attempts-cannot-fit"
    )
    .is_empty());
}

#[test]
fn attempts_cannot_fit_is_silent_without_retries_or_a_request_timeout_or_room_to_spare() {
    let quiet = [
        one_call(|c| {
            c.timeout = Some(ms(4000));
            c.request_timeout = Some(ms(10_000));
            c.max_attempts = 1;
        }),
        one_call(|c| {
            c.timeout = Some(ms(4000));
            c.max_attempts = 4;
        }),
        // The third attempt starts at 8 s, within 10 s: cut short, but it runs.
        one_call(|c| {
            c.timeout = Some(ms(4000));
            c.request_timeout = Some(ms(10_000));
            c.max_attempts = 3;
        }),
    ];
    for report in quiet {
        assert!(fired(&report, "attempts-cannot-fit").is_empty());
    }
    // A per-attempt timeout as long as the call, or longer: each attempt takes what is left
    // (Envoy without per_try_timeout, gRPC), which promises no retry after a timeout; its
    // retries follow fast failures, which fit.
    for request in [15_000, 150] {
        let report = one_call(|c| {
            c.timeout = Some(ms(15_000));
            c.request_timeout = Some(ms(request));
            c.max_attempts = 2;
        });
        assert!(
            fired(&report, "attempts-cannot-fit").is_empty(),
            "{request}"
        );
    }
}
