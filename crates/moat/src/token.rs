//! `moat token`: an ID token signed with the project's keys, like
//! `gcloud auth print-identity-token`. Only the token goes to stdout, so `$(moat token ...)`
//! works in scripts.

use std::io::Write as _;
use std::path::PathBuf;

use moat_crypto::TokenFormat;

use crate::exit::{Exit, report};
use crate::identity::{IdentityError, known_account, load_keys, now, parse_principal, state_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// Whose token: serviceAccount:EMAIL (one the project knows) or user:EMAIL.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: String,
    /// The token's `aud`: usually the URL of the service it is sent to.
    #[arg(long)]
    pub audience: String,
    /// State directory (holds the signing keys under keys/). Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

pub fn run(args: Args) -> Exit {
    match token(&args) {
        Ok(t) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{t}").and_then(|()| out.flush()) {
                Ok(()) => Exit::Clean,
                Err(e) => report(IdentityError::Usage(format!("cannot write the token: {e}"))),
            }
        }
        Err(e) => report(e),
    }
}

fn token(args: &Args) -> Result<String, miette::Report> {
    if args.audience.is_empty() {
        return Err(IdentityError::EmptyAudience.into());
    }
    let project = crate::project_dir::load(&args.project)?;
    let account = known_account(&project, &parse_principal(&args.principal)?)?;
    let now = now();
    let keys = load_keys(&state_dir(&args.project, args.state.as_deref()), now)?;
    moat_crypto::sign_id_token(&keys, &account, &args.audience, now, TokenFormat::Standard, None)
        .map_err(|e| IdentityError::Usage(format!("cannot sign the token: {e}")).into())
}
