//! The demo's own pieces: its words about the graph and the scenario, and the figures it
//! reads from the timeline.

use super::*;

fn storefront() -> Graph {
    stormguard_graph::parse("as-found.toml", AS_FOUND).unwrap()
}

#[test]
fn the_intro_names_the_graph_s_shape() {
    let text = intro(&storefront(), "d/as-found.toml");
    assert!(
        text.starts_with(
            "stormguard demo: a storefront (web -> api, api -> catalog and cart, catalog -> db, \
             cart -> db)"
        ),
        "{text}"
    );
    assert!(
        text.contains("== 1. stormguard check d/as-found.toml: "),
        "{text}"
    );
}

#[test]
fn the_scenario_is_said_in_words() {
    let graph = storefront();
    assert_eq!(
        scenario_words(&graph, &graph.scenarios[SCENARIO]),
        "db slows down x10 from 15s to 30s, at 200 users a second"
    );
}

#[test]
fn the_next_steps_offer_live_only_when_it_did_not_run() {
    let dir = Path::new("d");
    let without = next_steps(dir, "d/a.toml", "d/b.toml", false);
    assert!(without.contains(" check d/a.toml\n"), "{without}");
    assert!(
        without.contains(" sim d/a.toml d/b.toml --scenario db-slow\n"),
        "{without}"
    );
    assert!(without.contains(" demo --live "), "{without}");
    assert!(!next_steps(dir, "d/a.toml", "d/b.toml", true).contains("--live"));
}

#[test]
fn the_load_during_the_fault_is_read_from_the_timeline() {
    let graph = storefront();
    let named = ("as-found.toml".to_string(), graph);
    let runs = sim_cmd::simulate(&named, None, Some(SCENARIO), 0, None).unwrap();
    let during = load_during_fault(&runs[0], "db").unwrap();
    let whole = runs[0].summary.services["db"].amplification.unwrap();
    // Retries multiply while db is slow, so the load in the fault is above the run's mean.
    assert!(during > whole && whole > 2.0, "{during} {whole}");
    let words = in_short(&runs, "db");
    assert!(
        words.starts_with("\nIn short: while db was slow (15s to 30s),\n"),
        "{words}"
    );
    assert!(
        words.contains(&format!(
            "  as found         {during:>6.2} attempts reached db"
        )),
        "{words}"
    );
}
