//! The JSON form: the TOML's structure with a `source` per imported value.

use super::*;
use crate::inventory::Inventory;

#[test]
fn the_json_is_the_graph_with_a_source_per_imported_value() {
    let inv = Inventory {
        routes: vec![route(System::Istio, "reviews", "prod", "vs.yaml", 10)
            .set("timeout", "\"2s\"", 14)
            .default("max_attempts", "3", "Istio default")],
        workloads: vec![deployment("reviews", "prod", 4, "deploy.yaml", 9)],
        ..Inventory::default()
    };
    let imported = import(&inv);
    let json = &imported.json;
    assert_eq!(json["entry"]["service"], "mesh-callers");
    let call = &json["services"]["mesh-callers"]["endpoints"]["reviews"]["calls"][0];
    assert_eq!(call["to"], "reviews");
    assert_eq!(call["timeout"], "2s");
    assert_eq!(call["max_attempts"], 3);
    assert_eq!(call["source"]["timeout"], "vs.yaml:14 (timeout)");
    assert_eq!(call["source"]["max_attempts"], "Istio default");
    assert_eq!(call["source"]["policy"], "vs.yaml:10 (route to reviews)");
    let reviews = &json["services"]["reviews"];
    assert_eq!(reviews["instances"], 4);
    assert_eq!(
        reviews["source"]["instances"],
        "deploy.yaml:9 (spec.replicas)"
    );
}
