//! The findings only imported settings make possible, by id: `check` reports them beside its
//! own, at the manifest's line.
//!
//! One table, [`RULES`], in the shape of `check`'s own (`stormguard_graph::check::RULES`), so
//! that `stormguard explain` and SARIF's rule declarations can read both alike. A test holds it
//! to the code: every id the crate emits (`rule: "id"` in an [`ImportFinding`]) has an entry.
//!
//! [`ImportFinding`]: crate::inventory::ImportFinding

use stormguard_graph::Severity;

/// A rule of the import, explained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImportRule {
    /// The id its findings carry; part of the interface.
    pub id: &'static str,
    /// The severity of its findings.
    pub severity: Severity,
    /// What it catches, in one sentence.
    pub summary: &'static str,
    /// Why it matters: what goes wrong in production when it fires.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

/// The entry of rule `id`, if the import has such a rule.
///
/// ```
/// assert_eq!(stormguard_mesh::rules::rule("mesh-retries-stacked").unwrap().id, "mesh-retries-stacked");
/// assert!(stormguard_mesh::rules::rule("retry-amplification").is_none(), "a rule of check");
/// ```
pub fn rule(id: &str) -> Option<&'static ImportRule> {
    RULES.iter().find(|rule| rule.id == id)
}

/// Every rule of the import.
pub const RULES: &[ImportRule] = &[
    ImportRule {
        id: "grpc-max-attempts-capped",
        severity: Severity::Warning,
        summary: "A gRPC retry or hedging policy asks for more than 5 attempts: gRPC makes 5.",
        why: "gRPC clients silently cap maxAttempts at 5, so the config says one thing and the \
              client does another; the graph holds the 5 that run, and whoever reads the config \
              expects more attempts than are made.",
        fix: "maxAttempts = 5 or fewer in the service config (stormguard recommends 2: one \
              retry).",
    },
    ImportRule {
        id: "istio-unbounded-retries",
        severity: Severity::Warning,
        summary: "An Istio route retries with no retry budget: the sidecars' retry circuit breaker is unbounded.",
        why: "Istio sets Envoy's max_retries circuit breaker to 2^32-1, so without a \
              DestinationRule retryBudget nothing caps the retries in flight: when the callee \
              fails for everyone, every request is retried as many times as the route allows, \
              at every hop.",
        fix: "A retryBudget in the destination's DestinationRule (trafficPolicy.retryBudget, \
              e.g. percent 20, minRetryConcurrency 3), or fewer attempts on the route.",
    },
    ImportRule {
        id: "mesh-retries-stacked",
        severity: Severity::Warning,
        summary: "The application retries on top of its sidecar's retries: the attempts multiply.",
        why: "Each attempt the application makes goes through a sidecar that retries it again, so \
              an application that tries A times through a sidecar that tries M times sends up to \
              A x M attempts to the callee exactly when it fails; the import writes the sidecar \
              as a service of its own (CALLER-sidecar) so that check's retry-amplification and \
              layered-retries see both layers.",
        fix: "Retry in one layer: max_attempts = 1 in the application's client, or no retries \
              (attempts 0) in the mesh's route for this destination.",
    },
    ImportRule {
        id: "mesh-retries-non-idempotent",
        severity: Severity::Error,
        summary: "The mesh retries a request that is not idempotent after it may have been applied.",
        why: "Mesh proxies retry any method: a POST whose connection was reset, or that timed out \
              or got a 5xx after it reached the server, is sent again by the sidecar, which can \
              apply it twice (a double charge, a duplicate order). Only connect failures, \
              refused streams and resets before the request was written are sure not to have \
              reached the server, and only answers that decline the work (408, 429, 503 and \
              the other 4xx; gRPC resource-exhausted, aborted, unavailable) say it did none: \
              what stormguard itself retries of such a request (the same line as check's \
              non-idempotent-retry). Through Envoy and Istio, 503 and unavailable do not say \
              so: the server's own sidecar answers them when its application's connection \
              drops after the request was forwarded.",
        fix: "retry_on restricted to connect-failure, refused-stream and reset-before-request, \
              and of the route's own conditions those that decline the work (not 503 nor \
              unavailable through Envoy or Istio: retryOn \
              connect-failure,refused-stream,reset-before-request); on a Gateway API route, \
              which retries resets and timeouts whenever it retries, no retry (attempts: 0); \
              or make the request idempotent with an idempotency key the callee honours.",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Every id the crate's code names where it makes a finding (`rule: "id"`), from the source
    /// of every file under `src/`, tests included, so that a rule no test fires yet is counted.
    fn ids_in_the_code() -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("listing src") {
                let path = entry.expect("an entry of src").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.ends_with("rules.rs") || path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let source = std::fs::read_to_string(&path).expect("reading a source file");
                for (at, _) in source.match_indices("rule: \"") {
                    let rest = &source[at + "rule: \"".len()..];
                    let end = rest.find('"').expect("a closing quote");
                    ids.insert(rest[..end].to_string());
                }
            }
        }
        ids
    }

    #[test]
    fn every_rule_the_crate_emits_is_in_the_table() {
        let emitted = ids_in_the_code();
        let listed: BTreeSet<String> = RULES.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(listed.len(), RULES.len(), "an id is listed twice");
        let unlisted: Vec<&String> = emitted.difference(&listed).collect();
        assert!(
            unlisted.is_empty(),
            "ids without an entry in rules.rs: {unlisted:?}"
        );
        assert!(emitted.contains("mesh-retries-stacked"));
        assert!(emitted.contains("mesh-retries-non-idempotent"));
    }

    #[test]
    fn no_import_rule_shares_an_id_with_a_rule_of_check() {
        for rule in RULES {
            assert!(
                stormguard_graph::check::rule_doc(rule.id).is_none(),
                "{}",
                rule.id
            );
        }
    }

    #[test]
    fn each_entry_is_complete_and_its_summary_one_sentence() {
        for rule in RULES {
            for (part, text) in [
                ("summary", rule.summary),
                ("why", rule.why),
                ("fix", rule.fix),
            ] {
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
        }
    }
}
