//! MOAT013: a Serverless VPC Access connector where Direct VPC egress would do.

use crate::check::{Finding, Rule, Severity};
use crate::model::{Project, VpcAttachment};

pub(crate) const MOAT013: Rule = Rule {
    id: "MOAT013",
    name: "ConnectorInsteadOfDirectVpc",
    title: "Serverless VPC Access connector where Direct VPC egress would do",
    severity: Severity::Info,
    explanation: "A Serverless VPC Access connector is a set of VMs the project runs, pays for and scales, with throughput limits of their own, and firewall rules can only target the connector, not each service. Direct VPC egress puts the revision's traffic straight into a subnet, with network tags per revision; both the project's own networks and Shared VPC subnets work.",
    fix: "Switch the service to Direct VPC egress on a subnet of the same network, keep the egress setting, and delete the connector when nothing uses it.",
    check,
};

fn check(project: &Project) -> Vec<Finding> {
    project
        .services
        .values()
        .filter_map(|s| {
            let vpc = s.vpc.as_ref()?;
            let VpcAttachment::Connector { name } = &vpc.attachment else { return None };
            Some(MOAT013.finding(
                Severity::Info,
                Some(&s.name),
                format!(
                    "`{}` reaches VPC network `{}` through connector `{name}`; Direct VPC egress does the same without connector instances to run and scale",
                    s.name, vpc.network
                ),
                format!(
                    "`gcloud run services update {} --clear-vpc-connector --network {} --subnet SUBNET --vpc-egress {}`",
                    s.name, vpc.network.network, vpc.egress.value
                ),
                &vpc.source,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project, v1_full};

    #[test]
    fn connectors_are_reported_direct_egress_is_not() {
        let moat = "networks:\n  - name: vpc\n    subnets:\n      - {name: run, region: us-central1, range: 10.0.0.0/24}\nconnectors:\n  - {name: conn, network: vpc}\n";
        let cases: &[(&str, bool)] = &[
            ("        run.googleapis.com/vpc-access-connector: conn\n", true),
            (
                "        run.googleapis.com/vpc-access-connector: projects/p/locations/us-central1/connectors/conn\n        run.googleapis.com/vpc-access-egress: all-traffic\n",
                true,
            ),
            (
                "        run.googleapis.com/network-interfaces: '[{\"network\": \"vpc\", \"subnetwork\": \"run\"}]'\n",
                false,
            ),
            ("", false),
        ];
        for (template, expected) in cases {
            let p = project(moat, &[("services/s.yaml", &v1_full("s", "", template, ""))]);
            let found = check(&p);
            let want: &[(&str, Option<&str>)] = if *expected { &[("MOAT013", Some("s"))] } else { &[] };
            assert_eq!(ids(&found), want, "{template}");
            assert!(found.iter().all(|f| f.severity == Severity::Info && f.source.line > 0));
        }
    }
}
