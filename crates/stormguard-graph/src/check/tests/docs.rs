//! The rules' explanations ([`RULES`]) against the rules: an id the code can emit without an
//! entry would leave `stormguard explain` silent on a finding a user has in front of them, and
//! an entry for an id nothing emits would explain a rule that does not exist.

use std::collections::BTreeSet;
use std::path::Path;

use crate::check::{rule_doc, RULES};
use crate::model::CheckConfig;
use crate::report::Severity;

/// Every id the rules' code names where it reports a finding (`rule: "id"` in a `Said`), read
/// from the source of every file in `check/rules/`, so that a rule no test graph fires yet is
/// counted too, and a new file of rules as soon as it exists.
fn ids_in_the_rules_code() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/check/rules");
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("listing src/check/rules") {
        let path = entry.expect("an entry of src/check/rules").path();
        if path.file_name().is_some_and(|name| name == "docs.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("reading a rules file");
        for (at, _) in source.match_indices("rule: \"") {
            let rest = &source[at + "rule: \"".len()..];
            let end = rest.find('"').expect("a closing quote");
            ids.insert(rest[..end].to_string());
        }
    }
    ids
}

#[test]
fn every_rule_the_code_emits_is_explained_and_every_explanation_is_of_a_rule() {
    let emitted = ids_in_the_rules_code();
    let explained: BTreeSet<String> = RULES.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(RULES.len(), explained.len(), "an id is explained twice");
    let unexplained: Vec<&String> = emitted.difference(&explained).collect();
    let unknown: Vec<&String> = explained.difference(&emitted).collect();
    assert!(
        unexplained.is_empty() && unknown.is_empty(),
        "rules without an entry in check/rules/docs.rs: {unexplained:?}; entries of no rule: \
         {unknown:?}"
    );
}

#[test]
fn the_findings_of_the_example_graphs_have_the_explained_id_and_severity() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/graphs");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("listing examples/graphs") {
        let path = entry.expect("an entry of examples/graphs").path();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("reading an example");
        let graph = crate::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        for finding in crate::check::check(&graph).findings {
            let doc = rule_doc(finding.rule)
                .unwrap_or_else(|| panic!("{name}: {} has no entry", finding.rule));
            // The rules with two severities: a propagated deadline makes an inversion worth
            // knowing, and retries a budget does not cap make a capacity warning an error.
            let propagated = (finding.rule == "timeout-inversion"
                && finding.severity == Severity::Info)
                || (finding.rule == "retries-over-capacity" && finding.severity == Severity::Error);
            assert!(
                finding.severity == doc.severity || propagated,
                "{name}: {} is {:?}, explained as {:?}",
                finding.rule,
                finding.severity,
                doc.severity
            );
            seen.insert(finding.rule);
        }
    }
    // The examples show most rules; the assertion above is only as good as this share.
    assert!(seen.len() >= RULES.len() / 2, "{seen:?}");
}

#[test]
fn each_explanation_is_complete_and_its_summary_one_sentence() {
    for rule in RULES {
        for (part, text) in [
            ("summary", rule.summary),
            ("computes", rule.computes),
            ("why", rule.why),
            ("fix", rule.fix),
        ] {
            assert!(!text.trim().is_empty(), "{}: empty {part}", rule.id);
            assert!(
                text.ends_with('.'),
                "{}: {part} ends without a period",
                rule.id
            );
            assert!(
                !text.contains("  "),
                "{}: {part} has a double space",
                rule.id
            );
        }
        assert!(!rule.summary.contains('\n'), "{}", rule.id);
    }
}

#[test]
fn each_threshold_is_a_key_of_the_check_table_and_named_where_it_is_used() {
    for rule in RULES {
        for threshold in rule.thresholds {
            let value = threshold.value(&CheckConfig::default());
            let file = format!(
                "[entry]\nservice = \"web\"\n[services.web]\n[check]\n{} = {value}\n",
                threshold.key()
            );
            crate::parse("thresholds.toml", &file).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                format!("{} {}", rule.computes, rule.fix).contains(threshold.key()),
                "{}: reads {} but does not say where",
                rule.id,
                threshold.key()
            );
        }
    }
}
