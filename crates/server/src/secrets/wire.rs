//! proto3 JSON, as Google's REST front end writes and reads it: lowerCamelCase names, int64 as
//! strings, bytes as standard base64 with padding, RFC 3339 timestamps, enums as names unless
//! the request asked for `$alt=json;enum-encoding=int`. Empty fields are left out, as Google
//! does; clients parse with `ignore_unknown_fields` and accept both enum forms.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use moat_policy::secret_access::{BindingDoc, PolicyDoc};
use moat_secrets::{SecretInfo, VersionInfo, VersionState};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::route::Parent;

/// How enums are written in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enums {
    Names,
    Ints,
}

/// The query string, decoded (`+` is a space, `%XX` a byte). Unknown parameters are kept and
/// never looked at: clients add their own (`$alt`, `$prettyPrint`, `fields`).
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (form_decode(k), form_decode(v))
            })
            .collect();
        Self(pairs)
    }

    /// The last value of `name` (snake_case spellings are accepted as well, like Google).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let snake = to_snake(name);
        self.0.iter().rev().find(|(k, _)| *k == name || *k == snake).map(|(_, v)| v.as_str())
    }

    /// `$alt=json;enum-encoding=int` (or `alt=...`) asks for enums as numbers.
    pub(crate) fn enums(&self) -> Enums {
        let alt = self.0.iter().rev().find(|(k, _)| k == "$alt" || k == "alt").map(|(_, v)| v.as_str());
        if alt.is_some_and(|a| a.split(';').any(|p| p.trim() == "enum-encoding=int")) {
            Enums::Ints
        } else {
            Enums::Names
        }
    }
}

fn to_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits (proto3's Timestamp JSON form).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let frac = if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!("{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}{frac}Z")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Resource names carry the project number, whatever the request used.
pub(crate) fn secret_name(number: &str, parent: &Parent, secret: &str) -> String {
    match &parent.location {
        Some(l) => format!("projects/{number}/locations/{l}/secrets/{secret}"),
        None => format!("projects/{number}/secrets/{secret}"),
    }
}

pub(crate) fn version_name(number: &str, parent: &Parent, secret: &str, version: u64) -> String {
    format!("{}/versions/{version}", secret_name(number, parent, secret))
}

pub(crate) fn secret(number: &str, parent: &Parent, info: &SecretInfo) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), secret_name(number, parent, &info.id).into());
    // Regional secrets have no replication policy; global ones are replicated automatically.
    if parent.location.is_none() {
        m.insert("replication".into(), json!({"automatic": {}}));
    }
    m.insert("createTime".into(), timestamp(info.create_time).into());
    if !info.labels.is_empty() {
        m.insert("labels".into(), json!(info.labels));
    }
    m.insert("etag".into(), info.etag.clone().into());
    Value::Object(m)
}

pub(crate) fn state(s: VersionState, enums: Enums) -> Value {
    match enums {
        Enums::Names => s.as_str().into(),
        Enums::Ints => s.as_int().into(),
    }
}

pub(crate) fn version(number: &str, parent: &Parent, info: &VersionInfo, enums: Enums) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), version_name(number, parent, &info.secret, info.version).into());
    m.insert("createTime".into(), timestamp(info.create_time).into());
    if let Some(t) = info.destroy_time {
        m.insert("destroyTime".into(), timestamp(t).into());
    }
    m.insert("state".into(), state(info.state, enums));
    if parent.location.is_none() {
        m.insert("replicationStatus".into(), json!({"automatic": {}}));
    }
    m.insert("etag".into(), info.etag.clone().into());
    Value::Object(m)
}

/// A list response: the items under `key`, then `nextPageToken` and `totalSize` when set.
pub(crate) fn page(key: &str, items: Vec<Value>, next_page_token: &str, total_size: usize) -> Value {
    let mut m = Map::new();
    if !items.is_empty() {
        m.insert(key.into(), Value::Array(items));
    }
    if !next_page_token.is_empty() {
        m.insert("nextPageToken".into(), next_page_token.into());
    }
    if total_size > 0 {
        m.insert("totalSize".into(), total_size.into());
    }
    Value::Object(m)
}

/// An IAM policy. Its `etag` is `bytes` in the proto: the store keeps it as standard base64
/// already, so it passes through both ways.
pub(crate) fn policy(doc: &PolicyDoc, etag: &str) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), (if doc.version == 0 { 1 } else { doc.version }).into());
    if !doc.bindings.is_empty() {
        m.insert("bindings".into(), json!(doc.bindings));
    }
    m.insert("etag".into(), etag.into());
    Value::Object(m)
}

/// proto3 JSON `bytes`: standard or URL-safe alphabet, padding optional.
pub(crate) fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    LENIENT.decode(s).or_else(|_| LENIENT_URL.decode(s)).ok()
}

/// A `bytes` value as the store writes it (standard alphabet, padded); text that is not base64
/// at all is kept as it is (and so matches nothing).
pub(crate) fn standard_base64(s: &str) -> String {
    decode_bytes(s).map_or_else(|| s.to_owned(), |b| encode_bytes(&b))
}

pub(crate) fn encode_bytes(b: &[u8]) -> String {
    general_purpose::STANDARD.encode(b)
}

// ---- request bodies --------------------------------------------------------------------------

/// A `Secret` in a create or update request. Fields moat cannot honour are refused by
/// [`SecretBody::unsupported`] rather than dropped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretBody {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub ttl: Option<Value>,
    #[serde(default)]
    pub expire_time: Option<Value>,
    #[serde(default)]
    pub rotation: Option<Value>,
    #[serde(default)]
    pub topics: Option<Value>,
    #[serde(default)]
    pub version_aliases: Option<Value>,
    #[serde(default)]
    pub annotations: Option<Value>,
    #[serde(default)]
    pub version_destroy_ttl: Option<Value>,
    #[serde(default)]
    pub customer_managed_encryption: Option<Value>,
    #[serde(default)]
    pub tags: Option<Value>,
}

impl SecretBody {
    /// The first field set that moat's store has no place for.
    pub(crate) fn unsupported(&self) -> Option<&'static str> {
        let fields: [(&'static str, &Option<Value>); 9] = [
            ("ttl", &self.ttl),
            ("expireTime", &self.expire_time),
            ("rotation", &self.rotation),
            ("topics", &self.topics),
            ("versionAliases", &self.version_aliases),
            ("annotations", &self.annotations),
            ("versionDestroyTtl", &self.version_destroy_ttl),
            ("customerManagedEncryption", &self.customer_managed_encryption),
            ("tags", &self.tags),
        ];
        fields.into_iter().find(|(_, v)| v.as_ref().is_some_and(|v| !is_empty(v))).map(|(k, _)| k)
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `AddSecretVersionRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddVersionBody {
    #[serde(default)]
    pub payload: Option<PayloadBody>,
}

/// `SecretPayload`. `Debug` never shows the data.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PayloadBody {
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    pub data_crc32c: Option<i64>,
}

impl std::fmt::Debug for PayloadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadBody").field("data_crc32c", &self.data_crc32c).finish_non_exhaustive()
    }
}

/// Enable / disable / destroy, and anything else that only carries an etag.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EtagBody {
    #[serde(default)]
    pub etag: Option<String>,
}

/// `SetIamPolicyRequest`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SetIamBody {
    #[serde(default)]
    pub policy: Option<PolicyBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PolicyBody {
    #[serde(default)]
    pub version: Option<i32>,
    #[serde(default)]
    pub bindings: Vec<BindingDoc>,
    #[serde(default)]
    pub etag: Option<String>,
    /// Data-access audit settings: moat audits every call anyway and cannot store them, so a
    /// non-empty list is refused rather than dropped (a client would believe them in force).
    #[serde(default, rename = "auditConfigs")]
    pub audit_configs: Option<serde_json::Value>,
}

impl PolicyBody {
    /// Whether the request carries audit settings (an empty list or `null` carries none).
    pub(crate) fn has_audit_configs(&self) -> bool {
        match &self.audit_configs {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        }
    }

    pub(crate) fn doc(&self) -> PolicyDoc {
        PolicyDoc { version: self.version.unwrap_or(0), bindings: self.bindings.clone() }
    }
}

/// `TestIamPermissionsRequest`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TestIamBody {
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// int64 as proto3 JSON writes it (a string) or as some clients send it (a number).
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Num(i64),
        Str(String),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(None),
        Some(Int::Num(n)) => Ok(Some(n)),
        Some(Int::Str(s)) => {
            s.trim().parse::<i64>().map(Some).map_err(|_| serde::de::Error::custom(format!("`{s}` is not an int64")))
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_proto3_precision() {
        let at = |secs: u64, nanos: u32| timestamp(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        // 2026-11-22T08:00:00Z
        let t = 1_795_334_400;
        assert_eq!(at(t, 0), "2026-11-22T08:00:00Z");
        assert_eq!(at(t, 123_456_789), "2026-11-22T08:00:00.123456789Z");
        assert_eq!(at(t, 123_456_000), "2026-11-22T08:00:00.123456Z");
        assert_eq!(at(t, 120_000_000), "2026-11-22T08:00:00.120Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_107_542_399, 1), "2100-02-28T23:59:59.000000001Z");
    }

    #[test]
    fn query_decoding_and_enum_encoding() {
        let q = Query::parse(Some("%24alt=json%3Benum-encoding%3Dint&pageSize=2&page_token=a+b%2F"));
        assert_eq!(q.enums(), Enums::Ints);
        assert_eq!(q.get("pageSize"), Some("2"));
        assert_eq!(q.get("pageToken"), Some("a b/"));
        assert_eq!(Query::parse(Some("alt=json")).enums(), Enums::Names);
        assert_eq!(Query::parse(Some("$alt=json;enum-encoding=int")).enums(), Enums::Ints);
        assert_eq!(Query::parse(None).enums(), Enums::Names);
        assert_eq!(Query::parse(Some("a&&b=")).get("b"), Some(""));
    }

    #[test]
    fn bytes_accept_both_alphabets_with_or_without_padding() {
        assert_eq!(decode_bytes("aHVudGVyMg==").unwrap(), b"hunter2");
        assert_eq!(decode_bytes("aHVudGVyMg").unwrap(), b"hunter2");
        assert_eq!(decode_bytes("-_8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_bytes("+/8=").unwrap(), [0xfb, 0xff]);
        assert!(decode_bytes("not base64!").is_none());
        assert_eq!(encode_bytes(b"hunter2"), "aHVudGVyMg==");
        // gcloud sends a policy etag back URL-safe: regression for a flaky 409 on
        // `gcloud secrets add-iam-policy-binding`.
        assert_eq!(standard_base64("Q_UZ5HAaXs4="), "Q/UZ5HAaXs4=");
        assert_eq!(standard_base64("Q_UZ5HAaXs4"), "Q/UZ5HAaXs4=");
        assert_eq!(standard_base64("Q/UZ5HAaXs4="), "Q/UZ5HAaXs4=");
        assert_eq!(standard_base64("\"stale\""), "\"stale\"");
    }

    #[test]
    fn int64_comes_as_a_string_or_a_number() {
        let p: AddVersionBody =
            serde_json::from_str(r#"{"payload":{"data":"eA==","dataCrc32c":"1736498283"}}"#).unwrap();
        assert_eq!(p.payload.unwrap().data_crc32c, Some(1_736_498_283));
        let p: AddVersionBody = serde_json::from_str(r#"{"payload":{"dataCrc32c":42}}"#).unwrap();
        assert_eq!(p.payload.unwrap().data_crc32c, Some(42));
        assert!(serde_json::from_str::<AddVersionBody>(r#"{"payload":{"dataCrc32c":"x"}}"#).is_err());
    }

    #[test]
    fn policies_always_say_their_version() {
        assert_eq!(policy(&PolicyDoc::default(), "AAE="), json!({"version": 1, "etag": "AAE="}));
    }

    #[test]
    fn unsupported_secret_fields_are_named() {
        let b: SecretBody = serde_json::from_str(r#"{"labels":{"a":"b"},"replication":{"automatic":{}}}"#).unwrap();
        assert_eq!(b.unsupported(), None);
        let b: SecretBody = serde_json::from_str(r#"{"ttl":"3600s"}"#).unwrap();
        assert_eq!(b.unsupported(), Some("ttl"));
        let b: SecretBody = serde_json::from_str(r#"{"topics":[],"annotations":{}}"#).unwrap();
        assert_eq!(b.unsupported(), None);
    }
}
