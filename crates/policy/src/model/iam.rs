//! IAM policies, bindings and members, as Cloud Run and the project hold them.

use std::fmt;

use crate::source::SourceRef;

/// An IAM member as written in a binding (`user:a@b.c`, `allUsers`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    AllUsers,
    AllAuthenticatedUsers,
    User(String),
    ServiceAccount(String),
    Group(String),
    Domain(String),
    ProjectOwner(String),
    ProjectEditor(String),
    ProjectViewer(String),
    /// Workforce/Workload Identity Federation (`principal://`, `principalSet://`). A
    /// `principal://` member matches the identical principal of a token from a trusted
    /// non-Google issuer (`trust:` in moat.yaml); `principalSet://` is kept so that policies
    /// round-trip, and never matches.
    Federated(String),
    /// `deleted:...`: a member whose account was deleted; never matches.
    Deleted(String),
}

impl Member {
    /// Parses a member string; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "allUsers" => return Ok(Self::AllUsers),
            "allAuthenticatedUsers" => return Ok(Self::AllAuthenticatedUsers),
            _ => {}
        }
        if s.starts_with("principal://") || s.starts_with("principalSet://") {
            return Ok(Self::Federated(s.to_owned()));
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(format!(
                "`{s}` is not an IAM member: expected `allUsers`, `allAuthenticatedUsers` or `KIND:VALUE` (user:, serviceAccount:, group:, domain:)"
            ));
        };
        if rest.is_empty() {
            return Err(format!("member `{s}` has nothing after `{kind}:`"));
        }
        let email = |what: &str| -> Result<String, String> {
            let e = rest.to_ascii_lowercase();
            match e.split_once('@') {
                Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@') => Ok(e),
                _ => Err(format!("member `{s}`: `{rest}` is not a valid {what} email address")),
            }
        };
        match kind {
            "user" => Ok(Self::User(email("user")?)),
            "serviceAccount" => Ok(Self::ServiceAccount(email("service account")?)),
            "group" => Ok(Self::Group(email("group")?)),
            "domain" => {
                if rest.contains('@') || !rest.contains('.') {
                    Err(format!("member `{s}`: `{rest}` is not a domain name"))
                } else {
                    Ok(Self::Domain(rest.to_ascii_lowercase()))
                }
            }
            "projectOwner" => Ok(Self::ProjectOwner(rest.to_owned())),
            "projectEditor" => Ok(Self::ProjectEditor(rest.to_owned())),
            "projectViewer" => Ok(Self::ProjectViewer(rest.to_owned())),
            "deleted" => Ok(Self::Deleted(rest.to_owned())),
            other => Err(format!(
                "member `{s}` has unknown kind `{other}`: use user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers (kinds are case-sensitive)"
            )),
        }
    }

    /// Whether this member makes a binding public (anyone, or anyone with a Google account).
    pub fn is_public(&self) -> bool {
        matches!(self, Self::AllUsers | Self::AllAuthenticatedUsers)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AllUsers => f.write_str("allUsers"),
            Self::AllAuthenticatedUsers => f.write_str("allAuthenticatedUsers"),
            Self::User(e) => write!(f, "user:{e}"),
            Self::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Self::Group(e) => write!(f, "group:{e}"),
            Self::Domain(d) => write!(f, "domain:{d}"),
            Self::ProjectOwner(p) => write!(f, "projectOwner:{p}"),
            Self::ProjectEditor(p) => write!(f, "projectEditor:{p}"),
            Self::ProjectViewer(p) => write!(f, "projectViewer:{p}"),
            Self::Federated(s) => f.write_str(s),
            Self::Deleted(s) => write!(f, "deleted:{s}"),
        }
    }
}

/// An IAM condition. Parsed and kept; see `authz` for how it is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub title: String,
    pub expression: String,
}

#[derive(Debug, Clone)]
pub struct MemberRef {
    pub member: Member,
    pub source: SourceRef,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub role: String,
    pub members: Vec<MemberRef>,
    pub condition: Option<Condition>,
    /// The `role` line of the binding.
    pub source: SourceRef,
    /// Not written by the user: implied by Google (the default compute service account's
    /// automatic Editor grant).
    pub implied: bool,
}

/// An IAM policy attached to a resource (project, service or secret).
#[derive(Debug, Clone, Default)]
pub struct IamPolicy {
    pub bindings: Vec<Binding>,
    /// The file the policy came from (`iam/SERVICE.json`), when it has one of its own.
    pub source: Option<SourceRef>,
}

impl IamPolicy {
    pub fn members(&self) -> impl Iterator<Item = (&Binding, &MemberRef)> {
        self.bindings.iter().flat_map(|b| b.members.iter().map(move |m| (b, m)))
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn parses_every_member_kind() {
        let ok = [
            ("allUsers", Member::AllUsers),
            ("allAuthenticatedUsers", Member::AllAuthenticatedUsers),
            ("user:Dev@Example.com", Member::User("dev@example.com".into())),
            (
                "serviceAccount:a@p.iam.gserviceaccount.com",
                Member::ServiceAccount("a@p.iam.gserviceaccount.com".into()),
            ),
            ("group:ops@example.com", Member::Group("ops@example.com".into())),
            ("domain:example.com", Member::Domain("example.com".into())),
            ("projectOwner:p", Member::ProjectOwner("p".into())),
            ("deleted:user:x@y.z?uid=1", Member::Deleted("user:x@y.z?uid=1".into())),
        ];
        for (s, m) in ok {
            assert_eq!(Member::parse(s), Ok(m), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_members_with_a_reason() {
        for s in ["alluser", "user:", "user:nobody", "serviceaccount:a@b.c", "domain:a@b.c", "user:a@b"] {
            let err = Member::parse(s).expect_err(s);
            assert!(err.contains(s) || err.contains("not"), "{s}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["allUsers", "user:a@b.c", "serviceAccount:x@y.iam.gserviceaccount.com", "domain:b.c"] {
            assert_eq!(Member::parse(s).map(|m| m.to_string()), Ok(s.to_owned()));
        }
    }
}
