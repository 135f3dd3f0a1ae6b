//! The ingress decision (spec/cloudrun.md §1): may a request from this origin, through this
//! door, reach the service at all? Refused requests get a 404 and never reach the container.

use crate::decision::{Decision, Layer, Reason, Stage};
use crate::model::{Ingress, LbScheme, Project, Service};
use crate::request::NetOrigin;
use crate::source::SourceRef;

/// The door as ingress sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// A run.app URL, tag URLs included.
    DefaultUrl,
    CustomDomain,
    ExternalLb,
    InternalLb,
}

impl Door {
    pub fn of_lb(scheme: LbScheme) -> Self {
        match scheme {
            LbScheme::External => Self::ExternalLb,
            LbScheme::Internal => Self::InternalLb,
        }
    }
}

/// The line reasons point at: `ingress-status` while it differs from `ingress` (it decided),
/// else the `ingress` annotation, the one the owner edits (the values are then the same).
fn setting_source(service: &Service) -> &SourceRef {
    service.ingress_pending().map_or(&service.ingress.source, |s| &s.source)
}

fn refuse(code: &'static str, message: String, service: &Service) -> Decision {
    Decision::deny(Layer::Ingress, Some(404), vec![Reason::new(code, message, Some(setting_source(service)))])
}

fn admit(code: &'static str, message: String, service: &Service) -> Stage {
    Ok(((), vec![Reason::new(code, message, Some(setting_source(service)))]))
}

/// Reason code when the export's `ingress-status` differs from its `ingress`.
pub const ROLLOUT_PENDING: &str = "ingress.rollout_pending";

/// The ingress decision, on the setting in force ([`Service::ingress_in_force`]). When the
/// desired setting differs, the first reason says so and that the one in force decided.
pub fn ingress(origin: &NetOrigin, door: Door, service: &Service, project: &Project) -> Stage {
    let Some(in_force) = service.ingress_pending() else {
        return decide(origin, door, service, project);
    };
    let note = Reason::new(
        ROLLOUT_PENDING,
        format!(
            "`{}` asks for ingress `{}`, but the server reports `{}` in force (`ingress-status`): until the rollout finishes, the setting in force decides",
            service.name, service.ingress.value, in_force.value
        ),
        Some(&in_force.source),
    );
    let prepend = |mut r: Vec<Reason>| {
        r.insert(0, note.clone());
        r
    };
    match decide(origin, door, service, project) {
        Ok(((), r)) => Ok(((), prepend(r))),
        Err(mut d) => {
            d.reasons = prepend(d.reasons);
            Err(d)
        }
    }
}

fn decide(origin: &NetOrigin, door: Door, service: &Service, project: &Project) -> Stage {
    let setting = service.ingress_in_force().value;
    let name = &service.name;
    if door == Door::DefaultUrl && service.default_url_disabled.value {
        return Err(Decision::deny(
            Layer::Ingress,
            Some(404),
            vec![Reason::new(
                "ingress.default_url_disabled",
                format!("`{name}` has its run.app URL disabled"),
                Some(&service.default_url_disabled.source),
            )],
        ));
    }
    match setting {
        Ingress::None => {
            return Err(refuse("ingress.none", format!("`{name}` admits no traffic (ingress `none`)"), service));
        }
        Ingress::All => {
            return admit("ingress.all", format!("`{name}` has ingress `all`: every source is admitted"), service);
        }
        Ingress::Internal | Ingress::InternalAndCloudLoadBalancing => {}
    }
    match door {
        Door::InternalLb => {
            return admit(
                "ingress.internal_lb",
                format!("internal load balancers are internal under ingress `{setting}`"),
                service,
            );
        }
        Door::ExternalLb if setting == Ingress::InternalAndCloudLoadBalancing => {
            return admit(
                "ingress.external_lb",
                format!("ingress `{setting}` admits external Application Load Balancers"),
                service,
            );
        }
        Door::ExternalLb => {
            return Err(refuse(
                "ingress.external_lb_refused",
                "ingress `internal` refuses external load balancers; use `internal-and-cloud-load-balancing` to admit them"
                    .to_owned(),
                service,
            ));
        }
        Door::DefaultUrl | Door::CustomDomain => {}
    }
    match origin {
        NetOrigin::Vpc(net) if project.owns_network(net) => admit(
            "ingress.same_project_vpc",
            format!("VPC network `{}` is in the service's project, so the request is internal", net.network),
            service,
        ),
        NetOrigin::Vpc(net) if project.is_shared_vpc(net) => {
            // A Shared VPC network counts only when the serving revision egresses to it.
            let attached = service.vpc.as_ref().is_some_and(|v| &v.network == net);
            if attached {
                admit(
                    "ingress.shared_vpc",
                    format!(
                        "`{name}`'s revision is attached to Shared VPC network `{net}`, so requests from it are internal"
                    ),
                    service,
                )
            } else if project.in_perimeter(&net.project) {
                // The perimeter is an alternative source of "internal" (spec/cloudrun.md §1.2 #2).
                admit(
                    "ingress.vpc_sc_perimeter",
                    format!("project `{}` is inside the service's VPC Service Controls perimeter", net.project),
                    service,
                )
            } else {
                Err(refuse(
                    "ingress.shared_vpc_not_attached",
                    format!(
                        "Shared VPC network `{net}` counts as internal only for revisions that egress to it, and `{name}` does not; ingress `{setting}` refuses it"
                    ),
                    service,
                ))
            }
        }
        NetOrigin::Vpc(net) if project.in_perimeter(&net.project) => admit(
            "ingress.vpc_sc_perimeter",
            format!("project `{}` is inside the service's VPC Service Controls perimeter", net.project),
            service,
        ),
        NetOrigin::Google { product, project: p } => {
            if door != Door::DefaultUrl {
                return Err(refuse(
                    "ingress.google_product_custom_domain",
                    format!("{} is internal only when it calls the run.app URL, not a custom domain", product.as_str()),
                    service,
                ));
            }
            if project.is_self(p) || project.in_perimeter(p) {
                admit(
                    "ingress.google_product",
                    format!(
                        "{} in the same project or perimeter calling the run.app URL is internal",
                        product.as_str()
                    ),
                    service,
                )
            } else {
                Err(refuse(
                    "ingress.google_product_other_project",
                    format!("{} in project `{p}` is outside the service's project and perimeter", product.as_str()),
                    service,
                ))
            }
        }
        NetOrigin::Vpc(net) => Err(refuse(
            "ingress.internal_only",
            format!("VPC network `{net}` belongs to another project; ingress `{setting}` admits only internal sources"),
            service,
        )),
        NetOrigin::Internet => Err(refuse(
            "ingress.internal_only",
            format!("ingress `{setting}` refuses requests from the internet"),
            service,
        )),
    }
}
