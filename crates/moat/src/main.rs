//! The moat command line. Thin: parse arguments, call one subcommand, map its result to an
//! exit status.

mod check;
mod exit;
mod explain;
mod project_dir;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// moat: the Cloud Run security model as real software.
#[derive(Debug, Parser)]
#[command(name = "moat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Who can reach which service by which path, and which layer stops the rest.
    Explain(explain::Args),
    /// Report the misconfigurations the Cloud Run hardening guides warn about.
    Check(check::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Check(args) => check::run(args),
    };
    status.into()
}
