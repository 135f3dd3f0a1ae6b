//! The WAF engine behind Cloud Armor's preconfigured rule sets (`evaluatePreconfiguredWaf`):
//! a SecLang subset engine that loads the OWASP CRS rule files and reports, per request, which
//! signatures match. See docs/WAF.md.

pub mod crs;
pub mod engine;
pub mod expand;
pub mod libinjection;
pub mod operator;
pub mod pattern;
pub mod request;
pub mod rule;
pub mod seclang;
pub mod transform;

pub use crs::{Crs, DEFAULT_CRS_DIR, FAMILIES, Inspection, LoadError, Signature};
pub use request::WafRequest;
