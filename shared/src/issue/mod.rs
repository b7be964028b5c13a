//! Issuing temporary credentials (SPEC §4–5): the request checked against its profile, then
//! STS issuance ([`sts`]) or a short-lived IAM user ([`user`]); the use case around them, with
//! its authorization and audit trail, is [`Issuing`].

mod grant;
mod scope;
mod sts;
mod user;

pub use grant::{GrantError, Granted, Issuing, Requester};
pub use scope::{ScopeDown, MAX_SESSION_POLICY};
pub use sts::source_identity;
pub use user::IAM_USER_READY_TIMEOUT;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::aws::{AwsFailure, Clients, FailureKind};
use crate::config::StsTarget;
use crate::lease::{Lease, LeaseError, Leases, ISSUE_BUDGET};
use crate::names::{DurationSeconds, Invalid, PolicyArn, RoleArn, SessionName, TokenCode};
use crate::profile::{parse_optional_json, CredentialType, Kind, Profile, Roles};
use crate::secret::AccessKeyPair;
use crate::users::IamError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    duration_seconds: Option<i64>,
    token_code: Option<String>,
    session_name: Option<String>,
    role_arn: Option<String>,
    session_policy: Option<serde_json::Value>,
    policy_arns: Option<Vec<String>>,
    request_id: Option<String>,
}

/// A credentials request, checked against its profile.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub duration: DurationSeconds,
    pub token_code: Option<TokenCode>,
    pub session_name: Option<SessionName>,
    /// `assumed_role`: the role to assume — the profile's one `role_arn`, or the one the request
    /// names, which [`Issuance::role_allowed`] checks against `role_arns`.
    pub role: Option<RoleArn>,
    /// SPEC §16: the request's own session policy and choice of the profile's `policy_arns`.
    pub scope: ScopeDown,
    /// SPEC §12: the approved access request this issuance uses (its duration is the request's).
    pub request_id: Option<String>,
    /// The end of that request's grant: the lease may never be renewed past it.
    pub not_after: Option<DateTime<Utc>>,
}

impl Issuance {
    /// An empty body asks for the profile's defaults.
    pub fn parse(profile: &Profile, body: &[u8]) -> Result<Self, Invalid> {
        let raw: RawRequest = parse_optional_json(body)?;
        let ty = profile.credential_type();
        let request_id = raw
            .request_id
            .as_deref()
            .map(|id| {
                uuid::Uuid::parse_str(id)
                    .map(|u| u.to_string())
                    .map_err(|_| {
                        Invalid::new("request_id", "must be an access request id (a UUID)")
                    })
            })
            .transpose()?;
        if request_id.is_some() && raw.duration_seconds.is_some() {
            return Err(Invalid::new(
                "duration_seconds",
                "is set by the access request: leave it out when you send request_id",
            ));
        }
        let duration = match raw.duration_seconds {
            None => profile.default_duration,
            Some(d) => {
                let d = DurationSeconds::parse(
                    "duration_seconds",
                    d,
                    DurationSeconds::MIN,
                    ty.max_seconds(),
                )?;
                if d.get() > profile.duration_limit() {
                    return Err(Invalid::new(
                        "duration_seconds",
                        format!(
                            "must not exceed the profile's max_duration_seconds ({})",
                            profile.duration_limit()
                        ),
                    ));
                }
                d
            }
        };
        let mfa_serial = match &profile.kind {
            Kind::SessionToken {
                mfa_serial_number, ..
            }
            | Kind::AssumedRole {
                mfa_serial_number, ..
            } => mfa_serial_number.as_ref(),
            _ => None,
        };
        let token_code = match (mfa_serial, raw.token_code.as_deref()) {
            (Some(_), None) => {
                return Err(Invalid::new(
                    "token_code",
                    "is required: this profile requires MFA",
                ))
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "token_code",
                    "is not used: this profile has no MFA device",
                ))
            }
            (_, code) => code
                .map(|c| TokenCode::parse("token_code", c))
                .transpose()?,
        };
        let session_name = match (ty, raw.session_name.as_deref()) {
            (_, None) => None,
            // Appended to the caller's own name, never used alone (SPEC §3).
            (CredentialType::AssumedRole | CredentialType::FederationToken, Some(s)) => {
                Some(SessionName::parse("session_name", s)?)
            }
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "session_name",
                    format!("is not used by {} profiles", ty.as_str()),
                ))
            }
        };
        let role = match (&profile.kind, raw.role_arn.as_deref()) {
            (
                Kind::AssumedRole {
                    roles: Roles::Fixed(r),
                    ..
                },
                None,
            ) => Some(r.clone()),
            (
                Kind::AssumedRole {
                    roles: Roles::Choice(_),
                    ..
                },
                None,
            ) => {
                return Err(Invalid::new(
                    "role_arn",
                    "is required: this profile lets the request choose among its role_arns",
                ))
            }
            (
                Kind::AssumedRole {
                    roles: Roles::Choice(_),
                    ..
                },
                Some(a),
            ) => Some(RoleArn::parse("role_arn", a)?),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "role_arn",
                    "is used only by assumed_role profiles with role_arns",
                ))
            }
        };
        let scope = ScopeDown::parse(profile, raw.session_policy, raw.policy_arns)?;
        Ok(Self {
            duration,
            token_code,
            session_name,
            role,
            scope,
            request_id,
            not_after: None,
        })
    }

    /// Whether the requested role is one the profile lists (always, for a fixed `role_arn`).
    pub fn role_allowed(&self, profile: &Profile) -> bool {
        match (&profile.kind, &self.role) {
            (Kind::AssumedRole { roles, .. }, Some(r)) => roles.all().contains(r),
            (Kind::AssumedRole { .. }, None) => false,
            _ => true,
        }
    }
}

/// Credentials handed out, and where they came from.
#[derive(Debug)]
pub struct Issued {
    pub lease_id: String,
    pub credentials: AccessKeyPair,
    pub expiration: DateTime<Utc>,
    /// The STS region that issued or checked them, for the audit trail.
    pub region: String,
    /// The lease behind them, recorded and counted but still pending: it becomes active in one
    /// transaction with the issuance's audit item ([`Leases::activate_item`]); if that fails, the
    /// caller ends it ([`Leases::abandon`]) and hands nothing out.
    pub lease: Lease,
    /// SPEC §16: the STS endpoint that issued, when the profile names fallbacks.
    pub sts_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the base key secret {id} {reason}")]
    BaseKey {
        id: String,
        reason: String,
        kind: FailureKind,
    },
    #[error("AWS STS refused: {0}")]
    Sts(AwsFailure),
    #[error("AWS STS refused AssumeRole on {role_arn}: {failure}. The role's trust policy must allow Keysmith's principal sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity")]
    AssumeRoleRefused {
        role_arn: String,
        failure: AwsFailure,
    },
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("the lease could not be recorded: {0}")]
    Lease(#[from] LeaseError),
    #[error("the new IAM user's key was not accepted by STS within the wait")]
    NotReady,
    #[error(
        "the issuance did not finish within its time budget ({0} s); nothing was handed out, retry"
    )]
    OverBudget(u64),
    #[error("the profile's permissions_boundary_arn {0}")]
    BoundaryNotAllowed(String),
    /// STS's `PackedPolicyTooLarge`: the session policies and tags, packed, exceed its limit.
    #[error("is too large once STS packs it with the session's tags and policy ARNs ({0}); send a smaller session_policy or fewer policy_arns")]
    PolicyTooLarge(String),
}

impl IssueError {
    /// STS could not be reached, timed out or answered 5xx: a fallback endpoint may answer.
    pub fn endpoint_failed(&self) -> bool {
        match self {
            Self::Sts(f) | Self::AssumeRoleRefused { failure: f, .. } => f.endpoint_failed,
            _ => false,
        }
    }

    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Sts(f)
            | Self::AssumeRoleRefused { failure: f, .. }
            | Self::Iam(IamError { failure: f, .. }) => f.kind,
            Self::Lease(e) => e.failure_kind(),
            Self::BaseKey { kind, .. } => *kind,
            Self::NotReady | Self::OverBudget(_) => FailureKind::Other,
            Self::BoundaryNotAllowed(_) => FailureKind::Denied,
            Self::PolicyTooLarge(_) => FailureKind::Other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Issuer {
    clients: Clients,
    sts: StsTarget,
    leases: Leases,
    lease_boundaries: Vec<PolicyArn>,
    ready_timeout: std::time::Duration,
    /// Base key id -> its IAM user's ARN (see `sts::base_user_arn`).
    base_users: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl Issuer {
    pub fn new(
        clients: Clients,
        global_sts: StsTarget,
        leases: Leases,
        lease_boundaries: Vec<PolicyArn>,
    ) -> Self {
        Self {
            clients,
            sts: global_sts,
            leases,
            lease_boundaries,
            ready_timeout: IAM_USER_READY_TIMEOUT,
            base_users: std::sync::Arc::default(),
        }
    }

    /// Tests shorten the wait for a new IAM user's key.
    pub fn with_ready_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Runs an issuance's AWS work on the lease recorded for it, up to `deadline`. A failure, or
    /// running out of the budget, ends the lease at once ([`Leases::abandon`]: an `iam_user`'s
    /// user is deleted); if that fails too, the lease stays pending and due, and the sweep ends it.
    async fn within_budget<T>(
        &self,
        lease: &Lease,
        deadline: tokio::time::Instant,
        work: impl std::future::Future<Output = Result<T, IssueError>>,
    ) -> Result<T, IssueError> {
        let result = tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Err(IssueError::OverBudget(ISSUE_BUDGET.as_secs())));
        if result.is_err() {
            if let Err(cleanup) = self.leases.abandon(lease).await {
                tracing::warn!(lease_id = %lease.id, error = %cleanup, "ending the lease of a failed issuance failed; the sweep ends it");
            }
        }
        result
    }

    /// Issues credentials of `profile`'s type for `principal` (the caller, recorded by AWS as
    /// `SourceIdentity` and in the session name).
    pub async fn issue(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
    ) -> Result<Issued, IssueError> {
        let target = profile.sts.or(&self.sts);
        let region = target
            .region
            .clone()
            .unwrap_or_else(|| self.clients.region.clone());
        let deadline = tokio::time::Instant::now() + ISSUE_BUDGET;
        match &profile.kind {
            Kind::IamUser { .. } => {
                self.issue_iam_user(profile, req, principal, &target, region, deadline)
                    .await
            }
            _ => {
                self.issue_sts(profile, req, principal, &target, region, deadline)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::ProfileName;
    use serde_json::json;

    fn profile(body: serde_json::Value) -> Profile {
        Profile::parse(
            ProfileName::parse("n", "deploy").unwrap(),
            body.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn field(p: &Profile, body: serde_json::Value) -> String {
        Issuance::parse(p, body.to_string().as_bytes())
            .unwrap_err()
            .field
    }

    #[test]
    fn durations() {
        let p = profile(
            json!({"credential_type": "session_token", "source_secret_id": "s",
                               "max_duration_seconds": 7200}),
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 899})),
            "duration_seconds"
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 129_601})),
            "duration_seconds"
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 7201})),
            "duration_seconds"
        );
        assert_eq!(Issuance::parse(&p, b"").unwrap().duration.get(), 3600);
        assert_eq!(Issuance::parse(&p, b"{}").unwrap().duration.get(), 3600);
        let r = profile(json!({"credential_type": "assumed_role",
                               "role_arn": "arn:aws:iam::123456789012:role/r"}));
        let err = Issuance::parse(&r, br#"{"duration_seconds": 43201}"#).unwrap_err();
        assert_eq!(err.field, "duration_seconds");
        assert!(err.message.contains("43200"), "{}", err.message);
    }

    #[test]
    fn mfa() {
        let p = profile(
            json!({"credential_type": "session_token", "source_secret_id": "s",
                               "mfa_serial_number": "arn:aws:iam::123456789012:mfa/alice"}),
        );
        assert_eq!(field(&p, json!({})), "token_code");
        assert_eq!(field(&p, json!({"token_code": "12345"})), "token_code");
        assert!(Issuance::parse(&p, br#"{"token_code": "123456"}"#).is_ok());
        let q = profile(json!({"credential_type": "session_token", "source_secret_id": "s"}));
        assert_eq!(field(&q, json!({"token_code": "123456"})), "token_code");
        assert_eq!(field(&q, json!({"session_name": "abc"})), "session_name");
        assert_eq!(field(&q, json!({"extra": 1})), "extra");
        assert_eq!(
            field(&q, json!({"duration_seconds": "1"})),
            "duration_seconds"
        );
    }
}
