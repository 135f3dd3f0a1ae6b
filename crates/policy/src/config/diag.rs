//! Config diagnostics: what is wrong, where (file:line:col with the source underlined) and what
//! to do. Loading collects every error it can find before giving up, so one run shows them all.

use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

use crate::source::{SourceRef, byte_offset};

/// One problem in one input file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{location}: {message}")]
#[diagnostic(code(moat::config))]
pub struct ConfigError {
    /// `file:line:col`, or just `file` when the problem is about the file as a whole.
    pub location: String,
    pub message: String,
    #[help]
    pub help: Option<String>,
    #[source_code]
    source_code: NamedSource<Arc<String>>,
    #[label("here")]
    span: Option<SourceSpan>,
}

impl ConfigError {
    /// An error at `at` in `file`, for checks made outside the loader: the CLI reads the files a
    /// config names (`trust.issuers[].jwks_file`), which this crate, doing no I/O, cannot.
    pub fn at(file: &crate::SourceFile, at: &SourceRef, message: impl Into<String>, help: impl Into<String>) -> Self {
        FileCtx::new(&file.path, &file.text).error(at, message, help)
    }
}

/// Every problem found while loading a project. Nothing is loaded when this is returned.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("the project could not be loaded: {} error{}", .errors.len(), if .errors.len() == 1 { "" } else { "s" })]
#[diagnostic(code(moat::config), help("fix the errors below and run the command again"))]
pub struct LoadErrors {
    #[related]
    pub errors: Vec<ConfigError>,
}

/// Builds errors for one file.
#[derive(Debug, Clone)]
pub(crate) struct FileCtx {
    pub path: Arc<str>,
    pub text: Arc<String>,
}

impl FileCtx {
    pub fn new(path: &str, text: &str) -> Self {
        Self { path: Arc::from(path), text: Arc::new(text.to_owned()) }
    }

    pub fn at(&self, loc: &serde_saphyr::Location) -> SourceRef {
        SourceRef::from_location(&self.path, loc)
    }

    pub fn whole(&self) -> SourceRef {
        SourceRef::file(&self.path)
    }

    pub fn error(&self, at: &SourceRef, message: impl Into<String>, help: impl Into<String>) -> ConfigError {
        let help = help.into();
        let (location, span) = if at.line == 0 {
            (self.path.to_string(), None)
        } else {
            let offset = byte_offset(&self.text, at.line, at.column);
            (format!("{}:{}:{}", self.path, at.line, at.column), Some(SourceSpan::from((offset, 0))))
        };
        ConfigError {
            location,
            message: message.into(),
            help: (!help.is_empty()).then_some(help),
            source_code: NamedSource::new(&self.path, Arc::clone(&self.text)),
            span,
        }
    }

    /// Turns a YAML/JSON syntax or shape error into a diagnostic at its position.
    pub fn parse_error(&self, err: &serde_saphyr::Error, help: &str) -> ConfigError {
        let at = err.location().map_or_else(|| self.whole(), |loc| self.at(&loc));
        self.error(&at, strip_position(&err.without_snippet().to_string()), help)
    }
}

/// serde-saphyr prefixes messages with `error: line N column M: ` or ends them with
/// ` at line N, column M`; we print our own position.
fn strip_position(message: &str) -> String {
    let m = message.strip_prefix("error: ").unwrap_or(message);
    if let Some((_, tail)) = m.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        return tail.to_owned();
    }
    let number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, pos)) = m.rsplit_once(" at line ")
        && pos.split_once(", column ").is_some_and(|(l, c)| number(l) && number(c))
    {
        return head.to_owned();
    }
    m.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_serde_saphyr_position_prefix() {
        assert_eq!(strip_position("error: line 2 column 1: unknown field `x`"), "unknown field `x`");
        assert_eq!(strip_position("plain"), "plain");
        assert_eq!(
            strip_position("unknown field `x`, expected y at line 5, column 1"),
            "unknown field `x`, expected y"
        );
        assert_eq!(strip_position("no position at line five"), "no position at line five");
    }
}
