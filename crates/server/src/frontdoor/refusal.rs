//! The one place a refusal becomes a response: status, body and headers as Cloud Run sends
//! them (spec/cloudrun.md §1.5, §2.5). The reason never appears here; it goes to the decision
//! record.

use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::body::Body;

const HTML: &str = "text/html; charset=UTF-8";
const PLAIN: &str = "text/plain; charset=UTF-8";
/// The 401 challenge Google's front end sends (spec/cloudrun.md §2.5, [U]).
const CHALLENGE: &str = r#"Bearer error="invalid_token" error_description="The access token could not be verified""#;

/// The response for a request the front door does not pass to the workload. `path` is the
/// request's path, shown (escaped) on the 401 and 403 pages as Google does; `max_body_bytes`
/// is the body limit the 413 page states.
pub(super) fn respond(status: u16, path: &str, max_body_bytes: u64) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let path = escape(path);
    let (content_type, body) = match code {
        StatusCode::NOT_FOUND => (
            HTML,
            page("404 Page not found", "Error: Page not found", "The requested URL was not found on this server."),
        ),
        StatusCode::UNAUTHORIZED => (
            HTML,
            page(
                "401 Unauthorized",
                "Error: Unauthorized",
                &format!("Your client does not have permission to the requested URL <code>{path}</code>."),
            ),
        ),
        StatusCode::FORBIDDEN => (
            HTML,
            page(
                "403 Forbidden",
                "Error: Forbidden",
                &format!("Your client does not have permission to get URL <code>{path}</code> from this server."),
            ),
        ),
        // Upstream failures: short plain pages, as Cloud Run's own proxy sends.
        StatusCode::BAD_GATEWAY => (PLAIN, "upstream connect error\n".to_owned()),
        StatusCode::GATEWAY_TIMEOUT => (PLAIN, "upstream request timeout\n".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (PLAIN, format!("request body too large: the limit is {max_body_bytes} bytes\n"))
        }
        other => (PLAIN, format!("{other}\n")),
    };
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    }
    if code == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body is never read, so the connection cannot carry another request
        // (HTTP/2 drops the header and resets the stream instead).
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Google's error page template (spec/cloudrun.md §2.5).
fn page(title: &str, h1: &str, h2: &str) -> String {
    format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>{h1}</h1>\n<h2>{h2}</h2>\n<h2></h2>\n</body></html>\n"
    )
}

/// The request path goes into HTML: escape everything markup could hide in.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_the_path() {
        assert_eq!(escape(r#"/<script>"a'&"#), "/&lt;script&gt;&quot;a&#39;&amp;");
    }

    #[test]
    fn only_401_carries_the_challenge() {
        for status in [401, 403, 404, 413, 502, 504] {
            let r = respond(status, "/", 1024);
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers().contains_key(WWW_AUTHENTICATE), status == 401, "{status}");
            assert_eq!(r.headers().contains_key(CONNECTION), status == 413, "{status}");
        }
    }
}
