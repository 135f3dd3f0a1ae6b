//! The preconfigured WAF at the front door: the CRS rules (loaded once, only when a policy
//! uses them), the body prefix the rules inspect, and the per-request evaluator the policy asks.
//!
//! Bodies: for a request through a load balancer whose policy calls the WAF, the front door reads
//! the body until it has the policy's inspection size (8 KB unless
//! `requestBodyInspectionSize` says up to 64 KB) or the body ends, inspects that prefix, and then
//! forwards everything it read followed by the rest of the body, unbuffered. Bytes past the
//! inspection size are not inspected, as in Cloud Armor: an attack placed after them passes the
//! preconfigured rules (docs/WAF.md "Bodies").

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request};
use moat_policy::armor::{ExcludedField, SecurityPolicy, WafCall, WafEvaluator, WafExclusion};
use moat_policy::model::Project;
use moat_waf::rule::Var;
use moat_waf::{Crs, Inspection, WafRequest};

/// Loads the CRS when a policy of `project` needs it. `Ok(None)`: nothing uses the WAF.
/// The error says what is missing and how to install it (the caller refuses to start, or keeps
/// the last good config on reload).
pub fn load_crs_for(project: &Project, dir: &Path, loaded: Option<&Arc<Crs>>) -> Result<Option<Arc<Crs>>, String> {
    let users: Vec<&str> =
        project.armor_policies.iter().filter(|(_, p)| p.uses_waf).map(|(name, _)| name.as_str()).collect();
    if users.is_empty() {
        return Ok(None);
    }
    if let Some(crs) = loaded {
        return Ok(Some(Arc::clone(crs)));
    }
    Crs::load(dir).map(|c| Some(Arc::new(c))).map_err(|e| {
        format!(
            "security polic{} {} use{} preconfigured WAF rules (evaluatePreconfiguredWaf), which need the OWASP CRS rule files: {e}",
            if users.len() == 1 { "y" } else { "ies" },
            users.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", "),
            if users.len() == 1 { "s" } else { "" },
        )
    })
}

/// The body bytes read before forwarding: sent to the workload first, then the rest of the
/// body. Kept in the request's extensions between the edge stage and the forward.
#[derive(Debug, Clone, Default)]
pub(super) struct BodyPrefix {
    pub chunks: Vec<Bytes>,
    pub trailers: Option<HeaderMap>,
    /// The body ended within the prefix.
    pub complete: bool,
}

/// Reads up to `limit` bytes of the body (more if a frame straddles the limit: frames are not
/// split). Returns the bytes to inspect, cut to `limit`. A body that errors or stalls past
/// `timeout` is an error: the request is refused rather than inspected partially.
pub(super) async fn read_prefix(
    req: &mut Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut prefix = BodyPrefix::default();
    let mut inspected = Vec::new();
    let body = req.body_mut();
    let read = async {
        while inspected.len() < limit {
            match body.frame().await {
                None => {
                    prefix.complete = true;
                    break;
                }
                Some(Err(e)) => return Err(format!("the request body could not be read: {e}")),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let room = limit.saturating_sub(inspected.len());
                        inspected.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                        prefix.chunks.push(data);
                    }
                    Err(frame) => {
                        prefix.trailers = frame.into_trailers().ok();
                        prefix.complete = true;
                        break;
                    }
                },
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the request body did not arrive in time for inspection".to_owned()),
    }
    req.extensions_mut().insert(prefix);
    Ok(inspected)
}

/// The request as the CRS sees it.
pub(super) fn waf_request<B>(req: &Request<B>, body: Vec<u8>, policy: &SecurityPolicy) -> WafRequest {
    let uri = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
    WafRequest {
        method: req.method().as_str().to_owned(),
        uri,
        protocol: format!("{:?}", req.version()),
        headers: req.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect(),
        body,
        json: policy.json_parsing,
    }
}

/// The WAF one request is evaluated with: every call the policy makes runs its set on the same
/// inspection (parsed request and transformed values shared), and the signatures that fired
/// are kept for the decision record.
pub(super) struct RequestWaf<'r> {
    crs: &'r Crs,
    /// The request's path (no query), which URI exclusions are matched against.
    path: &'r str,
    inspection: Mutex<Inspection<'r>>,
    fired: Mutex<Vec<String>>,
}

impl std::fmt::Debug for RequestWaf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestWaf").field("crs", &self.crs.version).finish_non_exhaustive()
    }
}

impl<'r> RequestWaf<'r> {
    pub(super) fn new(crs: &'r Crs, request: &'r WafRequest) -> Self {
        let path = request.uri.split('?').next().unwrap_or_default();
        Self { crs, path, inspection: Mutex::new(crs.inspect(request)), fired: Mutex::new(Vec::new()) }
    }

    /// The signatures that fired, in Cloud Armor's form, in evaluation order.
    pub(super) fn into_fired(self) -> Vec<String> {
        self.fired.into_inner().unwrap_or_default()
    }
}

impl WafEvaluator for RequestWaf<'_> {
    fn evaluate(&self, call: &WafCall, exclusions: &[WafExclusion]) -> Result<bool, String> {
        if self.crs.family(call.family).is_none() {
            return Err(format!(
                "`{}` has no rule file in the loaded CRS {} (the `cve` and `json-sqli` canary sets are not part of CRS 3.3)",
                call.set, self.crs.version
            ));
        }
        let enabled = |id: u32, paranoia: u8| call.enables(id, paranoia);
        let path = self.path;
        let excluded = |id: u32, var: Var, key: &str| {
            exclusions
                .iter()
                .filter(|e| e.applies(call, id))
                .flat_map(|e| e.fields.iter())
                .any(|(field, op)| excludes(*field, op, var, key, path))
        };
        let ids = match self.inspection.lock() {
            Ok(mut inspection) => inspection.evaluate(call.family, &enabled, &excluded),
            Err(_) => return Err("the WAF inspection failed earlier in this request".to_owned()),
        };
        if let Ok(mut fired) = self.fired.lock() {
            for id in &ids {
                let sig = call.signature_id(*id);
                if !fired.contains(&sig) {
                    fired.push(sig);
                }
            }
        }
        Ok(!ids.is_empty())
    }
}

/// Which CRS variables a Cloud Armor field exclusion covers: a header's value
/// (`REQUEST_HEADERS:name`), a cookie's (`REQUEST_COOKIES:name`), a query or form parameter's
/// (`ARGS:name`, `ARGS_GET:name`, `ARGS_POST:name`), and for a URI exclusion whose operator
/// matches the request path, the URI variables. Names stay inspected (`*_NAMES`): the exclusions
/// are about values.
fn excludes(field: ExcludedField, op: &moat_policy::armor::FieldOp, var: Var, key: &str, path: &str) -> bool {
    match field {
        ExcludedField::Header => var == Var::RequestHeaders && op.matches(key, true),
        ExcludedField::Cookie => var == Var::RequestCookies && op.matches(key, false),
        ExcludedField::QueryParam => matches!(var, Var::Args | Var::ArgsGet | Var::ArgsPost) && op.matches(key, false),
        ExcludedField::Uri => {
            matches!(
                var,
                Var::RequestUri | Var::RequestUriRaw | Var::RequestFilename | Var::RequestBasename | Var::RequestLine
            ) && op.matches(path, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use moat_policy::armor::FieldOp;

    use super::*;

    #[test]
    fn exclusions_map_to_crs_variables() {
        let eq = |v: &str| FieldOp::Equals(v.to_owned());
        assert!(excludes(ExcludedField::Header, &eq("x-raw"), Var::RequestHeaders, "X-Raw", "/"));
        assert!(!excludes(ExcludedField::Header, &eq("x-raw"), Var::RequestHeadersNames, "X-Raw", "/"));
        assert!(excludes(ExcludedField::Cookie, &eq("pref"), Var::RequestCookies, "pref", "/"));
        assert!(!excludes(ExcludedField::Cookie, &eq("pref"), Var::RequestCookies, "Pref", "/"));
        for var in [Var::Args, Var::ArgsGet, Var::ArgsPost] {
            assert!(excludes(ExcludedField::QueryParam, &eq("q"), var, "q", "/"));
        }
        assert!(!excludes(ExcludedField::QueryParam, &eq("q"), Var::ArgsNames, "q", "/"));
        let under = FieldOp::StartsWith("/raw".to_owned());
        assert!(excludes(ExcludedField::Uri, &under, Var::RequestFilename, "", "/raw/x"));
        assert!(excludes(ExcludedField::Uri, &under, Var::RequestUri, "", "/raw/x"));
        assert!(!excludes(ExcludedField::Uri, &under, Var::RequestUri, "", "/other"));
        assert!(!excludes(ExcludedField::Uri, &under, Var::Args, "x", "/raw/x"));
        assert!(excludes(ExcludedField::Uri, &FieldOp::EqualsAny, Var::RequestLine, "", "/anything"));
    }
}
