//! Lowering IAM policies (project, service, secret) into the model.

use crate::config::diag::{ConfigError, FileCtx};
use crate::config::raw::RawPolicy;
use crate::model::{Binding, Condition, IamPolicy, Member, MemberRef};

pub(crate) fn lower_policy(ctx: &FileCtx, raw: RawPolicy, errs: &mut Vec<ConfigError>) -> IamPolicy {
    let mut bindings = Vec::with_capacity(raw.bindings.len());
    for b in raw.bindings {
        let source = ctx.at(&b.referenced);
        let b = b.value;
        let role = b.role.value;
        if !(role.starts_with("roles/") || role.starts_with("projects/") || role.starts_with("organizations/")) {
            errs.push(ctx.error(
                &ctx.at(&b.role.referenced),
                format!("`{role}` is not an IAM role"),
                "predefined roles look like `roles/run.invoker`; custom roles like `projects/P/roles/NAME`",
            ));
            continue;
        }
        let mut members = Vec::with_capacity(b.members.len());
        for m in b.members {
            let at = ctx.at(&m.referenced);
            match Member::parse(&m.value) {
                Ok(member) => members.push(MemberRef { member, source: at }),
                Err(e) => errs.push(ctx.error(
                    &at,
                    e,
                    "write members as gcloud prints them, e.g. `serviceAccount:NAME@PROJECT.iam.gserviceaccount.com`",
                )),
            }
        }
        let condition = b.condition.map(|c| Condition {
            title: if c.title.is_empty() { c.description } else { c.title },
            expression: c.expression,
        });
        bindings.push(Binding { role, members, condition, source, implied: false });
    }
    IamPolicy { bindings, source: None }
}
