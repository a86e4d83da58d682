//! `import --prometheus URL [--window DUR]`: the base graph (who calls whom, how often, how fast)
//! from a Prometheus server that scrapes the mesh's proxies. What to ask and what the answers
//! mean is [`stormguard_mesh::traffic`]'s; this asks, with the bounded client `recommend
//! --prometheus` uses (30 s per request, 64 MiB per answer).

use std::time::Duration;

use anyhow::Context;
use stormguard_mesh::traffic;
use stormguard_recommend::prometheus_api;

use crate::recommend_cmd::fetch;
use crate::InputError;

/// The base graph from the Prometheus server at `url` over the last `window`: a name for it
/// (errors in it are reported under that name) and its TOML text.
///
/// # Errors
/// A URL that is not `http://` (exit 2); a server that does not answer, refuses a query or
/// counted no request between workloads in the window (exit 3).
pub(crate) fn base(url: &str, window: Duration) -> anyhow::Result<(String, String)> {
    if !url.starts_with("http://") {
        return Err(InputError(format!(
            "--prometheus {url}: give the server's http:// address, e.g. http://127.0.0.1:9090"
        ))
        .into());
    }
    let server = url.trim_end_matches('/');
    let answers = fetch::block_on(async {
        let client = fetch::client();
        let mut answers = Vec::new();
        for query in traffic::queries(window) {
            let query_url = format!("{server}{}", prometheus_api::query_path(&query.promql));
            let (_, body) = fetch::get(&client, &query_url, "application/json")
                .await
                .with_context(|| format!("asking {server} for {}", query.name))?;
            answers.push((query, body));
        }
        Ok(answers)
    })?;
    let toml = traffic::base_graph(server, window, &answers)?;
    Ok((format!("prometheus {server}"), toml))
}
