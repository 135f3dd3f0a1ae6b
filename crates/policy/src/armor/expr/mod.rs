//! Rule expressions: the Cloud Armor custom-rules language (a CEL subset), compiled once at load
//! and evaluated per request.
//!
//! The policy only sees the two traits below, so the CEL engine behind them can be swapped. The
//! one we use is the `cel` crate's parser and interpreter ([`CelEngine`]); the crate has no type
//! checker and a much larger standard library than Cloud Armor's, so the checks that make an
//! expression a Cloud Armor expression are ours ([`check`]): the published attributes and
//! function overloads (`cloud-armor-v1.yaml` of `cel-expr/cloud-armor-rules`), typed equality,
//! no `in`, no string ordering, `has()` on header keys, and the limits.

mod cel;
pub(crate) mod check;
pub(crate) mod functions;
mod program;

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

pub use self::cel::CelEngine;
use super::request::{Headers, RecaptchaTokens};

/// Compiles rule expressions.
pub trait Engine: Send + Sync + fmt::Debug {
    /// Parses, checks and prepares `source`. Everything that can be rejected before a request
    /// arrives is rejected here, with the span of the offending part.
    fn compile(&self, source: &str, limits: &Limits) -> Result<Arc<dyn Compiled>, ExprError>;
}

/// One compiled expression, shared by every request.
pub trait Compiled: Send + Sync + fmt::Debug {
    /// Evaluates the expression. An error (an attribute this request does not have, a value a
    /// function cannot take) is reported, and the caller treats the rule as not matching.
    fn eval(&self, activation: &Activation<'_>) -> Result<bool, EvalError>;

    /// The attributes the expression reads, for explanations and for `check`.
    fn attributes(&self) -> &[Attribute];

    /// Whether the expression calls a preconfigured WAF set.
    fn uses_waf(&self) -> bool {
        false
    }
}

/// The request as the rules language sees it. Built once per request by the evaluator; every
/// value is borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Activation<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub scheme: &'a str,
    pub headers: &'a Headers,
    pub ip: &'a str,
    pub user_ip: &'a str,
    /// `ip` and `user_ip` parsed, when the caller has them, so `inIpRange()` need not parse
    /// the address once per rule.
    pub ip_addr: Option<IpAddr>,
    pub user_ip_addr: Option<IpAddr>,
    /// `None` when no IP-to-region table is configured: `origin.region_code` is then an error.
    pub region_code: Option<&'a str>,
    /// `None` when no IP-to-ASN table is configured: `origin.asn` is then an error.
    pub asn: Option<i64>,
    pub tls_ja3_fingerprint: Option<&'a str>,
    pub tls_ja4_fingerprint: Option<&'a str>,
    pub tokens: &'a RecaptchaTokens,
    /// The preconfigured WAF for this request; `None` makes `evaluatePreconfiguredWaf()` an
    /// evaluation error (the rule does not match and the error is reported).
    pub waf: Option<&'a dyn super::waf::WafEvaluator>,
    /// The evaluated rule's `preconfiguredWafConfig.exclusions`.
    pub waf_exclusions: &'a [super::waf::WafExclusion],
}

/// The attributes of the published `cloud-armor-v1` environment, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    RequestMethod,
    RequestHeaders,
    RequestPath,
    RequestQuery,
    RequestScheme,
    OriginIp,
    OriginRegionCode,
    OriginAsn,
    OriginUserIp,
    OriginTlsJa3Fingerprint,
    OriginTlsJa4Fingerprint,
    TokenRecaptchaExemptionValid,
    TokenRecaptchaActionScore,
    TokenRecaptchaActionCaptchaStatus,
    TokenRecaptchaActionAction,
    TokenRecaptchaActionValid,
    TokenRecaptchaSessionScore,
    TokenRecaptchaSessionValid,
}

/// The static type of an attribute or expression. Header values are strings (Cloud Armor
/// declares them `dyn`, but every value it puts there is a string; typing them as strings turns
/// `request.headers['x'] == 1`, an error on every request, into an error at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    /// `request.headers`: `map(string, string)` with lower-cased keys.
    Headers,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int => "int",
            Self::Uint => "uint",
            Self::Double => "double",
            Self::String => "string",
            Self::Bytes => "bytes",
            Self::Null => "null",
            Self::Headers => "map(string, string)",
        }
    }
}

impl Attribute {
    pub const ALL: [Attribute; 18] = [
        Self::RequestMethod,
        Self::RequestHeaders,
        Self::RequestPath,
        Self::RequestQuery,
        Self::RequestScheme,
        Self::OriginIp,
        Self::OriginRegionCode,
        Self::OriginAsn,
        Self::OriginUserIp,
        Self::OriginTlsJa3Fingerprint,
        Self::OriginTlsJa4Fingerprint,
        Self::TokenRecaptchaExemptionValid,
        Self::TokenRecaptchaActionScore,
        Self::TokenRecaptchaActionCaptchaStatus,
        Self::TokenRecaptchaActionAction,
        Self::TokenRecaptchaActionValid,
        Self::TokenRecaptchaSessionScore,
        Self::TokenRecaptchaSessionValid,
    ];

    /// The name an expression uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestMethod => "request.method",
            Self::RequestHeaders => "request.headers",
            Self::RequestPath => "request.path",
            Self::RequestQuery => "request.query",
            Self::RequestScheme => "request.scheme",
            Self::OriginIp => "origin.ip",
            Self::OriginRegionCode => "origin.region_code",
            Self::OriginAsn => "origin.asn",
            Self::OriginUserIp => "origin.user_ip",
            Self::OriginTlsJa3Fingerprint => "origin.tls_ja3_fingerprint",
            Self::OriginTlsJa4Fingerprint => "origin.tls_ja4_fingerprint",
            Self::TokenRecaptchaExemptionValid => "token.recaptcha_exemption.valid",
            Self::TokenRecaptchaActionScore => "token.recaptcha_action.score",
            Self::TokenRecaptchaActionCaptchaStatus => "token.recaptcha_action.captcha_status",
            Self::TokenRecaptchaActionAction => "token.recaptcha_action.action",
            Self::TokenRecaptchaActionValid => "token.recaptcha_action.valid",
            Self::TokenRecaptchaSessionScore => "token.recaptcha_session.score",
            Self::TokenRecaptchaSessionValid => "token.recaptcha_session.valid",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub(crate) fn ty(self) -> Ty {
        match self {
            Self::RequestHeaders => Ty::Headers,
            Self::OriginAsn => Ty::Int,
            Self::TokenRecaptchaExemptionValid | Self::TokenRecaptchaActionValid | Self::TokenRecaptchaSessionValid => {
                Ty::Bool
            }
            Self::TokenRecaptchaActionScore | Self::TokenRecaptchaSessionScore => Ty::Double,
            _ => Ty::String,
        }
    }

    /// Why this attribute may be missing from a request, for the evaluation error.
    pub(crate) fn unavailable_because(self) -> &'static str {
        match self {
            Self::OriginRegionCode => "no IP-to-region table is configured",
            Self::OriginAsn => "no IP-to-ASN table is configured",
            Self::OriginTlsJa3Fingerprint | Self::OriginTlsJa4Fingerprint => {
                "the request did not arrive over TLS on a listener that records fingerprints"
            }
            _ => "the request does not carry it",
        }
    }

    pub(crate) fn is_available(self, a: &Activation<'_>) -> bool {
        match self {
            Self::OriginRegionCode => a.region_code.is_some(),
            Self::OriginAsn => a.asn.is_some(),
            Self::OriginTlsJa3Fingerprint => a.tls_ja3_fingerprint.is_some(),
            Self::OriginTlsJa4Fingerprint => a.tls_ja4_fingerprint.is_some(),
            _ => true,
        }
    }
}

/// The load-time limits on one expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Subexpressions: the operands of `&&`, `||` and `!`, which do not count themselves.
    pub max_subexpressions: Option<usize>,
    /// Characters in the whole expression.
    pub max_expression_chars: Option<usize>,
    /// Characters in one subexpression.
    pub max_subexpression_chars: Option<usize>,
}

impl Limits {
    /// Cloud Armor's limits: 5 subexpressions (documented), 2048 characters per expression and
    /// 1024 per subexpression (reported by third parties; spec/armor.md §2.2, §8.2).
    pub const CLOUD_ARMOR: Limits =
        Limits { max_subexpressions: Some(5), max_expression_chars: Some(2048), max_subexpression_chars: Some(1024) };

    /// The language alone, as Google's `rulescli -test` checks it (the limits are enforced by
    /// the service, not by the published environment). For conformance tests and tools.
    pub const LANGUAGE_ONLY: Limits =
        Limits { max_subexpressions: None, max_expression_chars: None, max_subexpression_chars: None };
}

/// Expressions longer than this are refused before parsing whatever the limits, so a huge
/// input cannot make the parser work hard (Cloud Armor's own limit is 2048).
pub(crate) const HARD_MAX_CHARS: usize = 64 * 1024;

/// What kind of problem an expression has; the policy loader words the message around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// Not CEL at all.
    Syntax,
    /// CEL, but not a Cloud Armor expression: unknown attribute or function, wrong types,
    /// an operator Cloud Armor leaves out, a result that is not a bool.
    Type,
    /// Over a limit.
    Limit,
    /// Valid Cloud Armor, but evaluated by the service with data moat does not have
    /// (preconfigured WAF, threat intelligence, address groups): refused, so a policy never
    /// silently passes what it was meant to block.
    Unsupported,
}

/// A problem found at compile time. `span` counts characters from the start of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub kind: ExprErrorKind,
    pub span: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl ExprError {
    pub(crate) fn new(kind: ExprErrorKind, span: Range<usize>, message: impl Into<String>) -> Self {
        Self { kind, span, message: message.into(), help: None }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.span.start + 1)
    }
}

/// A problem found while evaluating an expression for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
