//! Tests of the fixer: edits applied as written, rounds until nothing is left, comments kept.

use super::*;
use crate::report::Severity;

fn example(name: &str) -> String {
    let path = format!(
        "{}/../../examples/graphs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixed(text: &str) -> Fixed {
    fix("g.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of `key` on call `index` of `from` in the fixed graph, as the model reads it.
fn call<'g>(fixed: &'g Fixed, from: &str, index: usize) -> &'g crate::model::Call {
    &fixed.graph.services[from].calls[index]
}

const ONE_CALL: &str = "\
# The caller.
[services.api]
instances = 2

[[services.api.calls]]
to = \"db\"
timeout = \"5s\"    # the sample code's
max_attempts = 3

[services.db]
instances = 2
";

#[test]
fn a_replaced_value_keeps_its_place_and_comment_and_a_new_key_goes_last() {
    let edits = [
        Edit::set("api", "db", 0, "timeout", "\"250ms\""),
        Edit::set(
            "api",
            "db",
            0,
            "retry_budget",
            "{ ratio = 0.1, min_per_sec = 10 }",
        ),
        Edit::remove("api", "db", 0, "max_attempts"),
    ];
    let text = apply("g.toml", ONE_CALL, &edits).unwrap();
    assert_eq!(
        text,
        ONE_CALL.replace("\"5s\"    #", "\"250ms\"    #").replace(
            "max_attempts = 3\n",
            "retry_budget = { ratio = 0.1, min_per_sec = 10 }\n"
        )
    );
}

#[test]
fn calls_written_as_inline_tables_are_edited_too() {
    let text = "[services.api]\ncalls = [{ to = \"db\", timeout = \"5s\" }, { to = \"db\" }]\n";
    let edited = apply(
        "g.toml",
        text,
        &[Edit::set("api", "db", 1, "max_attempts", "2")],
    )
    .unwrap();
    assert_eq!(
        edited,
        "[services.api]\ncalls = [{ to = \"db\", timeout = \"5s\" }, { to = \"db\" , max_attempts = 2 }]\n"
    );
    let graph = crate::parse(
        "g.toml",
        &format!("[entry]\nservice = \"api\"\n{edited}[services.db]\n"),
    )
    .unwrap();
    assert_eq!(graph.services["api"].calls[1].max_attempts, 2);
}

#[test]
fn an_edit_for_a_call_the_file_does_not_have_there_is_refused() {
    for (edit, reason) in [
        (
            Edit::set("api", "cache", 0, "timeout", "\"1s\""),
            "call 0 of \"api\" calls \"db\", not \"cache\"",
        ),
        (
            Edit::set("api", "db", 1, "timeout", "\"1s\""),
            "service \"api\" has no call 1",
        ),
        (
            Edit::set("web", "api", 0, "timeout", "\"1s\""),
            "the file has no calls of service \"web\"",
        ),
    ] {
        let error = apply("g.toml", ONE_CALL, &[edit]).unwrap_err();
        assert!(
            matches!(&error, FixError::NoCall { reason: r, .. } if r == reason),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("g.toml: cannot apply services."),
            "{error}"
        );
    }
    let error = apply(
        "g.toml",
        ONE_CALL,
        &[Edit::set("api", "db", 0, "timeout", "5 s")],
    )
    .unwrap_err();
    assert!(matches!(error, FixError::Toml { .. }), "{error}");
}

#[test]
fn brooker_five_layers_keeps_one_retrying_layer_and_every_comment() {
    let text = example("brooker-five-layers.toml");
    let fixed = fixed(&text);
    assert_eq!(fixed.stop, Stop::Done);
    assert_eq!(
        fixed.report.summary.errors, 0,
        "{:#?}",
        fixed.report.findings
    );
    assert_eq!(fixed.report.services["db"].amplification, 2.0);
    assert_eq!(call(&fixed, "web", 0).max_attempts, 2);
    for service in ["gateway", "orders", "inventory", "storage"] {
        assert_eq!(call(&fixed, service, 0).max_attempts, 1, "{service}");
        // A call that no longer retries gets no budget or backoff it would never use.
        assert_eq!(call(&fixed, service, 0).limiter, None, "{service}");
    }
    for comment in text.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(fixed.text.contains(comment), "lost {comment:?}");
    }
    assert!(
        fixed
            .text
            .contains("max_attempts = 2  # was 3 (check --fix: retry-amplification)"),
        "{}",
        fixed.text
    );
    assert!(
        fixed.text.contains(
            "retry_budget = { ratio = 0.1, min_per_sec = 10 }  # was \"none\" (check --fix: \
             retry-without-budget)"
        ),
        "{}",
        fixed.text
    );
    // Only the lines the fix changed differ: five attempts replaced, one budget added.
    let lines = |t: &str| {
        t.lines()
            .map(str::to_string)
            .collect::<std::collections::HashSet<_>>()
    };
    let (before, after) = (lines(&text), lines(&fixed.text));
    assert_eq!(before.difference(&after).count(), 1, "{}", fixed.text);
    assert_eq!(after.difference(&before).count(), 3, "{}", fixed.text);
}

#[test]
fn layered_attempts_take_the_safer_value_of_two_rules() {
    // 3 x 3 attempts is 9 at c, under the limit of 10, so only layered-retries (1) and
    // too-many-attempts (2) speak about b -> c: the first in the stage wins.
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"1s\"
connect_timeout = \"3ms\"
max_attempts = 3
backoff = \"full-jitter(base=25ms, cap=250ms)\"
retry_budget = { ratio = 0.1, min_per_sec = 10 }
[services.b]
instances = 2
[[services.b.calls]]
to = \"c\"
timeout = \"100ms\"
connect_timeout = \"3ms\"
max_attempts = 3
backoff = \"full-jitter(base=25ms, cap=250ms)\"
retry_budget = { ratio = 0.1, min_per_sec = 10 }
[services.c]
instances = 2
";
    let fixed = fixed(text);
    assert_eq!(call(&fixed, "a", 0).max_attempts, 2);
    assert_eq!(call(&fixed, "b", 0).max_attempts, 1);
    let rules: Vec<_> = fixed
        .changes
        .iter()
        .map(|c| (c.from.as_str(), c.rules.clone()))
        .collect();
    assert_eq!(
        rules,
        [
            ("a", vec!["too-many-attempts"]),
            ("b", vec!["layered-retries"])
        ]
    );
    assert!(
        fixed.report.findings.is_empty(),
        "{:#?}",
        fixed.report.findings
    );
}

/// Four layers with 5 s everywhere and users who wait 5 s, as sample code has them.
const FIVE_SECONDS: &str = "\
[entry]
service = \"web\"
timeout = \"5s\"

[services.web]
instances = 2
[[services.web.calls]]
to = \"api\"
timeout = \"5s\"
connect_timeout = \"3ms\"
propagate_deadline = false

[services.api]
instances = 2
[[services.api.calls]]
to = \"catalog\"
timeout = \"5s\"
connect_timeout = \"3ms\"
propagate_deadline = false
[[services.api.calls]]
to = \"cart\"
timeout = \"5s\"
connect_timeout = \"3ms\"
propagate_deadline = false

[services.catalog]
instances = 2
[[services.catalog.calls]]
to = \"db\"
timeout = \"5s\"
connect_timeout = \"3ms\"
propagate_deadline = false

[services.cart]
instances = 2
[[services.cart.calls]]
to = \"db\"
timeout = \"5s\"
connect_timeout = \"3ms\"
propagate_deadline = false

[services.db]
instances = 2
";

#[test]
fn timeouts_telescope_from_what_the_user_waits_down_over_several_rounds() {
    let fixed = fixed(FIVE_SECONDS);
    assert_eq!(fixed.stop, Stop::Done);
    assert!(
        fixed.report.findings.is_empty(),
        "{:#?}",
        fixed.report.findings
    );
    // Halved by depth, then api cut to fit under web, then catalog and cart under api: one
    // layer further down per round.
    assert!(fixed.rounds >= 3, "{}", fixed.rounds);
    let timeout = |from: &str, i: usize| call(&fixed, from, i).timeout.unwrap();
    let api = timeout("web", 0);
    assert!(api <= std::time::Duration::from_secs(5));
    for (i, below) in [(0, "catalog"), (1, "cart")] {
        assert!(timeout("api", i) < api, "api -> {below}");
        assert!(timeout(below, 0) < timeout("api", i), "{below} -> db");
    }
    let figures = &fixed.report.services;
    assert!(figures["web"].worst_case_ms <= 5000.0);
    assert!(figures["api"].worst_case_ms <= api.as_secs_f64() * 1000.0);
}

/// A callee whose p99.9 is past an hour once got a fix of `timeout = "4520115ms"`, a file its
/// own parser refused (check --fix exited 3): a fix writes at most the longest timeout a file
/// may hold.
#[test]
fn a_fix_never_writes_a_value_out_of_its_range() {
    let slow = "[entry]\nservice = \"a\"\ntimeout = \"1h\"\n[services.a]\n[[services.a.calls]]\n\
                to = \"b\"\n[services.b]\nlatency = { p50 = \"30m\", p99 = \"1h\" }\n";
    let fixed = fixed(slow);
    // The longest a file may hold, then cut a little to fit within the user's hour.
    let timeout = call(&fixed, "a", 0).timeout.unwrap();
    assert!(
        (std::time::Duration::from_secs(3599)..=std::time::Duration::from_secs(3600))
            .contains(&timeout),
        "{timeout:?}"
    );
}

/// A call whose timeout is under three round trips once got a connect timeout of three round
/// trips, above its timeout, which the parser refuses (`check --fix` exited 3 on a third of
/// random graphs): every fix of every such call reads back, and its connect timeout is within
/// the attempt's.
#[test]
fn a_connect_timeout_fix_stays_within_the_attempt_s_timeout() {
    for timeout in ["2ms", "5ms", "50ms", "200ms"] {
        for rtt in ["1ms", "2ms", "30ms", "100ms"] {
            for attempts in [1, 2, 3] {
                let text = format!(
                    "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
                     to = \"db\"\ntimeout = \"{timeout}\"\nrtt = \"{rtt}\"\n\
                     max_attempts = {attempts}\n[services.db]\ninstances = 2\n"
                );
                if crate::parse("g.toml", &text).is_err() {
                    continue;
                }
                let fixed = fix("g.toml", &text)
                    .unwrap_or_else(|e| panic!("timeout {timeout}, rtt {rtt}: {e}"));
                let call = call(&fixed, "web", 0);
                let connect = call.connect_timeout.expect("the fix sets one");
                assert!(
                    connect <= call.timeout.unwrap(),
                    "timeout {timeout}, rtt {rtt}, {attempts} attempts: {connect:?}"
                );
            }
        }
    }
}

/// A timeout cut below a call's fixed hedge delay once made a file the parser refuses (the copy
/// would never be sent, `check --fix` exited 3): the delay follows the cut, halved from the new
/// timeout, its `max_extra` kept.
#[test]
fn a_timeout_cut_below_the_hedge_delay_takes_the_delay_down_with_it() {
    let text = "[entry]\nservice = \"web\"\ntimeout = \"50ms\"\n[services.web]\n\
                [[services.web.calls]]\nto = \"db\"\ntimeout = \"1s\"\nconnect_timeout = \"5ms\"\n\
                hedge = { delay = \"100ms\", max_extra = 0.05 }\n[services.db]\ninstances = 2\n\
                latency = { p50 = \"1ms\", p99 = \"5ms\" }\n";
    let fixed = fixed(text);
    let call = call(&fixed, "web", 0);
    let timeout = call.timeout.unwrap();
    assert!(
        timeout < std::time::Duration::from_millis(50),
        "{timeout:?}"
    );
    let hedge = call.hedge.expect("the hedge is kept");
    assert_eq!(
        hedge.delay,
        stormguard::hedge::HedgeDelay::Fixed(timeout / 2),
        "{}",
        fixed.text
    );
    assert_eq!(hedge.max_extra, 0.05);
}

/// A connect timeout sized to ride out a lost SYN (added by one round, or set by the user)
/// does not stop a later round from cutting the attempt's timeout below it: the connect timeout
/// follows the cut. It made `entry-budget` say that no value fixed a one-call graph (a review's
/// find).
#[test]
fn a_connect_timeout_does_not_stop_a_timeout_cut_below_it() {
    let text = "[entry]\nservice = \"web\"\ntimeout = \"1s\"\n[services.web]\ninstances = 2\n\
                [[services.web.calls]]\nto = \"api\"\ntimeout = \"2s\"\n[services.api]\n\
                instances = 2\n";
    let fixed = fixed(text);
    let call = call(&fixed, "web", 0);
    let timeout = call.timeout.unwrap();
    assert!(
        timeout < std::time::Duration::from_secs(1),
        "{}",
        fixed.text
    );
    assert_eq!(call.connect_timeout, Some(timeout), "{}", fixed.text);
    let report = crate::check::check(&crate::parse("f.toml", &fixed.text).unwrap());
    assert_eq!(report.summary.errors, 0, "{:#?}", report.findings);
    // Set by the user, the same.
    let user = text.replace(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\nconnect_timeout = \"1500ms\"\n",
    );
    let fixed = self::fixed(&user);
    let call = self::call(&fixed, "web", 0);
    assert!(
        call.timeout.unwrap() < std::time::Duration::from_secs(1),
        "{}",
        fixed.text
    );
    assert_eq!(call.connect_timeout, call.timeout, "{}", fixed.text);
}

/// A file with `\r\n` line ends keeps them: only the changed lines differ, where every line
/// lost its `\r`.
#[test]
fn crlf_line_ends_are_kept() {
    let lf = example("retry-storm.toml");
    let crlf = lf.replace('\n', "\r\n");
    let from_lf = fixed(&lf);
    let from_crlf = fixed(&crlf);
    assert_eq!(from_crlf.text, from_lf.text.replace('\n', "\r\n"));
    assert!(!from_crlf.text.replace("\r\n", "").contains('\n'));
}

#[test]
fn a_fixed_file_is_its_own_fix() {
    for name in [
        "brooker-five-layers.toml",
        "cockcroft-edge.toml",
        "retry-storm.toml",
    ] {
        let once = fixed(&example(name));
        let twice = fixed(&once.text);
        assert_eq!(twice.text, once.text, "{name}");
        assert_eq!((twice.rounds, twice.changes.len()), (0, 0), "{name}");
    }
}

#[test]
fn a_cycle_is_left_for_its_owner_and_said() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"100ms\"
connect_timeout = \"3ms\"
[services.b]
instances = 2
[[services.b.calls]]
to = \"a\"
timeout = \"100ms\"
connect_timeout = \"3ms\"
";
    let fixed = fixed(text);
    assert_eq!((fixed.stop, fixed.rounds), (Stop::Done, 0));
    assert_eq!(fixed.text, text);
    let cycle = &fixed.report.findings[0];
    assert_eq!((cycle.rule, cycle.edits.len()), ("call-cycle", 0));
}

#[test]
fn fixes_that_undo_each_other_stop_at_the_best_state_seen() {
    // deep-slowdown with 5 x 16 sequential queries under a 1 s timeout: they cannot all fit
    // above db's latency, so fitting api under web and covering svc under api take turns.
    let text = example("deep-slowdown.toml").replace("count = 8", "count = 16");
    let original = fixed(&text);
    assert_eq!(original.stop, Stop::Cycle);
    let before = check(&parse("g.toml", &text).unwrap());
    assert!(original.report.summary.errors < before.summary.errors);
    let left = &original.report.findings[0];
    assert_eq!(
        (left.rule, left.severity),
        ("timeout-inversion", Severity::Error)
    );
}

#[test]
fn a_hedge_on_a_call_that_must_not_be_repeated_is_removed_and_noted() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"100ms\"
connect_timeout = \"3ms\"
idempotent = false
hedge = { delay = \"10ms\", max_extra = 0.05 }
[services.b]
instances = 2
";
    let fixed = fixed(text);
    assert_eq!(call(&fixed, "a", 0).hedge, None);
    assert!(
        fixed.report.findings.is_empty(),
        "{:#?}",
        fixed.report.findings
    );
    assert!(
        fixed.text.contains(
            "to = \"b\"  # hedge = { delay = \"10ms\", max_extra = 0.05 } removed (check --fix: \
             non-idempotent-retry)"
        ),
        "{}",
        fixed.text
    );
}

/// Issue 14, item 8: `retry-amplification` proposed `max_attempts = 2` on the topmost call
/// while `non-idempotent-retry` asked for 1 on the same call. A call that is not idempotent is
/// retried only where its request never reached the callee, which is as safe at the top as on
/// any call, so both now leave it two attempts; and where its `retry_on` lists only what such
/// a call is never retried on, it makes one attempt, which every figure counts, so no fix asks
/// for two.
#[test]
fn fixes_agree_on_a_call_that_must_not_be_repeated() {
    let graph = |retry_on: &str| {
        format!(
            "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"1s\"
max_attempts = 4
idempotent = false
{retry_on}
[services.b]
instances = 2
[[services.b.calls]]
to = \"c\"
timeout = \"100ms\"
max_attempts = 4
[services.c]
instances = 2
"
        )
    };
    let on_a = |report: &crate::report::Report| {
        report
            .findings
            .iter()
            .flat_map(|f| &f.edits)
            .filter(|e| e.from == "a" && e.key == "max_attempts")
            .map(|e| e.value.clone())
            .collect::<Vec<_>>()
    };
    let safe = graph("");
    let report = check(&parse("g.toml", &safe).unwrap());
    assert!(!report
        .findings
        .iter()
        .any(|f| f.rule == "non-idempotent-retry"));
    assert!(
        on_a(&report).iter().all(|v| v.as_deref() == Some("2")),
        "{:#?}",
        report.findings
    );
    assert_eq!(call(&fixed(&safe), "a", 0).max_attempts, 2);
    let inert = graph("retry_on = [\"timeout\"]");
    let report = check(&parse("g.toml", &inert).unwrap());
    assert_eq!(
        on_a(&report),
        [Some("1".to_string())],
        "{:#?}",
        report.findings
    );
    assert_eq!(call(&fixed(&inert), "a", 0).max_attempts, 1);
}

/// Issue 14, item 8: `--fix` wrote a 3ms connect timeout on calls it cut to one attempt, where
/// one lost SYN (resent after 1s) fails the request; and a connect timeout sized for that must
/// follow a timeout the fixer cuts below it, or the file no longer parses.
#[test]
fn a_call_of_one_attempt_gets_a_connect_timeout_that_survives_a_lost_syn() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"5s\"
[[services.a.calls]]
to = \"c\"
[services.b]
instances = 2
latency = { p50 = \"2ms\", p99 = \"8ms\" }
[services.c]
instances = 2
latency = { p50 = \"2ms\", p99 = \"8ms\" }
";
    let fixed = fixed(text);
    let connect = |i| call(&fixed, "a", i).connect_timeout.unwrap();
    assert_eq!(connect(0), std::time::Duration::from_millis(1100));
    let timeout = call(&fixed, "a", 1).timeout.unwrap();
    assert!(
        timeout < std::time::Duration::from_millis(1100),
        "{timeout:?}"
    );
    assert_eq!(connect(1), timeout, "capped by the timeout the fixer wrote");
    assert_eq!(fixed.stop, Stop::Done);
}

#[test]
fn every_example_fixes_to_a_file_that_parses_with_no_more_errors_than_before() {
    let dir = format!("{}/../../examples/graphs", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let before = check(&parse(&name, &text).unwrap()).summary;
        let fixed = fix(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        parse(&name, &fixed.text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(fixed.report.summary.errors <= before.errors, "{name}");
        // What is left either has no edit, or the fixer says why it stopped.
        if fixed.stop == Stop::Done {
            assert!(
                fixed.report.findings.iter().all(|f| f.edits.is_empty()),
                "{name}: {:#?}",
                fixed.report.findings
            );
        }
    }
}

#[test]
fn every_rule_with_edits_has_a_stage() {
    let staged: Vec<&str> = stages::STAGES
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    let mut all: Vec<&str> = staged.clone();
    // The one rule whose fix is always a change of structure, and the two whose fix is the
    // deployment's (instances, concurrency) or the calls' that other rules already write.
    all.extend(["call-cycle", "over-capacity", "retries-over-capacity"]);
    all.sort_unstable();
    let mut known = crate::render::rule_ids();
    known.sort_unstable();
    assert_eq!(all, known);
    let mut unique = staged.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), staged.len());
}

#[test]
fn an_endpoints_call_is_fixed_in_its_endpoints_table() {
    let text = example("gateway-endpoints.toml");
    let fixed = fixed(&text);
    assert_eq!(fixed.report.summary.errors, 0, "{:#?}", fixed.report);
    assert_eq!(fixed.changes.len(), 1, "{:#?}", fixed.changes);
    let change = &fixed.changes[0];
    assert_eq!(
        (
            change.from.as_str(),
            change.endpoint.as_deref(),
            change.to.as_str(),
            change.index,
            change.key
        ),
        ("gateway", Some("checkout"), "orders", Some(0), "timeout")
    );
    assert_eq!(change.rules, ["entry-budget"]);
    let checkout = &fixed.graph.services["gateway"].endpoints[1];
    assert_eq!(checkout.name, "checkout");
    assert_eq!(
        checkout.calls[0].timeout,
        Some(std::time::Duration::from_millis(1983))
    );
    // Browse's call, and the text around the edit, are as they were.
    assert_eq!(
        fixed.graph.services["gateway"].endpoints[0].calls[0].timeout,
        Some(std::time::Duration::from_millis(300))
    );
    assert!(fixed
        .text
        .contains("[[services.gateway.endpoints.checkout.calls]]\nto = \"orders\"\nendpoint = \"place\"\ntimeout = \"1983ms\"  # was \"2s\" (check --fix: entry-budget)\n"));
}

#[test]
fn queue_outlives_caller_is_fixed_with_codel_on_the_services_own_table() {
    let text = "[entry]\nservice = \"web\"\n\n[[services.web.calls]]\nto = \"search\"\n\
                timeout = \"500ms\"\nconnect_timeout = \"10ms\"\n\n[services.search]\n\
                concurrency = 4\nqueue = 200 # a deep queue\nlatency = { p50 = \"20ms\", p99 = \"60ms\" }\n";
    let before = check(&parse("g.toml", text).unwrap());
    assert!(before
        .findings
        .iter()
        .any(|f| f.rule == "queue-outlives-caller"));
    let fixed = fix("g.toml", text).unwrap();
    assert!(
        fixed.text.contains(
            "latency = { p50 = \"20ms\", p99 = \"60ms\" }\nqueue_discipline = \"codel\"  # added \
             by check --fix (queue-outlives-caller)\n"
        ),
        "{}",
        fixed.text
    );
    assert!(
        fixed.report.findings.is_empty(),
        "{:#?}",
        fixed.report.findings
    );
    assert_eq!(fixed.stop, Stop::Done);
    let change = &fixed.changes[0];
    assert_eq!(
        (change.from.as_str(), change.index, change.key),
        ("search", None, "queue_discipline")
    );
    // A service the file names only in a call's header gets a table of its own for it.
    let implicit =
        "[entry]\nservice = \"search\"\ntimeout = \"10ms\"\n\n[[services.search.calls]]\n\
                    to = \"db\"\ntimeout = \"20ms\"\nconnect_timeout = \"5ms\"\n\n[services.db]\n";
    let fixed = fix("g.toml", implicit).unwrap();
    let graph = parse("g.toml", &fixed.text).unwrap_or_else(|e| panic!("{e}\n{}", fixed.text));
    assert_eq!(
        graph.services["search"].queue_discipline.name(),
        "codel",
        "{}",
        fixed.text
    );
}

/// A stage whose edits are all written already must not stop the fixer while a later stage has
/// work. Here the connect timeout can be no longer than the attempt's timeout, which is under
/// the round trip: `connect-timeout-below-rtt` proposes the value the file has (the timeout's),
/// and the fixer stopped with "their edits change nothing" before `timeout-below-latency`
/// raised the timeout, which frees the connect timeout to go above the round trip. Found by
/// fixing random graphs and checking the result.
#[test]
fn edits_already_written_do_not_stop_a_later_stage() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"5ms\"
rtt = \"20ms\"
connect_timeout = \"5ms\"
max_attempts = 2
[services.b]
instances = 2
latency = { p50 = \"10ms\", p99 = \"50ms\" }
";
    let fixed = crate::fix::fix("g.toml", text).unwrap();
    assert_eq!(
        fixed.report.summary.errors, 0,
        "{:#?}",
        fixed.report.findings
    );
    let call = &fixed.graph.services["a"].calls[0];
    assert!(call.timeout.unwrap() > call.rtt, "{}", fixed.text);
    assert!(call.connect_timeout.unwrap() > call.rtt, "{}", fixed.text);
}

/// A call that is not idempotent, with attempts to spare, an empty `retry_on` and a hedge (the
/// file takes an empty list only beside a hedge): the hedge is never sent, and removing it alone
/// made a file the parser refuses (`check --fix` exited 2). Both go: one attempt, no hedge.
#[test]
fn a_hedge_removed_from_a_call_that_retries_nothing_takes_its_spare_attempts_too() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
method = \"POST\"
timeout = \"300ms\"
connect_timeout = \"3ms\"
max_attempts = 2
retry_on = []
hedge = { delay = \"50ms\", max_extra = 0.05 }
[services.b]
instances = 2
";
    let fixed = crate::fix::fix("g.toml", text).unwrap();
    let call = &fixed.graph.services["a"].calls[0];
    assert_eq!(call.max_attempts, 1, "{}", fixed.text);
    assert!(call.hedge.is_none(), "{}", fixed.text);
    assert_eq!(
        fixed.report.summary.errors, 0,
        "{:#?}",
        fixed.report.findings
    );
}

/// A timeout cut below a fixed hedge delay takes the delay to half of it, but never below the
/// shortest delay a file takes: a timeout cut to 1ms once wrote a 500us delay, a file the
/// parser refuses (`check --fix` exited 3); with no room for a copy, the hedge goes. Found by
/// the property test of `parse::tests_fix`.
#[test]
fn a_hedge_delay_that_follows_a_cut_timeout_stays_within_its_range() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"1s\"
hedge = { delay = \"800ms\", max_extra = 0.05 }
[services.b]
instances = 2
";
    let graph = parse("g.toml", text).unwrap();
    let hedge_for = |timeout: &str| {
        let edit = crate::report::Edit::set("a", "b", 0, "timeout", timeout);
        super::stages::with_connect_caps(&graph, vec![(&edit, "entry-budget")])
            .into_iter()
            .find(|(e, _)| e.key == "hedge")
            .map(|(e, _)| e.value)
    };
    assert_eq!(
        hedge_for("\"3ms\""),
        Some(Some("{ delay = \"1500us\", max_extra = 0.05 }".to_string()))
    );
    assert_eq!(
        hedge_for("\"1500us\""),
        Some(Some("{ delay = \"1ms\", max_extra = 0.05 }".to_string()))
    );
    assert_eq!(hedge_for("\"1ms\""), Some(None));
    assert_eq!(hedge_for("\"900ms\""), None);
}

/// A `request_timeout` below the callee's latency fails every attempt however long `timeout`
/// is: `timeout-below-latency` judges the shorter of the two (it was a warning that judged the
/// 2s timeout, and `--fix` raised nothing), and raises it.
#[test]
fn a_request_timeout_below_the_latency_is_judged_and_raised() {
    let text = "\
[entry]
service = \"a\"
[services.a]
instances = 2
[[services.a.calls]]
to = \"b\"
timeout = \"2s\"
request_timeout = \"5ms\"
connect_timeout = \"3ms\"
[services.b]
instances = 2
latency = { p50 = \"100ms\", p99 = \"300ms\" }
";
    let report = check(&parse("g.toml", text).unwrap());
    let finding = report
        .findings
        .iter()
        .find(|f| f.rule == "timeout-below-latency")
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert_eq!(finding.severity, crate::report::Severity::Error);
    assert!(
        finding.message.contains("a -> b request_timeout 5ms"),
        "{}",
        finding.message
    );
    assert_eq!(finding.edits[0].key, "request_timeout");
    let fixed = fixed(text);
    let call = call(&fixed, "a", 0);
    assert!(
        call.request_timeout.unwrap() > std::time::Duration::from_millis(300),
        "{}",
        fixed.text
    );
    assert!(!fixed
        .report
        .findings
        .iter()
        .any(|f| f.rule == "timeout-below-latency"));
}
