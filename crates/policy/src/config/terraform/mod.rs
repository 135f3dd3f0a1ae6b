//! Loading `terraform show -json` output (a plan or a state) into the same `Project` a project
//! directory gives, so that every check and explain query runs unchanged.
//!
//! The one key design decision: a value the plan leaves unknown until apply is never guessed
//! silently. The model takes Cloud Run's default (or leaves the item out) and the unknown goes
//! into `Project::unknowns` with the service it affects, so that whatever depends on it says so.
//! A computed attribute the configuration does not set is not an unknown: it will be the
//! server's default, which is what the model takes. References in the plan's `configuration`
//! resolve what is unknown but derivable (a new service account's email, the service an IAM
//! member names through `google_cloud_run_v2_service.x.id`, a `data.google_iam_policy`).
//! See docs/TERRAFORM.md.

mod edge;
mod iam;
mod network;
mod plan;
mod services;
mod val;

#[cfg(test)]
#[expect(clippy::panic, clippy::indexing_slicing, reason = "tests fail on an input that does not load")]
mod tests;

use std::sync::Arc;

use serde_json::Value;

use crate::config::diag::{ConfigError, FileCtx, LoadErrors};
use crate::model::{
    Binding, EgressConfig, IamPolicy, Listeners, Member, MemberRef, Project, Unknown, UnknownEffect, default_compute_sa,
};
use crate::source::{SourceFile, SourceRef};
use plan::{Plan, Res, Seg};

/// The project number when neither the plan nor `--project-number` gives it. It shows in the
/// default compute service account and the deterministic run.app URL, where it reads as the
/// placeholder it is.
pub const UNKNOWN_PROJECT_NUMBER: &str = "PROJECT_NUMBER";

/// What the plan cannot say and the caller can.
#[derive(Debug, Clone, Default)]
pub struct TerraformOptions {
    /// The numeric project number (a plan rarely knows it).
    pub project_number: Option<String>,
}

/// Whether `text` is `terraform show -json` output: a JSON object with `format_version` and
/// `planned_values` (a plan) or `values` (a state). Decided on the top-level keys only.
pub fn is_terraform_json(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Top {
        format_version: Option<serde::de::IgnoredAny>,
        planned_values: Option<serde::de::IgnoredAny>,
        values: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Top>(text)
        .is_ok_and(|t| t.format_version.is_some() && (t.planned_values.is_some() || t.values.is_some()))
}

/// Loads a plan or state. Either it loads, or every error found is returned.
pub fn load_terraform(file: &SourceFile, opts: &TerraformOptions) -> Result<Project, LoadErrors> {
    let ctx = FileCtx::new(&file.path, &file.text);
    let one = |e: ConfigError| LoadErrors { errors: vec![e] };
    let help = "expected the output of `terraform show -json PLANFILE` (or of `terraform show -json` for a state)";
    let doc: Value = match serde_json::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => {
            let at =
                SourceRef::new(&ctx.path, u32::try_from(e.line()).unwrap_or(0), u32::try_from(e.column()).unwrap_or(0));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            return Err(one(ctx.error(&at, format!("invalid JSON: {msg}"), help)));
        }
    };
    if doc.get("format_version").is_none() || (doc.get("planned_values").is_none() && doc.get("values").is_none()) {
        return Err(one(ctx.error(
            &ctx.whole(),
            "not a Terraform plan or state: no `format_version` and `planned_values`/`values`",
            help,
        )));
    }
    let plan = Plan::read(&doc);
    let mut l = Lower::new(ctx, &plan, opts);
    network::lower(&mut l);
    iam::service_accounts(&mut l);
    iam::secrets(&mut l);
    services::lower(&mut l);
    iam::service_policies(&mut l);
    iam::project_policy(&mut l);
    iam::service_account_policies(&mut l);
    edge::lower(&mut l);
    edge::sql(&mut l);
    let Lower { project, errs, .. } = l;
    if errs.is_empty() { Ok(project) } else { Err(LoadErrors { errors: errs }) }
}

/// The state of one load: the plan, the project being built and the errors so far.
pub(crate) struct Lower<'p, 'a> {
    pub ctx: FileCtx,
    pub plan: &'p Plan<'a>,
    pub project: Project,
    pub errs: Vec<ConfigError>,
    /// (address, attribute) of every unknown recorded, so each is recorded once.
    seen_unknowns: std::collections::BTreeSet<(String, String)>,
}

impl<'p, 'a> Lower<'p, 'a> {
    fn new(ctx: FileCtx, plan: &'p Plan<'a>, opts: &TerraformOptions) -> Self {
        let provider = |key: &str| {
            plan.provider.and_then(|p| p.get(key)).and_then(|e| e.get("constant_value")).and_then(Value::as_str)
        };
        // The project: the provider's, else the one most resources name.
        let id = provider("project")
            .map(str::to_owned)
            .or_else(|| most_common(plan, "project"))
            .unwrap_or_else(|| "PROJECT_ID".to_owned());
        let region = provider("region")
            .map(str::to_owned)
            .or_else(|| most_common(plan, "location"))
            .or_else(|| most_common(plan, "region"))
            .unwrap_or_else(|| "us-central1".to_owned());
        // A `data.google_project` (state, or read at plan time) knows the number.
        let number = opts.project_number.clone().or_else(|| {
            plan.data_of_kind("google_project")
                .find(|r| r.str("project_id").is_none_or(|p| p == id))
                .and_then(|r| val::num_or_str(r.values, "number"))
        });
        let number = number.unwrap_or_else(|| UNKNOWN_PROJECT_NUMBER.to_owned());
        let source = SourceRef::file(&ctx.path);
        let mut iam = IamPolicy::default();
        // Google's automatic Editor grant to the default compute service account: a plan
        // cannot say whether the org policy that stops it is enforced, so the default holds.
        iam.bindings.push(Binding {
            role: "roles/editor".to_owned(),
            members: vec![MemberRef {
                member: Member::ServiceAccount(default_compute_sa(&number)),
                source: source.clone(),
            }],
            condition: None,
            source: source.clone(),
            implied: true,
        });
        let project = Project {
            id,
            number,
            region,
            source,
            networks: Vec::new(),
            egress: EgressConfig::default(),
            geo: crate::armor::GeoTable::default(),
            shared_vpc: Vec::new(),
            connectors: Vec::new(),
            perimeter: None,
            load_balancers: Vec::new(),
            domain_mappings: Vec::new(),
            groups: std::collections::BTreeMap::new(),
            iam,
            service_accounts: Vec::new(),
            secrets: std::collections::BTreeMap::new(),
            run: std::collections::BTreeMap::new(),
            listeners: Listeners::default(),
            services: std::collections::BTreeMap::new(),
            armor_policies: std::collections::BTreeMap::new(),
            accepted: Vec::new(),
            rate_limit_state: None,
            trusted_issuers: Vec::new(),
            unknowns: Vec::new(),
            sql_instances: Vec::new(),
            service_account_iam: std::collections::BTreeMap::new(),
        };
        Self { ctx, plan, project, errs: Vec::new(), seen_unknowns: std::collections::BTreeSet::new() }
    }

    /// `ADDRESS.ATTR` (or the address alone) in the plan file.
    pub fn at(&self, res: &Res<'_>, attr: &str) -> SourceRef {
        let address = if attr.is_empty() { res.address.clone() } else { format!("{}.{attr}", res.address) };
        SourceRef::terraform(&self.ctx.path, address)
    }

    pub fn error(&mut self, res: &Res<'_>, attr: &str, message: String, help: &str) {
        let at = self.at(res, attr);
        let e = self.ctx.error(&at, format!("`{}`: {message}", at.address.as_deref().unwrap_or_default()), help);
        self.errs.push(e);
    }

    pub fn unknown(&mut self, res: &Res<'_>, attr: &str, service: Option<&str>, effect: UnknownEffect) {
        if !self.seen_unknowns.insert((res.address.clone(), attr.to_owned())) {
            return;
        }
        let u = Unknown {
            address: res.address.clone(),
            attribute: attr.to_owned(),
            service: service.map(str::to_owned),
            effect,
            source: self.at(res, attr),
        };
        self.project.unknowns.push(u);
    }

    /// Whether a resource belongs to this project: no `project` attribute (the provider's),
    /// an unknown one, or this project's id or number.
    pub fn ours(&self, res: &Res<'_>) -> bool {
        res.str("project").is_none_or(|p| self.project.is_self(p))
    }

    /// The resources of `kinds` that belong to this project, in plan order.
    pub fn mine(&self, kinds: &[&str]) -> Vec<&'p Res<'a>> {
        self.plan.resources.iter().filter(|r| !r.data && kinds.contains(&r.kind) && self.ours(r)).collect()
    }

    pub fn file(&self) -> &Arc<str> {
        &self.ctx.path
    }
}

fn most_common(plan: &Plan<'_>, key: &str) -> Option<String> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in plan.resources.iter().filter(|r| r.kind.starts_with("google_")) {
        if let Some(v) = r.str(key).filter(|v| !v.contains('/')) {
            *counts.entry(v).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v.to_owned())
}

/// Every attribute path the plan leaves unknown in `res`, as `a[0].b` and as the keys and
/// indices that lead to it.
pub(crate) fn unknown_paths<'a>(res: &Res<'a>) -> Vec<(String, Vec<Seg<'a>>)> {
    fn walk<'a>(v: &'a Value, path: &mut Vec<Seg<'a>>, out: &mut Vec<(String, Vec<Seg<'a>>)>) {
        match v {
            Value::Bool(true) => {
                let mut s = String::new();
                for p in path.iter() {
                    match p {
                        Seg::Index(i) => s.push_str(&format!("[{i}]")),
                        Seg::Key(k) if s.is_empty() => s.push_str(k),
                        Seg::Key(k) => {
                            s.push('.');
                            s.push_str(k);
                        }
                    }
                }
                out.push((s, path.clone()));
            }
            Value::Object(m) => {
                for (k, x) in m {
                    path.push(Seg::Key(k));
                    walk(x, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(x, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(u) = res.unknown {
        walk(u, &mut Vec::new(), &mut out);
    }
    out
}

/// Whether the plan leaves the top-level attribute `key` unknown.
pub(crate) fn unknown_attr(res: &Res<'_>, key: &str) -> bool {
    res.is_unknown(&[Seg::Key(key)])
}
