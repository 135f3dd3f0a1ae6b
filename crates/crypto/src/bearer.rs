//! Which header carries the credential (spec/cloudrun.md §2.7, J26), and the signature
//! stripping applied to the header that was verified before it reaches the container.

/// The credential found in the chosen header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A bearer token is a secret: never print it.
        match self {
            Self::Bearer(t) => write!(f, "Bearer(<{} bytes>)", t.len()),
        }
    }
}

/// A credential header the front door cannot interpret. Both map to 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the request has more than one `{0}` header: send exactly one")]
    Duplicate(&'static str),
    #[error("the `{0}` header is malformed: send `Bearer TOKEN`")]
    Malformed(&'static str),
}

pub const X_SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";
pub const AUTHORIZATION: &str = "authorization";

/// Chooses the credential header like Cloud Run: `X-Serverless-Authorization` wins when present
/// and `Authorization` is then left untouched for the application. Takes every value of each
/// header, in order, so duplicates are visible.
///
/// Returns `Ok(None)` when there is no credential, or when the chosen header uses another
/// scheme (`Basic`, a custom one): that is "no token", not a bad token.
pub fn select_credential<'a>(
    x_serverless_authorization: &[&'a str],
    authorization: &[&'a str],
) -> Result<Option<(&'static str, Credential<'a>)>, HeaderError> {
    let (name, values) = if !x_serverless_authorization.is_empty() {
        (X_SERVERLESS_AUTHORIZATION, x_serverless_authorization)
    } else if !authorization.is_empty() {
        (AUTHORIZATION, authorization)
    } else {
        return Ok(None);
    };
    let [value] = values else {
        return Err(HeaderError::Duplicate(name));
    };
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if scheme.is_empty() {
        return Err(HeaderError::Malformed(name));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    // Bytes, not chars: every ASCII whitespace or control byte is at most 0x20 or 0x7F (and no
    // byte of a multi-byte character is). A fold without early exit, which the compiler turns
    // into a vector loop: it runs over a ~1 KB token on every request.
    if token.is_empty() || token.bytes().fold(false, |bad, b| bad | (b <= b' ') | (b == 0x7f)) {
        return Err(HeaderError::Malformed(name));
    }
    Ok(Some((name, Credential::Bearer(token))))
}

/// The marker Cloud Run puts in place of the signature of the header it verified.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// `<header>.<payload>.SIGNATURE_REMOVED_BY_GOOGLE`: the container can read the claims but
/// cannot replay the token. `None` when the token is not a three-segment JWS.
pub fn strip_signature(token: &str) -> Option<String> {
    // Exactly two dots; what is before the second one is kept (one copy, no formatting: this
    // runs for every verified request).
    let mut dots = token.match_indices('.').map(|(at, _)| at);
    let (Some(_), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return None;
    };
    let signed = token.get(..=second)?;
    let mut out = String::with_capacity(signed.len() + SIGNATURE_REMOVED.len());
    out.push_str(signed);
    out.push_str(SIGNATURE_REMOVED);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Want = Result<Option<(&'static str, &'static str)>, HeaderError>;

    /// The byte scan refuses exactly the characters the char-wise rule it replaced did.
    #[test]
    fn token_character_rule_is_the_char_rule() {
        for c in (0u8..=0x7f).map(char::from).chain(['é', '€', '\u{85}', '\u{a0}']) {
            let header = format!("Bearer a{c}b");
            let refused = matches!(select_credential(&[], &[&header]), Err(HeaderError::Malformed(_)));
            assert_eq!(refused, c.is_ascii_whitespace() || c.is_ascii_control(), "{:?}", c);
        }
    }

    /// J26 (library part). The gateway test (later issue) adds: the container receives the
    /// untouched `Authorization` header when `X-Serverless-Authorization` was verified, and the
    /// verified header arrives with its signature stripped.
    #[test]
    fn j26_token_location() {
        let cases: &[(&str, &[&str], &[&str], Want)] = &[
            ("nothing", &[], &[], Ok(None)),
            ("authorization only", &[], &["Bearer aaa"], Ok(Some((AUTHORIZATION, "aaa")))),
            (
                "both: x-serverless wins, authorization untouched",
                &["Bearer xsa"],
                &["Bearer app-token"],
                Ok(Some((X_SERVERLESS_AUTHORIZATION, "xsa"))),
            ),
            (
                "both, authorization duplicated: not looked at",
                &["Bearer xsa"],
                &["Bearer a", "Bearer b"],
                Ok(Some((X_SERVERLESS_AUTHORIZATION, "xsa"))),
            ),
            ("two authorization headers", &[], &["Bearer a", "Bearer b"], Err(HeaderError::Duplicate(AUTHORIZATION))),
            (
                "two x-serverless headers",
                &["Bearer a", "Bearer a"],
                &[],
                Err(HeaderError::Duplicate(X_SERVERLESS_AUTHORIZATION)),
            ),
            ("lower-case scheme", &[], &["bearer tok"], Ok(Some((AUTHORIZATION, "tok")))),
            ("upper-case scheme", &[], &["BEARER tok"], Ok(Some((AUTHORIZATION, "tok")))),
            ("extra spaces", &[], &["Bearer   tok  "], Ok(Some((AUTHORIZATION, "tok")))),
            ("basic is no token", &[], &["Basic dXNlcjpwYXNz"], Ok(None)),
            ("basic in x-serverless: no token, authorization ignored", &["Basic x"], &["Bearer t"], Ok(None)),
            ("custom scheme", &[], &["Token abc"], Ok(None)),
            ("empty bearer", &[], &["Bearer"], Err(HeaderError::Malformed(AUTHORIZATION))),
            ("bearer and spaces", &[], &["Bearer    "], Err(HeaderError::Malformed(AUTHORIZATION))),
            ("empty header", &[""], &[], Err(HeaderError::Malformed(X_SERVERLESS_AUTHORIZATION))),
            ("token with a space", &[], &["Bearer a b"], Err(HeaderError::Malformed(AUTHORIZATION))),
            ("bearer-ish scheme", &[], &["Bearerx tok"], Ok(None)),
        ];
        for (name, xsa, authz, want) in cases {
            let got = select_credential(xsa, authz).map(|o| o.map(|(h, Credential::Bearer(t))| (h, t)));
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn strip_signature_replaces_the_third_segment() {
        assert_eq!(strip_signature("aGVhZA.cGF5.c2ln").as_deref(), Some("aGVhZA.cGF5.SIGNATURE_REMOVED_BY_GOOGLE"));
        assert_eq!(strip_signature("a.b"), None);
        assert_eq!(strip_signature("a.b.c.d.e"), None);
        assert_eq!(strip_signature("a.b.c.d"), None);
        assert_eq!(strip_signature("abc"), None);
        // Empty segments are kept as they are (the verifier refuses such tokens earlier).
        assert_eq!(strip_signature("a.b.").as_deref(), Some("a.b.SIGNATURE_REMOVED_BY_GOOGLE"));
        assert_eq!(strip_signature("..").as_deref(), Some("..SIGNATURE_REMOVED_BY_GOOGLE"));
    }

    #[test]
    fn credential_debug_hides_the_token() {
        let s = format!("{:?}", Credential::Bearer("secret-token"));
        assert!(!s.contains("secret-token"), "{s}");
    }
}
