//! The `gcloud compute security-policies describe --format json` shape (the Compute API v1
//! `SecurityPolicy` resource), as serde reads it. Everything is optional here; `policy.rs` says
//! what is required. Unknown fields (server-side status, fingerprints) are ignored.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPolicy {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub advanced_options_config: Option<RawAdvancedOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawAdvancedOptions {
    #[serde(default)]
    pub user_ip_request_headers: Vec<String>,
    pub request_body_inspection_size: Option<String>,
    pub json_parsing: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRule {
    #[serde(default, deserialize_with = "opt_int")]
    pub priority: Option<i64>,
    pub action: Option<String>,
    #[serde(default)]
    pub preview: bool,
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub network_match: Option<serde_json::Value>,
    pub header_action: Option<RawHeaderAction>,
    pub rate_limit_options: Option<RawRateLimitOptions>,
    pub redirect_options: Option<RawRedirectOptions>,
    pub preconfigured_waf_config: Option<RawWafConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawWafConfig {
    #[serde(default)]
    pub exclusions: Vec<RawWafExclusion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawWafExclusion {
    pub target_rule_set: Option<String>,
    #[serde(default)]
    pub target_rule_ids: Vec<String>,
    #[serde(default)]
    pub request_headers_to_exclude: Vec<RawFieldParams>,
    #[serde(default)]
    pub request_cookies_to_exclude: Vec<RawFieldParams>,
    #[serde(default)]
    pub request_query_params_to_exclude: Vec<RawFieldParams>,
    #[serde(default)]
    pub request_uris_to_exclude: Vec<RawFieldParams>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawFieldParams {
    pub op: Option<String>,
    pub val: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMatch {
    pub versioned_expr: Option<String>,
    pub config: Option<RawMatchConfig>,
    pub expr: Option<RawExpr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMatchConfig {
    #[serde(default)]
    pub src_ip_ranges: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawExpr {
    pub expression: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHeaderAction {
    #[serde(default)]
    pub request_headers_to_adds: Vec<RawHeader>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHeader {
    pub header_name: Option<String>,
    #[serde(default)]
    pub header_value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRedirectOptions {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRateLimitOptions {
    pub rate_limit_threshold: Option<RawThreshold>,
    pub conform_action: Option<String>,
    pub exceed_action: Option<String>,
    pub exceed_redirect_options: Option<RawRedirectOptions>,
    pub enforce_on_key: Option<String>,
    pub enforce_on_key_name: Option<String>,
    #[serde(default)]
    pub enforce_on_key_configs: Vec<RawKeyConfig>,
    pub ban_threshold: Option<RawThreshold>,
    #[serde(default, deserialize_with = "opt_int")]
    pub ban_duration_sec: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawThreshold {
    #[serde(default, deserialize_with = "opt_int")]
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub interval_sec: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawKeyConfig {
    pub enforce_on_key_type: Option<String>,
    pub enforce_on_key_name: Option<String>,
}

/// An integer written as a JSON number or, as proto3 JSON writes 64-bit fields, a string.
fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        String(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(i)),
        Some(IntOrString::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, found `{s}`"))),
    }
}
