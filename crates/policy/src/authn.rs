//! Authentication for invocation (spec/cloudrun.md §2.6): who is calling, and was the token
//! made for this service? Signature, issuer and lifetime are verified before this (by the
//! crypto crate); here only the audience and the identity claims matter.

use crate::decision::{Decision, Layer, Reason, Stage};
use crate::model::Service;
use crate::request::{Principal, TokenFacts};

/// The audiences a token for `service` may carry: every run.app URL (tag URLs included) and
/// every custom audience.
pub fn accepted_audiences(service: &Service) -> Vec<String> {
    let mut out = service.urls.clone();
    for t in &service.tags {
        out.extend(service.tag_urls(&t.tag));
    }
    out.extend(service.custom_audiences.value.iter().cloned());
    out
}

/// `https://host` and `https://host/` are the same audience; any other path is not.
fn same_audience(token_aud: &str, accepted: &str) -> bool {
    let t = token_aud.strip_suffix('/').unwrap_or(token_aud);
    let a = accepted.strip_suffix('/').unwrap_or(accepted);
    t == a
}

pub fn audience_ok(aud: &str, service: &Service) -> bool {
    accepted_audiences(service).iter().any(|a| same_audience(aud, a))
}

pub fn authenticate(token: Option<&TokenFacts>, service: &Service) -> Stage<Principal> {
    let Some(token) = token else {
        return Ok((
            Principal::Anonymous,
            vec![Reason::new("token.none", "no ID token: the caller is anonymous", None)],
        ));
    };
    let who = &token.principal;
    if !token.email_verified {
        return Err(Decision::deny(
            Layer::Authentication,
            Some(401),
            vec![Reason::new("token.email_unverified", format!("the token of {who} has `email_verified` false"), None)],
        ));
    }
    match token.audiences.iter().find(|a| audience_ok(a, service)) {
        Some(aud) => Ok((
            who.clone(),
            vec![Reason::new(
                "token.audience_ok",
                format!("the ID token of {who} has audience `{aud}`, which `{}` accepts", service.name),
                if service.custom_audiences.value.iter().any(|c| same_audience(aud, c)) {
                    Some(&service.custom_audiences.source)
                } else {
                    Some(&service.source)
                },
            )],
        )),
        None => Err(Decision::deny(
            Layer::Authentication,
            Some(401),
            vec![Reason::new(
                "token.audience_mismatch",
                format!(
                    "the ID token's audience `{}` is not one of `{}`'s URLs or custom audiences ({})",
                    token.audiences.join("`, `"),
                    service.name,
                    accepted_audiences(service).join(", ")
                ),
                Some(&service.custom_audiences.source),
            )],
        )),
    }
}
