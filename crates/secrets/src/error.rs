//! Errors in Secret Manager's vocabulary: each maps to the google.rpc status the API answers.

/// PUBLIC API CONTRACT (fixed by the lead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// 404 NOT_FOUND; the message names the resource (`Secret [projects/N/secrets/S] not found.`).
    #[error("{0}")]
    NotFound(String),
    /// 409 ALREADY_EXISTS.
    #[error("{0}")]
    AlreadyExists(String),
    /// 400 INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// 400 FAILED_PRECONDITION (`Secret Version [projects/N/secrets/S/versions/V] is in DISABLED state.`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// 403 PERMISSION_DENIED (`Permission 'secretmanager.versions.access' denied for resource '...' (or it may not exist).`).
    #[error("{0}")]
    PermissionDenied(String),
    /// 401 UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// 409 ABORTED: an etag did not match.
    #[error("{0}")]
    Aborted(String),
    /// 500 DATA_LOSS: a sealed payload failed to open (tampered or corrupt on disk).
    #[error("{0}")]
    DataLoss(String),
    /// 500 INTERNAL: the store failed (I/O); the message says what to do.
    #[error("{0}")]
    Internal(String),
}

impl SecretError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::AlreadyExists(_) | Self::Aborted(_) => 409,
            Self::InvalidArgument(_) | Self::FailedPrecondition(_) => 400,
            Self::PermissionDenied(_) => 403,
            Self::Unauthenticated(_) => 401,
            Self::DataLoss(_) | Self::Internal(_) => 500,
        }
    }

    /// The google.rpc.Code name.
    pub fn status(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NOT_FOUND",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Aborted(_) => "ABORTED",
            Self::DataLoss(_) => "DATA_LOSS",
            Self::Internal(_) => "INTERNAL",
        }
    }
}
