//! [`Engine`] on the `cel` crate (pinned `=0.15.0`): its parser, with the standard macros
//! replaced by Cloud Armor's `has()`, and its interpreter, over an environment that declares
//! only the Cloud Armor functions. Operators are built into the interpreter whatever the
//! environment says, which is why [`check`](super::check) runs first and rejects the ones
//! Cloud Armor leaves out.
//!
//! Per request nothing is copied: attributes are resolved on access, borrowing the request
//! ([`Resolver`]), and headers are looked up in place ([`HeadersVal`]).

use std::fmt;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr, LiteralValue, SelectExpr};
use cel::common::traits::Indexer;
use cel::common::types::{CelBool, CelDouble, CelInt, CelString, INT_TYPE, MAP_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::context::VariableResolver;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{Context, DeclarationError, Env, ExecutionError, Value};
use ipnet::IpNet;

use super::check::{self, CONST_PREFIX, Const};
use super::{Activation, Attribute, Compiled, Engine, EvalError, ExprError, ExprErrorKind, HARD_MAX_CHARS, Limits};
use super::{functions, program};
use crate::armor::request::Headers;

/// The Cloud Armor environment on the `cel` crate. Cheap to clone.
#[derive(Clone)]
pub struct CelEngine {
    env: Arc<Env>,
    /// Evaluate with the crate's interpreter (the reference) instead of our compiled tree.
    interpret: bool,
}

impl fmt::Debug for CelEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CelEngine(cloud-armor-v1, {})", if self.interpret { "interpreted" } else { "compiled" })
    }
}

impl CelEngine {
    /// The engine policies use: the crate's parser, our checker, our compiled evaluator.
    pub fn new() -> Result<Self, String> {
        Self::build(false)
    }

    /// The same parser and checker, evaluated by the `cel` crate's interpreter: the reference
    /// the compiled evaluator is tested against. About 20 times slower.
    pub fn interpreted() -> Result<Self, String> {
        Self::build(true)
    }

    fn build(interpret: bool) -> Result<Self, String> {
        build_env()
            .map(|env| Self { env: Arc::new(env), interpret })
            .map_err(|e| format!("cannot build the CEL environment: {e}"))
    }
}

impl Engine for CelEngine {
    fn compile(&self, source: &str, limits: &Limits) -> Result<Arc<dyn Compiled>, ExprError> {
        let chars = source.chars().count();
        if chars > HARD_MAX_CHARS {
            return Err(ExprError::new(
                ExprErrorKind::Limit,
                0..chars,
                format!("the expression is {chars} characters long; moat reads at most {HARD_MAX_CHARS}"),
            ));
        }
        let (mut expr, info) =
            self.env.parser().parse_with_source_info(source).map_err(|errors| syntax_error(source, &errors))?;
        let checked = check::check(&mut expr, &info, limits)?;
        if !self.interpret {
            let uses_waf = checked.consts.iter().any(|c| matches!(c, Const::Waf(_)));
            let mut consts: Vec<Option<Const>> = checked.consts.into_iter().map(Some).collect();
            let node = program::lower(&expr, &mut consts).map_err(|m| {
                ExprError::new(ExprErrorKind::Type, 0..chars, format!("internal error compiling the expression: {m}"))
            })?;
            return Ok(Arc::new(Program { node, attributes: checked.attributes, uses_waf }));
        }
        let mut waf = Vec::new();
        let consts = checked
            .consts
            .into_iter()
            .map(|c| -> Box<dyn Val> {
                match c {
                    Const::Regex(r) => {
                        waf.push(None);
                        Box::new(RegexVal(r))
                    }
                    Const::Net(n) => {
                        waf.push(None);
                        Box::new(NetVal(n))
                    }
                    // Resolved per request through the activation's WAF (see `Resolver`).
                    Const::Waf(call) => {
                        waf.push(Some(call));
                        Box::new(CelBool::from(false))
                    }
                }
            })
            .collect();
        Ok(Arc::new(CelCompiled { env: Arc::clone(&self.env), expr, consts, waf, attributes: checked.attributes }))
    }
}

/// The compiled tree of [`program`].
#[derive(Debug)]
struct Program {
    node: program::Node,
    attributes: Vec<Attribute>,
    uses_waf: bool,
}

impl Compiled for Program {
    fn eval(&self, activation: &Activation<'_>) -> Result<bool, EvalError> {
        match self.node.eval(activation)? {
            program::Value::Bool(b) => Ok(b),
            _ => Err(EvalError { message: "the expression did not evaluate to a bool".to_owned() }),
        }
    }

    fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    fn uses_waf(&self) -> bool {
        self.uses_waf
    }
}

fn syntax_error(source: &str, errors: &cel::ParseErrors) -> ExprError {
    let Some(first) = errors.errors.first() else {
        return ExprError::new(ExprErrorKind::Syntax, 0..0, "the expression does not parse");
    };
    // The parser reports a 1-based line and a 1-based byte column; make it a character offset.
    let (line, column) = (first.pos.0.max(1) as usize, first.pos.1.max(1) as usize);
    let byte = source.split_inclusive('\n').take(line - 1).map(str::len).sum::<usize>() + column - 1;
    let start = source.char_indices().take_while(|(i, _)| *i < byte).count();
    let message = first.msg.strip_prefix("Syntax error: ").unwrap_or(&first.msg).to_owned();
    let err = ExprError::new(ExprErrorKind::Syntax, start..start + 1, format!("syntax error: {message}"));
    if message.contains("token recognition error at: '#'") {
        err.help("CEL has no `#` comments; write `//` comments, or remove the line")
    } else {
        err.help("see the Cloud Armor rules language reference for the syntax")
    }
}

struct CelCompiled {
    env: Arc<Env>,
    expr: IdedExpr,
    consts: Vec<Box<dyn Val>>,
    /// For each constant, the WAF call it stands for, if it is one.
    waf: Vec<Option<Arc<super::super::waf::WafCall>>>,
    attributes: Vec<Attribute>,
}

impl fmt::Debug for CelCompiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CelCompiled").field("attributes", &self.attributes).finish_non_exhaustive()
    }
}

impl Compiled for CelCompiled {
    fn eval(&self, activation: &Activation<'_>) -> Result<bool, EvalError> {
        let resolver = Resolver { a: activation, consts: &self.consts, waf: &self.waf };
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        ctx.set_variable_resolver(&resolver);
        match Value::resolve_val(&self.expr, &ctx) {
            Ok(v) => match v.downcast_ref::<CelBool>() {
                Some(b) => Ok(*b.inner()),
                None => Err(EvalError { message: format!("the expression evaluated to a {}", v.get_type().name()) }),
            },
            Err(e) => Err(self.explain(activation, &e)),
        }
    }

    fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    fn uses_waf(&self) -> bool {
        self.waf.iter().any(Option::is_some)
    }
}

impl CelCompiled {
    fn explain(&self, activation: &Activation<'_>, e: &ExecutionError) -> EvalError {
        // The resolver leaves an attribute the request lacks undefined, which the interpreter
        // reports as an undeclared `origin`: name the attribute instead.
        if matches!(e, ExecutionError::UndeclaredReference(_))
            && let Some(missing) = self.attributes.iter().find(|a| !a.is_available(activation))
        {
            return EvalError {
                message: format!("`{}` is not available: {}", missing.name(), missing.unavailable_because()),
            };
        }
        let message = match e {
            ExecutionError::NoSuchKey(key) => format!("no header `{key}` in the request (guard with has())"),
            ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
            other => other.to_string(),
        };
        EvalError { message }
    }
}

/// Resolves attribute names, and the `@N` constants compiled at load.
struct Resolver<'r> {
    a: &'r Activation<'r>,
    consts: &'r [Box<dyn Val>],
    waf: &'r [Option<Arc<super::super::waf::WafCall>>],
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if let Some(index) = variable.strip_prefix(CONST_PREFIX) {
            let index = index.parse::<usize>().ok()?;
            if let Some(Some(call)) = self.waf.get(index) {
                // No WAF, or a failed evaluation: left undefined, which the interpreter reports.
                let matched = self.a.waf?.evaluate(call, self.a.waf_exclusions).ok()?;
                return Some(CowVal::owned(CelBool::from(matched)));
            }
            return self.consts.get(index).map(|v| CowVal::Borrowed(v.as_ref()));
        }
        let a = self.a;
        let t = a.tokens;
        let s = |v: &'b str| Some(CowVal::owned(CelString::from(v)));
        match Attribute::from_name(variable)? {
            Attribute::RequestMethod => s(a.method),
            Attribute::RequestHeaders => Some(CowVal::owned(HeadersVal(a.headers))),
            Attribute::RequestPath => s(a.path),
            Attribute::RequestQuery => s(a.query),
            Attribute::RequestScheme => s(a.scheme),
            Attribute::OriginIp => s(a.ip),
            Attribute::OriginUserIp => s(a.user_ip),
            Attribute::OriginRegionCode => s(a.region_code?),
            Attribute::OriginAsn => Some(CowVal::owned(CelInt::from(a.asn?))),
            Attribute::OriginTlsJa3Fingerprint => s(a.tls_ja3_fingerprint?),
            Attribute::OriginTlsJa4Fingerprint => s(a.tls_ja4_fingerprint?),
            Attribute::TokenRecaptchaExemptionValid => Some(CowVal::owned(CelBool::from(t.exemption_valid))),
            Attribute::TokenRecaptchaActionScore => Some(CowVal::owned(CelDouble::from(t.action_score))),
            Attribute::TokenRecaptchaActionCaptchaStatus => s(&t.action_captcha_status),
            Attribute::TokenRecaptchaActionAction => s(&t.action_name),
            Attribute::TokenRecaptchaActionValid => Some(CowVal::owned(CelBool::from(t.action_valid))),
            Attribute::TokenRecaptchaSessionScore => Some(CowVal::owned(CelDouble::from(t.session_score))),
            Attribute::TokenRecaptchaSessionValid => Some(CowVal::owned(CelBool::from(t.session_valid))),
        }
    }
}

static HEADERS_TYPE: Type = MAP_TYPE;

/// `request.headers`, looked up in the request's own header table.
#[derive(Debug)]
struct HeadersVal<'h>(&'h Headers);

impl Val for HeadersVal<'_> {
    fn get_type(&self) -> &Type {
        &HEADERS_TYPE
    }

    fn cel_type() -> &'static Type {
        &HEADERS_TYPE
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(HeadersVal(self.0))
    }
}

impl<'h> Indexer for HeadersVal<'h> {
    fn get<'b, 'w>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        let Some(key) = idx.downcast_ref::<CelString>() else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            });
        };
        let headers: &'h Headers = self.0;
        match headers.get(key.inner()) {
            Some(v) => Ok(CowVal::owned(CelString::from(v))),
            None => Err(ExecutionError::no_such_key(key.inner())),
        }
    }

    fn steal<'w>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

const REGEX: Type = Type::new_unspecified_type("moat.regex");
const NET: Type = Type::new_unspecified_type("moat.ip_range");
static REGEX_TYPE: Type = REGEX;
static NET_TYPE: Type = NET;

/// A `matches()` pattern, compiled at load.
#[derive(Debug)]
struct RegexVal(regex::Regex);

/// An `inIpRange()` range written as a literal, parsed at load.
#[derive(Debug)]
struct NetVal(IpNet);

macro_rules! static_val {
    ($t:ty, $ty:expr) => {
        impl Val for $t {
            fn get_type(&self) -> &Type {
                &$ty
            }
            fn cel_type() -> &'static Type {
                &$ty
            }
            fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w> {
                Box::new(Self(self.0.clone()))
            }
            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }
        impl StaticVal for $t {}
    };
}
static_val!(RegexVal, REGEX_TYPE);
static_val!(NetVal, NET_TYPE);

fn build_env() -> Result<Env, DeclarationError> {
    let mut env = Env::default().with_optional_support(false);
    env.add_macro(Macro::global("has", 1, has_macro))?;
    let s = || STRING_TYPE;
    env.add_overload("inIpRange", "inIpRange_string", vec![s(), s()], in_ip_range)?;
    env.add_overload("inIpRange", "inIpRange_compiled", vec![s(), NET], in_ip_range)?;
    env.add_overload("matches", "matches", vec![s(), REGEX], matches)?;
    env.add_member_overload("matches", "matches_string", s(), vec![REGEX], matches)?;
    env.add_overload("size", "size_string", vec![s()], size)?;
    env.add_member_overload("size", "string_size", s(), vec![], size)?;
    env.add_overload("int", "string_to_int64", vec![s()], int)?;
    env.add_overload("int", "int64_to_int64", vec![INT_TYPE], int)?;
    env.add_member_overload("contains", "contains_string", s(), vec![s()], contains)?;
    env.add_member_overload("startsWith", "starts_with_string", s(), vec![s()], starts_with)?;
    env.add_member_overload("endsWith", "ends_with_string", s(), vec![s()], ends_with)?;
    env.add_member_overload("lower", "string_lower", s(), vec![], lower)?;
    env.add_member_overload("upper", "string_upper", s(), vec![], upper)?;
    env.add_member_overload("base64Decode", "base64Decode_string", s(), vec![], base64_decode)?;
    env.add_member_overload("urlDecode", "urlDecode_string", s(), vec![], url_decode)?;
    env.add_member_overload("urlDecodeUni", "urlDecodeUni_string", s(), vec![], url_decode_uni)?;
    env.add_member_overload("utf8ToUnicode", "utf8ToUnicode_string", s(), vec![], utf8_to_unicode)?;
    Ok(env)
}

/// Cloud Armor's `has()`: a presence test on a field, `has(a.b)`, as in CEL, and on a map key
/// written as an index, `has(request.headers['x'])`. Anything else is left as a call, which the
/// checker rejects with an explanation.
fn has_macro(
    helper: &mut MacroExprHelper<'_>,
    _target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    let takes = match args.as_slice() {
        [IdedExpr { expr: Expr::Select(_), .. }] => true,
        [IdedExpr { expr: Expr::Call(c), .. }] => {
            c.func_name == "_[_]"
                && c.target.is_none()
                && matches!(c.args.as_slice(), [_, IdedExpr { expr: Expr::Literal(LiteralValue::String(_)), .. }])
        }
        _ => false,
    };
    if !takes {
        return Ok(None);
    }
    let Some(arg) = args.pop() else { return Ok(None) };
    let select = match arg.expr {
        Expr::Select(mut s) => {
            s.test = true;
            s
        }
        Expr::Call(mut c) => {
            let key = c.args.pop();
            let operand = c.args.pop();
            let (Some(operand), Some(IdedExpr { expr: Expr::Literal(LiteralValue::String(key)), .. })) = (operand, key)
            else {
                return Ok(None);
            };
            SelectExpr { operand: Box::new(operand), field: key.inner().to_owned(), test: true }
        }
        _ => return Ok(None),
    };
    Ok(Some(helper.next_expr(Expr::Select(select))))
}

// The overloads. The interpreter only calls one with arguments of the declared types, and the
// checker has already proved the types, so a failed downcast is an internal error, not a panic.

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn str_arg<'a>(args: &'a [CowVal<'_, '_>], i: usize, f: &str) -> Result<&'a str, ExecutionError> {
    args.get(i)
        .and_then(|v| v.downcast_ref::<CelString>())
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error(f, "expected a string argument"))
}

fn bool_out<'b, 'v>(b: bool) -> Out<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(b)))
}

fn string_out<'b, 'v>(s: String) -> Out<'b, 'v> {
    Ok(CowVal::owned(CelString::from(s)))
}

fn in_ip_range<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let ip = str_arg(&args, 0, "inIpRange")?;
    let addr = functions::parse_ip(ip).map_err(|m| ExecutionError::function_error("inIpRange", m))?;
    let hit = match args.get(1).and_then(|v| v.downcast_ref::<NetVal>()) {
        Some(net) => functions::net_contains(&net.0, addr),
        None => {
            let range = str_arg(&args, 1, "inIpRange")?;
            let net = functions::parse_range(range).map_err(|m| ExecutionError::function_error("inIpRange", m))?;
            functions::net_contains(&net, addr)
        }
    };
    bool_out(hit)
}

fn matches<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let text = str_arg(&args, 0, "matches")?;
    let re = args
        .get(1)
        .and_then(|v| v.downcast_ref::<RegexVal>())
        .ok_or_else(|| ExecutionError::function_error("matches", "the pattern was not compiled"))?;
    bool_out(re.0.is_match(text))
}

fn size<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let s = str_arg(&args, 0, "size")?;
    let n = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    Ok(CowVal::owned(CelInt::from(n)))
}

fn int<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    if let Some(i) = args.first().and_then(|v| v.downcast_ref::<CelInt>()) {
        return Ok(CowVal::owned(CelInt::from(*i.inner())));
    }
    let s = str_arg(&args, 0, "int")?;
    let n = functions::parse_int(s).map_err(|m| ExecutionError::function_error("int", m))?;
    Ok(CowVal::owned(CelInt::from(n)))
}

fn contains<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    bool_out(str_arg(&args, 0, "contains")?.contains(str_arg(&args, 1, "contains")?))
}

fn starts_with<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    bool_out(str_arg(&args, 0, "startsWith")?.starts_with(str_arg(&args, 1, "startsWith")?))
}

fn ends_with<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    bool_out(str_arg(&args, 0, "endsWith")?.ends_with(str_arg(&args, 1, "endsWith")?))
}

fn lower<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    string_out(functions::lower(str_arg(&args, 0, "lower")?))
}

fn upper<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    string_out(functions::upper(str_arg(&args, 0, "upper")?))
}

fn base64_decode<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    functions::base64_decode(str_arg(&args, 0, "base64Decode")?)
        .map_err(|m| ExecutionError::function_error("base64Decode", m))
        .and_then(string_out)
}

fn url_decode<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    string_out(functions::url_decode(str_arg(&args, 0, "urlDecode")?))
}

fn url_decode_uni<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    string_out(functions::url_decode_uni(str_arg(&args, 0, "urlDecodeUni")?))
}

fn utf8_to_unicode<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    string_out(functions::utf8_to_unicode(str_arg(&args, 0, "utf8ToUnicode")?))
}
