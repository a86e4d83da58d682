use super::*;
use crate::render::{text, text_in, text_located, Location};

#[test]
fn three_services_read_as_documented() {
    let expected = r#"web (entry)
  error[timeout-inversion] web -> api: api may keep working 1.61s on one request, but web waits 1s per attempt: web gives up while api still retries.
    fix: timeout = "1.7s" on web -> api, or propagate_deadline = true

api
  warning[too-many-attempts] api -> db: 3 attempts on api -> db: a failing db gets three times the load.
    fix: max_attempts = 2
  warning[retry-without-backoff] api -> db: api retries db at once: a struggling db gets the retries while it is down.
    fix: backoff = "full-jitter(base=25ms, cap=250ms)"

db
  error[retry-amplification] db: db receives up to 6 attempts per user request when calls below web fail (limit 5).
    fix: max_attempts = 1 on api -> db, so only web -> api retries

service      depth  worst case  amplification  sustained
web (entry)      0      2.099s             x1         x1
api              1       1.61s             x2       x1.1
db               2        32ms             x6       x3.3

2 errors, 2 warnings, 0 infos
"#;
    assert_eq!(
        text(&three_services(), &three_services_report(), false),
        expected
    );
}

#[test]
fn colour_only_when_asked() {
    let graph = three_services();
    let mut report = three_services_report();
    report.findings.push(finding(
        "timeout-inversion",
        Severity::Info,
        Place::Call("api", "db", 16),
    ));
    report.summary = summary_of(&report.findings);
    let plain = text(&graph, &report, false);
    assert!(!plain.contains('\x1b'), "{plain}");
    let coloured = text(&graph, &report, true);
    assert!(
        coloured.contains("\x1b[31merror[timeout-inversion]\x1b[0m web -> api"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[33mwarning[too-many-attempts]\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured
            .contains("\x1b[2minfo[timeout-inversion] api -> db: timeout-inversion fired.\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[2mfix: fix timeout-inversion\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[31m2 errors\x1b[0m, \x1b[33m2 warnings\x1b[0m, 1 info\n"),
        "{coloured}"
    );
    // Stripping the codes gives the plain text back: colour adds nothing else.
    let stripped = ["\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[1m", "\x1b[0m"]
        .iter()
        .fold(coloured, |text, code| text.replace(code, ""));
    assert_eq!(stripped, plain);
}

#[test]
fn findings_group_under_their_service_in_first_seen_order_and_graph_findings_last() {
    let graph = three_services();
    let findings = vec![
        finding("same-timeout-everywhere", Severity::Warning, Place::Graph),
        finding(
            "missing-timeout",
            Severity::Error,
            Place::Call("api", "db", 16),
        ),
        finding(
            "retry-amplification",
            Severity::Error,
            Place::Service("db", None),
        ),
        finding(
            "single-instance-retry",
            Severity::Warning,
            Place::Call("api", "db", 16),
        ),
        finding("entry-budget", Severity::Error, Place::Service("web", None)),
    ];
    let report = Report {
        summary: summary_of(&findings),
        findings,
        services: BTreeMap::new(),
        endpoints: BTreeMap::new(),
    };
    let out = text(&graph, &report, false);
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("    ")).collect();
    assert_eq!(
        lines[..10],
        [
            "api",
            "  error[missing-timeout] api -> db: missing-timeout fired.",
            "  warning[single-instance-retry] api -> db: single-instance-retry fired.",
            "",
            "db",
            "  error[retry-amplification] db: retry-amplification fired.",
            "",
            "web (entry)",
            "  error[entry-budget] web: entry-budget fired.",
            "",
        ]
    );
    assert_eq!(lines[10], "the graph");
    assert_eq!(
        lines[11],
        "  warning[same-timeout-everywhere]: same-timeout-everywhere fired."
    );
    assert!(out.ends_with("3 errors, 2 warnings, 0 infos\n"), "{out}");
}

#[test]
fn the_table_goes_by_depth_and_names_services_not_reached() {
    let mut graph = three_services();
    graph
        .services
        .insert("cache".to_string(), service("cache", vec![], 30));
    let mut report = three_services_report();
    // Two services at one depth go by name; an unbounded figure is said in words.
    report.services.insert(
        "aaa".to_string(),
        ServiceFigures {
            worst_case_ms: f64::INFINITY,
            amplification: 2.5e20,
            sustained_amplification: 1.0,
            depth: 1,
        },
    );
    let out = text(&graph, &report, false);
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("service"))
        .take(5)
        .collect();
    assert_eq!(
        table,
        [
            "service      depth  worst case  amplification  sustained",
            "web (entry)      0      2.099s             x1         x1",
            "aaa              1   unbounded       x2.50e20         x1",
            "api              1       1.61s             x2       x1.1",
            "db               2        32ms             x6       x3.3",
        ]
    );
    assert!(
        out.contains("\nnot reached from the entry: cache\n"),
        "{out}"
    );
}

#[test]
fn no_findings_says_so() {
    let report = Report::default();
    let out = text(&three_services(), &report, true);
    assert!(out.starts_with("no findings\n"), "{out}");
    assert!(out.ends_with("\n0 errors, 0 warnings, 0 infos\n"), "{out}");
    assert!(
        out.contains("not reached from the entry: api, db, web"),
        "{out}"
    );
}

/// A graph read from a file: each finding with a place says where, under its message, and
/// one on the graph as a whole (no place) says nothing; without a file, nothing changes.
#[test]
fn a_graph_from_a_file_says_where_each_finding_is() {
    let graph = three_services();
    let mut report = three_services_report();
    report
        .findings
        .push(finding("unreachable-service", Severity::Info, Place::Graph));
    report.summary = summary_of(&report.findings);
    let out = text_in(&graph, &report, "graphs/shop.toml", false);
    assert!(
        out.contains("still retries.\n    --> graphs/shop.toml:8:1\n    fix: timeout = \"1.7s\""),
        "{out}"
    );
    assert!(
        out.contains("(limit 5).\n    --> graphs/shop.toml:20:1\n    fix: max_attempts = 1"),
        "{out}"
    );
    assert!(
        out.contains("  info[unreachable-service]: unreachable-service fired.\n    fix: "),
        "{out}"
    );
    assert_eq!(out.matches("-->").count(), 4, "{out}");
    let coloured = text_in(&graph, &report, "graphs/shop.toml", true);
    assert!(
        coloured.contains("retries.\n    --> graphs/shop.toml:8:1\n"),
        "{coloured}"
    );
    let without = text(&graph, &report, false);
    assert!(!without.contains("-->"), "{without}");
    assert_eq!(
        out.lines()
            .filter(|l| !l.contains("-->"))
            .collect::<Vec<_>>(),
        without.lines().collect::<Vec<_>>(),
        "the file adds its lines and changes no other"
    );
}

/// Findings placed one by one (an imported graph's, each in its manifest): a place where one is
/// given, none where none is, whatever order the report groups them in.
#[test]
fn each_finding_at_its_own_location() {
    let graph = three_services();
    let report = three_services_report();
    let mut locations: Vec<Option<Location>> = vec![None; report.findings.len()];
    let db = report
        .findings
        .iter()
        .position(|f| f.rule == "retry-amplification")
        .unwrap();
    locations[db] = Some(Location {
        file: "k8s/db.yaml".to_string(),
        line: 7,
        column: 3,
    });
    let out = text_located(&graph, &report, &locations, false);
    assert!(
        out.contains("(limit 5).\n    --> k8s/db.yaml:7:3\n    fix: max_attempts = 1"),
        "{out}"
    );
    assert_eq!(out.matches("-->").count(), 1, "{out}");
}
