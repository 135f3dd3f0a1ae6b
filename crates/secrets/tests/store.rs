//! The secret store through its public API: Secret Manager semantics, IAM, persistence, crash
//! recovery, master keys and rotation, audit, and a model check of version lifecycles.

#![expect(clippy::expect_used, clippy::indexing_slicing, reason = "tests name the failing input")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;

use moat_policy::request::Principal;
use moat_policy::secret_access::{BindingDoc, PolicyDoc};
use moat_policy::{Project, SourceFile};
use moat_secrets::audit::AuditRecord;
use moat_secrets::master::{MASTER_KEY_FILE, next_key_path};
use moat_secrets::{Caller, MasterKey, SecretError, Secrets, Selector, VersionState};
use proptest::prelude::*;
use redb::ReadableTable;

const NUMBER: &str = "123456789012";
const KEY: [u8; 32] = [7; 32];

fn project() -> Arc<Project> {
    let text = format!(
        "project: {{id: demo, number: '{NUMBER}', region: europe-west1}}\n\
         iam:\n  bindings:\n  - role: roles/secretmanager.secretAccessor\n    members: ['serviceAccount:proj@demo.iam.gserviceaccount.com']\n"
    );
    Arc::new(moat_policy::load(&[SourceFile { path: "moat.yaml".into(), text }]).expect("project loads"))
}

fn open_with(dir: &Path, key: [u8; 32]) -> Secrets {
    Secrets::open(dir, MasterKey::from_bytes(key), project()).expect("store opens")
}

fn open(dir: &Path) -> Secrets {
    open_with(dir, KEY)
}

fn sa(name: &str) -> Caller {
    Caller::Principal(Principal::ServiceAccount(format!("{name}@demo.iam.gserviceaccount.com")))
}

const ADMIN: &Caller = &Caller::Admin;

fn accessor_policy(member: &str) -> PolicyDoc {
    PolicyDoc {
        version: 1,
        bindings: vec![BindingDoc {
            role: "roles/secretmanager.secretAccessor".into(),
            members: vec![member.into()],
            condition: None,
        }],
    }
}

fn secret(s: &Secrets, id: &str, values: &[&str]) {
    s.create_secret(ADMIN, id, BTreeMap::new()).expect("create");
    for v in values {
        s.add_version(ADMIN, id, v.as_bytes(), None).expect("add");
    }
}

fn value(s: &Secrets, caller: &Caller, id: &str, v: Selector) -> Result<(u64, String), SecretError> {
    s.access(caller, id, v).map(|p| (p.version, String::from_utf8(p.data.to_vec()).expect("utf-8")))
}

fn audit(s: &Secrets) -> Vec<AuditRecord> {
    std::fs::read_to_string(s.audit_path())
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON record"))
        .collect()
}

/// The ways a CRC32C could be written: decimal, hex, and the base64 of its bytes.
fn crc_forms(crc: u32) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        crc.to_string(),
        format!("{crc:08x}"),
        format!("{crc:08X}"),
        b64.encode(crc.to_be_bytes()),
        b64.encode(crc.to_le_bytes()),
    ]
}

/// The raw record of version `n` of `id`, read from the closed store's file.
fn raw_record(dir: &Path, id: &str, n: u64) -> Vec<u8> {
    use redb::ReadableDatabase;
    let db = redb::Builder::new().open_read_only(dir.join("secrets.redb")).expect("redb");
    let r = db.begin_read().expect("read");
    let t = r.open_table(moat_secrets::store::VERSIONS).expect("table");
    t.get((id, n)).expect("get").expect("present").value().to_vec()
}

/// Where `needle` occurs in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

#[test]
fn secrets_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Secrets>();
}

#[test]
fn versions_count_from_one_and_are_never_reused() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &[]);
    assert_eq!(s.get_secret(ADMIN, "db").expect("get").latest, 0);
    let v1 = s.add_version(ADMIN, "db", b"one", None).expect("v1");
    assert_eq!((v1.version, v1.state, v1.crc32c), (1, VersionState::Enabled, Some(crc32c::crc32c(b"one"))));
    s.add_version(ADMIN, "db", b"two", None).expect("v2");
    s.set_state(ADMIN, "db", Selector::Number(2), VersionState::Destroyed, None).expect("destroy v2");
    let v3 = s.add_version(ADMIN, "db", b"three", None).expect("v3");
    assert_eq!(v3.version, 3, "a destroyed number is not reused");
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("latest"), (3, "three".into()));
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(1)).expect("v1"), (1, "one".into()));
}

#[test]
fn latest_is_the_newest_version_whatever_its_state_with_no_fallback() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &["old", "new"]);
    s.set_state(ADMIN, "db", Selector::Latest, VersionState::Disabled, None).expect("disable newest");
    let e = s.access(ADMIN, "db", Selector::Latest).expect_err("newest disabled");
    assert_eq!(
        e,
        SecretError::FailedPrecondition(format!(
            "Secret Version [projects/{NUMBER}/secrets/db/versions/2] is in DISABLED state."
        ))
    );
    assert_eq!(e.http_status(), 400);
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(1)).expect("older still enabled"), (1, "old".into()));
    s.set_state(ADMIN, "db", Selector::Number(2), VersionState::Enabled, None).expect("re-enable");
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("enabled again"), (2, "new".into()));
    let info = s.get_version(ADMIN, "db", Selector::Latest).expect("get latest");
    assert_eq!((info.version, info.state), (2, VersionState::Enabled));
}

#[test]
fn destroy_wipes_the_payload_and_is_final() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &["gone"]);
    let info = s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Destroyed, None).expect("destroy");
    assert_eq!((info.state, info.crc32c), (VersionState::Destroyed, None));
    assert!(info.destroy_time.is_some());
    let destroyed = SecretError::FailedPrecondition(format!(
        "Secret Version [projects/{NUMBER}/secrets/db/versions/1] is in DESTROYED state."
    ));
    assert_eq!(s.access(ADMIN, "db", Selector::Latest).expect_err("destroyed"), destroyed);
    for state in [VersionState::Enabled, VersionState::Disabled, VersionState::Destroyed] {
        assert_eq!(s.set_state(ADMIN, "db", Selector::Number(1), state, None).expect_err("final"), destroyed);
    }
    drop(s);
    let s = open(d.path());
    assert_eq!(s.access(ADMIN, "db", Selector::Number(1)).expect_err("still destroyed"), destroyed);
}

#[test]
fn payload_size_and_checksum_are_checked_and_nothing_is_stored_on_failure() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &[]);
    let max = vec![b'x'; moat_secrets::MAX_PAYLOAD_BYTES];
    assert_eq!(s.add_version(ADMIN, "db", &max, None).expect("64 KiB fits").version, 1);
    let e = s.add_version(ADMIN, "db", &[0; moat_secrets::MAX_PAYLOAD_BYTES + 1], None).expect_err("too big");
    assert_eq!(e.status(), "INVALID_ARGUMENT");
    let e = s.add_version(ADMIN, "db", b"abc", Some(crc32c::crc32c(b"abd"))).expect_err("bad crc");
    assert_eq!(e.status(), "INVALID_ARGUMENT");
    assert!(e.to_string().contains("CRC32C"), "{e}");
    for form in crc_forms(crc32c::crc32c(b"abc")) {
        assert!(!e.to_string().contains(&form), "the message gives away the payload's CRC32C ({form}): {e}");
    }
    let ok = s.add_version(ADMIN, "db", b"abc", Some(crc32c::crc32c(b"abc"))).expect("good crc");
    assert_eq!(ok.version, 2, "failed adds consumed no version number");
    let p = s.access(ADMIN, "db", Selector::Latest).expect("access");
    assert_eq!(p.crc32c, crc32c::crc32c(b"abc"));
    assert!(!format!("{p:?}").contains("abc"), "Payload's Debug never shows the data");
}

#[test]
fn not_found_and_already_exists_say_which_resource() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    let nf = |m: &str| SecretError::NotFound(m.replace("N", NUMBER));
    assert_eq!(
        s.access(ADMIN, "nope", Selector::Latest).expect_err("missing"),
        nf("Secret [projects/N/secrets/nope] not found or has no versions.")
    );
    assert_eq!(s.get_secret(ADMIN, "nope").expect_err("missing"), nf("Secret [projects/N/secrets/nope] not found."));
    secret(&s, "db", &[]);
    assert_eq!(
        s.access(ADMIN, "db", Selector::Latest).expect_err("no versions"),
        nf("Secret [projects/N/secrets/db] not found or has no versions.")
    );
    s.add_version(ADMIN, "db", b"v", None).expect("add");
    assert_eq!(
        s.access(ADMIN, "db", Selector::Number(2)).expect_err("no v2"),
        nf("Secret Version [projects/N/secrets/db/versions/2] not found.")
    );
    assert_eq!(s.access(ADMIN, "db", Selector::Number(2)).expect_err("no v2").http_status(), 404);
    let e = s.create_secret(ADMIN, "db", BTreeMap::new()).expect_err("exists");
    assert_eq!(e, SecretError::AlreadyExists(format!("Secret [projects/{NUMBER}/secrets/db] already exists.")));
    assert_eq!(s.create_secret(ADMIN, "bad id", BTreeMap::new()).expect_err("bad id").status(), "INVALID_ARGUMENT");
    let bad_labels = BTreeMap::from([("Env".to_owned(), "dev".to_owned())]);
    assert_eq!(s.create_secret(ADMIN, "x", bad_labels).expect_err("label").status(), "INVALID_ARGUMENT");
}

#[test]
fn stale_etags_are_aborted() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &["v"]);
    let info = s.get_secret(ADMIN, "db").expect("get");
    let labels = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
    let updated = s.update_labels(ADMIN, "db", labels.clone()).expect("labels");
    assert_ne!(updated.etag, info.etag);
    assert_eq!(updated.labels, labels);
    assert_eq!(s.delete_secret(ADMIN, "db", Some(&info.etag)).expect_err("stale").status(), "ABORTED");

    let v = s.get_version(ADMIN, "db", Selector::Number(1)).expect("version");
    let disabled =
        s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Disabled, Some(&v.etag)).expect("etag ok");
    let e = s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Enabled, Some(&v.etag)).expect_err("stale");
    assert_eq!(e.http_status(), 409);
    s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Enabled, Some(&disabled.etag)).expect("fresh etag");

    let (_, etag) = s.get_iam_policy(ADMIN, "db").expect("policy");
    let (_, etag2) = s.set_iam_policy(ADMIN, "db", accessor_policy("user:a@example.com"), Some(&etag)).expect("set");
    assert_ne!(etag, etag2);
    let e = s.set_iam_policy(ADMIN, "db", PolicyDoc::default(), Some(&etag)).expect_err("stale policy etag");
    assert_eq!(e.status(), "ABORTED");
    let bad = accessor_policy("nobody");
    assert_eq!(s.set_iam_policy(ADMIN, "db", bad, None).expect_err("bad member").status(), "INVALID_ARGUMENT");

    s.delete_secret(ADMIN, "db", Some(&s.get_secret(ADMIN, "db").expect("get").etag)).expect("delete");
    assert_eq!(s.get_secret(ADMIN, "db").expect_err("deleted").status(), "NOT_FOUND");
    secret(&s, "db", &["again"]);
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("new secret"), (1, "again".into()));
}

#[test]
fn iam_accessor_on_the_secret_on_the_project_or_neither() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &["db-value"]);
    secret(&s, "cache", &["cache-value"]);
    s.set_iam_policy(ADMIN, "db", accessor_policy("serviceAccount:app@demo.iam.gserviceaccount.com"), None)
        .expect("policy");
    let denied = |id: &str, v: &str| {
        SecretError::PermissionDenied(format!(
            "Permission 'secretmanager.versions.access' denied for resource 'projects/{NUMBER}/secrets/{id}/versions/{v}' (or it may not exist)."
        ))
    };
    // On the secret: that secret only.
    assert_eq!(value(&s, &sa("app"), "db", Selector::Latest).expect("app reads db").1, "db-value");
    assert_eq!(s.access(&sa("app"), "cache", Selector::Latest).expect_err("not cache"), denied("cache", "latest"));
    // On the project: every secret.
    assert!(value(&s, &sa("proj"), "db", Selector::Latest).is_ok());
    assert!(value(&s, &sa("proj"), "cache", Selector::Number(1)).is_ok());
    // Neither.
    assert_eq!(s.access(&sa("web"), "db", Selector::Number(1)).expect_err("web"), denied("db", "1"));
    // Permission before existence: the same 403 for a secret that does not exist.
    assert_eq!(s.access(&sa("web"), "nope", Selector::Latest).expect_err("missing"), denied("nope", "latest"));
    assert_eq!(s.access(&sa("app"), "nope", Selector::Latest).expect_err("missing"), denied("nope", "latest"));
    assert_eq!(s.access(&sa("proj"), "nope", Selector::Latest).expect_err("missing").status(), "NOT_FOUND");
    // The accessor role reads payloads and nothing else.
    let e = s.add_version(&sa("app"), "db", b"x", None).expect_err("no add");
    assert!(e.to_string().starts_with("Permission 'secretmanager.versions.add' denied"), "{e}");
    assert_eq!(s.get_secret(&sa("app"), "db").expect_err("no get").http_status(), 403);
    // An instance is decided as its service account.
    let instance = Caller::Instance {
        service: "api".into(),
        account: Principal::ServiceAccount("app@demo.iam.gserviceaccount.com".into()),
    };
    assert!(value(&s, &instance, "db", Selector::Latest).is_ok());
    let last = audit(&s).pop().expect("record");
    assert_eq!(last.caller, "serviceAccount:app@demo.iam.gserviceaccount.com (instance of `api`)");
    // No credential at all: 401.
    let anon = Caller::Principal(Principal::Anonymous);
    assert_eq!(s.access(&anon, "db", Selector::Latest).expect_err("anonymous").http_status(), 401);
    // testIamPermissions: the held subset, the same for a missing secret as the project grants.
    let asked: Vec<String> =
        ["secretmanager.versions.access", "secretmanager.secrets.get", "bogus.permission"].map(String::from).to_vec();
    assert_eq!(s.test_iam_permissions(&sa("app"), "db", &asked).expect("test"), vec![asked[0].clone()]);
    assert!(s.test_iam_permissions(&sa("app"), "cache", &asked).expect("test").is_empty());
    assert_eq!(s.test_iam_permissions(&sa("proj"), "nope", &asked).expect("test"), vec![asked[0].clone()]);
    assert_eq!(s.test_iam_permissions(ADMIN, "db", &asked).expect("test").len(), 2);
}

#[test]
fn everything_persists_across_reopen() {
    let d = tempfile::tempdir().expect("dir");
    {
        let s = open(d.path());
        s.create_secret(ADMIN, "db", BTreeMap::from([("env".into(), "prod".into())])).expect("create");
        s.add_version(ADMIN, "db", b"one", None).expect("add");
        s.add_version(ADMIN, "db", b"two", None).expect("add");
        s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Disabled, None).expect("disable");
        s.set_iam_policy(ADMIN, "db", accessor_policy("user:dev@example.com"), None).expect("policy");
    }
    let s = open(d.path());
    let info = s.get_secret(ADMIN, "db").expect("get");
    assert_eq!((info.latest, info.labels.get("env").map(String::as_str)), (2, Some("prod")));
    assert_eq!(s.get_version(ADMIN, "db", Selector::Number(1)).expect("v1").state, VersionState::Disabled);
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("v2"), (2, "two".into()));
    let dev = Caller::Principal(Principal::User("dev@example.com".into()));
    assert!(value(&s, &dev, "db", Selector::Latest).is_ok(), "the policy persisted");
    assert!(!std::fs::read(d.path().join("secrets.redb")).expect("file").windows(3).any(|w| w == b"two"));
}

#[test]
fn a_wrong_master_key_is_refused_at_open_naming_both_ids() {
    let d = tempfile::tempdir().expect("dir");
    secret(&open(d.path()), "db", &["v"]);
    let wrong = MasterKey::from_bytes([8; 32]);
    let (want, got) = (MasterKey::from_bytes(KEY).id(), wrong.id());
    let e = Secrets::open(d.path(), wrong, project()).expect_err("wrong key");
    let m = e.to_string();
    assert!(m.contains(&format!("was sealed with master key `{want}`, got `{got}`")), "{m}");
    assert!(m.contains("MOAT_MASTER_KEY") && m.contains(MASTER_KEY_FILE), "{m}");
}

#[test]
fn key_file_rotation_and_its_interruptions_leave_a_store_that_opens() {
    let d = tempfile::tempdir().expect("dir");
    let file = d.path().join(MASTER_KEY_FILE);
    let load = || MasterKey::from_file(&file).expect("key file");
    MasterKey::from_bytes(KEY).save(&file).expect("save");
    let s = Secrets::open(d.path(), load(), project()).expect("open");
    secret(&s, "db", &["a", "b"]);

    // The whole protocol.
    if std::env::var_os("MOAT_MASTER_KEY").is_none() {
        assert_eq!(s.rotate_master_key_file().expect("rotate"), 2);
        assert!(!next_key_path(&file).exists());
        assert_ne!(load().id(), MasterKey::from_bytes(KEY).id());
        assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("after").1, "b");
    }
    drop(s);

    // Crash after the next key was saved, before the re-wrap committed: the store is on the
    // current key and the unused next key is removed.
    let current = load();
    MasterKey::from_bytes([9; 32]).save(&next_key_path(&file)).expect("next");
    let s = Secrets::open(d.path(), load(), project()).expect("opens on the current key");
    assert!(!next_key_path(&file).exists());
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(1)).expect("v1").1, "a");

    // Crash after the re-wrap committed, before the rename: open finishes the rename.
    let next = MasterKey::from_bytes([10; 32]);
    let next_id = next.id();
    MasterKey::from_bytes([10; 32]).save(&next_key_path(&file)).expect("next");
    assert_eq!(s.rotate_master(next).expect("rewrap"), 2);
    drop(s);
    assert_eq!(load().id(), current.id(), "master.key still holds the old key");
    let s = Secrets::open(d.path(), load(), project()).expect("recovers");
    assert_eq!(load().id(), next_id);
    assert!(!next_key_path(&file).exists());
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("after recovery").1, "b");
}

#[test]
fn the_audit_log_has_one_record_per_call_and_never_a_value() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    let payload = "hunter2-3f9a7c";
    s.create_secret(ADMIN, "db", BTreeMap::new()).expect("create");
    s.add_version(ADMIN, "db", payload.as_bytes(), None).expect("add");
    s.access(ADMIN, "db", Selector::Latest).expect("access");
    s.access(&sa("web"), "db", Selector::Latest).expect_err("denied");
    s.access(ADMIN, "nope", Selector::Number(3)).expect_err("not found");
    s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Disabled, None).expect("disable");
    s.access(ADMIN, "db", Selector::Latest).expect_err("disabled");
    s.list_secrets(ADMIN, 0, "").expect("list");
    s.list_versions(ADMIN, "db", 0, "").expect("list versions");
    s.get_iam_policy(ADMIN, "db").expect("get policy");
    s.test_iam_permissions(ADMIN, "db", &[]).expect("test");
    s.ensure_declared("db", &PolicyDoc::default(), Some(b"seed-value")).expect("declared");
    // A checksum mismatch: the audited message must not carry the payload's real CRC32C.
    s.add_version(ADMIN, "db", payload.as_bytes(), Some(1)).expect_err("bad crc");
    let token = std::fs::read_to_string(s.admin_token_path()).expect("token");
    let records = audit(&s);
    let summary: Vec<(&str, &str)> = records.iter().map(|r| (r.action.as_str(), r.result.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("createSecret", "ok"),
            ("addVersion", "ok"),
            ("access", "ok"),
            ("access", "denied"),
            ("access", "not_found"),
            ("disableVersion", "ok"),
            ("access", "failed_precondition"),
            ("listSecrets", "ok"),
            ("listVersions", "ok"),
            ("getIamPolicy", "ok"),
            ("testIamPermissions", "ok"),
            ("ensureDeclared", "ok"),
            ("addVersion", "invalid_argument"),
        ]
    );
    let r = &records[2];
    assert_eq!(
        (r.caller.as_str(), r.resource.as_str(), r.version),
        ("admin", &*format!("projects/{NUMBER}/secrets/db/versions/latest"), Some(1))
    );
    let denied = &records[3];
    assert_eq!(denied.permission.as_deref(), Some("secretmanager.versions.access"));
    assert_eq!(denied.caller, "serviceAccount:web@demo.iam.gserviceaccount.com");
    assert_eq!(records[4].resource, format!("projects/{NUMBER}/secrets/nope/versions/3"));
    let text = std::fs::read_to_string(s.audit_path()).expect("log");
    assert!(!text.contains(payload) && !text.contains("seed-value"), "the audit log must never hold a value");
    assert!(!text.contains(token.trim()), "the audit log must never hold a token");
    for form in
        crc_forms(crc32c::crc32c(payload.as_bytes())).into_iter().chain(crc_forms(crc32c::crc32c(b"seed-value")))
    {
        assert!(!text.contains(&form), "the audit log must never hold a value's CRC32C ({form})");
    }
    for r in &records {
        assert!(r.time.ends_with('Z') && r.time.len() == 24, "{}", r.time);
    }
}

#[test]
fn lists_page_with_opaque_tokens() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    for i in 0..30 {
        s.create_secret(ADMIN, &format!("s{i:02}"), BTreeMap::new()).expect("create");
    }
    let p1 = s.list_secrets(ADMIN, 0, "").expect("page 1");
    assert_eq!((p1.items.len(), p1.total_size), (25, 30), "the default page is 25");
    assert_eq!(p1.items[0].id, "s00");
    let p2 = s.list_secrets(ADMIN, 0, &p1.next_page_token).expect("page 2");
    assert_eq!(p2.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["s25", "s26", "s27", "s28", "s29"]);
    assert!(p2.next_page_token.is_empty());
    assert_eq!(s.list_secrets(ADMIN, 0, "garbage!").expect_err("bad token").status(), "INVALID_ARGUMENT");
    assert_eq!(s.list_secrets(ADMIN, 100_000, "").expect("clamped").items.len(), 30);

    for i in 1..=7 {
        s.add_version(ADMIN, "s00", format!("{i}").as_bytes(), None).expect("add");
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let p = s.list_versions(ADMIN, "s00", 3, &token).expect("versions page");
        assert_eq!(p.total_size, 7);
        seen.extend(p.items.iter().map(|v| v.version));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1], "newest first");
    assert_eq!(
        s.list_versions(ADMIN, "s00", 3, &p1.next_page_token).expect_err("wrong kind").status(),
        "INVALID_ARGUMENT"
    );
}

#[test]
fn subscribers_see_every_committed_mutation() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    let rx = s.subscribe();
    let start = *rx.borrow();
    secret(&s, "db", &["a"]);
    assert_eq!(*rx.borrow() - start, 2);
    s.access(ADMIN, "db", Selector::Latest).expect("reads bump nothing");
    s.access(&sa("web"), "db", Selector::Latest).expect_err("denied");
    assert_eq!(*rx.borrow() - start, 2);
    s.set_state(ADMIN, "db", Selector::Latest, VersionState::Disabled, None).expect("disable");
    assert_eq!(*rx.borrow() - start, 3);
}

#[test]
fn ensure_declared_creates_seeds_once_and_enforces_the_policy() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    let policy = accessor_policy("serviceAccount:app@demo.iam.gserviceaccount.com");
    s.ensure_declared("db", &policy, Some(b"seed")).expect("declare");
    s.ensure_declared("db", &policy, Some(b"other seed")).expect("again");
    assert_eq!(value(&s, &sa("app"), "db", Selector::Latest).expect("seeded"), (1, "seed".into()));
    s.set_iam_policy(ADMIN, "db", PolicyDoc::default(), None).expect("api change");
    s.ensure_declared("db", &policy, None).expect("moat.yaml wins");
    assert_eq!(s.get_iam_policy(ADMIN, "db").expect("policy").0, policy);
    assert!(s.ensure_declared("bad id", &policy, None).is_err());
    assert_eq!(audit(&s).iter().filter(|r| r.action == "ensureDeclared" && r.caller == "admin").count(), 4);
}

#[test]
fn the_admin_token_is_created_0600_and_compared_exactly() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    let path = s.admin_token_path();
    assert_eq!(std::fs::metadata(&path).expect("token").permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).expect("token").trim().to_owned();
    assert!(token.starts_with("moat-admin.") && token.len() == "moat-admin.".len() + 43, "{token}");
    assert!(s.is_admin_token(&token));
    assert!(!s.is_admin_token(&token[..token.len() - 1]));
    assert!(!s.is_admin_token(""));
    drop(s);
    assert!(open(d.path()).is_admin_token(&token), "the token survives a restart");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let e = Secrets::open(d.path(), MasterKey::from_bytes(KEY), project()).expect_err("open to group");
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

#[test]
fn a_tampered_record_on_disk_is_data_loss_for_that_version_only() {
    let d = tempfile::tempdir().expect("dir");
    secret(&open(d.path()), "db", &["one", "two"]);
    {
        let db = redb::Database::open(d.path().join("secrets.redb")).expect("redb");
        let w = db.begin_write().expect("write");
        {
            let mut t = w.open_table(moat_secrets::store::VERSIONS).expect("table");
            let mut raw = t.get(("db", 1)).expect("get").expect("v1").value().to_vec();
            let at = raw.len() - 30;
            raw[at] ^= 0x10;
            t.insert(("db", 1), raw.as_slice()).expect("put");
        }
        w.commit().expect("commit");
    }
    let s = open(d.path());
    assert_eq!(s.access(ADMIN, "db", Selector::Number(1)).expect_err("tampered").status(), "DATA_LOSS");
    assert_eq!(audit(&s).pop().expect("record").result, "data_loss");
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(2)).expect("untouched").1, "two");
}

#[test]
fn many_threads_share_one_store() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path());
    secret(&s, "db", &["v"]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    if i % 5 == 0 {
                        s.add_version(ADMIN, "db", format!("{t}-{i}").as_bytes(), None).expect("add");
                    } else {
                        s.access(ADMIN, "db", Selector::Number(1)).expect("access");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(s.get_secret(ADMIN, "db").expect("get").latest, 1 + 8 * 4);
    assert_eq!(audit(&s).len(), 2 + 8 * 20 + 1);
}

const CRASH_ENV: &str = "MOAT_SECRETS_CRASH_CHILD";

/// The child half: adds versions as fast as it can, printing each acknowledged one, until killed.
fn crash_child(dir: &Path) {
    let s = open(dir);
    let _ = s.create_secret(ADMIN, "db", BTreeMap::new());
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let v = s.add_version(ADMIN, "db", format!("value-{i}").as_bytes(), None).expect("add");
        writeln!(out, "ack {} value-{i}", v.version).expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn a_store_killed_mid_write_reopens_with_every_acknowledged_version() {
    if let Some(dir) = std::env::var_os(CRASH_ENV) {
        crash_child(Path::new(&dir));
        return;
    }
    let d = tempfile::tempdir().expect("dir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_store_killed_mid_write_reopens_with_every_acknowledged_version",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked: Vec<(u64, String)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("ack ") {
            let (n, v) = rest.split_once(' ').expect("ack N VALUE");
            acked.push((n.parse().expect("number"), v.to_owned()));
            if acked.len() == 40 {
                child.kill().expect("SIGKILL");
                break;
            }
        }
    }
    child.wait().expect("reaped");
    assert_eq!(acked.len(), 40, "the child acknowledged writes before it was killed");
    let s = open(d.path());
    let latest = s.get_secret(ADMIN, "db").expect("get").latest;
    assert!(latest >= 40, "every acknowledged version survived (latest {latest})");
    for (n, v) in &acked {
        assert_eq!(&value(&s, ADMIN, "db", Selector::Number(*n)).expect("acked version").1, v);
    }
    s.add_version(ADMIN, "db", b"after the crash", None).expect("writable after recovery");
    for r in audit(&s) {
        assert!(!r.action.is_empty(), "every line of the audit log parses after the crash");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add,
    Set(u64, VersionState),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Add),
        3 => (1u64..8, prop_oneof![Just(VersionState::Enabled), Just(VersionState::Disabled), Just(VersionState::Destroyed)])
            .prop_map(|(n, s)| Op::Set(n, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random lifecycles agree with a model: a list of (state, value), numbered from 1.
    #[test]
    fn lifecycles_agree_with_a_simple_model(ops in proptest::collection::vec(op(), 1..20)) {
        let d = tempfile::tempdir().expect("dir");
        let s = open(d.path());
        s.create_secret(ADMIN, "m", BTreeMap::new()).expect("create");
        let mut model: Vec<(VersionState, String)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Add => {
                    let v = format!("v{i}");
                    let info = s.add_version(ADMIN, "m", v.as_bytes(), None).expect("add");
                    model.push((VersionState::Enabled, v));
                    prop_assert_eq!(info.version, model.len() as u64);
                }
                Op::Set(n, state) => {
                    let got = s.set_state(ADMIN, "m", Selector::Number(*n), *state, None);
                    match model.get_mut(*n as usize - 1) {
                        None => prop_assert_eq!(got.expect_err("missing").status(), "NOT_FOUND"),
                        Some((VersionState::Destroyed, _)) => {
                            prop_assert_eq!(got.expect_err("final").status(), "FAILED_PRECONDITION");
                        }
                        Some(slot) => {
                            prop_assert_eq!(got.expect("set").state, *state);
                            slot.0 = *state;
                        }
                    }
                }
            }
            for n in 1..=model.len() as u64 + 1 {
                let got = s.access(ADMIN, "m", Selector::Number(n));
                match model.get(n as usize - 1) {
                    None => prop_assert_eq!(got.expect_err("missing").status(), "NOT_FOUND"),
                    Some((VersionState::Enabled, v)) => prop_assert_eq!(got.expect("enabled").data.to_vec(), v.as_bytes().to_vec()),
                    Some((state, _)) => {
                        let e = got.expect_err("not enabled");
                        prop_assert!(e.to_string().ends_with(&format!("is in {} state.", state.as_str())), "{}", e);
                    }
                }
            }
            let latest = s.access(ADMIN, "m", Selector::Latest);
            match model.last() {
                None => prop_assert_eq!(latest.expect_err("none").status(), "NOT_FOUND"),
                Some((VersionState::Enabled, v)) => prop_assert_eq!(latest.expect("latest").data.to_vec(), v.as_bytes().to_vec()),
                Some(_) => prop_assert_eq!(latest.expect_err("no fallback").status(), "FAILED_PRECONDITION"),
            }
        }
    }
}

#[test]
fn a_byte_flipped_in_the_file_fails_that_version_only_and_is_audited() {
    let d = tempfile::tempdir().expect("dir");
    secret(&open(d.path()), "db", &["one-4711", "two-4712"]);
    // Edit the file's bytes, not through redb (which would re-checksum its pages): flip a byte
    // in the middle of every copy of version 1's record, i.e. inside its sealed envelope.
    let raw = raw_record(d.path(), "db", 1);
    let file = d.path().join("secrets.redb");
    let mut bytes = std::fs::read(&file).expect("file");
    let hits = find_all(&bytes, &raw);
    assert!(!hits.is_empty(), "the record is stored as it is");
    for at in hits {
        bytes[at + raw.len() / 2] ^= 0x20;
    }
    std::fs::write(&file, &bytes).expect("tamper");

    let s = open(d.path());
    let e = s.access(ADMIN, "db", Selector::Number(1)).expect_err("tampered");
    assert_eq!(e.status(), "DATA_LOSS", "{e}");
    assert!(e.to_string().contains("versions/1] failed its integrity check"), "{e}");
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(2)).expect("untouched"), (2, "two-4712".into()));
    let records = audit(&s);
    let opened: Vec<_> = records.iter().filter(|r| r.action == "openStore").collect();
    assert_eq!(opened.len(), 1, "{records:?}");
    assert_eq!((opened[0].caller.as_str(), opened[0].result.as_str()), ("moat", "data_loss"));
    assert!(opened[0].message.as_deref().is_some_and(|m| m.contains("failed its integrity check")), "{opened:?}");
    let access = records.iter().rfind(|r| r.action == "access" && r.version == Some(1)).expect("audited");
    assert_eq!(access.result, "data_loss");
    assert!(access.message.as_deref().is_some_and(|m| m.contains("failed its integrity check")), "{access:?}");

    // The rebuilt file passes redb's check from now on; the version stays DATA_LOSS until destroyed.
    drop(s);
    let s = open(d.path());
    assert_eq!(audit(&s).iter().filter(|r| r.action == "openStore").count(), 1, "no second rebuild");
    assert_eq!(s.access(ADMIN, "db", Selector::Number(1)).expect_err("still tampered").status(), "DATA_LOSS");
    s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Destroyed, None).expect("the way out");
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("latest").1, "two-4712");
}

#[test]
fn a_destroyed_envelope_leaves_the_file_at_the_next_open() {
    let d = tempfile::tempdir().expect("dir");
    secret(&open(d.path()), "db", &["shred-me", "keep-me"]);
    let raw = raw_record(d.path(), "db", 1);
    let s = open(d.path());
    s.set_state(ADMIN, "db", Selector::Number(1), VersionState::Destroyed, None).expect("destroy");
    drop(s);
    let s = open(d.path());
    let bytes = std::fs::read(d.path().join("secrets.redb")).expect("file");
    // Any 32 bytes of the old record hold part of the wrapped data key or the ciphertext.
    for chunk in raw.chunks_exact(32) {
        assert!(find_all(&bytes, chunk).is_empty(), "part of the destroyed envelope is still in the file");
    }
    assert_eq!(value(&s, ADMIN, "db", Selector::Number(2)).expect("kept").1, "keep-me");
    let rewrites = |s: &Secrets| audit(s).into_iter().filter(|r| r.action == "openStore").count();
    assert_eq!(rewrites(&s), 1);
    drop(s);
    assert_eq!(rewrites(&open(d.path())), 1, "nothing new to wipe: no rewrite");
}

#[test]
fn the_store_directory_and_file_are_made_private_even_when_they_exist() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("dir");
    let dir = d.path().join("secrets");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let s = open(&dir);
    secret(&s, "db", &["v"]);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("secrets.redb")), 0o600);
    drop(s);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir.join("secrets.redb"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let s = open(&dir);
    assert_eq!((mode(&dir), mode(&dir.join("secrets.redb"))), (0o700, 0o600), "repaired at open");
    assert_eq!(value(&s, ADMIN, "db", Selector::Latest).expect("readable").1, "v");
}
