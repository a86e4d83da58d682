//! Each written line's origin, found in the final text itself (with `toml_edit`'s spans), so
//! that the map is right however the text around the imported values was laid out: a base
//! graph's own lines, the header, a sidecar appended.

use toml_edit::{Document, Item, Value};

use super::{Annotation, SourceMap, Table};

/// The line of every annotated value of `text` (a call's header for its policy as a whole).
pub(super) fn map(text: &str, annotations: &[Annotation]) -> SourceMap {
    let mut sources = SourceMap::default();
    let Ok(doc) = Document::parse(text) else {
        return sources;
    };
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(at, _)| at + 1))
        .collect();
    // The number of lines that start at or before `offset`.
    let line_of = |offset: usize| starts.partition_point(|start| *start <= offset);
    for annotation in annotations {
        let Some(span) = span(doc.as_item(), &annotation.table, annotation.key.as_deref()) else {
            continue;
        };
        sources
            .lines
            .insert(line_of(span.start), annotation.origin.clone());
    }
    sources
}

/// The span of `key` in `table` of the document `root`, or of the table's header.
fn span(root: &Item, table: &Table, key: Option<&str>) -> Option<std::ops::Range<usize>> {
    let services = root.get("services")?;
    match table {
        Table::Service(name) => {
            let service = services.get(name)?.as_table_like()?;
            let (k, _) = service.get_key_value(key?)?;
            k.span()
        }
        Table::Endpoint { service, endpoint } => {
            let table = services.get(service)?.get("endpoints")?.get(endpoint)?;
            let (k, _) = table.as_table_like()?.get_key_value(key?)?;
            k.span()
        }
        Table::Call {
            service,
            endpoint,
            index,
        } => {
            let holder = services.get(service)?;
            let holder = match endpoint {
                Some(endpoint) => holder.get("endpoints")?.get(endpoint)?,
                None => holder,
            };
            match holder.get("calls")? {
                Item::ArrayOfTables(tables) => {
                    let table = tables.get(*index)?;
                    match key {
                        None => table.span(),
                        Some(key) => table.get_key_value(key)?.0.span(),
                    }
                }
                Item::Value(Value::Array(array)) => {
                    let table = array.get(*index)?.as_inline_table()?;
                    match key {
                        None => table.span(),
                        Some(key) => table.get_key_value(key)?.0.span(),
                    }
                }
                _ => None,
            }
        }
    }
}
