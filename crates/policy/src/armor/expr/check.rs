//! The Cloud Armor type checker, over the `cel` crate's AST.
//!
//! The crate parses and interprets full CEL and has no checker, so this is where an expression
//! becomes a Cloud Armor expression: exactly the attributes and overloads of the published
//! `cloud-armor-v1` environment, typed equality (`==` only between two bools, ints, doubles or
//! strings), ordering only on numbers, no `in`, no ternary, no macros but `has()`, a bool result,
//! and the limits. It also prepares the program: the pattern of `matches()` and a literal range
//! of `inIpRange()` are compiled here, once, and the literal replaced by a reference to the
//! compiled value (an identifier starting with `@`, which no expression can spell).

use std::collections::BTreeSet;
use std::ops::Range;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SelectExpr, SourceInfo};
use ipnet::IpNet;

use super::functions::parse_range;
use super::{Attribute, ExprError, ExprErrorKind, Limits, Ty};
use crate::armor::waf;

/// A value compiled at load and referenced by the program as `@N`.
#[derive(Debug)]
pub(crate) enum Const {
    Regex(regex::Regex),
    Net(IpNet),
    /// A whole `evaluatePreconfiguredWaf(...)` call, replaced by a reference to this.
    Waf(std::sync::Arc<waf::WafCall>),
}

pub(crate) const CONST_PREFIX: &str = "@";

/// What the checker learned about a valid expression.
#[derive(Debug)]
pub(crate) struct Checked {
    pub consts: Vec<Const>,
    pub attributes: Vec<Attribute>,
}

/// Regexes are linear-time in the `regex` crate; this bounds their compiled size.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Service-side functions seen in Google's docs: real Cloud Armor, but evaluated against data
/// moat does not have.
const SERVICE_SIDE: &[&str] = &[
    "evaluateThreatIntelligence",
    "evaluateAddressGroup",
    "evaluateOrganizationAddressGroup",
    "evaluateAdaptiveProtection",
    "evaluateAdaptiveProtectionAutoDeploy",
];

pub(crate) fn check(expr: &mut IdedExpr, info: &SourceInfo, limits: &Limits) -> Result<Checked, ExprError> {
    let mut checker = Checker { info, consts: Vec::new(), attributes: BTreeSet::new() };
    let ty = checker.ty(expr)?;
    if ty != Ty::Bool {
        return Err(ExprError::new(
            ExprErrorKind::Type,
            span(info, expr),
            format!("the expression must evaluate to a bool, but it evaluates to a {}", ty.name()),
        )
        .help("compare the value, for example `request.method == 'POST'`"));
    }
    check_limits(expr, info, limits)?;
    Ok(Checked { consts: checker.consts, attributes: checker.attributes.into_iter().collect() })
}

/// The operands of `&&`, `||` and `!`: what Cloud Armor counts as subexpressions.
fn subexpressions<'e>(e: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    match &e.expr {
        Expr::Call(c) if c.target.is_none() && matches!(c.func_name.as_str(), "_&&_" | "_||_" | "!_") => {
            for a in &c.args {
                subexpressions(a, out);
            }
        }
        _ => out.push(e),
    }
}

fn check_limits(expr: &IdedExpr, info: &SourceInfo, limits: &Limits) -> Result<(), ExprError> {
    let chars = info.source.chars().count();
    if let Some(max) = limits.max_expression_chars
        && chars > max
    {
        return Err(ExprError::new(
            ExprErrorKind::Limit,
            0..chars,
            format!("the expression is {chars} characters long; Cloud Armor takes at most {max}"),
        )
        .help("split it over several rules"));
    }
    let mut subs = Vec::new();
    subexpressions(expr, &mut subs);
    if let Some(max) = limits.max_subexpressions
        && subs.len() > max
    {
        let extra = subs.get(max).map_or(0..chars, |e| span(info, e));
        return Err(ExprError::new(
            ExprErrorKind::Limit,
            extra,
            format!("the expression has {} subexpressions; Cloud Armor takes at most {max}", subs.len()),
        )
        .help("split it over several rules (each operand of `&&`, `||` and `!` is one subexpression)"));
    }
    if let Some(max) = limits.max_subexpression_chars {
        for s in subs {
            let sp = span(info, s);
            if sp.len() > max {
                return Err(ExprError::new(
                    ExprErrorKind::Limit,
                    sp.clone(),
                    format!("this subexpression is {} characters long; Cloud Armor takes at most {max}", sp.len()),
                ));
            }
        }
    }
    Ok(())
}

/// The characters an expression covers, from its first to its last token (closing brackets
/// aside). The parser records byte offsets of one token per node: the operator, the `(` of a
/// call, the `.` of a field selection; this widens them to whole names and counts characters.
pub(crate) fn span(info: &SourceInfo, e: &IdedExpr) -> Range<usize> {
    let mut lo = usize::MAX;
    let mut hi = 0usize;
    visit(e, &mut |n| {
        let Some((start, stop)) = info.offset_for(n.id) else { return };
        let (mut start, mut stop) = (start as usize, stop as usize + 1);
        match &n.expr {
            Expr::Call(c) if c.target.is_none() && c.func_name.starts_with(|ch: char| ch.is_ascii_alphabetic()) => {
                start = start.saturating_sub(c.func_name.len());
            }
            Expr::Select(SelectExpr { test: true, .. }) => start = start.saturating_sub("has".len()),
            Expr::Select(SelectExpr { field, .. }) => stop = stop.max(start + 1 + field.len()),
            _ => {}
        }
        lo = lo.min(start);
        hi = hi.max(stop);
    });
    if lo == usize::MAX {
        return 0..0;
    }
    let chars = |byte: usize| {
        let byte = byte.min(info.source.len());
        info.source.char_indices().take_while(|(i, _)| *i < byte).count()
    };
    chars(lo)..chars(hi.max(lo))
}

fn visit(e: &IdedExpr, f: &mut impl FnMut(&IdedExpr)) {
    f(e);
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                visit(t, f);
            }
            c.args.iter().for_each(|a| visit(a, f));
        }
        Expr::Select(s) => visit(&s.operand, f),
        Expr::List(l) => l.elements.iter().for_each(|a| visit(a, f)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    visit(&me.key, f);
                    visit(&me.value, f);
                }
            }
        }
        _ => {}
    }
}

/// `a.b.c` as its segments, when the expression is only identifiers and field selections.
fn qualified_name(e: &IdedExpr) -> Option<Vec<&str>> {
    match &e.expr {
        Expr::Ident(name) => Some(vec![name.as_str()]),
        Expr::Select(SelectExpr { operand, field, test: false }) => {
            let mut segments = qualified_name(operand)?;
            segments.push(field.as_str());
            Some(segments)
        }
        _ => None,
    }
}

fn operator_name(func: &str) -> &str {
    match func {
        "_==_" => "==",
        "_!=_" => "!=",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        "_+_" => "+",
        "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        "_[_]" => "[]",
        "_&&_" => "&&",
        "_||_" => "||",
        "!_" => "!",
        "-_" => "unary -",
        "_?_:_" => "? :",
        "@in" => "in",
        other => other,
    }
}

struct Checker<'i> {
    info: &'i SourceInfo,
    consts: Vec<Const>,
    attributes: BTreeSet<Attribute>,
}

impl Checker<'_> {
    fn err(&self, e: &IdedExpr, message: impl Into<String>) -> ExprError {
        ExprError::new(ExprErrorKind::Type, span(self.info, e), message)
    }

    fn ty(&mut self, e: &mut IdedExpr) -> Result<Ty, ExprError> {
        match &e.expr {
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::Uint,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Null => Ty::Null,
            }),
            Expr::Ident(_) | Expr::Select(SelectExpr { test: false, .. }) => self.select(e),
            Expr::Select(SelectExpr { test: true, .. }) => self.presence(e),
            Expr::Call(_) => self.call(e),
            Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => Err(self
                .err(e, "list, map and message literals are not accepted here")
                .help("Cloud Armor rules compare attributes with literals; lists and maps only appear as arguments of `evaluatePreconfiguredWaf()`")),
            Expr::Comprehension(_) => Err(self.err(e, "macros are not part of the Cloud Armor rules language")),
            Expr::Unspecified => Err(ExprError::new(ExprErrorKind::Syntax, span(self.info, e), "incomplete expression")),
        }
    }

    /// An attribute, or a field of one.
    fn select(&mut self, e: &mut IdedExpr) -> Result<Ty, ExprError> {
        if let Some(segments) = qualified_name(e) {
            for k in (1..=segments.len()).rev() {
                let (head, rest) = segments.split_at(k);
                if let Some(attr) = Attribute::from_name(&head.join(".")) {
                    self.attributes.insert(attr);
                    return rest.iter().try_fold(attr.ty(), |ty, field| self.field(e, ty, field));
                }
            }
            return Err(self.undeclared(e, &segments.join(".")));
        }
        let whole = span(self.info, e);
        let Expr::Select(SelectExpr { operand, field, .. }) = &mut e.expr else {
            return Err(ExprError::new(ExprErrorKind::Type, whole, "unexpected expression"));
        };
        match self.ty(operand)? {
            Ty::Headers => Ok(Ty::String),
            other => {
                Err(ExprError::new(ExprErrorKind::Type, whole, format!("a {} has no field `{field}`", other.name())))
            }
        }
    }

    fn field(&self, e: &IdedExpr, ty: Ty, field: &str) -> Result<Ty, ExprError> {
        match ty {
            Ty::Headers => Ok(Ty::String),
            other => Err(self.err(e, format!("a {} has no field `{field}`", other.name()))),
        }
    }

    fn undeclared(&self, e: &IdedExpr, name: &str) -> ExprError {
        let root = name.split('.').next().unwrap_or(name);
        let err = self.err(e, format!("undeclared reference to `{name}`"));
        if matches!(name, "request.body" | "request.params") || name.starts_with("request.params.") {
            return err.help("`request.body` and `request.params` belong to the next version of the Cloud Armor language (cloud-armor-v2), which the service does not accept yet");
        }
        let known: Vec<&str> =
            Attribute::ALL.iter().map(|a| a.name()).filter(|n| n.split('.').next() == Some(root)).collect();
        if known.is_empty() {
            err.help("the attributes are `request.*`, `origin.*` and `token.*`")
        } else {
            err.help(format!("the `{root}` attributes are {}", known.join(", ")))
        }
    }

    /// `has(request.headers['x'])` and `has(request.headers.x)`, which the parser turned into a
    /// presence test.
    fn presence(&mut self, e: &mut IdedExpr) -> Result<Ty, ExprError> {
        let whole = span(self.info, e);
        let err = |message: String| {
            ExprError::new(ExprErrorKind::Type, whole.clone(), message)
                .help("test for a header with `has(request.headers['x-key'])`")
        };
        let Expr::Select(SelectExpr { operand, .. }) = &mut e.expr else {
            return Err(err("unexpected expression".to_owned()));
        };
        if let Expr::Ident(root) = &operand.expr
            && matches!(root.as_str(), "request" | "origin" | "token")
        {
            return Err(err(format!("has() tests for a header; the `{root}` attributes are always present")));
        }
        let ty = self.ty(operand)?;
        if ty == Ty::Headers {
            Ok(Ty::Bool)
        } else {
            Err(err(format!("has() tests for a key of a map, but this is a {}", ty.name())))
        }
    }

    fn call(&mut self, e: &mut IdedExpr) -> Result<Ty, ExprError> {
        let whole = span(self.info, e);
        let Expr::Call(call) = &mut e.expr else {
            return Err(ExprError::new(ExprErrorKind::Type, whole, "unexpected expression"));
        };
        let name = call.func_name.clone();
        let member = call.target.is_some();
        let err = |message: String| ExprError::new(ExprErrorKind::Type, whole.clone(), message);
        match (name.as_str(), member) {
            ("_&&_" | "_||_" | "!_", false) => {
                let tys = self.arg_types(call)?;
                if tys.iter().all(|t| *t == Ty::Bool) {
                    Ok(Ty::Bool)
                } else {
                    Err(err(no_overload(&name, &tys))
                        .help("`&&`, `||` and `!` take bools; compare values first, e.g. `request.method == 'GET'`"))
                }
            }
            ("_==_" | "_!=_", false) => {
                let tys = self.arg_types(call)?;
                match tys.as_slice() {
                    [a, b] if a == b && matches!(a, Ty::Bool | Ty::Int | Ty::Double | Ty::String) => Ok(Ty::Bool),
                    _ => Err(err(no_overload(&name, &tys)).help(
                        "Cloud Armor has no generic equality: both sides must be bools, ints, doubles or strings of the same type (convert a string with `int()`)",
                    )),
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", false) => {
                let tys = self.arg_types(call)?;
                match tys.as_slice() {
                    [a, b] if a == b && matches!(a, Ty::Int | Ty::Double) => Ok(Ty::Bool),
                    [a, b] if *a == Ty::String || *b == Ty::String => {
                        Err(err(format!("strings cannot be ordered with `{}` in Cloud Armor rules", operator_name(&name)))
                            .help("only ints and doubles are ordered; for strings use `==`, `startsWith()`, `endsWith()` or `matches()`"))
                    }
                    _ => Err(err(no_overload(&name, &tys)).help("both sides must be ints, or both doubles")),
                }
            }
            ("_+_" | "_-_" | "_*_", false) => {
                let tys = self.arg_types(call)?;
                match tys.as_slice() {
                    [a, b] if a == b && matches!(a, Ty::Int | Ty::Double) => Ok(*a),
                    [Ty::String, Ty::String] if name == "_+_" => Ok(Ty::String),
                    _ => Err(err(no_overload(&name, &tys))),
                }
            }
            ("_[_]", false) => {
                let tys = self.arg_types(call)?;
                match tys.as_slice() {
                    [Ty::Headers, Ty::String] => Ok(Ty::String),
                    _ => Err(err(no_overload(&name, &tys)).help("index the headers by name: `request.headers['user-agent']`")),
                }
            }
            ("@in", false) => Err(err("the `in` operator is not part of the Cloud Armor rules language".to_owned())
                .help("compare with `==` and combine with `||`, or use `matches()` with an alternation")),
            ("_?_:_" | "-_" | "_/_" | "_%_" | "@not_strictly_false" | "_?._" | "_[?_]", false) => Err(err(format!(
                "the `{}` operator is not part of the Cloud Armor rules language",
                operator_name(&name)
            ))),
            ("has", false) => Err(err("has() takes a header, as in `has(request.headers['x-key'])`".to_owned())),
            ("size", _) => {
                let tys = self.receiver_and_args(call)?;
                if tys == [Ty::String] { Ok(Ty::Int) } else { Err(err(no_overload(&name, &tys)).help("size() takes a string")) }
            }
            ("int", false) => {
                let tys = self.arg_types(call)?;
                if matches!(tys.as_slice(), [Ty::String | Ty::Int]) {
                    Ok(Ty::Int)
                } else {
                    Err(err(no_overload(&name, &tys)).help("int() takes a string or an int"))
                }
            }
            ("contains" | "startsWith" | "endsWith", true) => {
                let tys = self.receiver_and_args(call)?;
                if tys == [Ty::String, Ty::String] { Ok(Ty::Bool) } else { Err(err(no_overload(&name, &tys))) }
            }
            ("lower" | "upper" | "base64Decode" | "urlDecode" | "urlDecodeUni" | "utf8ToUnicode", true) => {
                let tys = self.receiver_and_args(call)?;
                if tys == [Ty::String] {
                    Ok(Ty::String)
                } else {
                    Err(err(no_overload(&name, &tys)).help(format!("call it on a string: `request.path.{name}()`")))
                }
            }
            ("matches", _) => {
                let tys = self.receiver_and_args(call)?;
                if tys != [Ty::String, Ty::String] {
                    return Err(err(no_overload(&name, &tys)));
                }
                self.compile_regex(call)?;
                Ok(Ty::Bool)
            }
            ("inIpRange", false) => {
                let tys = self.arg_types(call)?;
                if tys != [Ty::String, Ty::String] {
                    return Err(err(no_overload(&name, &tys)).help("write `inIpRange(origin.ip, '10.0.0.0/8')`"));
                }
                self.compile_range(call)?;
                Ok(Ty::Bool)
            }
            ("evaluatePreconfiguredWaf" | "evaluatePreconfiguredExpr", false) => {
                let waf = self.waf_call(call, &name, whole.clone())?;
                // The whole call becomes a reference to the checked call: the evaluator asks the
                // request's WAF for it.
                let index = self.consts.len();
                self.consts.push(Const::Waf(std::sync::Arc::new(waf)));
                e.expr = Expr::Ident(format!("{CONST_PREFIX}{index}"));
                Ok(Ty::Bool)
            }
            (f, _) if SERVICE_SIDE.contains(&f) => Err(ExprError::new(
                ExprErrorKind::Unsupported,
                whole,
                format!("`{f}()` is evaluated by the Cloud Armor service against data moat does not have, so this policy does not load (fail closed)"),
            )
            .help("remove the rule, or express it with `inIpRange()` over the addresses you mean")),
            _ if is_known_function(&name) => {
                let tys = self.receiver_and_args(call)?;
                Err(err(no_overload(&name, &tys)).help(usage(&name)))
            }
            _ => Err(err(format!("undeclared reference to `{name}`")).help(
                "the functions are inIpRange, lower, upper, base64Decode, urlDecode, urlDecodeUni, utf8ToUnicode, matches, contains, startsWith, endsWith, size, int and has",
            )),
        }
    }

    fn arg_types(&mut self, call: &mut CallExpr) -> Result<Vec<Ty>, ExprError> {
        call.args.iter_mut().map(|a| self.ty(a)).collect()
    }

    /// The receiver's type first (for `x.f(y)`), then the arguments'.
    fn receiver_and_args(&mut self, call: &mut CallExpr) -> Result<Vec<Ty>, ExprError> {
        let mut tys = Vec::with_capacity(call.args.len() + 1);
        if let Some(t) = call.target.as_deref_mut() {
            tys.push(self.ty(t)?);
        }
        for a in &mut call.args {
            tys.push(self.ty(a)?);
        }
        Ok(tys)
    }

    /// Replaces a literal argument by a reference to the value compiled from it.
    fn push_const(&mut self, arg: &mut IdedExpr, value: Const) {
        let index = self.consts.len();
        self.consts.push(value);
        arg.expr = Expr::Ident(format!("{CONST_PREFIX}{index}"));
    }

    fn compile_regex(&mut self, call: &mut CallExpr) -> Result<(), ExprError> {
        let Some(pattern_arg) = call.args.last_mut() else { return Ok(()) };
        let Some(pattern) = string_literal(pattern_arg) else {
            return Err(self
                .err(pattern_arg, "the pattern of matches() must be a string literal")
                .help("moat compiles every pattern once, when the policy loads; write the pattern in quotes"));
        };
        let regex = regex::RegexBuilder::new(&pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
            let detail = match &e {
                regex::Error::Syntax(s) => {
                    let last = s.lines().last().unwrap_or(s).trim();
                    last.strip_prefix("error: ").unwrap_or(last).to_owned()
                }
                other => other.to_string(),
            };
            self.err(pattern_arg, format!("invalid RE2 pattern `{pattern}`: {detail}"))
                .help("matches() uses RE2 syntax: no look-around (`(?=`, `(?!`, `(?<=`) and no backreferences")
        })?;
        self.push_const(pattern_arg, Const::Regex(regex));
        Ok(())
    }

    fn compile_range(&mut self, call: &mut CallExpr) -> Result<(), ExprError> {
        let Some(range_arg) = call.args.last_mut() else { return Ok(()) };
        // A range computed at request time is parsed then; a literal one is checked now.
        let Some(range) = string_literal(range_arg) else { return Ok(()) };
        let net = parse_range(&range).map_err(|m| self.err(range_arg, m))?;
        self.push_const(range_arg, Const::Net(net));
        Ok(())
    }

    fn waf_call(&mut self, call: &CallExpr, name: &str, whole: Range<usize>) -> Result<waf::WafCall, ExprError> {
        let legacy = name == "evaluatePreconfiguredExpr";
        let (set_arg, options) = match call.args.as_slice() {
            [set] => (set, None),
            [set, options] => (set, Some(options)),
            _ => {
                return Err(ExprError::new(
                    ExprErrorKind::Type,
                    whole,
                    format!("`{name}()` takes a rule set name and optional tuning"),
                )
                .help("write `evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})`"));
            }
        };
        let Some(set_name) = string_literal(set_arg) else {
            return Err(self.err(set_arg, "the rule set must be a string literal such as 'sqli-v33-stable'"));
        };
        let set = waf::rule_set(&set_name).map_err(|m| self.err(set_arg, m))?;
        let mut sensitivity = None;
        let (mut opt_in, mut opt_out) = (Vec::new(), Vec::new());
        match options {
            None => {}
            Some(list) if legacy => {
                // evaluatePreconfiguredExpr('set', ['id', ...]): the ids to leave out.
                opt_out = self.signature_ids(list, &set, &set_name)?;
            }
            Some(map) => {
                let Expr::Map(m) = &map.expr else {
                    return Err(self.err(map, "the tuning must be a map such as {'sensitivity': 1}"));
                };
                for entry in &m.entries {
                    let EntryExpr::MapEntry(me) = &entry.expr else { continue };
                    match string_literal(&me.key).as_deref() {
                        Some("sensitivity") => match &me.value.expr {
                            Expr::Literal(LiteralValue::Int(i)) => sensitivity = Some(*i.inner()),
                            _ => return Err(self.err(&me.value, "sensitivity must be an integer from 0 to 4")),
                        },
                        Some("opt_in_rule_ids") => opt_in = self.signature_ids(&me.value, &set, &set_name)?,
                        Some("opt_out_rule_ids") => opt_out = self.signature_ids(&me.value, &set, &set_name)?,
                        _ => {
                            return Err(self
                                .err(&me.key, "unknown tuning key")
                                .help("the keys are 'sensitivity', 'opt_in_rule_ids' and 'opt_out_rule_ids'"));
                        }
                    }
                }
            }
        }
        waf::check_tuning(sensitivity, opt_in.len(), opt_out.len())
            .map_err(|m| ExprError::new(ExprErrorKind::Type, whole.clone(), m))?;
        let sensitivity = sensitivity.and_then(|s| u8::try_from(s).ok()).unwrap_or(waf::DEFAULT_SENSITIVITY);
        Ok(waf::WafCall { set: set_name, family: set.family, version: set.version, sensitivity, opt_in, opt_out })
    }

    fn signature_ids(&self, list: &IdedExpr, set: &waf::RuleSet, set_name: &str) -> Result<Vec<u32>, ExprError> {
        let Expr::List(l) = &list.expr else {
            return Err(self.err(list, "expected a list of signature ids such as ['owasp-crs-v030301-id942100-sqli']"));
        };
        let mut ids = Vec::with_capacity(l.elements.len());
        for element in &l.elements {
            let Some(id) = string_literal(element) else {
                return Err(self.err(element, "a signature id must be a string literal"));
            };
            ids.push(waf::check_signature_id(set, set_name, &id).map_err(|m| self.err(element, m))?);
        }
        Ok(ids)
    }
}

fn string_literal(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_owned()),
        _ => None,
    }
}

fn is_known_function(name: &str) -> bool {
    matches!(
        name,
        "inIpRange"
            | "lower"
            | "upper"
            | "base64Decode"
            | "urlDecode"
            | "urlDecodeUni"
            | "utf8ToUnicode"
            | "matches"
            | "contains"
            | "startsWith"
            | "endsWith"
            | "size"
            | "int"
    )
}

fn usage(name: &str) -> String {
    match name {
        "inIpRange" => "write `inIpRange(origin.ip, '10.0.0.0/8')`".to_owned(),
        "contains" | "startsWith" | "endsWith" | "matches" => {
            format!("call it on a string: `request.path.{name}('...')`")
        }
        "int" => "write `int(request.headers['content-length'])`".to_owned(),
        _ => format!("call it on a string: `request.path.{name}()`"),
    }
}

fn no_overload(func: &str, tys: &[Ty]) -> String {
    let names: Vec<&str> = tys.iter().map(|t| t.name()).collect();
    format!("no matching overload for `{}` applied to ({})", operator_name(func), names.join(", "))
}
