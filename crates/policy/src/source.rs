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
///
/// Items loaded from a Terraform plan or state also carry the resource address as the user
/// wrote it (module prefixes and `count`/`for_each` indices included) plus the attribute, e.g.
/// `module.api.google_cloud_run_v2_service.svc["eu"].ingress`: that is what a Terraform user
/// searches for, since plan JSON is one line and has no positions worth pointing at. `file` is
/// then the plan file, or the `.tf` file when the plan's `configuration` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    pub file: Arc<str>,
    /// 1-based line; 0 when the item has no position of its own (an implied default).
    pub line: u32,
    pub column: u32,
    /// The Terraform resource address (and attribute path) the item came from; `None` for
    /// project-directory files.
    pub address: Option<Arc<str>>,
}

impl SourceRef {
    pub fn new(file: &Arc<str>, line: u32, column: u32) -> Self {
        Self { file: Arc::clone(file), line, column, address: None }
    }

    /// An item of a Terraform plan or state: `address` in `file` (no line: plan JSON has none
    /// that help a reader).
    pub fn terraform(file: &Arc<str>, address: impl Into<Arc<str>>) -> Self {
        Self { file: Arc::clone(file), line: 0, column: 0, address: Some(address.into()) }
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
    /// A Terraform item shows its address (`google_cloud_run_v2_service.api.ingress`), with the
    /// `.tf` position after it when one is known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.address, self.line) {
            (Some(a), 0) => write!(f, "{a}"),
            (Some(a), line) => write!(f, "{a} ({}:{line})", self.file),
            (None, 0) => write!(f, "{}", self.file),
            (None, line) => write!(f, "{}:{line}", self.file),
        }
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
