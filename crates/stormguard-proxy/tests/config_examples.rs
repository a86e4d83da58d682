//! The example settings file shipped in `examples/proxy/` loads, and says what its comments
//! say: a file users copy must never be the one that fails.

use std::path::Path;
use std::time::Duration;

use stormguard_proxy::config;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy/stormguard.toml")
}

#[test]
fn the_example_file_loads() {
    let config = config::load(&example()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.name, "api");
    assert_eq!(route.call.timeout, Some(Duration::from_secs(2)));
    assert_eq!(config.upstreams["api"].instances.len(), 3);
    assert!(!config.faults.enabled);
    // Its policy is one the core accepts.
    let policy = config::route_policy(route).unwrap();
    assert_eq!(policy.max_attempts, 2);
    assert!(config::hedge_policy(route).unwrap().is_some());
}

#[test]
fn the_example_file_states_the_defaults_it_shows() {
    // Every listen value the example writes out is the default, as its comments say.
    let text = std::fs::read_to_string(example()).unwrap();
    let written = config::parse("example.toml", &text).unwrap();
    let minimal = config::parse(
        "minimal.toml",
        "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n\
         upstream = \"api\"\ntimeout = \"1s\"\n",
    )
    .unwrap();
    assert_eq!(written.listen, minimal.listen);
    assert_eq!(written.admin, minimal.admin);
    assert_eq!(written.faults, minimal.faults);
    assert_eq!(
        written.upstreams["api"].protocol,
        minimal.upstreams["api"].protocol
    );
    let json = config::to_json(&written);
    assert_eq!(json["routes"][0]["policy"]["worst_case_total"], "3s");
    assert_eq!(json["routes"][0]["fault"]["active"], false);
}
