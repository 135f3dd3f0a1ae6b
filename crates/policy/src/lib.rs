//! moat-policy owns the project model and every access decision.
//!
//! Decisions are pure functions over the model and request facts: no I/O, no clock, no async.
//! The front door and `moat explain` call the same functions, so what `explain` says is what
//! the gateway does.

pub mod armor;
pub mod authn;
pub mod authz;
pub mod check;
pub mod config;
pub mod decision;
pub mod edge;
pub mod egress;
pub mod explain;
pub mod iap;
pub mod ingress;
pub mod model;
pub mod network;
pub mod path;
pub mod request;
pub mod roles;
pub mod secret_access;
pub mod source;

pub use config::{ConfigError, LoadErrors, load};
pub use decision::{Decision, Effect, Layer, Reason};
pub use model::Project;
pub use path::{QueryError, decide};
pub use request::{Entry, NetOrigin, Origin, Principal, TokenFacts};
pub use source::{SourceFile, SourceRef};
