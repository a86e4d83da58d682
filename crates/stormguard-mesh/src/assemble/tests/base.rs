//! A base graph's calls given their callees' policies, its text kept; the choice among several
//! routes.

use std::time::Duration;

use super::*;
use crate::inventory::Inventory;

const BASE: &str = r#"# Who calls whom, by hand.
[entry]
service = "web"

[services.web]
instances = 2

# The product page.
[[services.web.calls]]
to = "reviews"
rtt = "2ms" # same zone

[services.reviews]
latency = { p50 = "20ms", p99 = "80ms" }
"#;

fn reviews(line: u32) -> Route {
    route(System::Istio, "reviews", "prod", "vs.yaml", line)
}

#[test]
fn a_base_call_receives_its_callees_policy_and_the_base_keeps_its_text() {
    let inv = Inventory {
        routes: vec![reviews(10)
            .set("timeout", "\"2s\"", 14)
            .set("max_attempts", "3", 15)],
        workloads: vec![deployment("reviews", "prod", 4, "deploy.yaml", 9)],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, BASE);
    let toml = &imported.toml;
    for kept in [
        "# Who calls whom, by hand.",
        "# The product page.",
        "rtt = \"2ms\" # same zone",
    ] {
        assert!(toml.contains(kept), "{kept}:\n{toml}");
    }
    let graph = parsed(&imported);
    let call = &graph.services["web"].calls[0];
    assert_eq!(
        (call.timeout, call.max_attempts),
        (Some(Duration::from_secs(2)), 3)
    );
    assert_eq!(graph.services["reviews"].instances, 4);
    assert_eq!(
        graph.services["web"].instances, 2,
        "no workload: the base's"
    );
    assert!(
        toml.contains("max_attempts = 3 # vs.yaml:15 (max_attempts)\n"),
        "{toml}"
    );
    assert!(
        toml.contains("the calls of the base graph base.toml"),
        "{toml}"
    );
    let header = line_of(toml, "[[services.web.calls]]");
    assert_eq!(
        imported.sources.locate(header),
        Some(&at("vs.yaml", 10, "route to reviews"))
    );
    assert_eq!(
        imported.sources.locate(line_of(toml, "max_attempts = 3")),
        Some(&at("vs.yaml", 15, "max_attempts"))
    );
}

const TWO_CALLS: &str = r#"[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "reviews"
endpoint = "rate"
[[services.web.calls]]
to = "reviews"
[services.reviews.endpoints.rate]
[services.reviews.endpoints.read]
"#;

#[test]
fn of_several_named_routes_a_call_takes_the_one_its_endpoint_names_else_the_catch_all() {
    let inv = Inventory {
        routes: vec![
            reviews(10).named("rate").set("timeout", "\"300ms\"", 12),
            reviews(20).named("read").set("timeout", "\"1s\"", 22),
            reviews(30).set("timeout", "\"5s\"", 32),
        ],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, TWO_CALLS);
    let graph = parsed(&imported);
    let calls = &graph.services["web"].calls;
    assert_eq!(calls[0].timeout, Some(Duration::from_millis(300)));
    assert_eq!(
        calls[1].timeout,
        Some(Duration::from_secs(5)),
        "the catch-all"
    );
    let note = imported
        .unread
        .iter()
        .find(|u| u.what == "routes to reviews with different policies")
        .unwrap();
    assert_eq!(note.origin, at("vs.yaml", 30, "route to reviews"));
    assert!(
        note.why.contains("rate (vs.yaml:10), read (vs.yaml:20)"),
        "{}",
        note.why
    );
}

#[test]
fn of_several_routes_with_one_policy_a_call_takes_it_without_a_note() {
    let inv = Inventory {
        routes: vec![
            reviews(10).named("rate").set("timeout", "\"1s\"", 12),
            reviews(20).named("read").set("timeout", "\"1s\"", 22),
        ],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, TWO_CALLS);
    assert_eq!(
        parsed(&imported).services["web"].calls[1].timeout,
        Some(Duration::from_secs(1))
    );
    assert!(imported.unread.is_empty(), "{:?}", imported.unread);
}

#[test]
fn a_route_of_the_caller_wins_over_one_for_every_caller_and_unused_routes_are_listed() {
    let inv = Inventory {
        routes: vec![
            reviews(10).set("timeout", "\"1s\"", 12),
            reviews(20).caller("web").set("timeout", "\"250ms\"", 22),
            route(System::Istio, "ratings", "prod", "vs.yaml", 40).set("timeout", "\"1s\"", 41),
        ],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, BASE);
    assert_eq!(
        parsed(&imported).services["web"].calls[0].timeout,
        Some(Duration::from_millis(250))
    );
    let unused: Vec<&str> = imported.unread.iter().map(|u| u.what.as_str()).collect();
    assert_eq!(unused, ["route to ratings"]);
}

#[test]
fn a_callee_in_a_mesh_without_a_route_gets_the_meshs_defaults() {
    let inv = Inventory {
        workloads: vec![Workload {
            mesh: Some((System::Linkerd, at("deploy.yaml", 6, "linkerd.io/inject"))),
            ..deployment("reviews", "prod", 2, "deploy.yaml", 9)
        }],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, BASE);
    assert!(imported
        .toml
        .contains("# no route: the defaults of Linkerd's sidecars (mesh: deploy.yaml:6 (linkerd.io/inject))"),
        "{}", imported.toml);
    let header = line_of(&imported.toml, "[[services.web.calls]]");
    assert_eq!(
        imported.sources.locate(header),
        Some(&Origin::Default("Linkerd default"))
    );
}

#[test]
fn a_call_written_inline_gets_the_values_without_comments() {
    let base = "[entry]\nservice = \"web\"\n[services.web]\ncalls = [{ to = \"reviews\" }]\n[services.reviews]\n";
    let inv = Inventory {
        routes: vec![reviews(10).set("timeout", "\"2s\"", 14)],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, base);
    assert!(
        imported
            .toml
            .contains("calls = [{ to = \"reviews\", timeout = \"2s\" }]"),
        "{}",
        imported.toml
    );
    assert_eq!(
        parsed(&imported).services["web"].calls[0].timeout,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn a_value_the_base_had_is_replaced_and_said() {
    let base = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"reviews\"\nretry_on = [\"5xx\"] # ours\n[services.reviews]\n";
    let inv = Inventory {
        routes: vec![reviews(10).set("retry_on", "[\"connect-failure\"]", 13)],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, base);
    assert!(
        imported.toml.contains(
            "retry_on = [\"connect-failure\"] # vs.yaml:13 (retry_on); the base had [\"5xx\"]\n"
        ),
        "{}",
        imported.toml
    );
}

#[test]
fn a_table_the_base_had_is_said_on_one_line() {
    // A base's `retry_budget` written as its own table: "the base had" quotes it inline, as
    // `stormguard fix` does.
    let base = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"reviews\"\n[services.web.calls.retry_budget]\nratio = 0.2\nmin_per_sec = 10\n[services.reviews]\n";
    let inv = Inventory {
        routes: vec![reviews(10).set("retry_budget", "\"none\"", 13)],
        ..Inventory::default()
    };
    let imported = import_onto(&inv, base);
    assert!(
        imported.toml.contains(
            "retry_budget = \"none\" # vs.yaml:13 (retry_budget); the base had { ratio = 0.2, \
             min_per_sec = 10 }\n"
        ),
        "{}",
        imported.toml
    );
    assert_eq!(parsed(&imported).services["web"].calls[0].limiter, None);
}
