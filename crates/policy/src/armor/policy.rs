//! A security policy, lowered from its JSON export into a model where every expression is
//! compiled, every range parsed and every rule valid; [`SecurityPolicy::from_json`] is the only
//! way to build one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::error::ArmorError;
use super::expr::{Attribute, CelEngine, Compiled, Engine, ExprErrorKind, Limits};
use super::locate::JsonIndex;
use super::rate_limit::{self, Ban, RateLimit, deny_status};
use super::raw::{RawHeader, RawMatch, RawPolicy, RawRedirectOptions, RawRule};
use super::srcip::SrcIpTable;
use crate::source::SourceRef;

/// The priority of the default rule, which every policy has and which matches everything.
pub const DEFAULT_RULE_PRIORITY: u32 = 2_147_483_647;

/// Most ranges in one `SRC_IPS_V1` match.
pub const MAX_SRC_IP_RANGES: usize = 10;

/// The statuses a rule's `deny` can answer with.
pub const DENY_STATUSES: [u16; 3] = [403, 404, 502];

/// The policy `type`. Network (L3/L4) policies have no place in front of HTTP and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    /// `CLOUD_ARMOR`, a backend security policy (the default).
    CloudArmor,
    /// `CLOUD_ARMOR_EDGE`, evaluated before the CDN cache.
    CloudArmorEdge,
}

/// One security policy, its rules in ascending priority.
#[derive(Debug, Clone)]
pub struct SecurityPolicy {
    pub name: String,
    pub policy_type: PolicyType,
    /// The file the policy was read from, as given to [`SecurityPolicy::from_json`].
    pub file: Arc<str>,
    /// Sorted by priority; the prefix table indexes into it, so it is read-only.
    rules: Vec<Rule>,
    /// `advancedOptionsConfig.userIpRequestHeaders`, lower-cased: where `origin.user_ip` and the
    /// `USER_IP` key come from.
    pub user_ip_request_headers: Vec<String>,
    pub(crate) src_ips: SrcIpTable,
    /// Whether any expression reads `origin.ip` / `origin.user_ip` (so the evaluator formats
    /// the address only when it is needed).
    pub(crate) reads_ip: bool,
    /// Whether any rule calls `evaluatePreconfiguredWaf` / `evaluatePreconfiguredExpr`: the
    /// front door then reads the body prefix and needs the CRS rules.
    pub uses_waf: bool,
    /// `advancedOptionsConfig.requestBodyInspectionSize`: how much of a body the preconfigured
    /// WAF rules inspect (8 KB unless set; 16, 32, 48 or 64 KB).
    pub body_inspection_bytes: usize,
    /// `advancedOptionsConfig.jsonParsing` is `STANDARD` (or `STANDARD_WITH_GRAPHQL`): JSON bodies
    /// are inspected as values, not as one string.
    pub json_parsing: bool,
}

/// Cloud Armor's default body inspection size for preconfigured WAF rules.
pub const DEFAULT_BODY_INSPECTION_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct Rule {
    pub priority: u32,
    pub description: Option<String>,
    /// Evaluated and reported, never enforced.
    pub preview: bool,
    pub matcher: Match,
    pub action: Action,
    /// `headerAction.requestHeadersToAdds`: added to (or overwriting) the request on allow.
    pub request_headers_to_add: Vec<HeaderToAdd>,
    /// `preconfiguredWafConfig.exclusions`: request fields this rule's WAF calls do not inspect.
    pub waf_exclusions: Vec<super::waf::WafExclusion>,
    /// Where the rule is written (its `priority`).
    pub source: SourceRef,
}

impl Rule {
    pub fn is_default(&self) -> bool {
        self.priority == DEFAULT_RULE_PRIORITY
    }
}

#[derive(Debug, Clone)]
pub enum Match {
    /// `versionedExpr: SRC_IPS_V1`; `all` for `*`.
    SrcIps { all: bool, ranges: Vec<IpNet> },
    /// `expr.expression`.
    Expr(RuleExpr),
}

/// A compiled rule expression and its text.
#[derive(Clone)]
pub struct RuleExpr {
    pub text: String,
    pub compiled: Arc<dyn Compiled>,
}

impl fmt::Debug for RuleExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RuleExpr").field(&self.text).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// `deny(403|404|502)`.
    Deny(u16),
    Redirect(Redirect),
    Throttle(RateLimit),
    RateBasedBan(RateLimit, Ban),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Deny(s) => write!(f, "deny({s})"),
            Self::Redirect(Redirect::External302 { target }) => write!(f, "redirect to `{target}`"),
            Self::Redirect(Redirect::GoogleRecaptcha) => f.write_str("redirect to reCAPTCHA"),
            Self::Throttle(_) => f.write_str("throttle"),
            Self::RateBasedBan(..) => f.write_str("rate_based_ban"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `EXTERNAL_302`: a 302 to `target`.
    External302 { target: String },
    /// `GOOGLE_RECAPTCHA`: there is no reCAPTCHA locally, so moat refuses with 403 instead.
    GoogleRecaptcha,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderToAdd {
    pub name: String,
    pub value: String,
}

impl SecurityPolicy {
    /// Reads a policy as `gcloud compute security-policies describe NAME --format json` prints
    /// it. `path` names the file in errors. Every problem is reported, each with file:line:column.
    pub fn from_json(text: &str, path: &str) -> Result<SecurityPolicy, Vec<ArmorError>> {
        let file: Arc<str> = Arc::from(path);
        let engine = CelEngine::new()
            .map_err(|m| vec![ArmorError { file: Arc::clone(&file), line: 0, column: 0, message: m, help: None }])?;
        Self::from_json_with(text, path, &engine)
    }

    /// Points every rule at `source(priority)` instead of a line of the JSON it was read from:
    /// for a policy translated from a Terraform plan, whose rules the user wrote as blocks of a
    /// resource, not as that JSON.
    pub(crate) fn relocate(&mut self, source: impl Fn(u32) -> SourceRef) {
        for r in &mut self.rules {
            r.source = source(r.priority);
        }
    }

    /// As [`from_json`](Self::from_json), with another expression engine.
    pub fn from_json_with(text: &str, path: &str, engine: &dyn Engine) -> Result<SecurityPolicy, Vec<ArmorError>> {
        let file: Arc<str> = Arc::from(path);
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| vec![json_error(&file, &e)])?;
        let mut ctx = Ctx { file: Arc::clone(&file), index: JsonIndex::new(text), errors: Vec::new() };
        let policy_type = match raw.kind.as_deref() {
            None | Some("CLOUD_ARMOR") => Some(PolicyType::CloudArmor),
            Some("CLOUD_ARMOR_EDGE") => Some(PolicyType::CloudArmorEdge),
            Some(other) => {
                ctx.err(
                    "/type",
                    format!("policy type `{other}` is not an HTTP security policy"),
                    Some("moat applies `CLOUD_ARMOR` and `CLOUD_ARMOR_EDGE` policies; network and service-mesh policies do not apply to the front door"),
                );
                None
            }
        };
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, raw_rule) in raw.rules.iter().enumerate() {
            if let Some(rule) = lower_rule(&mut ctx, engine, &format!("/rules/{i}"), raw_rule) {
                rules.push((i, rule));
            }
        }
        check_priorities(&mut ctx, &raw.rules);
        if ctx.errors.is_empty() && !rules.iter().any(|(_, r)| r.is_default()) {
            ctx.err(
                "/rules",
                format!("the policy has no default rule (priority {DEFAULT_RULE_PRIORITY})"),
                Some("export the whole policy; Cloud Armor always has a default rule matching `*`"),
            );
        }
        if !ctx.errors.is_empty() {
            ctx.errors.sort_by_key(|e| (e.line, e.column));
            return Err(ctx.errors);
        }
        let advanced = raw.advanced_options_config.unwrap_or_default();
        let body_inspection_bytes = match advanced.request_body_inspection_size.as_deref() {
            None => DEFAULT_BODY_INSPECTION_BYTES,
            Some(size) => match size.to_ascii_uppercase().as_str() {
                "8KB" => 8 * 1024,
                "16KB" => 16 * 1024,
                "32KB" => 32 * 1024,
                "48KB" => 48 * 1024,
                "64KB" => 64 * 1024,
                other => {
                    ctx.err(
                        "/advancedOptionsConfig/requestBodyInspectionSize",
                        format!("request body inspection size `{other}` is not one Cloud Armor offers"),
                        Some("use 8KB, 16KB, 32KB, 48KB or 64KB"),
                    );
                    DEFAULT_BODY_INSPECTION_BYTES
                }
            },
        };
        let json_parsing = match advanced.json_parsing.as_deref() {
            None | Some("DISABLED") => false,
            Some("STANDARD" | "STANDARD_WITH_GRAPHQL") => true,
            Some(other) => {
                ctx.err(
                    "/advancedOptionsConfig/jsonParsing",
                    format!("JSON parsing `{other}` is not a Cloud Armor setting"),
                    Some("use DISABLED, STANDARD or STANDARD_WITH_GRAPHQL"),
                );
                false
            }
        };
        if !ctx.errors.is_empty() {
            return Err(ctx.errors);
        }
        let mut rules: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
        rules.sort_by_key(|r| r.priority);
        let mut src_ips = SrcIpTable::default();
        let mut reads_ip = false;
        let mut uses_waf = false;
        for (i, rule) in rules.iter().enumerate() {
            match &rule.matcher {
                Match::SrcIps { all: false, ranges } => {
                    for net in ranges {
                        src_ips.insert(net, u32::try_from(i).unwrap_or(u32::MAX));
                    }
                }
                Match::SrcIps { all: true, .. } => {}
                Match::Expr(e) => {
                    uses_waf |= e.compiled.uses_waf();
                    reads_ip |= e
                        .compiled
                        .attributes()
                        .iter()
                        .any(|a| matches!(a, Attribute::OriginIp | Attribute::OriginUserIp));
                }
            }
        }
        Ok(SecurityPolicy {
            name: raw.name.unwrap_or_default(),
            policy_type: policy_type.unwrap_or(PolicyType::CloudArmor),
            file,
            rules,
            user_ip_request_headers: advanced.user_ip_request_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            src_ips,
            reads_ip,
            uses_waf,
            body_inspection_bytes,
            json_parsing,
        })
    }

    /// The rules, in ascending priority; the last is the default rule.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule at `priority`.
    pub fn rule(&self, priority: u32) -> Option<&Rule> {
        self.rules.binary_search_by_key(&priority, |r| r.priority).ok().and_then(|i| self.rules.get(i))
    }
}

/// serde_json's error, at its own line and column.
fn json_error(file: &Arc<str>, e: &serde_json::Error) -> ArmorError {
    let full = e.to_string();
    // serde_json appends " at line L column C"; the position goes in front instead.
    let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m).to_owned();
    ArmorError {
        file: Arc::clone(file),
        line: u32::try_from(e.line()).unwrap_or(u32::MAX),
        column: u32::try_from(e.column()).unwrap_or(u32::MAX),
        message: format!("not a security policy export: {message}"),
        help: Some("export it with `gcloud compute security-policies describe NAME --format json`".to_owned()),
    }
}

/// Collects errors, each placed at the JSON value it is about.
pub(crate) struct Ctx<'t> {
    file: Arc<str>,
    index: JsonIndex<'t>,
    errors: Vec<ArmorError>,
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, path: &str, message: impl Into<String>, help: Option<&str>) {
        let (line, column) = self.position(path);
        self.push(line, column, message.into(), help.map(str::to_owned));
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The value at `path`, else the nearest enclosing one that exists.
    fn position(&self, path: &str) -> (u32, u32) {
        let mut p = path;
        loop {
            if let Some(pos) = self.index.at(p) {
                return pos;
            }
            match p.rsplit_once('/') {
                Some((parent, _)) => p = parent,
                None => return (0, 0),
            }
        }
    }

    fn push(&mut self, line: u32, column: u32, message: String, help: Option<String>) {
        self.errors.push(ArmorError { file: Arc::clone(&self.file), line, column, message, help });
    }

    fn source_ref(&self, path: &str) -> SourceRef {
        let (line, column) = self.position(path);
        SourceRef::new(&self.file, line, column)
    }
}

fn lower_rule(ctx: &mut Ctx<'_>, engine: &dyn Engine, base: &str, raw: &RawRule) -> Option<Rule> {
    let before = ctx.error_count();
    let priority = match raw.priority {
        Some(p) if (0..=i64::from(DEFAULT_RULE_PRIORITY)).contains(&p) => Some(p as u32),
        Some(p) => {
            ctx.err(
                &format!("{base}/priority"),
                format!("priority `{p}` is out of range; use 0 to {DEFAULT_RULE_PRIORITY}"),
                None,
            );
            None
        }
        None => {
            ctx.err(
                base,
                "the rule has no `priority`",
                Some("every rule needs a unique priority; lower numbers are evaluated first"),
            );
            None
        }
    };
    let matcher = match &raw.matcher {
        Some(m) => lower_match(ctx, engine, &format!("{base}/match"), m),
        None if raw.network_match.is_some() => {
            ctx.err(
                &format!("{base}/networkMatch"),
                "`networkMatch` belongs to network (L3/L4) policies, which moat does not apply",
                None,
            );
            None
        }
        None => {
            ctx.err(
                base,
                "the rule has no `match`",
                Some("add `\"match\": {\"versionedExpr\": \"SRC_IPS_V1\", \"config\": {\"srcIpRanges\": [\"*\"]}}`"),
            );
            None
        }
    };
    let action = lower_action(ctx, base, raw);
    let waf_exclusions = raw
        .preconfigured_waf_config
        .as_ref()
        .map(|w| lower_exclusions(ctx, &format!("{base}/preconfiguredWafConfig/exclusions"), &w.exclusions))
        .unwrap_or_default();
    let headers = raw
        .header_action
        .as_ref()
        .map(|h| lower_headers(ctx, &format!("{base}/headerAction/requestHeadersToAdds"), &h.request_headers_to_adds))
        .unwrap_or_default();
    if priority == Some(DEFAULT_RULE_PRIORITY) {
        if raw.preview {
            ctx.err(
                &format!("{base}/preview"),
                "the default rule cannot be in preview mode",
                Some("set the default rule's action instead; with a preview default rule no rule would be enforced for unmatched requests"),
            );
        }
        if !matches!(matcher, Some(Match::SrcIps { all: true, .. }) | None) {
            ctx.err(
                &format!("{base}/match"),
                "the default rule must match `*`",
                Some("use `\"srcIpRanges\": [\"*\"]` and put narrower matches in other rules"),
            );
        }
    }
    if ctx.error_count() > before {
        return None;
    }
    Some(Rule {
        priority: priority?,
        description: raw.description.clone(),
        preview: raw.preview,
        matcher: matcher?,
        action: action?,
        request_headers_to_add: headers,
        waf_exclusions,
        source: ctx.source_ref(&format!("{base}/priority")),
    })
}

fn lower_exclusions(
    ctx: &mut Ctx<'_>,
    base: &str,
    raw: &[super::raw::RawWafExclusion],
) -> Vec<super::waf::WafExclusion> {
    use super::waf::{self, ExcludedField, FieldOp, WafExclusion};
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let here = format!("{base}/{i}");
        let Some(set_name) = e.target_rule_set.as_deref() else {
            ctx.err(
                &here,
                "the exclusion has no `targetRuleSet`",
                Some("name the set it tunes, e.g. `sqli-v33-stable`"),
            );
            continue;
        };
        let set = match waf::rule_set(set_name) {
            Ok(set) => set,
            Err(m) => {
                ctx.err(&format!("{here}/targetRuleSet"), m, None);
                continue;
            }
        };
        let mut rule_ids = Vec::new();
        for (j, id) in e.target_rule_ids.iter().enumerate() {
            match waf::check_signature_id(&set, set_name, id) {
                Ok(n) => rule_ids.push(n),
                Err(m) => ctx.err(&format!("{here}/targetRuleIds/{j}"), m, None),
            }
        }
        let mut fields = Vec::new();
        for (kind, key, list) in [
            (ExcludedField::Header, "requestHeadersToExclude", &e.request_headers_to_exclude),
            (ExcludedField::Cookie, "requestCookiesToExclude", &e.request_cookies_to_exclude),
            (ExcludedField::QueryParam, "requestQueryParamsToExclude", &e.request_query_params_to_exclude),
            (ExcludedField::Uri, "requestUrisToExclude", &e.request_uris_to_exclude),
        ] {
            for (j, f) in list.iter().enumerate() {
                let at = format!("{here}/{key}/{j}");
                let val = f.val.clone().unwrap_or_default();
                let op = match f.op.as_deref() {
                    Some("EQUALS_ANY") => Some(FieldOp::EqualsAny),
                    Some(_) if val.is_empty() => {
                        ctx.err(&at, "the field needs a `val` (or `\"op\": \"EQUALS_ANY\"`)", None);
                        None
                    }
                    Some("EQUALS") => Some(FieldOp::Equals(val)),
                    Some("STARTS_WITH") => Some(FieldOp::StartsWith(val)),
                    Some("ENDS_WITH") => Some(FieldOp::EndsWith(val)),
                    Some("CONTAINS") => Some(FieldOp::Contains(val)),
                    other => {
                        ctx.err(
                            &format!("{at}/op"),
                            format!("`{}` is not an exclusion operator", other.unwrap_or("")),
                            Some("use EQUALS, STARTS_WITH, ENDS_WITH, CONTAINS or EQUALS_ANY"),
                        );
                        None
                    }
                };
                if let Some(op) = op {
                    fields.push((kind, op));
                }
            }
        }
        if fields.is_empty() {
            ctx.err(&here, "the exclusion names no field to exclude", Some("add requestHeadersToExclude, requestCookiesToExclude, requestQueryParamsToExclude or requestUrisToExclude"));
            continue;
        }
        out.push(WafExclusion { set: set_name.to_owned(), rule_ids, fields });
    }
    out
}

fn check_priorities(ctx: &mut Ctx<'_>, rules: &[RawRule]) {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        let Some(p) = r.priority else { continue };
        if let Some(first) = seen.insert(p, i) {
            let (line, _) = ctx.position(&format!("/rules/{first}/priority"));
            ctx.err(
                &format!("/rules/{i}/priority"),
                format!("priority `{p}` is used twice (also on line {line})"),
                Some("priorities are unique within a policy; give this rule another one"),
            );
        }
    }
}

fn lower_match(ctx: &mut Ctx<'_>, engine: &dyn Engine, base: &str, raw: &RawMatch) -> Option<Match> {
    match (&raw.versioned_expr, &raw.expr) {
        (Some(_), Some(_)) => {
            ctx.err(base, "a match has either `versionedExpr` or `expr`, not both", None);
            None
        }
        (Some(v), None) if v == "SRC_IPS_V1" => lower_src_ips(ctx, base, raw),
        (Some(v), None) => {
            ctx.err(
                &format!("{base}/versionedExpr"),
                format!("`{v}` is not a basic match moat knows"),
                Some("use `SRC_IPS_V1`, or an `expr`"),
            );
            None
        }
        (None, Some(e)) => {
            let path = format!("{base}/expr/expression");
            let Some(text) = e.expression.as_deref() else {
                ctx.err(&format!("{base}/expr"), "the match has no `expression`", None);
                return None;
            };
            match engine.compile(text, &Limits::CLOUD_ARMOR) {
                Ok(compiled) => Some(Match::Expr(RuleExpr { text: text.to_owned(), compiled })),
                Err(e) => {
                    let (line, column) =
                        ctx.index.in_string(&path, e.span.start).unwrap_or_else(|| ctx.position(&path));
                    let what = match e.kind {
                        ExprErrorKind::Syntax | ExprErrorKind::Type => "invalid rule expression",
                        ExprErrorKind::Limit => "rule expression over Cloud Armor's limits",
                        ExprErrorKind::Unsupported => "rule expression moat cannot evaluate",
                    };
                    ctx.push(line, column, format!("{what}: {}", e.message), e.help);
                    None
                }
            }
        }
        (None, None) => {
            ctx.err(base, "the match has neither `versionedExpr` nor `expr`", None);
            None
        }
    }
}

fn lower_src_ips(ctx: &mut Ctx<'_>, base: &str, raw: &RawMatch) -> Option<Match> {
    let path = format!("{base}/config/srcIpRanges");
    let ranges = raw.config.as_ref().map(|c| c.src_ip_ranges.as_slice()).unwrap_or_default();
    if ranges.is_empty() {
        ctx.err(
            &path,
            "`SRC_IPS_V1` needs `config.srcIpRanges`",
            Some("list up to 10 CIDR ranges, or `*` for every address"),
        );
        return None;
    }
    if ranges.len() > MAX_SRC_IP_RANGES {
        ctx.err(
            &format!("{path}/{MAX_SRC_IP_RANGES}"),
            format!("{} ranges; Cloud Armor takes at most {MAX_SRC_IP_RANGES} per rule", ranges.len()),
            Some("split them over several rules"),
        );
        return None;
    }
    let mut all = false;
    let mut nets = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let r = r.trim();
        if r == "*" {
            all = true;
        } else if let Ok(net) = r.parse::<IpNet>() {
            nets.push(net.trunc());
        } else if let Ok(ip) = r.parse::<IpAddr>() {
            nets.push(IpNet::from(ip.to_canonical()));
        } else {
            ctx.err(
                &format!("{path}/{i}"),
                format!("`{r}` is not an IP range"),
                Some("write a CIDR such as `203.0.113.0/24`, an address, or `*`"),
            );
            return None;
        }
    }
    Some(Match::SrcIps { all, ranges: nets })
}

fn lower_action(ctx: &mut Ctx<'_>, base: &str, raw: &RawRule) -> Option<Action> {
    let path = format!("{base}/action");
    let rl_path = format!("{base}/rateLimitOptions");
    let redirect_path = format!("{base}/redirectOptions");
    let Some(action) = raw.action.as_deref() else {
        ctx.err(
            base,
            "the rule has no `action`",
            Some("use allow, deny(403), deny(404), deny(502), redirect, throttle or rate_based_ban"),
        );
        return None;
    };
    let rate_limited = matches!(action, "throttle" | "rate_based_ban");
    if !rate_limited && raw.rate_limit_options.is_some() {
        ctx.err(
            &rl_path,
            format!("`rateLimitOptions` only applies to `throttle` and `rate_based_ban`, not `{action}`"),
            None,
        );
    }
    if action != "redirect" && raw.redirect_options.is_some() {
        ctx.err(&redirect_path, format!("`redirectOptions` only applies to `redirect`, not `{action}`"), None);
    }
    match action {
        "allow" => Some(Action::Allow),
        "redirect" => match &raw.redirect_options {
            Some(r) => lower_redirect(ctx, &redirect_path, r).map(Action::Redirect),
            None => {
                ctx.err(
                    &path,
                    "a `redirect` rule needs `redirectOptions`",
                    Some("add `\"redirectOptions\": {\"type\": \"EXTERNAL_302\", \"target\": \"https://...\"}`"),
                );
                None
            }
        },
        "throttle" | "rate_based_ban" => {
            let ban = action == "rate_based_ban";
            let Some(options) = &raw.rate_limit_options else {
                ctx.err(&path, format!("a `{action}` rule needs `rateLimitOptions`"), None);
                return None;
            };
            let (limit, ban_opts) = rate_limit::lower(ctx, &rl_path, options, ban)?;
            match ban_opts {
                Some(b) => Some(Action::RateBasedBan(limit, b)),
                None => Some(Action::Throttle(limit)),
            }
        }
        "deny" => {
            ctx.err(
                &path,
                "`deny` without a status is for TCP/SSL proxy policies",
                Some("use deny(403), deny(404) or deny(502)"),
            );
            None
        }
        "fairshare" => {
            ctx.err(&path, "`fairshare` is an alpha action moat does not implement", None);
            None
        }
        a => match deny_status(a) {
            Some(s) if DENY_STATUSES.contains(&s) => Some(Action::Deny(s)),
            Some(s) => {
                ctx.err(
                    &path,
                    format!("a rule cannot deny with status {s}"),
                    Some("rules deny with 403, 404 or 502 (429 is for a rate limit's `exceedAction`)"),
                );
                None
            }
            None => {
                ctx.err(
                    &path,
                    format!("`{a}` is not an action"),
                    Some("use allow, deny(403), deny(404), deny(502), redirect, throttle or rate_based_ban"),
                );
                None
            }
        },
    }
}

pub(crate) fn lower_redirect(ctx: &mut Ctx<'_>, path: &str, raw: &RawRedirectOptions) -> Option<Redirect> {
    match (raw.kind.as_deref(), raw.target.as_deref()) {
        (Some("EXTERNAL_302"), Some(t)) if t.starts_with("https://") || t.starts_with("http://") => {
            if t.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                ctx.err(&format!("{path}/target"), "the redirect target contains spaces or control characters", None);
                return None;
            }
            Some(Redirect::External302 { target: t.to_owned() })
        }
        (Some("EXTERNAL_302"), Some(t)) => {
            ctx.err(&format!("{path}/target"), format!("redirect target `{t}` is not an http(s) URL"), None);
            None
        }
        (Some("EXTERNAL_302"), None) => {
            ctx.err(path, "an `EXTERNAL_302` redirect needs a `target`", None);
            None
        }
        (Some("GOOGLE_RECAPTCHA"), None) => Some(Redirect::GoogleRecaptcha),
        (Some("GOOGLE_RECAPTCHA"), Some(_)) => {
            ctx.err(&format!("{path}/target"), "a `GOOGLE_RECAPTCHA` redirect takes no `target`", None);
            None
        }
        (Some(other), _) => {
            ctx.err(
                &format!("{path}/type"),
                format!("`{other}` is not a redirect type"),
                Some("use EXTERNAL_302 or GOOGLE_RECAPTCHA"),
            );
            None
        }
        (None, _) => {
            ctx.err(path, "the redirect has no `type`", Some("use EXTERNAL_302 or GOOGLE_RECAPTCHA"));
            None
        }
    }
}

fn lower_headers(ctx: &mut Ctx<'_>, base: &str, raw: &[RawHeader]) -> Vec<HeaderToAdd> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let path = format!("{base}/{i}");
        let Some(name) = h.header_name.as_deref().filter(|n| !n.is_empty()) else {
            ctx.err(&path, "a header to add needs a `headerName`", None);
            continue;
        };
        if !name.bytes().all(is_token_byte) {
            ctx.err(&format!("{path}/headerName"), format!("`{name}` is not a valid header name"), None);
            continue;
        }
        if h.header_value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            ctx.err(&format!("{path}/headerValue"), "header values cannot contain line breaks or NUL", None);
            continue;
        }
        out.push(HeaderToAdd { name: name.to_ascii_lowercase(), value: h.header_value.clone() });
    }
    out
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
