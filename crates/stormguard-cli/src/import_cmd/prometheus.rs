//! `--prometheus`: the calls, rates and latencies of a mesh's request metrics as the base graph
//! of an import. A placeholder so that the CLI builds; the mesh-prom branch replaces this file.

use std::time::Duration;

/// The base graph (its name and TOML text) of the calls Prometheus's Istio or Linkerd metrics
/// show over `window`.
///
/// # Errors
/// Always, until the reader lands.
pub(crate) fn base(url: &str, window: Duration) -> anyhow::Result<(String, String)> {
    let _ = window;
    anyhow::bail!("--prometheus {url}: not built yet")
}
