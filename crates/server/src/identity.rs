//! The identity listener and the state it shares with every metadata server: the project's
//! signing keys, the access tokens issued so far and the clock.
//!
//! Serving never waits for a rotation. The published documents (JWKS, x509 map) are rendered
//! once per rotation into an `ArcSwap`, so the listener never touches the key ring. A key ring
//! kept in a store directory is rotated off to the side (loaded afresh from the directory,
//! rotated there, then swapped in under a write lock held for one assignment), which also picks
//! up a `moat keys rotate` run by another process. An in-memory ring (tests) rotates in place.
//!
//! Roll-out order: a scheduled rotation (and `moat keys rotate`) pre-publishes the new key
//! (`moat_crypto::PREPUBLISH_SECS`, at most half the period) before it signs, so every verifier
//! of the project (the front door copies the keys every 5 s; another process's rotation is
//! adopted at the next check, at most 60 s later) has the key before any token needs it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use moat_crypto::access::{AccessError, TokenScope};
use moat_crypto::{AccessTokens, Account, ComputeEngineInfo, IssueError, KeyError, KeyRing, KeySet, TokenFormat};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ServeError;

/// Seconds since the Unix epoch. Injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Google rotates roughly daily; so does moat unless told otherwise.
pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The longest a verifier is told to cache the published keys (Google sends about six hours).
const MAX_CACHE_SECS: u64 = 6 * 3600;

pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The documents a verifier fetches, rendered from one key ring.
#[derive(Debug)]
struct Published {
    jwks: String,
    x509: String,
}

impl Published {
    fn of(keys: &KeyRing) -> Self {
        Self { jwks: keys.jwks_json(), x509: keys.x509_pem_map_json() }
    }
}

/// Keys, issued access tokens and the clock of one project, shared by its identity listener
/// and all its metadata servers.
pub struct IdentityState {
    /// Signers take the read lock for one signature; a rotation takes the write lock only to
    /// swap rings (store) or for the key generation (in memory).
    keys: RwLock<KeyRing>,
    /// Where the ring is kept; `None` for an in-memory ring.
    store: Option<PathBuf>,
    published: ArcSwap<Published>,
    /// Serialises rotations; readers never take it.
    rotating: Mutex<()>,
    /// When the ring last changed and how often it rotates, for Cache-Control.
    rotated_at: AtomicU64,
    rotate_every: AtomicU64,
    tokens: AccessTokens,
    clock: Clock,
}

impl std::fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityState")
            .field("current_kid", &self.current_kid())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl IdentityState {
    /// State around a ring the caller built (`KeyRing::in_memory` in tests).
    pub fn new(keys: KeyRing) -> Self {
        Self::build(keys, None, system_clock())
    }

    /// State around the ring kept in `dir` (created with a first key when empty).
    pub fn from_store(dir: &Path) -> Result<Self, KeyError> {
        Self::from_store_with_clock(dir, system_clock())
    }

    pub fn from_store_with_clock(dir: &Path, clock: Clock) -> Result<Self, KeyError> {
        let keys = KeyRing::load_or_create(dir, clock())?;
        Ok(Self::build(keys, Some(dir.to_path_buf()), clock))
    }

    pub fn with_clock(keys: KeyRing, clock: Clock) -> Self {
        Self::build(keys, None, clock)
    }

    fn build(keys: KeyRing, store: Option<PathBuf>, clock: Clock) -> Self {
        let now = clock();
        Self {
            published: ArcSwap::from_pointee(Published::of(&keys)),
            keys: RwLock::new(keys),
            store,
            rotating: Mutex::new(()),
            rotated_at: now.into(),
            rotate_every: DEFAULT_ROTATE_EVERY.as_secs().into(),
            tokens: AccessTokens::new(),
            clock,
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// An ID token for `account`, signed with the current key.
    pub fn sign_id_token(
        &self,
        account: &Account,
        audience: &str,
        format: TokenFormat,
        gce: Option<&ComputeEngineInfo>,
    ) -> Result<String, IssueError> {
        moat_crypto::sign_id_token(&self.read(), account, audience, self.now(), format, gce)
    }

    /// An opaque access token for `account`, counted against `scope` (one per metadata
    /// server); returns it with its `expires_in`.
    pub fn issue_access_token(
        &self,
        scope: &TokenScope,
        account: &Account,
        scopes: &[String],
    ) -> Result<(String, u64), AccessError> {
        self.tokens.issue(scope, account, scopes, self.now())
    }

    /// A fresh partition of the access-token store, for one metadata server.
    pub fn access_token_scope(&self) -> TokenScope {
        self.tokens.new_scope()
    }

    /// The access tokens issued so far, for the services that accept them.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    pub fn current_kid(&self) -> String {
        self.read().current_kid().to_owned()
    }

    /// The published keys, for an in-process verifier.
    pub fn key_set(&self) -> KeySet {
        self.read().key_set()
    }

    pub fn jwks_json(&self) -> String {
        self.published.load().jwks.clone()
    }

    /// Rotates when the current key is older than `every`, and (for a store) adopts a rotation
    /// another process made. Generates a key, so it blocks: call it from a blocking thread.
    pub fn rotate_if_due(&self, every: Duration) -> Result<bool, KeyError> {
        self.rotate_every.store(every.as_secs(), Relaxed);
        self.change(|ring, now| ring.rotate_if_due(now, every.as_secs()))
    }

    /// Rotates now, without pre-publication: verifiers that have not fetched the new key refuse
    /// its tokens until they do. For tests; schedules use [`Self::rotate_if_due`]. Blocks like
    /// [`Self::rotate_if_due`].
    pub fn rotate(&self) -> Result<(), KeyError> {
        self.change(|ring, now| ring.rotate(now).map(|()| true)).map(|_| ())
    }

    /// Applies `f` to the ring; returns whether the published keys changed.
    fn change(&self, f: impl FnOnce(&mut KeyRing, u64) -> Result<bool, KeyError>) -> Result<bool, KeyError> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.now();
        let (before, signing) = {
            let ring = self.read();
            (ring.kids().map(str::to_owned).collect::<Vec<_>>(), ring.current_kid().to_owned())
        };
        let ring = match &self.store {
            Some(dir) => {
                let mut fresh = KeyRing::load_or_create(dir, now)?;
                f(&mut fresh, now)?;
                // A pre-published key becoming the signing key changes no kid, only the signer.
                if fresh.kids().eq(before.iter().map(String::as_str)) && fresh.current_kid() == signing {
                    return Ok(false);
                }
                let published = Published::of(&fresh);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                published
            }
            None => {
                let mut ring = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                if !f(&mut ring, now)? {
                    return Ok(false);
                }
                Published::of(&ring)
            }
        };
        self.published.store(Arc::new(ring));
        self.rotated_at.store(now, Relaxed);
        let next = self.read().next_key().map(|(kid, at)| format!("{kid} from {at}"));
        tracing::info!(kid = %self.current_kid(), next = next.as_deref().unwrap_or("none"), "signing keys changed");
        Ok(true)
    }

    /// How long a verifier may cache the keys: until the next key could be pre-published (the
    /// last change plus the period, less the pre-publication delay, so a verifier that honours
    /// `max-age` refetches while the next key is still only published), at most six hours.
    /// After a rotation the old key stays published, so tokens it signed still verify.
    fn cache_secs(&self) -> u64 {
        let every = self.rotate_every.load(Relaxed);
        let due =
            self.rotated_at.load(Relaxed).saturating_add(every).saturating_sub(moat_crypto::prepublish_delay(every));
        due.saturating_sub(self.now()).min(MAX_CACHE_SECS)
    }
}

/// Runs [`IdentityState::rotate_if_due`] on a schedule, on a blocking thread, for as long as
/// the returned task is not aborted. A failed rotation is logged and retried at the next tick;
/// the old keys keep serving meanwhile.
pub fn spawn_rotation(state: Arc<IdentityState>, every: Duration) -> JoinHandle<()> {
    let every = every.max(Duration::from_secs(1));
    // Check often enough that a rotation is at most a minute (or a tenth of the period) late.
    let tick = (every / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let s = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || s.rotate_if_due(every)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "key rotation failed; the current keys stay in use"),
                Err(e) => tracing::error!(error = %e, "key rotation task failed"),
            }
        }
    })
}

/// Serves the identity endpoints on `listener` until the task is dropped.
pub async fn serve_identity(listener: TcpListener, state: Arc<IdentityState>) -> Result<(), ServeError> {
    serve_identity_until(listener, state, std::future::pending()).await
}

/// Serves `GET /oauth2/v3/certs` (JWKS), `GET /oauth2/v1/certs` (x509 PEM map) and
/// `GET /.well-known/openid-configuration` until `shutdown` completes.
pub async fn serve_identity_until(
    listener: TcpListener,
    state: Arc<IdentityState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = listener.local_addr()?;
    axum::serve(listener, identity_router(state, local)).with_graceful_shutdown(shutdown).await.map_err(ServeError::Io)
}

#[derive(Debug)]
struct Listener {
    state: Arc<IdentityState>,
    discovery: String,
}

/// The router of the identity listener bound at `local`.
pub fn identity_router(state: Arc<IdentityState>, local: SocketAddr) -> Router {
    let base = base_url(local);
    let discovery = serde_json::json!({
        // moat's tokens look like Google's, issuer included; the keys are moat's own.
        "issuer": "https://accounts.google.com",
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"],
    })
    .to_string();
    Router::new()
        .route("/oauth2/v3/certs", get(jwks))
        .route("/oauth2/v1/certs", get(x509))
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .with_state(Arc::new(Listener { state, discovery }))
}

/// `http://IP:PORT` as a client on this machine reaches the listener.
pub fn base_url(local: SocketAddr) -> String {
    let ip = if local.ip().is_unspecified() {
        if local.is_ipv4() { std::net::IpAddr::from([127, 0, 0, 1]) } else { std::net::Ipv6Addr::LOCALHOST.into() }
    } else {
        local.ip()
    };
    format!("http://{}", SocketAddr::new(ip, local.port()))
}

async fn jwks(State(l): State<Arc<Listener>>) -> Response {
    let body = l.state.published.load().jwks.clone();
    json(body, l.state.cache_secs())
}

async fn x509(State(l): State<Arc<Listener>>) -> Response {
    let body = l.state.published.load().x509.clone();
    json(body, l.state.cache_secs())
}

async fn openid_configuration(State(l): State<Arc<Listener>>) -> Response {
    json(l.discovery.clone(), 3600)
}

/// JSON with Google's caching headers.
fn json(body: String, max_age: u64) -> Response {
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}, must-revalidate, no-transform"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8")),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}
