//! The application's own calls in an imported graph: what `check --fix` changed in them, which
//! no mesh resource holds, so that `export` can say so instead of leaving them out unsaid.
//!
//! An import with `--base` keeps the application's client settings on its calls to its own
//! sidecar (`CALLER-sidecar`, see [`crate::assemble`]); `export` writes the sidecars' calls
//! (the mesh's resources) and nothing else. A fix to the application's call (its own retries
//! cut, a connect timeout added) must be made in the application's HTTP client: the list
//! below says which, read from the notes `check --fix` leaves in the graph it writes
//! (`max_attempts = 2  # was 3 (check --fix: retry-amplification)`).

use std::fmt;

use stormguard_graph::Graph;

use super::plan::sidecars;

/// One of the application's own calls that `check --fix` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationCall {
    /// The caller, with its endpoint when it has named ones (`frontend (browse)`).
    pub caller: String,
    /// Where the call goes through the sidecar (the destinations of the sidecar's endpoint).
    pub to: Vec<String>,
    /// The sidecar it goes through.
    pub sidecar: String,
    /// Each changed setting as the graph writes it, with what `check --fix` noted
    /// (`max_attempts = 2 (was 3; check --fix: retry-amplification)`).
    pub changes: Vec<String>,
}

impl fmt::Display for ApplicationCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = if self.to.is_empty() {
            self.sidecar.clone()
        } else {
            format!("{}, through {}", self.to.join(", "), self.sidecar)
        };
        write!(f, "{} -> {to}: {}", self.caller, self.changes.join(", "))
    }
}

/// The application's own calls in `graph` (its file's `text`) that `check --fix` changed, in
/// the graph's order. A graph without sidecars, or with no such notes, has none.
///
/// ```
/// let text = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
///             to = \"web-sidecar\"\nendpoint = \"api\"\ntimeout = \"1s\"\n\
///             max_attempts = 1  # was 3 (check --fix: retry-amplification)\n\
///             [services.web-sidecar.endpoints.api]\n[[services.web-sidecar.endpoints.api.calls]]\n\
///             to = \"api\"\ntimeout = \"500ms\"\n[services.api]\n";
/// let graph = stormguard_graph::parse("g.toml", text).unwrap();
/// let calls = stormguard_mesh::export::application_calls(&graph, text);
/// assert_eq!(
///     calls[0].to_string(),
///     "web -> api, through web-sidecar: max_attempts = 1 (was 3; check --fix: retry-amplification)"
/// );
/// ```
pub fn application_calls(graph: &Graph, text: &str) -> Vec<ApplicationCall> {
    let sidecars = sidecars(graph);
    if sidecars.is_empty() {
        return Vec::new();
    }
    // (caller, its endpoint, the call's index there, the call)
    let calls: Vec<_> = graph
        .each_call()
        .filter(|(name, _, _, call)| sidecars.get(call.to.as_str()) == Some(name))
        .collect();
    let places: Vec<stormguard_graph::fix::CallPlace<'_>> = calls
        .iter()
        .map(|&(name, endpoint, index, call)| (name, endpoint, index, call.to.as_str()))
        .collect();
    let noted = stormguard_graph::fix::noted_changes(text, &places);
    calls
        .into_iter()
        .zip(noted)
        .filter(|(_, changes)| !changes.is_empty())
        .map(|((name, endpoint, _, call), changes)| ApplicationCall {
            caller: match endpoint {
                Some(ep) => format!("{name} ({ep})"),
                None => name.to_string(),
            },
            to: through(graph, call),
            sidecar: call.to.clone(),
            changes,
        })
        .collect()
}

/// Where `call` (to a sidecar) goes on: the destinations of the sidecar's endpoint it names,
/// each once.
fn through(graph: &Graph, call: &stormguard_graph::model::Call) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let sidecar = graph.services.get(&call.to).into_iter();
    for endpoint in sidecar.flat_map(|s| s.each_endpoint()) {
        if call.endpoint.is_some() && endpoint.name != call.endpoint.as_deref() {
            continue;
        }
        for c in endpoint.calls {
            let to = match &c.endpoint {
                Some(ep) => format!("{} ({ep})", c.to),
                None => c.to.clone(),
            };
            if !all.contains(&to) {
                all.push(to);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = "[entry]\nservice = \"web\"\n\
        [services.web.endpoints.read]\n[[services.web.endpoints.read.calls]]\n\
        to = \"web-sidecar\"  # was \"api\": through its sidecar\nendpoint = \"api-get\"\n\
        timeout = \"1s\"\n\
        backoff = \"full-jitter(base=10ms, cap=100ms)\"  # was \"full-jitter(base=25ms, cap=250ms)\" (check --fix: backoff-cap); the client's own\n\
        connect_timeout = \"3ms\"  # added by check --fix (missing-connect-timeout)\n\
        [services.web.endpoints.write]\n[[services.web.endpoints.write.calls]]\n\
        to = \"web-sidecar\"\nendpoint = \"api-post\"\ntimeout = \"1s\"\n\
        [services.web-sidecar.endpoints.api-get]\n[[services.web-sidecar.endpoints.api-get.calls]]\n\
        to = \"api\"\ntimeout = \"500ms\"\nmax_attempts = 1  # was 3 (check --fix: layered-retries)\n\
        [services.web-sidecar.endpoints.api-post]\n[[services.web-sidecar.endpoints.api-post.calls]]\n\
        to = \"api\"\ntimeout = \"500ms\"\n[services.api]\n";

    /// Only the application's calls are listed (the sidecar's own fix goes into the mesh's
    /// resources), only those `check --fix` changed, each setting with its note, a value with
    /// parentheses of its own and a user's comment after the note included.
    #[test]
    fn the_application_s_fixed_calls_are_listed_with_what_changed() {
        let graph = stormguard_graph::parse("g.toml", GRAPH).unwrap();
        let calls = application_calls(&graph, GRAPH);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].caller, "web (read)");
        assert_eq!(calls[0].to, ["api"]);
        assert_eq!(
            calls[0].changes,
            [
                "backoff = \"full-jitter(base=10ms, cap=100ms)\" (was \
                 \"full-jitter(base=25ms, cap=250ms)\"; check --fix: backoff-cap)",
                "connect_timeout = \"3ms\" (added by check --fix: missing-connect-timeout)",
            ]
        );
    }

    #[test]
    fn a_graph_without_sidecars_or_without_notes_lists_none() {
        let plain = GRAPH.replace("check --fix", "checked");
        let graph = stormguard_graph::parse("g.toml", &plain).unwrap();
        assert!(application_calls(&graph, &plain).is_empty());
        let text = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
                    to = \"api\"\ntimeout = \"1s\"\nmax_attempts = 1  # was 3 (check --fix: x)\n\
                    [services.api]\n";
        let graph = stormguard_graph::parse("g.toml", text).unwrap();
        assert!(application_calls(&graph, text).is_empty());
    }
}
