//! Tests that reach inside the store: tampering with records, swapping envelopes, rotation
//! under concurrent reads. The public behaviour is tested in `tests/store.rs`.

#![expect(clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests name the failing input")]

use std::collections::BTreeMap;
use std::sync::Arc;

use moat_policy::{Project, SourceFile};

use crate::audit::AuditRecord;
use crate::store::{VersionRecord, View};
use crate::{Caller, MasterKey, SecretError, Secrets, Selector, seal};

fn project() -> Arc<Project> {
    let files = [SourceFile {
        path: "moat.yaml".into(),
        text: "project: {id: demo, number: '123456789012', region: europe-west1}\n".into(),
    }];
    Arc::new(moat_policy::load(&files).expect("project loads"))
}

fn open(dir: &std::path::Path, key: [u8; 32]) -> Secrets {
    Secrets::open(dir, MasterKey::from_bytes(key), project()).expect("store opens")
}

fn last_audit(s: &Secrets) -> AuditRecord {
    let text = std::fs::read_to_string(s.audit_path()).expect("audit log");
    serde_json::from_str(text.lines().last().expect("a record")).expect("json")
}

/// Rewrites version `n` of `id` through the store's own tables.
fn rewrite(s: &Secrets, id: &str, n: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let store = &s.inner.store;
    let mut raw = store.read().expect("read").raw_version(id, n).expect("get").expect("present");
    f(&mut raw);
    let w = store.write().expect("write");
    w.put_raw_version(id, n, &raw).expect("put");
    w.commit().expect("commit");
}

/// Rewrites the envelope of version `n` of `id`, keeping the record's own checksum valid so the
/// envelope's authentication is what has to notice.
fn rewrite_envelope(s: &Secrets, id: &str, n: u64, f: impl FnOnce(&mut Vec<u8>)) {
    rewrite(s, id, n, |raw| {
        let mut v = VersionRecord::decode(raw).expect("decodes");
        f(v.sealed.as_mut().expect("sealed"));
        *raw = v.encode();
    });
}

#[test]
fn a_flipped_envelope_byte_is_data_loss_and_audited_as_such() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path(), [1; 32]);
    s.create_secret(&Caller::Admin, "db", BTreeMap::new()).expect("create");
    s.add_version(&Caller::Admin, "db", b"s3cr3t-value", None).expect("add");
    let len = seal::OVERHEAD + 12;
    for at in [0, 5, 20, 40, 70, len - 1] {
        rewrite_envelope(&s, "db", 1, |e| e[at] ^= 0x04);
        let e = s.access(&Caller::Admin, "db", Selector::Latest).expect_err("tampered");
        assert!(matches!(e, SecretError::DataLoss(_)), "byte {at}: {e:?}");
        assert!(e.to_string().contains("Secret Version [projects/123456789012/secrets/db/versions/1]"), "{e}");
        let rec = last_audit(&s);
        assert_eq!((rec.action.as_str(), rec.result.as_str(), rec.version), ("access", "data_loss", Some(1)));
        rewrite_envelope(&s, "db", 1, |e| e[at] ^= 0x04);
        assert_eq!(
            s.access(&Caller::Admin, "db", Selector::Latest).expect("restored").data.as_slice(),
            b"s3cr3t-value"
        );
    }
    // A flip outside the envelope (the state byte) is caught by the record's own checksum.
    rewrite(&s, "db", 1, |raw| raw[2] ^= 0x03);
    assert!(matches!(s.access(&Caller::Admin, "db", Selector::Number(1)), Err(SecretError::DataLoss(_))));
    assert!(matches!(s.get_version(&Caller::Admin, "db", Selector::Number(1)), Err(SecretError::DataLoss(_))));
    // The way out: destroy the version.
    s.set_state(&Caller::Admin, "db", Selector::Number(1), crate::VersionState::Destroyed, None).expect("destroy");
    let e = s.access(&Caller::Admin, "db", Selector::Latest).expect_err("destroyed");
    assert!(e.to_string().ends_with("is in DESTROYED state."), "{e}");
}

#[test]
fn envelopes_swapped_between_versions_do_not_open() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path(), [2; 32]);
    s.create_secret(&Caller::Admin, "db", BTreeMap::new()).expect("create");
    s.add_version(&Caller::Admin, "db", b"one", None).expect("v1");
    s.add_version(&Caller::Admin, "db", b"two", None).expect("v2");
    let r = s.inner.store.read().expect("read");
    let v1 = VersionRecord::decode(&r.raw_version("db", 1).expect("get").expect("v1")).expect("decode");
    let v2 = VersionRecord::decode(&r.raw_version("db", 2).expect("get").expect("v2")).expect("decode");
    drop(r);
    rewrite_envelope(&s, "db", 1, |e| *e = v2.sealed.clone().expect("sealed"));
    rewrite_envelope(&s, "db", 2, |e| *e = v1.sealed.clone().expect("sealed"));
    for n in [1, 2] {
        let e = s.access(&Caller::Admin, "db", Selector::Number(n)).expect_err("swapped");
        assert!(matches!(e, SecretError::DataLoss(_)), "{e:?}");
    }
}

#[test]
fn rotation_rewraps_data_keys_and_leaves_payload_ciphertexts_untouched() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path(), [3; 32]);
    for id in ["a", "b"] {
        s.create_secret(&Caller::Admin, id, BTreeMap::new()).expect("create");
        for i in 0..3 {
            s.add_version(&Caller::Admin, id, format!("{id}{i}").as_bytes(), None).expect("add");
        }
    }
    s.set_state(&Caller::Admin, "a", Selector::Number(2), crate::VersionState::Destroyed, None).expect("destroy");
    let envelopes = |s: &Secrets| -> Vec<Option<Vec<u8>>> {
        let r = s.inner.store.read().expect("read");
        ["a", "b"]
            .iter()
            .flat_map(|id| (1..=3).map(move |n| (*id, n)))
            .map(|(id, n)| r.version(id, n).expect("get").expect("present").expect("decodes").sealed)
            .collect()
    };
    let before = envelopes(&s);
    let new = MasterKey::from_bytes([4; 32]);
    let new_id = new.id_bytes();
    assert_eq!(s.rotate_master(new).expect("rotate"), 5, "five versions hold a data key");
    let after = envelopes(&s);
    for (b, a) in before.iter().zip(&after) {
        match (b, a) {
            (Some(b), Some(a)) => {
                assert_eq!(seal::payload_part(b), seal::payload_part(a), "payload ciphertext must not change");
                assert_ne!(b, a, "the wrapped data key must change");
                assert_eq!(seal::key_id(a), Some(new_id));
            }
            (None, None) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.inner.store.read().expect("read").master_key_id().expect("meta"), Some(new_id));
    assert_eq!(s.access(&Caller::Admin, "b", Selector::Latest).expect("access").data.as_slice(), b"b2");
    let rec = last_audit(&s);
    assert_eq!((rec.action.as_str(), rec.result.as_str()), ("access", "ok"));
    drop(s);
    let e = Secrets::open(d.path(), MasterKey::from_bytes([3; 32]), project()).expect_err("old key");
    assert!(e.to_string().contains(&format!("got `{}`", MasterKey::from_bytes([3; 32]).id())), "{e}");
    let s = open(d.path(), [4; 32]);
    assert_eq!(s.access(&Caller::Admin, "a", Selector::Number(3)).expect("access").data.as_slice(), b"a2");
}

/// Regression: with a two-key keyring, a reader whose snapshot predated two rotations met a key
/// that had already left the keyring and reported DATA_LOSS. Rotation now excludes sealing and
/// unsealing calls for its transaction.
#[test]
fn reads_and_writes_keep_working_while_the_master_key_rotates() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path(), [5; 32]);
    s.create_secret(&Caller::Admin, "db", BTreeMap::new()).expect("create");
    for i in 0..20 {
        s.add_version(&Caller::Admin, "db", format!("v{i}").as_bytes(), None).expect("add");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v = n % 20 + 1;
                    let p = s.access(&Caller::Admin, "db", Selector::Number(v)).expect("access during rotation");
                    assert_eq!(p.data.as_slice(), format!("v{}", v - 1).as_bytes());
                    if t == 0 && n.is_multiple_of(50) {
                        s.add_version(&Caller::Admin, "db", b"more", None).expect("add during rotation");
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    for k in 10..16u8 {
        s.rotate_master(MasterKey::from_bytes([k; 32])).expect("rotate");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    let latest = s.get_secret(&Caller::Admin, "db").expect("get").latest;
    for v in 1..=latest {
        s.access(&Caller::Admin, "db", Selector::Number(v)).expect("every version opens under the last key");
    }
}

#[test]
fn a_new_project_wakes_subscribers_and_names_the_project_and_key() {
    let d = tempfile::tempdir().expect("dir");
    let s = open(d.path(), [2; 32]);
    assert_eq!(s.project_id(), "demo");
    assert_eq!(s.master_key_id(), MasterKey::from_bytes([2; 32]).id());
    let mut changes = s.subscribe();
    let before = *changes.borrow_and_update();
    // Project IAM decides access to every secret: volume injection must re-check on a reload.
    s.set_project(project());
    assert!(changes.has_changed().expect("sender alive"), "set_project bumps the change watch");
    assert_ne!(*changes.borrow_and_update(), before);
}
