//! `trust:` in moat.yaml: other ID-token issuers the front door trusts. Checked here (issuer
//! form, one key source, email domains, algorithms) so a typo is a `file:line` error at load;
//! fetching keys is the server's job.

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::diag::{ConfigError, FileCtx};
use crate::model::trust::{JwksLocation, TrustAlgorithm, TrustedIssuer};

/// `trust: {issuers: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    #[serde(default)]
    pub issuers: Vec<Spanned<RawTrustedIssuer>>,
}

/// `trust.issuers[]: {issuer, jwks_url | jwks_file, email_domains, algorithms}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedIssuer {
    pub issuer: Spanned<String>,
    #[serde(default)]
    pub jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    pub email_domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub algorithms: Vec<Spanned<String>>,
}

/// moat's own issuer: its keys are the project's, never configured here.
const OWN_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

pub(crate) fn lower_trust(ctx: &FileCtx, raw: Spanned<RawTrust>, errs: &mut Vec<ConfigError>) -> Vec<TrustedIssuer> {
    let mut out: Vec<TrustedIssuer> = Vec::new();
    for i in raw.value.issuers {
        let source = ctx.at(&i.referenced);
        if let Some(t) = lower_issuer(ctx, source, i.value, errs) {
            if out.iter().any(|o| o.issuer == t.issuer) {
                errs.push(ctx.error(
                    &t.source,
                    format!("issuer `{}` is listed twice under `trust.issuers`", t.issuer),
                    "keep one entry per issuer",
                ));
                continue;
            }
            out.push(t);
        }
    }
    out
}

fn lower_issuer(
    ctx: &FileCtx,
    source: crate::source::SourceRef,
    raw: RawTrustedIssuer,
    errs: &mut Vec<ConfigError>,
) -> Option<TrustedIssuer> {
    let before = errs.len();
    let issuer = raw.issuer.value.clone();
    let at_issuer = ctx.at(&raw.issuer.referenced);
    if OWN_ISSUERS.contains(&issuer.as_str()) {
        errs.push(ctx.error(
            &at_issuer,
            format!("`{issuer}` is moat's own issuer"),
            "moat always trusts the tokens it issues; list only other issuers under `trust.issuers`",
        ));
    } else if !valid_https_url(&issuer) {
        errs.push(ctx.error(
            &at_issuer,
            format!("issuer `{issuer}` is not an https URL"),
            "write the exact `iss` of the issuer's tokens, e.g. `https://keycloak.example/realms/acme` (OpenID Connect issuers are https URLs)",
        ));
    }
    let keys = match (raw.jwks_url, raw.jwks_file) {
        (Some(u), None) => {
            let url = u.value.trim().to_owned();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url_host(&url).is_none() {
                errs.push(ctx.error(
                    &ctx.at(&u.referenced),
                    format!("`jwks_url: {url}` is not an http or https URL with a host"),
                    "give the issuer's JWKS URL, e.g. `https://keycloak.example/realms/acme/protocol/openid-connect/certs`",
                ));
            }
            JwksLocation::Url(url)
        }
        (None, Some(f)) => JwksLocation::File(PathBuf::from(f.value.trim())),
        _ => {
            errs.push(ctx.error(
                &source,
                format!("issuer `{issuer}` needs exactly one of `jwks_url` and `jwks_file`"),
                "name where its signing keys are: `jwks_url: https://...` or `jwks_file: PATH` (relative to moat.yaml)",
            ));
            JwksLocation::Url(String::new())
        }
    };
    let mut email_domains = Vec::new();
    for d in raw.email_domains {
        let domain = d.value.trim().to_ascii_lowercase();
        let bad = domain.is_empty()
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if bad {
            errs.push(ctx.error(
                &ctx.at(&d.referenced),
                format!("`{}` is not a domain name", d.value),
                "list bare domains, e.g. `example.com`: verified emails `@example.com` of this issuer become `user:` principals",
            ));
        } else if domain == "gserviceaccount.com" || domain.ends_with(".gserviceaccount.com") {
            errs.push(ctx.error(
                &ctx.at(&d.referenced),
                format!("`{domain}` is Google's service-account domain"),
                "only moat's own issuer names service accounts; remove it (this issuer's tokens then name `principal://` members)",
            ));
        } else if !email_domains.contains(&domain) {
            email_domains.push(domain);
        }
    }
    let mut algorithms = Vec::new();
    for a in raw.algorithms {
        let alg = match a.value.as_str() {
            "RS256" => TrustAlgorithm::Rs256,
            "ES256" => TrustAlgorithm::Es256,
            other => {
                errs.push(ctx.error(
                    &ctx.at(&a.referenced),
                    format!("`{other}` is not an algorithm moat verifies"),
                    "use `RS256` (the default) or `ES256`",
                ));
                continue;
            }
        };
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        algorithms.push(TrustAlgorithm::Rs256);
    }
    (errs.len() == before).then_some(TrustedIssuer { issuer, keys, email_domains, algorithms, source })
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

fn valid_https_url(s: &str) -> bool {
    s.starts_with("https://") && url_host(s).is_some() && !s.contains(char::is_whitespace)
}
