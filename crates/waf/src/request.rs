//! The request as the WAF sees it, and the collections rules read (`ARGS`, `REQUEST_COOKIES`,
//! `REQUEST_HEADERS`, ...), parsed once per request.
//!
//! What is parsed, and what is not (see docs/WAF.md "What is inspected"):
//! - query string arguments (`&`-separated, `+` and `%XX` decoded, as ModSecurity does);
//! - `application/x-www-form-urlencoded` bodies, and bodies without a `Content-Type`, as
//!   arguments;
//! - `application/json` bodies as arguments (names `json.a.b`) when JSON parsing is on;
//! - every body, whatever its type, as `REQUEST_BODY`, and a body not parsed into arguments also
//!   as one argument named `body` (Cloud Armor inspects "the full content of a request body as a
//!   uniform string" unless JSON parsing is on);
//! - not parsed: multipart parts (`FILES`), XML (`XML:/*` has no values).

/// One request: the head as received and the body prefix the policy inspects.
#[derive(Debug, Clone, Default)]
pub struct WafRequest {
    pub method: String,
    /// The request target as sent (`/path?query`), not decoded.
    pub uri: String,
    /// `HTTP/1.1`.
    pub protocol: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, already cut to the inspection limit.
    pub body: Vec<u8>,
    /// Parse `application/json` bodies into arguments.
    pub json: bool,
}

/// The argument name an unparsed body is inspected under.
pub const UNPARSED_BODY: &str = "body";

/// A named value of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: Vec<u8>,
}

/// The parsed collections of one request.
#[derive(Debug, Clone, Default)]
pub struct Collections {
    pub args_get: Vec<Entry>,
    pub args_post: Vec<Entry>,
    pub cookies: Vec<Entry>,
    pub headers: Vec<Entry>,
    pub request_filename: Vec<u8>,
    pub request_basename: Vec<u8>,
    pub query_string: Vec<u8>,
    pub request_line: Vec<u8>,
    /// `URLENCODED`, `JSON`, `MULTIPART`, `XML` or empty.
    pub reqbody_processor: &'static str,
}

impl Collections {
    pub fn parse(request: &WafRequest) -> Collections {
        let (path, query) = match request.uri.split_once('?') {
            Some((p, q)) => (p, q),
            None => (request.uri.as_str(), ""),
        };
        // An absolute-form target (`http://host/path`) names the same file as its path.
        let path = strip_authority(path);
        // Percent-decoded, as libmodsecurity 3 fills REQUEST_FILENAME (933151 relies on it:
        // `/array_diff%20foo%20%28` must show its `(`); `+` stays a `+` in a path.
        let filename = percent_decode(path.as_bytes());
        let basename = filename.rsplit(|b| *b == b'/').next().unwrap_or_default().to_vec();
        let headers: Vec<Entry> =
            request.headers.iter().map(|(n, v)| Entry { name: n.clone(), value: v.clone() }).collect();
        let content_type = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| String::from_utf8_lossy(&h.value).to_ascii_lowercase())
            .unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim().to_owned();
        let (mut args_post, processor) = if request.body.is_empty() {
            (Vec::new(), "")
        } else if mime == "application/x-www-form-urlencoded" || mime.is_empty() {
            // No Content-Type at all: read as a form, so leaving the header out cannot hide
            // arguments from inspection.
            (parse_args(&request.body), "URLENCODED")
        } else if request.json && (mime == "application/json" || mime.ends_with("+json")) {
            match serde_json::from_slice::<serde_json::Value>(&request.body) {
                Ok(v) => {
                    let mut out = Vec::new();
                    flatten_json("json", &v, &mut out);
                    (out, "JSON")
                }
                Err(_) => (Vec::new(), "JSON"),
            }
        } else if mime.starts_with("multipart/") {
            (Vec::new(), "MULTIPART")
        } else if mime.ends_with("/xml") || mime.ends_with("+xml") {
            (Vec::new(), "XML")
        } else {
            (Vec::new(), "")
        };
        // A body not parsed into arguments (JSON without JSON parsing, XML, multipart, anything
        // else) is inspected whole, "as a uniform string" (Cloud Armor's content-parsing docs):
        // the argument rules see it as one value named `body`. This is why Google recommends
        // JSON parsing against false positives: without it the raw JSON text is inspected.
        if args_post.is_empty() && !request.body.is_empty() {
            args_post.push(Entry { name: UNPARSED_BODY.to_owned(), value: request.body.clone() });
        }
        let cookies = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| parse_cookies(&h.value))
            .collect();
        let request_line = format!("{} {} {}", request.method, request.uri, request.protocol).into_bytes();
        Collections {
            args_get: parse_args(query.as_bytes()),
            args_post,
            cookies,
            headers,
            request_filename: filename,
            request_basename: basename,
            query_string: query.as_bytes().to_vec(),
            request_line,
            reqbody_processor: processor,
        }
    }
}

fn strip_authority(path: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) =
            path.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).and(path.get(scheme.len()..))
        {
            return rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/");
        }
    }
    path
}

/// `a=1&b=2`: names and values `+`/`%XX`-decoded (invalid escapes kept as written).
pub fn parse_args(text: &[u8]) -> Vec<Entry> {
    text.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
                None => (pair, &[][..]),
            };
            Entry { name: String::from_utf8_lossy(&url_decode(name)).into_owned(), value: url_decode(value) }
        })
        .collect()
}

/// `a=1; b=2`: split on `;`, leading spaces trimmed, values as sent.
fn parse_cookies(header: &[u8]) -> Vec<Entry> {
    header
        .split(|b| *b == b';')
        .map(|c| {
            let start = c.iter().position(|b| *b != b' ').unwrap_or(c.len());
            c.get(start..).unwrap_or_default()
        })
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (name, value) = match c.iter().position(|b| *b == b'=') {
                Some(i) => (c.get(..i).unwrap_or_default(), c.get(i + 1..).unwrap_or_default()),
                None => (c, &[][..]),
            };
            Entry { name: String::from_utf8_lossy(name).into_owned(), value: value.to_vec() }
        })
        .collect()
}

fn flatten_json(prefix: &str, value: &serde_json::Value, out: &mut Vec<Entry>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_json(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_json(&format!("{prefix}.array_{i}"), v, out);
            }
        }
        Value::String(s) => out.push(Entry { name: prefix.to_owned(), value: s.as_bytes().to_vec() }),
        Value::Null => out.push(Entry { name: prefix.to_owned(), value: Vec::new() }),
        other => out.push(Entry { name: prefix.to_owned(), value: other.to_string().into_bytes() }),
    }
}

/// `%XX` decoded, `+` kept; a `%` not followed by two hex digits stays.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    decode(input, false)
}

/// `+` → space and `%XX` decoded; a `%` not followed by two hex digits stays.
pub fn url_decode(input: &[u8]) -> Vec<u8> {
    decode(input, true)
}

fn decode(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (input.get(i + 1).and_then(hex), input.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, ct: &str, body: &str) -> WafRequest {
        WafRequest {
            method: "POST".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![
                ("Content-Type".into(), ct.as_bytes().to_vec()),
                ("Cookie".into(), b"a=1; b=x%20y; flag".to_vec()),
            ],
            body: body.as_bytes().to_vec(),
            json: true,
        }
    }

    #[test]
    fn parses_collections() {
        let c = Collections::parse(&request(
            "/dir/file.php?x=1+2&y=%27&z",
            "application/x-www-form-urlencoded",
            "p=%3Cs%3E",
        ));
        let get: Vec<_> = c.args_get.iter().map(|e| (e.name.as_str(), e.value.as_slice())).collect();
        assert_eq!(get, vec![("x", &b"1 2"[..]), ("y", b"'"), ("z", b"")]);
        assert_eq!(c.args_post.first().map(|e| e.value.as_slice()), Some(&b"<s>"[..]));
        assert_eq!(c.reqbody_processor, "URLENCODED");
        assert_eq!(c.request_basename, b"file.php");
        assert_eq!(c.query_string, b"x=1+2&y=%27&z");
        let cookies: Vec<_> = c.cookies.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(cookies, vec!["a", "b", "flag"]);
    }

    #[test]
    fn json_and_absolute_form() {
        let c = Collections::parse(&request(
            "http://h.example/a/b?q=1",
            "application/json",
            r#"{"a":{"b":"x"},"c":[1,"y"]}"#,
        ));
        let names: Vec<_> = c.args_post.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["json.a.b", "json.c.array_0", "json.c.array_1"]);
        assert_eq!(c.request_filename, b"/a/b");
        assert_eq!(url_decode(b"%zz%4"), b"%zz%4");
    }
}
