//! The rules language on its own: every Cloud Armor function, the operators Cloud Armor leaves
//! out, the limits, evaluation errors, and agreement between the compiled evaluator and the
//! `cel` crate's interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use moat_policy::armor::expr::{Activation, CelEngine, Engine, EvalError, ExprError, ExprErrorKind, Limits};
use moat_policy::armor::{Headers, RecaptchaTokens};
use proptest::prelude::*;

/// The request facts of one case, owned.
#[derive(Debug, Clone, Default)]
struct Facts {
    method: String,
    path: String,
    query: String,
    scheme: String,
    headers: Vec<(String, String)>,
    ip: String,
    user_ip: String,
    region_code: Option<String>,
    asn: Option<i64>,
    ja4: Option<String>,
    tokens: RecaptchaTokens,
}

impl Facts {
    fn new() -> Self {
        Facts {
            method: "GET".into(),
            path: "/".into(),
            scheme: "https".into(),
            ip: "203.0.113.7".into(),
            user_ip: "203.0.113.7".into(),
            ..Facts::default()
        }
    }
    fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }
    fn query(mut self, q: &str) -> Self {
        self.query = q.into();
        self
    }
    fn header(mut self, n: &str, v: &str) -> Self {
        self.headers.push((n.into(), v.into()));
        self
    }
    fn ja4(mut self, fp: &str) -> Self {
        self.ja4 = Some(fp.into());
        self
    }
    fn exemption(mut self, valid: bool) -> Self {
        self.tokens.exemption_valid = valid;
        self
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.into();
        self.user_ip = ip.into();
        self
    }

    fn eval_with(&self, engine: &CelEngine, expr: &str) -> Result<bool, EvalError> {
        self.eval_waf(engine, expr, None)
    }

    fn eval_waf(
        &self,
        engine: &CelEngine,
        expr: &str,
        waf: Option<&dyn moat_policy::armor::WafEvaluator>,
    ) -> Result<bool, EvalError> {
        let compiled =
            engine.compile(expr, &Limits::CLOUD_ARMOR).unwrap_or_else(|e| panic!("`{expr}` does not compile: {e:?}"));
        let headers: Headers = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let a = Activation {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            scheme: &self.scheme,
            headers: &headers,
            ip: &self.ip,
            user_ip: &self.user_ip,
            ip_addr: self.ip.parse().ok(),
            user_ip_addr: self.user_ip.parse().ok(),
            region_code: self.region_code.as_deref(),
            asn: self.asn,
            tls_ja3_fingerprint: None,
            tls_ja4_fingerprint: self.ja4.as_deref(),
            tokens: &self.tokens,
            waf,
            waf_exclusions: &[],
        };
        compiled.eval(&a)
    }

    /// Evaluates with both engines, which must agree on the value (and on failing).
    fn eval(&self, expr: &str) -> Result<bool, EvalError> {
        let compiled = self.eval_with(&CelEngine::new().unwrap(), expr);
        let interpreted = self.eval_with(&CelEngine::interpreted().unwrap(), expr);
        assert_eq!(
            compiled.as_ref().ok(),
            interpreted.as_ref().ok(),
            "engines disagree on `{expr}`: {compiled:?} vs {interpreted:?}"
        );
        compiled
    }
}

fn compile_err(expr: &str) -> ExprError {
    match CelEngine::new().unwrap().compile(expr, &Limits::CLOUD_ARMOR) {
        Ok(_) => panic!("`{expr}` should not compile"),
        Err(e) => e,
    }
}

/// Google's own cases, all 25 of `pkg/cloudarmor/cloudarmor_test.go` (TestRules) of
/// cel-expr/cloud-armor-rules.
#[test]
fn google_go_test_rules() {
    let f = Facts::new;
    let cases: Vec<(&str, Facts, bool)> = vec![
        ("request.method == 'GET'", f(), true),
        ("request.method == 'POST'", f(), false),
        ("inIpRange(origin.ip, '192.168.0.0/16')", f().ip("192.168.0.1"), true),
        ("inIpRange(origin.ip, '192.168.0.0/16')", f().ip("192.167.1.1"), false),
        (
            "origin.tls_ja4_fingerprint == '123456789123456789123456789123456789'",
            f().ja4("123456789123456789123456789123456789"),
            true,
        ),
        ("request.method.lower() == 'get'", f(), true),
        ("request.method.lower() != 'get'", f().method("POST"), true),
        ("request.method.upper() == 'GET'", f().method("get"), true),
        ("request.method.upper() != 'GET'", f().method("post"), true),
        ("'YWJj'.base64Decode() == 'abc'", f(), true),
        ("'YWJj'.base64Decode() == 'def'", f(), false),
        ("int('123') == 123", f(), true),
        ("token.recaptcha_exemption.valid", f().exemption(true), true),
        ("token.recaptcha_exemption.valid", f(), false),
        ("!token.recaptcha_action.valid", f(), true),
        ("request.headers['User-Agent'.lower()] == 'Mozilla/5.0'", f().header("User-Agent", "Mozilla/5.0"), true),
        ("request.query.urlDecode() == 'value=Url Encoded!'", f().query("value=Url+Encoded%21"), true),
        (
            "request.query.urlDecodeUni() == 'value=Unicode Url Encoded!'",
            f().query("value=Unicode%20Url%u0020Encoded%u0021"),
            true,
        ),
        (
            r"request.query.utf8ToUnicode() == '%u0100 %u0101 %u0102 %u0103 %u0400 %u0401 %u0100\\n%u0101 a\\x83t'",
            f().query(r"Ā ā Ă ă Ѐ Ё Ā\nā a\x83t"),
            true,
        ),
        (
            r"request.query.utf8ToUnicode() == 'u0100 %u0101 %u0102 %u0103 %u0400 %u0401 %u0100\\n%u0101 a\\x83t'",
            f().query(r"Ā ā Ă ă Ѐ Ё QA\nā a\x83t"),
            false,
        ),
        ("request.query.startsWith('foo')", f().query("foo=bar&baz=qux"), true),
        ("request.query.startsWith('bar')", f().query("foo=bar&baz=qux"), false),
        ("request.query.contains('bar')", f().query("foo=bar&baz=qux"), true),
        ("request.query.contains('bag')", f().query("foo=bar&baz=qux"), false),
        ("request.path.lower().contains('bar')", f().path("/foo/Bar/baz"), true),
        ("has(request.headers['user-agent'])", f().header("user-agent", "mozilla"), true),
    ];
    for (expr, facts, want) in cases {
        assert_eq!(facts.eval(expr), Ok(want), "{expr}");
    }
}

#[test]
fn each_function() {
    let f = Facts::new()
        .path("/Admin/Login.php")
        .query("q=%3Cscript%3E&u=%u003c")
        .header("X-Token", "dGVzdA==")
        .header("Content-Length", "1234")
        .ip("2001:db8::5");
    let cases = [
        ("inIpRange(origin.ip, '2001:db8::/32')", true),
        ("inIpRange(origin.ip, '10.0.0.0/8')", false),
        ("inIpRange(origin.user_ip, '2001:db8::/64')", true),
        ("request.path.lower() == '/admin/login.php'", true),
        ("request.path.upper() == '/ADMIN/LOGIN.PHP'", true),
        ("request.headers['x-token'].base64Decode() == 'test'", true),
        ("request.query.urlDecode().contains('<script>')", true),
        ("request.query.urlDecodeUni().endsWith('u=<')", true),
        ("'é'.utf8ToUnicode() == '%u00e9'", true),
        ("request.path.matches('(?i)login\\\\.php$')", true),
        ("matches(request.path, '^/admin/')", false),
        ("request.path.contains('Login')", true),
        ("request.path.startsWith('/Admin')", true),
        ("request.path.endsWith('.php')", true),
        ("size(request.path) == 16 && request.path.size() == 16", true),
        ("size('é') == 1", true),
        ("int(request.headers['content-length']) > 1000", true),
        ("int(5) == 5", true),
        ("has(request.headers['x-token']) && !has(request.headers['x-missing'])", true),
        ("has(request.headers.host) == false", true),
        ("request.headers['x-token'].lower().contains('dgvzd')", true),
        ("request.headers['x-token'].lower().contains('DGVZD')", false),
        ("1 + 2 * 3 == 7 && 1.5 * 2.0 == 3.0 && 'a' + 'b' == 'ab' && 5 - 7 < 0", true),
        ("token.recaptcha_action.score >= 0.0 && token.recaptcha_session.score <= 0.0", true),
        ("token.recaptcha_action.action == '' && token.recaptcha_action.captcha_status == ''", true),
    ];
    for (expr, want) in cases {
        assert_eq!(f.eval(expr), Ok(want), "{expr}");
    }
}

#[test]
fn restricted_operators_and_unknown_names_are_rejected_at_load() {
    let cases = [
        ("request.method in ['GET', 'HEAD']", "`in` operator"),
        ("request.path < '/m'", "strings cannot be ordered"),
        ("request.path >= '/m'", "strings cannot be ordered"),
        ("request.method == 1", "no matching overload for `==` applied to (string, int)"),
        ("origin.asn == 1.0", "(int, double)"),
        ("1 < 2.0", "applied to (int, double)"),
        ("request.method == 'GET' ? true : false", "`? :` operator"),
        ("10 / 2 == 5", "`/` operator"),
        ("request.method", "must evaluate to a bool"),
        ("request.body.contains('x')", "undeclared reference to `request.body`"),
        ("origin.country == 'US'", "undeclared reference to `origin.country`"),
        ("request.path.trim() == ''", "undeclared reference to `trim`"),
        ("request.path.size(1) == 1", "no matching overload"),
        ("[1, 2][0] == 1", "list, map and message literals"),
        ("request.headers.exists(h, h == 'x')", "undeclared reference to `exists`"),
        ("has(request.method)", "has() tests for a header"),
        ("request.path.matches(request.query)", "must be a string literal"),
        ("request.path.matches('(a)\\\\1')", "invalid RE2 pattern"),
        ("request.path.matches('a(?=b)')", "look-around"),
        ("inIpRange(origin.ip, '10.0.0.0/33')", "invalid IP range"),
        ("request.headers['x'] == 1", "(string, int)"),
    ];
    for (expr, want) in cases {
        let e = compile_err(expr);
        assert_eq!(e.kind, ExprErrorKind::Type, "{expr}: {e:?}");
        assert!(e.message.contains(want), "{expr}: `{}` should mention `{want}`", e.message);
        assert!(e.span.end <= expr.chars().count() && e.span.start < e.span.end.max(1), "{expr}: span {:?}", e.span);
    }
}

#[test]
fn errors_point_at_the_offending_part() {
    let e = compile_err("request.method == 'GET' && origin.contry == 'US'");
    assert_eq!(e.span, 27..40, "{e:?}");
    let e = compile_err("request.path.startsWith('/a') &&");
    assert_eq!(e.kind, ExprErrorKind::Syntax);
    let e = compile_err("request.method == 'GET' && # comment\n request.path == '/'");
    assert_eq!((e.kind, e.span.start), (ExprErrorKind::Syntax, 27));
    assert!(e.help.unwrap_or_default().contains("no `#` comments"));
}

#[test]
fn limits() {
    let six = "request.method == 'A' || request.method == 'B' || request.method == 'C' || request.method == 'D' || request.method == 'E' || !(request.method == 'F')";
    let e = compile_err(six);
    assert_eq!(e.kind, ExprErrorKind::Limit);
    assert!(e.message.contains("6 subexpressions"), "{}", e.message);
    assert!(CelEngine::new().unwrap().compile(six, &Limits::LANGUAGE_ONLY).is_ok());
    let five = "request.method == 'A' || request.method == 'B' || request.method == 'C' || request.method == 'D' || !(request.method == 'E')";
    assert!(CelEngine::new().unwrap().compile(five, &Limits::CLOUD_ARMOR).is_ok());

    let long_sub = format!("request.path == '{}'", "a".repeat(1100));
    let e = compile_err(&long_sub);
    assert_eq!(e.kind, ExprErrorKind::Limit);
    assert!(e.message.contains("subexpression"), "{}", e.message);
    let long = format!("request.path == '{0}' || request.query == '{0}'", "a".repeat(1010));
    let e = compile_err(&long);
    assert!(e.message.contains("at most 2048"), "{}", e.message);
}

#[test]
fn service_side_functions_fail_closed() {
    for (expr, want) in [
        ("evaluateThreatIntelligence('iplist-tor-exit-nodes')", "data moat does not have"),
        ("evaluateAddressGroup('corp', origin.ip)", "data moat does not have"),
    ] {
        let e = compile_err(expr);
        assert_eq!(e.kind, ExprErrorKind::Unsupported, "{expr}");
        assert!(e.message.contains(want), "{expr}: {}", e.message);
    }
    // WAF calls are validated at load.
    for (expr, want) in [
        ("evaluatePreconfiguredWaf('sqli-v99-stable', {'sensitivity': 1})", "not a preconfigured WAF rule set"),
        ("evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 5})", "out of range"),
        (
            "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1, 'opt_in_rule_ids': ['owasp-crs-v030301-id942100-sqli']})",
            "needs `'sensitivity': 0`",
        ),
        (
            "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 4, 'opt_out_rule_ids': ['owasp-crs-v030301-id941100-xss']})",
            "not a signature id",
        ),
        ("evaluatePreconfiguredWaf('xss-v33-stable', {'paranoia': 1})", "unknown tuning key"),
        ("evaluatePreconfiguredExpr('xss-stable', ['nope'])", "not a signature id"),
    ] {
        let e = compile_err(expr);
        assert_eq!(e.kind, ExprErrorKind::Type, "{expr}: {e:?}");
        assert!(e.message.contains(want), "{expr}: {}", e.message);
    }
}

#[test]
fn evaluation_errors_are_errors_not_panics() {
    let f = Facts::new().query("q=1");
    for (expr, want) in [
        ("request.headers['user-agent'] == 'x'", "no header `user-agent`"),
        ("origin.region_code == 'US'", "no IP-to-region table"),
        ("origin.asn == 15169", "no IP-to-ASN table"),
        ("int(request.query) == 1", "cannot convert"),
        ("request.query.base64Decode() == ''", "base64"),
        ("inIpRange(request.query, '10.0.0.0/8')", "invalid IP address"),
        ("9223372036854775807 + 1 > 0", "overflow"),
    ] {
        let got = f.eval(expr);
        let Err(e) = got else { panic!("`{expr}` should fail, got {got:?}") };
        assert!(e.message.contains(want), "{expr}: {}", e.message);
    }
    // An error on one side of `&&` / `||` is absorbed when the other side decides.
    assert_eq!(f.eval("request.method == 'POST' && origin.region_code == 'US'"), Ok(false));
    assert_eq!(f.eval("origin.region_code == 'US' && request.method == 'POST'"), Ok(false));
    assert_eq!(f.eval("origin.region_code == 'US' || request.method == 'GET'"), Ok(true));
    assert!(f.eval("origin.region_code == 'US' || request.method == 'POST'").is_err());
    let mut geo = f.clone();
    geo.region_code = Some("US".into());
    geo.asn = Some(15169);
    assert_eq!(geo.eval("origin.region_code == 'US' && origin.asn == 15169"), Ok(true));
}

const DIFFERENTIAL: &[&str] = &[
    "request.path.startsWith('/admin') || request.path.matches('\\\\.(php|asp)$')",
    "has(request.headers['user-agent']) && request.headers['user-agent'].lower().contains('curl')",
    "request.headers['user-agent'].lower().contains('curl')",
    "inIpRange(origin.ip, '10.0.0.0/8') || inIpRange(origin.ip, '2001:db8::/32')",
    "request.query.urlDecode().lower().contains('union select')",
    "request.query.urlDecodeUni().contains('<')",
    "size(request.query) > 8 && !request.method.startsWith('G')",
    "request.query.base64Decode().contains('x')",
    "int(request.query) > 3",
    "request.path.utf8ToUnicode().contains('%u')",
    "request.method.upper() == 'POST' || request.path.lower().endsWith('.env')",
];

proptest! {
    /// On arbitrary requests the compiled evaluator and the `cel` crate's interpreter agree.
    #[test]
    fn compiled_and_interpreted_agree(
        method in "(GET|POST|get|DELETE)",
        path in "/[a-zA-Z0-9._%é-]{0,12}",
        query in "[a-zA-Z0-9=&%+<>_ ]{0,16}",
        ua in proptest::option::of("[a-zA-Z/ .]{0,20}"),
        ip in prop_oneof![Just("10.1.2.3"), Just("2001:db8::1"), Just("8.8.8.8"), Just("::ffff:10.0.0.1")],
    ) {
        let mut f = Facts::new().method(&method).path(&path).query(&query).ip(ip);
        if let Some(ua) = ua {
            f = f.header("User-Agent", &ua);
        }
        for expr in DIFFERENTIAL {
            let _ = f.eval(expr);
        }
    }

    /// Whatever the text, compiling returns a program or an error; it never panics.
    #[test]
    fn compiling_never_panics(text in "\\PC{0,80}") {
        let _ = CelEngine::new().unwrap().compile(&text, &Limits::CLOUD_ARMOR);
    }
}

/// Answers WAF calls from a fixed list of matching sets, and remembers what it was asked.
#[derive(Debug, Default)]
struct FakeWaf {
    matching: Vec<&'static str>,
    asked: std::sync::Mutex<Vec<String>>,
}

impl moat_policy::armor::WafEvaluator for FakeWaf {
    fn evaluate(
        &self,
        call: &moat_policy::armor::WafCall,
        _: &[moat_policy::armor::WafExclusion],
    ) -> Result<bool, String> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(format!("{} s{} out{:?} in{:?}", call.set, call.sensitivity, call.opt_out, call.opt_in));
        }
        if call.family == "java" {
            return Err("no rule file".to_owned());
        }
        Ok(self.matching.contains(&call.family))
    }
}

#[test]
fn waf_calls_are_asked_of_the_request_waf() {
    let waf = FakeWaf { matching: vec!["sqli"], ..FakeWaf::default() };
    let facts = Facts::new();
    let both = |expr: &str| {
        let compiled = facts.eval_waf(&CelEngine::new().unwrap(), expr, Some(&waf));
        let interpreted = facts.eval_waf(&CelEngine::interpreted().unwrap(), expr, Some(&waf));
        assert_eq!(compiled.is_ok(), interpreted.is_ok(), "{expr}: {compiled:?} vs {interpreted:?}");
        compiled
    };
    assert_eq!(both("evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})"), Ok(true));
    assert_eq!(both("evaluatePreconfiguredWaf('xss-v33-stable')"), Ok(false));
    assert_eq!(
        both(
            "!evaluatePreconfiguredWaf('xss-v33-stable') && evaluatePreconfiguredExpr('sqli-stable', ['owasp-crs-v030001-id942110-sqli'])"
        ),
        Ok(true)
    );
    let asked = waf.asked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(asked.contains(&"sqli-v33-stable s1 out[] in[]".to_owned()), "{asked:?}");
    // No sensitivity: Cloud Armor's default, 4. The legacy list is an opt-out list.
    assert!(asked.contains(&"xss-v33-stable s4 out[] in[]".to_owned()), "{asked:?}");
    assert!(asked.contains(&"sqli-stable s4 out[942110] in[]".to_owned()), "{asked:?}");
    // A failing WAF call is an evaluation error (the rule does not match), in both engines.
    assert!(both("evaluatePreconfiguredWaf('java-v33-stable')").is_err());
    // Without a WAF (explain has no body), the call cannot be answered: an error, never `false`.
    let e = facts.eval("evaluatePreconfiguredWaf('sqli-v33-stable')");
    assert!(e.is_err(), "{e:?}");
}
