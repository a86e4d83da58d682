//! The example graphs under `examples/graphs/`, parsed from their files and checked: the exact
//! findings each one is there to show.

use stormguard_graph::{check::check, parse, Finding, Report, Severity};

fn source(name: &str) -> String {
    let path = format!(
        "{}/../../examples/graphs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap()
}

fn run(name: &str) -> Report {
    let graph = parse(name, &source(name)).unwrap_or_else(|e| panic!("{e}"));
    check(&graph)
}

/// A finding as `rule place`, where place is `from->to` or the service.
fn place(f: &Finding) -> String {
    match (&f.from, &f.to, &f.service) {
        (Some(from), Some(to), _) => format!("{} {from}->{to}", f.rule),
        (_, _, Some(service)) => format!("{} {service}", f.rule),
        _ => f.rule.to_string(),
    }
}

fn places(report: &Report) -> Vec<String> {
    report.findings.iter().map(place).collect()
}

#[test]
fn healthy_has_no_findings() {
    let report = run("healthy.toml");
    assert_eq!(places(&report), Vec::<String>::new());
    assert_eq!(report.services["db"].amplification, 2.0);
    // A tenth of web's 200 requests a second retried, and the budget's reserve of 10 a second.
    assert!((report.services["db"].sustained_amplification - 1.15).abs() < 1e-9);
    assert!(report.services["web"].worst_case_ms < 2000.0);
}

#[test]
fn brooker_five_layers_gives_243_at_the_bottom() {
    let report = run("brooker-five-layers.toml");
    assert_eq!(
        places(&report),
        [
            "retries-over-capacity db",
            "retry-amplification db",
            "timeout-inversion gateway->orders",
            "layered-retries gateway->orders",
            "retry-without-budget gateway->orders",
            "too-many-attempts gateway->orders",
            "retry-amplification inventory",
            "timeout-inversion inventory->storage",
            "layered-retries inventory->storage",
            "retry-without-budget inventory->storage",
            "too-many-attempts inventory->storage",
            "timeout-inversion orders->inventory",
            "layered-retries orders->inventory",
            "retry-without-budget orders->inventory",
            "too-many-attempts orders->inventory",
            "retries-over-capacity storage",
            "retry-amplification storage",
            "layered-retries storage->db",
            "retry-without-budget storage->db",
            "too-many-attempts storage->db",
            "timeout-inversion web->gateway",
            "retry-without-budget web->gateway",
            "too-many-attempts web->gateway",
        ]
    );
    let db = report
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification" && f.service.as_deref() == Some("db"))
        .unwrap();
    assert_eq!(db.value, Some(243.0));
    assert_eq!(db.limit, Some(10.0));
    assert_eq!(report.services["db"].amplification, 243.0);
    assert_eq!((report.summary.errors, report.summary.warnings), (9, 14));
}

#[test]
fn cockcroft_edge_gives_up_first() {
    let report = run("cockcroft-edge.toml");
    assert_eq!(
        places(&report),
        [
            "timeout-inversion edge->api",
            "timeout-inversion edge->search"
        ]
    );
    assert_eq!(report.findings[0].severity, Severity::Error);
    // The edge propagates its deadline to search: search can stop when the edge gives up.
    assert_eq!(report.findings[1].severity, Severity::Info);
    assert_eq!(report.findings[0].limit, Some(1000.0));
}

#[test]
fn mux_misses_its_budget_by_its_own_work() {
    let report = run("mux-expediting.toml");
    assert_eq!(places(&report), ["entry-budget mux"]);
    let finding = &report.findings[0];
    assert_eq!(finding.limit, Some(2000.0));
    assert!(
        (finding.value.unwrap() - 2106.5).abs() < 1.0,
        "{:?}",
        finding.value
    );
}

#[test]
fn findings_point_at_their_line_in_the_file() {
    let report = run("brooker-five-layers.toml");
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/graphs/brooker-five-layers.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for finding in &report.findings {
        let span = finding.span.expect("every finding has a place in the file");
        let line = lines[span.line - 1];
        if let Some(from) = &finding.from {
            assert_eq!(
                line.trim(),
                format!("[[services.{from}.calls]]"),
                "{finding:?}"
            );
        }
    }
}

/// The findings of `file` with their severities, as `rule place severity`.
fn graded(file: &str) -> Vec<String> {
    run(file)
        .findings
        .iter()
        .map(|f| format!("{} {:?}", place(f), f.severity))
        .collect()
}

#[test]
fn retry_storm_lacks_the_budget_its_fixed_twin_has() {
    assert_eq!(
        graded("retry-storm.toml"),
        [
            "retry-without-budget api->db Warning",
            "too-many-attempts api->db Warning",
            // The retries that keep db down in sim after the fault ends: an error, so that
            // `check` exits non-zero on the graph `sim` shows never recovering.
            "retries-over-capacity db Error",
        ]
    );
    // The budget leaves the worst case alone and bounds what is sustained.
    let fixed = run("retry-storm-budget.toml");
    // Only the burst before the budget drains is over db's capacity: a warning.
    assert_eq!(
        graded("retry-storm-budget.toml"),
        [
            "too-many-attempts api->db Warning",
            "retries-over-capacity db Warning"
        ]
    );
    assert_eq!(fixed.services["db"].amplification, 4.0);
    // A tenth of api's 300 requests a second retried, and the reserve of 10 a second.
    assert!((fixed.services["db"].sustained_amplification - (1.1 + 10.0 / 300.0)).abs() < 1e-8);
    assert_eq!(
        run("retry-storm.toml").services["db"].sustained_amplification,
        4.0
    );
}

#[test]
fn deep_slowdown_inverts_timeouts_that_deadlines_make_harmless() {
    assert_eq!(
        graded("deep-slowdown.toml"),
        [
            "timeout-inversion api->svc Error",
            "timeout-inversion web->api Error"
        ]
    );
    assert_eq!(
        graded("deep-slowdown-deadlines.toml"),
        [
            "timeout-inversion api->svc Info",
            "timeout-inversion web->api Info"
        ]
    );
}

#[test]
fn tail_latency_is_clean_with_its_hedge_and_without() {
    // A tail is no misconfiguration; a hedge with max_extra is the fix check would accept.
    assert_eq!(places(&run("tail-latency.toml")), Vec::<String>::new());
    assert_eq!(
        places(&run("tail-latency-hedged.toml")),
        Vec::<String>::new()
    );
}

#[test]
fn scenario_examples_name_the_scenario_their_header_runs() {
    for (file, scenario) in [
        ("retry-storm.toml", "db-hiccup"),
        ("retry-storm-budget.toml", "db-hiccup"),
        ("deep-slowdown.toml", "db-slow"),
        ("deep-slowdown-deadlines.toml", "db-slow"),
        ("tail-latency.toml", "steady"),
        ("tail-latency-hedged.toml", "steady"),
        ("queue-overload.toml", "sustained-overload"),
        ("queue-overload-codel.toml", "sustained-overload"),
    ] {
        let text = source(file);
        let graph = parse(file, &text).unwrap();
        assert!(graph.scenarios.contains_key(scenario), "{file}");
        assert!(text.contains(&format!("--scenario {scenario}")), "{file}");
    }
}

#[test]
fn storefront_with_stormguard_is_what_fix_makes_of_it_as_found() {
    let as_found = source("storefront-as-found.toml");
    let fixed = stormguard_graph::fix("storefront-as-found.toml", &as_found).unwrap();
    assert_eq!(fixed.text, source("storefront-with-stormguard.toml"));
    let report = run("storefront-with-stormguard.toml");
    assert_eq!(report.summary.errors, 0, "{:#?}", report.findings);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    // One retrying layer, on top: db gets at most 2 attempts per path, 4 in all.
    assert_eq!(report.services["db"].amplification, 4.0);
    let before = run("storefront-as-found.toml");
    assert_eq!(before.services["db"].amplification, 54.0);
    assert_eq!((before.summary.errors, before.summary.warnings), (5, 26));
    assert!(before
        .findings
        .iter()
        .any(|f| f.rule == "retry-amplification" && f.severity == Severity::Error));
}

#[test]
fn gateway_endpoints_charges_each_request_its_own_endpoint() {
    let report = run("gateway-endpoints.toml");
    assert_eq!(places(&report), ["entry-budget gateway/checkout"]);
    let (browse, checkout) = (
        report.endpoints["gateway/browse"],
        report.endpoints["gateway/checkout"],
    );
    assert!(browse.worst_case_ms < 700.0, "{browse:?}");
    assert_eq!(
        report.services["gateway"].worst_case_ms,
        checkout.worst_case_ms
    );
    assert!(checkout.worst_case_ms < browse.worst_case_ms + checkout.worst_case_ms - 600.0);
    assert_eq!(report.services["catalog"].amplification, 1.8);
    assert_eq!(report.services["orders"].amplification, 0.1);
    assert!(!report.services.contains_key("db"), "status is not called");
}

#[test]
fn queue_overload_warns_of_the_fifo_queue_its_scenario_collapses() {
    // search's full queue: 200 x 22.4 ms (the mean of its 20 ms p50, 60 ms p99) / 4 workers.
    assert_eq!(
        graded("queue-overload.toml"),
        ["queue-outlives-caller search Warning"]
    );
    let report = run("queue-overload.toml");
    let finding = &report.findings[0];
    assert_eq!(finding.limit, Some(500.0));
    assert!((finding.value.unwrap() - 1118.0).abs() < 1.0, "{finding:?}");
    // Its twin is what `check --fix` makes of it, and clean.
    let fixed = stormguard_graph::fix("queue-overload.toml", &source("queue-overload.toml"));
    assert_eq!(fixed.unwrap().text, source("queue-overload-codel.toml"));
    assert!(run("queue-overload-codel.toml").findings.is_empty());
    // Each cure the header names silences it.
    let text = source("queue-overload.toml");
    for cure in [
        "queue_discipline = \"lifo\"",
        "queue_discipline = \"codel\"",
        "queue_timeout = \"250ms\"",
    ] {
        let cured = text.replace("queue = 200\n", &format!("queue = 200\n{cure}\n"));
        let graph = parse("queue-overload.toml", &cured).unwrap_or_else(|e| panic!("{e}"));
        assert!(check(&graph).findings.is_empty(), "{cure}");
    }
}

/// Issue 14, item 8: fixes must agree. Brooker's five layers once said `max_attempts = 2` on a
/// call (`too-many-attempts`) beside `max_attempts = 1` on the same call (`layered-retries`,
/// `retry-amplification`): every finding that sets a call's attempts now says the least value
/// any of them asks (which satisfies each), in every example.
#[test]
fn findings_on_one_calls_attempts_agree_on_one_value() {
    let dir = format!("{}/../../examples/graphs", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut told = 0;
    for file in &files {
        let report = run(file);
        let mut least = std::collections::BTreeMap::new();
        for edit in report.findings.iter().flat_map(|f| &f.edits) {
            if let (true, Some(value)) = (
                edit.key == "max_attempts",
                edit.value.as_deref().and_then(|v| v.parse::<u32>().ok()),
            ) {
                let setting = (edit.from.clone(), edit.endpoint.clone(), edit.index);
                let held = least.entry(setting).or_insert(value);
                *held = (*held).min(value);
            }
        }
        for finding in &report.findings {
            for edit in finding.edits.iter().filter(|e| e.key == "max_attempts") {
                let setting = (edit.from.clone(), edit.endpoint.clone(), edit.index);
                let least = least[&setting];
                if edit.value.as_deref() != Some(least.to_string().as_str()) {
                    told += 1;
                    assert!(
                        finding.fix.contains(&format!("max_attempts = {least}")),
                        "{file}: {}: {}",
                        finding.rule,
                        finding.fix
                    );
                }
            }
        }
    }
    assert!(told > 0);
    let report = run("brooker-five-layers.toml");
    let too_many = report
        .findings
        .iter()
        .find(|f| f.rule == "too-many-attempts" && f.from.as_deref() == Some("gateway"))
        .unwrap();
    assert_eq!(
        too_many.fix,
        "max_attempts = 1, as retry-amplification asks (which does for this rule too)"
    );
    // The topmost call keeps the one retry every rule leaves it.
    let top = report
        .findings
        .iter()
        .find(|f| f.rule == "too-many-attempts" && f.from.as_deref() == Some("web"))
        .unwrap();
    assert_eq!(top.fix, "max_attempts = 2");
}

/// A fix that says more than the one setting (`retry-amplification`'s names the calls and what
/// the service then receives) keeps its text and adds the value agreed; `--fix` still names,
/// for the value it writes, the rule that asked for it.
#[test]
fn a_fix_of_more_than_the_setting_adds_the_value_agreed() {
    let graph = parse(
        "amp.toml",
        "[entry]\nservice = \"a\"\ntimeout = \"2s\"\nrate = 10\n\
         [services.a]\ninstances = 2\n\
         [[services.a.calls]]\nto = \"b\"\ntimeout = \"300ms\"\nconnect_timeout = \"10ms\"\n\
         max_attempts = 5\ncount = 3\nbackoff = \"full-jitter(base=10ms, cap=100ms)\"\n\
         retry_budget = { ratio = 0.1, min_per_sec = 10 }\n\
         [services.b]\ninstances = 1\n",
    )
    .unwrap();
    let report = check(&graph);
    let fix = |rule: &str| {
        report
            .findings
            .iter()
            .find(|f| f.rule == rule)
            .map(|f| f.fix.clone())
            .unwrap()
    };
    assert_eq!(
        fix("retry-amplification"),
        "max_attempts = 2 on a -> b: retries at one layer, so b receives at most 6; \
         max_attempts = 1 on a -> b, as single-instance-retry asks (which does for this rule too)"
    );
    assert_eq!(
        fix("too-many-attempts"),
        "max_attempts = 1, as single-instance-retry asks (which does for this rule too)"
    );
    assert_eq!(
        fix("single-instance-retry"),
        "max_attempts = 1, or instances = 2 or more on b"
    );
    // The edits stay each rule's own, which is how `--fix` names the rule of each value it
    // writes.
    let asked = |rule: &str| {
        report
            .findings
            .iter()
            .find(|f| f.rule == rule)
            .and_then(|f| f.edits.iter().find(|e| e.key == "max_attempts"))
            .and_then(|e| e.value.clone())
            .unwrap()
    };
    assert_eq!(asked("retry-amplification"), "2");
    assert_eq!(asked("too-many-attempts"), "2");
    assert_eq!(asked("single-instance-retry"), "1");
}
