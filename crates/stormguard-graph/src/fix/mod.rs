//! `check --fix`: the graph file with every finding's proposed value written in, in the user's
//! own file, comments and layout kept.
//!
//! ## Why rounds
//! One fix enables the next: once the retries below the top are cut to one attempt, the worst
//! cases shrink and the timeouts above can telescope; once a caller's timeout is cut to fit what
//! the user waits, its callee's calls must be cut to fit under it. So the fixer checks, applies
//! the edits of the findings, and checks again, until no finding has an edit left, an edit no
//! longer changes the file, the file comes back to a state it was already in, or [`MAX_ROUNDS`]
//! is reached. What stays is reported: findings whose fix is a change of structure (a cycle to
//! break, calls to batch) or a choice only the owner can make (raising what a user waits).
//!
//! ## Why stages
//! A round applies the edits of one stage only: attempts first, then the settings of a call that
//! do not depend on the graph's figures, then the shape of the timeouts, then timeouts weighed
//! against worst cases. Each stage changes the figures the next one judges by, so applying a
//! timeout computed from worst cases that the same round's attempts change would write a value
//! that is stale before it lands. Where two findings ask for different values of one setting, the
//! more severe one wins, then the rule listed first in its stage (the safer value).
//!
//! ## Why text edits
//! The file is the user's: it has comments that say why a value is what it is. The edits are
//! made with `toml_edit`, which keeps every byte it is not asked to change, and each changed
//! value gets a comment saying what it was and which rules changed it.
//!
//! ```
//! use stormguard_graph::fix::fix;
//!
//! let text = r#"
//! [entry]
//! service = "web"
//!
//! [services.web]
//! instances = 2
//!
//! ## As the sample code had it.
//! [[services.web.calls]]
//! to = "db"
//! timeout = "5s"
//! connect_timeout = "3ms"
//! max_attempts = 3
//! retry_budget = "none"
//!
//! [services.db]
//! instances = 2
//! "#;
//! let fixed = fix("g.toml", text).unwrap();
//! assert_eq!(fixed.report.summary.errors, 0);
//! assert!(fixed.text.contains("# As the sample code had it."));
//! assert!(fixed.text.contains("max_attempts = 2"));
//! assert!(fixed.text.contains("retry_budget = { ratio = 0.1, min_per_sec = 10 }"));
//! ```

mod apply;
mod stages;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

pub use apply::{
    apply, inline_calls, noted_changes, revert_fixes, value_text, with_line_ends_of, CallPlace,
};

use crate::check::check;
use crate::model::Graph;
use crate::parse::{parse, ParseError};
use crate::report::{Edit, Report};

/// The most check-and-apply rounds: enough for a graph a dozen layers deep (a cut at the top
/// reaches one layer further down per round), and a bound on a fix that does not settle.
pub const MAX_ROUNDS: usize = 32;

/// Why the fixer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No finding left has an edit: every value a finding proposed is written.
    Done,
    /// The edits left would not change the file.
    Fixpoint,
    /// The edits brought the file back to a state it was in before: two findings undo each
    /// other, and which one should win is the owner's call.
    Cycle,
    /// [`MAX_ROUNDS`] rounds ran and findings with edits remain.
    Rounds,
}

/// One setting the fixer changed, from the file as given to the file it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The calling service.
    pub from: String,
    /// The caller's endpoint whose call it is; `None` for a call of `from`'s own `calls`.
    pub endpoint: Option<String>,
    /// The called service; empty for a key of the service's own table.
    pub to: String,
    /// The call's index among the calls of `from` (or of its `endpoint`), from 0; `None` for a
    /// key of the service's own table.
    pub index: Option<usize>,
    /// The key.
    pub key: &'static str,
    /// The value in the file as given (TOML text), `None` when the key was not there.
    pub before: Option<String>,
    /// The value written, `None` when the key was removed.
    pub after: Option<String>,
    /// The rules whose fixes wrote it, in the order they did.
    pub rules: Vec<&'static str>,
}

/// What `check --fix` made of a file.
#[derive(Clone, Debug)]
pub struct Fixed {
    /// The fixed file.
    pub text: String,
    /// The fixed file's graph.
    pub graph: Graph,
    /// What `check` finds in the fixed file: the findings no value fixes (their `edits` are
    /// empty: a change of structure, or an owner's choice), and, when the fixer stopped before
    /// [`Stop::Done`], those whose edits it could not settle.
    pub report: Report,
    /// Every setting changed, in file order (service, endpoint, call, key).
    pub changes: Vec<Change>,
    /// How many rounds applied edits.
    pub rounds: usize,
    /// Why it stopped.
    pub stop: Stop,
}

/// Why a file could not be fixed.
#[derive(Debug, thiserror::Error)]
pub enum FixError {
    /// The file given does not parse; the error says where.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The file is TOML the graph parser reads but the editor does not (which would be a bug
    /// in one of them).
    #[error("{file}: the file cannot be edited: {message}")]
    Toml {
        /// The file, as given.
        file: String,
        /// The editor's message.
        message: String,
    },
    /// An edit names a call the file does not have where it says (a bug in a rule, or a
    /// graph written with calls the editor cannot reach, e.g. as dotted keys).
    #[error("{file}: cannot apply {edit}: {reason}")]
    NoCall {
        /// The file, as given.
        file: String,
        /// The edit (boxed: an error is rare, and a result should stay small).
        edit: Box<Edit>,
        /// What is missing.
        reason: String,
    },
    /// The edits wrote a file that does not parse (a rule proposing an invalid value: a bug).
    #[error("applying {rules} made a file that does not parse: {error}")]
    Broken {
        /// The rules whose edits were applied in the round.
        rules: String,
        /// The parser's error on the edited file.
        error: Box<ParseError>,
    },
}

/// Fixes the graph file `text` (`file` names it in errors): checks it, writes the edits of its
/// findings, and repeats until nothing is left to write (see the module docs).
///
/// # Errors
/// [`FixError::Parse`] when `text` is not a valid graph file; the other variants only when a
/// rule proposes an edit the file cannot take, which is a bug.
pub fn fix(file: &str, text: &str) -> Result<Fixed, FixError> {
    let graph = parse(file, text)?;
    let report = check(&graph);
    let mut current = State {
        text: text.to_string(),
        graph,
        report,
    };
    let mut best: Option<State> = None;
    let mut seen: HashSet<String> = HashSet::from([current.text.clone()]);
    let mut rules_of: BTreeMap<Setting, Vec<&'static str>> = BTreeMap::new();
    let mut touched: BTreeMap<Setting, String> = BTreeMap::new();
    let mut rounds = 0;
    // The first stage whose edits may still change the file: past a stage whose edits are all
    // written already, which stopped the fixer while a later stage had real work (a timeout
    // below the round trip, whose connect timeout can only follow it up once it is raised).
    let mut from = 0;
    let stop = loop {
        let Some((stage, picked)) = stages::chosen(&current.report.findings, from) else {
            break if from == 0 {
                Stop::Done
            } else {
                Stop::Fixpoint
            };
        };
        let chosen = stages::with_connect_caps(&current.graph, picked);
        if rounds == MAX_ROUNDS {
            break Stop::Rounds;
        }
        let edits: Vec<Edit> = chosen.iter().map(|(edit, _)| edit.clone()).collect();
        let next = apply(file, &current.text, &edits)?;
        if next == current.text {
            from = stage + 1;
            continue;
        }
        from = 0;
        let graph = parse(file, &next).map_err(|error| FixError::Broken {
            rules: rule_names(&chosen),
            error: Box::new(error),
        })?;
        for (edit, rule) in &chosen {
            let setting = (
                edit.from.clone(),
                edit.endpoint.clone(),
                edit.index,
                edit.key,
            );
            let rules = rules_of.entry(setting.clone()).or_default();
            if !rules.contains(rule) {
                rules.push(rule);
            }
            touched.insert(setting, edit.to.clone());
        }
        rounds += 1;
        let repeated = !seen.insert(next.clone());
        let report = check(&graph);
        let previous = std::mem::replace(
            &mut current,
            State {
                text: next,
                graph,
                report,
            },
        );
        if best.as_ref().is_none_or(|b| previous.rank() < b.rank()) {
            best = Some(previous);
        }
        if repeated {
            break Stop::Cycle;
        }
    };
    // A fix that did not settle ends on whichever state its last round reached; the state seen
    // with the fewest errors (then warnings) is the one worth handing back.
    if matches!(stop, Stop::Cycle | Stop::Rounds) {
        if let Some(b) = best.filter(|b| b.rank() < current.rank()) {
            current = b;
        }
    }
    let changes = apply::changes(file, text, &current.text, &touched, &rules_of)?;
    let annotated = apply::annotate(file, &current.text, &changes)?;
    Ok(Fixed {
        text: with_line_ends_of(text, annotated),
        graph: current.graph,
        report: current.report,
        changes,
        rounds,
        stop,
    })
}

/// A setting: the caller, its endpoint, the call's index (`None`: the service's own table),
/// the key.
type Setting = (String, Option<String>, Option<usize>, &'static str);

/// The file between rounds, with its graph and what `check` finds in it.
struct State {
    text: String,
    graph: Graph,
    report: Report,
}

impl State {
    /// Fewer errors first, then fewer warnings.
    fn rank(&self) -> (usize, usize) {
        (self.report.summary.errors, self.report.summary.warnings)
    }
}

/// The rules of a round's edits, as an error names them.
fn rule_names(chosen: &[(Edit, &'static str)]) -> String {
    let mut names: Vec<&str> = chosen.iter().map(|(_, rule)| *rule).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}
