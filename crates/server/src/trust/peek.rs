//! The one thing read from a token before its signature is checked: `iss`, to pick the
//! issuer's verifier. Nothing else from the unverified token is used, and the issuer only
//! indexes the configured table: it never becomes a URL (J31).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_crypto::VerifyError;
use serde::Deserialize;

#[derive(Deserialize)]
struct Unverified {
    // A duplicate `iss` member is a serde error: refused like the verifier refuses it.
    iss: Option<serde_json::Value>,
}

/// The unverified `iss` of `token`, parsed within `max_token_bytes` with the verifier's
/// strict base64url rules.
pub(crate) fn issuer(token: &str, max_token_bytes: usize) -> Result<String, VerifyError> {
    if token.len() > max_token_bytes {
        return Err(VerifyError::TooLarge);
    }
    let dots = token.bytes().filter(|&b| b == b'.').count();
    if dots == 4 {
        return Err(VerifyError::Nested);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), 2) = (parts.next(), parts.next(), dots) else {
        return Err(VerifyError::Malformed("not three dot-separated segments"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| VerifyError::Malformed("payload is not base64url"))?;
    // serde would also read a struct from a JSON array: only an object is claims.
    let not_object = VerifyError::Malformed("claims are not a JSON object");
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_object);
    }
    let claims: Unverified = serde_json::from_slice(&bytes).map_err(|_| not_object)?;
    match claims.iss {
        None => Err(VerifyError::MissingClaim("iss")),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(VerifyError::InvalidClaim("iss")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(payload: &str) -> String {
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#), URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_only_a_string_iss() {
        assert_eq!(issuer(&token(r#"{"iss":"https://a","sub":"1"}"#), 16384), Ok("https://a".to_owned()));
        assert_eq!(issuer(&token(r#"{"sub":"1"}"#), 16384), Err(VerifyError::MissingClaim("iss")));
        assert_eq!(issuer(&token(r#"{"iss":7}"#), 16384), Err(VerifyError::InvalidClaim("iss")));
    }

    #[test]
    fn refuses_what_the_verifier_refuses() {
        let dup = token(r#"{"iss":"https://a","iss":"https://b"}"#);
        assert!(matches!(issuer(&dup, 16384), Err(VerifyError::Malformed(_))));
        assert!(matches!(issuer(&token("[1]"), 16384), Err(VerifyError::Malformed(_))));
        assert!(matches!(issuer("a.b", 16384), Err(VerifyError::Malformed(_))));
        assert_eq!(issuer("a.b.c.d.e", 16384), Err(VerifyError::Nested));
        let padded = format!("{}=", token(r#"{"iss":"https://a"}"#).split('.').nth(1).unwrap_or_default());
        assert!(matches!(issuer(&format!("e30.{padded}.c2ln"), 16384), Err(VerifyError::Malformed(_))));
        assert_eq!(issuer(&token(r#"{"iss":"https://a"}"#), 10), Err(VerifyError::TooLarge));
    }
}
