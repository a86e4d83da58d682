//! `stormguard import`: a minimal stand-in, on the mesh-prom branch only, so that `--prometheus`
//! runs end to end before the command itself (the mesh-cli branch's `import_cmd/mod.rs`) is
//! merged; the merge keeps that one and its call of [`prometheus::base`].

mod prometheus;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::InputError;

/// Arguments of `stormguard import`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Manifests: files or directories, read recursively.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A Prometheus server scraping the mesh's proxies, e.g. http://127.0.0.1:9090: who calls
    /// whom, how often and how fast.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// How far back to look on the Prometheus server ("1h", "30m").
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    window: String,
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let window = crate::recommend_cmd::fetch::window(&args.window)?;
    let base = args
        .prometheus
        .as_deref()
        .map(|url| prometheus::base(url, window))
        .transpose()?;
    let documents =
        stormguard_mesh::read_paths(&args.paths).map_err(|e| InputError(e.to_string()))?;
    let inventory =
        stormguard_mesh::inventory(&documents).map_err(|e| InputError(e.to_string()))?;
    let options = stormguard_mesh::Options {
        base: base.clone(),
        inputs: args.paths.iter().map(|p| p.display().to_string()).collect(),
    };
    let imported =
        stormguard_mesh::assemble(&inventory, &options).map_err(|e| InputError(e.to_string()))?;
    // The skeleton's assembler writes nothing yet: the base graph stands for its output.
    let text = match (imported.toml.is_empty(), base) {
        (true, Some((_, base))) => base,
        _ => imported.toml,
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the graph")?;
    Ok(ExitCode::SUCCESS)
}
