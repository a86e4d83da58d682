//! What the readers' tests share: loading a file of `tests/data`, finding the line of a text in
//! it, finding a route, a destination, a value and its origin in what was read, and checking
//! that a policy is one the graph parser accepts.

use crate::doc::parse_documents;
use crate::error::ImportError;
use crate::inventory::{DestinationPolicy, Inventory, Policy, Route, Unread};
use crate::source::Origin;

/// The path of `tests/data/<name>`.
pub(crate) fn data_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The text of `tests/data/<name>`.
pub(crate) fn data(name: &str) -> String {
    std::fs::read_to_string(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The inventory of `text`, read as file `file`.
pub(crate) fn inventory_of(file: &str, text: &str) -> Result<Inventory, ImportError> {
    crate::inventory(&parse_documents(file, text)?)
}

/// `tests/data/<name>`'s text and its inventory (panicking on a read error).
pub(crate) fn load(name: &str) -> (String, Inventory) {
    let text = data(name);
    let inv = inventory_of(name, &text).unwrap_or_else(|e| panic!("{e}"));
    (text, inv)
}

/// The route to `host` named `name`, panicking with every route when there is none.
pub(crate) fn route<'a>(inv: &'a Inventory, host: &str, name: Option<&str>) -> &'a Route {
    inv.routes
        .iter()
        .find(|r| r.host.name == host && r.name.as_deref() == name)
        .unwrap_or_else(|| panic!("no route {host} {name:?} in {:#?}", inv.routes))
}

/// The destination policy of `host`.
pub(crate) fn destination<'a>(inv: &'a Inventory, host: &str) -> &'a DestinationPolicy {
    inv.destinations
        .iter()
        .find(|d| d.host.name == host)
        .unwrap_or_else(|| panic!("no destination {host}"))
}

/// The TOML text of `key` in `policy`, panicking with the policy when it is not set.
pub(crate) fn value<'a>(policy: &'a Policy, key: &str) -> &'a str {
    &policy
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {policy:#?}"))
        .value
}

/// The value of `key` in `route`'s policy and the line it came from (0 for a default).
pub(crate) fn setting(route: &Route, key: &str) -> (String, u32) {
    let s = route
        .policy
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {route:#?}"));
    let line = s.origin.file_line().map_or(0, |(_, l, _)| l);
    (s.value.clone(), line)
}

/// Where `key`'s value in `policy` comes from.
pub(crate) fn origin<'a>(policy: &'a Policy, key: &str) -> &'a Origin {
    &policy.get(key).unwrap().origin
}

/// The unread notes about `what`.
pub(crate) fn unread_about<'a>(inv: &'a Inventory, what: &str) -> Vec<&'a Unread> {
    inv.unread.iter().filter(|u| u.what == what).collect()
}

/// The 1-based line of the first occurrence of `needle` in `text`, panicking when absent, so
/// that an origin's line is asserted without counting lines by hand.
pub(crate) fn line_of(text: &str, needle: &str) -> u32 {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the file"));
    text[..at].matches('\n').count() as u32 + 1
}

/// The line of `origin` (panics for a default).
pub(crate) fn line(origin: &crate::source::Origin) -> u32 {
    origin
        .file_line()
        .unwrap_or_else(|| panic!("{origin} is not a file origin"))
        .1
}

/// Parses a graph whose one call carries `policy` (plus the `extra` lines whose key it does not
/// set), so that every value a reader writes is one the graph accepts.
pub(crate) fn assert_graph_accepts(policy: &Policy, extra: &str) {
    let mut call = String::new();
    for setting in &policy.settings {
        call.push_str(&format!("{} = {}\n", setting.key, setting.value));
    }
    for line in extra.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        if policy.get(key).is_none() {
            call.push_str(line);
            call.push('\n');
        }
    }
    let text = format!(
        "[entry]\nservice = \"caller\"\ntimeout = \"1h\"\nrate = 1\n\n[services.caller]\nlatency = \
         {{ p50 = \"1ms\", p99 = \"2ms\" }}\n\n[[services.caller.calls]]\nto = \"callee\"\n{call}\n\
         [services.callee]\nlatency = {{ p50 = \"1ms\", p99 = \"2ms\" }}\n"
    );
    if let Err(e) = stormguard_graph::parse::parse("imported.toml", &text) {
        panic!("{e}\n{text}");
    }
}
