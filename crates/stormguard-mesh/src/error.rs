//! What can go wrong reading a file: always with the file, and the line and field where known.

/// A file that cannot be imported. The command exits 2 with it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Something wrong at a place in a file.
    #[error("{file}:{line}:{column}: {}{message}", field_prefix(field))]
    At {
        /// The file.
        file: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The field, as a path (`http[0].retries.attempts`); empty for a syntax error.
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// A file or directory that cannot be read at all.
    #[error("{path}: {message}")]
    File {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("`{field}`: ")
    }
}
