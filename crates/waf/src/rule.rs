//! Compiling `SecRule` / `SecAction` directives into rules: targets, operator, transformations,
//! and the actions this engine acts on (`capture`, `multiMatch`, `setvar`, `chain`, `nolog`).
//! Actions that only shape ModSecurity's logs or anomaly scoring (`msg`, `severity`, `tag` beyond
//! the paranoia level, `ctl:auditLogParts`, ...) are read and ignored.

use std::path::Path;

use crate::expand::Template;
use crate::operator::Operator;
use crate::seclang::{Directive, Location, parse_actions};
use crate::transform::Transform;

/// A variable a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    Args,
    ArgsNames,
    ArgsGet,
    ArgsGetNames,
    ArgsPost,
    ArgsPostNames,
    RequestCookies,
    RequestCookiesNames,
    RequestHeaders,
    RequestHeadersNames,
    RequestFilename,
    RequestBasename,
    RequestUri,
    RequestUriRaw,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestBody,
    ReqbodyProcessor,
    Xml,
    Files,
    FilesNames,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    Tx,
    UniqueId,
    Duration,
}

impl Var {
    fn from_name(name: &str) -> Option<Var> {
        Some(match name.to_ascii_uppercase().as_str() {
            "ARGS" => Var::Args,
            "ARGS_NAMES" => Var::ArgsNames,
            "ARGS_GET" => Var::ArgsGet,
            "ARGS_GET_NAMES" => Var::ArgsGetNames,
            "ARGS_POST" => Var::ArgsPost,
            "ARGS_POST_NAMES" => Var::ArgsPostNames,
            "REQUEST_COOKIES" => Var::RequestCookies,
            "REQUEST_COOKIES_NAMES" => Var::RequestCookiesNames,
            "REQUEST_HEADERS" => Var::RequestHeaders,
            "REQUEST_HEADERS_NAMES" => Var::RequestHeadersNames,
            "REQUEST_FILENAME" => Var::RequestFilename,
            "REQUEST_BASENAME" => Var::RequestBasename,
            "REQUEST_URI" => Var::RequestUri,
            "REQUEST_URI_RAW" => Var::RequestUriRaw,
            "REQUEST_LINE" => Var::RequestLine,
            "REQUEST_METHOD" => Var::RequestMethod,
            "REQUEST_PROTOCOL" => Var::RequestProtocol,
            "QUERY_STRING" => Var::QueryString,
            "REQUEST_BODY" => Var::RequestBody,
            "REQBODY_PROCESSOR" => Var::ReqbodyProcessor,
            "XML" => Var::Xml,
            "FILES" => Var::Files,
            "FILES_NAMES" => Var::FilesNames,
            "MATCHED_VAR" => Var::MatchedVar,
            "MATCHED_VAR_NAME" => Var::MatchedVarName,
            "MATCHED_VARS" => Var::MatchedVars,
            "MATCHED_VARS_NAMES" => Var::MatchedVarsNames,
            "TX" => Var::Tx,
            "UNIQUE_ID" => Var::UniqueId,
            "DURATION" => Var::Duration,
            _ => return None,
        })
    }

    /// The name as ModSecurity prints it in `MATCHED_VAR_NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Var::Args => "ARGS",
            Var::ArgsNames => "ARGS_NAMES",
            Var::ArgsGet => "ARGS_GET",
            Var::ArgsGetNames => "ARGS_GET_NAMES",
            Var::ArgsPost => "ARGS_POST",
            Var::ArgsPostNames => "ARGS_POST_NAMES",
            Var::RequestCookies => "REQUEST_COOKIES",
            Var::RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            Var::RequestHeaders => "REQUEST_HEADERS",
            Var::RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            Var::RequestFilename => "REQUEST_FILENAME",
            Var::RequestBasename => "REQUEST_BASENAME",
            Var::RequestUri => "REQUEST_URI",
            Var::RequestUriRaw => "REQUEST_URI_RAW",
            Var::RequestLine => "REQUEST_LINE",
            Var::RequestMethod => "REQUEST_METHOD",
            Var::RequestProtocol => "REQUEST_PROTOCOL",
            Var::QueryString => "QUERY_STRING",
            Var::RequestBody => "REQUEST_BODY",
            Var::ReqbodyProcessor => "REQBODY_PROCESSOR",
            Var::Xml => "XML",
            Var::Files => "FILES",
            Var::FilesNames => "FILES_NAMES",
            Var::MatchedVar => "MATCHED_VAR",
            Var::MatchedVarName => "MATCHED_VAR_NAME",
            Var::MatchedVars => "MATCHED_VARS",
            Var::MatchedVarsNames => "MATCHED_VARS_NAMES",
            Var::Tx => "TX",
            Var::UniqueId => "UNIQUE_ID",
            Var::Duration => "DURATION",
        }
    }
}

/// `ARGS:name` or `ARGS:/regex/`: which keys of a collection.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Compared ASCII case-insensitively, as ModSecurity does.
    Name(String),
    Regex(regex::Regex),
    /// A `/regex/` that is a plain word (`/__utm/`): a case-insensitive substring test, which
    /// is what the regex means and much cheaper per value.
    Contains(String),
}

impl Selector {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Selector::Name(n) => n.eq_ignore_ascii_case(key),
            Selector::Regex(r) => r.is_match(key),
            Selector::Contains(word) => {
                key.as_bytes().windows(word.len().max(1)).any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
            }
        }
    }
}

/// One target of a rule: a variable, maybe one key of it, maybe counted (`&ARGS`), minus the
/// keys excluded with `!VAR:key`.
#[derive(Debug, Clone)]
pub struct Target {
    pub var: Var,
    pub selector: Option<Selector>,
    pub count: bool,
    pub excluded: Vec<Selector>,
}

/// A rule's place in a shared [`regex::bytes::RegexSet`].
#[derive(Debug, Clone)]
pub struct Prefilter {
    pub set: std::sync::Arc<regex::bytes::RegexSet>,
    /// Unique per set, for the per-request cache of set matches.
    pub group: u32,
    /// The rule's pattern's index in the set.
    pub member: usize,
}

/// `setvar:tx.name=value` (also `=+n`, `=-n`, and `!tx.name` to delete).
#[derive(Debug, Clone)]
pub struct SetVar {
    pub name: Template,
    pub op: SetOp,
}

#[derive(Debug, Clone)]
pub enum SetOp {
    Set(Template),
    Add(Template),
    Sub(Template),
    Delete,
}

/// A compiled rule (one link of a chain).
#[derive(Debug)]
pub struct Rule {
    pub id: Option<u32>,
    pub phase: u8,
    pub location: Location,
    pub targets: Vec<Target>,
    pub negated: bool,
    pub operator: Operator,
    pub transforms: Vec<Transform>,
    /// The same number for every rule with the same transformation chain (set by the loader),
    /// so transformed values are cached per value and chain; `None`: not cached.
    pub transform_id: Option<u32>,
    /// Membership in a prefilter: every `@rx` of a family that shares this rule's chain,
    /// compiled together into one set, so a value is scanned once for all of them and the rules
    /// whose pattern cannot match skip their own scan. Set by the loader.
    pub prefilter: Option<Prefilter>,
    pub multi_match: bool,
    pub capture: bool,
    pub setvars: Vec<SetVar>,
    /// `nolog`: a helper rule (counters, flags), not a signature.
    pub nolog: bool,
    pub skip_after: Option<String>,
    pub tags: Vec<String>,
    pub chain: Option<Box<Rule>>,
}

/// Compiles one `SecRule` or `SecAction`; `chained` links get their phase from the chain start.
pub fn compile(d: &Directive, data_dir: &Path) -> Result<(Rule, bool), String> {
    let (targets, negated, operator, actions) = match (d.name.as_str(), d.args.as_slice()) {
        ("SecRule", [vars, op, actions]) => {
            let (negated, operator) = compile_operator(op, data_dir)?;
            (targets(vars)?, negated, operator, actions.as_str())
        }
        ("SecRule", [vars, op]) => {
            let (negated, operator) = compile_operator(op, data_dir)?;
            (targets(vars)?, negated, operator, "")
        }
        ("SecAction", [actions]) => (Vec::new(), false, Operator::UnconditionalMatch, actions.as_str()),
        (name, args) => return Err(format!("`{name}` with {} arguments is not a rule moat can read", args.len())),
    };
    let mut rule = Rule {
        id: None,
        phase: 2,
        location: d.location.clone(),
        targets,
        negated,
        operator,
        transforms: Vec::new(),
        transform_id: None,
        prefilter: None,
        multi_match: false,
        capture: false,
        setvars: Vec::new(),
        nolog: false,
        skip_after: None,
        tags: Vec::new(),
        chain: None,
    };
    let mut chained = false;
    for action in parse_actions(actions)? {
        let value = action.value.as_deref().unwrap_or_default();
        match action.name.to_ascii_lowercase().as_str() {
            "id" => rule.id = Some(value.parse().map_err(|_| format!("`id:{value}` is not a number"))?),
            "phase" => {
                rule.phase = match value {
                    "1" | "request" => 1,
                    "2" => 2,
                    "3" | "4" | "5" | "response" | "logging" => 3,
                    other => return Err(format!("`phase:{other}` is not a phase")),
                }
            }
            "t" if value.eq_ignore_ascii_case("none") => rule.transforms.clear(),
            "t" => rule.transforms.push(
                Transform::from_name(value).ok_or_else(|| format!("transformation `t:{value}` is not supported"))?,
            ),
            "multimatch" => rule.multi_match = true,
            "capture" => rule.capture = true,
            "chain" => chained = true,
            "nolog" => rule.nolog = true,
            "log" => rule.nolog = false,
            "skipafter" => rule.skip_after = Some(value.to_owned()),
            "tag" => rule.tags.push(value.to_owned()),
            "setvar" => {
                if let Some(sv) = setvar(value)? {
                    rule.setvars.push(sv);
                }
            }
            // Disruptive actions, logging and metadata: Cloud Armor decides per signature, so
            // these do not change what matches.
            "block" | "pass" | "deny" | "drop" | "allow" | "status" | "msg" | "logdata" | "severity" | "ver"
            | "rev" | "accuracy" | "maturity" | "auditlog" | "noauditlog" | "ctl" | "expirevar" | "initcol"
            | "setsid" | "setuid" | "redirect" => {}
            other => return Err(format!("action `{other}` is not supported by moat's WAF engine")),
        }
    }
    Ok((rule, chained))
}

fn compile_operator(text: &str, data_dir: &Path) -> Result<(bool, Operator), String> {
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let operator = match text.strip_prefix('@') {
        Some(rest) => {
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            Operator::compile(name, arg, data_dir)?
        }
        // No `@`: the whole text is a regex.
        None => Operator::compile("rx", text, data_dir)?,
    };
    Ok((negated, operator))
}

fn targets(text: &str) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::new();
    let mut exclusions: Vec<(Var, Selector)> = Vec::new();
    for part in split_targets(text) {
        let (excluded, count, part) = match part.as_bytes().first() {
            Some(b'!') => (true, false, part.get(1..).unwrap_or_default()),
            Some(b'&') => (false, true, part.get(1..).unwrap_or_default()),
            _ => (false, false, part),
        };
        let (name, key) = match part.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (part, None),
        };
        let var =
            Var::from_name(name).ok_or_else(|| format!("variable `{name}` is not supported by moat's WAF engine"))?;
        let selector = key.map(selector).transpose()?;
        if excluded {
            let selector = selector.ok_or_else(|| format!("`!{name}` needs a key to exclude"))?;
            exclusions.push((var, selector));
        } else {
            out.push(Target { var, selector, count, excluded: Vec::new() });
        }
    }
    for (var, selector) in exclusions {
        for t in out.iter_mut().filter(|t| t.var == var) {
            t.excluded.push(selector.clone());
        }
    }
    Ok(out)
}

/// Splits on `|` outside `/regex/` and quotes.
fn split_targets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_regex = false;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '/' if prev == ':' => in_regex = true,
            '/' if in_regex && prev != '\\' => in_regex = false,
            '|' if !in_regex => {
                out.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
        prev = c;
    }
    out.push(text.get(start..).unwrap_or_default());
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

fn selector(key: &str) -> Result<Selector, String> {
    let key = key.trim_matches('\'');
    match key.strip_prefix('/').and_then(|k| k.strip_suffix('/')) {
        Some(re) if !re.is_empty() && re.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {
            Ok(Selector::Contains(re.to_ascii_lowercase()))
        }
        Some(re) => regex::RegexBuilder::new(re)
            .case_insensitive(true)
            .build()
            .map(Selector::Regex)
            .map_err(|e| format!("key regex `/{re}/` does not compile: {e}")),
        None => Ok(Selector::Name(key.to_owned())),
    }
}

/// Reads `setvar`'s argument. Only the transaction collection (`tx.`) exists here; the CRS's
/// `ip.`/`global.` collections serve DoS counters outside the Cloud Armor sets.
fn setvar(text: &str) -> Result<Option<SetVar>, String> {
    let (delete, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (text, None),
    };
    let Some(key) = name.strip_prefix("tx.").or_else(|| name.strip_prefix("TX.")) else {
        return Ok(None);
    };
    let op = match (delete, value) {
        (true, _) => SetOp::Delete,
        (false, None) => SetOp::Set(Template::parse("1")),
        (false, Some(v)) => match (v.strip_prefix('+'), v.strip_prefix('-')) {
            (Some(n), _) => SetOp::Add(Template::parse(n)),
            (_, Some(n)) => SetOp::Sub(Template::parse(n)),
            _ => SetOp::Set(Template::parse(v)),
        },
    };
    Ok(Some(SetVar { name: Template::parse(key), op }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::parse_file;

    fn one(text: &str) -> Result<(Rule, bool), String> {
        let d = parse_file("t.conf", text).map_err(|e| e.to_string())?;
        let d = d.first().ok_or("no directive")?;
        compile(d, Path::new("/nonexistent"))
    }

    #[test]
    fn compiles_a_crs_rule() {
        let (rule, chained) = one(
            r#"SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|ARGS_NAMES|ARGS "@rx (?i)select" "id:942999,phase:2,block,capture,t:none,t:urlDecodeUni,t:lowercase,multiMatch,tag:'paranoia-level/2',setvar:'tx.sql_injection_score=+%{tx.critical_anomaly_score}',chain""#,
        )
        .map_err(|e| e.to_string())
        .unwrap_or_else(|e| panic_free(&e));
        assert!(chained);
        assert_eq!(rule.id, Some(942999));
        assert_eq!(rule.targets.len(), 3);
        assert_eq!(rule.targets.first().map(|t| t.excluded.len()), Some(1));
        assert_eq!(rule.transforms, vec![Transform::UrlDecodeUni, Transform::Lowercase]);
        assert!(rule.capture && rule.multi_match);
        assert_eq!(rule.setvars.len(), 1);
    }

    fn panic_free(e: &str) -> (Rule, bool) {
        assert!(e.is_empty(), "{e}");
        std::process::abort()
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(one(r#"SecRule ARGS "@inspectFile x" "id:1""#).is_err());
        assert!(one(r#"SecRule GEO:COUNTRY_CODE "@rx x" "id:1""#).is_err());
        assert!(one(r#"SecRule ARGS "@rx x" "id:1,t:frobnicate""#).is_err());
        assert!(one(r#"SecRule ARGS "@rx x" "id:1,exec:/bin/sh""#).is_err());
    }

    #[test]
    fn targets_split_outside_regex() {
        assert_eq!(split_targets("ARGS|!ARGS:/a|b/|XML:/*"), vec!["ARGS", "!ARGS:/a|b/", "XML:/*"]);
    }
}
