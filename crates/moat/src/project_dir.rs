//! Reading a project directory from disk into the policy crate's `SourceFile`s.

use std::path::Path;

use miette::Diagnostic;
use moat_policy::{LoadErrors, Project, SourceFile};

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ProjectDirError {
    #[error("cannot read project directory `{dir}`: {reason}")]
    #[diagnostic(help("pass a directory that contains moat.yaml, e.g. `examples/shop`"))]
    Io { dir: String, reason: String },
    #[error("`{path}` {reason}")]
    #[diagnostic(help(
        "pass a project directory (with moat.yaml) or the output of `terraform show -json` saved as a `.json` file"
    ))]
    Input { path: String, reason: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] LoadErrors),
}

/// The files of a project directory: moat.yaml and the YAML/JSON files under services/, iam/
/// and armor/. Paths are relative with `/` separators so diagnostics read the same everywhere.
pub fn read_files(dir: &Path) -> Result<Vec<SourceFile>, ProjectDirError> {
    let io = |e: std::io::Error| ProjectDirError::Io {
        dir: dir.display().to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound { "it does not exist".to_owned() } else { e.to_string() },
    };
    let mut files = Vec::new();
    let moat = dir.join("moat.yaml");
    if moat.exists() {
        files.push(SourceFile { path: "moat.yaml".into(), text: std::fs::read_to_string(&moat).map_err(io)? });
    } else if !dir.is_dir() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    for sub in ["services", "iam", "armor"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&d).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x)) && !name.starts_with('.');
            if wanted && e.file_type().map_err(io)?.is_file() {
                files.push(SourceFile {
                    path: format!("{sub}/{name}"),
                    text: std::fs::read_to_string(e.path()).map_err(io)?,
                });
            }
        }
    }
    Ok(files)
}

pub fn load(dir: &Path) -> Result<Project, ProjectDirError> {
    let files = read_files(dir)?;
    let mut project = moat_policy::load(&files)?;
    // A trusted issuer's `jwks_file` is relative to the project directory, not to wherever
    // moat runs from; and it has to be a JWKS document now, not at the first token: a path
    // mistyped would otherwise only show as every token of that issuer refused.
    let mut errors = Vec::new();
    for i in &mut project.trusted_issuers {
        if let moat_policy::model::trust::JwksLocation::File(p) = &mut i.keys {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
            if let Some(problem) = jwks_file_problem(p)
                && let Some(file) = files.iter().find(|f| *f.path == *i.source.file)
            {
                errors.push(moat_policy::ConfigError::at(
                    file,
                    &i.source,
                    format!("issuer `{}`: `jwks_file` `{}` {problem}", i.issuer, p.display()),
                    "point `jwks_file` at the issuer's JWKS document (relative paths are relative to moat.yaml), or use `jwks_url`",
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(moat_policy::LoadErrors { errors }.into());
    }
    Ok(project)
}

/// What keeps `path` from being a JWKS document (`{"keys": [...]}`), if anything. The keys
/// themselves are checked when the front door loads them, as for `jwks_url`.
fn jwks_file_problem(path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("does not exist".to_owned()),
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.get("keys").is_some_and(serde_json::Value::is_array) => None,
        Ok(_) => Some("is not a JWKS document: it has no `keys` array".to_owned()),
        Err(e) => Some(format!("is not JSON: {e}")),
    }
}

/// What `check` and `explain` analyse: a project directory, or a `.json` file holding
/// `terraform show -json` output (a plan or a state).
pub fn load_input(path: &Path, project_number: Option<&str>) -> Result<Project, ProjectDirError> {
    if !path.is_file() {
        if project_number.is_some() {
            return Err(ProjectDirError::Input {
                path: path.display().to_string(),
                reason: "is a project directory: `--project-number` is for Terraform input, moat.yaml names the number"
                    .to_owned(),
            });
        }
        return load(path);
    }
    let input = |reason: String| ProjectDirError::Input { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| input(format!("cannot be read: {e}")))?;
    let is_json = path.extension().is_some_and(|x| x == "json");
    if !is_json || !moat_policy::config::is_terraform_json(&text) {
        return Err(input(
            "is a file, but not `terraform show -json` output (a `.json` file with `format_version` and `planned_values` or `values`)"
                .to_owned(),
        ));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let opts = moat_policy::config::TerraformOptions { project_number: project_number.map(str::to_owned) };
    Ok(moat_policy::config::load_terraform(&SourceFile { path: name, text }, &opts)?)
}
