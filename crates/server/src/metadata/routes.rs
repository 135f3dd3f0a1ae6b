//! From a request's path and query to an answer: which node of the workload's tree it names,
//! which options it set, and what that node says under them. Token minting is delegated to
//! the shared identity state, always for the workload's own account.

use axum::extract::Query;
use axum::http::{Method, Uri};
use moat_crypto::{IssueError, TokenFormat};

use super::Server;
use super::responses::{HeaderSafe, Refusal, Reply};
use super::tree::Node;

/// What a path names.
#[derive(Debug)]
pub(crate) enum Target<'t> {
    /// `/`: the ping google-auth sends before anything else; needs no Metadata-Flavor.
    Ping,
    /// `/computeMetadata/`: the API versions.
    Versions,
    Node(&'t Node),
}

impl Target<'_> {
    pub(crate) fn needs_flavor(&self) -> bool {
        !matches!(self, Target::Ping)
    }

    /// GET everywhere (HEAD follows GET); POST only where google-auth may send it (bound
    /// tokens post a certificate chain to `token` and `identity`).
    pub(crate) fn allows(&self, method: &Method) -> Result<(), Refusal> {
        let postable = matches!(self, Target::Node(Node::Token | Node::Identity));
        let ok = method == Method::GET || method == Method::HEAD || (postable && method == Method::POST);
        if ok {
            Ok(())
        } else {
            Err(Refusal::MethodNotAllowed { allow: if postable { "GET, HEAD, POST" } else { "GET, HEAD" } })
        }
    }
}

const API_ROOT: &str = "/computeMetadata/v1";

pub(crate) fn resolve<'t>(root: &'t Node, path: &str) -> Result<Target<'t>, Refusal> {
    if path == "/" {
        return Ok(Target::Ping);
    }
    if path == "/computeMetadata" || path == "/computeMetadata/" {
        return Ok(Target::Versions);
    }
    let rest = path.strip_prefix(API_ROOT).ok_or(Refusal::NotFound)?;
    let rest = match rest {
        "" | "/" => return Ok(Target::Node(root)),
        r => r.strip_prefix('/').ok_or(Refusal::NotFound)?,
    };
    // `dir/` asks for a directory; `dir` without the slash is answered the same (Node's ping
    // is `GET /computeMetadata/v1/instance`), but `value/` names nothing.
    let (rest, wants_dir) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut node = root;
    for segment in rest.split('/') {
        let segment = percent_decode(segment).ok_or(Refusal::NotFound)?;
        if segment.is_empty() {
            return Err(Refusal::NotFound);
        }
        node = node.child(&segment).ok_or(Refusal::NotFound)?;
    }
    if wants_dir && !node.is_dir() {
        return Err(Refusal::NotFound);
    }
    Ok(Target::Node(node))
}

/// `%40` → `@`; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alt {
    Json,
    Text,
}

/// The query options metadata clients send (spec/cloudrun.md §3.2). Unknown parameters are
/// ignored like GCE does; a known one given twice is refused rather than guessed at.
#[derive(Debug, Default)]
pub(crate) struct Options {
    recursive: bool,
    alt: Option<Alt>,
    audience: Option<String>,
    format: Option<String>,
    licenses: Option<String>,
    scopes: Option<String>,
}

impl Options {
    pub(crate) fn parse(uri: &Uri) -> Result<Self, Refusal> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|_| Refusal::BadRequest("malformed query string".into()))?;
        let mut o = Options::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in &pairs {
            let key = k.as_str();
            if ["recursive", "alt", "audience", "format", "licenses", "scopes", "wait_for_change"].contains(&key) {
                if seen.contains(&key) {
                    return Err(Refusal::BadRequest(format!("query parameter `{key}` given more than once")));
                }
                seen.push(key);
            }
            match key {
                "recursive" => o.recursive = boolean(key, v)?,
                "alt" => {
                    o.alt = Some(match v.as_str() {
                        "json" => Alt::Json,
                        "text" => Alt::Text,
                        _ => return Err(Refusal::BadRequest(format!("`alt` must be `json` or `text`, not `{v}`"))),
                    });
                }
                "audience" => o.audience = Some(v.clone()),
                "format" => o.format = Some(v.clone()),
                "licenses" => o.licenses = Some(v.clone()),
                "scopes" => o.scopes = Some(v.clone()),
                // Values here never change, so a watch would never fire: say so instead of
                // answering at once and letting the client spin.
                "wait_for_change" if boolean(key, v)? => {
                    return Err(Refusal::BadRequest(
                        "`wait_for_change` is not supported: these values never change".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

fn boolean(key: &str, v: &str) -> Result<bool, Refusal> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Refusal::BadRequest(format!("`{key}` must be `true` or `false`, not `{v}`")))
    }
}

/// The answer for a resolved target.
pub(crate) fn answer(server: &Server, target: &Target<'_>, o: &Options) -> Result<Reply, Refusal> {
    let node = match target {
        Target::Ping => return Ok(Reply::Text("computeMetadata/\n".to_owned())),
        Target::Versions => return Ok(Reply::Text("v1/\n".to_owned())),
        Target::Node(n) => *n,
    };
    match node {
        Node::Dir(_) if o.recursive => Ok(if o.alt == Some(Alt::Text) {
            let mut out = String::new();
            node.flatten("", &mut out);
            Reply::Text(out)
        } else {
            Reply::Json(node.to_json())
        }),
        Node::Dir(_) if o.alt == Some(Alt::Json) => Ok(Reply::Json(node.listing().into())),
        Node::Dir(_) => Ok(Reply::Text(node.listing().iter().map(|l| format!("{l}\n")).collect())),
        Node::Token => access_token(server, o),
        Node::Identity => identity(server, o),
        value if o.alt == Some(Alt::Json) => Ok(Reply::Json(value.to_json())),
        value => value.to_text().map(Reply::Text).ok_or(Refusal::NotFound),
    }
}

/// `…/token[?scopes=a,b]`: an opaque access token for the workload's account, JSON like GCE.
fn access_token(server: &Server, o: &Options) -> Result<Reply, Refusal> {
    let requested: Vec<String> = o
        .scopes
        .as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let scopes = if requested.is_empty() { server.workload.scopes.clone() } else { requested };
    // No token without randomness: the store has no fallback, and the log line names the
    // cause only (there is no token to leak).
    let (token, expires_in) = server
        .identity
        .issue_access_token(&server.token_scope, &server.workload.account, &scopes)
        .map_err(|e| Refusal::CannotMint(format!("cannot mint an access token: {e}")))?;
    let token = HeaderSafe::check(token)?;
    Ok(Reply::Json(serde_json::json!({
        "access_token": token.as_str(),
        "expires_in": expires_in,
        "token_type": "Bearer",
    })))
}

/// `…/identity?audience=AUD[&format=standard|full][&licenses=TRUE|FALSE]`: a bare signed JWT.
fn identity(server: &Server, o: &Options) -> Result<Reply, Refusal> {
    let audience = o
        .audience
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Refusal::BadRequest("non-empty audience parameter required".into()))?;
    let format = match o.format.as_deref() {
        None | Some("standard") => TokenFormat::Standard,
        Some("full") => TokenFormat::Full,
        Some(other) => {
            return Err(Refusal::BadRequest(format!("`format` must be `standard` or `full`, not `{other}`")));
        }
    };
    // GCE lists the boot disk's licences with `licenses=TRUE`; a Cloud Run instance has none,
    // so TRUE is accepted and adds nothing.
    if let Some(l) = &o.licenses
        && !(l.eq_ignore_ascii_case("true") || l.eq_ignore_ascii_case("false"))
    {
        return Err(Refusal::BadRequest(format!("`licenses` must be `TRUE` or `FALSE`, not `{l}`")));
    }
    let gce = server.workload.compute_engine_claims();
    let token = server.identity.sign_id_token(&server.workload.account, audience, format, gce.as_ref()).map_err(
        |e| match e {
            IssueError::Signing => Refusal::Internal(format!("cannot sign an ID token: {e}")),
            // The audience is the caller's input: too long, or holding control characters.
            other => Refusal::BadRequest(format!("bad audience: {other}")),
        },
    )?;
    Reply::jwt(token)
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_in_path_segments() {
        assert_eq!(percent_decode("api%40p.iam.gserviceaccount.com").as_deref(), Some("api@p.iam.gserviceaccount.com"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn options_refuse_bad_values_and_repeats() {
        let parse = |q: &str| Options::parse(&format!("/x?{q}").parse::<Uri>().expect(q));
        assert!(parse("recursive=true&alt=json").is_ok());
        assert!(parse("recursive=TRUE").is_ok_and(|o| o.recursive));
        assert!(parse("recursive=yes").is_err());
        assert!(parse("alt=xml").is_err());
        assert!(parse("audience=a&audience=b").is_err());
        assert!(parse("wait_for_change=true").is_err());
        assert!(parse("wait_for_change=false").is_ok());
        assert!(parse("unknown=1&unknown=2").is_ok());
    }
}
