//! IAM in a plan: service accounts, secrets and their policies, service policies (v1 and v2,
//! member / binding / policy, with `data.google_iam_policy` resolved) and the project policy.
//!
//! `_iam_binding` and `_iam_policy` are authoritative in Terraform (they replace what else is
//! granted); the model takes the union of everything the plan grants, which is what holds
//! when the plan is the only writer.

use serde_json::Value;

use super::Lower;
use super::plan::{Res, Seg, last_segment};
use super::services::{V1, V2};
use super::val::{block, blocks, str_, strings};
use crate::model::{Binding, Condition, IamPolicy, Member, MemberRef, Secret, ServiceAccount, UnknownEffect};

const SA: &[&str] = &["google_service_account"];
const SECRET: &[&str] = &["google_secret_manager_secret"];
const POLICY_DATA: &[&str] = &["google_iam_policy"];

/// A service account's email: as planned, or `ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`
/// when the plan leaves it unknown (that is how Google forms it).
pub(crate) fn sa_email(l: &Lower<'_, '_>, sa: &Res<'_>) -> Option<String> {
    if let Some(e) = sa.str("email") {
        return Some(e.to_ascii_lowercase());
    }
    let id = sa.str("account_id")?;
    let project = sa.str("project").unwrap_or(&l.project.id);
    Some(format!("{id}@{project}.iam.gserviceaccount.com").to_ascii_lowercase())
}

pub(crate) fn service_accounts(l: &mut Lower<'_, '_>) {
    for r in l.mine(SA) {
        if let Some(email) = sa_email(l, r) {
            let source = l.at(r, "");
            l.project.service_accounts.push(ServiceAccount { email, source });
        }
    }
}

/// Secrets (metadata only: `google_secret_manager_secret_version` and its `secret_data` are
/// never read) and their IAM.
pub(crate) fn secrets(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    for r in l.mine(SECRET) {
        let Some(name) = r.str("secret_id") else { continue };
        let source = l.at(r, "");
        l.project.secrets.entry(name.to_owned()).or_insert_with(|| Secret {
            name: name.to_owned(),
            iam: IamPolicy::default(),
            seed: None,
            source,
        });
    }
    let kinds = [
        "google_secret_manager_secret_iam_member",
        "google_secret_manager_secret_iam_binding",
        "google_secret_manager_secret_iam_policy",
    ];
    for r in l.mine(&kinds) {
        let name = match r.str("secret_id") {
            Some(s) => Some(s.split("/secrets/").nth(1).unwrap_or(s).trim_end_matches('/').to_owned()),
            None => plan.follow(r, &["secret_id"], SECRET).and_then(|s| s.str("secret_id")).map(str::to_owned),
        };
        let Some(name) = name else {
            l.unknown(r, "secret_id", None, UnknownEffect::Secrets);
            continue;
        };
        let bindings = bindings_of(l, r, None, UnknownEffect::Secrets);
        let source = l.at(r, "");
        let secret = l.project.secrets.entry(name.clone()).or_insert_with(|| Secret {
            name,
            iam: IamPolicy::default(),
            seed: None,
            source,
        });
        secret.iam.bindings.extend(bindings);
    }
}

pub(crate) fn service_policies(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    let kinds = [
        "google_cloud_run_v2_service_iam_member",
        "google_cloud_run_v2_service_iam_binding",
        "google_cloud_run_v2_service_iam_policy",
        "google_cloud_run_service_iam_member",
        "google_cloud_run_service_iam_binding",
        "google_cloud_run_service_iam_policy",
    ];
    for r in l.mine(&kinds) {
        // v2 names the service with `name`, v1 with `service`; either may be a bare name or
        // `projects/P/locations/L/services/NAME`, or a reference unknown until apply.
        let attr = if r.kind.starts_with("google_cloud_run_v2_") { "name" } else { "service" };
        let name = match r.str(attr) {
            Some(s) => Some(last_segment(s).to_owned()),
            None => plan.follow(r, &[attr], &[V2, V1]).and_then(|s| s.str("name")).map(str::to_owned),
        };
        let Some(name) = name else {
            l.unknown(r, attr, None, UnknownEffect::Invokers);
            continue;
        };
        let bindings = bindings_of(l, r, Some(&name), UnknownEffect::Invokers);
        let source = l.at(r, "");
        match l.project.services.get_mut(&name) {
            Some(s) => {
                s.iam.bindings.extend(bindings);
                s.iam.source.get_or_insert(source);
            }
            None => {
                // A service outside the plan: nothing to attach the grant to.
                l.unknown(r, attr, None, UnknownEffect::Invokers);
            }
        }
    }
}

/// `google_service_account_iam_member` / `_binding` / `_policy`: who may act as a service
/// account or mint its tokens, on the account itself. `service_account_id` is
/// `projects/P/serviceAccounts/EMAIL`, an email, or a reference to a `google_service_account`.
pub(crate) fn service_account_policies(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    let kinds = [
        "google_service_account_iam_member",
        "google_service_account_iam_binding",
        "google_service_account_iam_policy",
    ];
    for r in l.mine(&kinds) {
        let email = match r.str("service_account_id") {
            Some(s) => Some(last_segment(s).to_ascii_lowercase()),
            None => plan.follow(r, &["service_account_id"], SA).and_then(|sa| sa_email(l, sa)),
        };
        let Some(email) = email else {
            l.unknown(r, "service_account_id", None, UnknownEffect::Identity);
            continue;
        };
        let bindings = bindings_of(l, r, None, UnknownEffect::Identity);
        let source = l.at(r, "");
        let policy = l.project.service_account_iam.entry(email).or_default();
        policy.bindings.extend(bindings);
        policy.source.get_or_insert(source);
    }
}

pub(crate) fn project_policy(l: &mut Lower<'_, '_>) {
    let kinds = ["google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"];
    for r in l.mine(&kinds) {
        let bindings = bindings_of(l, r, None, UnknownEffect::Invokers);
        l.project.iam.bindings.extend(bindings);
    }
}

/// The bindings one IAM resource grants: `role` + `member`, `role` + `members`, or
/// `policy_data` (a JSON string, or a `data.google_iam_policy` when unknown in the plan).
fn bindings_of(l: &mut Lower<'_, '_>, r: &Res<'_>, service: Option<&str>, effect: UnknownEffect) -> Vec<Binding> {
    if r.kind.ends_with("_iam_policy") {
        return policy_bindings(l, r, service, effect);
    }
    let Some(role) = r.str("role") else {
        l.unknown(r, "role", service, effect);
        return Vec::new();
    };
    let condition = condition(r.values);
    let (attr, written): (&str, Vec<&str>) = if r.kind.ends_with("_iam_member") {
        ("member", r.str("member").into_iter().collect())
    } else {
        ("members", strings(r.values, "members"))
    };
    let mut members = Vec::new();
    if written.is_empty() || super::unknown_attr(r, attr) {
        // Unknown until apply: a member naming a service account the plan creates is derived.
        let derived = derived_members(l, r, &[attr]);
        if derived.is_empty() {
            l.unknown(r, attr, service, effect);
        }
        members.extend(derived.into_iter().map(|m| MemberRef { member: m, source: l.at(r, attr) }));
    }
    for m in written {
        push_member(l, r, attr, m, &mut members);
    }
    vec![Binding { role: role.to_owned(), members, condition, source: l.at(r, "role"), implied: false }]
}

fn push_member(l: &mut Lower<'_, '_>, r: &Res<'_>, attr: &str, m: &str, out: &mut Vec<MemberRef>) {
    match Member::parse(m) {
        Ok(member) => out.push(MemberRef { member, source: l.at(r, attr) }),
        Err(e) => l.error(r, attr, e, "write members as `serviceAccount:NAME@PROJECT.iam.gserviceaccount.com`, `user:EMAIL`, `group:EMAIL`, `allUsers`"),
    }
}

/// `serviceAccount:EMAIL` for each `google_service_account` the attribute references.
fn derived_members(l: &Lower<'_, '_>, r: &Res<'_>, attr: &[&str]) -> Vec<Member> {
    r.references(attr)
        .into_iter()
        .filter_map(|x| l.plan.referenced(r, x, SA))
        .filter_map(|sa| sa_email(l, sa))
        .map(Member::ServiceAccount)
        .fold(Vec::new(), |mut acc, m| {
            if !acc.contains(&m) {
                acc.push(m);
            }
            acc
        })
}

fn condition(v: &Value) -> Option<Condition> {
    let c = block(v, "condition")?;
    let expression = str_(c, "expression")?.to_owned();
    let title = str_(c, "title").or_else(|| str_(c, "description")).unwrap_or_default().to_owned();
    Some(Condition { title, expression })
}

fn policy_bindings(l: &mut Lower<'_, '_>, r: &Res<'_>, service: Option<&str>, effect: UnknownEffect) -> Vec<Binding> {
    if let Some(text) = r.str("policy_data") {
        return policy_json(l, r, text);
    }
    let Some(data) = l.plan.follow(r, &["policy_data"], POLICY_DATA) else {
        l.unknown(r, "policy_data", service, effect);
        return Vec::new();
    };
    if let Some(text) = data.str("policy_data") {
        return policy_json(l, data, text);
    }
    // Read at apply: the data source's own `binding` blocks, with members that reference
    // service accounts derived from them.
    let mut out = Vec::new();
    for (i, b) in blocks(data.values, "binding").iter().enumerate() {
        let attr = format!("binding[{i}]");
        let Some(role) = str_(b, "role") else {
            l.unknown(data, &format!("{attr}.role"), service, effect);
            continue;
        };
        let mut members = Vec::new();
        let written = strings(b, "members");
        for m in &written {
            push_member(l, data, &format!("{attr}.members"), m, &mut members);
        }
        if written.is_empty() {
            // `binding` is a set: the plan's order is not the configuration's, so the block is
            // found by its role when the role is written as a constant.
            let ci = data.config_block(&[Seg::Key("binding")], "role", role).unwrap_or(i);
            let path = [Seg::Key("binding"), Seg::Index(ci), Seg::Key("members")];
            let derived: Vec<Member> = data
                .references_at(&path)
                .into_iter()
                .filter_map(|x| l.plan.referenced(data, x, SA))
                .filter_map(|sa| sa_email(l, sa))
                .map(Member::ServiceAccount)
                .collect();
            if derived.is_empty() {
                l.unknown(data, &format!("{attr}.members"), service, effect);
            }
            let at = l.at(data, &format!("{attr}.members"));
            members.extend(derived.into_iter().map(|m| MemberRef { member: m, source: at.clone() }));
        }
        out.push(Binding {
            role: role.to_owned(),
            members,
            condition: condition(b),
            source: l.at(data, &format!("{attr}.role")),
            implied: false,
        });
    }
    out
}

/// `policy_data`: `{"bindings": [{"role", "members", "condition"}]}`.
fn policy_json(l: &mut Lower<'_, '_>, r: &Res<'_>, text: &str) -> Vec<Binding> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        l.error(
            r,
            "policy_data",
            "is not an IAM policy in JSON".to_owned(),
            "use `data.google_iam_policy.NAME.policy_data`",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, b) in blocks(&doc, "bindings").iter().enumerate() {
        let Some(role) = str_(b, "role") else { continue };
        let at = format!("policy_data.bindings[{i}]");
        let mut members = Vec::new();
        for m in strings(b, "members") {
            push_member(l, r, &format!("{at}.members"), m, &mut members);
        }
        let condition = b.get("condition").and_then(|c| {
            Some(Condition {
                title: str_(c, "title").or_else(|| str_(c, "description")).unwrap_or_default().to_owned(),
                expression: str_(c, "expression")?.to_owned(),
            })
        });
        out.push(Binding {
            role: role.to_owned(),
            members,
            condition,
            source: l.at(r, &format!("{at}.role")),
            implied: false,
        });
    }
    out
}
