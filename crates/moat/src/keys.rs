//! `moat keys`: the project's signing keys.

use std::path::PathBuf;

use crate::exit::{Exit, report};
use crate::identity::{IdentityError, load_keys, now, state_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Publish a new signing key now; it signs two minutes later, once every running moat and
    /// its front door have it. The previous keys stay published so the tokens they signed
    /// still verify until they expire.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// State directory (holds the signing keys under keys/). Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

pub fn run(args: Args) -> Exit {
    match args.command {
        Command::Rotate(a) => match rotate(&a) {
            Ok(text) => {
                print!("{text}");
                Exit::Clean
            }
            Err(e) => report(e),
        },
    }
}

fn rotate(args: &RotateArgs) -> Result<String, miette::Report> {
    // Loading the project first catches a wrong directory before a key is written anywhere.
    crate::project_dir::load(&args.project)?;
    let now = now();
    let mut keys = load_keys(&state_dir(&args.project, args.state.as_deref()), now)?;
    // Pre-published: a key that signed at once would be unknown to a running server's front
    // door until it adopts the rotation (up to a minute), and its tokens would get 401s.
    let delay = moat_crypto::PREPUBLISH_SECS;
    let (next, at) = keys
        .rotate_prepublished(now, delay)
        .map_err(|e| IdentityError::Usage(format!("cannot rotate the signing key: {e}")))?;
    // Oldest first: the retired keys stay published until the last token they signed expires.
    let published: Vec<&str> = keys.kids().collect();
    Ok(format!(
        "signing key: {} (until {at})\nnext signing key: {next} (published now, signs from {at}, in {delay} s)\npublished keys: {}\n",
        keys.current_kid(),
        published.join(", ")
    ))
}
