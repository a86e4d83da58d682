//! What `check` and `sim` read: a graph file, or a proxy settings file read as the graph of the
//! application beside the sidecar (`stormguard_proxy::config::to_graph`), so that the routes a
//! proxy will run are checked and simulated with the rules and the engine of any graph.

use stormguard_graph::Graph;
use stormguard_proxy::config;

use crate::InputError;

/// Which kind of file a graph was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A graph file (`[entry]`, `[services.NAME]`).
    Graph,
    /// A proxy settings file (`[upstreams.NAME]`, `[[routes]]`, no `[entry]`).
    ProxySettings,
}

/// The graph in `text` (the file `name`), whichever kind of file it is; an invalid file is an
/// input error at its `file:line:column`, in the words of its own parser.
pub(crate) fn parse(name: &str, text: &str) -> Result<(Graph, Kind), InputError> {
    if config::is_settings_file(text) {
        let settings = config::parse(name, text).map_err(|e| InputError(e.to_string()))?;
        return Ok((config::to_graph(&settings), Kind::ProxySettings));
    }
    let graph = stormguard_graph::parse(name, text).map_err(|e| InputError(e.to_string()))?;
    Ok((graph, Kind::Graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_is_read_as_the_graph_of_its_routes() {
        let text = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\
                    [[routes]]\nname = \"users\"\nupstream = \"api\"\ntimeout = \"2s\"\n";
        let (graph, kind) = parse("p.toml", text).unwrap();
        assert_eq!(kind, Kind::ProxySettings);
        assert_eq!(graph.services["app"].endpoints[0].name, "users");
    }

    #[test]
    fn each_kind_reports_its_errors_at_their_place() {
        let settings = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\
                        [[routes]]\nname = \"users\"\nupstream = \"api\"\n";
        let error = parse("p.toml", settings).unwrap_err();
        assert!(
            error
                .0
                .starts_with("p.toml:3:1: `routes[0].timeout`: missing"),
            "{error}"
        );
        let graph = "[entry]\nservice = \"web\"\n[services.web]\nrate = 1\n";
        let error = parse("g.toml", graph).unwrap_err();
        assert!(
            error.0.starts_with("g.toml:4:1: `services.web.rate`"),
            "{error}"
        );
    }
}
