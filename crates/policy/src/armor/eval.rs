//! Evaluating a policy for one request: rules in ascending priority, the first matching rule not
//! in preview decides; preview rules that match are recorded as would-be outcomes and evaluation
//! goes on; a rule whose expression fails to evaluate does not match, and the error is reported.

use std::net::IpAddr;

use super::expr::{Activation, EvalError};
use super::policy::{Action, DEFAULT_RULE_PRIORITY, HeaderToAdd, Match, Redirect, Rule, SecurityPolicy};
use super::rate_limit::{Ban, RateLimit};
use super::request::EdgeRequest;
use super::waf::WafEvaluator;
use crate::decision::{Decision, Layer, Reason};

/// Stable reason codes.
pub mod codes {
    /// A rule other than the default one matched and decided.
    pub const RULE_MATCHED: &str = "edge.rule_matched";
    /// No other rule matched; the default rule decided.
    pub const DEFAULT_RULE: &str = "edge.default_rule";
    /// A preview rule matched; its action was not enforced.
    pub const PREVIEW_MATCH: &str = "edge.preview_match";
    /// A rule's expression failed to evaluate; the rule did not match.
    pub const EVAL_ERROR: &str = "edge.eval_error";
    /// A `redirect` to reCAPTCHA, which moat cannot serve, was answered with a refusal.
    pub const RECAPTCHA_UNAVAILABLE: &str = "edge.recaptcha_unavailable";
}

/// The status moat answers a `GOOGLE_RECAPTCHA` redirect with: there is no reCAPTCHA service
/// locally, and letting the request through would skip the challenge the rule asks for.
pub const RECAPTCHA_REFUSAL_STATUS: u16 = 403;

/// What the deciding rule says to do.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeOutcome<'p> {
    /// Forward the request, with these headers added or overwritten.
    Allow { request_headers_to_add: &'p [HeaderToAdd] },
    /// Answer with this status.
    Deny { status: u16 },
    /// Answer 302 with this `Location`.
    Redirect { location: &'p str },
    /// A `GOOGLE_RECAPTCHA` redirect, refused with [`RECAPTCHA_REFUSAL_STATUS`].
    RecaptchaUnavailable,
    /// Count the request against the limit; forward it (with the headers) while it conforms.
    Throttle { limit: &'p RateLimit, request_headers_to_add: &'p [HeaderToAdd] },
    /// As `Throttle`, and ban the key as `ban` says.
    RateBasedBan { limit: &'p RateLimit, ban: &'p Ban, request_headers_to_add: &'p [HeaderToAdd] },
}

impl EdgeOutcome<'_> {
    /// The status to answer with now, or `None` when the request goes on (allowed, or to the
    /// rate limiter).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Allow { .. } | Self::Throttle { .. } | Self::RateBasedBan { .. } => None,
            Self::Deny { status } => Some(*status),
            Self::Redirect { .. } => Some(302),
            Self::RecaptchaUnavailable => Some(RECAPTCHA_REFUSAL_STATUS),
        }
    }

    fn of(rule: &Rule) -> EdgeOutcome<'_> {
        let headers = rule.request_headers_to_add.as_slice();
        match &rule.action {
            Action::Allow => EdgeOutcome::Allow { request_headers_to_add: headers },
            Action::Deny(status) => EdgeOutcome::Deny { status: *status },
            Action::Redirect(Redirect::External302 { target }) => EdgeOutcome::Redirect { location: target },
            Action::Redirect(Redirect::GoogleRecaptcha) => EdgeOutcome::RecaptchaUnavailable,
            Action::Throttle(limit) => EdgeOutcome::Throttle { limit, request_headers_to_add: headers },
            Action::RateBasedBan(limit, ban) => {
                EdgeOutcome::RateBasedBan { limit, ban, request_headers_to_add: headers }
            }
        }
    }
}

/// A preview rule that matched: what it would have done.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewMatch<'p> {
    pub priority: u32,
    pub would: EdgeOutcome<'p>,
}

/// A rule whose expression could not be evaluated for this request (it did not match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub priority: u32,
    pub message: String,
}

/// The result of evaluating a policy for one request.
#[derive(Debug, Clone)]
pub struct EdgeVerdict<'p> {
    pub outcome: EdgeOutcome<'p>,
    /// The deciding rule.
    pub rule: &'p Rule,
    /// Preview rules that matched before the deciding rule, in priority order.
    pub previews: Vec<PreviewMatch<'p>>,
    pub errors: Vec<RuleError>,
    /// In order: preview matches and evaluation errors as they happened, then the decision.
    pub reasons: Vec<Reason>,
}

impl EdgeVerdict<'_> {
    pub fn priority(&self) -> u32 {
        self.rule.priority
    }

    /// The verdict as the pipeline's decision value. A rate-limited outcome is reported as
    /// allowed: whether it conforms is for the caller's counters to say.
    pub fn decision(&self) -> Decision {
        match self.outcome.status() {
            None => Decision::allow(self.reasons.clone()),
            Some(status) => Decision::deny(Layer::Edge, Some(status), self.reasons.clone()),
        }
    }
}

impl SecurityPolicy {
    /// Evaluates the policy for one request.
    pub fn evaluate(&self, request: &EdgeRequest) -> EdgeVerdict<'_> {
        self.evaluate_inner(request, None, |_| true)
    }

    /// Evaluates the policy for one request, with the preconfigured WAF for that request (the
    /// front door's; it reads the body prefix and the CRS rules).
    pub fn evaluate_with_waf(&self, request: &EdgeRequest, waf: &dyn WafEvaluator) -> EdgeVerdict<'_> {
        self.evaluate_inner(request, Some(waf), |_| true)
    }

    /// Evaluates the policy with only the rules `include` accepts; the others are passed over
    /// as if they did not match. `explain` uses it to set aside the rules that need facts its
    /// query does not give; the front door includes every rule.
    pub fn evaluate_where(&self, request: &EdgeRequest, include: impl Fn(&Rule) -> bool) -> EdgeVerdict<'_> {
        self.evaluate_inner(request, None, include)
    }

    fn evaluate_inner(
        &self,
        request: &EdgeRequest,
        waf: Option<&dyn WafEvaluator>,
        include: impl Fn(&Rule) -> bool,
    ) -> EdgeVerdict<'_> {
        let ip_text = if self.reads_ip { request.remote_ip.to_string() } else { String::new() };
        let user_ip = self.user_ip(request);
        let user_ip_text = user_ip.map(|ip| ip.to_string());
        let activation = Activation {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            scheme: &request.scheme,
            headers: &request.headers,
            ip: &ip_text,
            user_ip: user_ip_text.as_deref().unwrap_or(&ip_text),
            ip_addr: Some(request.remote_ip),
            user_ip_addr: Some(user_ip.unwrap_or(request.remote_ip)),
            region_code: request.region_code.as_deref(),
            asn: request.asn,
            tls_ja3_fingerprint: request.tls_ja3_fingerprint.as_deref(),
            tls_ja4_fingerprint: request.tls_ja4_fingerprint.as_deref(),
            tokens: &request.tokens,
            waf,
            waf_exclusions: &[],
        };
        let by_address = self.src_ips.lookup(request.remote_ip);
        let mut previews = Vec::new();
        let mut errors = Vec::new();
        let mut reasons = Vec::new();
        for (i, rule) in self.rules().iter().enumerate() {
            if !include(rule) {
                continue;
            }
            let hit = match &rule.matcher {
                Match::SrcIps { all: true, .. } => true,
                Match::SrcIps { all: false, .. } => {
                    u32::try_from(i).is_ok_and(|i| by_address.binary_search(&i).is_ok())
                }
                Match::Expr(e) => {
                    match e.compiled.eval(&Activation { waf_exclusions: &rule.waf_exclusions, ..activation }) {
                        Ok(b) => b,
                        Err(EvalError { message }) => {
                            reasons.push(Reason::new(
                                codes::EVAL_ERROR,
                                format!("rule {} did not match: its expression failed: {message}", rule.priority),
                                Some(&rule.source),
                            ));
                            errors.push(RuleError { priority: rule.priority, message });
                            false
                        }
                    }
                }
            };
            if !hit {
                continue;
            }
            let outcome = EdgeOutcome::of(rule);
            if rule.preview {
                reasons.push(Reason::new(
                    codes::PREVIEW_MATCH,
                    format!("rule {} matched in preview: it would {}, not enforced", rule.priority, rule.action),
                    Some(&rule.source),
                ));
                previews.push(PreviewMatch { priority: rule.priority, would: outcome });
                continue;
            }
            reasons.push(decided(rule, &outcome));
            return EdgeVerdict { outcome, rule, previews, errors, reasons };
        }
        // Unreachable for a loaded policy: its default rule matches `*` and is never in preview.
        // Should it happen anyway, the last rule (the default one) decides.
        let rule = self.rules().last().unwrap_or_else(|| unreachable_default());
        let outcome = EdgeOutcome::of(rule);
        reasons.push(decided(rule, &outcome));
        EdgeVerdict { outcome, rule, previews, errors, reasons }
    }

    /// The client address from `userIpRequestHeaders`: the first listed header present whose
    /// (first) value is an address. `None` falls back to the peer address.
    pub fn user_ip(&self, request: &EdgeRequest) -> Option<IpAddr> {
        self.user_ip_request_headers.iter().find_map(|h| {
            let v = request.headers.get(h)?;
            v.split(',').next()?.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
        })
    }
}

fn decided(rule: &Rule, outcome: &EdgeOutcome<'_>) -> Reason {
    let mut message = if rule.priority == DEFAULT_RULE_PRIORITY {
        format!("no other rule matched; the default rule says {}", rule.action)
    } else {
        format!("rule {} matched: {}", rule.priority, rule.action)
    };
    let code = match outcome {
        EdgeOutcome::RecaptchaUnavailable => {
            message.push_str(&format!(
                "; there is no reCAPTCHA here, so the request is refused with {RECAPTCHA_REFUSAL_STATUS}"
            ));
            codes::RECAPTCHA_UNAVAILABLE
        }
        _ if rule.priority == DEFAULT_RULE_PRIORITY => codes::DEFAULT_RULE,
        _ => codes::RULE_MATCHED,
    };
    Reason::new(code, message, Some(&rule.source))
}

#[cold]
fn unreachable_default() -> &'static Rule {
    use std::sync::OnceLock;
    static DENY_ALL: OnceLock<Rule> = OnceLock::new();
    DENY_ALL.get_or_init(|| Rule {
        priority: DEFAULT_RULE_PRIORITY,
        description: Some("moat: a policy without rules refuses everything".to_owned()),
        preview: false,
        matcher: Match::SrcIps { all: true, ranges: Vec::new() },
        action: Action::Deny(403),
        request_headers_to_add: Vec::new(),
        waf_exclusions: Vec::new(),
        source: crate::source::SourceRef::file(&std::sync::Arc::from("<none>")),
    })
}
