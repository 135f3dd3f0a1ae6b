//! Security policies end to end through the pure evaluator: loading (with file:line:column
//! errors), priority order, preview, headerAction, SRC_IPS_V1, actions, rate-limit options, and
//! the cases of spec/peers-crates-lessons.md §C.6 that need no counters or network (the
//! front-door versions come with the front door).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;

use moat_policy::armor::{
    Action, ArmorError, EdgeOutcome, EdgeRequest, ExceedAction, KeyPart, Match, RECAPTCHA_REFUSAL_STATUS,
    SecurityPolicy, Threshold, codes,
};
use moat_policy::{Effect, Layer};

const DEFAULT_ALLOW: &str = r#"{
      "priority": 2147483647,
      "action": "allow",
      "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}
    }"#;

/// A policy file with these rules (one per element, each already JSON), laid out one rule per
/// block so that line numbers in errors are predictable: rule `i` starts on line `3 + 4 * i`
/// when each rule is written on four lines.
fn policy_text(rules: &[&str]) -> String {
    format!("{{\n  \"name\": \"edge\",\n  \"rules\": [\n    {}\n  ]\n}}\n", rules.join(",\n    "))
}

fn load(rules: &[&str]) -> Result<SecurityPolicy, Vec<ArmorError>> {
    SecurityPolicy::from_json(&policy_text(rules), "armor/edge.json")
}

fn policy(rules: &[&str]) -> SecurityPolicy {
    load(rules).unwrap_or_else(|e| panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))
}

fn errors(rules: &[&str]) -> Vec<ArmorError> {
    match load(rules) {
        Ok(_) => panic!("the policy should not load"),
        Err(e) => e,
    }
}

fn rule(priority: u32, action: &str, expr: &str) -> String {
    format!(
        r#"{{"priority": {priority}, "action": "{action}",
      "match": {{"expr": {{"expression": {}}}}}}}"#,
        serde_json::to_string(expr).unwrap()
    )
}

fn ips_rule(priority: u32, action: &str, ranges: &[&str]) -> String {
    format!(
        r#"{{"priority": {priority}, "action": "{action}",
      "match": {{"versionedExpr": "SRC_IPS_V1", "config": {{"srcIpRanges": {}}}}}}}"#,
        serde_json::to_string(ranges).unwrap()
    )
}

fn req(target: &str, ip: &str) -> EdgeRequest {
    EdgeRequest::new("GET", "https", "shop.example.com", target, ip.parse::<IpAddr>().unwrap())
}

#[test]
fn a_real_describe_export_loads() {
    // The shape of spec/armor.md §1.8, WAF rule aside (see `waf_rules_fail_closed`).
    let text = r#"{
  "kind": "compute#securityPolicy",
  "id": "2753918331621109894",
  "creationTimestamp": "2024-04-14T05:39:05.798-07:00",
  "name": "my-policy",
  "type": "CLOUD_ARMOR",
  "fingerprint": "A3hq2ZQYxj8=",
  "rules": [
    {"kind": "compute#securityPolicyRule", "description": "block bad range", "priority": 1000,
     "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["9.9.9.0/24"]}},
     "action": "deny(403)", "preview": false},
    {"kind": "compute#securityPolicyRule", "priority": 3000,
     "match": {"expr": {"expression": "request.path.startsWith('/login')"}},
     "action": "rate_based_ban",
     "rateLimitOptions": {
       "rateLimitThreshold": {"count": 100, "intervalSec": 60},
       "conformAction": "allow", "exceedAction": "deny(429)", "enforceOnKey": "IP",
       "banThreshold": {"count": 1000, "intervalSec": 600}, "banDurationSec": 600}},
    {"kind": "compute#securityPolicyRule", "description": "Default rule, higher priority overrides it",
     "priority": 2147483647,
     "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}},
     "action": "allow", "preview": false}
  ],
  "advancedOptionsConfig": {"jsonParsing": "STANDARD", "logLevel": "VERBOSE", "userIpRequestHeaders": ["True-Client-IP"]},
  "ddosProtectionConfig": {"ddosProtection": "STANDARD"}
}"#;
    let p = SecurityPolicy::from_json(text, "armor/my-policy.json").unwrap();
    assert_eq!(p.name, "my-policy");
    assert_eq!(p.rules().iter().map(|r| r.priority).collect::<Vec<_>>(), [1000, 3000, 2147483647]);
    assert_eq!(p.rules()[0].source.to_string(), "armor/my-policy.json:9");
    assert_eq!(p.user_ip_request_headers, ["true-client-ip"]);
    assert_eq!(p.evaluate(&req("/", "9.9.9.9")).outcome, EdgeOutcome::Deny { status: 403 });
    let Action::RateBasedBan(limit, ban) = &p.rules()[1].action else { panic!("{:?}", p.rules()[1].action) };
    assert_eq!(limit.threshold, Threshold { count: 100, interval_sec: 60 });
    assert_eq!(limit.exceed, ExceedAction::Deny(429));
    assert_eq!(limit.key, [KeyPart::Ip]);
    assert_eq!((ban.threshold, ban.duration_sec), (Some(Threshold { count: 1000, interval_sec: 600 }), 600));
}

#[test]
fn syntax_errors_carry_serde_positions() {
    let e = SecurityPolicy::from_json("{\n  \"rules\": [\n    {\"priority\": 1,}\n  ]\n}", "armor/x.json").unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].column), (3, 20), "{}", e[0]);
    assert!(e[0].to_string().starts_with("armor/x.json:3:20: not a security policy export"), "{}", e[0]);
    let e = SecurityPolicy::from_json("{\"rules\": [{\"priority\": \"high\"}]}", "armor/x.json").unwrap_err();
    assert!(e[0].message.contains("expected an integer"), "{}", e[0]);
}

#[test]
fn semantic_errors_name_the_line_and_say_what_to_do() {
    let bad_action = rule(10, "deny(418)", "request.path == '/'");
    let e = errors(&[&bad_action, DEFAULT_ALLOW]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 4, "{}", e[0]);
    assert!(e[0].message.contains("cannot deny with status 418"), "{}", e[0]);
    assert!(e[0].help.as_deref().unwrap_or_default().contains("403, 404 or 502"));

    // deny(429) is for rate limits' exceedAction only
    let e = errors(&[&rule(10, "deny(429)", "request.path == '/'"), DEFAULT_ALLOW]);
    assert!(e[0].message.contains("status 429"), "{}", e[0]);

    // An expression error points inside the expression: line 5, at `contry`.
    let bad_expr = rule(10, "allow", "request.method == 'GET' && origin.contry == 'US'");
    let e = errors(&[&bad_expr, DEFAULT_ALLOW]);
    let text = policy_text(&[&bad_expr, DEFAULT_ALLOW]);
    let line5 = text.lines().nth(4).unwrap();
    let col = line5.find("origin.contry").unwrap() + 1;
    assert_eq!((e[0].line, e[0].column as usize), (5, col), "{}", e[0]);
    assert!(e[0].message.starts_with("invalid rule expression: undeclared reference to `origin.contry`"), "{}", e[0]);

    // Every problem is reported, not only the first.
    let e = errors(&[&bad_action, &bad_expr, &ips_rule(30, "allow", &["300.0.0.0/8"])]);
    let messages: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(e.len(), 4, "{messages:#?}");
    assert!(messages[1].contains("priority `10` is used twice"), "{messages:#?}");
    assert!(messages[3].contains("`300.0.0.0/8` is not an IP range"), "{messages:#?}");
    assert!(e.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)), "in file order");
}

#[test]
fn structural_rules_of_a_policy() {
    // The default rule must exist.
    let e = errors(&[&rule(10, "allow", "request.path == '/'")]);
    assert!(e[0].message.contains("no default rule"), "{}", e[0]);
    // Priorities are unique; the second use is reported with the line of the first.
    let e = errors(&[
        &rule(10, "allow", "request.path == '/'"),
        &rule(10, "deny(403)", "request.path == '/x'"),
        DEFAULT_ALLOW,
    ]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 6);
    assert!(e[0].message.contains("priority `10` is used twice (also on line 4)"), "{}", e[0]);
    // At most ten ranges; `*` matches all.
    let eleven: Vec<String> = (0..11).map(|i| format!("10.0.{i}.0/24")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let e = errors(&[&ips_rule(10, "deny(403)", &eleven), DEFAULT_ALLOW]);
    assert!(e[0].message.contains("at most 10"), "{}", e[0]);
    // The default rule matches everything and is enforced.
    let e = errors(&[&rule(2147483647, "allow", "request.path == '/'")]);
    assert!(e[0].message.contains("default rule must match `*`"), "{}", e[0]);
    let preview_default = DEFAULT_ALLOW.replace("\"allow\",", "\"allow\", \"preview\": true,");
    let e = errors(&[&preview_default]);
    assert!(e[0].message.contains("cannot be in preview"), "{}", e[0]);
    // Actions and their options go together.
    let e = errors(&[
        r#"{"priority": 5, "action": "throttle", "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#,
        DEFAULT_ALLOW,
    ]);
    assert!(e[0].message.contains("needs `rateLimitOptions`"), "{}", e[0]);
    let e = errors(&[
        r#"{"priority": 5, "action": "redirect", "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#,
        DEFAULT_ALLOW,
    ]);
    assert!(e[0].message.contains("needs `redirectOptions`"), "{}", e[0]);
    let e = errors(&[
        r#"{"priority": 5, "action": "deny", "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#,
        DEFAULT_ALLOW,
    ]);
    assert!(e[0].message.contains("without a status"), "{}", e[0]);
    let e = SecurityPolicy::from_json(r#"{"type": "CLOUD_ARMOR_NETWORK", "rules": []}"#, "a.json").unwrap_err();
    assert!(e[0].message.contains("not an HTTP security policy"), "{}", e[0]);
}

fn throttle(options: &str) -> String {
    format!(
        r#"{{"priority": 100, "action": "throttle", "match": {{"versionedExpr": "SRC_IPS_V1", "config": {{"srcIpRanges": ["*"]}}}},
      "rateLimitOptions": {options}}}"#
    )
}

#[test]
fn rate_limit_options_are_validated_in_full() {
    let ok = |o: &str| {
        let p = policy(&[&throttle(o), DEFAULT_ALLOW]);
        let Action::Throttle(limit) = p.rules()[0].action.clone() else { panic!() };
        limit
    };
    let base = r#""rateLimitThreshold": {"count": 10, "intervalSec": 60}, "conformAction": "allow", "exceedAction": "deny(429)""#;
    // R3 (parsing part): key kinds, names, up to three configs combined into one key.
    assert_eq!(ok(&format!("{{{base}}}")).key, [KeyPart::All], "ALL is the default");
    assert_eq!(ok(&format!(r#"{{{base}, "enforceOnKey": "ALL_IPS"}}"#)).key, [KeyPart::All]);
    assert_eq!(
        ok(&format!(r#"{{{base}, "enforceOnKey": "HTTP_HEADER", "enforceOnKeyName": "X-Api-Key"}}"#)).key,
        [KeyPart::HttpHeader("x-api-key".into())]
    );
    assert_eq!(
        ok(&format!(
            r#"{{{base}, "enforceOnKey": "", "enforceOnKeyConfigs": [{{"enforceOnKeyType": "XFF_IP"}}, {{"enforceOnKeyType": "HTTP_COOKIE", "enforceOnKeyName": "session"}}, {{"enforceOnKeyType": "HTTP_PATH"}}]}}"#
        ))
        .key,
        [KeyPart::XffIp, KeyPart::HttpCookie("session".into()), KeyPart::HttpPath]
    );
    let exceed = ok(r#"{"rateLimitThreshold": {"count": 10, "intervalSec": 10}, "conformAction": "allow", "exceedAction": "redirect", "exceedRedirectOptions": {"type": "EXTERNAL_302", "target": "https://example.com/slow"}}"#).exceed;
    assert!(matches!(exceed, ExceedAction::Redirect(_)), "{exceed:?}");

    let bad = |o: &str, want: &str| {
        let e = errors(&[&throttle(o), DEFAULT_ALLOW]);
        assert!(e.iter().any(|e| e.message.contains(want)), "{o}: {e:#?}");
        assert!(e.iter().all(|e| e.line > 0), "{e:#?}");
    };
    bad(
        r#"{"rateLimitThreshold": {"count": 10, "intervalSec": 45}, "conformAction": "allow", "exceedAction": "deny(429)"}"#,
        "interval `45` seconds",
    );
    bad(
        r#"{"rateLimitThreshold": {"count": 0, "intervalSec": 60}, "conformAction": "allow", "exceedAction": "deny(429)"}"#,
        "count `0` is out of range",
    );
    bad(&format!("{{{}}}", base.replace("allow", "deny(403)")), "only allows `allow`");
    bad(&format!("{{{}}}", base.replace("deny(429)", "deny(401)")), "exceed action `deny(401)` is not valid");
    bad(&format!(r#"{{{base}, "enforceOnKey": "HTTP_HEADER"}}"#), "needs an `enforceOnKeyName`");
    bad(&format!(r#"{{{base}, "enforceOnKey": "IP", "enforceOnKeyName": "x"}}"#), "takes no `enforceOnKeyName`");
    bad(&format!(r#"{{{base}, "enforceOnKey": "COUNTRY"}}"#), "not a rate-limit key");
    bad(
        &format!(r#"{{{base}, "enforceOnKey": "IP", "enforceOnKeyConfigs": [{{"enforceOnKeyType": "IP"}}]}}"#),
        "cannot both be set",
    );
    bad(
        &format!(
            r#"{{{base}, "enforceOnKeyConfigs": [{{"enforceOnKeyType": "IP"}}, {{"enforceOnKeyType": "SNI"}}, {{"enforceOnKeyType": "HTTP_PATH"}}, {{"enforceOnKeyType": "USER_IP"}}]}}"#
        ),
        "at most 3",
    );
    bad(&format!(r#"{{{base}, "banDurationSec": 60}}"#), "only applies to `rate_based_ban`");
    // R2 (parsing part): a ban rule needs its duration; its count is capped lower.
    let ban = throttle(&format!("{{{base}}}")).replace("\"throttle\"", "\"rate_based_ban\"");
    let e = errors(&[&ban, DEFAULT_ALLOW]);
    assert!(e[0].message.contains("needs `banDurationSec`"), "{e:#?}");
}

#[test]
fn rules_are_evaluated_by_ascending_priority_whatever_the_file_order() {
    let p = policy(&[
        DEFAULT_ALLOW,
        &rule(300, "deny(404)", "request.path.startsWith('/admin')"),
        &rule(100, "deny(403)", "request.path.startsWith('/admin/secret')"),
        &rule(200, "allow", "request.path.startsWith('/admin/secret/ok')"),
    ]);
    assert_eq!(p.rules().iter().map(|r| r.priority).collect::<Vec<_>>(), [100, 200, 300, 2147483647]);
    let v = p.evaluate(&req("/admin/secret/ok", "8.8.8.8"));
    assert_eq!(
        (v.priority(), v.outcome.status()),
        (100, Some(403)),
        "the lowest number wins even when a later rule is more specific"
    );
    let v = p.evaluate(&req("/admin/x", "8.8.8.8"));
    assert_eq!((v.priority(), v.outcome.status()), (300, Some(404)));
    let v = p.evaluate(&req("/", "8.8.8.8"));
    assert_eq!(v.priority(), 2147483647);
    assert_eq!(v.reasons.last().map(|r| r.code), Some(codes::DEFAULT_RULE));
    assert!(v.decision().is_allowed());
}

#[test]
fn preview_rules_are_recorded_and_evaluation_continues() {
    // R4: preview mode reports the would-be action and the request is forwarded.
    let preview = rule(100, "deny(403)", "request.path.startsWith('/beta')")
        .replace("\"deny(403)\",", "\"deny(403)\", \"preview\": true,");
    let p = policy(&[&preview, &rule(200, "deny(404)", "request.path == '/beta/closed'"), DEFAULT_ALLOW]);
    let v = p.evaluate(&req("/beta/open", "8.8.8.8"));
    assert_eq!(v.outcome.status(), None, "forwarded");
    assert_eq!(v.priority(), 2147483647);
    assert_eq!(v.previews.len(), 1);
    assert_eq!((v.previews[0].priority, v.previews[0].would.clone()), (100, EdgeOutcome::Deny { status: 403 }));
    assert_eq!(v.reasons.iter().map(|r| r.code).collect::<Vec<_>>(), [codes::PREVIEW_MATCH, codes::DEFAULT_RULE]);
    assert!(v.reasons[0].message.contains("would deny(403)"), "{}", v.reasons[0].message);
    // A later enforced rule still decides, and the preview match is kept.
    let v = p.evaluate(&req("/beta/closed", "8.8.8.8"));
    assert_eq!((v.priority(), v.outcome.status(), v.previews.len()), (200, Some(404), 1));
    let d = v.decision();
    assert_eq!((d.effect, d.layer, d.status), (Effect::Deny, Some(Layer::Edge), Some(404)));
}

#[test]
fn header_action_is_returned_on_allow() {
    let allow = rule(100, "allow", "request.path.startsWith('/api')").replace(
        "\"allow\",",
        r#""allow", "headerAction": {"requestHeadersToAdds": [{"headerName": "X-Edge-Verified", "headerValue": "1"}, {"headerName": "X-Empty"}]},"#,
    );
    let p = policy(&[&allow, DEFAULT_ALLOW]);
    let v = p.evaluate(&req("/api/x", "8.8.8.8"));
    let EdgeOutcome::Allow { request_headers_to_add } = v.outcome else { panic!("{:?}", v.outcome) };
    let got: Vec<(&str, &str)> = request_headers_to_add.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
    assert_eq!(got, [("x-edge-verified", "1"), ("x-empty", "")]);
    let bad = allow.replace("X-Edge-Verified", "X Bad");
    let e = errors(&[&bad, DEFAULT_ALLOW]);
    assert!(e[0].message.contains("not a valid header name"), "{}", e[0]);
}

#[test]
fn src_ips_v1_uses_the_prefix_table() {
    let p = policy(&[
        &ips_rule(100, "deny(403)", &["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]),
        &ips_rule(200, "deny(404)", &["10.0.0.0/8"]),
        &ips_rule(300, "allow", &["10.1.0.0/16"]),
        DEFAULT_ALLOW.replace("\"allow\"", "\"deny(502)\"").as_str(),
    ]);
    let status = |ip: &str| p.evaluate(&req("/", ip)).outcome.status();
    assert_eq!(status("203.0.113.9"), Some(403));
    assert_eq!(status("2001:db8::1"), Some(403));
    assert_eq!(status("198.51.100.7"), Some(403));
    assert_eq!(status("198.51.100.8"), Some(502));
    assert_eq!(status("10.1.2.3"), Some(404), "priority 200 comes before the narrower range at 300");
    assert_eq!(status("::ffff:10.9.9.9"), Some(404), "IPv4-mapped addresses are IPv4");
    assert_eq!(status("192.0.2.1"), Some(502));
    let Match::SrcIps { all, ranges } = &p.rules()[0].matcher else { panic!() };
    assert_eq!((*all, ranges.len()), (false, 3));
}

#[test]
fn redirects() {
    let external = ips_rule(100, "redirect", &["*"]).replace(
        "\"redirect\",",
        r#""redirect", "redirectOptions": {"type": "EXTERNAL_302", "target": "https://example.com/blocked"},"#,
    );
    let p = policy(&[&external, DEFAULT_ALLOW]);
    let v = p.evaluate(&req("/", "8.8.8.8"));
    assert_eq!(v.outcome, EdgeOutcome::Redirect { location: "https://example.com/blocked" });
    assert_eq!(v.outcome.status(), Some(302));

    let captcha = ips_rule(100, "redirect", &["*"])
        .replace("\"redirect\",", r#""redirect", "redirectOptions": {"type": "GOOGLE_RECAPTCHA"},"#);
    let p = policy(&[&captcha, DEFAULT_ALLOW]);
    let v = p.evaluate(&req("/", "8.8.8.8"));
    assert_eq!(v.outcome, EdgeOutcome::RecaptchaUnavailable);
    assert_eq!(v.outcome.status(), Some(RECAPTCHA_REFUSAL_STATUS));
    assert_eq!(v.reasons.last().map(|r| r.code), Some(codes::RECAPTCHA_UNAVAILABLE));

    let e =
        errors(&[&captcha.replace(r#"{"type": "GOOGLE_RECAPTCHA"}"#, r#"{"type": "EXTERNAL_302"}"#), DEFAULT_ALLOW]);
    assert!(e[0].message.contains("needs a `target`"), "{}", e[0]);
}

#[test]
fn rate_limited_rules_hand_back_their_limit() {
    // R1 (evaluator part): a matching throttle rule returns its limit for the caller to count,
    // with the exceed status it configures.
    let t = throttle(
        r#"{"rateLimitThreshold": {"count": 5, "intervalSec": 10}, "conformAction": "allow", "exceedAction": "deny(429)", "enforceOnKey": "IP"}"#,
    );
    let p = policy(&[&t, DEFAULT_ALLOW]);
    let v = p.evaluate(&req("/", "8.8.8.8"));
    let EdgeOutcome::Throttle { limit, .. } = v.outcome else { panic!("{:?}", v.outcome) };
    assert_eq!((limit.threshold.count, limit.threshold.interval_sec, &limit.exceed), (5, 10, &ExceedAction::Deny(429)));
    assert_eq!(v.outcome.status(), None, "the caller decides after counting");
    // R2 (evaluator part): a ban rule hands back the ban too.
    let b = t
        .replace("\"throttle\"", "\"rate_based_ban\"")
        .replace("\"enforceOnKey\": \"IP\"", "\"enforceOnKey\": \"IP\", \"banDurationSec\": 300");
    let p = policy(&[&b, DEFAULT_ALLOW]);
    let EdgeOutcome::RateBasedBan { ban, .. } = p.evaluate(&req("/", "8.8.8.8")).outcome else { panic!() };
    assert_eq!((ban.threshold, ban.duration_sec), (None, 300));
}

#[test]
fn an_evaluation_error_is_no_match_and_is_reported() {
    // W2: the error is counted, the rule does not match, evaluation goes on.
    let p = policy(&[
        &rule(100, "deny(403)", "origin.region_code == 'CN'"),
        &rule(200, "deny(404)", "request.headers['x-debug'] == '1'"),
        &rule(300, "deny(502)", "has(request.headers['x-debug']) && request.headers['x-debug'] == '1'"),
        DEFAULT_ALLOW,
    ]);
    let v = p.evaluate(&req("/", "8.8.8.8"));
    assert_eq!(v.priority(), 2147483647);
    assert_eq!(v.errors.iter().map(|e| e.priority).collect::<Vec<_>>(), [100, 200]);
    assert!(v.errors[0].message.contains("no IP-to-region table"), "{}", v.errors[0].message);
    assert!(v.errors[1].message.contains("no header `x-debug`"), "{}", v.errors[1].message);
    assert_eq!(v.reasons.iter().filter(|r| r.code == codes::EVAL_ERROR).count(), 2);
    // With the data present the same rules work.
    let mut r = req("/", "8.8.8.8").header("X-Debug", "1");
    r.region_code = Some("CN".into());
    let v = p.evaluate(&r);
    assert_eq!((v.priority(), v.errors.len()), (100, 0));
}

#[test]
fn malformed_and_expensive_expressions_are_rejected_at_load() {
    // W2: a malformed expression is rejected with its position…
    let e = errors(&[&rule(10, "deny(403)", "request.path.startsWith('/a' &&"), DEFAULT_ALLOW]);
    assert_eq!(e[0].line, 5);
    assert!(e[0].message.starts_with("invalid rule expression: syntax error"), "{}", e[0]);
    // …and so are expressions over the limits.
    let six = (0..6).map(|i| format!("request.path == '/{i}'")).collect::<Vec<_>>().join(" || ");
    let e = errors(&[&rule(10, "deny(403)", &six), DEFAULT_ALLOW]);
    assert!(e[0].message.contains("6 subexpressions"), "{}", e[0]);
    let huge = "request.path.matches('(?:a{1000}){1000}')";
    let e = errors(&[&rule(10, "deny(403)", huge), DEFAULT_ALLOW]);
    assert!(e[0].message.contains("invalid RE2 pattern"), "{}", e[0]);
}

/// A WAF that matches the sets it is told to.
#[derive(Debug)]
struct SetsMatch(&'static [&'static str]);

impl moat_policy::armor::WafEvaluator for SetsMatch {
    fn evaluate(
        &self,
        call: &moat_policy::armor::WafCall,
        _: &[moat_policy::armor::WafExclusion],
    ) -> Result<bool, String> {
        Ok(self.0.contains(&call.family))
    }
}

#[test]
fn waf_rules_decide_through_the_request_waf() {
    let waf = rule(2000, "deny(403)", "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})");
    let p = policy(&[&waf, DEFAULT_ALLOW]);
    let v = p.evaluate_with_waf(&req("/", "8.8.8.8"), &SetsMatch(&["sqli"]));
    assert_eq!((v.priority(), v.outcome.status()), (2000, Some(403)));
    let v = p.evaluate_with_waf(&req("/", "8.8.8.8"), &SetsMatch(&["xss"]));
    assert_eq!(v.outcome.status(), None);
    // In preview: recorded as a would-be outcome, evaluation goes on.
    let preview = policy(&[&waf.replace("\"deny(403)\",", "\"deny(403)\", \"preview\": true,"), DEFAULT_ALLOW]);
    let v = preview.evaluate_with_waf(&req("/", "8.8.8.8"), &SetsMatch(&["sqli"]));
    assert_eq!((v.outcome.status(), v.previews.len()), (None, 1));
    // Without a WAF the call is an evaluation error, reported, never a silent `false`.
    let v = p.evaluate(&req("/", "8.8.8.8"));
    assert_eq!(v.errors.len(), 1, "{:?}", v.reasons);
    assert!(v.errors[0].message.contains("needs the request body"), "{}", v.errors[0].message);
}

#[test]
fn user_ip_comes_from_the_configured_header() {
    let text = format!(
        r#"{{"rules": [{}, {}], "advancedOptionsConfig": {{"userIpRequestHeaders": ["True-Client-IP"]}}}}"#,
        rule(10, "deny(403)", "inIpRange(origin.user_ip, '192.0.2.0/24')"),
        DEFAULT_ALLOW
    );
    let p = SecurityPolicy::from_json(&text, "a.json").unwrap();
    assert_eq!(p.evaluate(&req("/", "8.8.8.8").header("True-Client-IP", "192.0.2.10")).outcome.status(), Some(403));
    assert_eq!(
        p.evaluate(&req("/", "8.8.8.8").header("True-Client-IP", "garbage")).outcome.status(),
        None,
        "falls back to origin.ip"
    );
    assert_eq!(p.evaluate(&req("/", "192.0.2.1")).outcome.status(), Some(403), "absent: origin.ip");
}

#[test]
fn waf_exclusions_load_and_bad_ones_do_not() {
    let with = |exclusions: &str| {
        format!(
            r#"{{"action": "deny(403)", "priority": 1000,
              "match": {{"expr": {{"expression": "evaluatePreconfiguredWaf('sqli-v33-stable')"}}}},
              "preconfiguredWafConfig": {{"exclusions": [{exclusions}]}}}}"#
        )
    };
    let good = with(
        r#"{"targetRuleSet": "sqli-v33-stable", "targetRuleIds": ["owasp-crs-v030301-id942100-sqli"],
            "requestHeadersToExclude": [{"op": "EQUALS", "val": "x-raw"}],
            "requestUrisToExclude": [{"op": "EQUALS_ANY"}]}"#,
    );
    let p = policy(&[&good, DEFAULT_ALLOW]);
    let rule = &p.rules()[0];
    assert_eq!(rule.waf_exclusions.len(), 1);
    assert_eq!(rule.waf_exclusions[0].rule_ids, vec![942100]);
    assert_eq!(rule.waf_exclusions[0].fields.len(), 2);
    for (bad, want) in [
        (r#"{"requestHeadersToExclude": [{"op": "EQUALS", "val": "a"}]}"#, "no `targetRuleSet`"),
        (
            r#"{"targetRuleSet": "sqli-v99", "requestHeadersToExclude": [{"op": "EQUALS", "val": "a"}]}"#,
            "not a preconfigured WAF rule set",
        ),
        (
            r#"{"targetRuleSet": "sqli-v33-stable", "targetRuleIds": ["owasp-crs-v030301-id941100-xss"], "requestHeadersToExclude": [{"op": "EQUALS", "val": "a"}]}"#,
            "not a signature id",
        ),
        (
            r#"{"targetRuleSet": "sqli-v33-stable", "requestHeadersToExclude": [{"op": "LIKE", "val": "a"}]}"#,
            "not an exclusion operator",
        ),
        (r#"{"targetRuleSet": "sqli-v33-stable", "requestHeadersToExclude": [{"op": "EQUALS"}]}"#, "needs a `val`"),
        (r#"{"targetRuleSet": "sqli-v33-stable"}"#, "names no field"),
    ] {
        let e = errors(&[&with(bad), DEFAULT_ALLOW]);
        assert!(e.iter().any(|e| e.message.contains(want)), "{bad}: {e:?}");
    }
}
