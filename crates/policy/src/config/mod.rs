//! Loading a project directory's files into a `Project`: parse with spans, lower, validate.
//!
//! The caller reads the files (this crate does no I/O) and hands them over as `SourceFile`s
//! with paths relative to the project directory. Either every file loads and validates, or the
//! caller gets every error found and no project: nothing is ever half-loaded.

mod diag;
mod iam;
mod parallel;
mod project;
mod rate_state;
pub(crate) mod raw;
mod service;
pub mod terraform;
mod trust;

use serde::de::DeserializeOwned;

use diag::FileCtx;
pub use diag::{ConfigError, LoadErrors};
pub use terraform::{TerraformOptions, UNKNOWN_PROJECT_NUMBER, is_terraform_json, load_terraform};

use crate::model::Project;
use crate::source::SourceFile;

/// Parses a YAML or JSON file. JSON is also YAML, so one parser gives spans for both; JSON
/// files are syntax-checked by serde_json first so that a missing comma reads as a JSON error.
#[expect(clippy::result_large_err, reason = "one error per bad file, on the way out; boxing buys nothing")]
fn parse<T: DeserializeOwned>(ctx: &FileCtx, help: &str) -> Result<T, ConfigError> {
    if ctx.path.ends_with(".json")
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&ctx.text)
    {
        let line = u32::try_from(e.line()).unwrap_or(0);
        let column = u32::try_from(e.column()).unwrap_or(0);
        let at = crate::source::SourceRef::new(&ctx.path, line, column);
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        return Err(ctx.error(&at, format!("invalid JSON: {msg}"), help));
    }
    serde_saphyr::from_str::<T>(&ctx.text).map_err(|e| ctx.parse_error(&e, help))
}

/// Whether a service file is the v1 (Knative) form rather than v2: v1 exports start with
/// `apiVersion`/`kind`/`metadata` at the top level. Decided by a scan, not a parse, because
/// large projects have thousands of service files.
fn is_knative(ctx: &FileCtx) -> bool {
    if ctx.path.ends_with(".json") {
        // Top-level keys of a JSON object are indented by at most one level in any printer
        // output; a v2 service has no `apiVersion` or `metadata` key anywhere.
        return ctx.text.contains("\"apiVersion\"") || ctx.text.contains("\"metadata\"");
    }
    ctx.text.lines().any(|l| l.starts_with("apiVersion:") || l.starts_with("kind:") || l.starts_with("metadata:"))
}

fn stem<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let name = path.strip_prefix(dir)?.strip_prefix('/')?;
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let (stem, ext) = name.rsplit_once('.')?;
    matches!(ext, "yaml" | "yml" | "json").then_some(stem)
}

/// Loads a project from its files. `files` must contain `moat.yaml`; `services/*`, `iam/*.json`
/// and `armor/*.json` are picked up; anything else is ignored.
pub fn load(files: &[SourceFile]) -> Result<Project, LoadErrors> {
    let mut errs = Vec::new();
    let Some(moat) = files.iter().find(|f| f.path == "moat.yaml") else {
        let ctx = FileCtx::new("moat.yaml", "");
        return Err(LoadErrors {
            errors: vec![ctx.error(
                &ctx.whole(),
                "the project directory has no `moat.yaml`",
                "create one with at least `project: {id: ID, number: NUMBER, region: REGION}`; see examples/shop",
            )],
        });
    };
    let ctx = FileCtx::new(&moat.path, &moat.text);
    let raw: raw::RawMoat = match parse(&ctx, "see docs/MODEL.md and examples/shop/moat.yaml for the format") {
        Ok(r) => r,
        Err(e) => return Err(LoadErrors { errors: vec![e] }),
    };
    let mut project = project::lower_project(&ctx, raw, &mut errs);

    // Security policies: armor/NAME.json, every one parsed and compiled, referenced or not, so
    // a broken policy fails the load before a load balancer starts using it.
    let armor_files: Vec<&SourceFile> =
        files.iter().filter(|f| stem(&f.path, "armor").is_some() && f.path.ends_with(".json")).collect();
    let parsed = parallel::map(&armor_files, |f| (*f, crate::armor::SecurityPolicy::from_json(&f.text, &f.path)));
    for (f, policy) in parsed {
        let name = stem(&f.path, "armor").unwrap_or_default().to_owned();
        match policy {
            Ok(p) => {
                project.armor_policies.insert(name, std::sync::Arc::new(p));
            }
            Err(es) => {
                let ctx = FileCtx::new(&f.path, &f.text);
                errs.extend(es.into_iter().map(|e| {
                    let help = e.help.clone().unwrap_or_default();
                    ctx.error(&e.source_ref(), e.message, help)
                }));
            }
        }
    }

    // Services: parsed and lowered in parallel, then merged in file order.
    let service_files: Vec<&SourceFile> = files.iter().filter(|f| stem(&f.path, "services").is_some()).collect();
    let lowered = parallel::map(&service_files, |f| {
        let ctx = FileCtx::new(&f.path, &f.text);
        let help = "expected `gcloud run services describe NAME --format yaml` output, or the v2 JSON form";
        let mut errs = Vec::new();
        let svc = if is_knative(&ctx) {
            parse::<raw::KService>(&ctx, help).map(|k| service::lower_v1(&ctx, k, &project, &mut errs))
        } else {
            parse::<raw::V2Service>(&ctx, help).map(|v| service::lower_v2(&ctx, v, &project, &mut errs))
        };
        match svc {
            Ok(s) => (ctx, s, errs),
            Err(e) => {
                errs.push(e);
                (ctx, None, errs)
            }
        }
    });
    let mut services = Vec::with_capacity(lowered.len());
    for (ctx, s, mut e) in lowered {
        errs.append(&mut e);
        services.extend(s.map(|s| (ctx, s)));
    }
    for (ctx, s) in services {
        if let Some(first) = project.services.get(&s.name) {
            errs.push(ctx.error(
                &s.source,
                format!("service `{}` is defined twice (first in {})", s.name, first.source),
                "keep one file per service",
            ));
        } else {
            project.services.insert(s.name.clone(), s);
        }
    }

    // Service IAM policies: iam/SERVICE.json, parsed in parallel.
    let iam_files: Vec<&SourceFile> = files.iter().filter(|f| stem(&f.path, "iam").is_some()).collect();
    let parsed = parallel::map(&iam_files, |f| {
        let ctx = FileCtx::new(&f.path, &f.text);
        let raw =
            parse::<raw::RawPolicy>(&ctx, "expected `gcloud run services get-iam-policy NAME --format json` output");
        (ctx, raw)
    });
    for (ctx, raw) in parsed {
        let name = stem(&ctx.path, "iam").unwrap_or_default().to_owned();
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        let mut policy = iam::lower_policy(&ctx, raw, &mut errs);
        policy.source = Some(ctx.whole());
        match project.services.get_mut(&name) {
            Some(s) => s.iam = policy,
            None => errs.push(ctx.error(
                &ctx.whole(),
                format!("`{}` is the IAM policy of service `{name}`, which does not exist", ctx.path),
                "name the file after a service in services/, or remove it",
            )),
        }
    }

    let armor_names: Vec<&str> = armor_files.iter().filter_map(|f| stem(&f.path, "armor")).collect();
    validate_references(&ctx, &project, &armor_names, &mut errs);
    if errs.is_empty() { Ok(project) } else { Err(LoadErrors { errors: errs }) }
}

/// Cross-file references in moat.yaml: routes, domain mappings, run entries, security policies,
/// accepted findings.
/// `armor` names every `armor/NAME.json` present, loaded or not (a policy that failed to load
/// has its own errors; it is not also reported missing).
fn validate_references(ctx: &FileCtx, project: &Project, armor: &[&str], errs: &mut Vec<ConfigError>) {
    let known = |s: &str| project.services.contains_key(s);
    let names = || project.services.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
    for lb in &project.load_balancers {
        for r in &lb.routes {
            if !known(&r.service) {
                errs.push(ctx.error(
                    &r.source,
                    format!(
                        "load balancer `{}` routes `{}` to service `{}`, which does not exist",
                        lb.name, r.path, r.service
                    ),
                    format!("route to one of: {}", names()),
                ));
            }
        }
        if let Some(policy) = &lb.security_policy
            && !armor.contains(&policy.as_str())
        {
            errs.push(ctx.error(
                &lb.source,
                format!(
                    "load balancer `{}` uses security policy `{policy}`, but there is no `armor/{policy}.json`",
                    lb.name
                ),
                "export it with `gcloud compute security-policies describe NAME --format json > armor/NAME.json`",
            ));
        }
    }
    for d in &project.domain_mappings {
        if !known(&d.service) {
            errs.push(ctx.error(
                &d.source,
                format!("domain `{}` maps to service `{}`, which does not exist", d.domain, d.service),
                format!("map it to one of: {}", names()),
            ));
        }
    }
    for a in &project.accepted {
        if let Some(s) = a.service.as_deref().filter(|s| !known(s)) {
            errs.push(ctx.error(
                &a.source,
                format!("`accept` names service `{s}`, which does not exist"),
                format!("use one of: {}, or leave `service` out to accept every `{}` finding", names(), a.rule),
            ));
        }
    }
    for (name, r) in &project.run {
        if !known(name) {
            errs.push(ctx.error(
                &r.source,
                format!("`run.{name}` names a service that does not exist"),
                format!("use one of: {}", names()),
            ));
        }
    }
}
