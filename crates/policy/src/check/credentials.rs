//! MOAT006: a credential written into a plain env var, where anyone who can read the service
//! (`run.services.get`, the console, every export and Terraform state) can read it too.
//!
//! Three signals, strongest first: the value has the format of a known key (provider prefixes,
//! PEM private keys, service account key JSON, a URL with a password in it); the variable's
//! name says it holds a credential; the value is a long, high-entropy token. Messages name the
//! variable and the signal, never the value.

use std::sync::LazyLock;

use regex::Regex;

use crate::check::{Finding, Rule, Severity};
use crate::model::{EnvValue, Project};

pub(crate) const MOAT006: Rule = Rule {
    id: "MOAT006",
    name: "PlaintextSecretInEnv",
    title: "plaintext secret in an env var",
    severity: Severity::High,
    explanation: "A literal env var value is part of the service's configuration: every principal with `run.services.get` (Cloud Run Viewer, project Viewer), every `gcloud run services describe`, every export and every Terraform state file shows it. It cannot be rotated without a deploy and is not audited when read.",
    fix: "Store the value in Secret Manager, grant the runtime service account `roles/secretmanager.secretAccessor` on that secret, and reference it with `--update-secrets NAME=SECRET:VERSION`; then rotate the exposed credential.",
    check,
};

/// Why a value is taken for a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The value has the format of a known kind of key.
    Format(&'static str),
    /// The variable's name says it holds a credential.
    Name,
    /// A long token with high Shannon entropy.
    Entropy,
}

const FORMATS: &[(&str, &str)] = &[
    ("a PEM private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    ("a service account key", r#""private_key"\s*:"#),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    ("a GitHub token", r"\b(?:gh[pousr]_[0-9A-Za-z]{36,}|github_pat_[0-9A-Za-z_]{40,})\b"),
    ("a GitLab token", r"\bglpat-[0-9A-Za-z_\-]{20,}\b"),
    ("a Slack token", r"\bxox[abposr]-[0-9A-Za-z\-]{10,}"),
    ("a Stripe secret key", r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}\b"),
    ("a SendGrid API key", r"\bSG\.[0-9A-Za-z_\-]{16,}\.[0-9A-Za-z_\-]{16,}\b"),
    ("a JSON web token", r"\beyJ[0-9A-Za-z_\-]{8,}\.eyJ[0-9A-Za-z_\-]{8,}\.[0-9A-Za-z_\-]{8,}"),
    ("a URL with a password in it", r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@"),
];

/// The patterns, compiled once; a pattern that fails to compile is dropped (a test checks
/// they all compile).
static COMPILED: LazyLock<Vec<(&'static str, Regex)>> =
    LazyLock::new(|| FORMATS.iter().filter_map(|(what, re)| Regex::new(re).ok().map(|r| (*what, r))).collect());

/// Words that make a variable name a credential's.
const CREDENTIAL_WORDS: &[&str] =
    &["PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "APIKEY", "CREDENTIAL", "CREDENTIALS", "PRIVATEKEY"];
/// Adjacent word pairs that do the same (`API_KEY`, `PRIVATE_KEY`, `ACCESS_KEY`...).
const CREDENTIAL_PAIRS: &[(&str, &str)] = &[
    ("API", "KEY"),
    ("PRIVATE", "KEY"),
    ("ACCESS", "KEY"),
    ("SECRET", "KEY"),
    ("SIGNING", "KEY"),
    ("ENCRYPTION", "KEY"),
    ("AUTH", "KEY"),
    ("DB", "PASS"),
];
/// A last word that makes the variable about a credential rather than the credential itself
/// (`TOKEN_URL`, `SECRET_NAME`, `PASSWORD_FILE`, `ACCESS_KEY_ID`).
const NOT_THE_VALUE: &[&str] = &[
    "URL",
    "URI",
    "ENDPOINT",
    "HOST",
    "PORT",
    "FILE",
    "PATH",
    "DIR",
    "NAME",
    "ID",
    "TTL",
    "EXPIRY",
    "EXPIRES",
    "LIFETIME",
    "TIMEOUT",
    "LENGTH",
    "LEN",
    "SIZE",
    "TYPE",
    "HEADER",
    "VERSION",
    "ENABLED",
    "DISABLED",
    "REF",
    "ISSUER",
    "AUDIENCE",
    "SCOPE",
    "SCOPES",
    "MODE",
    "FORMAT",
    "ALGORITHM",
    "PROJECT",
    "REGION",
    "FIELD",
    "PARAM",
];

fn name_says_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    if words.last().is_some_and(|w| NOT_THE_VALUE.contains(w)) {
        return false;
    }
    words.iter().any(|w| CREDENTIAL_WORDS.contains(w))
        || words.windows(2).any(|p| matches!(p, [a, b] if CREDENTIAL_PAIRS.contains(&(*a, *b))))
}

/// Values a credential-named variable may hold without being a credential: flags, numbers,
/// file paths and resource names.
fn harmless(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "none" | "null")
        || v.bytes().all(|b| b.is_ascii_digit())
        || v.starts_with('/')
        || v.starts_with("projects/")
}

/// Shannon entropy in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = f64::from(u32::try_from(s.len()).unwrap_or(u32::MAX));
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A token that looks generated: long, one word of base64 characters in mixed case with digits,
/// high entropy. Hex strings are left out on purpose: commit SHAs, digests and build ids are hex
/// and common in env vars; a hex credential is caught by its name.
fn high_entropy(value: &str) -> bool {
    let v = value.trim();
    let token = v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-'));
    if !token || v.len() < 20 || v.starts_with('/') {
        return false;
    }
    let digits = v.bytes().any(|b| b.is_ascii_digit());
    let mixed = v.bytes().any(|b| b.is_ascii_lowercase()) && v.bytes().any(|b| b.is_ascii_uppercase());
    mixed && digits && entropy(v) >= 4.0
}

/// Whether an env var looks like it holds a credential, and why.
pub(crate) fn classify(name: &str, value: &str) -> Option<Signal> {
    if let Some((what, _)) = COMPILED.iter().find(|(_, re)| re.is_match(value)) {
        return Some(Signal::Format(what));
    }
    if name_says_credential(name) && !harmless(value) {
        return Some(Signal::Name);
    }
    high_entropy(value).then_some(Signal::Entropy)
}

fn check(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in project.services.values() {
        // Name the container only when there is more than one: single containers are often
        // unnamed, and the loader's placeholder name would mean nothing to the reader.
        let sidecars = s.env.iter().any(|e| s.env.first().is_some_and(|f| f.container != e.container));
        for e in &s.env {
            let EnvValue::Plain(value) = &e.value else { continue };
            let Some(signal) = classify(&e.name, value) else { continue };
            let why = match signal {
                Signal::Format(what) => format!("its value has the format of {what}"),
                Signal::Name => "its name says it holds a credential".to_owned(),
                Signal::Entropy => "its value is a long random-looking token".to_owned(),
            };
            let secret = e.name.to_ascii_lowercase().replace('_', "-");
            let container = if sidecars { format!(" of container `{}`", e.container) } else { String::new() };
            out.push(MOAT006.finding(
                if signal == Signal::Entropy { Severity::Medium } else { Severity::High },
                Some(&s.name),
                format!(
                    "env var `{}`{container} holds a plaintext value and {why}: anyone who can view the service can read it",
                    e.name
                ),
                format!(
                    "move it to Secret Manager (`gcloud secrets create {secret} --data-file=-`), grant `{}` `roles/secretmanager.secretAccessor` on it, deploy with `gcloud run services update {} --update-secrets {}={secret}:1`, and rotate the credential",
                    s.service_account.value, s.name, e.name
                ),
                &e.source,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project};

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(COMPILED.len(), FORMATS.len());
    }

    #[test]
    fn classification() {
        let stripe = format!("sk_live_{}", "a1B2c3D4e5F6g7H8i9J0k1L2");
        let aws = format!("AKIA{}", "IOSFODNN7EXAMPLE");
        let google = format!("AIza{}", "SyA-1234567890abcdefghijklmnopqrstu");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY-----";
        let cases: &[(&str, &str, Option<Signal>)] = &[
            ("STRIPE", &stripe, Some(Signal::Format("a Stripe secret key"))),
            ("AWS_ACCESS_KEY_ID", &aws, Some(Signal::Format("an AWS access key id"))),
            ("MAPS", &google, Some(Signal::Format("a Google API key"))),
            ("TLS", pem, Some(Signal::Format("a PEM private key"))),
            (
                "SA_JSON",
                r#"{"type": "service_account", "private_key": "x"}"#,
                Some(Signal::Format("a service account key")),
            ),
            (
                "DATABASE_URL",
                "postgres://shop:hunter2@10.0.0.3/shop",
                Some(Signal::Format("a URL with a password in it")),
            ),
            ("DB_PASSWORD", "hunter2", Some(Signal::Name)),
            ("db_password", "correct horse battery staple", Some(Signal::Name)),
            ("API_KEY", "abc", Some(Signal::Name)),
            ("GITHUB_TOKEN", "x", Some(Signal::Name)),
            ("CLIENT_SECRET", "s3cr3t", Some(Signal::Name)),
            ("JWT_PRIVATE_KEY", "k", Some(Signal::Name)),
            ("DB_PASS", "k", Some(Signal::Name)),
            ("SESSION_KEY", "q8Zr2LmX9vT4bN7cW1yH5kP3", Some(Signal::Entropy)),
            ("SIGNING", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRg==", Some(Signal::Entropy)),
            // Not credentials.
            ("DB_USER", "shop", None),
            ("LOG_LEVEL", "info", None),
            ("API_URL", "https://api-123456789012.us-central1.run.app", None),
            ("TOKEN_URL", "https://oauth2.googleapis.com/token", None),
            ("SECRET_NAME", "projects/p/secrets/db", None),
            ("PASSWORD_FILE", "/secrets/db/password", None),
            ("AWS_ACCESS_KEY_ID_REF", "x", None),
            ("TOKEN_TTL", "3600", None),
            ("SECRET_ROTATION", "true", None),
            ("PWD", "/app", None),
            ("COMMIT_SHA", "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a", None),
            ("PASSTHROUGH", "yes", None),
            ("RELEASE", "0f5e6a2c-4f3b-11ef-9b1d-0242ac120002", None),
            ("IMAGE", "us-central1-docker.pkg.dev/p/apps/api@sha256:5c17a017781479f9a428e897b914a637", None),
            ("GREETING", "HelloWorldHelloWorld2024", None),
            ("API_KEY", "", None),
        ];
        for (name, value, expected) in cases {
            assert_eq!(classify(name, value), *expected, "{name}");
        }
    }

    #[test]
    fn findings_name_the_variable_never_the_value() {
        let value = "hunter2-is-not-a-good-password";
        let svc = format!(
            r#"{{"name": "s", "template": {{"serviceAccount": "s@p.iam.gserviceaccount.com", "containers": [{{"name": "app", "image": "i", "env": [{{"name": "DB_PASSWORD", "value": "{value}"}}, {{"name": "DB_USER", "value": "shop"}}, {{"name": "API_KEY", "valueSource": {{"secretKeyRef": {{"secret": "k", "version": "1"}}}}}}]}}]}}}}"#
        );
        let p = project("", &[("services/s.json", &svc)]);
        let found = check(&p);
        assert_eq!(ids(&found), [("MOAT006", Some("s"))]);
        for f in &found {
            assert!(f.message.starts_with("env var `DB_PASSWORD` holds a plaintext value"), "{}", f.message);
            assert!(!f.message.contains(value) && !f.fix.contains(value));
            assert_eq!((f.source.file.as_ref(), f.severity), ("services/s.json", Severity::High));
            assert!(f.source.line > 0);
        }
    }

    #[test]
    fn the_container_is_named_when_there_are_several() {
        let svc = r#"{"name": "s", "template": {"containers": [{"name": "app", "image": "i"}, {"name": "proxy", "image": "p", "env": [{"name": "PROXY_TOKEN", "value": "t0k3n"}]}]}}"#;
        let p = project("", &[("services/s.json", svc)]);
        let found = check(&p);
        assert!(found.iter().all(|f| f.message.starts_with("env var `PROXY_TOKEN` holds")), "{found:?}");
        let svc = r#"{"name": "s", "template": {"containers": [{"name": "app", "image": "i", "env": [{"name": "MODE", "value": "x"}]}, {"name": "proxy", "image": "p", "env": [{"name": "PROXY_TOKEN", "value": "t0k3n"}]}]}}"#;
        let p = project("", &[("services/s.json", svc)]);
        let found = check(&p);
        assert_eq!(found.len(), 1);
        assert!(found.iter().all(|f| f.message.starts_with("env var `PROXY_TOKEN` of container `proxy` holds")));
    }
}
