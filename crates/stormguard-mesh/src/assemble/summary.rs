//! The header comment of an imported graph (what was read, how the calls were made, how much was
//! not read) and its trailing list of everything not read and every finding of the import.

use super::calls::comment;
use super::Options;
use crate::inventory::{ImportFinding, Inventory, Unread};

/// The header: inputs, documents by kind, how the calls were made, counts.
pub(super) fn header(
    inv: &Inventory,
    options: &Options,
    how: &str,
    unread: usize,
    findings: usize,
) -> String {
    let mut out = String::new();
    out.push_str("# Imported by `stormguard import`");
    if !options.inputs.is_empty() {
        out.push_str(&format!(" from {}", comment(&options.inputs.join(", "))));
    }
    out.push('\n');
    let kinds: Vec<String> = inv
        .kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if kinds.is_empty() {
        out.push_str("# Documents read: none.\n");
    } else {
        out.push_str(&format!(
            "# Documents read: {}.\n",
            comment(&kinds.join(", "))
        ));
    }
    out.push_str(&wrapped(&format!("Calls: {}.", comment(how))));
    out.push_str(
        "# Every imported value is followed by its source: file:line (the field), or the \
         system's default.\n",
    );
    out.push_str(&format!(
        "# Not read: {unread} (listed at the end). Findings of the import: {findings}.\n\n"
    ));
    out
}

/// The width a header line is wrapped at.
const WIDTH: usize = 100;

/// `text` as comment lines of at most [`WIDTH`] columns (a longer word is left whole), the
/// lines after the first indented.
fn wrapped(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 4 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#  ");
        }
        line.push(' ');
        line.push_str(&comment(word));
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The trailing comments: every [`Unread`] and every [`ImportFinding`].
pub(super) fn trailer(unread: &[Unread], findings: &[ImportFinding]) -> String {
    let mut out = String::new();
    if !unread.is_empty() {
        out.push_str(&format!("\n# --- Not read ({}) ---\n", unread.len()));
        for item in unread {
            out.push_str(&format!(
                "# not read: {} {}: {}\n",
                comment(&item.origin.short()),
                comment(&item.what),
                comment(&item.why)
            ));
        }
    }
    if !findings.is_empty() {
        out.push_str(&format!(
            "\n# --- Findings of the import ({}) ---\n",
            findings.len()
        ));
        for finding in findings {
            out.push_str(&format!(
                "# {}[{}] {}: {} (fix: {})\n",
                severity(finding.severity),
                finding.rule,
                comment(&finding.origin.short()),
                comment(&finding.message),
                comment(&finding.fix)
            ));
        }
    }
    out
}

/// A severity as findings print it.
fn severity(severity: stormguard_graph::Severity) -> &'static str {
    match severity {
        stormguard_graph::Severity::Info => "info",
        stormguard_graph::Severity::Warning => "warning",
        stormguard_graph::Severity::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_header_line_is_wrapped_into_comment_lines() {
        let text = "word ".repeat(40);
        let out = super::wrapped(&text);
        assert!(
            out.lines()
                .all(|l| l.len() <= super::WIDTH && l.starts_with('#')),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3);
        assert!(out.lines().nth(1).unwrap().starts_with("#   word"));
    }
}
