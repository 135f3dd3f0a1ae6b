//! Can the origin reach the door at all? Internal load balancers have private addresses that
//! exist only inside their VPC network; everything else is on the internet.

use crate::decision::{Decision, Layer, Reason, Stage};
use crate::model::{LbScheme, LoadBalancer};
use crate::request::NetOrigin;

pub fn reach(origin: &NetOrigin, lb: Option<&LoadBalancer>) -> Stage {
    let Some(lb) = lb.filter(|lb| lb.scheme == LbScheme::Internal) else {
        return Ok(((), Vec::new()));
    };
    match (origin, &lb.network) {
        (NetOrigin::Vpc(n), Some(lbnet)) if n == lbnet => Ok((
            (),
            vec![Reason::new(
                "network.internal_lb_reachable",
                format!("internal load balancer `{}` is in VPC network `{lbnet}`, where the request starts", lb.name),
                Some(&lb.source),
            )],
        )),
        _ => Err(Decision::deny(
            Layer::Network,
            None,
            vec![Reason::new(
                "network.internal_lb_unreachable",
                format!(
                    "internal load balancer `{}` has a private address in VPC network `{}`; {origin} cannot reach it",
                    lb.name,
                    lb.network.as_ref().map(ToString::to_string).unwrap_or_default()
                ),
                Some(&lb.source),
            )],
        )),
    }
}
