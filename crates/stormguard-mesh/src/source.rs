//! Where an imported value came from: a line of a file the user gave, or a system's default.
//!
//! Every value `import` writes carries one, printed as a comment after it in TOML and as
//! `source` in JSON, so that a reader of the graph can go back to the manifest, and `check`
//! can point its SARIF at the manifest's line instead of the generated graph's.

use std::fmt;
use std::sync::Arc;

use crate::doc::{Document, Node};

/// The origin of one imported value.
///
/// ```
/// use stormguard_mesh::source::Origin;
/// let origin = Origin::Default("Istio default");
/// assert_eq!(origin.to_string(), "Istio default");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A node of a file: `file:line`, and the field's path for a reader
    /// (`VirtualService reviews http[0].retries.attempts`).
    File {
        /// The file.
        file: Arc<str>,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is there, for a person: the resource and the field's path.
        what: String,
    },
    /// A system's default where the file says nothing ("Istio default", "Envoy default").
    Default(&'static str),
}

impl Origin {
    /// The origin of `node` in `doc`, described as `what` (the resource and field).
    pub fn at(doc: &Document, node: &Node, what: impl Into<String>) -> Origin {
        Origin::File {
            file: doc.file.clone(),
            line: node.pos.line,
            column: node.pos.column,
            what: what.into(),
        }
    }

    /// `file:line`, or the default's name: the comment's first part.
    pub fn short(&self) -> String {
        match self {
            Origin::File { file, line, .. } => format!("{file}:{line}"),
            Origin::Default(name) => (*name).to_string(),
        }
    }

    /// The file and line, for a file origin.
    pub fn file_line(&self) -> Option<(&str, u32, u32)> {
        match self {
            Origin::File {
                file, line, column, ..
            } => Some((file, *line, *column)),
            Origin::Default(_) => None,
        }
    }
}

impl fmt::Display for Origin {
    /// `file:line (what)`, or the default's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                file, line, what, ..
            } if what.is_empty() => write!(f, "{file}:{line}"),
            Origin::File {
                file, line, what, ..
            } => write!(f, "{file}:{line} ({what})"),
            Origin::Default(name) => f.write_str(name),
        }
    }
}
