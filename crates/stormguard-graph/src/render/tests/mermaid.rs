use super::*;
use crate::render::mermaid;

#[test]
fn three_services_draw_as_documented() {
    let expected = r#"flowchart LR
  web(["web"])
  api["api"]
  db["db"]
  web -->|"1s x2"| api
  api -->|"500ms x3"| db
  user((user)) -->|"10s"| web
  linkStyle 0 stroke:red,stroke-width:2px
  linkStyle 1 stroke:red,stroke-width:2px
  classDef bad fill:#fdd,stroke:#c00
  class db bad
"#;
    assert_eq!(
        mermaid(&three_services(), &three_services_report()),
        expected
    );
}

#[test]
fn a_clean_graph_has_no_red() {
    let out = mermaid(&three_services(), &Report::default());
    assert!(
        !out.contains("linkStyle") && !out.contains("classDef"),
        "{out}"
    );
}

#[test]
fn infos_are_not_red_and_red_edges_are_counted_in_file_order() {
    // Declared in the file as web, api, cache, db; api's second call is the offender.
    let mut api = service(
        "api",
        vec![call("cache", Some(Duration::from_millis(50)), 1, 15)],
        13,
    );
    api.calls
        .push(call("db", Some(Duration::from_millis(500)), 1, 18));
    let graph = graph_of(
        "web",
        vec![
            service(
                "web",
                vec![call("api", Some(Duration::from_secs(1)), 1, 8)],
                5,
            ),
            api,
            service("cache", vec![], 21),
            service("db", vec![], 25),
        ],
    );
    let findings = vec![
        finding(
            "timeout-inversion",
            Severity::Info,
            Place::Call("web", "api", 8),
        ),
        finding(
            "single-instance-retry",
            Severity::Warning,
            Place::Call("api", "db", 18),
        ),
        finding("entry-budget", Severity::Info, Place::Service("web", None)),
    ];
    let report = Report {
        summary: summary_of(&findings),
        findings,
        services: BTreeMap::new(),
        endpoints: BTreeMap::new(),
    };
    let out = mermaid(&graph, &report);
    let edges: Vec<&str> = out.lines().filter(|l| l.contains("-->")).collect();
    assert_eq!(
        edges,
        [
            "  web -->|\"1s x1\"| api",
            "  api -->|\"50ms x1\"| cache",
            "  api -->|\"500ms x1\"| db",
            "  user((user)) -->|\"10s\"| web",
        ]
    );
    let styles: Vec<&str> = out.lines().filter(|l| l.contains("linkStyle")).collect();
    assert_eq!(styles, ["  linkStyle 2 stroke:red,stroke-width:2px"]);
    assert!(!out.contains("classDef"), "{out}");
}

#[test]
fn labels_say_no_timeout_count_and_optional_calls() {
    let mut optional = call("b", None, 1, 3);
    optional.required = false;
    let mut looped = call("b", Some(Duration::from_millis(1500)), 2, 4);
    looped.count = 5;
    let graph = graph_of(
        "a",
        vec![
            service("a", vec![optional, looped], 1),
            service("b", vec![], 9),
        ],
    );
    let out = mermaid(&graph, &Report::default());
    assert!(out.contains("  a -.->|\"no timeout x1\"| b\n"), "{out}");
    assert!(out.contains("  a -->|\"1500ms x2, count 5\"| b\n"), "{out}");
}

#[test]
fn ids_are_safe_and_unique_while_labels_keep_the_names() {
    let graph = graph_of(
        "user",
        vec![
            service(
                "user",
                vec![call("a-b", Some(Duration::from_secs(1)), 1, 2)],
                1,
            ),
            service(
                "a-b",
                vec![call("a_b", Some(Duration::from_secs(1)), 1, 5)],
                4,
            ),
            service(
                "a_b",
                vec![call("end", Some(Duration::from_secs(1)), 1, 8)],
                7,
            ),
            service(
                "end",
                vec![call("9\"lives#", Some(Duration::from_secs(1)), 1, 11)],
                10,
            ),
            service("9\"lives#", vec![call("ghost", None, 1, 14)], 13),
        ],
    );
    let findings = vec![finding(
        "retry-amplification",
        Severity::Error,
        Place::Service("end", None),
    )];
    let report = Report {
        summary: summary_of(&findings),
        findings,
        services: BTreeMap::new(),
        endpoints: BTreeMap::new(),
    };
    let out = mermaid(&graph, &report);
    let nodes: Vec<&str> = out.lines().skip(1).take(6).collect();
    assert_eq!(
        nodes,
        [
            "  user([\"user\"])",
            "  a_b[\"a-b\"]",
            "  a_b_2[\"a_b\"]",
            "  s_end[\"end\"]",
            "  s_9_lives_[\"9#quot;lives#35;\"]",
            // A call to a service the file never declares still gets a node.
            "  ghost[\"ghost\"]",
        ]
    );
    assert!(
        out.contains("  s_9_lives_ -->|\"no timeout x1\"| ghost\n"),
        "{out}"
    );
    // The entry is called `user` too: the user node takes another id.
    assert!(
        out.contains("  user_2((user)) -->|\"10s\"| user\n"),
        "{out}"
    );
    assert!(out.contains("  class s_end bad\n"), "{out}");
    for line in out.lines().skip(1) {
        let id: String = line
            .trim_start()
            .chars()
            .take_while(|c| *c != ' ' && *c != '[' && *c != '(')
            .collect();
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
    }
}

#[test]
fn only_the_call_at_fault_is_red_when_a_service_calls_another_twice() {
    let graph = graph_of(
        "a",
        vec![
            service(
                "a",
                vec![
                    call("b", Some(ms(1000)), 1, 3),
                    call("b", Some(ms(100)), 3, 7),
                ],
                1,
            ),
            service("b", vec![], 10),
        ],
    );
    let findings = vec![finding(
        "too-many-attempts",
        Severity::Warning,
        Place::Call("a", "b", 7),
    )];
    let report = Report {
        summary: summary_of(&findings),
        findings,
        ..Report::default()
    };
    let chart = mermaid(&graph, &report);
    assert!(chart.contains("  linkStyle 1 stroke:red"), "{chart}");
    assert!(!chart.contains("  linkStyle 0 stroke:red"), "{chart}");
}
