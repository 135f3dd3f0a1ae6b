//! Which roles carry the permissions moat decides on.
//!
//! Sources:
//! - `run.routes.invoke`: Cloud Run Invoker, the split Services Invoker role, Cloud Run Admin,
//!   and the basic Owner and Editor roles ("by default a service can be called by Project Owners,
//!   Project Editors, Cloud Run Admins and Cloud Run Invokers", cloud.google.com/run/docs/securing/
//!   authenticating; spec/cloudrun.md §2.1).
//! - `secretmanager.versions.access`: Secret Accessor and Secret Manager Admin (`secretmanager.*`)
//!   per cloud.google.com/iam/docs/roles-permissions/secretmanager, and Owner. The basic Editor
//!   role does *not* carry it: Editor may manage secrets but not read their payloads (IAM basic
//!   roles exclude payload access from Editor; the Secret Manager access-control page lists only
//!   the roles above as granting it). Viewer carries neither permission.
//!
//! Custom roles (`projects/P/roles/X`) are not expanded: moat does not know their permissions,
//! so they never grant (fail closed) and `explain` says so.

/// A permission moat checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Invoke a Cloud Run service.
    RunRoutesInvoke,
    /// Be admitted by IAP to a resource it protects (`iap.webServiceVersions.accessViaIAP`).
    IapAccess,
    /// Read a secret version's payload.
    SecretVersionsAccess,
    SecretsCreate,
    SecretsGet,
    SecretsList,
    SecretsUpdate,
    SecretsDelete,
    SecretsGetIamPolicy,
    SecretsSetIamPolicy,
    SecretVersionsAdd,
    SecretVersionsGet,
    SecretVersionsList,
    SecretVersionsEnable,
    SecretVersionsDisable,
    SecretVersionsDestroy,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunRoutesInvoke => "run.routes.invoke",
            Self::IapAccess => "iap.webServiceVersions.accessViaIAP",
            Self::SecretVersionsAccess => "secretmanager.versions.access",
            Self::SecretsCreate => "secretmanager.secrets.create",
            Self::SecretsGet => "secretmanager.secrets.get",
            Self::SecretsList => "secretmanager.secrets.list",
            Self::SecretsUpdate => "secretmanager.secrets.update",
            Self::SecretsDelete => "secretmanager.secrets.delete",
            Self::SecretsGetIamPolicy => "secretmanager.secrets.getIamPolicy",
            Self::SecretsSetIamPolicy => "secretmanager.secrets.setIamPolicy",
            Self::SecretVersionsAdd => "secretmanager.versions.add",
            Self::SecretVersionsGet => "secretmanager.versions.get",
            Self::SecretVersionsList => "secretmanager.versions.list",
            Self::SecretVersionsEnable => "secretmanager.versions.enable",
            Self::SecretVersionsDisable => "secretmanager.versions.disable",
            Self::SecretVersionsDestroy => "secretmanager.versions.destroy",
        }
    }

    /// The permission named `s` (`secretmanager.versions.access`), for `testIamPermissions`.
    /// Only [`Self::ALL`] is searched: IAP access is a decision input, never asked of the
    /// Secret Manager emulation.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    pub const ALL: [Self; 15] = [
        Self::RunRoutesInvoke,
        Self::SecretVersionsAccess,
        Self::SecretsCreate,
        Self::SecretsGet,
        Self::SecretsList,
        Self::SecretsUpdate,
        Self::SecretsDelete,
        Self::SecretsGetIamPolicy,
        Self::SecretsSetIamPolicy,
        Self::SecretVersionsAdd,
        Self::SecretVersionsGet,
        Self::SecretVersionsList,
        Self::SecretVersionsEnable,
        Self::SecretVersionsDisable,
        Self::SecretVersionsDestroy,
    ];

    fn is_secret_manager(self) -> bool {
        !matches!(self, Self::RunRoutesInvoke | Self::IapAccess)
    }

    /// Reads that the read-only roles carry: metadata, never payloads.
    fn is_secret_read(self) -> bool {
        matches!(
            self,
            Self::SecretsGet
                | Self::SecretsList
                | Self::SecretsGetIamPolicy
                | Self::SecretVersionsGet
                | Self::SecretVersionsList
        )
    }
}

const INVOKE: &[&str] =
    &["roles/run.invoker", "roles/run.servicesInvoker", "roles/run.admin", "roles/editor", "roles/owner"];
/// The role IAP admits (IAP-secured Web App User).
pub const IAP_ACCESSOR: &str = "roles/iap.httpsResourceAccessor";
const SECRET_ACCESS: &[&str] = &["roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"];

/// Whether `role` carries `permission`.
///
/// Secret Manager roles per cloud.google.com/iam/docs/roles-permissions/secretmanager:
/// `admin` carries `secretmanager.*`; `viewer` the metadata reads (secrets and versions get and
/// list, getIamPolicy); `secretVersionAdder` `versions.add`; `secretVersionManager` adding and
/// changing the state of versions plus reading their metadata; `secretAccessor` only
/// `versions.access`. Basic roles: Owner carries everything; Editor everything but payload
/// access and setIamPolicy; Viewer the metadata reads.
pub fn grants(role: &str, permission: Permission) -> bool {
    use Permission as P;
    match permission {
        P::RunRoutesInvoke => INVOKE.contains(&role),
        // Only the IAP-secured Web App User role: Owner lets one edit the IAP policy, not pass
        // IAP (cloud.google.com/iap/docs/managing-access, "Owner ... only allows modifying the
        // policy, not accessing the app").
        P::IapAccess => role == IAP_ACCESSOR,
        P::SecretVersionsAccess => SECRET_ACCESS.contains(&role),
        p if p.is_secret_manager() => match role {
            "roles/owner" | "roles/secretmanager.admin" => true,
            "roles/editor" => p != P::SecretsSetIamPolicy,
            "roles/viewer" | "roles/secretmanager.viewer" => p.is_secret_read(),
            "roles/secretmanager.secretVersionAdder" => p == P::SecretVersionsAdd,
            "roles/secretmanager.secretVersionManager" => matches!(
                p,
                P::SecretVersionsAdd
                    | P::SecretVersionsGet
                    | P::SecretVersionsList
                    | P::SecretVersionsEnable
                    | P::SecretVersionsDisable
                    | P::SecretVersionsDestroy
            ),
            _ => false,
        },
        _ => false,
    }
}

/// The basic (primitive) roles: far broader than any workload needs.
pub fn is_basic(role: &str) -> bool {
    matches!(role, "roles/owner" | "roles/editor" | "roles/viewer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_catalogue() {
        for r in INVOKE {
            assert!(grants(r, Permission::RunRoutesInvoke), "{r}");
        }
        for r in ["roles/viewer", "roles/run.viewer", "roles/run.developer", "roles/secretmanager.secretAccessor"] {
            assert!(!grants(r, Permission::RunRoutesInvoke), "{r}");
        }
    }

    #[test]
    fn secret_manager_roles_split_metadata_mutation_and_payload() {
        use Permission as P;
        assert!(grants("roles/editor", P::SecretVersionsAdd) && !grants("roles/editor", P::SecretsSetIamPolicy));
        assert!(grants("roles/secretmanager.viewer", P::SecretsList));
        assert!(!grants("roles/secretmanager.viewer", P::SecretVersionsAdd));
        assert!(grants("roles/secretmanager.secretVersionAdder", P::SecretVersionsAdd));
        assert!(!grants("roles/secretmanager.secretVersionAdder", P::SecretVersionsAccess));
        assert!(grants("roles/secretmanager.secretVersionManager", P::SecretVersionsDestroy));
        assert!(!grants("roles/secretmanager.secretAccessor", P::SecretsGet));
        assert!(!grants("roles/run.admin", P::SecretsGet));
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert!(grants("roles/owner", p));
        }
    }

    #[test]
    fn only_the_accessor_role_passes_iap() {
        assert!(grants(IAP_ACCESSOR, Permission::IapAccess));
        for r in ["roles/owner", "roles/editor", "roles/run.invoker", "roles/iap.admin"] {
            assert!(!grants(r, Permission::IapAccess), "{r}");
        }
        assert!(!grants(IAP_ACCESSOR, Permission::RunRoutesInvoke));
        assert!(!grants(IAP_ACCESSOR, Permission::SecretsGet));
    }

    #[test]
    fn editor_cannot_read_secret_payloads() {
        assert!(!grants("roles/editor", Permission::SecretVersionsAccess));
        assert!(grants("roles/owner", Permission::SecretVersionsAccess));
        assert!(grants("roles/secretmanager.secretAccessor", Permission::SecretVersionsAccess));
        assert!(!grants("roles/secretmanager.viewer", Permission::SecretVersionsAccess));
    }
}
