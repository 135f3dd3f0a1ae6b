//! Small builders for rule tests: a project from inline moat.yaml and service files.

#![allow(clippy::panic, reason = "test helpers fail the test on a project that does not load")]

use crate::check::Finding;
use crate::model::Project;
use crate::source::SourceFile;

/// Project `p` (number 1234) without Google's automatic Editor grant, plus `extra` moat.yaml.
pub(crate) const HEAD: &str =
    "project:\n  id: p\n  number: \"1234\"\n  region: us-central1\n  automatic_default_sa_grants: false\n";

/// The default compute service account of project `p`.
pub(crate) const DEFAULT_SA: &str = "1234-compute@developer.gserviceaccount.com";

pub(crate) fn project(extra: &str, files: &[(&str, &str)]) -> Project {
    project_raw(&format!("{HEAD}{extra}"), files)
}

pub(crate) fn project_raw(moat: &str, files: &[(&str, &str)]) -> Project {
    let mut all = vec![SourceFile { path: "moat.yaml".into(), text: moat.to_owned() }];
    all.extend(files.iter().map(|(path, text)| SourceFile { path: (*path).to_owned(), text: (*text).to_owned() }));
    match crate::load(&all) {
        Ok(p) => p,
        Err(e) => {
            panic!("test project does not load: {:?}", e.errors.iter().map(ToString::to_string).collect::<Vec<_>>())
        }
    }
}

/// A v1 service: `annotations` are service annotation lines (indented 4), `template` revision
/// template annotation lines (indented 8), `spec` lines under the revision spec (indented 6; a container is added unless `spec` has
/// `containers:`).
pub(crate) fn v1(name: &str, annotations: &str, spec: &str) -> String {
    v1_full(name, annotations, "", spec)
}

pub(crate) fn v1_full(name: &str, annotations: &str, template: &str, spec: &str) -> String {
    let containers = if spec.contains("containers:") { "" } else { "      containers:\n      - image: img\n" };
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: '1234'\n  annotations:\n    run.googleapis.com/client-name: gcloud\n{annotations}spec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/maxScale: '3'\n{template}    spec:\n{spec}{containers}"
    )
}

/// `(rule, service)` of each finding, for compact assertions.
pub(crate) fn ids(found: &[Finding]) -> Vec<(&'static str, Option<&str>)> {
    found.iter().map(|f| (f.rule, f.service.as_deref())).collect()
}
