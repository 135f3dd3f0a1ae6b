//! `moat check`: run every rule on a project and report the findings as human text, JSON or
//! SARIF 2.1.0. The rules live in `moat_policy::check`; this module only loads, renders and
//! maps the result to an exit status.

mod human;
mod json;
mod sarif;

use std::path::{Component, Path, PathBuf};

use moat_policy::check::{Finding, Severity, fails, run_all};

use crate::exit::{Exit, report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

/// The lowest severity that fails the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Info,
    Low,
    Medium,
    High,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Info => Self::Info,
            FailOn::Low => Self::Low,
            FailOn::Medium => Self::Medium,
            FailOn::High => Self::High,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml), or a Terraform plan or state as
    /// `terraform show -json` prints it (a `.json` file).
    pub project: PathBuf,
    /// The project number, for Terraform input (a plan rarely knows it; without it the
    /// default compute service account reads `PROJECT_NUMBER-compute@...`).
    #[arg(long)]
    pub project_number: Option<String>,
    /// human: grouped by service, with the fix; json: the same content; sarif: SARIF 2.1.0 for
    /// code scanning.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Exit 1 when a finding at or above this severity is not accepted in moat.yaml.
    #[arg(long, value_enum, default_value_t = FailOn::Low)]
    pub fail_on: FailOn,
}

/// What the renderers need besides the findings.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub findings: &'a [Finding],
    pub fail_on: Severity,
    /// The project directory as given, relative to the working directory when possible, with
    /// `/` separators: finding paths are joined to it so that they open from where moat ran
    /// (and, in CI, from the repository root).
    pub base: String,
    /// The project's values unknown until apply (Terraform plans; empty otherwise).
    pub unknowns: &'a [moat_policy::model::Unknown],
}

impl Report<'_> {
    /// `base/file`, the path of a finding's file as the user reaches it.
    pub fn path(&self, file: &str) -> String {
        if self.base.is_empty() { file.to_owned() } else { format!("{}/{file}", self.base) }
    }

    /// Where a finding points: `base/file:line`, or for Terraform input the resource address
    /// and the file it is in.
    pub fn location(&self, at: &moat_policy::SourceRef) -> String {
        match (&at.address, at.line) {
            (Some(a), 0) => format!("{a} ({})", self.path(&at.file)),
            (Some(a), line) => format!("{a} ({}:{line})", self.path(&at.file)),
            (None, _) => self.path(&at.to_string()),
        }
    }

    /// `ADDRESS.ATTRIBUTE` of every unknown value the finding's service depends on.
    pub fn depends_on(&self, f: &Finding) -> Vec<String> {
        let Some(service) = f.service.as_deref() else { return Vec::new() };
        self.unknowns
            .iter()
            .filter(|u| u.matters() && u.service.as_deref() == Some(service))
            .map(|u| u.path())
            .collect()
    }

    pub fn failing(&self) -> usize {
        self.findings.iter().filter(|f| fails(f, self.fail_on)).count()
    }

    pub fn accepted(&self) -> usize {
        self.findings.iter().filter(|f| f.accepted.is_some()).count()
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }
}

pub fn run(args: Args) -> Exit {
    let project = match crate::project_dir::load_input(&args.project, args.project_number.as_deref()) {
        Ok(p) => p,
        Err(e) => return report(e),
    };
    let findings = run_all(&project);
    // A plan file's findings name the file itself, so paths join to its directory.
    let base = if args.project.is_file() { args.project.parent().unwrap_or(Path::new("")) } else { &args.project };
    let report = Report {
        findings: &findings,
        fail_on: args.fail_on.into(),
        base: base_path(base),
        unknowns: &project.unknowns,
    };
    let out = match args.format {
        Format::Human => human::render(&report),
        Format::Json => json::render(&report),
        Format::Sarif => sarif::render(&report),
    };
    print!("{out}");
    if report.failing() > 0 { Exit::Findings } else { Exit::Clean }
}

/// The project path for display and SARIF URIs: relative to the working directory when it is
/// under it, without `.` components, with `/` separators.
fn base_path(project: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let rel = match cwd.as_deref() {
        Some(cwd) if project.is_absolute() => project.strip_prefix(cwd).unwrap_or(project),
        _ => project,
    };
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::RootDir => parts.push(String::new()),
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    match parts.as_slice() {
        [root] if root.is_empty() => "/".to_owned(),
        _ => parts.join("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_relative_and_slashed() {
        let cases = [("examples/shop", "examples/shop"), ("./examples/shop/", "examples/shop"), (".", "")];
        for (given, shown) in cases {
            assert_eq!(base_path(Path::new(given)), shown, "{given}");
        }
        let here = std::env::current_dir().map(|d| d.join("examples/x")).unwrap_or_default();
        assert_eq!(base_path(&here), "examples/x");
    }
}
