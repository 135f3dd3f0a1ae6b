//! MOAT029: the ingress setting in force (`ingress-status`) differs from the desired one
//! (`ingress`): a rollout is pending, and until it finishes requests meet the old setting.

use crate::check::{Finding, Rule, Severity};
use crate::model::{Ingress, Project};

pub(crate) const MOAT029: Rule = Rule {
    id: "MOAT029",
    name: "IngressRolloutPending",
    title: "ingress change not yet in force",
    severity: Severity::Medium,
    explanation: "A v1 export carries two ingress annotations: `run.googleapis.com/ingress`, the setting asked for, and `run.googleapis.com/ingress-status`, the one the server reports in force. They differ while a rollout is in progress or after one failed, and until they agree requests meet the setting in force. `moat explain` and the front door decide on the setting in force; the other rules read the desired one. Medium when the setting in force admits more sources than the desired one (the service is more exposed than its configuration says), info when it admits fewer.",
    fix: "Wait for the rollout to finish and export the service again (`gcloud run services describe NAME --format yaml`); if the two still differ, look at the service's latest revision and conditions for the failure, and set the ingress again.",
    check,
};

/// How many sources a setting admits, for comparing two settings.
fn breadth(i: Ingress) -> u8 {
    match i {
        Ingress::None => 0,
        Ingress::Internal => 1,
        Ingress::InternalAndCloudLoadBalancing => 2,
        Ingress::All => 3,
    }
}

fn check(project: &Project) -> Vec<Finding> {
    project
        .services
        .values()
        .filter_map(|s| {
            let in_force = s.ingress_pending()?;
            let (desired, now) = (s.ingress.value, in_force.value);
            let severity = if breadth(now) > breadth(desired) { Severity::Medium } else { Severity::Info };
            Some(MOAT029.finding(
                severity,
                Some(&s.name),
                format!(
                    "`{}`: rollout pending: desired ingress `{desired}` ({}), in force `{now}` ({}); requests meet `{now}` until the rollout finishes",
                    s.name, s.ingress.source, in_force.source
                ),
                format!(
                    "wait for the rollout and export `{}` again; if `ingress-status` stays `{now}`, run `gcloud run services update {} --ingress {desired}` and check the service's conditions",
                    s.name, s.name
                ),
                &in_force.source,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project, v1};

    fn ann(desired: Option<&str>, status: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(d) = desired {
            s.push_str(&format!("    run.googleapis.com/ingress: {d}\n"));
        }
        if let Some(st) = status {
            s.push_str(&format!("    run.googleapis.com/ingress-status: {st}\n"));
        }
        s
    }

    #[test]
    fn reports_only_a_divergence_with_its_severity_and_line() {
        let cases: &[(Option<&str>, Option<&str>, Option<Severity>)] = &[
            (Some("internal"), Some("all"), Some(Severity::Medium)),
            (None, Some("internal"), Some(Severity::Info)),
            (Some("all"), Some("internal-and-cloud-load-balancing"), Some(Severity::Info)),
            (Some("internal-and-cloud-load-balancing"), Some("all"), Some(Severity::Medium)),
            (Some("internal"), Some("internal"), None),
            (Some("internal"), None, None),
            (None, None, None),
        ];
        for (desired, status, expected) in cases {
            let p = project("", &[("services/s.yaml", &v1("s", &ann(*desired, *status), ""))]);
            let found = check(&p);
            let want: &[(&str, Option<&str>)] = if expected.is_some() { &[("MOAT029", Some("s"))] } else { &[] };
            assert_eq!(ids(&found), want, "{desired:?} {status:?}");
            if let (Some(sev), Some(f)) = (expected, found.first()) {
                assert_eq!(f.severity, *sev, "{desired:?} {status:?}");
                // The annotations start on line 8 of the test export; ingress-status follows ingress.
                let line = if desired.is_some() { 9 } else { 8 };
                assert_eq!((f.source.file.as_ref(), f.source.line), ("services/s.yaml", line));
                assert!(f.message.contains("rollout pending"), "{}", f.message);
            }
        }
    }

    #[test]
    fn a_malformed_ingress_status_does_not_load() {
        let files = [
            crate::SourceFile { path: "moat.yaml".into(), text: crate::check::testing::HEAD.to_owned() },
            crate::SourceFile { path: "services/s.yaml".into(), text: v1("s", &ann(None, Some("sideways")), "") },
        ];
        let errs = crate::load(&files).err().map(|e| e.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert!(
            errs.as_ref().is_some_and(|e| e.iter().any(|m| m.contains("services/s.yaml:8") && m.contains("sideways"))),
            "{errs:?}"
        );
    }
}
