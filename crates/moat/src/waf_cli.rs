//! `moat waf test`: which Cloud Armor preconfigured WAF signatures a request matches, at a given
//! sensitivity and with opt-outs, for tuning `evaluatePreconfiguredWaf` rules before deploying
//! them. Requests come from the command line (curl-like) or from files of raw HTTP requests;
//! the OWASP CRS rule files are read from disk (`moat_waf::DEFAULT_CRS_DIR`, `MOAT_CRS_DIR` or
//! `--crs-dir`), the same engine the front door runs.
//!
//! Every argument is checked before the CRS is loaded, so a typo in a set name costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::Diagnostic;
use moat_policy::armor::WafCall;
use moat_waf::{Crs, FAMILIES, LoadError, WafRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Evaluate requests against preconfigured WAF sets and print the signatures that match.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    moat waf test --set sqli-v33-stable \"/?id=1' OR '1'='1\"\n  \
    moat waf test --set all --sensitivity 2 -X POST -H 'Content-Type: application/json' \
    --json-parsing -d '{\"q\":\"<script>\"}' /api/search\n  \
    moat waf test --set sqli-v33-stable --file requests.http")]
pub struct TestArgs {
    /// A preconfigured set: FAMILY-v33-stable, FAMILY-v33-canary, FAMILY-stable /
    /// FAMILY-canary (CRS 3.0 ids), or `all` (every FAMILY-v33-stable). Repeat for more.
    #[arg(long = "set", value_name = "SET", required = true)]
    pub sets: Vec<String>,
    /// Enables the signatures whose sensitivity (CRS paranoia level) is at most N; 0 enables
    /// none but the `--opt-in` ones. The default, 4, is Cloud Armor's when a rule gives none.
    #[arg(long, value_name = "N", default_value_t = moat_policy::armor::waf::DEFAULT_SENSITIVITY, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub sensitivity: u8,
    /// A signature to disable (`opt_out_rule_ids`): `owasp-crs-v030301-id942100-sqli` or
    /// `942100`. Repeat for more.
    #[arg(long = "opt-out", value_name = "ID")]
    pub opt_out: Vec<String>,
    /// A signature to enable whatever the sensitivity (`opt_in_rule_ids`). Repeat for more.
    #[arg(long = "opt-in", value_name = "ID")]
    pub opt_in: Vec<String>,
    /// The OWASP CRS: the package root holding rules/, or the rules directory.
    /// Default: $MOAT_CRS_DIR, else /usr/share/modsecurity-crs (Debian's modsecurity-crs).
    #[arg(long, value_name = "DIR")]
    pub crs_dir: Option<PathBuf>,
    /// One JSON object per request, one per line.
    #[arg(long)]
    pub json: bool,
    /// Inspect at most this many bytes of a body, as the front door does (Cloud Armor: 8 KB by
    /// default, up to 64 KB with requestBodyInspectionSize).
    #[arg(long, value_name = "BYTES", default_value_t = 8192)]
    pub body_limit: usize,
    /// Parse `application/json` bodies into arguments (Cloud Armor's `--json-parsing=STANDARD`).
    #[arg(long)]
    pub json_parsing: bool,
    /// The method of the command-line requests. Default: GET, or POST with a body.
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A header of the command-line requests, `Name: value`. Repeat for more.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The body of the command-line requests (a form, unless -H sets a Content-Type).
    #[arg(short = 'd', long = "data", value_name = "BODY", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the body of the command-line requests from PATH.
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// Read raw HTTP requests from PATH, separated by lines `---`. Repeat for more.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// The `--file`s hold one URL per line instead (blank lines and `#` comments skipped);
    /// -X, -H and -d apply to them.
    #[arg(long, requires = "files")]
    pub lines: bool,
    /// A request target, `/path?query` or `http://host/path?query`. Spaces and non-ASCII are
    /// percent-encoded, as a client would send them.
    #[arg(value_name = "REQUEST")]
    pub requests: Vec<String>,
}

/// 0: the requests were evaluated (whatever matched); 1: the CRS could not be loaded; 2: bad
/// arguments or request files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ran = 0,
    CrsUnavailable = 1,
    Usage = 2,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(s as u8)
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum WafCliError {
    #[error("unknown WAF set `{name}`")]
    #[diagnostic(help(
        "valid sets: FAMILY-v33-stable or FAMILY-v33-canary for FAMILY in {families}; \
         FAMILY-stable or FAMILY-canary (CRS 3.0 ids) for all but java and nodejs; or `all`"
    ))]
    UnknownSet { name: String, families: String },
    #[error("`{0}` is not a signature id")]
    #[diagnostic(help("write it as Cloud Armor does, `owasp-crs-v030301-id942100-sqli`, or as the CRS id `942100`"))]
    BadSignatureId(String),
    #[error("header `{0}` has no `:`")]
    #[diagnostic(help("write it as curl does: -H 'Name: value'"))]
    BadHeader(String),
    #[error("cannot read `{path}`: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("{location}: {problem}")]
    #[diagnostic(help(
        "a request file holds raw HTTP requests (`POST /path HTTP/1.1`, headers, a blank line, \
         the body) separated by lines `---`; pass --lines for a file of one URL per line"
    ))]
    BadRawRequest { location: String, problem: String },
    #[error("no request to test")]
    #[diagnostic(help("give a request target such as `/search?q=1`, or --file PATH"))]
    NoRequests,
    #[error(transparent)]
    Crs(#[from] LoadError),
}

/// A set as named on the command line, with the tuning: the policy's own `WafCall`, so the
/// signatures it enables and the ids it prints are the front door's.
type WafSet = WafCall;

/// A request to evaluate, with what to call it in the output.
#[derive(Debug)]
struct Probe {
    label: String,
    request: WafRequest,
    /// The body's size before it was cut to the limit, when it was.
    cut_from: Option<usize>,
}

pub fn run(args: Args) -> ExitCode {
    let Command::Test(args) = args.command;
    let status = match test(&args) {
        Ok(()) => Status::Ran,
        Err(e) => {
            let status = if matches!(e, WafCliError::Crs(_)) { Status::CrsUnavailable } else { Status::Usage };
            eprintln!("{:?}", miette::Report::new(e));
            status
        }
    };
    status.into()
}

fn test(args: &TestArgs) -> Result<(), WafCliError> {
    let opt_out = signature_ids(&args.opt_out)?;
    let opt_in = signature_ids(&args.opt_in)?;
    let mut sets = resolve_sets(&args.sets)?;
    for set in &mut sets {
        set.sensitivity = args.sensitivity;
        set.opt_in = opt_in.iter().copied().collect();
        set.opt_out = opt_out.iter().copied().collect();
    }
    let probes = probes(args)?;
    let dir = args
        .crs_dir
        .clone()
        .or_else(|| std::env::var_os("MOAT_CRS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(moat_waf::DEFAULT_CRS_DIR));
    let crs = Crs::load(&dir)?;
    warn_unknown_ids(&crs, &sets, opt_out.iter().chain(&opt_in));
    let no_exclusions = |_: u32, _: moat_waf::rule::Var, _: &str| false;
    let catalog = Catalog::new(&crs, &sets);
    for probe in &probes {
        let mut inspection = crs.inspect(&probe.request);
        let results: Vec<(&WafSet, Vec<u32>)> = sets
            .iter()
            .map(|set| (set, inspection.evaluate(set.family, &|id, p| set.enables(id, p), &no_exclusions)))
            .collect();
        let errors = inspection.errors();
        if args.json {
            println!("{}", json_line(probe, &results, errors, args.body_limit));
        } else {
            print!("{}", human(probe, &results, errors, args.body_limit, &catalog));
        }
    }
    Ok(())
}

/// `sqli-v33-stable` → the sqli family with v030301 ids; `all` → every v33 stable set.
fn resolve_sets(names: &[String]) -> Result<Vec<WafSet>, WafCliError> {
    let mut sets: Vec<WafSet> = Vec::new();
    for name in names {
        let found: Vec<WafSet> = if name == "all" {
            FAMILIES.iter().filter_map(|(family, _)| resolve_set(&format!("{family}-v33-stable"))).collect()
        } else {
            vec![resolve_set(name).ok_or_else(|| {
                let families: Vec<&str> = FAMILIES.iter().map(|(f, _)| *f).collect();
                WafCliError::UnknownSet { name: name.clone(), families: families.join(", ") }
            })?]
        };
        for set in found {
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
    }
    Ok(sets)
}

/// The policy's reading of a set name (`moat_policy::armor::waf::rule_set`), limited to the
/// CRS 3.3 sets this command runs: the v33 and CRS 3.0 names of the twelve families.
fn resolve_set(name: &str) -> Option<WafSet> {
    let set = moat_policy::armor::waf::rule_set(name).ok()?;
    let crs33 = !name.contains("-v422-") && name != "json-sqli-canary";
    let (family, _) = FAMILIES.iter().find(|(f, _)| *f == set.family).filter(|_| crs33)?;
    Some(WafCall {
        set: name.to_owned(),
        family,
        version: set.version,
        sensitivity: moat_policy::armor::waf::DEFAULT_SENSITIVITY,
        opt_in: Vec::new(),
        opt_out: Vec::new(),
    })
}

fn signature_ids(ids: &[String]) -> Result<BTreeSet<u32>, WafCliError> {
    ids.iter().map(|id| signature_id(id).ok_or_else(|| WafCliError::BadSignatureId(id.clone()))).collect()
}

/// `owasp-crs-v030301-id942100-sqli`, `owasp-crs-id942550-sqli` or `942100`.
fn signature_id(text: &str) -> Option<u32> {
    let digits = match text.strip_prefix("owasp-crs-") {
        Some(rest) => rest.split('-').find_map(|part| part.strip_prefix("id"))?,
        None => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn warn_unknown_ids<'a>(crs: &Crs, sets: &[WafSet], ids: impl Iterator<Item = &'a u32>) {
    for id in ids {
        let known = sets.iter().filter_map(|s| crs.family(s.family)).any(|f| f.signatures().any(|sig| sig.id == *id));
        if !known {
            eprintln!("warning: `{id}` is not a signature of the sets tested; the option changes nothing");
        }
    }
}

fn probes(args: &TestArgs) -> Result<Vec<Probe>, WafCliError> {
    let body = match (&args.data, &args.data_file) {
        (Some(d), _) => Some(d.as_bytes().to_vec()),
        (None, Some(path)) => Some(read(path)?),
        (None, None) => None,
    };
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h).ok_or_else(|| WafCliError::BadHeader(h.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let command_line = |target: &str, label: String| {
        let mut request = curl_request(target, args.method.as_deref(), &headers, body.as_deref());
        request.json = args.json_parsing;
        probe(label, request, args.body_limit)
    };
    let mut out: Vec<Probe> = args.requests.iter().map(|t| command_line(t, label(args, t))).collect();
    for path in &args.files {
        let text = String::from_utf8_lossy(&read(path)?).into_owned();
        if args.lines {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    out.push(command_line(line, format!("{}:{}: {}", path.display(), n + 1, label(args, line))));
                }
            }
        } else {
            for (line, raw) in raw_requests(&text) {
                let location = format!("{}:{line}", path.display());
                let mut request = parse_raw(&raw)
                    .map_err(|problem| WafCliError::BadRawRequest { location: location.clone(), problem })?;
                request.json = args.json_parsing;
                let label = format!("{location}: {} {}", request.method, request.uri);
                out.push(probe(label, request, args.body_limit));
            }
        }
    }
    if out.is_empty() {
        return Err(WafCliError::NoRequests);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, WafCliError> {
    std::fs::read(path).map_err(|source| WafCliError::ReadFile { path: path.display().to_string(), source })
}

fn label(args: &TestArgs, target: &str) -> String {
    match method(args.method.as_deref(), args.data.is_some() || args.data_file.is_some()) {
        m if m == "GET" => target.to_owned(),
        m => format!("{m} {target}"),
    }
}

fn method(explicit: Option<&str>, has_body: bool) -> String {
    match explicit {
        Some(m) => m.to_owned(),
        None if has_body => "POST".to_owned(),
        None => "GET".to_owned(),
    }
}

fn parse_header(text: &str) -> Option<(String, Vec<u8>)> {
    let (name, value) = text.split_once(':')?;
    let name = name.trim();
    (!name.is_empty()).then(|| (name.to_owned(), value.trim().as_bytes().to_vec()))
}

/// A request the way curl builds one from a URL and -X/-H/-d: `Host` from the URL (else
/// `localhost`), and a form Content-Type and a Content-Length with a body.
fn curl_request(target: &str, method_: Option<&str>, headers: &[(String, Vec<u8>)], body: Option<&[u8]>) -> WafRequest {
    let (host, uri) = split_url(target);
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut all = Vec::new();
    if !has("host") {
        all.push(("Host".to_owned(), host.as_bytes().to_vec()));
    }
    all.extend(headers.iter().cloned());
    if let Some(body) = body {
        if !has("content-type") {
            all.push(("Content-Type".to_owned(), b"application/x-www-form-urlencoded".to_vec()));
        }
        if !has("content-length") {
            all.push(("Content-Length".to_owned(), body.len().to_string().into_bytes()));
        }
    }
    WafRequest {
        method: method(method_, body.is_some()),
        uri: encode_target(&uri),
        protocol: "HTTP/1.1".to_owned(),
        headers: all,
        body: body.map(<[u8]>::to_vec).unwrap_or_default(),
        json: false,
    }
}

/// `http://host/p?q` → (`host`, `/p?q`); `/p?q` → (`localhost`, `/p?q`).
fn split_url(target: &str) -> (String, String) {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (host, path) = rest.split_at(end);
            let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
            return (host.to_owned(), path);
        }
    }
    let path = if target.starts_with('/') { target.to_owned() } else { format!("/{target}") };
    ("localhost".to_owned(), path)
}

/// Percent-encodes what cannot appear in a request line (spaces, control bytes, non-ASCII);
/// everything else, `%XX` included, stays as written.
fn encode_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b <= b' ' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn probe(label: String, mut request: WafRequest, limit: usize) -> Probe {
    let size = request.body.len();
    request.body.truncate(limit);
    Probe { label, request, cut_from: (size > limit).then_some(size) }
}

/// Splits a request file on lines `---`: each non-blank block, with the line it starts on.
fn raw_requests(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut start = 1;
    for (n, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            blocks.push((start, std::mem::take(&mut current)));
            start = n + 2;
        } else {
            current.push(line);
        }
    }
    blocks.push((start, current));
    blocks
        .into_iter()
        .filter_map(|(start, lines)| {
            let skip = lines.iter().take_while(|l| l.trim().is_empty()).count();
            let lines: Vec<&str> = lines.into_iter().skip(skip).collect();
            (!lines.is_empty()).then_some((start + skip, lines))
        })
        .collect()
}

/// `METHOD TARGET [HTTP/x]`, headers, a blank line, the body (cut to `Content-Length` when
/// that is shorter; the line break before `---` is not part of it).
fn parse_raw(lines: &[&str]) -> Result<WafRequest, String> {
    let mut lines = lines.iter();
    let request_line = lines.next().map(|l| l.trim()).unwrap_or_default();
    let mut words: Vec<&str> = request_line.split_whitespace().collect();
    let protocol = match words.last() {
        Some(p) if p.starts_with("HTTP/") && words.len() > 2 => words.pop().unwrap_or("HTTP/1.1"),
        _ => "HTTP/1.1",
    };
    let (Some(method), true) = (words.first(), words.len() > 1) else {
        return Err(format!("`{request_line}` is not a request line (`METHOD /path HTTP/1.1`)"));
    };
    let target = words.get(1..).unwrap_or_default().join(" ");
    let mut headers = Vec::new();
    for line in lines.by_ref() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            break;
        }
        headers.push(parse_header(line).ok_or_else(|| format!("header `{line}` has no `:`"))?);
    }
    let mut body = lines.copied().collect::<Vec<_>>().join("\n").into_bytes();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    if let Some(length) = length {
        body.truncate(length);
    }
    Ok(WafRequest {
        method: (*method).to_owned(),
        uri: encode_target(&target),
        protocol: protocol.to_owned(),
        headers,
        body,
        json: false,
    })
}

/// Each selected family's signatures: paranoia level and where the CRS file defines them.
#[derive(Debug)]
struct Catalog {
    signatures: BTreeMap<u32, (u8, Option<String>)>,
}

impl Catalog {
    fn new(crs: &Crs, sets: &[WafSet]) -> Catalog {
        let mut signatures = BTreeMap::new();
        for family in sets.iter().filter_map(|s| crs.family(s.family)) {
            let lines = std::fs::read_to_string(&family.file).map(|t| id_lines(&t)).unwrap_or_default();
            for sig in family.signatures() {
                let at = lines.get(&sig.id).map(|line| format!("{}:{line}", family.file.display()));
                signatures.insert(sig.id, (sig.paranoia, at));
            }
        }
        Catalog { signatures }
    }
}

/// The line of each `id:NNN` action in a rule file.
fn id_lines(text: &str) -> BTreeMap<u32, usize> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("id:") {
            let before = rest.get(..i).and_then(|s| s.chars().next_back());
            let after = rest.get(i + 3..).unwrap_or_default();
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if !before.is_some_and(char::is_alphanumeric)
                && let Ok(id) = digits.parse()
            {
                out.entry(id).or_insert(n + 1);
            }
            rest = after;
        }
    }
    out
}

fn human(probe: &Probe, results: &[(&WafSet, Vec<u32>)], errors: u32, limit: usize, catalog: &Catalog) -> String {
    let matched: Vec<String> = results
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(set, ids)| {
            let names: Vec<String> = ids.iter().map(|id| set.signature_id(*id)).collect();
            format!("{}: {}", set.set, names.join(", "))
        })
        .collect();
    let mut out = if matched.is_empty() {
        format!("{} → no signature matched\n", probe.label)
    } else {
        format!("{} → matched by {}\n", probe.label, matched.join("; "))
    };
    for (set, ids) in results {
        for id in ids {
            let (paranoia, at) = catalog.signatures.get(id).cloned().unwrap_or((0, None));
            out.push_str(&format!("    {}  paranoia level {paranoia}", set.signature_id(*id)));
            if let Some(at) = at {
                out.push_str(&format!("  {at}"));
            }
            out.push('\n');
        }
    }
    if let Some(size) = probe.cut_from {
        out.push_str(&format!("    note: body cut from {size} to {limit} bytes before inspection (--body-limit)\n"));
    }
    if errors > 0 {
        out.push_str(&format!(
            "    note: {errors} pattern evaluation(s) gave up (backtracking limit); a signature may have been missed\n"
        ));
    }
    out
}

/// One line of `--json`.
#[derive(Debug, serde::Serialize)]
struct JsonResult<'a> {
    request: &'a str,
    sets: Vec<JsonSet<'a>>,
    matched: bool,
    /// The body's size and how much of it was inspected, when it was cut.
    body_cut: Option<JsonCut>,
    /// Pattern evaluations that gave up (backtracking limit).
    errors: u32,
}

#[derive(Debug, serde::Serialize)]
struct JsonSet<'a> {
    set: &'a str,
    signatures: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct JsonCut {
    size: usize,
    inspected: usize,
}

fn json_line(probe: &Probe, results: &[(&WafSet, Vec<u32>)], errors: u32, limit: usize) -> String {
    let line = JsonResult {
        request: &probe.label,
        sets: results
            .iter()
            .map(|(set, ids)| JsonSet {
                set: &set.set,
                signatures: ids.iter().map(|id| set.signature_id(*id)).collect(),
            })
            .collect(),
        matched: results.iter().any(|(_, ids)| !ids.is_empty()),
        body_cut: probe.cut_from.map(|size| JsonCut { size, inspected: limit }),
        errors,
    };
    // Plain strings and numbers: serialising cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn set_names() {
        let s = resolve_set("sqli-v33-canary").unwrap();
        assert_eq!((s.family, s.signature_id(942100).as_str()), ("sqli", "owasp-crs-v030301-id942100-sqli"));
        assert_eq!(resolve_set("xss-stable").unwrap().signature_id(941100), "owasp-crs-v030001-id941100-xss");
        for bad in ["java-stable", "sqli", "sqli-v42-stable", "generic-v33-stable"] {
            assert_eq!(resolve_set(bad), None, "{bad}");
        }
        assert_eq!(resolve_sets(&["all".into(), "sqli-v33-stable".into()]).unwrap().len(), FAMILIES.len());
    }

    #[test]
    fn signature_ids_in_both_forms() {
        assert_eq!(signature_id("owasp-crs-v030301-id942100-sqli"), Some(942100));
        assert_eq!(signature_id("owasp-crs-id942550-sqli"), Some(942550));
        assert_eq!(signature_id("942100"), Some(942100));
        assert_eq!(signature_id("id942100"), None);
        assert_eq!(signature_id("owasp-crs-v030301-sqli"), None);
    }

    #[test]
    fn curl_like_requests() {
        let r = curl_request("http://shop.example/s?q=1 OR 1", None, &[], Some(b"a=1"));
        assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/s?q=1%20OR%201"));
        assert_eq!(r.headers[0], ("Host".to_owned(), b"shop.example".to_vec()));
        assert_eq!(r.headers[1].0, "Content-Type");
        assert_eq!(split_url("search?q"), ("localhost".to_owned(), "/search?q".to_owned()));
    }

    #[test]
    fn raw_request_files() {
        let text = "GET /a HTTP/1.1\nHost: h\n\n---\n\nPOST /login HTTP/1.0\nContent-Length: 3\n\nu=1xyz\n---\n";
        let blocks = raw_requests(text);
        assert_eq!(blocks.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 6]);
        let post = parse_raw(&blocks[1].1).unwrap();
        assert_eq!(
            (post.method.as_str(), post.protocol.as_str(), post.body.as_slice()),
            ("POST", "HTTP/1.0", &b"u=1"[..])
        );
        assert!(parse_raw(&["/only-a-path"]).is_err());
        assert!(parse_raw(&["GET / HTTP/1.1", "no colon"]).is_err());
    }

    #[test]
    fn id_lines_skip_other_actions() {
        let text = "SecRule ARGS \"@rx x\" \\\n    \"id:942100,\\\n    ctl:ruleRemoveById:1\"";
        assert_eq!(id_lines(text).into_iter().collect::<Vec<_>>(), vec![(942100, 2)]);
    }
}
