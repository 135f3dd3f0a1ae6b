//! The environment an instance starts with: the Cloud Run container contract (spec/cloudrun.md
//! §3.4: `PORT`, `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`), its own metadata server, its
//! egress proxy, moat's Secret Manager API and its secret mounts, and the env
//! values of its service spec (secret ones read at start by `inject`).

use std::net::SocketAddr;
use std::path::Path;

use moat_policy::model::{EnvValue, Project, Service};

/// Hosts a workload reaches directly, not through its proxy: its metadata server (by any of
/// its names) and itself.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1,metadata.google.internal,169.254.169.254";

/// Variables moat's own environment may carry that would point a workload at credentials or
/// proxies other than the ones moat gives it.
const SCRUBBED: [&str; 7] = [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_MTLS_MODE",
    "NO_GCE_CHECK",
    "GOOGLE_API_CERTIFICATE_CONFIG",
    "ALL_PROXY",
    "all_proxy",
    "CLOUDSDK_CONFIG",
];

/// What one service's instances are told.
#[derive(Debug, Clone)]
pub struct Contract {
    pub service: String,
    /// `NAME-00001-moat`: the shape of a Cloud Run revision name, with a suffix that says
    /// where it runs.
    pub revision: String,
    pub metadata: SocketAddr,
    /// The service's egress proxy listener (`egress:NAME`): `HTTP_PROXY` and `HTTPS_PROXY`.
    pub proxy: Option<SocketAddr>,
    /// `(MOAT_URL_<SERVICE>, URL)` for every service of the project.
    pub urls: Vec<(String, String)>,
    /// The literal env values of the service spec. Secret env values are not here: they are
    /// read from the store each time an instance starts (`inject`).
    pub plain: Vec<(String, String)>,
    /// `MOAT_SECRETMANAGER_ENDPOINT`: moat's Secret Manager API (`http://ADDR`).
    pub secrets_endpoint: Option<String>,
}

impl Contract {
    pub fn new(project: &Project, service: &Service, metadata: SocketAddr, proxy: Option<SocketAddr>) -> Self {
        Self {
            service: service.name.clone(),
            revision: format!("{}-00001-moat", service.name),
            metadata,
            proxy,
            urls: project.services.values().map(|s| (url_var(&s.name), service_url(s))).collect(),
            plain: service
                .env
                .iter()
                .filter_map(|e| match &e.value {
                    EnvValue::Plain(v) => Some((e.name.clone(), v.clone())),
                    EnvValue::Secret(_) => None,
                })
                .collect(),
            secrets_endpoint: None,
        }
    }

    /// Every variable the instance gets on `port` with its secret mounts at `mount_root`, in
    /// the order they are set: the service's own values first, so that the contract's reserved
    /// names always win (Cloud Run refuses to deploy a service that sets them).
    pub fn vars(&self, port: u16, mount_root: &Path) -> Vec<(String, String)> {
        let mut out = self.plain.clone();
        out.extend(self.contract_vars(port, mount_root));
        out
    }

    /// The variables moat sets, without the service spec's.
    fn contract_vars(&self, port: u16, mount_root: &Path) -> Vec<(String, String)> {
        let mut out = self.urls.clone();
        let mds = self.metadata.to_string();
        let set = |out: &mut Vec<(String, String)>, k: &str, v: String| out.push((k.to_owned(), v));
        set(&mut out, "PORT", port.to_string());
        set(&mut out, "K_SERVICE", self.service.clone());
        set(&mut out, "K_REVISION", self.revision.clone());
        set(&mut out, "K_CONFIGURATION", self.service.clone());
        // google-auth reads HOST (data) and IP (ping); gcloud reads ROOT.
        set(&mut out, "GCE_METADATA_HOST", mds.clone());
        set(&mut out, "GCE_METADATA_IP", mds.clone());
        set(&mut out, "GCE_METADATA_ROOT", mds);
        if let Some(proxy) = self.proxy {
            let url = format!("http://{proxy}");
            // HTTPS goes through the same proxy, as CONNECT tunnels.
            for k in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY"] {
                set(&mut out, k, url.clone());
            }
            set(&mut out, "https_proxy", url);
        }
        set(&mut out, "NO_PROXY", NO_PROXY.to_owned());
        set(&mut out, "no_proxy", NO_PROXY.to_owned());
        // `api_endpoint` for a Secret Manager client (http: the API is on loopback).
        if let Some(endpoint) = &self.secrets_endpoint {
            set(&mut out, "MOAT_SECRETMANAGER_ENDPOINT", endpoint.clone());
        }
        // Where the secret volumes are: `$MOAT_MOUNT_ROOT/secrets/key` is `/secrets/key` on
        // Cloud Run, where the variable is unset.
        set(&mut out, "MOAT_MOUNT_ROOT", mount_root.display().to_string());
        out
    }
}

/// Sets the instance's environment on `cmd` over moat's own, minus what would mislead a
/// client: the service spec's plain values, then its secret values, then the contract's.
/// Secret values go straight from the payload into the child's environment.
pub(super) fn apply(
    cmd: &mut tokio::process::Command,
    contract: &Contract,
    port: u16,
    mount_root: &Path,
    secrets: &[(String, moat_secrets::Payload)],
) {
    for k in SCRUBBED {
        cmd.env_remove(k);
    }
    for (k, v) in &contract.plain {
        cmd.env(k, v);
    }
    for (k, p) in secrets {
        #[cfg(unix)]
        cmd.env(k, <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&p.data));
        #[cfg(not(unix))]
        cmd.env(k, String::from_utf8_lossy(&p.data).into_owned());
    }
    for (k, v) in contract.contract_vars(port, mount_root) {
        cmd.env(k, v);
    }
}

/// `MOAT_URL_<SERVICE>`: upper case, `-` → `_`.
pub fn url_var(service: &str) -> String {
    let name: String = service.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }).collect();
    format!("MOAT_URL_{name}")
}

/// The service's main URL: its deterministic run.app URL, which is also the audience its
/// callers put in their ID tokens. Locally the transport is `http://` to the same host.
pub fn service_url(service: &Service) -> String {
    service.urls.first().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variables_are_upper_case_with_underscores() {
        assert_eq!(url_var("api"), "MOAT_URL_API");
        assert_eq!(url_var("order-worker"), "MOAT_URL_ORDER_WORKER");
    }

    #[test]
    fn the_contract_wins_over_the_service_spec() {
        let c = Contract {
            service: "api".into(),
            revision: "api-00001-moat".into(),
            metadata: SocketAddr::from(([127, 0, 0, 1], 4000)),
            proxy: Some(SocketAddr::from(([127, 0, 0, 1], 5000))),
            urls: vec![("MOAT_URL_API".into(), "https://api-1.r.run.app".into())],
            plain: vec![("PORT".into(), "1".into()), ("LOG_LEVEL".into(), "info".into())],
            secrets_endpoint: Some("http://127.0.0.1:6000".into()),
        };
        let vars = c.vars(8123, Path::new("/state/instances/api/0a1b"));
        let last = |k: &str| vars.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(last("PORT"), Some("8123"));
        assert_eq!(last("LOG_LEVEL"), Some("info"));
        assert_eq!(last("K_SERVICE"), Some("api"));
        assert_eq!(last("K_REVISION"), Some("api-00001-moat"));
        assert_eq!(last("K_CONFIGURATION"), Some("api"));
        for k in ["GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT"] {
            assert_eq!(last(k), Some("127.0.0.1:4000"), "{k}");
        }
        assert_eq!(last("HTTP_PROXY"), Some("http://127.0.0.1:5000"));
        for k in ["http_proxy", "HTTPS_PROXY", "https_proxy"] {
            assert_eq!(last(k), Some("http://127.0.0.1:5000"), "{k}");
        }
        assert_eq!(last("NO_PROXY"), Some(NO_PROXY));
        assert_eq!(last("MOAT_URL_API"), Some("https://api-1.r.run.app"));
        assert_eq!(last("MOAT_SECRETMANAGER_ENDPOINT"), Some("http://127.0.0.1:6000"));
        assert_eq!(last("MOAT_MOUNT_ROOT"), Some("/state/instances/api/0a1b"));
    }
}
