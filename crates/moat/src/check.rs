//! `moat check` (being built).

use std::path::PathBuf;

use crate::exit::{Exit, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
}

pub fn run(args: Args) -> Exit {
    match crate::project_dir::load(&args.project) {
        Ok(_) => Exit::Clean,
        Err(e) => report(e),
    }
}
