//! The accounts moat mints tokens for: service accounts (the runtime identity of a service) and
//! users (developers calling through `moat`).

use aws_lc_rs::digest;
use moat_policy::Principal;

/// Whether an account is a service account or a user: decides the IAM member form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    ServiceAccount,
    User,
}

/// An account moat issues ID and access tokens for. The email is always lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    pub email: String,
    pub kind: AccountKind,
}

impl Account {
    pub fn service_account(email: &str) -> Self {
        Self { email: email.to_ascii_lowercase(), kind: AccountKind::ServiceAccount }
    }

    pub fn user(email: &str) -> Self {
        Self { email: email.to_ascii_lowercase(), kind: AccountKind::User }
    }

    /// The account an IAM principal names; `None` for `anonymous`, which has no tokens.
    pub fn from_principal(p: &Principal) -> Option<Self> {
        match p {
            Principal::Anonymous | Principal::Federated(_) => None,
            Principal::User(e) => Some(Self::user(e)),
            Principal::ServiceAccount(e) => Some(Self::service_account(e)),
        }
    }

    pub fn principal(&self) -> Principal {
        match self.kind {
            AccountKind::ServiceAccount => Principal::ServiceAccount(self.email.clone()),
            AccountKind::User => Principal::User(self.email.clone()),
        }
    }

    /// Google's numeric unique id (`sub`, `azp`): 21 digits starting with `1`.
    ///
    /// Derived from SHA-256 of the lower-cased email rather than stored, so the same account
    /// keeps its id across restarts, key rotations and machines without any state.
    pub fn unique_id(&self) -> String {
        let d = digest::digest(&digest::SHA256, self.email.to_ascii_lowercase().as_bytes());
        let mut first = [0u8; 16];
        for (dst, src) in first.iter_mut().zip(d.as_ref()) {
            *dst = *src;
        }
        // 10^20 leaves 20 free digits after the leading `1`; the modulo bias is irrelevant
        // for an identifier.
        let n = u128::from_be_bytes(first) % 100_000_000_000_000_000_000u128;
        format!("1{n:020}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_id_is_21_digits_stable_and_case_insensitive() {
        let a = Account::service_account("Runtime@Proj.iam.gserviceaccount.com");
        let id = a.unique_id();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with('1'));
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(id, Account::user("runtime@proj.iam.gserviceaccount.com").unique_id());
        assert_ne!(id, Account::user("other@proj.iam.gserviceaccount.com").unique_id());
        // Pinned: an id must never change between releases.
        assert_eq!(Account::user("dev@example.com").unique_id(), Account::user("DEV@example.com").unique_id());
        assert_eq!(Account::user("dev@example.com").unique_id(), PINNED_DEV_ID);
    }

    const PINNED_DEV_ID: &str = "178960563480032485768";

    #[test]
    fn principal_round_trip() {
        let cases =
            [Principal::User("a@example.com".into()), Principal::ServiceAccount("sa@p.iam.gserviceaccount.com".into())];
        for p in cases {
            assert_eq!(Account::from_principal(&p).map(|a| a.principal()), Some(p.clone()));
        }
        assert_eq!(Account::from_principal(&Principal::Anonymous), None);
        assert_eq!(Account::service_account("SA@X.iam.gserviceaccount.com").email, "sa@x.iam.gserviceaccount.com");
    }
}
