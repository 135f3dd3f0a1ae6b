//! Resource names: `projects/{project}/secrets/{secret}[/versions/{version}]` and their
//! regional twins `projects/{p}/locations/{l}/secrets/...`.
//!
//! PUBLIC API CONTRACT (fixed by the lead).

use crate::api::Selector;
use crate::error::SecretError;

/// A parsed secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    /// As written: a project id or number.
    pub project: String,
    pub location: Option<String>,
    pub secret: String,
}

const SECRET_FORM: &str = "`projects/PROJECT/secrets/SECRET` or `projects/PROJECT/locations/LOCATION/secrets/SECRET`";
const VERSION_FORM: &str =
    "`projects/PROJECT/secrets/SECRET/versions/VERSION` (VERSION is `latest` or a number from 1)";

/// Parses `projects/P/secrets/S` or `projects/P/locations/L/secrets/S`. Secret ids are
/// `[A-Za-z0-9_-]{1,255}`.
pub fn parse_secret_name(name: &str) -> Result<SecretName, SecretError> {
    let parts: Vec<&str> = name.split('/').collect();
    parse_parts(&parts).ok_or_else(|| bad(name, SECRET_FORM, &parts))
}

/// Parses `.../secrets/S/versions/V` (V = `latest` or a number).
pub fn parse_version_name(name: &str) -> Result<(SecretName, Selector), SecretError> {
    let parts: Vec<&str> = name.split('/').collect();
    let (secret, version) = match parts.as_slice() {
        [rest @ .., "versions", v] => (parse_parts(rest), *v),
        _ => (None, ""),
    };
    let Some(secret) = secret else {
        return Err(bad(name, VERSION_FORM, &parts));
    };
    let selector = version.parse::<Selector>().map_err(|_| {
        SecretError::InvalidArgument(format!(
            "`{name}` is not a secret version name: the version `{version}` must be `latest` or a number from 1 (expected {VERSION_FORM})"
        ))
    })?;
    Ok((secret, selector))
}

fn parse_parts(parts: &[&str]) -> Option<SecretName> {
    let (project, location, secret) = match parts {
        ["projects", p, "secrets", s] => (*p, None, *s),
        ["projects", p, "locations", l, "secrets", s] => (*p, Some(*l), *s),
        _ => return None,
    };
    if !valid_project(project) || !location.is_none_or(valid_location) || !valid_secret_id(secret) {
        return None;
    }
    Some(SecretName { project: project.to_owned(), location: location.map(str::to_owned), secret: secret.to_owned() })
}

/// Says which part is wrong, then the expected form.
fn bad(name: &str, form: &str, parts: &[&str]) -> SecretError {
    let detail = if parts.iter().any(|p| p.is_empty()) {
        "it has an empty segment".to_owned()
    } else if parts.iter().any(|p| *p == "." || *p == "..") {
        "it has a `.` or `..` segment".to_owned()
    } else if let Some(s) = secret_segment(parts).filter(|s| !valid_secret_id(s)) {
        format!("the secret id `{s}` must be 1 to 255 characters of letters, digits, `_` and `-`")
    } else {
        "its shape is wrong".to_owned()
    };
    SecretError::InvalidArgument(format!("`{name}` is not a valid resource name: {detail} (expected {form})"))
}

fn secret_segment<'a>(parts: &[&'a str]) -> Option<&'a str> {
    let i = parts.iter().position(|p| *p == "secrets")?;
    parts.get(i + 1).copied()
}

/// A project id (`my-project`, lowercase letters, digits and `-`; legacy domain-scoped ids
/// `example.com:proj` too) or a project number.
fn valid_project(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && !p.contains("..")
        && !p.starts_with(['-', '.', ':'])
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':'))
}

fn valid_location(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `id` is a valid secret id.
pub fn valid_secret_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn global_and_regional_names_parse() {
        let n = parse_secret_name("projects/123456789012/secrets/db-pass").expect("global");
        assert_eq!(n, SecretName { project: "123456789012".into(), location: None, secret: "db-pass".into() });
        let n = parse_secret_name("projects/demo/locations/europe-west1/secrets/API_key_2").expect("regional");
        assert_eq!(n.location.as_deref(), Some("europe-west1"));
        assert_eq!(n.secret, "API_key_2");
        let (n, v) = parse_version_name("projects/demo/secrets/s/versions/latest").expect("latest");
        assert_eq!((n.secret.as_str(), v), ("s", Selector::Latest));
        let (_, v) = parse_version_name("projects/demo/locations/us/secrets/s/versions/42").expect("number");
        assert_eq!(v, Selector::Number(42));
    }

    #[test]
    fn malformed_names_are_refused_with_the_expected_form() {
        for bad in [
            "",
            "projects//secrets/s",
            "projects/demo/secrets/",
            "projects/demo/secrets/a b",
            "projects/demo/secrets/../x",
            "projects/../secrets/s",
            "projects/demo/secrets/s/",
            "/projects/demo/secrets/s",
            "projects/demo/secret/s",
            "projects/demo/locations//secrets/s",
            "projects/Demo/secrets/s",
            "projects/demo/secrets/s/versions/1",
        ] {
            let e = parse_secret_name(bad).expect_err(bad);
            assert_eq!(e.status(), "INVALID_ARGUMENT", "{bad}");
            assert!(e.to_string().contains("expected `projects/PROJECT/secrets/SECRET`"), "{bad}: {e}");
        }
        let long = format!("projects/demo/secrets/{}", "a".repeat(256));
        assert!(parse_secret_name(&long).expect_err("too long").to_string().contains("1 to 255 characters"));
        for bad in [
            "projects/demo/secrets/s",
            "projects/demo/secrets/s/versions/",
            "projects/demo/secrets/s/versions/0",
            "projects/demo/secrets/s/versions/01",
            "projects/demo/secrets/s/versions/+1",
            "projects/demo/secrets/s/versions/-1",
            "projects/demo/secrets/s/versions/LATEST",
            "projects/demo/secrets//versions/1",
        ] {
            let e = parse_version_name(bad).expect_err(bad);
            assert!(e.to_string().contains("`projects/PROJECT/secrets/SECRET/versions/VERSION`"), "{bad}: {e}");
        }
    }
}
