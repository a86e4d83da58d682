//! Reports for people and for tools, from one [`Report`](crate::Report).
//!
//! `check` computes once; who reads the result differs: a person at a terminal wants findings
//! by service and the figures behind them ([`text`]), scripts want a stable shape ([`json`]),
//! GitHub code scanning wants SARIF located at the TOML line ([`sarif`]), and a pull request or
//! README wants a picture of the graph with what is wrong in red ([`mermaid`]). Each renderer is a
//! pure function returning the whole document (ending in a newline), so the CLI only chooses one
//! and writes it, and tests compare strings.

mod json;
mod mermaid;
mod sarif;
mod text;

#[cfg(test)]
mod tests;

pub use json::{json, json_in};
pub use mermaid::mermaid;
pub use sarif::{sarif, sarif_located, ExtraRule, Location};
pub use text::{text, text_in, text_located};

/// Every rule id, for tests that must cover them all.
#[cfg(test)]
pub(crate) use sarif::rule_ids;

use crate::report::Finding;

/// The service a finding belongs to in a report grouped by service: a call's caller, or the
/// service itself. `None` for a finding on the graph as a whole.
fn place(finding: &Finding) -> Option<&str> {
    finding.from.as_deref().or(finding.service.as_deref())
}

/// A figure as people read it: at most two decimals, no trailing zeros, and a word instead of
/// `inf` or `NaN` (a cycle can make amplification unbounded).
fn figure(value: f64) -> String {
    rounded(value, 2)
}

/// `value` with at most `decimals` decimals and no trailing zeros.
fn rounded(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        return "unknown".to_string();
    }
    if value.is_infinite() {
        return "unbounded".to_string();
    }
    if value.abs() >= 1e9 {
        // Twenty layers of retries reach 1e20; all those digits would hide the magnitude.
        return format!("{value:.2e}");
    }
    let text = format!("{value:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A duration in milliseconds as people read it: `40ms`, `12.5ms`, `3.26s`.
fn millis(ms: f64) -> String {
    // Rounded up to a whole ms, as the findings' messages are, so a figure and a message about
    // it say the same number.
    let ms = ms.ceil();
    // Past a thousand years a figure says only that nothing bounds it, as the messages say.
    if !ms.is_finite() || ms >= 3.2e13 {
        return "unbounded".to_string();
    }
    if ms >= 1000.0 {
        // Milliseconds matter next to a one-second timeout: 2.098s, not 2.1s.
        format!("{}s", rounded(ms / 1000.0, 3))
    } else if ms.is_finite() {
        format!("{}ms", figure(ms))
    } else {
        figure(ms)
    }
}
