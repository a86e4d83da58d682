//! `stormguard explain [RULE]`: what a rule of `check` computes, with the `[check]` thresholds it
//! reads, why it matters and how to fix it; without RULE, every rule with its one-line summary
//! (which `check --rules` prints too).
//!
//! A finding says what is wrong with one call, in numbers; this says what the rule is, for the
//! reader who meets `error[timeout-inversion]` for the first time. The words are the check
//! crate's table ([`stormguard_graph::check::RULES`]), beside the rules and tested against them,
//! so an explanation cannot outlive or miss its rule.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use stormguard_graph::check::{rule_doc, RuleDoc, RULES};
use stormguard_graph::model::CheckConfig;
use stormguard_graph::Severity;

use crate::InputError;

/// The width explanations are wrapped to: a terminal's 100 columns, like `--help`'s text.
const WIDTH: usize = 100;

/// Arguments of `stormguard explain`; the default lists every rule (`check --rules`).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// The rule, as a finding names it: `timeout-inversion`, or `error[timeout-inversion]` as
    /// copied from a report. Without it, every rule with a one-line summary.
    rule: Option<String>,
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = match args.rule {
        None => list(),
        Some(rule) => explain(&rule)?,
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the explanation")?;
    Ok(ExitCode::SUCCESS)
}

/// Every rule, one line each: id, severity, summary.
pub(crate) fn list() -> String {
    let id_width = RULES.iter().map(|rule| rule.id.len()).max().unwrap_or(0);
    let mut out = format!(
        "stormguard check has {} rules; `stormguard explain RULE` says what one computes, why it \
         matters and how to fix it.\n\n",
        RULES.len()
    );
    for rule in RULES {
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<7}  {}",
            rule.id,
            severity(rule.severity),
            rule.summary
        );
    }
    let imported = stormguard_mesh::rules::RULES;
    let _ = writeln!(
        out,
        "\nOn manifests (`stormguard check PATH...` imports them first), the import adds {}:\n",
        imported.len()
    );
    let id_width = imported.iter().map(|rule| rule.id.len()).max().unwrap_or(0);
    for rule in imported {
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<7}  {}",
            rule.id,
            severity(rule.severity),
            rule.summary
        );
    }
    out
}

/// The whole explanation of `rule`, or an input error that lists the rules there are.
fn explain(rule: &str) -> Result<String, InputError> {
    let id = bare_id(rule);
    if let Some(imported) = stormguard_mesh::rules::rule(id) {
        return Ok(import_explanation(imported));
    }
    let doc = rule_doc(id).ok_or_else(|| {
        let ids: Vec<&str> = RULES
            .iter()
            .map(|rule| rule.id)
            .chain(stormguard_mesh::rules::RULES.iter().map(|rule| rule.id))
            .collect();
        InputError(format!(
            "explain: no rule `{rule}`; the rules are {} (`stormguard explain` lists them with \
             what each catches)",
            ids.join(", ")
        ))
    })?;
    Ok(explanation(doc))
}

/// `timeout-inversion` from `error[timeout-inversion]`, as a report prints it; anything else as
/// given.
fn bare_id(rule: &str) -> &str {
    let rule = rule.trim();
    match (rule.find('['), rule.strip_suffix(']')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => rule,
    }
}

fn explanation(doc: &RuleDoc) -> String {
    let mut out = wrapped(
        &format!("{} ({}): {}", doc.id, severity(doc.severity), doc.summary),
        "",
        "  ",
    );
    section(&mut out, "What it computes", doc.computes);
    if !doc.thresholds.is_empty() {
        out.push_str("\nThresholds, in the graph file's [check] table:\n");
        let defaults = CheckConfig::default();
        for threshold in doc.thresholds {
            let line = format!(
                "{} = {} (the default): {}",
                threshold.key(),
                threshold.value(&defaults),
                threshold.meaning()
            );
            out.push_str(&wrapped(&line, "  ", "    "));
        }
    }
    section(&mut out, "Why it matters", doc.why);
    section(&mut out, "How to fix it", doc.fix);
    out
}

/// An import rule's explanation: it is computed on the manifests' settings as the import reads
/// them, so what it computes is its summary and where it is reported.
fn import_explanation(rule: &stormguard_mesh::rules::ImportRule) -> String {
    let mut out = wrapped(
        &format!(
            "{} ({}): {}",
            rule.id,
            severity(rule.severity),
            rule.summary
        ),
        "",
        "  ",
    );
    section(
        &mut out,
        "What it computes",
        "A finding of `stormguard import` on the settings it reads from manifests (Istio, \
         Linkerd, Gateway API, Envoy, gRPC), which the graph alone cannot show; `stormguard \
         check PATH...` reports it beside the graph's findings, at the manifest line that set \
         the value.",
    );
    section(&mut out, "Why it matters", rule.why);
    section(&mut out, "How to fix it", rule.fix);
    out
}

fn section(out: &mut String, title: &str, text: &str) {
    let _ = writeln!(out, "\n{title}:");
    out.push_str(&wrapped(text, "  ", "  "));
}

/// `text` in lines of at most [`WIDTH`] columns, broken between words, the first line after
/// `first` and the others after `rest`; a word longer than a line gets a line of its own.
fn wrapped(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_a_line_per_rule_in_the_table_order() {
        let list = list();
        let lines: Vec<&str> = list.lines().skip(2).take(RULES.len()).collect();
        assert_eq!(lines.len(), RULES.len());
        for (line, rule) in lines.iter().zip(RULES) {
            assert!(line.starts_with(rule.id), "{line}");
            assert!(line.ends_with(rule.summary), "{line}");
        }
        // Then the import's rules, which `check` reports on manifests.
        let imported: Vec<&str> = list.lines().skip(RULES.len() + 5).collect();
        assert_eq!(
            imported.len(),
            stormguard_mesh::rules::RULES.len(),
            "{list}"
        );
        for (line, rule) in imported.iter().zip(stormguard_mesh::rules::RULES) {
            assert!(line.starts_with(rule.id), "{line}");
            assert!(line.ends_with(rule.summary), "{line}");
            let text = explain(rule.id).unwrap();
            assert!(text.contains("How to fix it:"), "{text}");
        }
    }

    #[test]
    fn every_rule_explains_within_the_width_with_its_thresholds_and_defaults() {
        for rule in RULES {
            let text = explain(rule.id).unwrap();
            for line in text.lines() {
                // A line may run over only where one word alone is longer.
                assert!(
                    line.len() <= WIDTH || !line.trim().contains(' '),
                    "{}: {line}",
                    rule.id
                );
            }
            for title in ["What it computes:", "Why it matters:", "How to fix it:"] {
                assert!(text.contains(title), "{}: {title}", rule.id);
            }
            for threshold in rule.thresholds {
                assert!(text.contains(&format!("{} = ", threshold.key())), "{text}");
            }
        }
        let amplification = explain("retry-amplification").unwrap();
        assert!(
            amplification.contains("  max_amplification = 10 (the default)"),
            "{amplification}"
        );
    }

    #[test]
    fn a_rule_copied_from_a_report_is_found() {
        assert_eq!(bare_id("error[call-cycle]"), "call-cycle");
        assert_eq!(bare_id(" warning[layered-retries] "), "layered-retries");
        assert_eq!(bare_id("call-cycle"), "call-cycle");
        assert!(explain("info[timeout-inversion]").is_ok());
    }

    #[test]
    fn an_unknown_rule_is_an_input_error_that_lists_the_rules() {
        let error = explain("retry-storm").unwrap_err();
        assert!(error.0.contains("no rule `retry-storm`"), "{error}");
        for rule in RULES {
            assert!(error.0.contains(rule.id), "{error}");
        }
    }

    #[test]
    fn wrapping_breaks_between_words_and_indents_what_follows() {
        let text = ["word"; 40].join(" ");
        let out = wrapped(&text, "", "  ");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= WIDTH));
        assert!(lines[1..].iter().all(|l| l.starts_with("  word")));
        assert_eq!(out.split_whitespace().count(), 40);
    }
}
