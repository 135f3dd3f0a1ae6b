//! The one error type of policy loading: where (file:line:column), what, and what to do.

use std::fmt;
use std::sync::Arc;

use crate::source::SourceRef;

/// One problem in a security policy file. Nothing is loaded when any is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[diagnostic(code(moat::armor))]
pub struct ArmorError {
    pub file: Arc<str>,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: u32,
    pub column: u32,
    pub message: String,
    #[help]
    pub help: Option<String>,
}

impl ArmorError {
    pub fn source_ref(&self) -> SourceRef {
        SourceRef::new(&self.file, self.line, self.column)
    }
}

impl fmt::Display for ArmorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}
