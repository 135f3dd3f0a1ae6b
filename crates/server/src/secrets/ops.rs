//! One function per API method: read the request's fields, call the store off the async
//! threads (its commits fsync), render the result. Authorization and audit happen inside the
//! store, for every caller alike.

use axum::body::Bytes;
use moat_secrets::{Caller, SecretError, Secrets};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::reply::ApiError;
use super::route::{Parent, Route, SecretRef, VersionRef};
use super::wire::{self, AddVersionBody, Enums, EtagBody, Query, SecretBody, SetIamBody, TestIamBody};

/// A successful answer: its JSON, and whether it carries a payload (never cached).
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Value,
    pub payload: bool,
}

impl Answer {
    fn meta(body: Value) -> Self {
        Self { body, payload: false }
    }
}

/// Everything a method needs besides the store.
#[derive(Debug)]
pub(crate) struct Call {
    pub route: Route,
    pub caller: Caller,
    pub query: Query,
    pub body: Bytes,
}

pub(crate) async fn call(secrets: &Secrets, c: Call) -> Result<Answer, ApiError> {
    let enums = c.query.enums();
    let number = secrets.project_number();
    let s = secrets.clone();
    let caller = c.caller;
    match c.route {
        Route::ListSecrets(parent) => {
            no_filter(&c.query)?;
            let (size, token) = paging(&c.query)?;
            let page = blocking(move || s.list_secrets(&caller, size, &token)).await?;
            let items = page.items.iter().map(|i| wire::secret(&number, &parent, i)).collect();
            Ok(Answer::meta(wire::page("secrets", items, &page.next_page_token, page.total_size)))
        }
        Route::CreateSecret(parent) => {
            let id = c.query.get("secretId").unwrap_or("").to_owned();
            if id.is_empty() {
                return Err(ApiError::invalid(
                    "secretId is required: name the secret in the `secretId` query parameter",
                ));
            }
            let body: SecretBody = json_body(&c.body)?;
            refuse_unsupported(&body)?;
            let info = blocking(move || s.create_secret(&caller, &id, body.labels)).await?;
            Ok(Answer::meta(wire::secret(&number, &parent, &info)))
        }
        Route::GetSecret(r) => {
            let id = r.secret.clone();
            let info = blocking(move || s.get_secret(&caller, &id)).await?;
            Ok(Answer::meta(wire::secret(&number, &r.parent, &info)))
        }
        Route::UpdateSecret(r) => update_secret(s, caller, &number, r, &c.query, &c.body).await,
        Route::DeleteSecret(r) => {
            let etag = c.query.get("etag").filter(|e| !e.is_empty()).map(str::to_owned);
            blocking(move || s.delete_secret(&caller, &r.secret, etag.as_deref())).await?;
            Ok(Answer::meta(json!({})))
        }
        Route::AddVersion(r) => add_version(s, caller, &number, r, &c.body, enums).await,
        Route::GetIamPolicy(r) => {
            let (doc, etag) = blocking(move || s.get_iam_policy(&caller, &r.secret)).await?;
            Ok(Answer::meta(wire::policy(&doc, &etag)))
        }
        Route::SetIamPolicy(r) => {
            let body: SetIamBody = json_body(&c.body)?;
            let policy =
                body.policy.ok_or_else(|| ApiError::invalid("policy is required: send {\"policy\": {...}}"))?;
            if policy.has_audit_configs() {
                return Err(ApiError::invalid(
                    "policy.auditConfigs is not supported by moat's secret store: remove it (moat records every access and change of a secret in STATE/secrets/audit.jsonl, whatever the policy says)",
                ));
            }
            // The etag is `bytes`: clients may send it back in either base64 alphabet (gcloud
            // re-encodes it URL-safe), so it is compared in the store's standard form.
            let etag = policy.etag.as_deref().filter(|e| !e.is_empty()).map(wire::standard_base64);
            let doc = policy.doc();
            let (doc, etag) = blocking(move || s.set_iam_policy(&caller, &r.secret, doc, etag.as_deref())).await?;
            Ok(Answer::meta(wire::policy(&doc, &etag)))
        }
        Route::TestIamPermissions(r) => {
            let body: TestIamBody = json_body(&c.body)?;
            let held = blocking(move || s.test_iam_permissions(&caller, &r.secret, &body.permissions)).await?;
            Ok(Answer::meta(if held.is_empty() { json!({}) } else { json!({ "permissions": held }) }))
        }
        Route::ListVersions(r) => {
            no_filter(&c.query)?;
            let (size, token) = paging(&c.query)?;
            let id = r.secret.clone();
            let page = blocking(move || s.list_versions(&caller, &id, size, &token)).await?;
            let items = page.items.iter().map(|v| wire::version(&number, &r.parent, v, enums)).collect();
            Ok(Answer::meta(wire::page("versions", items, &page.next_page_token, page.total_size)))
        }
        Route::GetVersion(v) => {
            let (id, sel) = (v.secret.secret.clone(), v.version);
            let info = blocking(move || s.get_version(&caller, &id, sel)).await?;
            Ok(Answer::meta(wire::version(&number, &v.secret.parent, &info, enums)))
        }
        Route::Access(v) => access(s, caller, &number, v).await,
        Route::SetState(v, state) => {
            let body: EtagBody = json_body(&c.body)?;
            let etag = body.etag.filter(|e| !e.is_empty());
            let (id, sel) = (v.secret.secret.clone(), v.version);
            let info = blocking(move || s.set_state(&caller, &id, sel, state, etag.as_deref())).await?;
            Ok(Answer::meta(wire::version(&number, &v.secret.parent, &info, enums)))
        }
    }
}

async fn update_secret(
    s: Secrets,
    caller: Caller,
    number: &str,
    r: SecretRef,
    query: &Query,
    body: &Bytes,
) -> Result<Answer, ApiError> {
    let mask = query.get("updateMask").unwrap_or("");
    if mask.is_empty() {
        return Err(ApiError::invalid("updateMask is required: send `updateMask=labels`"));
    }
    if let Some(other) = mask.split(',').map(str::trim).find(|f| *f != "labels") {
        return Err(ApiError::invalid(format!(
            "moat's secret store can only update `labels`, not `{other}`: send `updateMask=labels`"
        )));
    }
    let body: SecretBody = json_body(body)?;
    let id = r.secret.clone();
    let info = blocking(move || {
        // The secret's etag, when sent, must be current. (The store takes no etag for labels;
        // the window between this read and the write is one request's worth.)
        if let Some(want) = body.etag.as_deref().filter(|e| !e.is_empty()) {
            let current = s.get_secret(&caller, &id)?;
            if current.etag != want {
                return Err(SecretError::Aborted(format!(
                    "the etag `{want}` is not the secret's current etag: get the secret again and retry"
                )));
            }
        }
        s.update_labels(&caller, &id, body.labels)
    })
    .await?;
    Ok(Answer::meta(wire::secret(number, &r.parent, &info)))
}

async fn add_version(
    s: Secrets,
    caller: Caller,
    number: &str,
    r: SecretRef,
    body: &Bytes,
    enums: Enums,
) -> Result<Answer, ApiError> {
    let body: AddVersionBody = json_body(body)?;
    let payload =
        body.payload.ok_or_else(|| ApiError::invalid("payload is required: send {\"payload\": {\"data\": BASE64}}"))?;
    let data = Zeroizing::new(
        wire::decode_bytes(payload.data.as_deref().unwrap_or(""))
            .ok_or_else(|| ApiError::invalid("payload.data is not base64: encode the value with standard base64"))?,
    );
    let crc = payload
        .data_crc32c
        .map(|c| u32::try_from(c).map_err(|_| ApiError::invalid(format!("payload.dataCrc32c `{c}` is not a CRC32C"))))
        .transpose()?;
    let id = r.secret.clone();
    let info = blocking(move || s.add_version(&caller, &id, &data, crc)).await?;
    let mut v = wire::version(number, &r.parent, &info, enums);
    if let (Some(_), Some(m)) = (crc, v.as_object_mut()) {
        m.insert("clientSpecifiedPayloadChecksum".into(), true.into());
    }
    Ok(Answer::meta(v))
}

async fn access(s: Secrets, caller: Caller, number: &str, v: VersionRef) -> Result<Answer, ApiError> {
    let (id, sel) = (v.secret.secret.clone(), v.version);
    let payload = blocking(move || s.access(&caller, &id, sel)).await?;
    let name = wire::version_name(number, &v.secret.parent, &v.secret.secret, payload.version);
    let body = json!({
        "name": name,
        "payload": {"data": wire::encode_bytes(&payload.data), "dataCrc32c": payload.crc32c.to_string()},
    });
    Ok(Answer { body, payload: true })
}

/// `pageSize` (0 or absent: the store's default; the store caps it) and `pageToken`.
fn paging(q: &Query) -> Result<(usize, String), ApiError> {
    let size = match q.get("pageSize").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => return Err(ApiError::invalid(format!("pageSize `{s}` is not a page size: use a positive number"))),
        },
    };
    Ok((size, q.get("pageToken").unwrap_or("").to_owned()))
}

/// List filters are not evaluated; an ignored filter would answer with the wrong items.
fn no_filter(q: &Query) -> Result<(), ApiError> {
    match q.get("filter").filter(|f| !f.trim().is_empty()) {
        None => Ok(()),
        Some(f) => Err(ApiError::invalid(format!(
            "moat does not evaluate list filters (`{f}`): list everything and filter on the client"
        ))),
    }
}

fn refuse_unsupported(body: &SecretBody) -> Result<(), ApiError> {
    match body.unsupported() {
        None => Ok(()),
        Some(field) => Err(ApiError::invalid(format!(
            "moat's secret store does not support `{field}` on a secret: remove it from the request"
        ))),
    }
}

/// The body as JSON; an empty body is an empty message.
fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// Runs a store call on the blocking pool: redb commits fsync.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, SecretError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::internal("the secret store call did not finish: see moat's log")),
    }
}

/// `projects/{p}` names this store's project (by id or number).
pub(crate) fn own_project(secrets: &Secrets, parent: &Parent) -> Result<(), ApiError> {
    if secrets.is_own_project(&parent.project) {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "project `{}` is not served here: this moat serves the secrets of project `{}` (name it by its id or number)",
        parent.project,
        secrets.project_number()
    )))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        let q = |s: &str| paging(&Query::parse(Some(s)));
        assert_eq!(q("").unwrap(), (0, String::new()));
        assert_eq!(q("pageSize=0").unwrap().0, 0);
        assert_eq!(q("pageSize=2&pageToken=abc").unwrap(), (2, "abc".into()));
        assert_eq!(q("page_size=99999").unwrap().0, 99_999);
        assert_eq!(q("pageSize=-1").unwrap_err().code, 400);
        assert_eq!(q("pageSize=x").unwrap_err().code, 400);
    }

    #[test]
    fn bodies() {
        let empty: EtagBody = json_body(&Bytes::from_static(b"")).unwrap();
        assert_eq!(empty.etag, None);
        let e = json_body::<EtagBody>(&Bytes::from_static(b"{")).unwrap_err();
        assert_eq!((e.code, e.status), (400, "INVALID_ARGUMENT"));
        assert!(e.message.starts_with("Invalid JSON payload received. EOF while parsing"), "{}", e.message);
        let e = json_body::<EtagBody>(&Bytes::from_static(b"[1]")).unwrap_err();
        assert_eq!(e.code, 400);
    }
}
