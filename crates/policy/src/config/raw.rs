//! Raw serde structs mirroring the input files, with spans. `lower` turns them into the model.
//!
//! `moat.yaml` is ours, so unknown keys there are errors. Service and IAM exports come from
//! gcloud and carry lots of server-side status, so unknown fields there are ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

/// A scalar read as text whatever its YAML type: annotation values are strings in exports but
/// people write `invoker-iam-disabled: true` unquoted by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str(pub String);

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------- IAM policy (shared shape)

/// `gcloud ... get-iam-policy --format json`, also used inline in moat.yaml.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "etag, version and auditConfigs are accepted so that real exports load, but do not affect access"
)]
pub struct RawPolicy {
    #[serde(default)]
    pub bindings: Vec<Spanned<RawBinding>>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub version: Option<Str>,
    /// Present in some exports; does not affect access.
    #[serde(default)]
    pub audit_configs: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinding {
    pub role: Spanned<String>,
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    #[serde(default)]
    pub condition: Option<RawCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub expression: String,
}

// ---------------------------------------------------------------- moat.yaml

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMoat {
    pub project: Spanned<RawProject>,
    #[serde(default)]
    pub networks: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    pub shared_vpc: Vec<Spanned<RawSharedVpc>>,
    #[serde(default)]
    pub connectors: Vec<Spanned<RawConnector>>,
    #[serde(default)]
    pub vpc_sc_perimeter: Option<Spanned<String>>,
    #[serde(default)]
    pub vpc_sc_perimeter_projects: Vec<Spanned<Str>>,
    #[serde(default)]
    pub load_balancers: Vec<Spanned<RawLoadBalancer>>,
    #[serde(default)]
    pub domain_mappings: Vec<Spanned<RawDomainMapping>>,
    #[serde(default)]
    pub groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub iam: Option<RawPolicy>,
    #[serde(default)]
    pub service_accounts: Vec<Spanned<RawServiceAccount>>,
    #[serde(default)]
    pub secrets: Vec<Spanned<RawSecret>>,
    #[serde(default)]
    pub run: BTreeMap<String, Spanned<RawRun>>,
    /// Where `moat up` and `moat serve` listen.
    #[serde(default)]
    pub listeners: Option<Spanned<RawListeners>>,
    /// `moat check` findings accepted as known risks.
    #[serde(default)]
    pub accept: Vec<Spanned<RawAccept>>,
    /// Where `moat up` and `moat serve` keep rate-limit counters and bans.
    #[serde(default)]
    pub rate_limit_state: Option<Spanned<super::rate_state::RawRateLimitState>>,
    /// Other ID-token issuers the front door trusts (self-hosted IdPs).
    #[serde(default)]
    pub trust: Option<Spanned<super::trust::RawTrust>>,
    /// Which ranges count as private, and the outside hosts of the simulated network.
    #[serde(default)]
    pub egress: Option<Spanned<RawEgress>>,
    /// The IP-to-region/ASN table behind `origin.region_code`, `origin.asn` and `REGION_CODE`.
    #[serde(default)]
    pub geo: Vec<Spanned<RawGeoRow>>,
}

/// `geo[]`: `{range: CIDR, region_code: "CH", asn: 15169}`, either field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoRow {
    pub range: Spanned<String>,
    #[serde(default)]
    pub region_code: Option<Spanned<String>>,
    #[serde(default)]
    pub asn: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub id: Spanned<String>,
    pub number: Spanned<Str>,
    pub region: Spanned<String>,
    #[serde(default)]
    pub automatic_default_sa_grants: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub name: Spanned<String>,
    #[serde(default)]
    pub subnets: Vec<Spanned<RawSubnet>>,
    /// Cloud NAT on the network.
    #[serde(default)]
    pub nat: bool,
    #[serde(default)]
    pub firewall: Vec<Spanned<RawFirewallRule>>,
}

/// `networks[].firewall[]`: a VPC firewall rule, egress only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewallRule {
    pub name: Spanned<String>,
    /// Required although GCP defaults to ingress: moat models egress rules only, and a rule
    /// without a direction would silently mean the opposite of what GCP does with it.
    #[serde(default)]
    pub direction: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    pub action: Spanned<String>,
    /// Absent means `0.0.0.0/0`, GCP's default for an egress rule.
    #[serde(default)]
    pub destination_ranges: Vec<Spanned<String>>,
    #[serde(default)]
    pub target_tags: Vec<Spanned<String>>,
    /// `"443"` or `"8000-9000"`; a bare number is accepted too.
    #[serde(default)]
    pub ports: Vec<Spanned<Str>>,
}

/// `egress: {rfc6598_is_private: BOOL, hosts: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    #[serde(default)]
    pub rfc6598_is_private: bool,
    #[serde(default)]
    pub hosts: Vec<Spanned<RawHost>>,
}

/// `egress.hosts[]`: an outside host as the simulated network sees it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub local: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    pub name: String,
    pub region: String,
    pub range: Spanned<String>,
    #[serde(default)]
    pub private_google_access: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedVpc {
    pub host_project: String,
    pub network: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: String,
    /// A network of this project, or `HOST_PROJECT/NETWORK` for a Shared VPC.
    pub network: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    pub name: Spanned<String>,
    pub scheme: Spanned<String>,
    #[serde(default)]
    pub network: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub security_policy: Option<Spanned<String>>,
    #[serde(default)]
    pub iap: bool,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default = "default_path")]
    pub path: String,
    pub service: Spanned<String>,
}

fn default_path() -> String {
    "/*".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomainMapping {
    pub domain: Spanned<String>,
    pub service: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub email: Spanned<String>,
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceAccount {
    pub email: Spanned<String>,
    /// The account's own IAM policy: who may act as it or mint its tokens.
    #[serde(default)]
    pub iam: Option<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub name: Spanned<String>,
    #[serde(default)]
    pub iam: Option<RawPolicy>,
    /// Version 1 for `moat up` when the secret has none: `random` or `{file: PATH}`.
    #[serde(default)]
    pub seed: Option<Spanned<RawSeed>>,
}

/// `seed: random` or `seed: {file: PATH}`.
#[derive(Debug)]
pub enum RawSeed {
    Word(String),
    File(Spanned<String>),
}

impl<'de> Deserialize<'de> for RawSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSeed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`random` or `{file: PATH}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSeed, E> {
                Ok(RawSeed::Word(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawSeed, A::Error> {
                let mut file = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "file" {
                        return Err(de::Error::custom(format_args!(
                            "unknown field `{key}` in `seed`: write `seed: random` or `seed: {{file: PATH}}`"
                        )));
                    }
                    if file.is_some() {
                        return Err(de::Error::duplicate_field("file"));
                    }
                    file = Some(map.next_value::<Spanned<String>>()?);
                }
                file.map(RawSeed::File).ok_or_else(|| de::Error::missing_field("file"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub dir: Option<String>,
    /// An upstream moat proxies to instead of starting a workload.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
}

/// `listeners: {internet: ADDR, vpc: {NETWORK: ADDR}, google: {PRODUCT: ADDR}, admin: ADDR}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    #[serde(default)]
    pub internet: Option<Spanned<String>>,
    #[serde(default)]
    pub vpc: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub google: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub admin: Option<Spanned<String>>,
}

/// `accept: [{rule: MOAT001, service: web, reason: "..."}]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccept {
    pub rule: Spanned<String>,
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    pub reason: Spanned<String>,
}

// ---------------------------------------------------------------- v1: serving.knative.dev/v1

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KService {
    #[serde(default)]
    pub api_version: Option<Spanned<String>>,
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    pub metadata: KMeta,
    #[serde(default)]
    pub spec: Option<KSpec>,
    #[serde(default)]
    pub status: Option<KStatus>,
}

#[derive(Debug, Deserialize)]
pub struct KMeta {
    pub name: Spanned<String>,
    #[serde(default)]
    pub namespace: Option<Spanned<Str>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Spanned<Str>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Str>,
}

#[derive(Debug, Deserialize, Default)]
pub struct KSpec {
    #[serde(default)]
    pub template: Option<KTemplate>,
    #[serde(default)]
    pub traffic: Vec<KTraffic>,
}

#[derive(Debug, Deserialize, Default)]
pub struct KTemplate {
    #[serde(default)]
    pub metadata: Option<KTemplateMeta>,
    #[serde(default)]
    pub spec: Option<KRevisionSpec>,
}

#[derive(Debug, Deserialize, Default)]
pub struct KTemplateMeta {
    #[serde(default)]
    pub annotations: BTreeMap<String, Spanned<Str>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KRevisionSpec {
    #[serde(default)]
    pub service_account_name: Option<Spanned<String>>,
    #[serde(default)]
    pub containers: Vec<KContainer>,
    #[serde(default)]
    pub volumes: Vec<Spanned<KVolume>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KContainer {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub env: Vec<Spanned<KEnv>>,
    #[serde(default)]
    pub volume_mounts: Vec<KMount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KEnv {
    pub name: String,
    #[serde(default)]
    pub value: Option<Str>,
    #[serde(default)]
    pub value_from: Option<KValueFrom>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KValueFrom {
    #[serde(default)]
    pub secret_key_ref: Option<KSecretKeyRef>,
}

#[derive(Debug, Deserialize)]
pub struct KSecretKeyRef {
    pub name: String,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KMount {
    pub name: String,
    #[serde(default)]
    pub mount_path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct KVolume {
    pub name: String,
    #[serde(default)]
    pub secret: Option<KSecretVolume>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KSecretVolume {
    pub secret_name: String,
    #[serde(default)]
    pub items: Vec<KItem>,
    #[serde(default)]
    pub default_mode: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct KItem {
    pub key: Str,
    pub path: String,
    #[serde(default)]
    pub mode: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct KTraffic {
    #[serde(default)]
    pub tag: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
pub struct KStatus {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub address: Option<KAddress>,
}

#[derive(Debug, Deserialize)]
pub struct KAddress {
    #[serde(default)]
    pub url: Option<String>,
}

// ---------------------------------------------------------------- v2: google.cloud.run.v2.Service

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Service {
    pub name: Spanned<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub ingress: Option<Spanned<String>>,
    #[serde(default)]
    pub invoker_iam_disabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub custom_audiences: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub default_uri_disabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub iap_enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub template: Option<V2Template>,
    #[serde(default)]
    pub traffic: Vec<V2Traffic>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct V2Template {
    #[serde(default)]
    pub service_account: Option<Spanned<String>>,
    #[serde(default)]
    pub vpc_access: Option<Spanned<V2VpcAccess>>,
    #[serde(default)]
    pub containers: Vec<V2Container>,
    #[serde(default)]
    pub volumes: Vec<Spanned<V2Volume>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2VpcAccess {
    #[serde(default)]
    pub connector: Option<String>,
    #[serde(default)]
    pub egress: Option<Spanned<String>>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
}

/// Shared by v2 `networkInterfaces` and the v1 `network-interfaces` annotation's JSON.
#[derive(Debug, Deserialize)]
pub struct NetworkInterface {
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub subnetwork: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Container {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub env: Vec<Spanned<V2Env>>,
    #[serde(default)]
    pub volume_mounts: Vec<KMount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Env {
    pub name: String,
    #[serde(default)]
    pub value: Option<Str>,
    #[serde(default)]
    pub value_source: Option<V2ValueSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2ValueSource {
    #[serde(default)]
    pub secret_key_ref: Option<V2SecretKeyRef>,
}

#[derive(Debug, Deserialize)]
pub struct V2SecretKeyRef {
    pub secret: String,
    #[serde(default)]
    pub version: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct V2Volume {
    pub name: String,
    #[serde(default)]
    pub secret: Option<V2SecretVolume>,
    #[serde(default, rename = "cloudSqlInstance")]
    pub cloud_sql_instance: Option<V2CloudSqlInstance>,
}

/// `volumes[].cloudSqlInstance`: the Cloud SQL instances the revision connects to.
#[derive(Debug, Deserialize)]
pub struct V2CloudSqlInstance {
    #[serde(default)]
    pub instances: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2SecretVolume {
    pub secret: String,
    #[serde(default)]
    pub items: Vec<V2Item>,
    #[serde(default)]
    pub default_mode: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct V2Item {
    pub path: String,
    #[serde(default)]
    pub version: Option<Str>,
    #[serde(default)]
    pub mode: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct V2Traffic {
    #[serde(default)]
    pub tag: Option<Spanned<String>>,
}
