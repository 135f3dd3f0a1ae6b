//! Other ID-token issuers (`trust:` in moat.yaml) through the front door: a self-hosted IdP
//! whose keys sit in a Keycloak-shaped JWKS file (an `RSA-OAEP` encryption key next to the
//! signing key), its tokens mapped to `user:` only for its configured email domains and to its
//! issuer-scoped `principal://` otherwise (J27, J28), and IAM bindings naming both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use harness::{Harness, NOW, get, inline_project, send};
use moat_crypto::KeyRing;
use moat_policy::Origin;
use serde_json::{Value, json};

const IDP: &str = "https://idp.example/realms/acme";

fn service(name: &str) -> String {
    format!(
        r#"{{"name":"projects/fid-proj/locations/us-central1/services/{name}","uri":"https://{name}-q7x2lmtc3a-uc.a.run.app","urls":["https://{name}-100000000001.us-central1.run.app"],"ingress":"INGRESS_TRAFFIC_ALL","template":{{"serviceAccount":"{name}@fid-proj.iam.gserviceaccount.com","containers":[{{"image":"x"}}]}}}}"#
    )
}

fn host(name: &str) -> String {
    format!("{name}-100000000001.us-central1.run.app")
}

fn url(name: &str) -> String {
    format!("https://{}", host(name))
}

/// The IdP's JWKS as Keycloak serves it: an encryption key first, then the signing key.
fn keycloak_jwks(idp: &KeyRing, other: &KeyRing) -> String {
    let mut sig: Value = serde_json::from_str(&idp.jwks_json()).unwrap();
    let mut enc: Value = serde_json::from_str(&other.jwks_json()).unwrap();
    let mut enc_key = enc["keys"][0].take();
    enc_key["kid"] = json!("enc-Yq8o0c1oZ7rWm1T0wzVx8aVbC3kqQ5wH2bB7");
    enc_key["alg"] = json!("RSA-OAEP");
    enc_key["use"] = json!("enc");
    enc_key["x5c"] = json!(["MIICnTCCAYUCBgGM"]);
    let mut sig_key = sig["keys"][0].take();
    sig_key["x5t#S256"] = json!("3Fb2p2j2aJ0LzYkq1mH3p9L2N5n8Xv3qvY6JcKxkz3A");
    json!({"keys": [enc_key, sig_key]}).to_string()
}

struct Setup {
    h: Harness,
    idp: KeyRing,
    _jwks: TempFile,
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `alice` may be invoked by the IdP subject `alice-123` (by its `principal://`), `dev` by the
/// IdP's `user:dev@example.com` (example.com is its email domain).
async fn start() -> Setup {
    let idp = KeyRing::in_memory(NOW).unwrap();
    // One file per test: the tests of this binary run at once, each with its own IdP keys.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("moat-trusted-jwks-{}-{n}.json", std::process::id()));
    std::fs::write(&path, keycloak_jwks(&idp, &KeyRing::in_memory(NOW).unwrap())).unwrap();
    let moat = format!(
        "project:\n  id: fid-proj\n  number: \"100000000001\"\n  region: us-central1\ntrust:\n  issuers:\n    - issuer: {IDP}\n      jwks_file: {}\n      email_domains: [example.com]\n",
        path.display()
    );
    let project = project_with(&moat);
    let h = Harness::start(project, &[Origin::Internet]).await;
    Setup { h, idp, _jwks: TempFile(path) }
}

/// The test project with this moat.yaml.
fn project_with(moat: &str) -> moat_policy::Project {
    let alice_iam = r#"{"bindings":[{"role":"roles/run.invoker","members":["principal://idp.example/realms/acme/subject/alice-123"]}]}"#;
    let dev_iam = r#"{"bindings":[{"role":"roles/run.invoker","members":["user:dev@example.com"]}]}"#;
    inline_project(&[
        ("moat.yaml", moat),
        ("services/alice.json", &service("alice")),
        ("services/dev.json", &service("dev")),
        ("iam/alice.json", alice_iam),
        ("iam/dev.json", dev_iam),
    ])
}

fn idp_token(idp: &KeyRing, iss: &str, aud: &str, sub: &str, email: Option<(&str, bool)>) -> String {
    let header = json!({"alg": "RS256", "kid": idp.current_kid(), "typ": "JWT"});
    let mut claims = json!({"iss": iss, "aud": aud, "sub": sub, "iat": NOW, "exp": NOW + 300});
    if let Some((e, verified)) = email {
        claims["email"] = json!(e);
        claims["email_verified"] = json!(verified);
    }
    idp.danger_sign_arbitrary(header.to_string().as_bytes(), claims.to_string().as_bytes()).unwrap()
}

async fn call(h: &Harness, name: &str, token: &str) -> (u16, Vec<&'static str>) {
    let r = send(h.internet(), &get(&host(name), "/", &[("Authorization", &format!("Bearer {token}"))])).await.unwrap();
    (r.status, h.last_record().codes())
}

#[tokio::test]
async fn a_configured_issuer_reaches_a_service_by_its_scoped_principal_or_its_email_domain() {
    // The JWKS file lives as long as `_jwks`.
    let Setup { h, idp, _jwks } = start().await;

    // The subject, by its issuer-scoped principal; its email is of another domain, so it does
    // not name `user:` (J27).
    let alice = idp_token(&idp, IDP, &url("alice"), "alice-123", Some(("alice@elsewhere.example", true)));
    let (status, codes) = call(&h, "alice", &alice).await;
    assert_eq!(status, 200, "{codes:?}");
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A verified email of the issuer's domain is that user.
    let dev = idp_token(&idp, IDP, &url("dev"), "dev-1", Some(("Dev@Example.com", true)));
    let (status, codes) = call(&h, "dev", &dev).await;
    assert_eq!(status, 200, "{codes:?}");

    // Unverified, or claiming a service account: the scoped principal, which `dev` does not
    // grant; never `serviceAccount:` from another issuer.
    for email in [("dev@example.com", false), ("dev@fid-proj.iam.gserviceaccount.com", true)] {
        let t = idp_token(&idp, IDP, &url("dev"), "dev-1", Some(email));
        let (status, codes) = call(&h, "dev", &t).await;
        assert_eq!((status, codes.last().copied()), (403, Some("iam.no_binding")), "{email:?}: {codes:?}");
    }

    // Another subject of the same issuer is not alice (J28: namespaced by issuer and subject).
    let mallory = idp_token(&idp, IDP, &url("alice"), "alice-1234", None);
    assert_eq!(call(&h, "alice", &mallory).await.0, 403);

    // The same subject from an issuer that is not configured: refused, no fetch (J31).
    let stranger = idp_token(&idp, "https://other.example", &url("alice"), "alice-123", None);
    assert_eq!(call(&h, "alice", &stranger).await, (401, vec!["ingress.all", "token.issuer_mismatch"]));

    // moat's own tokens still verify next to the configured issuer.
    let own = h.token("user:dev@example.com", &url("dev"));
    assert_eq!(call(&h, "dev", &own).await.0, 200);
}

/// A reload that takes the issuer out of `trust:` stops trusting it at the swap, and one that
/// puts it back trusts it again; a reload that leaves `trust:` alone keeps it.
#[tokio::test]
async fn a_reload_changes_whom_the_door_trusts() {
    let Setup { h, idp, _jwks } = start().await;
    let alice = idp_token(&idp, IDP, &url("alice"), "alice-123", None);
    assert_eq!(call(&h, "alice", &alice).await.0, 200);

    let with_trust = h.door.project();
    h.door.replace_project(std::sync::Arc::new(project_with(&format!(
        "# a comment moves every line\n{}",
        moat_yaml_of(&with_trust)
    ))));
    assert_eq!(call(&h, "alice", &alice).await.0, 200, "trust unchanged");

    h.door.replace_project(std::sync::Arc::new(project_with(
        "project:\n  id: fid-proj\n  number: \"100000000001\"\n  region: us-central1\n",
    )));
    let (status, codes) = call(&h, "alice", &alice).await;
    // Only moat's own keys now: the IdP's key is unknown to them.
    assert_eq!((status, codes.last().copied()), (401, Some("token.unknown_key")), "{codes:?}");

    h.door.replace_project(with_trust);
    assert_eq!(call(&h, "alice", &alice).await.0, 200, "trusted again");
}

/// The moat.yaml `start` wrote, rebuilt from the project's trusted issuer.
fn moat_yaml_of(project: &moat_policy::Project) -> String {
    let issuer = &project.trusted_issuers[0];
    let moat_policy::model::trust::JwksLocation::File(path) = &issuer.keys else { panic!("a jwks_file issuer") };
    format!(
        "project:\n  id: fid-proj\n  number: \"100000000001\"\n  region: us-central1\ntrust:\n  issuers:\n    - issuer: {}\n      jwks_file: {}\n      email_domains: [example.com]\n",
        issuer.issuer,
        path.display()
    )
}
