//! The files a graph was imported from, named in its header comment.

use std::path::PathBuf;

/// Reads the inputs an imported graph's header names: its leading comment lines that mention
/// the import, each word that is an existing path (relative to the current directory or to the
/// graph's own directory). Lenient by design: a graph without such a header gives none.
///
/// ```
/// let text = "# stormguard import examples/mesh/istio\n# (2 VirtualServices)\n[entry]\n";
/// let paths = stormguard_mesh::export::inputs_from_header(text, std::path::Path::new("g.toml"));
/// assert!(paths.iter().all(|p| p.exists()));
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
        let lower = comment.to_ascii_lowercase();
        if !(lower.contains("import") || lower.contains("input") || lower.contains("from")) {
            continue;
        }
        for word in comment.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
            let word = word.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | ';' | ':'));
            if word.is_empty() || word.starts_with('-') {
                continue;
            }
            for candidate in [PathBuf::from(word), base.join(word)] {
                if candidate.exists() && !out.contains(&candidate) {
                    out.push(candidate);
                    break;
                }
            }
        }
    }
    out
}
