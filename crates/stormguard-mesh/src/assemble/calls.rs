//! A call the import writes as a new table (a placeholder's or a sidecar's): its policy made
//! acceptable to the parser, checked for the non-idempotent finding, and written with a comment
//! per value.

use super::placement::Chosen;
use super::{clamp, findings, Annotation, Context, Table};
use crate::source::Origin;
use crate::toml_text::quoted;

/// A call to write.
pub(super) struct Planned {
    /// The callee's graph name.
    pub to: String,
    /// The callee's endpoint, if the call names one.
    pub endpoint: Option<String>,
    /// The request's method, if known (the route's, or the base call's).
    pub method: Option<(String, Origin)>,
    /// The round trip, as the base wrote it.
    pub rtt: Option<String>,
    /// The policy.
    pub chosen: Chosen,
}

impl Context<'_> {
    /// `chosen` made acceptable to the parser for the call `caller -> to`, with the
    /// non-idempotent finding when its method is not idempotent (`method`, or the route's).
    pub(super) fn prepare(
        &mut self,
        caller: &str,
        to: &str,
        mut chosen: Chosen,
        method: Option<&str>,
    ) -> Chosen {
        let edge = format!("{caller} -> {to}");
        clamp::clamp(
            &mut chosen.policy,
            &edge,
            &mut self.notes,
            &mut self.accepted,
        );
        let method = chosen.method.clone().or(method.map(str::to_string));
        if let Some(finding) = findings::non_idempotent(caller, to, &chosen, method.as_deref()) {
            self.findings.push(finding);
        }
        chosen
    }

    /// Records that `key` of `table` came from `origin`.
    pub(super) fn annotate(&mut self, table: &Table, key: Option<&str>, origin: &Origin) {
        self.annotations.push(Annotation {
            table: table.clone(),
            key: key.map(str::to_string),
            origin: origin.clone(),
        });
    }

    /// Writes `call` as the table `[[header]]` (`services.X.endpoints.E.calls`), which is
    /// `table`.
    pub(super) fn push_call(
        &mut self,
        out: &mut String,
        header: &str,
        table: Table,
        call: &Planned,
    ) {
        if let Some(note) = &call.chosen.note {
            out.push_str(&format!("# {}\n", comment(note)));
        }
        out.push_str(&format!("[[{header}]]\n"));
        self.annotate(&table, None, &call.chosen.origin);
        out.push_str(&format!("to = {}\n", quoted(&call.to)));
        if let Some(endpoint) = &call.endpoint {
            out.push_str(&format!("endpoint = {}\n", quoted(endpoint)));
        }
        if call.chosen.policy.get("method").is_none() {
            if let Some((method, origin)) = &call.method {
                out.push_str(&format!(
                    "method = {} # {}\n",
                    quoted(method),
                    comment(&origin.to_string())
                ));
                self.annotate(&table, Some("method"), origin);
            }
        }
        if let Some(rtt) = &call.rtt {
            out.push_str(&format!("rtt = {rtt}\n"));
        }
        for setting in &call.chosen.policy.settings {
            out.push_str(&format!(
                "{} = {} # {}\n",
                setting.key,
                setting.value,
                comment(&setting.origin.to_string())
            ));
            self.annotate(&table, Some(setting.key), &setting.origin);
        }
        out.push('\n');
    }
}

/// A method as the graph writes it (capitals), if it is one.
pub(super) fn method(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let valid = !upper.is_empty()
        && upper.len() <= 32
        && upper.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    valid.then_some(upper)
}

/// Text made safe for one comment line.
pub(super) fn comment(text: &str) -> String {
    // TOML allows no control character but tab in a comment: a line break ends it early, and
    // any other (a carriage return, an escape, a NUL from a manifest's key) made a graph the
    // parser refuses (found by fuzzing). Shown escaped, as a quoted string shows it.
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod comment_tests {
    use super::comment;

    /// Every control character but tab is kept out of a comment line, which TOML refuses.
    #[test]
    fn a_comment_holds_no_control_character_but_tab() {
        let text = "a\nb\rc\td\u{1b}e\u{0}f\u{7f}g";
        let said = comment(text);
        assert_eq!(said, "a b c\td\\u001Be\\u0000f\\u007Fg");
        let doc = format!("x = 1 # {said}\n");
        assert!(doc.parse::<toml::Table>().is_ok(), "{doc}");
    }
}
