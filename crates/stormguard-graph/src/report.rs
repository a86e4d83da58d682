//! What `check` found: findings, and the figures of each service.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Span;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Likely to hurt under failure.
    Warning,
    /// Will break: fix before it ships.
    Error,
}

/// One thing wrong in the graph: what, why it matters, and the value to set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id, e.g. `retry-amplification` (part of the interface).
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// The calling service, for a finding on a call; `SERVICE/ENDPOINT` when the call is one
    /// of a named endpoint's (`gateway/checkout`), so that a finding names the kind of request
    /// that makes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The called service, for a finding on a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The service, for a finding on a service; `SERVICE/ENDPOINT` for a finding on one of its
    /// endpoints (`entry-budget` on `gateway/checkout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What is wrong, in numbers, and why it matters, in one sentence.
    pub message: String,
    /// The fix: the value to set.
    pub fix: String,
    /// The figure the rule measured (ms, attempts, a rate), where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The limit it was measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Where in the file (the call's or service's table).
    #[serde(skip)]
    pub span: Option<Span>,
    /// The fix as settings `check --fix` can write, when it is values (a timeout, attempts, a
    /// backoff); empty when it is a change of structure no value makes (break a cycle, batch
    /// calls) or a choice only the owner can make (raise what users wait). Several when the fix
    /// is several settings (a timeout per depth; attempts on every layer). Left out of the JSON:
    /// `fix` says the same for a person, and the edits are the fixer's input, not an interface.
    #[serde(skip)]
    pub edits: Vec<Edit>,
}

/// One setting of one call as `check --fix` writes it: the call (its caller, its callee and its
/// place among the caller's calls, as `[[services.FROM.calls]]` number `index`, or
/// `[[services.FROM.endpoints.ENDPOINT.calls]]` for an endpoint's call), the key, and the value
/// in the file's own syntax.
///
/// The value is TOML text (`"250ms"`, `2`, `{ ratio = 0.1, min_per_sec = 10 }`) rather than a
/// typed value so that the edit writes exactly what `fix` tells a person to write, and a
/// format-preserving editor can insert it as written.
///
/// ```
/// use stormguard_graph::report::Edit;
///
/// let edit = Edit::set("api", "db", 0, "max_attempts", "2");
/// assert_eq!(edit.to_string(), "services.api.calls[0].max_attempts = 2 (api -> db)");
/// let edit = Edit::set("gateway", "orders", 0, "timeout", "\"1s\"").in_endpoint(Some("checkout"));
/// assert_eq!(
///     edit.to_string(),
///     "services.gateway.endpoints.checkout.calls[0].timeout = \"1s\" (gateway/checkout -> orders)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edit {
    /// The calling service.
    pub from: String,
    /// The caller's endpoint whose call it is; `None` for a call of `from`'s own `calls`.
    pub endpoint: Option<String>,
    /// The called service: checked against the file, so an edit never lands on another call.
    /// Empty for a key of the service's own table.
    pub to: String,
    /// The call's index among the calls of `from` (or of its `endpoint`), from 0; `None` for a
    /// key of the service's own table `[services.FROM]` (`queue_discipline`), which
    /// [`Edit::on_service`] makes.
    pub index: Option<usize>,
    /// The key in the call's table, e.g. `timeout`.
    pub key: &'static str,
    /// The new value as TOML text; `None` removes the key.
    pub value: Option<String>,
}

impl Edit {
    /// Sets `key` of call `index` of `from` (a call to `to`) to the TOML text `value`.
    pub fn set(from: &str, to: &str, index: usize, key: &'static str, value: &str) -> Edit {
        Edit {
            from: from.to_string(),
            endpoint: None,
            to: to.to_string(),
            index: Some(index),
            key,
            value: Some(value.to_string()),
        }
    }

    /// Sets `key` of service `service`'s own table to the TOML text `value`.
    ///
    /// ```
    /// use stormguard_graph::report::Edit;
    /// let edit = Edit::on_service("search", "queue_discipline", "\"codel\"");
    /// assert_eq!(edit.to_string(), "services.search.queue_discipline = \"codel\"");
    /// ```
    pub fn on_service(service: &str, key: &'static str, value: &str) -> Edit {
        Edit {
            from: service.to_string(),
            endpoint: None,
            to: String::new(),
            index: None,
            key,
            value: Some(value.to_string()),
        }
    }

    /// The same edit on a call of `from`'s endpoint `endpoint` (`None`: of its own `calls`).
    pub fn in_endpoint(mut self, endpoint: Option<&str>) -> Edit {
        self.endpoint = endpoint.map(str::to_string);
        self
    }

    /// The caller as messages name it: `from`, or `from/endpoint`.
    pub fn caller(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{}/{endpoint}", self.from),
            None => self.from.clone(),
        }
    }

    /// Removes `key` from call `index` of `from` (a call to `to`).
    pub fn remove(from: &str, to: &str, index: usize, key: &'static str) -> Edit {
        Edit {
            from: from.to_string(),
            endpoint: None,
            to: to.to_string(),
            index: Some(index),
            key,
            value: None,
        }
    }
}

impl std::fmt::Display for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut path = crate::parse::locate::KeyPath::default()
            .key("services")
            .key(&self.from);
        let Some(index) = self.index else {
            let key = path.key(self.key);
            return match &self.value {
                Some(value) => write!(f, "{key} = {value}"),
                None => write!(f, "{key} removed"),
            };
        };
        if let Some(endpoint) = &self.endpoint {
            path = path.key("endpoints").key(endpoint);
        }
        let key = path.key("calls").index(index).key(self.key);
        let caller = self.caller();
        match &self.value {
            Some(value) => write!(f, "{key} = {value} ({caller} -> {})", self.to),
            None => write!(f, "{key} removed ({caller} -> {})", self.to),
        }
    }
}

/// The figures of one service.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// The longest it may keep working on one request, in ms.
    pub worst_case_ms: f64,
    /// Worst-case attempts it receives per user request when calls below the entry fail: each
    /// retried to its last attempt, and each repetition and sequential call still made (when
    /// all fail at once, a service stops at its first failed call, and fewer arrive).
    pub amplification: f64,
    /// The same with retry budgets holding: `1 + ratio + min_per_sec / requests a second` per
    /// budgeted edge at the entry's rate (at most its attempts), and token buckets drained.
    pub sustained_amplification: f64,
    /// Calls from the entry on the longest path to it (the entry is 0).
    pub depth: u32,
}

/// Counts of findings by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Infos.
    pub infos: usize,
}

/// Everything `check` found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Findings, grouped by service then call order, errors first within a place.
    pub findings: Vec<Finding>,
    /// Figures by service (services unreachable from the entry are absent). A service with
    /// endpoints has the worst case and depth of its worst and deepest endpoint, and the attempts
    /// all of them receive.
    pub services: BTreeMap<String, ServiceFigures>,
    /// Figures by endpoint, `SERVICE/ENDPOINT`, of the services that have named endpoints
    /// (left out of the JSON when none has), since their endpoints' figures differ: a gateway's
    /// checkout may take seconds where its browse takes milliseconds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, ServiceFigures>,
    /// Counts by severity.
    pub summary: Summary,
}
