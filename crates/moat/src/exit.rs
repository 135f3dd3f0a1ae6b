//! Exit statuses, shared by every subcommand.

use std::process::ExitCode;

/// 0: ran and found nothing at or above the threshold; 1: findings (check) ; 2: could not run
/// (bad arguments, a project that does not load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Clean = 0,
    Findings = 1,
    Error = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Prints a diagnostic the way miette renders it and returns the "could not run" status.
pub fn report(err: impl Into<miette::Report>) -> Exit {
    eprintln!("{:?}", err.into());
    Exit::Error
}
