//! Request facts: where a request comes from (`Origin`), which door it uses (`Entry`) and who
//! sends it (`Principal`, `TokenFacts`). The front door builds these from the listener and the
//! verified token; `explain` parses them from the command line.

use std::fmt;
use std::str::FromStr;

use crate::model::NetworkRef;

/// Google products that may call an `internal` service (spec/cloudrun.md §1.2 #5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoogleProduct {
    Scheduler,
    Tasks,
    PubSub,
    Eventarc,
    Workflows,
    BigQuery,
    DialogflowCx,
    SyntheticMonitors,
}

impl GoogleProduct {
    pub const ALL: [Self; 8] = [
        Self::Scheduler,
        Self::Tasks,
        Self::PubSub,
        Self::Eventarc,
        Self::Workflows,
        Self::BigQuery,
        Self::DialogflowCx,
        Self::SyntheticMonitors,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Tasks => "tasks",
            Self::PubSub => "pubsub",
            Self::Eventarc => "eventarc",
            Self::Workflows => "workflows",
            Self::BigQuery => "bigquery",
            Self::DialogflowCx => "dialogflow-cx",
            Self::SyntheticMonitors => "synthetic-monitors",
        }
    }
}

/// Where a request comes from, as the caller names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Internet,
    /// A VPC network; `project` is the owning project (this project or a Shared VPC host).
    Vpc(NetworkRef),
    Google {
        product: GoogleProduct,
        project: String,
    },
    /// Another Cloud Run service of the project; resolved through its egress settings.
    Service(String),
}

/// Where a request comes from on the network, once a calling service has been resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetOrigin {
    Internet,
    Vpc(NetworkRef),
    Google { product: GoogleProduct, project: String },
}

/// The door a request uses to reach a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    /// The service's `run.app` URL.
    DefaultUrl,
    /// A traffic tag's URL (`https://TAG---HOST`): a default URL too, same ingress.
    Tag(String),
    /// A custom domain mapped to the service.
    Domain(String),
    /// A load balancer, external or internal.
    Lb(String),
}

/// Who the caller is once its token has been authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    Anonymous,
    User(String),
    ServiceAccount(String),
    /// A subject of a trusted issuer other than Google that no email of its configured domains
    /// names: `principal://ISSUER/subject/SUB` (moat_crypto's `federated_principal`). Matched
    /// only by the identical `principal://` IAM member.
    Federated(String),
}

impl Principal {
    pub fn email(&self) -> Option<&str> {
        match self {
            Self::Anonymous | Self::Federated(_) => None,
            Self::User(e) | Self::ServiceAccount(e) => Some(e),
        }
    }

    /// The principal a verified token's `email` claim names: service-account emails end in
    /// `gserviceaccount.com` (spec/cloudrun.md §2.6 #6).
    pub fn from_email(email: &str) -> Self {
        let e = email.to_ascii_lowercase();
        if e.ends_with(".gserviceaccount.com") { Self::ServiceAccount(e) } else { Self::User(e) }
    }
}

/// The claims of a token whose signature, issuer and lifetime have already been verified (by
/// the crypto crate in the front door; assumed valid in `explain`). Only what IAM needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub principal: Principal,
    pub email_verified: bool,
    pub audiences: Vec<String>,
    /// Google Workspace domain (`hd` claim) for user accounts.
    pub hosted_domain: Option<String>,
}

/// A malformed origin, entry or principal on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl FromStr for Origin {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError(format!(
                "`{s}` is not an origin: use `internet`, `vpc:NETWORK`, `vpc:HOSTPROJECT/NETWORK`, `service:NAME` or `google:PRODUCT[@PROJECT]`"
            ))
        };
        if s == "internet" {
            return Ok(Self::Internet);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            // The project is filled in by `Origin::in_project` when it is not given.
            "vpc" => Ok(match rest.split_once('/') {
                Some((p, n)) if !p.is_empty() && !n.is_empty() => {
                    Self::Vpc(NetworkRef { project: p.into(), network: n.into() })
                }
                Some(_) => return Err(bad()),
                None => Self::Vpc(NetworkRef { project: String::new(), network: rest.into() }),
            }),
            "service" => Ok(Self::Service(rest.to_owned())),
            "google" => {
                let (product, project) = rest.split_once('@').unwrap_or((rest, ""));
                let product = GoogleProduct::ALL.into_iter().find(|p| p.as_str() == product).ok_or_else(|| {
                    let names: Vec<_> = GoogleProduct::ALL.iter().map(|p| p.as_str()).collect();
                    ParseError(format!(
                        "`{product}` is not a Google product moat knows: use one of {}",
                        names.join(", ")
                    ))
                })?;
                Ok(Self::Google { product, project: project.to_owned() })
            }
            _ => Err(bad()),
        }
    }
}

impl Origin {
    /// Fills in this project where the origin left the project out.
    pub fn in_project(self, project_id: &str) -> Self {
        match self {
            Self::Vpc(n) if n.project.is_empty() => {
                Self::Vpc(NetworkRef { project: project_id.into(), network: n.network })
            }
            Self::Google { product, project } if project.is_empty() => {
                Self::Google { product, project: project_id.into() }
            }
            other => other,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internet => f.write_str("internet"),
            Self::Vpc(n) => write!(f, "vpc:{}/{}", n.project, n.network),
            Self::Google { product, project } => write!(f, "google:{}@{project}", product.as_str()),
            Self::Service(s) => write!(f, "service:{s}"),
        }
    }
}

impl fmt::Display for NetOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internet => f.write_str("the internet"),
            Self::Vpc(n) => write!(f, "VPC network `{}/{}`", n.project, n.network),
            Self::Google { product, project } => {
                write!(f, "Google product `{}` in project `{project}`", product.as_str())
            }
        }
    }
}

impl FromStr for Entry {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad =
            || ParseError(format!("`{s}` is not an entry: use `default-url`, `tag:TAG`, `domain:HOST` or `lb:NAME`"));
        if s == "default-url" {
            return Ok(Self::DefaultUrl);
        }
        match s.split_once(':') {
            Some(("tag", t)) if !t.is_empty() => Ok(Self::Tag(t.to_owned())),
            Some(("domain", d)) if !d.is_empty() => Ok(Self::Domain(d.to_ascii_lowercase())),
            Some(("lb", l)) if !l.is_empty() => Ok(Self::Lb(l.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultUrl => f.write_str("default-url"),
            Self::Tag(t) => write!(f, "tag:{t}"),
            Self::Domain(d) => write!(f, "domain:{d}"),
            Self::Lb(l) => write!(f, "lb:{l}"),
        }
    }
}

impl FromStr for Principal {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad =
            || ParseError(format!("`{s}` is not a principal: use `anonymous`, `user:EMAIL` or `serviceAccount:EMAIL`"));
        if s == "anonymous" {
            return Ok(Self::Anonymous);
        }
        if s.starts_with("principal://") {
            return Ok(Self::Federated(s.to_owned()));
        }
        match s.split_once(':') {
            Some(("user", e)) if e.contains('@') => Ok(Self::User(e.to_ascii_lowercase())),
            Some(("serviceAccount", e)) if e.contains('@') => Ok(Self::ServiceAccount(e.to_ascii_lowercase())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::User(e) => write!(f, "user:{e}"),
            Self::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Self::Federated(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_print() {
        let cases = [
            ("internet", "internet"),
            ("vpc:default", "vpc:p/default"),
            ("vpc:host/shared", "vpc:host/shared"),
            ("service:web", "service:web"),
            ("google:pubsub", "google:pubsub@p"),
            ("google:scheduler@other", "google:scheduler@other"),
        ];
        for (s, shown) in cases {
            let o: Origin = s.parse().map(|o: Origin| o.in_project("p")).expect(s);
            assert_eq!(o.to_string(), shown);
        }
        for s in ["", "vpc:", "vpc:/x", "google:fax", "mars", "service:"] {
            assert!(s.parse::<Origin>().is_err(), "{s}");
        }
    }

    #[test]
    fn entries_and_principals_parse() {
        assert_eq!("lb:edge".parse::<Entry>(), Ok(Entry::Lb("edge".into())));
        assert_eq!("domain:Shop.Example.com".parse::<Entry>(), Ok(Entry::Domain("shop.example.com".into())));
        assert!("lb".parse::<Entry>().is_err());
        assert_eq!("user:A@b.c".parse::<Principal>(), Ok(Principal::User("a@b.c".into())));
        assert!("group:a@b.c".parse::<Principal>().is_err());
        assert_eq!(
            Principal::from_email("x@p.iam.gserviceaccount.com"),
            Principal::ServiceAccount("x@p.iam.gserviceaccount.com".into())
        );
    }
}
