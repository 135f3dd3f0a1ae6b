//! `run.googleapis.com/secrets`, the cross-project aliases gcloud's `--set-secrets` writes on a
//! revision template: `ALIAS:projects/NUMBER/secrets/NAME,...`. An env var or a volume naming
//! an alias refers to that project's secret; any other name stays a secret of the service's own
//! project. A malformed entry is an error naming the file, not a silently local secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use moat_policy::SourceFile;
use moat_policy::model::{EnvValue, SecretRef};

const MOAT: &str = "project: {id: p, number: '100000000001', region: r}\n";

fn service(annotation: &str) -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: s
spec:
  template:
    metadata:
      annotations:
        run.googleapis.com/secrets: '{annotation}'
    spec:
      containers:
      - image: i
        env:
        - name: OWN
          valueFrom: {{secretKeyRef: {{name: own, key: latest}}}}
        - name: FAR
          valueFrom: {{secretKeyRef: {{name: far, key: '2'}}}}
        - name: LOCAL
          valueFrom: {{secretKeyRef: {{name: plain, key: '1'}}}}
        volumeMounts:
        - {{name: v, mountPath: /s}}
      volumes:
      - name: v
        secret:
          secretName: far
          items:
          - {{key: '3', path: k}}
"#
    )
}

fn load(annotation: &str) -> Result<moat_policy::Project, Vec<String>> {
    let files = [
        SourceFile { path: "moat.yaml".into(), text: MOAT.into() },
        SourceFile { path: "services/s.yaml".into(), text: service(annotation) },
    ];
    moat_policy::load(&files).map_err(|e| e.errors.iter().map(ToString::to_string).collect())
}

fn r(project: Option<&str>, secret: &str, version: &str) -> SecretRef {
    SecretRef { project: project.map(str::to_owned), secret: secret.into(), version: version.into() }
}

#[test]
fn aliases_resolve_env_and_volume_references_and_other_names_stay_local() {
    let p = load("own:projects/100000000001/secrets/db, far:projects/999999999999/secrets/remote-key,").unwrap();
    let s = &p.services["s"];
    let env: Vec<(&str, &SecretRef)> = s
        .env
        .iter()
        .map(|e| match &e.value {
            EnvValue::Secret(r) => (e.name.as_str(), r),
            EnvValue::Plain(_) => panic!("{} is a secret", e.name),
        })
        .collect();
    assert_eq!(
        env,
        [
            ("OWN", &r(Some("100000000001"), "db", "latest")),
            ("FAR", &r(Some("999999999999"), "remote-key", "2")),
            ("LOCAL", &r(None, "plain", "1")),
        ]
    );
    assert_eq!(s.volumes[0].files, [r(Some("999999999999"), "remote-key", "3")]);
}

#[test]
fn malformed_aliases_are_errors_naming_the_entry() {
    for bad in
        ["own", "own:db", "own:secrets/db", "own:projects/100000000001/db", "own:projects/100000000001/versions/db"]
    {
        let errors = load(bad).expect_err(bad);
        let entry = bad.trim();
        assert!(
            errors.iter().any(|e| e
                .contains(&format!("secret alias `{entry}` is not `ALIAS:projects/PROJECT_NUMBER/secrets/NAME`"))
                && e.contains("services/s.yaml")),
            "{bad}: {errors:?}"
        );
    }
}
