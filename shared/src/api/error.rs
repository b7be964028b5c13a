//! The HTTP boundary's one error type, and its one mapping to status codes and JSON (SPEC §4).

use serde_json::json;

use crate::audit::AuditError;
use crate::aws::{AwsFailure, FailureKind};
use crate::issue::{GrantError, IssueError};
use crate::keys::KeyError;
use crate::lease::RenewError;
use crate::lease::{LeaseError, PROFILE_LIVE_LIMIT};
use crate::names::Invalid;
use crate::profile::StoreError;
use crate::requests::RequestError;
use crate::revocation::{RevocationError, RevokeError};
use crate::rotation::policy::PolicyError;
use crate::rotation::PolicyRotationError;
use crate::rotation::RotationError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("the request carries no caller identity")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("profile {0} is switched off (enabled: false); ask an admin")]
    ProfileDisabled(String),
    #[error("{0}")]
    RoleNotAllowed(String),
    /// SPEC §12: the profile issues only on an approved access request.
    #[error("{0}")]
    ApprovalRequired(String),
    #[error("{0}")]
    DigestMismatch(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed on this path")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("AWS is throttling requests; retry with backoff")]
    Throttled,
    #[error("you hold {max} live leases of profile {profile}, its max_active_leases; revoke one or wait until one ends")]
    LeaseLimit {
        profile: String,
        max: u32,
        retry_after: u64,
    },
    #[error("profile {0} has {PROFILE_LIVE_LIMIT} live leases, all callers together; retry when one ends")]
    ProfileLeaseLimit(String),
    #[error("{0}")]
    Upstream(String),
    #[error("the audit trail is unavailable, so nothing was done or returned")]
    AuditUnavailable,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden(_)
            | Self::ProfileDisabled(_)
            | Self::RoleNotAllowed(_)
            | Self::ApprovalRequired(_) => 403,
            Self::DigestMismatch(_) => 409,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge => 413,
            Self::Throttled | Self::LeaseLimit { .. } | Self::ProfileLeaseLimit(_) => 429,
            Self::Upstream(_) => 502,
            Self::AuditUnavailable => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::ProfileDisabled(_) => "profile_disabled",
            Self::RoleNotAllowed(_) => "role_not_allowed",
            Self::ApprovalRequired(_) => "approval_required",
            Self::DigestMismatch(_) => "digest_mismatch",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Throttled => "upstream_throttled",
            Self::LeaseLimit { .. } | Self::ProfileLeaseLimit(_) => "lease_limit",
            Self::Upstream(_) => "upstream_error",
            Self::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Seconds for the `Retry-After` header every `429` carries (SPEC §4).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Throttled => Some(1),
            Self::LeaseLimit { retry_after, .. } => Some((*retry_after).max(1)),
            Self::ProfileLeaseLimit(_) => Some(60),
            _ => None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        match self {
            Self::Invalid { field, .. } => error["field"] = json!(field),
            Self::PayloadTooLarge => error["field"] = json!("body"),
            _ => {}
        }
        json!({ "error": error })
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let message = format!("{} {}", e.field, e.message);
        Self::Invalid {
            field: e.field,
            message,
        }
    }
}

pub(super) fn upstream(f: &AwsFailure) -> ApiError {
    match f.kind {
        FailureKind::Throttled => ApiError::Throttled,
        _ => ApiError::Upstream(format!("AWS failed: {f}")),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("profile not found".into()),
            StoreError::Conflict => Self::Conflict(e.to_string()),
            StoreError::Audit(_) => Self::AuditUnavailable,
            StoreError::Aws(f) => upstream(&f),
            StoreError::Corrupt(_) => Self::Upstream(e.to_string()),
            StoreError::Outdated(_) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Unavailable(_) => Self::AuditUnavailable,
            AuditError::Read(f) => upstream(&f),
        }
    }
}

impl From<crate::hygiene::HygieneError> for ApiError {
    fn from(e: crate::hygiene::HygieneError) -> Self {
        use crate::hygiene::HygieneError as H;
        match e {
            H::NotFound(_) => Self::NotFound(e.to_string()),
            H::Refused(_) => Self::Conflict(e.to_string()),
            H::Audit(a) => a.into(),
            H::Iam(f) => upstream(&f),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        if let IssueError::Lease(l @ (LeaseError::Limit { .. } | LeaseError::ProfileLimit(_))) = e {
            return l.into();
        }
        // SPEC §16: the caller's session policy is too large, a 400 naming it (never a 502).
        if let IssueError::PolicyTooLarge(_) = e {
            return Invalid::new("session_policy", e.to_string()).into();
        }
        match e.failure_kind() {
            FailureKind::Throttled => Self::Throttled,
            _ => Self::Upstream(e.to_string()),
        }
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        match (&e, e.failure_kind()) {
            (LeaseError::NotFound, _) => Self::NotFound("lease not found".into()),
            (LeaseError::NotIamUser(_), _) => Self::Conflict(e.to_string()),
            (LeaseError::ProfileLimit(p), _) => Self::ProfileLeaseLimit(p.clone()),
            (
                LeaseError::Limit {
                    profile,
                    max,
                    retry_after,
                    ..
                },
                _,
            ) => Self::LeaseLimit {
                profile: profile.clone(),
                max: *max,
                retry_after: *retry_after,
            },
            (_, FailureKind::Throttled) => Self::Throttled,
            _ => Self::Upstream(e.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::NotFound => Self::NotFound("rotation policy not found".into()),
            PolicyError::Locked | PolicyError::Conflict => Self::Conflict(e.to_string()),
            PolicyError::Audit(_) => Self::AuditUnavailable,
            PolicyError::Store(f) => upstream(&f),
        }
    }
}

impl From<PolicyRotationError> for ApiError {
    fn from(e: PolicyRotationError) -> Self {
        match e {
            PolicyRotationError::Policy(p) => p.into(),
            PolicyRotationError::Rotation(RotationError::Audit(_)) => Self::AuditUnavailable,
            PolicyRotationError::Rotation(r) => match r.failure_kind() {
                FailureKind::Throttled => Self::Throttled,
                _ => Self::Upstream(format!("the rotation failed: {r}")),
            },
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(e: RevocationError) -> Self {
        match (&e, e.failure_kind()) {
            (
                RevocationError::Busy(_)
                | RevocationError::Full { .. }
                | RevocationError::OwnerFull { .. }
                | RevocationError::LockLost(_)
                | RevocationError::ForeignAccount { .. },
                _,
            ) => Self::Conflict(e.to_string()),
            (RevocationError::Audit(_), _) => Self::AuditUnavailable,
            // The role or base user is not in this account (deleted, or another account's): a
            // fact about the profile, not an AWS failure.
            (RevocationError::Iam { target, .. }, FailureKind::NotFound) => Self::Conflict(format!(
                "{target} does not exist in its account, so no revocation policy can be put on it ({e})"
            )),
            (_, FailureKind::Throttled) => Self::Throttled,
            _ => Self::Upstream(e.to_string()),
        }
    }
}

impl From<RevokeError> for ApiError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::Forbidden(m) => Self::Forbidden(m),
            RevokeError::Conflict(m) => Self::Conflict(m),
            RevokeError::Revocation(e) => e.into(),
            RevokeError::Lease(e) => e.into(),
            RevokeError::Issue(e) => e.into(),
            RevokeError::Audit(e) => e.into(),
            RevokeError::AuditUnavailable => Self::AuditUnavailable,
            RevokeError::Store(f) => upstream(&f),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::NotFound(name) => Self::NotFound(format!("profile {name} not found")),
            e @ GrantError::Forbidden(_) => Self::Forbidden(e.to_string()),
            GrantError::Disabled(name) => Self::ProfileDisabled(name.to_string()),
            e @ GrantError::RoleNotAllowed { .. } => Self::RoleNotAllowed(e.to_string()),
            GrantError::Invalid(e) => e.into(),
            GrantError::Profile(e) => e.into(),
            GrantError::Issue(e) => e.into(),
            GrantError::Lease(e) => e.into(),
            GrantError::Audit(e) => e.into(),
            GrantError::AuditUnavailable => Self::AuditUnavailable,
            GrantError::Store(f) => upstream(&f),
            GrantError::ApprovalRequired(m) => Self::ApprovalRequired(m),
            GrantError::Request(e) => e.into(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound => Self::NotFound(e.to_string()),
            RequestError::ProfileNotFound(_) => Self::NotFound(e.to_string()),
            RequestError::Forbidden(m) => Self::Forbidden(m),
            RequestError::ApprovalRequired(m) => Self::ApprovalRequired(m),
            RequestError::Disabled(name) => Self::ProfileDisabled(name.to_string()),
            RequestError::Conflict(m) => Self::Conflict(m),
            e @ RequestError::DigestMismatch(_) => Self::DigestMismatch(e.to_string()),
            RequestError::Invalid(e) => e.into(),
            RequestError::Profile(e) => e.into(),
            RequestError::Audit(e) => e.into(),
            RequestError::AuditUnavailable => Self::AuditUnavailable,
            RequestError::Store(f) => upstream(&f),
            e @ RequestError::Corrupt(_) => Self::Upstream(e.to_string()),
        }
    }
}

impl From<RenewError> for ApiError {
    fn from(e: RenewError) -> Self {
        match e {
            RenewError::Forbidden => Self::Forbidden(e.to_string()),
            RenewError::Conflict(m) => Self::Conflict(m),
            RenewError::Disabled(name) => Self::ProfileDisabled(name.to_string()),
            RenewError::Invalid(e) => e.into(),
            RenewError::Lease(e) => e.into(),
            RenewError::Profile(e) => e.into(),
            RenewError::Audit(e) => e.into(),
            RenewError::AuditUnavailable => Self::AuditUnavailable,
            RenewError::Store(f) => upstream(&f),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            e @ KeyError::NotFound(_) => Self::NotFound(e.to_string()),
            KeyError::Audit(e) => e.into(),
            KeyError::Lease(e) => e.into(),
        }
    }
}
