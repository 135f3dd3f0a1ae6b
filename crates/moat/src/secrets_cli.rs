//! `moat secrets`: the project's secret store, through the Secret Manager API of the running
//! `moat up` (its URL in `STATE/secrets/endpoint`) with the local admin credential
//! (`STATE/secrets/admin.token`). The CLI never opens the store itself: the running moat holds
//! it, and the API is where authorization and the audit record happen. The one exception is
//! `rotate-master-key` when no moat is running (`secrets_rotate`).
//!
//! A secret value only ever enters through stdin or `--data-file` (an argument would sit in
//! the shell history and in `ps`), and only `access` prints one, raw, with nothing around it.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use miette::Diagnostic;
use serde_json::{Value, json};

use crate::exit::{Exit, report};
use crate::identity::state_dir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    pub project: PathBuf,
    /// State directory of the running moat. Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR", global = true)]
    pub state: Option<PathBuf>,
    /// The Secret Manager API to call. Default: the one the running `moat up` wrote to
    /// STATE/secrets/endpoint.
    #[arg(long, value_name = "URL", global = true)]
    pub endpoint: Option<String>,
    /// `human` tables, or the API's own JSON for scripts (`access` always prints the raw value).
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a secret (no versions unless `--data-file` gives the first value).
    Create {
        name: String,
        /// A label, `KEY=VALUE`; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Also add version 1 with the contents of PATH (`-`: stdin).
        #[arg(long, value_name = "PATH")]
        data_file: Option<PathBuf>,
    },
    /// Add a version whose value is read from stdin, or from `--data-file`.
    Add {
        name: String,
        /// Read the value from PATH instead of stdin (`-`: stdin).
        #[arg(long, value_name = "PATH")]
        data_file: Option<PathBuf>,
    },
    /// Write a version's value to stdout, raw (nothing else is printed).
    Access {
        name: String,
        /// `latest` (the newest version, whatever its state) or a version number.
        #[arg(default_value = "latest")]
        version: String,
    },
    /// List the secrets.
    List,
    /// List a secret's versions, newest first.
    Versions { name: String },
    /// Enable a disabled version.
    Enable(StateArgs),
    /// Disable a version: its value is kept but cannot be read until it is enabled again.
    Disable(StateArgs),
    /// Destroy a version: its value is wiped for good.
    Destroy(StateArgs),
    /// Delete a secret and all its versions.
    Delete {
        name: String,
        /// Only if the secret's etag is still this one.
        #[arg(long)]
        etag: Option<String>,
    },
    /// A secret's IAM policy.
    #[command(subcommand)]
    Iam(IamCommand),
    /// Rotate the master key file: every data key is re-wrapped under a new key, payloads are
    /// untouched. Through the running moat, or on the store directly when none runs.
    RotateMasterKey,
}

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    pub name: String,
    /// A version number (or `latest`).
    pub version: String,
    /// Only if the version's etag is still this one.
    #[arg(long)]
    pub etag: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum IamCommand {
    /// Print the policy.
    Get { name: String },
    /// Replace the policy with the JSON policy in FILE (`-`: stdin), as `iam get --format json`
    /// prints it; an `etag` in it must still be current.
    Set { name: String, file: PathBuf },
    /// Which of PERMISSIONs the caller (the admin credential) holds on the secret.
    Test {
        name: String,
        #[arg(required = true)]
        permissions: Vec<String>,
    },
}

/// Why `moat secrets` failed. Every variant exits with status 2.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SecretsCliError {
    #[error("no moat is running for {project}: start `moat up {project}` first")]
    #[diagnostic(help("{detail}"))]
    NotRunning { project: String, detail: String },
    #[error("{message} ({status})")]
    #[diagnostic(help("{help}"))]
    Api { status: String, message: String, help: String },
    #[error("{0}")]
    Usage(String),
}

/// `STATE/secrets/endpoint` while a moat runs: the URL of its Secret Manager API. Written
/// atomically (temporary file, then rename); removed when the guard is dropped.
#[derive(Debug)]
pub struct EndpointFile(PathBuf);

impl EndpointFile {
    pub fn path(state: &Path) -> PathBuf {
        state.join("secrets").join("endpoint")
    }

    pub fn write(state: &Path, addr: SocketAddr) -> Result<Self, String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = Self::path(state);
        let tmp = path.with_file_name(format!(".endpoint.{}", std::process::id()));
        let fail = |e: std::io::Error| format!("cannot write the secret API's endpoint file `{}`: {e}", path.display());
        // 0600 like everything else in `STATE/secrets`.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("http://{addr}\n").as_bytes()))
            .map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(Self(path))
    }
}

impl Drop for EndpointFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(args: Args) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return report(SecretsCliError::Usage(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(execute(&args)) {
        Ok(out) => match write_out(&out) {
            Ok(()) => Exit::Clean,
            Err(e) => report(SecretsCliError::Usage(format!("cannot write to stdout: {e}"))),
        },
        Err(e) => report(e),
    }
}

fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Runs the command; returns exactly what goes to stdout.
async fn execute(args: &Args) -> Result<Vec<u8>, miette::Report> {
    let project = crate::project_dir::load(&args.project)?;
    if matches!(args.command, Command::RotateMasterKey) {
        return crate::secrets_rotate::rotate(args, project).await;
    }
    let api = Api::connect(args)?;
    let parent = format!("projects/{}", project.id);
    let secret = |name: &str| format!("{parent}/secrets/{name}");
    let human = args.format == Format::Human;
    let show = |v: &Value, text: String| if human { text.into_bytes() } else { json_line(v) };
    match &args.command {
        Command::Create { name, labels, data_file } => {
            let labels = parse_labels(labels)?;
            // Read the value first: a secret created without its value would be half done.
            let data = data_file.as_deref().map(read_value).transpose()?;
            let body = json!({"replication": {"automatic": {}}, "labels": labels});
            let created =
                api.call(Method::POST, &format!("{parent}/secrets?secretId={}", form_encode(name)), Some(body)).await?;
            let mut text = format!("created secret `{name}` ({})\n", at(&created, "name").as_str().unwrap_or(""));
            let mut out = vec![created];
            if let Some(data) = data {
                let v = api.call(Method::POST, &format!("{}:addVersion", secret(name)), Some(payload(&data))).await?;
                text.push_str(&format!("added version {} of `{name}`\n", version_number(&v)));
                out.push(v);
            }
            Ok(show(&Value::Array(out), text))
        }
        Command::Add { name, data_file } => {
            let data = read_value(data_file.as_deref().unwrap_or(Path::new("-")))?;
            let v = api.call(Method::POST, &format!("{}:addVersion", secret(name)), Some(payload(&data))).await?;
            Ok(show(&v, format!("added version {} of `{name}`\n", version_number(&v))))
        }
        Command::Access { name, version } => {
            let v = api.call(Method::GET, &format!("{}/versions/{version}:access", secret(name)), None).await?;
            decode_payload(&v).map_err(Into::into)
        }
        Command::List => {
            let items = api.list(&format!("{parent}/secrets"), "secrets").await?;
            Ok(show(&Value::Array(items.clone()), render_secrets(&items)))
        }
        Command::Versions { name } => {
            let items = api.list(&format!("{}/versions", secret(name)), "versions").await?;
            Ok(show(&Value::Array(items.clone()), render_versions(&items)))
        }
        Command::Enable(a) | Command::Disable(a) | Command::Destroy(a) => {
            let verb = match &args.command {
                Command::Enable(_) => "enable",
                Command::Disable(_) => "disable",
                _ => "destroy",
            };
            let body = a.etag.as_ref().map_or_else(|| json!({}), |e| json!({ "etag": e }));
            let path = format!("{}/versions/{}:{verb}", secret(&a.name), a.version);
            let v = api.call(Method::POST, &path, Some(body)).await?;
            let state = at(&v, "state").as_str().unwrap_or("?");
            Ok(show(&v, format!("version {} of `{}` is {state}\n", version_number(&v), a.name)))
        }
        Command::Delete { name, etag } => {
            let query = etag.as_ref().map(|e| format!("?etag={}", form_encode(e))).unwrap_or_default();
            let v = api.call(Method::DELETE, &format!("{}{query}", secret(name)), None).await?;
            Ok(show(&v, format!("deleted secret `{name}` and all its versions\n")))
        }
        Command::Iam(IamCommand::Get { name }) => {
            let v = api.call(Method::GET, &format!("{}:getIamPolicy", secret(name)), None).await?;
            Ok(show(&v, render_policy(&v)))
        }
        Command::Iam(IamCommand::Set { name, file }) => {
            let policy = read_policy(file)?;
            let v = api
                .call(Method::POST, &format!("{}:setIamPolicy", secret(name)), Some(json!({"policy": policy})))
                .await?;
            Ok(show(&v, format!("set the IAM policy of `{name}`:\n{}", render_policy(&v))))
        }
        Command::RotateMasterKey => Err(SecretsCliError::Usage("rotate-master-key is handled above".into()).into()),
        Command::Iam(IamCommand::Test { name, permissions }) => {
            let body = json!({ "permissions": permissions });
            let v = api.call(Method::POST, &format!("{}:testIamPermissions", secret(name)), Some(body)).await?;
            let held: Vec<&str> =
                at(&v, "permissions").as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            Ok(show(&v, held.iter().map(|p| format!("{p}\n")).collect()))
        }
    }
}

/// The API of the running moat, called with the admin credential.
pub(crate) struct Api {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
    project: String,
}

impl Api {
    pub(crate) fn connect(args: &Args) -> Result<Self, SecretsCliError> {
        let state = state_dir(&args.project, args.state.as_deref());
        let not_running =
            |detail: String| SecretsCliError::NotRunning { project: args.project.display().to_string(), detail };
        let base = match &args.endpoint {
            Some(e) => e.clone(),
            None => {
                let file = EndpointFile::path(&state);
                std::fs::read_to_string(&file).map_err(|_| {
                    not_running(format!(
                        "`{}` does not exist (pass `--state DIR` if moat runs with one, or `--endpoint URL`)",
                        file.display()
                    ))
                })?
            }
        };
        let base = base.trim().trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(SecretsCliError::Usage(format!(
                "`{base}` is not an http:// URL: pass the URL `moat up` listed for `secrets`"
            )));
        }
        let token_file = state.join("secrets").join("admin.token");
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| not_running(format!("cannot read the admin credential `{}`: {e}", token_file.display())))?
            .trim()
            .to_owned();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { client, base, token, project: args.project.display().to_string() })
    }

    /// `METHOD /v1/PATH` with `body`; the response's JSON, or the API's error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, SecretsCliError> {
        self.send(method, &format!("/v1/{path}"), body).await
    }

    /// `METHOD PATH` (from the root, e.g. moat's own `/moat/v1/...`) with `body`.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, SecretsCliError> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| SecretsCliError::Usage(format!("cannot build the request for `{path}`: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| SecretsCliError::NotRunning {
            project: self.project.clone(),
            detail: format!(
                "nothing answers at {} ({e}); a stale endpoint file is left behind when moat is killed",
                self.base
            ),
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| SecretsCliError::Usage(format!("the secret API's response was cut short: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::OK {
            return Ok(v);
        }
        let err = at(&v, "error");
        let status_name = at(err, "status").as_str().unwrap_or(status.as_str()).to_owned();
        let message = at(err, "message").as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        Err(SecretsCliError::Api { help: help_for(&status_name).to_owned(), status: status_name, message })
    }

    /// Every page of a list.
    async fn list(&self, path: &str, key: &str) -> Result<Vec<Value>, SecretsCliError> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let query = if token.is_empty() { String::new() } else { format!("?pageToken={}", form_encode(&token)) };
            let v = self.call(Method::GET, &format!("{path}{query}"), None).await?;
            items.extend(at(&v, key).as_array().cloned().unwrap_or_default());
            match at(&v, "nextPageToken").as_str() {
                Some(t) if !t.is_empty() => t.clone_into(&mut token),
                _ => return Ok(items),
            }
        }
    }
}

pub(crate) fn help_for(status: &str) -> &'static str {
    match status {
        "NOT_FOUND" => "`moat secrets list` shows the secrets, `moat secrets versions NAME` their versions",
        "ALREADY_EXISTS" => "add a version to it with `moat secrets add NAME`",
        "FAILED_PRECONDITION" => {
            "a DISABLED version can be enabled with `moat secrets enable NAME VERSION`; a DESTROYED one is gone: add a new version"
        }
        "ABORTED" => "the etag is stale: read the current one and retry",
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => {
            "the admin credential was refused: is the endpoint the API of this project's moat?"
        }
        "INVALID_ARGUMENT" => "fix the request as the message says",
        _ => "see moat's output on stderr",
    }
}

/// The value of a secret: a file, or stdin for `-`.
fn read_value(path: &Path) -> Result<Vec<u8>, SecretsCliError> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("moat: reading the secret value from stdin (end it with Ctrl-D)");
        }
        stdin
            .lock()
            .read_to_end(&mut data)
            .map_err(|e| SecretsCliError::Usage(format!("cannot read the value from stdin: {e}")))?;
    } else {
        data = std::fs::read(path)
            .map_err(|e| SecretsCliError::Usage(format!("cannot read `{}`: {e}", path.display())))?;
    }
    Ok(data)
}

fn payload(data: &[u8]) -> Value {
    json!({"payload": {"data": STANDARD.encode(data), "dataCrc32c": crc32c::crc32c(data).to_string()}})
}

/// The raw value of an `:access` response, checked against its CRC32C as Google asks clients
/// to.
fn decode_payload(v: &Value) -> Result<Vec<u8>, SecretsCliError> {
    let bad = || SecretsCliError::Usage("the secret API answered without a readable payload".into());
    let data = STANDARD.decode(at(v, "payload/data").as_str().unwrap_or("")).map_err(|_| bad())?;
    if let Some(crc) = at(v, "payload/dataCrc32c").as_str().and_then(|c| c.parse::<u32>().ok())
        && crc != crc32c::crc32c(&data)
    {
        return Err(SecretsCliError::Usage(
            "the value read does not match its CRC32C: it was corrupted in transit".into(),
        ));
    }
    Ok(data)
}

fn read_policy(file: &Path) -> Result<Value, SecretsCliError> {
    let text = read_value(file)?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| SecretsCliError::Usage(format!("`{}` is not a JSON IAM policy: {e}", file.display())))?;
    // Accept `{"policy": {...}}` (the request) as well as the policy itself.
    Ok(match v.get("policy") {
        Some(p) if p.is_object() => p.clone(),
        _ => v,
    })
}

fn parse_labels(labels: &[String]) -> Result<serde_json::Map<String, Value>, SecretsCliError> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Value::from(v))),
            _ => Err(SecretsCliError::Usage(format!("label `{l}` is not `KEY=VALUE`"))),
        })
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn json_line(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The value at `a/b/c` in `v`; null when absent.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('/').try_fold(v, |v, k| v.get(k)).unwrap_or(&Value::Null)
}

/// The last segment of a resource name.
fn last(name: &Value) -> &str {
    name.as_str().and_then(|n| n.rsplit('/').next()).unwrap_or("?")
}

fn version_number(v: &Value) -> &str {
    last(at(v, "name"))
}

/// `2026-11-22T08:00:00Z` (the API's timestamp to the second).
fn time(v: &Value) -> String {
    match v.as_str() {
        Some(t) => match t.split_once('.') {
            Some((secs, _)) => format!("{secs}Z"),
            None => t.to_owned(),
        },
        None => "-".to_owned(),
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .chain([header.get(i).map_or(0, |h| h.len())])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn render_secrets(items: &[Value]) -> String {
    if items.is_empty() {
        return "no secrets\n".to_owned();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            let labels: Vec<String> = at(s, "labels")
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            vec![last(at(s, "name")).to_owned(), time(at(s, "createTime")), labels.join(",")]
        })
        .collect();
    table(&["NAME", "CREATED", "LABELS"], &rows)
}

fn render_versions(items: &[Value]) -> String {
    if items.is_empty() {
        return "no versions\n".to_owned();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            let destroyed = if at(v, "destroyTime").is_null() { String::new() } else { time(at(v, "destroyTime")) };
            let state = match at(v, "state") {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![version_number(v).to_owned(), state, time(at(v, "createTime")), destroyed]
        })
        .collect();
    table(&["VERSION", "STATE", "CREATED", "DESTROYED"], &rows)
}

fn render_policy(v: &Value) -> String {
    let bindings = at(v, "bindings").as_array().cloned().unwrap_or_default();
    let mut out = if bindings.is_empty() {
        "no bindings\n".to_owned()
    } else {
        let rows: Vec<Vec<String>> = bindings
            .iter()
            .map(|b| {
                let members: Vec<&str> =
                    at(b, "members").as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let cond = if at(b, "condition").is_null() { "" } else { " (conditional)" };
                vec![format!("{}{cond}", at(b, "role").as_str().unwrap_or("?")), members.join(", ")]
            })
            .collect();
        table(&["ROLE", "MEMBERS"], &rows)
    };
    if let Some(etag) = at(v, "etag").as_str() {
        out.push_str(&format!("etag: {etag}\n"));
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let secrets = vec![
            json!({"name": "projects/1/secrets/db", "createTime": "2026-11-22T08:00:00.123Z", "labels": {"env": "dev", "team": "a"}}),
            json!({"name": "projects/1/secrets/api-key", "createTime": "2026-11-22T08:00:01Z"}),
        ];
        insta::assert_snapshot!(render_secrets(&secrets), @r"
        NAME     CREATED               LABELS
        db       2026-11-22T08:00:00Z  env=dev,team=a
        api-key  2026-11-22T08:00:01Z
        ");
        let versions = vec![
            json!({"name": "projects/1/secrets/db/versions/2", "state": "ENABLED", "createTime": "2026-11-22T08:00:02Z"}),
            json!({"name": "projects/1/secrets/db/versions/1", "state": "DESTROYED", "createTime": "2026-11-22T08:00:00Z", "destroyTime": "2026-11-22T09:00:00.5Z"}),
        ];
        insta::assert_snapshot!(render_versions(&versions), @r"
        VERSION  STATE      CREATED               DESTROYED
        2        ENABLED    2026-11-22T08:00:02Z
        1        DESTROYED  2026-11-22T08:00:00Z  2026-11-22T09:00:00Z
        ");
        let policy = json!({"version": 1, "etag": "Mw==", "bindings": [
            {"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:a@p.iam.gserviceaccount.com", "user:b@example.com"]}]});
        insta::assert_snapshot!(render_policy(&policy), @r"
        ROLE                                MEMBERS
        roles/secretmanager.secretAccessor  serviceAccount:a@p.iam.gserviceaccount.com, user:b@example.com
        etag: Mw==
        ");
        assert_eq!(render_secrets(&[]), "no secrets\n");
        assert_eq!(render_policy(&json!({"etag": "MA=="})), "no bindings\netag: MA==\n");
    }

    #[test]
    fn payloads_carry_their_crc32c_and_are_checked_on_the_way_back() {
        let p = payload(b"hunter2");
        assert_eq!(p, json!({"payload": {"data": "aHVudGVyMg==", "dataCrc32c": "1736498283"}}));
        assert_eq!(decode_payload(&p).unwrap(), b"hunter2");
        let tampered = json!({"payload": {"data": "aHVudGVyMw==", "dataCrc32c": "1736498283"}});
        assert!(decode_payload(&tampered).is_err());
    }

    #[test]
    fn labels_and_query_encoding() {
        let l = parse_labels(&["env=dev".into(), "empty=".into()]).unwrap();
        assert_eq!(Value::Object(l), json!({"env": "dev", "empty": ""}));
        assert!(parse_labels(&["nope".into()]).is_err());
        assert!(parse_labels(&["=v".into()]).is_err());
        assert_eq!(form_encode("a b/\"c\""), "a%20b%2F%22c%22");
    }
}
