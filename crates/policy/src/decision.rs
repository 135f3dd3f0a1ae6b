//! The value every decision returns: what happened, at which layer, and why.

use std::fmt;

use serde::Serialize;

use crate::source::SourceRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// The layer that made the final call, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Network,
    Edge,
    Ingress,
    Authentication,
    /// Identity-Aware Proxy in front of the service (`iap-enabled`): it admits only callers
    /// with IAP access, after their token is authenticated (spec/cloudrun.md §2.10).
    Iap,
    Authorization,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Network => "network",
            Self::Edge => "edge",
            Self::Ingress => "ingress",
            Self::Authentication => "authentication",
            Self::Iap => "iap",
            Self::Authorization => "authorization",
        })
    }
}

/// One step of the explanation. `code` is stable (tests, dashboards and SIEM rules key on it);
/// `message` is for people; `source` is the config item that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
    #[serde(serialize_with = "ser_source")]
    pub source: Option<SourceRef>,
}

fn ser_source<S: serde::Serializer>(s: &Option<SourceRef>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(r) => ser.collect_str(r),
        None => ser.serialize_none(),
    }
}

impl Reason {
    pub fn new(code: &'static str, message: impl Into<String>, source: Option<&SourceRef>) -> Self {
        Self { code, message: message.into(), source: source.cloned() }
    }
}

/// A decision and its reasons, in pipeline order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// The HTTP status the caller sees: 200 when the request reaches the container, `None`
    /// when there is no HTTP response at all (the path does not exist on the network).
    pub status: Option<u16>,
    /// The layer that refused; `None` when allowed.
    pub layer: Option<Layer>,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn allow(reasons: Vec<Reason>) -> Self {
        Self { effect: Effect::Allow, status: Some(200), layer: None, reasons }
    }

    pub fn deny(layer: Layer, status: Option<u16>, reasons: Vec<Reason>) -> Self {
        Self { effect: Effect::Deny, status, layer: Some(layer), reasons }
    }

    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// What a stage of the pipeline returns: the reasons to record and carry on, or the final
/// refusal.
pub type Stage<T = ()> = Result<(T, Vec<Reason>), Decision>;
