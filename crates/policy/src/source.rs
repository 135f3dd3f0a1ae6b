//! Where a config item came from: file, line and column, carried into the model so that
//! every decision reason and every finding can point at the line to change.

use std::fmt;
use std::sync::Arc;

/// One input file, as read by the caller (the policy crate never touches the file system).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the project directory, with `/` separators (`services/api.yaml`).
    pub path: String,
    pub text: String,
}

/// A position in one of the project's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    pub file: Arc<str>,
    /// 1-based line; 0 when the item has no position of its own (an implied default).
    pub line: u32,
    pub column: u32,
}

impl SourceRef {
    pub fn new(file: &Arc<str>, line: u32, column: u32) -> Self {
        Self { file: Arc::clone(file), line, column }
    }

    /// A reference to a whole file (an implied default such as a missing annotation).
    pub fn file(file: &Arc<str>) -> Self {
        Self::new(file, 0, 0)
    }

    pub(crate) fn from_location(file: &Arc<str>, loc: &serde_saphyr::Location) -> Self {
        let line = u32::try_from(loc.line()).unwrap_or(u32::MAX);
        let column = u32::try_from(loc.column()).unwrap_or(u32::MAX);
        Self::new(file, line, column)
    }
}

impl fmt::Display for SourceRef {
    /// `file:line`, the form editors and SARIF viewers jump to; just `file` for implied items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 { write!(f, "{}", self.file) } else { write!(f, "{}:{}", self.file, self.line) }
    }
}

/// Byte offset of a 1-based line/column in `text`, for diagnostics that underline source.
pub(crate) fn byte_offset(text: &str, line: u32, column: u32) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let col_bytes: usize = l.chars().take(column.saturating_sub(1) as usize).map(char::len_utf8).sum();
            return offset + col_bytes;
        }
        offset += l.len();
    }
    text.len()
}
