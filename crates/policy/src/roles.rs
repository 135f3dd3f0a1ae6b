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
    /// Read a secret version's payload.
    SecretVersionsAccess,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunRoutesInvoke => "run.routes.invoke",
            Self::SecretVersionsAccess => "secretmanager.versions.access",
        }
    }
}

const INVOKE: &[&str] =
    &["roles/run.invoker", "roles/run.servicesInvoker", "roles/run.admin", "roles/editor", "roles/owner"];
const SECRET_ACCESS: &[&str] = &["roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"];

/// Whether `role` carries `permission`.
pub fn grants(role: &str, permission: Permission) -> bool {
    match permission {
        Permission::RunRoutesInvoke => INVOKE.contains(&role),
        Permission::SecretVersionsAccess => SECRET_ACCESS.contains(&role),
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
    fn editor_cannot_read_secret_payloads() {
        assert!(!grants("roles/editor", Permission::SecretVersionsAccess));
        assert!(grants("roles/owner", Permission::SecretVersionsAccess));
        assert!(grants("roles/secretmanager.secretAccessor", Permission::SecretVersionsAccess));
        assert!(!grants("roles/secretmanager.viewer", Permission::SecretVersionsAccess));
    }
}
