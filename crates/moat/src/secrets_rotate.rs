//! `moat secrets rotate-master-key`: one command whether or not moat runs. The store is one
//! redb file that only one process may open, so:
//!
//! - a running moat (its API answers at `STATE/secrets/endpoint`) rotates it itself, asked
//!   through `POST /moat/v1/masterKey:rotate` with the admin credential;
//! - otherwise the CLI opens the store and rotates it directly. A store still held by a moat
//!   whose API cannot be reached is refused with what to do.
//!
//! Either way it is `Secrets::rotate_master_key_file` (crash-safe, docs/SECRETS.md "Rotation"),
//! refused when the key comes from `MOAT_MASTER_KEY`: moat never writes a key file that the
//! variable would override.

use std::path::Path;
use std::sync::Arc;

use hyper::Method;
use moat_policy::Project;
use moat_server::secrets::ROTATE_MASTER_KEY_PATH;
use serde_json::{Value, json};

use crate::identity::state_dir;
use crate::secrets_cli::{Api, Args, Format, SecretsCliError, json_line};

/// Runs the rotation; returns what goes to stdout.
pub(crate) async fn rotate(args: &Args, project: Project) -> Result<Vec<u8>, miette::Report> {
    let outcome = match Api::connect(args) {
        Ok(api) => match api.send(Method::POST, ROTATE_MASTER_KEY_PATH, None).await {
            Ok(v) => Some(with_via(v, "moat")),
            // A stale endpoint file: nothing answers, so the store may well be free.
            Err(SecretsCliError::NotRunning { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        Err(SecretsCliError::NotRunning { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let v = match outcome {
        Some(v) => v,
        None => {
            let state = state_dir(&args.project, args.state.as_deref());
            let dir = state.join("secrets");
            tokio::task::spawn_blocking(move || offline(&dir, project))
                .await
                .map_err(|e| SecretsCliError::Usage(format!("the rotation did not finish: {e}")))??
        }
    };
    if args.format == Format::Json {
        return Ok(json_line(&v));
    }
    let field =
        |k: &str| v.get(k).map_or_else(String::new, |x| x.as_str().map_or_else(|| x.to_string(), str::to_owned));
    let how = if field("via") == "moat" { "by the running moat" } else { "in the store (no moat is running)" };
    Ok(format!(
        "rotated the master key {how}: `{}` -> `{}`, {} versions re-wrapped\n",
        field("previousMasterKeyId"),
        field("masterKeyId"),
        field("versionsRewrapped")
    )
    .into_bytes())
}

fn with_via(mut v: Value, via: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("via".into(), via.into());
    }
    v
}

/// No moat answers: open the store here (which fails if a moat still holds it) and rotate.
fn offline(dir: &Path, project: Project) -> Result<Value, SecretsCliError> {
    let store_file = dir.join(moat_secrets::store::STORE_FILE);
    if !store_file.exists() {
        return Err(SecretsCliError::Usage(format!(
            "there is no secret store at `{}`, so no master key to rotate: moat creates both on its first start (pass `--state DIR` if it runs with one)",
            store_file.display()
        )));
    }
    let refused = |e: &dyn std::fmt::Display| SecretsCliError::Api {
        status: "FAILED_PRECONDITION".into(),
        message: format!("cannot rotate the master key of `{}`: {e}", dir.display()),
        help: "nothing was changed".into(),
    };
    let key = moat_secrets::MasterKey::from_env_or_file(&dir.join(moat_secrets::master::MASTER_KEY_FILE))
        .map_err(|e| refused(&e))?;
    let secrets = moat_secrets::Secrets::open(dir, key, Arc::new(project)).map_err(|e| {
        if e.to_string().contains("already open in another process") {
            SecretsCliError::Api {
                status: "UNAVAILABLE".into(),
                message: format!("the secret store `{}` is held by a running moat whose API does not answer", store_file.display()),
                help: "pass `--endpoint URL` with the `secrets` URL that moat printed at start, or stop it and run this again".into(),
            }
        } else {
            refused(&e)
        }
    })?;
    let previous = secrets.master_key_id();
    let n = secrets.rotate_master_key_file().map_err(|e| refused(&e))?;
    Ok(json!({
        "previousMasterKeyId": previous,
        "masterKeyId": secrets.master_key_id(),
        "versionsRewrapped": n,
        "via": "store",
    }))
}
