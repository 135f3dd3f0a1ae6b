//! What every service is doing now: the board the supervisors write and the admin API and the
//! status table read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Started, not listening yet.
    Starting,
    Ready,
    /// Exited or never became ready; waiting out its backoff.
    Restarting,
    /// Could not be started (a secret its env needs cannot be read); tried again after its
    /// backoff or as soon as the secret store changes.
    Failed,
    Stopped,
    /// Not started by moat: requests go to the configured URL.
    Upstream,
    /// No `run:` entry: requests for it get a 502.
    NotRunning,
}

impl State {
    /// As `/status` spells it (`not_running`), for metric labels.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::NotRunning => "not_running",
            other => other.as_str(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Upstream => "upstream",
            Self::NotRunning => "not running",
        }
    }
}

/// One service's instance (or upstream).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub state: State,
    /// The service's main URL (its ID token audience).
    pub url: String,
    /// Where the front door sends its requests.
    pub upstream: Option<String>,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub service_account: String,
    /// The instance's own metadata server.
    pub metadata: Option<String>,
    /// Its egress proxy (`egress:NAME`, `http://ADDR`): its instances' HTTP_PROXY and
    /// HTTPS_PROXY.
    pub egress_proxy: Option<String>,
    pub restarts: u32,
    /// Why the last start failed or the last instance ended, until an instance is ready again.
    /// Names env vars, secrets and versions, never a value.
    pub error: Option<String>,
    /// The first start has ended, ready or not: the start-up wait is over for this service.
    pub settled: bool,
}

/// Shared by the supervisors (writers) and the admin API, the progress line and the table.
#[derive(Debug, Clone)]
pub struct Board {
    services: Arc<Mutex<BTreeMap<String, ServiceStatus>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Board {
    fn default() -> Self {
        Self { services: Arc::default(), changed: Arc::new(watch::Sender::new(0)) }
    }
}

impl Board {
    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    pub fn get(&self, service: &str) -> Option<ServiceStatus> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner).get(service).cloned()
    }

    pub(super) fn insert(&self, status: ServiceStatus) {
        self.services.lock().unwrap_or_else(PoisonError::into_inner).insert(status.service.clone(), status);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(super) fn update(&self, service: &str, f: impl FnOnce(&mut ServiceStatus)) {
        if let Some(s) = self.services.lock().unwrap_or_else(PoisonError::into_inner).get_mut(service) {
            f(s);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The status table: one row per service, then why each failed service could not start.
pub fn table(services: &[ServiceStatus]) -> String {
    let rows: Vec<[String; 6]> = services
        .iter()
        .map(|s| {
            [
                s.service.clone(),
                s.state.as_str().to_owned(),
                s.url.clone(),
                s.upstream.clone().unwrap_or_else(|| "-".to_owned()),
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                s.service_account.clone(),
            ]
        })
        .collect();
    let header = ["SERVICE", "STATE", "URL (token audience)", "INSTANCE", "PID", "SERVICE ACCOUNT"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for s in services.iter().filter(|s| s.state == State::Failed) {
        if let Some(why) = &s.error {
            out.push_str(&format!("\n`{}` did not start: {why}\n", s.service));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns() {
        let row = |name: &str, state, pid: Option<u32>| ServiceStatus {
            service: name.into(),
            state,
            url: format!("https://{name}-1.r.run.app"),
            upstream: pid.map(|_| "http://127.0.0.1:4000".into()),
            pid,
            port: None,
            service_account: format!("{name}@p.iam.gserviceaccount.com"),
            metadata: None,
            egress_proxy: None,
            restarts: 0,
            error: None,
            settled: true,
        };
        let t = table(&[row("api", State::Ready, Some(42)), row("status-page", State::NotRunning, None)]);
        let want = "\
SERVICE      STATE        URL (token audience)             INSTANCE               PID  SERVICE ACCOUNT
api          ready        https://api-1.r.run.app          http://127.0.0.1:4000  42   api@p.iam.gserviceaccount.com
status-page  not running  https://status-page-1.r.run.app  -                      -    status-page@p.iam.gserviceaccount.com
";
        assert_eq!(t, want);
        let why = "env var `DB_PASSWORD` cannot be set from secret `db` version `latest`: it is DISABLED";
        let failed = ServiceStatus { error: Some(why.into()), ..row("orders", State::Failed, None) };
        let t = table(&[failed]);
        assert!(t.lines().nth(1).is_some_and(|l| l.starts_with("orders   failed  ")), "{t}");
        assert!(t.ends_with(&format!("\n\n`orders` did not start: {why}\n")), "{t}");
    }
}
