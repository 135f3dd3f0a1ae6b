//! What the metadata server sends back, in one place: answers and refusals become status, body
//! and headers here and nowhere else, and every response (errors included) leaves through
//! [`stamp`], which adds `Metadata-Flavor: Google` and makes sure a `Content-Type` is present.
//! google-auth's ping needs the first and `_metadata.get` raises `KeyError` without the second.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// GCE labels plain values `application/text` (spec/cloudrun.md §3.3).
pub(crate) const TEXT: &str = "application/text";
pub(crate) const JSON: &str = "application/json";
/// The identity endpoint answers `text/html` on GCE; google-auth only needs "not JSON".
pub(crate) const JWT: &str = "text/html; charset=utf-8";
/// Error bodies are one line of text, as the reference emulator (Go `http.Error`) sends them.
const ERROR: &str = "text/plain; charset=utf-8";

/// A successful answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Text(String),
    Json(serde_json::Value),
    /// A signed JWT, sent bare. Only [`Reply::jwt`] builds it.
    Jwt(HeaderSafe),
}

/// A token that has been checked to hold only the characters a JWT or an opaque bearer token
/// may contain: never CR, LF or anything else that could split a header or a log line.
#[derive(Debug)]
pub(crate) struct HeaderSafe(String);

impl HeaderSafe {
    pub(crate) fn check(token: String) -> Result<Self, Refusal> {
        let safe = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'='));
        if safe {
            Ok(Self(token))
        } else {
            Err(Refusal::Internal("an issued token holds characters a token may not".into()))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Reply {
    pub(crate) fn jwt(token: String) -> Result<Self, Refusal> {
        HeaderSafe::check(token).map(Reply::Jwt)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (content_type, body) = match self {
            Reply::Text(t) => (TEXT, t),
            Reply::Json(v) => (JSON, v.to_string()),
            Reply::Jwt(t) => (JWT, t.0),
        };
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    }
}

/// Why a request gets no answer. Each variant is one thing the caller can fix.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The `Host` is not a metadata server name (DNS rebinding, or a misdirected request).
    HostNotAllowed(String),
    /// The request went through a proxy (`X-Forwarded-For` / `Forwarded`).
    Forwarded,
    MissingFlavor,
    WrongFlavor,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    BadRequest(String),
    BodyTooLarge {
        limit: usize,
    },
    Internal(String),
    /// No token could be minted (the system RNG failed). Unlike [`Refusal::Internal`] the
    /// reason is sent: it holds no detail a caller could use, and it tells the operator what
    /// to look at.
    CannotMint(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = match &self {
            Refusal::HostNotAllowed(_) => {
                "this is a metadata server: address it as metadata.google.internal".to_owned()
            }
            Refusal::Forwarded => "request refused: it carries a forwarding header".to_owned(),
            Refusal::MissingFlavor => "Missing required header \"Metadata-Flavor\": \"Google\"".to_owned(),
            Refusal::WrongFlavor | Refusal::NotFound => "not found".to_owned(),
            Refusal::MethodNotAllowed { .. } => "method not allowed".to_owned(),
            Refusal::BadRequest(why) => why.clone(),
            Refusal::BodyTooLarge { limit } => format!("request body larger than {limit} bytes"),
            Refusal::Internal(_) => "internal error".to_owned(),
            Refusal::CannotMint(why) => why.clone(),
        };
        let status = match &self {
            Refusal::HostNotAllowed(_) => StatusCode::MISDIRECTED_REQUEST,
            Refusal::Forwarded | Refusal::MissingFlavor => StatusCode::FORBIDDEN,
            Refusal::WrongFlavor | Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Internal(_) | Refusal::CannotMint(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // Details go to the log, not to the caller (the Host may be a rebinding page's).
        match &self {
            Refusal::Internal(why) | Refusal::CannotMint(why) => {
                tracing::error!(reason = %why, "metadata request failed")
            }
            Refusal::HostNotAllowed(host) => {
                tracing::warn!(host = %host, "metadata request for a foreign Host refused")
            }
            Refusal::Forwarded => tracing::warn!("forwarded metadata request refused"),
            other => tracing::debug!(refusal = ?other, "metadata request refused"),
        }
        let mut response = (status, [(header::CONTENT_TYPE, ERROR)], format!("{body}\n")).into_response();
        if let Refusal::MethodNotAllowed { allow } = self {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// The headers every metadata response carries, whoever built it (a handler, a refusal, or
/// axum itself).
pub(crate) async fn stamp(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert("metadata-flavor", HeaderValue::from_static("Google"));
    h.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static(ERROR));
    // What GCE sends; neither matters to a metadata client, both matter to a browser.
    h.insert("x-xss-protection", HeaderValue::from_static("0"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_cannot_be_minted_is_a_500_that_says_why() {
        let r = Refusal::CannotMint("cannot mint an access token: the system random number generator failed".into())
            .into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes), Some(ERROR.as_bytes()));
    }

    #[test]
    fn tokens_with_line_breaks_are_never_sent() {
        assert!(HeaderSafe::check("eyJh.eyJi.c2ln".into()).is_ok());
        assert!(HeaderSafe::check("ya29.abc_-~+/=".into()).is_ok());
        for bad in ["a\r\nb", "a\nb", "a b", "", "a\"b", "é"] {
            assert!(HeaderSafe::check(bad.into()).is_err(), "{bad:?}");
        }
    }
}
