//! The files a graph was imported from, named in its header comment.

use std::path::PathBuf;

/// Reads the inputs an imported graph's header names: the words of its leading comment line
/// `# Imported by \`stormguard import\` from A, B` that are existing paths (relative to the
/// current directory or to the graph's own directory). Only that line: the header's other
/// lines name the base graph (`--base`), which is not a manifest. A graph without such a
/// header gives none.
///
/// ```
/// let text = "# Imported by `stormguard import` from examples/mesh/istio\n\
///             # Calls: the calls of the base graph examples/mesh/istio/calls.toml\n[entry]\n";
/// let paths = stormguard_mesh::export::inputs_from_header(text, std::path::Path::new("g.toml"));
/// assert!(paths.iter().all(|p| p.exists()));
/// assert!(paths.iter().all(|p| p.extension().is_none_or(|e| e != "toml")));
/// ```
pub fn inputs_from_header(text: &str, graph_file: &std::path::Path) -> Vec<PathBuf> {
    let base = graph_file.parent().unwrap_or(std::path::Path::new(""));
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let Some(inputs) = comment
            .trim()
            .strip_prefix("Imported by `stormguard import` from ")
        else {
            continue;
        };
        for word in inputs.split(", ") {
            let word = word.trim();
            if word.is_empty() || word.ends_with(".toml") {
                continue;
            }
            for candidate in [PathBuf::from(word), base.join(word)] {
                if candidate.exists() && !out.contains(&candidate) {
                    out.push(candidate);
                    break;
                }
            }
        }
        break;
    }
    out
}
