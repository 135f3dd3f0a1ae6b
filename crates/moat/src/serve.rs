//! `moat serve`: the same front door as `moat up`, in front of upstreams that run elsewhere
//! (`run: {SERVICE: {url: http://HOST:PORT}}` for every service); no workloads are started.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::up::{Mode, RunOptions, run_mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// State directory (signing keys, decisions.jsonl). Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Keep rate-limit counters and bans in this Redis (`redis://HOST:PORT/DB`), shared with
    /// every replica that names it; overrides moat.yaml's `rate_limit_state.redis`.
    #[arg(long, value_name = "URL")]
    pub rate_state: Option<String>,
    /// Where the OWASP CRS rule files are, for security policies with preconfigured WAF rules
    /// (`evaluatePreconfiguredWaf`): the package root or its `rules/` directory.
    #[arg(long, value_name = "DIR", default_value = moat_waf::DEFAULT_CRS_DIR)]
    pub crs_dir: PathBuf,
}

pub fn run(args: Args) -> Exit {
    let options = RunOptions { isolate: false, rate_state: args.rate_state, crs_dir: args.crs_dir };
    run_mode(&args.project, args.state.as_deref(), Mode::Serve, options)
}
