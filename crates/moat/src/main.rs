//! The moat command line. Thin: parse arguments, call one subcommand, map its result to an
//! exit status.

/// mimalloc instead of glibc's malloc: the front door and the WAF allocate and free many small
/// buffers per request on every worker thread; measured side by side in docs/BENCHMARKS.md
/// ("Preconfigured WAF", throughput).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod check;
mod exit;
mod explain;
mod identity;
mod keys;
mod project_dir;
mod reload;
mod secrets_cli;
mod secrets_rotate;
mod serve;
mod serve_identity;
mod token;
mod up;
mod waf_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// moat: the Cloud Run security model as real software.
// The doc comment above is the help text's first line, not Cargo's description, so that it
// cannot fall behind the subcommand list clap prints under it.
#[derive(Debug, Parser)]
#[command(name = "moat", version)]
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
    /// Run the project locally: the front door, metadata servers and one instance per service
    /// from `run:`, with the Cloud Run container contract.
    Up(up::Args),
    /// Run the front door in front of upstreams that run elsewhere (`run: {SERVICE: {url}}`).
    Serve(serve::Args),
    /// Serve a service account's metadata server and the project's identity endpoints (JWKS,
    /// x509 certs, OpenID discovery) on loopback, for unmodified Google clients.
    ServeIdentity(serve_identity::Args),
    /// Print an ID token signed with the project's keys, like `gcloud auth print-identity-token`.
    Token(token::Args),
    /// Manage the project's signing keys.
    Keys(keys::Args),
    /// The project's secrets, through the running moat's Secret Manager API: create, add a
    /// version (from stdin), access, list, enable/disable/destroy, IAM.
    Secrets(secrets_cli::Args),
    /// Tune Cloud Armor preconfigured WAF rules: which CRS signatures a request matches.
    Waf(waf_cli::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Check(args) => check::run(args),
        Command::Up(args) => up::run(args),
        Command::Serve(args) => serve::run(args),
        Command::ServeIdentity(args) => serve_identity::run(args),
        Command::Token(args) => token::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Secrets(args) => secrets_cli::run(args),
        // `moat waf test` has its own exit statuses (1: the CRS is missing).
        Command::Waf(args) => return waf_cli::run(args),
    };
    status.into()
}
