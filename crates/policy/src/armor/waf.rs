//! Preconfigured WAF rule sets, as far as a policy names them: which set names and signature ids
//! exist (spec/armor.md §4.1), which tuning is valid (§4.2), and the call a rule makes
//! ([`WafCall`]). The CRS engine itself is `moat-waf`; the caller of the evaluator hands it in
//! per request through [`WafEvaluator`], so this crate stays free of rule files and I/O.

use std::fmt;

/// Cloud Armor's default sensitivity when a call gives none: every signature of the set
/// ("By default, Cloud Armor is configured to run at sensitivity level 4", rule-tuning docs).
pub const DEFAULT_SENSITIVITY: u8 = 4;

/// One `evaluatePreconfiguredWaf(...)` / `evaluatePreconfiguredExpr(...)` call, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafCall {
    /// The set as written (`sqli-v33-stable`).
    pub set: String,
    /// The CRS family (`sqli`); `cve` and `json-sqli` sets have no CRS 3.3 file.
    pub family: &'static str,
    /// The version part of the set's signature ids (`v030301` for `-v33-`, `v030001` for the
    /// legacy sets, `v042200` for `-v422-`).
    pub version: &'static str,
    pub sensitivity: u8,
    /// Signature numbers (`942100`) opted in (with sensitivity 0) or out.
    pub opt_in: Vec<u32>,
    pub opt_out: Vec<u32>,
}

impl WafCall {
    /// Whether the signature with this CRS id and paranoia level is enabled by the call.
    pub fn enables(&self, id: u32, paranoia: u8) -> bool {
        if self.opt_in.contains(&id) {
            return true;
        }
        paranoia <= self.sensitivity && !self.opt_out.contains(&id)
    }

    /// The signature id in Cloud Armor's form: `owasp-crs-v030301-id942100-sqli`.
    pub fn signature_id(&self, id: u32) -> String {
        format!("owasp-crs-{}-id{id:06}-{}", self.version, self.family)
    }
}

impl fmt::Display for WafCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at sensitivity {}", self.set, self.sensitivity)
    }
}

/// Evaluates WAF calls for the request being decided. The front door implements it over the
/// loaded CRS; `explain` has no request body and passes none (rules calling the WAF are then set
/// aside, never guessed).
pub trait WafEvaluator: Sync + fmt::Debug {
    /// Whether any enabled signature of the call's set matches this request, leaving out the
    /// fields the rule's `exclusions` name. An error (a set with no rule file behind it) means
    /// the rule does not match, and is reported.
    fn evaluate(&self, call: &WafCall, exclusions: &[WafExclusion]) -> Result<bool, String>;
}

/// How an exclusion names the fields it takes out of inspection (`op` and `val` of the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOp {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    /// Every field of the kind.
    EqualsAny,
}

impl FieldOp {
    /// Whether the field named (or, for URIs, valued) `name` is excluded. Header names compare
    /// case-insensitively (HTTP field names are); everything else exactly.
    pub fn matches(&self, name: &str, case_insensitive: bool) -> bool {
        let fold = |s: &str| if case_insensitive { s.to_ascii_lowercase() } else { s.to_owned() };
        let name = fold(name);
        match self {
            Self::Equals(v) => name == fold(v),
            Self::StartsWith(v) => name.starts_with(&fold(v)),
            Self::EndsWith(v) => name.ends_with(&fold(v)),
            Self::Contains(v) => name.contains(&fold(v)),
            Self::EqualsAny => true,
        }
    }
}

/// The kind of request field an exclusion removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcludedField {
    /// A request header's value (`requestHeadersToExclude`).
    Header,
    /// A cookie's value (`requestCookiesToExclude`).
    Cookie,
    /// A query or form parameter's value (`requestQueryParamsToExclude`).
    QueryParam,
    /// The request URI, when the URI (path, no query) matches (`requestUrisToExclude`).
    Uri,
}

/// One `preconfiguredWafConfig.exclusions[]` entry of a rule: fields of the request that the
/// named set's signatures (all of them, or `targetRuleIds`) do not inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafExclusion {
    /// `targetRuleSet`, as written (`sqli-v33-stable`).
    pub set: String,
    /// CRS numbers of `targetRuleIds`; empty: every signature of the set.
    pub rule_ids: Vec<u32>,
    pub fields: Vec<(ExcludedField, FieldOp)>,
}

impl WafExclusion {
    /// Whether the exclusion is about this call's set and this signature.
    pub fn applies(&self, call: &WafCall, id: u32) -> bool {
        self.set == call.set && (self.rule_ids.is_empty() || self.rule_ids.contains(&id))
    }
}

/// The version part of signature ids for a set name.
fn version_of(name: &str) -> &'static str {
    if name.contains("-v33-") {
        "v030301"
    } else if name.contains("-v422-") {
        "v042200"
    } else {
        "v030001"
    }
}

/// The rule-set families of the CRS 3.3 sets (`-v33-stable`, `-v33-canary`).
const V33_FAMILIES: &[&str] = &[
    "sqli",
    "xss",
    "lfi",
    "rfi",
    "rce",
    "methodenforcement",
    "scannerdetection",
    "protocolattack",
    "php",
    "sessionfixation",
    "java",
    "nodejs",
];

/// The families of the legacy CRS 3.0 sets (`-stable`, `-canary`).
const V30_FAMILIES: &[&str] = &[
    "sqli",
    "xss",
    "lfi",
    "rfi",
    "rce",
    "methodenforcement",
    "scannerdetection",
    "protocolattack",
    "php",
    "sessionfixation",
];

/// The families of the CRS 4.22 sets (`-v422-stable`, `-v422-canary`); CRS 4 renamed 934 to
/// `generic` and has no `nodejs`.
const V422_FAMILIES: &[&str] = &[
    "sqli",
    "xss",
    "lfi",
    "rfi",
    "rce",
    "methodenforcement",
    "scannerdetection",
    "protocolattack",
    "php",
    "sessionfixation",
    "java",
    "generic",
];

/// A preconfigured rule set named in an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The signature-id suffix of the family (`sqli` for `json-sqli-canary`, `cve` for
    /// `cve-canary`).
    pub family: &'static str,
    pub version: &'static str,
}

/// Looks a set name up. The error says what the valid names look like.
pub fn rule_set(name: &str) -> Result<RuleSet, String> {
    let lookup = |families: &'static [&'static str], family: &str| families.iter().copied().find(|f| *f == family);
    let family = if name == "cve-canary" {
        Some("cve")
    } else if name == "json-sqli-canary" {
        Some("sqli")
    } else if let Some(f) = name.strip_suffix("-v33-stable").or_else(|| name.strip_suffix("-v33-canary")) {
        lookup(V33_FAMILIES, f)
    } else if let Some(f) = name.strip_suffix("-v422-stable").or_else(|| name.strip_suffix("-v422-canary")) {
        lookup(V422_FAMILIES, f)
    } else if let Some(f) = name.strip_suffix("-stable").or_else(|| name.strip_suffix("-canary")) {
        lookup(V30_FAMILIES, f)
    } else {
        None
    };
    family.map(|family| RuleSet { family, version: version_of(name) }).ok_or_else(|| {
        format!(
            "`{name}` is not a preconfigured WAF rule set; names look like `sqli-v33-stable`, `xss-v422-canary`, \
             `lfi-stable`, `cve-canary` or `json-sqli-canary`"
        )
    })
}

/// Checks a signature id against its set: `owasp-crs-v030301-id942100-sqli` (the version part is
/// missing in `json-sqli-canary`'s `owasp-crs-id942550-sqli`).
/// Returns the CRS rule number.
pub fn check_signature_id(set: &RuleSet, set_name: &str, id: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "`{id}` is not a signature id of `{set_name}`; ids look like `owasp-crs-v030301-id942100-{}`",
            set.family
        )
    };
    let rest = id.strip_prefix("owasp-crs-").ok_or_else(bad)?;
    let rest = match rest.strip_prefix('v') {
        Some(r) => {
            let (version, r) = r.split_at_checked(6).ok_or_else(bad)?;
            if !version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            r.strip_prefix('-').ok_or_else(bad)?
        }
        None => rest,
    };
    let rest = rest.strip_prefix("id").ok_or_else(bad)?;
    let (number, suffix) = rest.split_at_checked(6).ok_or_else(bad)?;
    if !number.bytes().all(|b| b.is_ascii_digit()) || suffix.strip_prefix('-') != Some(set.family) {
        return Err(bad());
    }
    number.parse().map_err(|_| bad())
}

/// Sensitivity is the CRS paranoia level, 0 to 4; 0 enables nothing by default and is required
/// with `opt_in_rule_ids`.
pub fn check_tuning(sensitivity: Option<i64>, opt_in: usize, opt_out: usize) -> Result<(), String> {
    if let Some(s) = sensitivity
        && !(0..=4).contains(&s)
    {
        return Err(format!("sensitivity `{s}` is out of range; use 0 to 4 (the CRS paranoia level)"));
    }
    if opt_in > 0 && opt_out > 0 {
        return Err("use either `opt_in_rule_ids` or `opt_out_rule_ids`, not both".to_owned());
    }
    if opt_in > 0 && sensitivity != Some(0) {
        return Err("`opt_in_rule_ids` needs `'sensitivity': 0`".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names() {
        for ok in
            ["sqli-v33-stable", "xss-v33-canary", "lfi-stable", "java-v422-stable", "cve-canary", "json-sqli-canary"]
        {
            assert!(rule_set(ok).is_ok(), "{ok}");
        }
        for bad in ["sqli", "sqli-v34-stable", "java-stable", "nodejs-v422-stable", "SQLI-v33-stable", ""] {
            assert!(rule_set(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_ids() {
        let sqli = RuleSet { family: "sqli", version: "v030301" };
        assert_eq!(check_signature_id(&sqli, "sqli-v33-stable", "owasp-crs-v030301-id942100-sqli"), Ok(942100));
        assert!(check_signature_id(&sqli, "json-sqli-canary", "owasp-crs-id942550-sqli").is_ok());
        assert!(check_signature_id(&sqli, "sqli-v33-stable", "owasp-crs-v030301-id942100-xss").is_err());
        assert!(check_signature_id(&sqli, "sqli-v33-stable", "owasp-crs-v0303-id942100-sqli").is_err());
        assert!(check_signature_id(&sqli, "sqli-v33-stable", "942100").is_err());
    }

    #[test]
    fn calls_enable_and_name_signatures() {
        let call = WafCall {
            set: "sqli-v33-stable".into(),
            family: "sqli",
            version: "v030301",
            sensitivity: 2,
            opt_in: vec![],
            opt_out: vec![942110],
        };
        assert!(call.enables(942100, 1));
        assert!(!call.enables(942110, 2));
        assert!(!call.enables(942101, 3));
        assert_eq!(call.signature_id(942100), "owasp-crs-v030301-id942100-sqli");
        let opt_in = WafCall { sensitivity: 0, opt_in: vec![942101], opt_out: vec![], ..call };
        assert!(opt_in.enables(942101, 3));
        assert!(!opt_in.enables(942100, 1));
    }

    #[test]
    fn tuning() {
        assert!(check_tuning(Some(4), 0, 2).is_ok());
        assert!(check_tuning(Some(0), 2, 0).is_ok());
        assert!(check_tuning(Some(5), 0, 0).is_err());
        assert!(check_tuning(Some(1), 1, 0).is_err());
        assert!(check_tuning(Some(0), 1, 1).is_err());
    }
}
