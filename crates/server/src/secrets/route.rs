//! Which API method a request calls. Secret Manager's custom verbs (`.../versions/3:access`)
//! sit after a colon in the last path segment, which axum's path router cannot match, so the
//! path is parsed here: `/v1/projects/P[/locations/L]/secrets[/S[/versions[/V]]][:verb]`.

use hyper::Method;
use moat_secrets::{Selector, VersionState};

/// The project (and, on the regional twin of a path, the location) a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parent {
    /// As written: the project id or number.
    pub project: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretRef {
    pub parent: Parent,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRef {
    pub secret: SecretRef,
    pub version: Selector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    ListSecrets(Parent),
    CreateSecret(Parent),
    GetSecret(SecretRef),
    UpdateSecret(SecretRef),
    DeleteSecret(SecretRef),
    AddVersion(SecretRef),
    GetIamPolicy(SecretRef),
    SetIamPolicy(SecretRef),
    TestIamPermissions(SecretRef),
    ListVersions(SecretRef),
    GetVersion(VersionRef),
    Access(VersionRef),
    /// `:enable`, `:disable`, `:destroy`.
    SetState(VersionRef, VersionState),
}

impl Route {
    pub(crate) fn parent(&self) -> &Parent {
        match self {
            Self::ListSecrets(p) | Self::CreateSecret(p) => p,
            Self::GetSecret(s)
            | Self::UpdateSecret(s)
            | Self::DeleteSecret(s)
            | Self::AddVersion(s)
            | Self::GetIamPolicy(s)
            | Self::SetIamPolicy(s)
            | Self::TestIamPermissions(s)
            | Self::ListVersions(s) => &s.parent,
            Self::GetVersion(v) | Self::Access(v) | Self::SetState(v, _) => &v.secret.parent,
        }
    }

    /// The RPC's name in `google.cloud.secretmanager.v1.SecretManagerService` (error details).
    pub(crate) fn rpc(&self) -> &'static str {
        match self {
            Self::ListSecrets(_) => "ListSecrets",
            Self::CreateSecret(_) => "CreateSecret",
            Self::GetSecret(_) => "GetSecret",
            Self::UpdateSecret(_) => "UpdateSecret",
            Self::DeleteSecret(_) => "DeleteSecret",
            Self::AddVersion(_) => "AddSecretVersion",
            Self::GetIamPolicy(_) => "GetIamPolicy",
            Self::SetIamPolicy(_) => "SetIamPolicy",
            Self::TestIamPermissions(_) => "TestIamPermissions",
            Self::ListVersions(_) => "ListSecretVersions",
            Self::GetVersion(_) => "GetSecretVersion",
            Self::Access(_) => "AccessSecretVersion",
            Self::SetState(_, VersionState::Enabled) => "EnableSecretVersion",
            Self::SetState(_, VersionState::Disabled) => "DisableSecretVersion",
            Self::SetState(_, VersionState::Destroyed) => "DestroySecretVersion",
        }
    }
}

/// Why a request matches no method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoRoute {
    /// Not a Secret Manager path, or the wrong HTTP method for it: 404.
    NotFound,
    /// A Secret Manager method moat does not implement (`:rotateSecret`): 501.
    Unimplemented(String),
    /// A version that is neither `latest` nor a number: 400.
    BadVersion(String),
}

/// The method `method path` calls. `path` is the raw request path (percent-encoded).
pub(crate) fn find(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let path = percent_decode(path).ok_or(NoRoute::NotFound)?;
    let rest = path.strip_prefix("/v1/").ok_or(NoRoute::NotFound)?;
    // The verb is whatever follows the first colon of the last segment.
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (rest, verb) = match rest.get(last..).and_then(|l| l.find(':')) {
        Some(colon) => match rest.split_at_checked(last + colon) {
            Some((name, verb)) => (name, verb.strip_prefix(':')),
            None => return Err(NoRoute::NotFound),
        },
        None => (rest, None),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || s.contains(':')) {
        return Err(NoRoute::NotFound);
    }
    let (parent, tail) = match segments.as_slice() {
        ["projects", p, "locations", l, tail @ ..] => {
            (Parent { project: (*p).to_owned(), location: Some((*l).to_owned()) }, tail)
        }
        ["projects", p, tail @ ..] => (Parent { project: (*p).to_owned(), location: None }, tail),
        _ => return Err(NoRoute::NotFound),
    };
    let secret = |s: &str| SecretRef { parent: parent.clone(), secret: s.to_owned() };
    let version = |s: &str, v: &str| {
        let version = v.parse::<Selector>().map_err(|e| NoRoute::BadVersion(e.to_string()))?;
        Ok::<_, NoRoute>(VersionRef { secret: secret(s), version })
    };
    let m = method.clone();
    match (tail, verb) {
        (["secrets"], None) if m == Method::GET => Ok(Route::ListSecrets(parent)),
        (["secrets"], None) if m == Method::POST => Ok(Route::CreateSecret(parent)),
        (["secrets", s], None) => match m {
            Method::GET => Ok(Route::GetSecret(secret(s))),
            Method::PATCH => Ok(Route::UpdateSecret(secret(s))),
            Method::DELETE => Ok(Route::DeleteSecret(secret(s))),
            _ => Err(NoRoute::NotFound),
        },
        (["secrets", s], Some(verb)) => match (verb, m) {
            ("addVersion", Method::POST) => Ok(Route::AddVersion(secret(s))),
            ("getIamPolicy", Method::GET | Method::POST) => Ok(Route::GetIamPolicy(secret(s))),
            ("setIamPolicy", Method::POST) => Ok(Route::SetIamPolicy(secret(s))),
            ("testIamPermissions", Method::POST) => Ok(Route::TestIamPermissions(secret(s))),
            ("addVersion" | "getIamPolicy" | "setIamPolicy" | "testIamPermissions", _) => Err(NoRoute::NotFound),
            (other, _) => Err(NoRoute::Unimplemented(other.to_owned())),
        },
        (["secrets", s, "versions"], None) if m == Method::GET => Ok(Route::ListVersions(secret(s))),
        (["secrets", s, "versions", v], None) if m == Method::GET => Ok(Route::GetVersion(version(s, v)?)),
        (["secrets", s, "versions", v], Some(verb)) => match (verb, m) {
            ("access", Method::GET) => Ok(Route::Access(version(s, v)?)),
            ("enable", Method::POST) => Ok(Route::SetState(version(s, v)?, VersionState::Enabled)),
            ("disable", Method::POST) => Ok(Route::SetState(version(s, v)?, VersionState::Disabled)),
            ("destroy", Method::POST) => Ok(Route::SetState(version(s, v)?, VersionState::Destroyed)),
            ("access" | "enable" | "disable" | "destroy", _) => Err(NoRoute::NotFound),
            (other, _) => Err(NoRoute::Unimplemented(other.to_owned())),
        },
        _ => Err(NoRoute::NotFound),
    }
}

/// `%XX` decoding of a path; `None` for a truncated escape or bytes that are not UTF-8.
/// Secret ids, versions and verbs are ASCII, so a decoded `/` or `:` can only make a request
/// miss, never reach another resource.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn global(s: &str) -> SecretRef {
        SecretRef { parent: Parent { project: "p".into(), location: None }, secret: s.into() }
    }

    fn v(s: &str, version: Selector) -> VersionRef {
        VersionRef { secret: global(s), version }
    }

    #[test]
    fn every_method_of_the_subset() {
        let p = Parent { project: "p".into(), location: None };
        let cases: Vec<(Method, &str, Route)> = vec![
            (Method::GET, "/v1/projects/p/secrets", Route::ListSecrets(p.clone())),
            (Method::POST, "/v1/projects/p/secrets", Route::CreateSecret(p)),
            (Method::GET, "/v1/projects/p/secrets/db", Route::GetSecret(global("db"))),
            (Method::PATCH, "/v1/projects/p/secrets/db", Route::UpdateSecret(global("db"))),
            (Method::DELETE, "/v1/projects/p/secrets/db", Route::DeleteSecret(global("db"))),
            (Method::POST, "/v1/projects/p/secrets/db:addVersion", Route::AddVersion(global("db"))),
            (Method::GET, "/v1/projects/p/secrets/db:getIamPolicy", Route::GetIamPolicy(global("db"))),
            (Method::POST, "/v1/projects/p/secrets/db:getIamPolicy", Route::GetIamPolicy(global("db"))),
            (Method::POST, "/v1/projects/p/secrets/db:setIamPolicy", Route::SetIamPolicy(global("db"))),
            (Method::POST, "/v1/projects/p/secrets/db:testIamPermissions", Route::TestIamPermissions(global("db"))),
            (Method::GET, "/v1/projects/p/secrets/db/versions", Route::ListVersions(global("db"))),
            (Method::GET, "/v1/projects/p/secrets/db/versions/3", Route::GetVersion(v("db", Selector::Number(3)))),
            (Method::GET, "/v1/projects/p/secrets/db/versions/latest:access", Route::Access(v("db", Selector::Latest))),
            (
                Method::POST,
                "/v1/projects/p/secrets/db/versions/1:enable",
                Route::SetState(v("db", Selector::Number(1)), VersionState::Enabled),
            ),
            (
                Method::POST,
                "/v1/projects/p/secrets/db/versions/1:disable",
                Route::SetState(v("db", Selector::Number(1)), VersionState::Disabled),
            ),
            (
                Method::POST,
                "/v1/projects/p/secrets/db/versions/2:destroy",
                Route::SetState(v("db", Selector::Number(2)), VersionState::Destroyed),
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(find(&method, path), Ok(want), "{method} {path}");
        }
    }

    #[test]
    fn regional_twins_carry_the_location() {
        let r = find(&Method::GET, "/v1/projects/123/locations/us-central1/secrets/db/versions/latest:access").unwrap();
        let Route::Access(v) = r else { unreachable!("{r:?}") };
        assert_eq!(v.secret.parent, Parent { project: "123".into(), location: Some("us-central1".into()) });
        assert_eq!(v.secret.secret, "db");
        assert_eq!(
            find(&Method::GET, "/v1/projects/p/locations/eu/secrets"),
            Ok(Route::ListSecrets(Parent { project: "p".into(), location: Some("eu".into()) }))
        );
    }

    #[test]
    fn percent_encoded_paths_decode_first() {
        assert_eq!(
            find(&Method::GET, "/v1/projects/p/secrets/db/versions/latest%3Aaccess"),
            Ok(Route::Access(v("db", Selector::Latest)))
        );
        assert_eq!(find(&Method::GET, "/v1/projects/p/secrets/d%zz"), Err(NoRoute::NotFound));
        assert_eq!(find(&Method::GET, "/v1/projects/p/secrets/%ff"), Err(NoRoute::NotFound));
        // An encoded slash is still a separator after decoding: it can only miss.
        assert_eq!(find(&Method::GET, "/v1/projects/p/secrets/a%2Fb"), Err(NoRoute::NotFound));
    }

    #[test]
    fn what_matches_nothing() {
        let cases: &[(Method, &str, NoRoute)] = &[
            (Method::GET, "/", NoRoute::NotFound),
            (Method::GET, "/v1", NoRoute::NotFound),
            (Method::GET, "/v2/projects/p/secrets", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p", NoRoute::NotFound),
            (Method::GET, "/v1/projects//secrets", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/db/versions/", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/db/versions/1/x", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/topics/t", NoRoute::NotFound),
            (Method::PUT, "/v1/projects/p/secrets/db", NoRoute::NotFound),
            (Method::DELETE, "/v1/projects/p/secrets", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/db:addVersion", NoRoute::NotFound),
            (Method::POST, "/v1/projects/p/secrets/db/versions/1:access", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/db/versions/1:destroy", NoRoute::NotFound),
            (Method::POST, "/v1/projects/p/secrets/db/versions", NoRoute::NotFound),
            (Method::POST, "/v1/projects/p/secrets/db:rotateSecret", NoRoute::Unimplemented("rotateSecret".into())),
            (Method::POST, "/v1/projects/p/secrets/db/versions/1:frob", NoRoute::Unimplemented("frob".into())),
            (Method::GET, "/v1/projects/p/secrets:list", NoRoute::NotFound),
            (Method::GET, "/v1/projects/p/secrets/db:x:y", NoRoute::Unimplemented("x:y".into())),
        ];
        for (method, path, want) in cases {
            assert_eq!(find(method, path).as_ref(), Err(want), "{method} {path}");
        }
    }

    #[test]
    fn versions_are_latest_or_a_number_from_one() {
        for bad in ["0", "01", "-1", "+1", "x", "LATEST"] {
            let path = format!("/v1/projects/p/secrets/db/versions/{bad}:access");
            assert!(matches!(find(&Method::GET, &path), Err(NoRoute::BadVersion(_))), "{bad}");
        }
    }
}
