//! Issue 5: no secret value appears in moat's logs, decision records, audit records,
//! `explain`/`check` output or any describe output. One `moat up` on `fixtures/secrets` with
//! `RUST_LOG=trace`, values drawn at random and added at run time through `moat secrets add`
//! (stdin), read by a workload (env and volume) and by the CLI; then every describe (`moat
//! secrets list/versions/iam get`, the API's GET responses, admin `/status`), `explain` in every
//! format and `check` in every format. Every output and every file under the state directory is
//! searched for each value raw, in base64 (standard and URL-safe, at any alignment) and in hex.
//! Left out on purpose: `moat secrets access` stdout (its job is to print the value) and the
//! per-instance mount directory (`STATE/instances`, the workload's files, which hold the value).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;
#[path = "common/moat_up.rs"]
mod moat_up;

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use listeners::listener_addr;
use moat_up::Up;
use serde_json::Value;

const PROJECT: &str = "tests/fixtures/secrets";
const READER_HOST: &str = "reader-100000000002.us-central1.run.app";

/// `n` bytes from the kernel's random source: values no file in the repository can hold.
fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The forms a value could leak in. Base64 inside a longer stream depends on where the value
/// starts modulo 3, so each alignment gives the characters that only the value's bytes decide.
fn forms(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("raw".to_owned(), value.to_vec()),
        ("hex".to_owned(), hex(value).into_bytes()),
        ("HEX".to_owned(), hex(value).to_uppercase().into_bytes()),
    ];
    for (name, engine) in [("base64", STANDARD_NO_PAD), ("base64url", URL_SAFE_NO_PAD)] {
        for skip in 0..3_usize {
            let shifted: Vec<u8> = std::iter::repeat_n(0, skip).chain(value.iter().copied()).collect();
            let text = engine.encode(&shifted);
            // Characters mixing the padding bytes (front) or the unknown next byte (back) go.
            let front = (skip * 8).div_ceil(6);
            let back = usize::from(!(shifted.len() * 8).is_multiple_of(6));
            let core = &text.as_bytes()[front..text.len() - back];
            out.push((format!("{name} at offset {skip}"), core.to_vec()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// CRC32C (Castagnoli), as Secret Manager's `dataCrc32c`.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Whether `number` shows in `text` as a whole decimal number (not inside a longer one).
fn has_number(text: &[u8], number: u32) -> bool {
    let needle = number.to_string().into_bytes();
    text.windows(needle.len()).enumerate().any(|(i, w)| {
        let digit_at = |j: Option<usize>| j.and_then(|j| text.get(j)).is_some_and(u8::is_ascii_digit);
        w == needle.as_slice() && !digit_at(i.checked_sub(1)) && !digit_at(Some(i + needle.len()))
    })
}

/// Every (output, value, form) where a value shows. The CRC32C counts too: for a short value
/// (a PIN) it gives the value away.
fn leaks(outputs: &[(String, Vec<u8>)], values: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (label, value) in values {
        let crc = crc32c(value);
        found.extend(
            outputs.iter().filter(|(_, t)| has_number(t, crc)).map(|(n, _)| format!("{n} holds the CRC32C of {label}")),
        );
        for (form, needle) in forms(value) {
            for (name, text) in outputs {
                if contains(text, &needle) {
                    found.push(format!("{name} holds {label} ({form})"));
                }
            }
        }
    }
    found
}

#[test]
fn the_search_finds_a_value_in_every_form_at_every_offset() {
    let value = random(29);
    for pad in 0..3 {
        let mut embedded = vec![b'x'; pad];
        embedded.extend_from_slice(&value);
        embedded.extend_from_slice(b"tail");
        let encodings = [
            ("raw", embedded.clone()),
            ("hex", hex(&embedded).into_bytes()),
            ("HEX", hex(&embedded).to_uppercase().into_bytes()),
            ("base64", STANDARD.encode(&embedded).into_bytes()),
            ("base64url", URL_SAFE_NO_PAD.encode(&embedded).into_bytes()),
        ];
        for (name, text) in encodings {
            let outputs = [(name.to_owned(), text)];
            assert!(!leaks(&outputs, &[("v", value.clone())]).is_empty(), "{name} with {pad} bytes before it");
        }
    }
    let crc = crc32c(&value);
    assert!(
        !leaks(&[("crc".to_owned(), format!("CRC32C is {crc}.").into_bytes())], &[("v", value.clone())]).is_empty()
    );
    let clean = [("clean".to_owned(), format!("nothing to see here, {crc}0").into_bytes())];
    assert!(leaks(&clean, &[("v", value)]).is_empty());
    // The check value of the Castagnoli polynomial.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

/// `moat secrets --project PROJECT --state STATE ARGS...` with `stdin`, which must succeed.
fn secrets(state: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["secrets", "--project", PROJECT, "--state"])
        .arg(state)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "moat secrets {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `moat ARGS...` on the fixture project, which must succeed (`check` exits 1 on findings).
fn moat(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "moat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty(), "moat {args:?} printed nothing");
    out
}

/// `METHOD path` on moat's Secret Manager API with the admin token: status and whole answer.
fn api(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("Host: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: {}", body.len());
    write!(s, "{method} {path} HTTP/1.0\r\n{head}\r\n\r\n{body}").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let status = String::from_utf8_lossy(&raw).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw)
}

/// The port of `service`'s ready instance, from admin `/status` (30 s at most).
fn instance(admin: SocketAddr, service: &str) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http::get_json(admin, "/status").unwrap();
        let s = status["services"].as_array().unwrap().iter().find(|s| s["service"] == service).unwrap().clone();
        if s["state"] == "ready"
            && let Some(port) = s["port"].as_u64()
        {
            return SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));
        }
        assert!(Instant::now() < deadline, "`{service}` is not ready: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `check(instance answer)` holds (10 s at most); the last answer otherwise.
fn wait_for(admin: SocketAddr, service: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = http::get_json(instance(admin, service), path).unwrap_or(Value::Null);
        if check(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir` as (path, bytes); `skip` (the mounts) is not entered.
fn files(dir: &Path, skip: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            files(&path, skip, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

/// Removes the state directory and the tmpfs directory its `instances` links to.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(target) = std::fs::read_link(self.0.join("state/instances")) {
            let _ = std::fs::remove_dir_all(target);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn no_secret_value_shows_in_any_output_log_record_or_describe() {
    let dir = std::env::temp_dir().join(format!("moat-leak-{}-{}", std::process::id(), hex(&random(4))));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let state = dir.join("state");
    let stderr_file = dir.join("moat.stderr");
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join(PROJECT);
    let mut up =
        Up::start_with(&project, &[OsStr::new("--state"), state.as_os_str()], &[("RUST_LOG", "trace")], &stderr_file);
    let admin = listener_addr(&up.stdout, "admin");
    let internet = listener_addr(&up.stdout, "internet");
    let token = std::fs::read_to_string(state.join("secrets/admin.token")).unwrap().trim().to_owned();

    // Values no file holds: text for the env and volume (the workload decodes them as UTF-8),
    // raw bytes for a secret that only the CLI reads.
    let env_value = format!("leak-env-{}", hex(&random(16))).into_bytes();
    let vol_value = format!("leak-vol-{}", hex(&random(16))).into_bytes();
    let bin_value = random(32);
    let cli_value = format!("leak-cli-{}\n", hex(&random(16))).into_bytes();
    // Sent with a wrong checksum: refused, and neither the refusal nor the audit may say its CRC.
    let crc_value = random(24);
    let mut values: Vec<(&str, Vec<u8>)> = vec![
        ("the env value", env_value.clone()),
        ("the volume value", vol_value.clone()),
        ("the binary value", bin_value.clone()),
        ("the CLI value", cli_value.clone()),
        ("the refused value", crc_value.clone()),
    ];
    // The seeds too: moat read them from files, and they are values like any other.
    for seed in ["env-latest", "env-pinned", "vol", "flaky", "locked"] {
        let text = std::fs::read(project.join(format!("seeds/{seed}.txt"))).unwrap();
        values.push((seed, text.trim_ascii().to_vec()));
    }

    // Everything that is neither a value nor the workload's: (name, bytes).
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut cli = |args: &[&str], stdin: &[u8]| {
        let out = secrets(&state, args, stdin);
        outputs.push((format!("moat secrets {args:?} stdout"), out.stdout));
        outputs.push((format!("moat secrets {args:?} stderr"), out.stderr));
    };

    // Added at run time, from stdin; mutations say what they did.
    cli(&["add", "env-latest"], &env_value);
    cli(&["add", "vol"], &vol_value);
    cli(&["create", "probe", "--label", "team=leak-test", "--data-file", "-"], &bin_value);
    cli(&["add", "probe"], &cli_value);
    cli(&["disable", "probe", "1"], b"");
    cli(&["enable", "probe", "1"], b"");

    // Describes, in both formats.
    for format in ["human", "json"] {
        cli(&["--format", format, "list"], b"");
        for secret in ["env-latest", "vol", "probe"] {
            cli(&["--format", format, "versions", secret], b"");
            cli(&["--format", format, "iam", "get", secret], b"");
        }
    }
    cli(&["iam", "test", "probe", "secretmanager.versions.access"], b"");

    // The CLI reads the values back: only its stdout may hold them, and only its stderr is kept.
    for (version, want) in [("1", &bin_value), ("2", &cli_value)] {
        let out = secrets(&state, &["access", "probe", version], b"");
        assert_eq!(&out.stdout, want, "version {version} of `probe`");
        outputs.push((format!("moat secrets access probe {version} stderr"), out.stderr));
    }
    let out = secrets(&state, &["access", "env-latest"], b"");
    assert_eq!(out.stdout, env_value);
    outputs.push(("moat secrets access env-latest stderr".to_owned(), out.stderr));

    // The workload reads them: the volume follows the store, a new instance gets the new env.
    let vol_text = String::from_utf8(vol_value.clone()).unwrap();
    let got = wait_for(admin, "reader", "/file?name=secrets/current", |v| v["data"] == vol_text.as_str());
    assert_eq!(got["data"], vol_text.as_str(), "the volume file did not follow the store");
    let _ = http::try_get(instance(admin, "reader"), "x", "/crash");
    let env_text = String::from_utf8(env_value.clone()).unwrap();
    let got = wait_for(admin, "reader", "/env", |v| v["LATEST_VALUE"] == env_text.as_str());
    assert_eq!(got["LATEST_VALUE"], env_text.as_str(), "the new instance did not read the new version");
    // A version that goes away removes the volume file, which moat logs.
    secrets(&state, &["disable", "vol", "2"], b"");
    let got = wait_for(admin, "reader", "/file?name=secrets/current", |v| v["error"].is_string());
    assert!(got["error"].is_string(), "{got}");
    // A request through the front door, for a decision record.
    let (status, body) = http::get(internet, READER_HOST, "/");
    outputs.push(("a request through the internet listener".to_owned(), body.into_bytes()));
    assert_ne!(status, 0);

    // A write refused for its checksum: the refusal and its audit record name no CRC32C.
    let body = serde_json::json!({"payload": {"data": STANDARD.encode(&crc_value), "dataCrc32c": "1"}});
    let path = "/v1/projects/sec-proj/secrets/probe:addVersion";
    let (status, raw) = api(up.secrets, &token, "POST", path, &body.to_string());
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&raw));
    outputs.push(("a refused addVersion".to_owned(), raw));

    // The API's describes: secrets, versions (by number and `latest`), lists, IAM; both enum forms.
    let mut paths = vec!["/v1/projects/sec-proj/secrets".to_owned()];
    for (secret, newest) in [("env-latest", 2), ("vol", 2), ("probe", 2)] {
        let base = format!("/v1/projects/sec-proj/secrets/{secret}");
        paths.push(base.clone());
        paths.push(format!("{base}/versions"));
        paths.push(format!("{base}/versions/latest"));
        paths.extend((1..=newest).map(|n| format!("{base}/versions/{n}")));
        paths.push(format!("{base}:getIamPolicy"));
    }
    for path in paths {
        for query in ["", "?alt=json", "?$alt=json;enum-encoding=int"] {
            let (status, raw) = api(up.secrets, &token, "GET", &format!("{path}{query}"), "");
            assert_eq!(status, 200, "GET {path}{query}: {}", String::from_utf8_lossy(&raw));
            outputs.push((format!("GET {path}{query}"), raw));
        }
    }
    for path in ["/status", "/metrics"] {
        let (status, body) = http::get(admin, "localhost", path);
        assert_eq!(status, 200, "{path}");
        outputs.push((format!("admin {path}"), body.into_bytes()));
    }

    // explain and check on the same project, every format.
    for format in ["human", "json", "dot", "html"] {
        let out = moat(&["explain", PROJECT, "--format", format]);
        outputs.push((format!("explain --format {format}"), [out.stdout, out.stderr].concat()));
    }
    for format in ["human", "json"] {
        let out = moat(&["explain", PROJECT, "--service", "reader", "--from", "internet", "--format", format]);
        outputs.push((format!("explain --from internet --format {format}"), [out.stdout, out.stderr].concat()));
    }
    for format in ["human", "json", "sarif"] {
        let out = moat(&["check", PROJECT, "--format", format]);
        outputs.push((format!("check --format {format}"), [out.stdout, out.stderr].concat()));
    }

    assert!(up.stop(), "moat up stops cleanly");
    outputs.push(("moat up stdout".to_owned(), up.printed.lock().unwrap().join("\n").into_bytes()));
    let stderr = std::fs::read(&stderr_file).unwrap();
    outputs.push(("moat up stderr".to_owned(), stderr.clone()));
    // The state directory: decision and audit logs, keys, tokens, the sealed store (which must
    // hold no plaintext either); not the mounts, which are the workload's.
    files(&state, &state.join("instances"), &mut outputs);

    // The search covered what it claims: debug logs were on, every log recorded the events.
    let text = |name: &str| {
        let (_, bytes) = outputs.iter().find(|(n, _)| n.ends_with(name)).unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8_lossy(bytes).into_owned()
    };
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(stderr.contains("DEBUG") && stderr.contains("AddSecretVersion"), "RUST_LOG=trace logged no request");
    assert!(stderr.contains("/secrets/current removed"), "{stderr}");
    assert!(text("secrets/audit.jsonl").contains("probe"));
    assert!(!text("decisions.jsonl").is_empty());
    assert!(text("explain --format html").contains("<html"));
    assert!(text("explain --format dot").contains("digraph"));
    assert!(text("check --format sarif").contains("\"runs\""));
    assert!(text(r#"["--format", "human", "list"] stdout"#).contains("team=leak-test"));

    let found = leaks(&outputs, &values);
    assert!(found.is_empty(), "secret values leaked:\n{}", found.join("\n"));
}
