//! Edge security policies: Cloud Armor's rules, decided for one request.
//!
//! [`SecurityPolicy::from_json`] reads a policy as `gcloud compute security-policies describe
//! --format json` prints it, validates every rule and compiles every expression once;
//! [`SecurityPolicy::evaluate`] then decides a request in priority order. Pure: no I/O, no clock.
//! Rate limits are parsed and validated here but counted by the caller, which owns the state
//! (and shares it across replicas): the verdict hands back the rule's [`RateLimit`].
//!
//! The one key design decision: expressions go through our own [`expr::Engine`] trait, on the
//! `cel` crate's parser and interpreter, with the Cloud Armor environment (attributes,
//! overloads, restricted operators, limits) enforced by our own checker, because the crate has
//! none and its standard library is far larger than Cloud Armor's.

mod error;
mod eval;
pub mod expr;
mod geo;
mod locate;
mod policy;
mod rate_limit;
mod raw;
pub mod request;
mod srcip;
pub mod waf;

pub use error::ArmorError;
pub use eval::{EdgeOutcome, EdgeVerdict, PreviewMatch, RECAPTCHA_REFUSAL_STATUS, RuleError, codes};
pub use geo::{GeoEntry, GeoTable, is_region_code};
pub use policy::{
    Action, DEFAULT_RULE_PRIORITY, DENY_STATUSES, HeaderToAdd, MAX_SRC_IP_RANGES, Match, PolicyType, Redirect, Rule,
    RuleExpr, SecurityPolicy,
};
pub use rate_limit::{Ban, ExceedAction, INTERVALS_SEC, KeyPart, MAX_KEY_BYTES, MAX_KEY_CONFIGS, RateLimit, Threshold};
pub use request::{EdgeRequest, Headers, RecaptchaTokens};
pub use waf::{ExcludedField, FieldOp, WafCall, WafEvaluator, WafExclusion};
