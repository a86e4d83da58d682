//! The imported graph as JSON: the TOML converted (same structure, same keys), each table that
//! holds imported values with a `source` object naming the origin of each (`policy` for a
//! call's policy as a whole: its route).

use serde_json::{Map, Value};

use super::{Annotation, Table};

/// `text` (an imported graph) as JSON with a `source` per imported value.
pub(super) fn convert(text: &str, annotations: &[Annotation]) -> Value {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Value::Null;
    };
    let mut json = serde_json::to_value(table).unwrap_or(Value::Null);
    for annotation in annotations {
        let Some(object) = table_of(&mut json, &annotation.table) else {
            continue;
        };
        let key = annotation.key.as_deref().unwrap_or("policy");
        let source = object
            .entry("source")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(source) = source {
            source.insert(
                key.to_string(),
                Value::String(annotation.origin.to_string()),
            );
        }
    }
    json
}

/// The JSON object of `table`.
fn table_of<'j>(json: &'j mut Value, table: &Table) -> Option<&'j mut Map<String, Value>> {
    let services = json.get_mut("services")?;
    match table {
        Table::Service(name) => services.get_mut(name)?.as_object_mut(),
        Table::Endpoint { service, endpoint } => services
            .get_mut(service)?
            .get_mut("endpoints")?
            .get_mut(endpoint)?
            .as_object_mut(),
        Table::Call {
            service,
            endpoint,
            index,
        } => {
            let mut holder = services.get_mut(service)?;
            if let Some(endpoint) = endpoint {
                holder = holder.get_mut("endpoints")?.get_mut(endpoint)?;
            }
            holder.get_mut("calls")?.get_mut(*index)?.as_object_mut()
        }
    }
}
