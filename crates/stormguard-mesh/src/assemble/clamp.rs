//! Settings the graph parser would refuse, brought within what it accepts, each change noted.
//!
//! ## Why clamp instead of fail
//! A manifest may hold what stormguard refuses by design: Envoy's 5 s connect timeout under a
//! 1 s per-try timeout, a timeout of a day, 200 retries. Failing the import would leave the
//! user with nothing to check; writing the value would make a graph that does not parse. So the
//! value is brought to the nearest one the parser accepts (or left out), and an [`Unread`] note
//! says what was there and why it changed. The parser itself is the judge: the policy is parsed
//! as a one-call graph, and a key it still refuses is dropped with its message.

use std::collections::HashSet;
use std::time::Duration;

use stormguard::duration;
use stormguard_graph::parse::policy_keys::MAX_ATTEMPTS;

use crate::inventory::{Policy, Unread};
use crate::toml_text::string_list;

/// The most times a policy is re-parsed after a key is dropped: one per key it can hold.
const MAX_ROUNDS: usize = 16;

/// The longest timeout a graph holds.
const HOUR: Duration = Duration::from_secs(3600);

/// `policy` made acceptable to the graph parser for the call `edge` (`web -> reviews`), each
/// change noted in `notes`. `accepted` holds the policies the parser has accepted already (a
/// mesh of a thousand routes has a handful of distinct policies), so each is parsed once.
pub(super) fn clamp(
    policy: &mut Policy,
    edge: &str,
    notes: &mut Vec<Unread>,
    accepted: &mut HashSet<String>,
) {
    for key in ["timeout", "request_timeout", "connect_timeout"] {
        let Some(setting) = policy.get(key).cloned() else {
            continue;
        };
        let Some(value) = duration_of(&setting.value) else {
            continue;
        };
        if value.is_zero() {
            policy.remove(key);
            note(
                notes,
                &setting.origin,
                key,
                edge,
                "0s disables it: left out",
            );
        } else if value > HOUR {
            policy.set(key, "\"1h\"", setting.origin.clone());
            note(
                notes,
                &setting.origin,
                key,
                edge,
                &format!(
                    "{} is over the hour a graph's timeout may be: written as 1h",
                    duration::format(value)
                ),
            );
        } else if value < Duration::from_millis(1) {
            policy.set(key, "\"1ms\"", setting.origin.clone());
            note(
                notes,
                &setting.origin,
                key,
                edge,
                &format!("{} is under 1ms: written as 1ms", duration::format(value)),
            );
        }
    }
    let timeout = policy.get("timeout").and_then(|s| duration_of(&s.value));
    if let (Some(connect), Some(timeout)) = (policy.get("connect_timeout").cloned(), timeout) {
        if duration_of(&connect.value).is_some_and(|c| c > timeout) {
            let shown = duration::format(timeout);
            policy.set(
                "connect_timeout",
                format!("\"{shown}\""),
                connect.origin.clone(),
            );
            note(
                notes,
                &connect.origin,
                "connect_timeout",
                edge,
                &format!(
                    "{} is above the attempt's timeout {shown}, which includes connecting \
                     (stormguard refuses it): written as {shown}",
                    connect.value.trim_matches('"')
                ),
            );
        }
    }
    if let Some(setting) = policy.get("max_attempts").cloned() {
        let clamped = match setting.value.trim().parse::<i64>() {
            Ok(n) if n > i64::from(MAX_ATTEMPTS) => Some(MAX_ATTEMPTS.to_string()),
            Ok(n) if n < 1 => Some("1".to_string()),
            _ => None,
        };
        if let Some(value) = clamped {
            note(
                notes,
                &setting.origin,
                "max_attempts",
                edge,
                &format!(
                    "{} is outside 1 to {MAX_ATTEMPTS}: written as {value}",
                    setting.value
                ),
            );
            policy.set("max_attempts", value, setting.origin.clone());
        }
    }
    for _ in 0..MAX_ROUNDS {
        let text = one_call(policy);
        if accepted.contains(&text) {
            return;
        }
        let Err(error) = stormguard_graph::parse("import", &text) else {
            accepted.insert(text);
            return;
        };
        let key = error
            .key
            .as_deref()
            .and_then(|k| k.strip_prefix("services.a.calls[0]."))
            .unwrap_or_default();
        let top = key.split(['.', '[']).next().unwrap_or_default();
        let Some(setting) = policy.settings.iter().find(|s| s.key == top).cloned() else {
            // Nothing to drop that the parser names: leave every imported key out rather than
            // write a graph that does not parse.
            for setting in std::mem::take(&mut policy.settings) {
                note(notes, &setting.origin, setting.key, edge, &error.message);
            }
            return;
        };
        let index = key
            .strip_prefix("retry_on[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok());
        match index.and_then(|i| without_item(&setting.value, i)) {
            Some(rest) => policy.set(setting.key, rest, setting.origin.clone()),
            None => policy.remove(setting.key),
        }
        note(
            notes,
            &setting.origin,
            key,
            edge,
            &format!("refused by stormguard ({}): left out", error.message),
        );
    }
}

/// The duration a TOML duration text (`"250ms"`, with its quotes) holds.
pub(super) fn duration_of(value: &str) -> Option<Duration> {
    duration::parse(value.trim().trim_matches('"')).ok()
}

/// A TOML list's text without its item `index`; `None` when that leaves it empty or it is not
/// a list of strings.
fn without_item(list: &str, index: usize) -> Option<String> {
    let value: toml::Value = toml::from_str(&format!("v = {list}")).ok()?;
    let mut items: Vec<String> = value
        .get("v")?
        .as_array()?
        .iter()
        .map(|i| i.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    if index >= items.len() {
        return None;
    }
    items.remove(index);
    if items.is_empty() {
        return None;
    }
    Some(string_list(&items))
}

/// A graph of one call with `policy`, for the parser to judge.
fn one_call(policy: &Policy) -> String {
    let mut text =
        String::from("[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n");
    for setting in &policy.settings {
        text.push_str(setting.key);
        text.push_str(" = ");
        text.push_str(&setting.value);
        text.push('\n');
    }
    text
}

fn note(notes: &mut Vec<Unread>, origin: &crate::source::Origin, key: &str, edge: &str, why: &str) {
    notes.push(Unread {
        origin: origin.clone(),
        what: format!("{key} of {edge}"),
        why: why.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Origin;

    fn policy(settings: &[(&'static str, &str)]) -> Policy {
        let mut policy = Policy::default();
        for (key, value) in settings {
            policy.set(key, *value, Origin::Default("Envoy default"));
        }
        policy
    }

    #[test]
    fn a_connect_timeout_above_the_timeout_is_clamped_with_a_note() {
        let mut p = policy(&[("timeout", "\"1s\""), ("connect_timeout", "\"5s\"")]);
        let mut notes = Vec::new();
        clamp(&mut p, "web -> db", &mut notes, &mut HashSet::new());
        assert_eq!(p.get("connect_timeout").unwrap().value, "\"1s\"");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0]
                .why
                .contains("5s is above the attempt's timeout 1s"),
            "{notes:?}"
        );
        assert_eq!(notes[0].what, "connect_timeout of web -> db");
    }

    #[test]
    fn out_of_range_values_are_clamped_and_refused_ones_dropped() {
        let mut p = policy(&[
            ("timeout", "\"2h\""),
            ("request_timeout", "\"0s\""),
            ("max_attempts", "250"),
            ("retry_on", "[\"5xx\", \"envoy-ratelimited\", \"reset\"]"),
            ("retry_budget", "{ ratio = 7.0 }"),
        ]);
        let mut notes = Vec::new();
        clamp(&mut p, "a -> b", &mut notes, &mut HashSet::new());
        assert_eq!(p.get("timeout").unwrap().value, "\"1h\"");
        assert!(p.get("request_timeout").is_none());
        assert_eq!(p.get("max_attempts").unwrap().value, "100");
        assert_eq!(p.get("retry_on").unwrap().value, "[\"5xx\", \"reset\"]");
        assert!(p.get("retry_budget").is_none());
        assert_eq!(notes.len(), 5, "{notes:#?}");
        stormguard_graph::parse("t", &one_call(&p)).unwrap();
    }
}
