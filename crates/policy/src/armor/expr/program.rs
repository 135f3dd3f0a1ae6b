//! The compiled form of a checked expression, and its evaluator.
//!
//! The `cel` crate's interpreter resolves every attribute by name on every access (allocating the
//! dotted name, boxing each value): about 1.2–2 µs per rule in our benchmark, far over a budget
//! of 10 µs for a 100-rule policy. Once [`check`](super::check) has proved an expression is
//! well-typed Cloud Armor, what is left is a handful of node kinds, so we lower the checked AST
//! to this tree, with attributes, regexes and ranges resolved at load, and evaluate it directly.
//! The crate's interpreter stays as the reference: the tests run both on every case.

use std::borrow::Cow;

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, SelectExpr};
use ipnet::IpNet;

use super::check::{CONST_PREFIX, Const};
use super::functions;
use super::{Activation, Attribute, EvalError};

#[derive(Debug)]
pub(crate) enum Node {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Box<str>),
    Attr(Attribute),
    /// `request.headers[key]`: an error when the header is absent, as in Cloud Armor.
    Header(Box<Node>),
    /// `has(request.headers['key'])`.
    HasHeader(Box<str>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Eq(Box<Node>, Box<Node>),
    Ne(Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
    /// `evaluatePreconfiguredWaf(...)`: asked of the request's WAF.
    Waf(std::sync::Arc<crate::armor::waf::WafCall>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Debug)]
pub(crate) enum Func {
    /// `inIpRange` with a range known at load.
    InRange(IpNet),
    /// `inIpRange` with a range computed per request.
    InIpRange,
    Matches(regex::Regex),
    /// `x.lower().contains('needle')` without allocating the lower-cased copy (it is built on
    /// the stack for the usual header sizes). `None` when the needle has an upper-case ASCII
    /// letter, which `lower()` output never contains.
    LowerContains(Option<Box<str>>),
    Size,
    Int,
    Contains,
    StartsWith,
    EndsWith,
    Lower,
    Upper,
    Base64Decode,
    UrlDecode,
    UrlDecodeUni,
    Utf8ToUnicode,
}

/// A value during evaluation; strings borrow the request where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

impl Value<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Double(_) => "double",
            Self::Str(_) => "string",
        }
    }
}

type R<'a> = Result<Value<'a>, EvalError>;

fn err<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError { message: message.into() })
}

/// Lowers a checked expression. Anything the checker would not have let through is an error.
pub(crate) fn lower(e: &IdedExpr, consts: &mut [Option<Const>]) -> Result<Node, String> {
    match &e.expr {
        Expr::Literal(LiteralValue::Boolean(b)) => Ok(Node::Bool(*b.inner())),
        Expr::Literal(LiteralValue::Int(i)) => Ok(Node::Int(*i.inner())),
        Expr::Literal(LiteralValue::Double(d)) => Ok(Node::Double(*d.inner())),
        Expr::Literal(LiteralValue::String(s)) => Ok(Node::Str(s.inner().into())),
        Expr::Select(SelectExpr { operand, field, test: true }) => {
            attribute_path(operand)
                .filter(|(a, rest)| *a == Attribute::RequestHeaders && rest.is_empty())
                .ok_or("has() on a non-header")?;
            Ok(Node::HasHeader(field.as_str().into()))
        }
        Expr::Ident(name) if name.starts_with(CONST_PREFIX) => match take_const(e, consts) {
            Some(Const::Waf(call)) => Ok(Node::Waf(call)),
            _ => Err("a constant out of place".to_owned()),
        },
        Expr::Ident(_) | Expr::Select(_) => {
            let (attr, rest) = attribute_path(e).ok_or("not an attribute")?;
            match rest.as_slice() {
                [] => Ok(Node::Attr(attr)),
                [field] if attr == Attribute::RequestHeaders => Ok(Node::Header(Box::new(Node::Str((*field).into())))),
                _ => Err("field selection on a non-map".to_owned()),
            }
        }
        Expr::Call(call) => lower_call(call, consts),
        _ => Err("unsupported expression".to_owned()),
    }
}

/// `request.headers.x` as (`request.headers`, [`x`]).
fn attribute_path(e: &IdedExpr) -> Option<(Attribute, Vec<&str>)> {
    let mut segments = Vec::new();
    let mut cur = e;
    loop {
        match &cur.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                break;
            }
            Expr::Select(SelectExpr { operand, field, test: false }) => {
                segments.push(field.as_str());
                cur = operand;
            }
            _ => return None,
        }
    }
    segments.reverse();
    (1..=segments.len()).rev().find_map(|k| {
        let (head, rest) = segments.split_at(k);
        Attribute::from_name(&head.join(".")).map(|a| (a, rest.to_vec()))
    })
}

fn lower_call(call: &CallExpr, consts: &mut [Option<Const>]) -> Result<Node, String> {
    let mut args = Vec::with_capacity(call.args.len() + 1);
    if let Some(t) = &call.target {
        args.push(t.as_ref());
    }
    args.extend(call.args.iter());
    let b = |e: &IdedExpr, consts: &mut [Option<Const>]| lower(e, consts).map(Box::new);
    let name = call.func_name.as_str();
    let node = match (name, args.as_slice()) {
        ("_&&_", [x, y]) => Node::And(b(x, consts)?, b(y, consts)?),
        ("_||_", [x, y]) => Node::Or(b(x, consts)?, b(y, consts)?),
        ("!_", [x]) => Node::Not(b(x, consts)?),
        ("_==_", [x, y]) => Node::Eq(b(x, consts)?, b(y, consts)?),
        ("_!=_", [x, y]) => Node::Ne(b(x, consts)?, b(y, consts)?),
        ("_<_", [x, y]) => Node::Cmp(Cmp::Lt, b(x, consts)?, b(y, consts)?),
        ("_<=_", [x, y]) => Node::Cmp(Cmp::Le, b(x, consts)?, b(y, consts)?),
        ("_>_", [x, y]) => Node::Cmp(Cmp::Gt, b(x, consts)?, b(y, consts)?),
        ("_>=_", [x, y]) => Node::Cmp(Cmp::Ge, b(x, consts)?, b(y, consts)?),
        ("_+_", [x, y]) => Node::Arith(Arith::Add, b(x, consts)?, b(y, consts)?),
        ("_-_", [x, y]) => Node::Arith(Arith::Sub, b(x, consts)?, b(y, consts)?),
        ("_*_", [x, y]) => Node::Arith(Arith::Mul, b(x, consts)?, b(y, consts)?),
        ("_[_]", [map, key]) => {
            attribute_path(map)
                .filter(|(a, rest)| *a == Attribute::RequestHeaders && rest.is_empty())
                .ok_or("index on a non-map")?;
            Node::Header(b(key, consts)?)
        }
        ("inIpRange", [ip, range]) => match take_const(range, consts) {
            Some(Const::Net(net)) => Node::Call(Func::InRange(net), vec![lower(ip, consts)?]),
            Some(Const::Regex(_) | Const::Waf(_)) => return Err("a regex as a range".to_owned()),
            None => Node::Call(Func::InIpRange, vec![lower(ip, consts)?, lower(range, consts)?]),
        },
        (
            "contains",
            [
                IdedExpr { expr: Expr::Call(inner), .. },
                IdedExpr { expr: Expr::Literal(LiteralValue::String(needle)), .. },
            ],
        ) if inner.func_name == "lower" && inner.args.is_empty() => {
            let Some(text) = inner.target.as_deref() else { return Err("lower() without a receiver".to_owned()) };
            let needle = needle.inner();
            let search = (!needle.bytes().any(|b| b.is_ascii_uppercase())).then(|| needle.into());
            Node::Call(Func::LowerContains(search), vec![lower(text, consts)?])
        }
        ("matches", [text, pattern]) => match take_const(pattern, consts) {
            Some(Const::Regex(re)) => Node::Call(Func::Matches(re), vec![lower(text, consts)?]),
            _ => return Err("matches() without a compiled pattern".to_owned()),
        },
        (f, _) => {
            let func = match f {
                "size" => Func::Size,
                "int" => Func::Int,
                "contains" => Func::Contains,
                "startsWith" => Func::StartsWith,
                "endsWith" => Func::EndsWith,
                "lower" => Func::Lower,
                "upper" => Func::Upper,
                "base64Decode" => Func::Base64Decode,
                "urlDecode" => Func::UrlDecode,
                "urlDecodeUni" => Func::UrlDecodeUni,
                "utf8ToUnicode" => Func::Utf8ToUnicode,
                other => return Err(format!("unknown function `{other}`")),
            };
            Node::Call(func, args.iter().map(|a| lower(a, consts)).collect::<Result<_, _>>()?)
        }
    };
    Ok(node)
}

/// The load-time value an `@N` argument stands for (each is used once).
fn take_const(e: &IdedExpr, consts: &mut [Option<Const>]) -> Option<Const> {
    let Expr::Ident(name) = &e.expr else { return None };
    let index: usize = name.strip_prefix(CONST_PREFIX)?.parse().ok()?;
    consts.get_mut(index)?.take()
}

impl Node {
    pub(crate) fn eval<'a>(&'a self, a: &Activation<'a>) -> R<'a> {
        match self {
            Node::Bool(b) => Ok(Value::Bool(*b)),
            Node::Int(i) => Ok(Value::Int(*i)),
            Node::Double(d) => Ok(Value::Double(*d)),
            Node::Str(s) => Ok(Value::Str(Cow::Borrowed(s))),
            Node::Attr(attr) => attribute(*attr, a),
            Node::Header(key) => {
                let key = key.eval(a)?;
                let Value::Str(key) = key else { return err("headers are indexed by name") };
                match a.headers.get(&key) {
                    Some(v) => Ok(Value::Str(Cow::Borrowed(v))),
                    None => err(format!("no header `{key}` in the request (guard with has())")),
                }
            }
            Node::HasHeader(key) => Ok(Value::Bool(a.headers.get(key).is_some())),
            Node::And(x, y) => logic(false, x, y, a),
            Node::Or(x, y) => logic(true, x, y, a),
            Node::Not(x) => Ok(Value::Bool(!bool_of(x.eval(a)?)?)),
            Node::Eq(x, y) => equals(x.eval(a)?, y.eval(a)?).map(Value::Bool),
            Node::Ne(x, y) => equals(x.eval(a)?, y.eval(a)?).map(|b| Value::Bool(!b)),
            Node::Cmp(op, x, y) => compare(*op, x.eval(a)?, y.eval(a)?),
            Node::Arith(op, x, y) => arith(*op, x.eval(a)?, y.eval(a)?),
            Node::Call(f, args) => call(f, args, a),
            Node::Waf(c) => match a.waf {
                Some(waf) => {
                    waf.evaluate(c, a.waf_exclusions).map(Value::Bool).map_err(|message| EvalError { message })
                }
                None => {
                    err(format!("`{c}` needs the request body and the CRS rules, which this evaluation does not have"))
                }
            },
        }
    }
}

/// `&&` (`short` false) and `||` (`short` true). As in CEL, an error on either side is absorbed
/// when the other side decides the result.
fn logic<'a>(short: bool, x: &'a Node, y: &'a Node, a: &Activation<'a>) -> R<'a> {
    let left = x.eval(a).and_then(bool_of);
    if left == Ok(short) {
        return Ok(Value::Bool(short));
    }
    match (left, y.eval(a).and_then(bool_of)) {
        (_, Ok(b)) if b == short => Ok(Value::Bool(short)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        _ => Ok(Value::Bool(!short)),
    }
}

fn bool_of(v: Value<'_>) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => err(format!("expected a bool, got a {}", other.type_name())),
    }
}

fn equals(x: Value<'_>, y: Value<'_>) -> Result<bool, EvalError> {
    match (x, y) {
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Int(x), Value::Int(y)) => Ok(x == y),
        (Value::Double(x), Value::Double(y)) => Ok(x == y),
        (Value::Str(x), Value::Str(y)) => Ok(x == y),
        (x, y) => err(format!("no matching overload for `==` applied to ({}, {})", x.type_name(), y.type_name())),
    }
}

fn compare<'a>(op: Cmp, x: Value<'_>, y: Value<'_>) -> R<'a> {
    let ord = match (&x, &y) {
        (Value::Int(x), Value::Int(y)) => x.partial_cmp(y),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        _ => return err(format!("no matching overload for ordering ({}, {})", x.type_name(), y.type_name())),
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(Value::Bool(match (op, ord) {
        (_, None) => false, // NaN
        (Cmp::Lt, Some(o)) => o == Less,
        (Cmp::Le, Some(o)) => o != Greater,
        (Cmp::Gt, Some(o)) => o == Greater,
        (Cmp::Ge, Some(o)) => o == Greater || o == Equal,
    }))
}

fn arith<'a>(op: Arith, x: Value<'a>, y: Value<'a>) -> R<'a> {
    let overflow = || err::<Value<'a>>("integer overflow");
    match (op, x, y) {
        (Arith::Add, Value::Int(x), Value::Int(y)) => x.checked_add(y).map_or_else(overflow, |v| Ok(Value::Int(v))),
        (Arith::Sub, Value::Int(x), Value::Int(y)) => x.checked_sub(y).map_or_else(overflow, |v| Ok(Value::Int(v))),
        (Arith::Mul, Value::Int(x), Value::Int(y)) => x.checked_mul(y).map_or_else(overflow, |v| Ok(Value::Int(v))),
        (Arith::Add, Value::Double(x), Value::Double(y)) => Ok(Value::Double(x + y)),
        (Arith::Sub, Value::Double(x), Value::Double(y)) => Ok(Value::Double(x - y)),
        (Arith::Mul, Value::Double(x), Value::Double(y)) => Ok(Value::Double(x * y)),
        (Arith::Add, Value::Str(x), Value::Str(y)) => Ok(Value::Str(Cow::Owned(format!("{x}{y}")))),
        (_, x, y) => err(format!("no matching overload for arithmetic on ({}, {})", x.type_name(), y.type_name())),
    }
}

fn attribute<'a>(attr: Attribute, a: &Activation<'a>) -> R<'a> {
    let s = |v: &'a str| Ok(Value::Str(Cow::Borrowed(v)));
    let missing = || err(format!("`{}` is not available: {}", attr.name(), attr.unavailable_because()));
    let t = a.tokens;
    match attr {
        Attribute::RequestMethod => s(a.method),
        Attribute::RequestPath => s(a.path),
        Attribute::RequestQuery => s(a.query),
        Attribute::RequestScheme => s(a.scheme),
        Attribute::OriginIp => s(a.ip),
        Attribute::OriginUserIp => s(a.user_ip),
        Attribute::OriginRegionCode => a.region_code.map_or_else(missing, s),
        Attribute::OriginAsn => a.asn.map_or_else(missing, |v| Ok(Value::Int(v))),
        Attribute::OriginTlsJa3Fingerprint => a.tls_ja3_fingerprint.map_or_else(missing, s),
        Attribute::OriginTlsJa4Fingerprint => a.tls_ja4_fingerprint.map_or_else(missing, s),
        Attribute::TokenRecaptchaExemptionValid => Ok(Value::Bool(t.exemption_valid)),
        Attribute::TokenRecaptchaActionScore => Ok(Value::Double(t.action_score)),
        Attribute::TokenRecaptchaActionCaptchaStatus => s(&t.action_captcha_status),
        Attribute::TokenRecaptchaActionAction => s(&t.action_name),
        Attribute::TokenRecaptchaActionValid => Ok(Value::Bool(t.action_valid)),
        Attribute::TokenRecaptchaSessionScore => Ok(Value::Double(t.session_score)),
        Attribute::TokenRecaptchaSessionValid => Ok(Value::Bool(t.session_valid)),
        Attribute::RequestHeaders => err("the headers map is not a value on its own"),
    }
}

fn call<'a>(f: &'a Func, args: &'a [Node], a: &Activation<'a>) -> R<'a> {
    let str_at = |i: usize| -> Result<Cow<'a, str>, EvalError> {
        match args.get(i).map(|n| n.eval(a)).transpose()? {
            Some(Value::Str(s)) => Ok(s),
            Some(other) => err(format!("expected a string, got a {}", other.type_name())),
            None => err("missing argument"),
        }
    };
    let owned = |s: String| Ok(Value::Str(Cow::Owned(s)));
    let fn_err = |name: &str, m: String| EvalError { message: format!("{name}(): {m}") };
    match f {
        Func::InRange(net) => {
            // The client address is parsed once per request, not once per rule.
            let parsed = match args.first() {
                Some(Node::Attr(Attribute::OriginIp)) => a.ip_addr,
                Some(Node::Attr(Attribute::OriginUserIp)) => a.user_ip_addr,
                _ => None,
            };
            let ip = match parsed {
                Some(ip) => ip,
                None => functions::parse_ip(&str_at(0)?).map_err(|m| fn_err("inIpRange", m))?,
            };
            Ok(Value::Bool(functions::net_contains(net, ip)))
        }
        Func::InIpRange => {
            let ip = functions::parse_ip(&str_at(0)?).map_err(|m| fn_err("inIpRange", m))?;
            let net = functions::parse_range(&str_at(1)?).map_err(|m| fn_err("inIpRange", m))?;
            Ok(Value::Bool(functions::net_contains(&net, ip)))
        }
        Func::Matches(re) => Ok(Value::Bool(re.is_match(&str_at(0)?))),
        Func::LowerContains(needle) => {
            let text = str_at(0)?;
            Ok(Value::Bool(needle.as_deref().is_some_and(|n| lower_contains(&text, n))))
        }
        Func::Size => Ok(Value::Int(i64::try_from(str_at(0)?.chars().count()).unwrap_or(i64::MAX))),
        Func::Int => match args.first().map(|n| n.eval(a)).transpose()? {
            Some(Value::Int(i)) => Ok(Value::Int(i)),
            Some(Value::Str(s)) => functions::parse_int(&s).map(Value::Int).map_err(|m| fn_err("int", m)),
            _ => err("int() takes a string or an int"),
        },
        Func::Contains => Ok(Value::Bool(str_at(0)?.contains(str_at(1)?.as_ref()))),
        Func::StartsWith => Ok(Value::Bool(str_at(0)?.starts_with(str_at(1)?.as_ref()))),
        Func::EndsWith => Ok(Value::Bool(str_at(0)?.ends_with(str_at(1)?.as_ref()))),
        Func::Lower => {
            let s = str_at(0)?;
            if s.bytes().any(|b| b.is_ascii_uppercase()) { owned(functions::lower(&s)) } else { Ok(Value::Str(s)) }
        }
        Func::Upper => {
            let s = str_at(0)?;
            if s.bytes().any(|b| b.is_ascii_lowercase()) { owned(functions::upper(&s)) } else { Ok(Value::Str(s)) }
        }
        Func::Base64Decode => {
            functions::base64_decode(&str_at(0)?).map_err(|m| fn_err("base64Decode", m)).and_then(owned)
        }
        Func::UrlDecode => {
            let s = str_at(0)?;
            if s.bytes().any(|b| b == b'%' || b == b'+') { owned(functions::url_decode(&s)) } else { Ok(Value::Str(s)) }
        }
        Func::UrlDecodeUni => {
            let s = str_at(0)?;
            if s.bytes().any(|b| b == b'%' || b == b'+') {
                owned(functions::url_decode_uni(&s))
            } else {
                Ok(Value::Str(s))
            }
        }
        Func::Utf8ToUnicode => {
            let s = str_at(0)?;
            if s.is_ascii() { Ok(Value::Str(s)) } else { owned(functions::utf8_to_unicode(&s)) }
        }
    }
}

/// `text.lower().contains(needle)`, lower-casing into a stack buffer when `text` fits.
fn lower_contains(text: &str, needle: &str) -> bool {
    let mut buf = [0u8; 512];
    if let Some(dst) = buf.get_mut(..text.len()) {
        for (d, b) in dst.iter_mut().zip(text.bytes()) {
            *d = b.to_ascii_lowercase();
        }
        // ASCII case mapping keeps UTF-8 valid, so this never fails.
        return std::str::from_utf8(dst).is_ok_and(|lowered| lowered.contains(needle));
    }
    functions::lower(text).contains(needle)
}
