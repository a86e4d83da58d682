//! A base graph's calls given their callees' imported policies, in the base file itself: every
//! other line, comment and key order kept (edited with `toml_edit`, as `check --fix` edits).
//!
//! A call on which the application sets its own client policy (a timeout, a request timeout,
//! retries, a hedge) keeps it, and goes through its caller's sidecar, made explicit
//! ([`super::stack`]): the two layers are then both in the graph for `check` and `sim`.

use std::collections::{BTreeMap, BTreeSet};

use stormguard_graph::fix::value_text;
use stormguard_graph::model::Call;
use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::calls::{comment, method};
use super::placement;
use super::stack::Sidecar;
use super::{Context, Table};
use crate::error::ImportError;
use crate::inventory::Unread;
use crate::source::Origin;

/// The base graph `text` (file `file`) with the imported policies, and how its calls were made.
pub(super) fn write(
    cx: &mut Context<'_>,
    file: &str,
    text: &str,
) -> Result<(String, String), ImportError> {
    let graph = stormguard_graph::parse(file, text).map_err(|e| ImportError::At {
        file: e.file.clone(),
        line: u32::try_from(e.line).unwrap_or(u32::MAX),
        column: u32::try_from(e.column).unwrap_or(u32::MAX),
        field: e.key.clone().unwrap_or_default(),
        message: e.message.clone(),
    })?;
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ImportError::File {
                path: file.to_string(),
                message: e.to_string(),
            })?;
    let inv = cx.inv;
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut sidecars: BTreeMap<String, Sidecar> = BTreeMap::new();
    let mut taken: BTreeSet<String> = graph.services.keys().cloned().collect();
    let mut given = 0;
    // Instances first: a sidecar runs as many as its caller.
    let mut instances: BTreeMap<String, u32> = BTreeMap::new();
    for (name, service) in &graph.services {
        let keys = cx.names.keys_of(name);
        let found = cx.names.workloads.instances(inv, &keys);
        let Some((replicas, origin)) = found else {
            instances.insert(name.clone(), service.instances);
            continue;
        };
        let value = cx.instances_value(name, replicas, &origin);
        instances.insert(name.clone(), value);
        if let Some(table) = service_table(&mut doc, name) {
            set(table, "instances", Value::from(i64::from(value)), &origin);
            cx.annotate(&Table::Service(name.clone()), Some("instances"), &origin);
        }
    }
    for (name, service) in &graph.services {
        for endpoint in service.each_endpoint() {
            for (index, call) in endpoint.calls.iter().enumerate() {
                let mut keys = cx.names.keys_of(&call.to);
                if keys.is_empty() {
                    keys.push((call.to.clone(), None));
                }
                let Some(chosen) = placement::choose(
                    inv,
                    &cx.names,
                    Some(name),
                    &keys,
                    call.endpoint.as_deref(),
                    &mut cx.notes,
                ) else {
                    continue;
                };
                reached.extend(cx.names.graph_names(&keys).into_iter().map(str::to_string));
                given += 1;
                let table = Table::Call {
                    service: name.clone(),
                    endpoint: endpoint.name.map(str::to_string),
                    index,
                };
                let Some((raw, inline)) = call_table(&mut doc, name, endpoint.name, index) else {
                    continue;
                };
                let written_method = raw.get("method").is_some().then(|| call.method.clone());
                let at = Origin::File {
                    file: file.into(),
                    line: u32::try_from(call.span.line).unwrap_or(u32::MAX),
                    column: u32::try_from(call.span.column).unwrap_or(u32::MAX),
                    what: format!("call {name} -> {}", call.to),
                };
                let caller = match endpoint.name {
                    Some(ep) => format!("{name}/{ep}"),
                    None => name.clone(),
                };
                let base_call = BaseCall {
                    caller,
                    call,
                    at,
                    method: written_method,
                };
                match app_attempts(raw, call) {
                    None => give(cx, raw, inline, &table, chosen, &base_call),
                    Some(app) => {
                        let sidecar = sidecars.entry(name.clone()).or_insert_with(|| {
                            let instances = instances.get(name).copied().unwrap_or(1);
                            Sidecar::new(name, &mut taken, instances)
                        });
                        let rtt = raw.get("rtt").map(value_text);
                        let (sidecar_name, ep) = sidecar.carry(cx, chosen, &base_call, app, rtt);
                        through_sidecar(raw, inline, &sidecar_name, &ep, &call.to);
                    }
                }
            }
        }
    }
    for route in &inv.routes {
        if !reached.contains(&cx.names.of(&route.host)) {
            cx.notes.push(Unread {
                origin: route.origin.clone(),
                what: format!("route to {}", route.host.name),
                why: "no call of the base graph goes to it: its policy is on no call".to_string(),
            });
        }
    }
    let mut out = doc.to_string();
    let stacked = sidecars.len();
    for sidecar in sidecars.into_values() {
        sidecar.write(cx, &mut out);
    }
    let mut how = format!(
        "the calls of the base graph {file}, each given its callee's imported policy ({given} \
         calls)"
    );
    if stacked > 0 {
        how.push_str(&format!(
            "; where the application sets its own timeout or retries, its call goes through its \
             sidecar, written as the service CALLER-sidecar ({stacked}), whose calls carry the \
             mesh's policy"
        ));
    }
    Ok((how, out))
}

/// A call of the base graph, as the writers need it.
pub(super) struct BaseCall<'g> {
    /// Its caller as messages name it (`web`, or `web/checkout`).
    pub caller: String,
    /// The call.
    pub call: &'g Call,
    /// Where it is in the base file.
    pub at: Origin,
    /// Its `method`, when the base writes one.
    pub method: Option<String>,
}

/// Writes `chosen` into the base call `raw` (the table `table`): each value with its origin
/// (and what the base had there, when it had a value), the route's method when the base gives
/// none.
fn give(
    cx: &mut Context<'_>,
    raw: &mut dyn TableLike,
    inline: bool,
    table: &Table,
    chosen: super::placement::Chosen,
    base: &BaseCall<'_>,
) {
    let chosen = cx.prepare(&base.caller, &base.call.to, chosen, base.method.as_deref());
    if let Some(note) = &chosen.note {
        note_before(raw, inline, note);
    }
    cx.annotate(table, None, &chosen.origin);
    if raw.get("method").is_none() {
        if let Some(m) = chosen.method.as_deref().and_then(method) {
            set_unless_inline(raw, inline, "method", Value::from(m), &chosen.origin);
            cx.annotate(table, Some("method"), &chosen.origin);
        }
    }
    for setting in &chosen.policy.settings {
        let Ok(value) = setting.value.parse::<Value>() else {
            continue;
        };
        let old = raw.get(setting.key).map(value_text);
        set_unless_inline(raw, inline, setting.key, value, &setting.origin);
        if let (Some(old), false) = (old, inline) {
            if let Some(v) = raw.get_mut(setting.key).and_then(Item::as_value_mut) {
                let suffix = format!(
                    " # {}; the base had {}",
                    comment(&setting.origin.to_string()),
                    comment(&old)
                );
                v.decor_mut().set_suffix(suffix);
            }
        }
        cx.annotate(table, Some(setting.key), &setting.origin);
    }
    if inline {
        raw.fmt();
    }
}

/// The attempts of the application's own client policy on a base call, if the base writes one
/// (a timeout, a request timeout, retries or a hedge); `None`: the call has none of its own.
fn app_attempts(raw: &dyn TableLike, call: &Call) -> Option<u32> {
    let own = raw.get("timeout").is_some()
        || raw.get("request_timeout").is_some()
        || call.max_attempts > 1
        || raw.get("hedge").is_some();
    own.then_some(call.max_attempts.max(1))
}

/// `services.NAME` of the document, made explicit so that a key added to it is written.
fn service_table<'d>(doc: &'d mut DocumentMut, name: &str) -> Option<&'d mut dyn TableLike> {
    let item = doc
        .get_mut("services")?
        .as_table_like_mut()?
        .get_mut(name)?;
    if let Item::Table(table) = item {
        table.set_implicit(false);
    }
    item.as_table_like_mut()
}

/// Call `index` of service `name` (of its endpoint `endpoint`), and whether it is an inline
/// table.
fn call_table<'d>(
    doc: &'d mut DocumentMut,
    name: &str,
    endpoint: Option<&str>,
    index: usize,
) -> Option<(&'d mut dyn TableLike, bool)> {
    let mut holder = doc
        .get_mut("services")?
        .as_table_like_mut()?
        .get_mut(name)?;
    if let Some(endpoint) = endpoint {
        holder = holder
            .as_table_like_mut()?
            .get_mut("endpoints")?
            .as_table_like_mut()?
            .get_mut(endpoint)?;
    }
    match holder.as_table_like_mut()?.get_mut("calls")? {
        Item::ArrayOfTables(tables) => Some((tables.get_mut(index)?, false)),
        Item::Value(Value::Array(array)) => {
            Some((array.get_mut(index)?.as_inline_table_mut()?, true))
        }
        _ => None,
    }
}

/// Sets `key` to `value` with its origin as a comment (none in an inline table, which cannot
/// hold one), keeping the key's place when it is there.
fn set_unless_inline(
    table: &mut dyn TableLike,
    inline: bool,
    key: &str,
    value: Value,
    origin: &Origin,
) {
    if inline {
        let mut value = value;
        value.decor_mut().clear();
        match table.get_mut(key) {
            Some(Item::Value(old)) => {
                *value.decor_mut() = old.decor().clone();
                *old = value;
            }
            _ => {
                table.insert(key, Item::Value(value));
            }
        }
        return;
    }
    set(table, key, value, origin);
}

/// Sets `key` to `value`, followed by `# origin`.
fn set(table: &mut dyn TableLike, key: &str, mut value: Value, origin: &Origin) {
    value
        .decor_mut()
        .set_suffix(format!(" # {}", comment(&origin.to_string())));
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            value.decor_mut().set_prefix(" ");
            *old = value;
        }
        _ => {
            value.decor_mut().set_prefix(" ");
            table.insert(key, Item::Value(value));
        }
    }
}

/// A comment line before a call's table (a call in an inline table gets none).
fn note_before(table: &mut dyn TableLike, inline: bool, note: &str) {
    if inline {
        return;
    }
    if let Some(mut key) = table.key_mut("to") {
        let prefix = key
            .leaf_decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string();
        key.leaf_decor_mut()
            .set_prefix(format!("{prefix}# {}\n", comment(note)));
    }
}

/// Sends the call through its caller's sidecar: `to` the sidecar, `endpoint` the one that
/// calls `callee`.
fn through_sidecar(
    table: &mut dyn TableLike,
    inline: bool,
    sidecar: &str,
    endpoint: &str,
    callee: &str,
) {
    let mut to = Value::from(sidecar);
    if !inline {
        to.decor_mut().set_prefix(" ");
        to.decor_mut().set_suffix(format!(
            " # was {callee:?}: through its sidecar, whose call below carries the mesh's policy"
        ));
    }
    if let Some(Item::Value(old)) = table.get_mut("to") {
        if inline {
            *to.decor_mut() = old.decor().clone();
        }
        *old = to;
    }
    let mut ep = Value::from(endpoint);
    match table.get_mut("endpoint") {
        Some(Item::Value(old)) => {
            *ep.decor_mut() = old.decor().clone();
            *old = ep;
        }
        _ => {
            if !inline {
                ep.decor_mut().set_prefix(" ");
            }
            table.insert("endpoint", Item::Value(ep));
        }
    }
}
