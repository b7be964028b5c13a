//! The issuance use case (SPEC §3–5): who may have which profile's credentials, the refusal
//! audited before anyone hears of it, and credentials handed out only once the trail holds them
//! and their lease is active. The API parses the request and shapes the answer around this.

use super::{Issuance, IssueError, Issued, Issuer};
use crate::audit::{
    self, AuditError, AuditLog, AuditRecord, AuditedWriteError, Category, Origin, Outcome,
};
use crate::aws::AwsFailure;
use crate::lease::{LeaseError, Leases, ISSUE_BUDGET};
use crate::names::{DurationSeconds, Invalid, ProfileName};
use crate::profile::{CredentialType, ProfileStore, StoreError};
use crate::requests::{AccessRequest, RequestError, Requests};

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Only admins learn that a profile does not exist.
    #[error("profile {0} not found")]
    NotFound(ProfileName),
    /// The same sentence whatever the reason, so a refusal tells the caller nothing more.
    #[error("you may not use profile {0}")]
    Forbidden(ProfileName),
    #[error("profile {0} is switched off")]
    Disabled(ProfileName),
    /// SPEC §16: the requested `role_arn` is not among the profile's `role_arns`.
    #[error("role {role} is not one of profile {profile}'s role_arns")]
    RoleNotAllowed { profile: ProfileName, role: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Profile(#[from] StoreError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit trail is unavailable, so nothing was handed out")]
    AuditUnavailable,
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
    /// SPEC §12: the profile issues only on an approved access request.
    #[error("{0}")]
    ApprovalRequired(String),
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Who asks, as the API identified them.
pub struct Requester<'a> {
    pub origin: &'a Origin,
    /// The identity recorded in the trail.
    pub principal: &'a str,
    /// Every string `allowed_principals` patterns are matched against.
    pub principals: &'a [String],
    pub admin: bool,
}

/// Credentials granted: active, audited, ready to hand out.
#[derive(Debug)]
pub struct Granted {
    pub issued: Issued,
    pub issuance: Issuance,
    pub credential_type: CredentialType,
}

/// The services issuance uses.
pub struct Issuing<'a> {
    pub profiles: &'a ProfileStore,
    pub leases: &'a Leases,
    pub audit: &'a AuditLog,
    pub issuer: &'a Issuer,
    pub requests: Requests<'a>,
}

impl Issuing<'_> {
    /// Issues credentials of profile `name` for the request `body` (empty: the profile's defaults).
    pub async fn issue(
        &self,
        name: &ProfileName,
        body: &[u8],
        who: &Requester<'_>,
    ) -> Result<Granted, GrantError> {
        let caller = who.principal;
        let profile = match self.profiles.get(name).await {
            Ok(Some(profile)) => profile,
            Ok(None) if who.admin => return Err(GrantError::NotFound(name.clone())),
            // Nobody learns which profiles exist by probing: the same answer as a forbidden one.
            Ok(None) => {
                let why = format!("{caller} asked for profile {name}, which does not exist.");
                return Err(self.deny(who, name, None, why).await);
            }
            Err(StoreError::Outdated(o)) => {
                tracing::warn!(profile = %name, reason = %o.reason, "stored profile breaks a rule of this version: refused until an admin saves it again");
                let why = format!(
                    "Profile {name} is refused until an admin saves it again: {}.",
                    o.reason
                );
                return Err(self.deny(who, name, None, why).await);
            }
            Err(e) => return Err(e.into()),
        };
        let ty = profile.credential_type();
        let record = |outcome: Outcome, message: String| {
            let mut r = AuditRecord::new(
                who.origin,
                Category::Data,
                audit::EVENT_ISSUE,
                outcome,
                message,
            )
            .profile(name.as_str());
            r.credential_type = Some(ty.as_str().to_owned());
            r
        };

        if !profile.allows(who.principals) {
            let why = format!("{caller} is not in allowed_principals of profile {name}.");
            return Err(self.deny(who, name, Some(ty), why).await);
        }
        // Only after the allowed_principals check: anyone else gets the same `403 forbidden` as
        // for a profile that does not exist, so the switch tells a stranger nothing.
        if !profile.enabled {
            let why = format!("{caller} asked for profile {name}, which is switched off.");
            self.audit.write(&record(Outcome::Denied, why)).await?;
            return Err(GrantError::Disabled(name.clone()));
        }
        let mut issuance = Issuance::parse(&profile, body)?;
        // SPEC §12: a profile with `approval` issues only on an approved request of the caller's,
        // once, for the request's duration, and never past the grant's end.
        let grant = match (&profile.approval, issuance.request_id.clone()) {
            (None, None) => None,
            (Some(_), None) => {
                let why =
                    format!("{caller} asked profile {name} without an approved access request.");
                self.audit.write(&record(Outcome::Denied, why)).await?;
                return Err(GrantError::ApprovalRequired(format!(
                    "profile {name} requires an approved access request: ask with `keysmith request {name} --reason \"…\"` (POST /v1/requests), then use it with `--request ID` (\"request_id\" in this body)"
                )));
            }
            (_, Some(id)) => {
                let granted = self
                    .requests
                    .grant_for(who.origin, &id, name, caller)
                    .await
                    .and_then(|r| {
                        let d = grant_duration(&r, profile.duration_limit(), chrono::Utc::now())?;
                        Ok((r, d))
                    });
                let (r, duration) = match granted {
                    Ok(granted) => granted,
                    Err(e) => {
                        let mut rec = record(
                            Outcome::Denied,
                            format!("{caller} asked profile {name} with access request {id}: {e}"),
                        );
                        rec.access_request_id = Some(id);
                        self.audit.write(&rec).await?;
                        return Err(e.into());
                    }
                };
                issuance.duration = duration;
                issuance.not_after = r.grant_expires_at;
                Some(r)
            }
        };
        if !issuance.role_allowed(&profile) {
            let role = issuance
                .role
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let why = format!(
                "{caller} asked profile {name} for role {role}, which is not among its role_arns."
            );
            self.audit.write(&record(Outcome::Denied, why)).await?;
            return Err(GrantError::RoleNotAllowed {
                profile: name.clone(),
                role,
            });
        }
        let issued = match self.issuer.issue(&profile, &issuance, caller).await {
            Ok(issued) => issued,
            Err(e) => {
                let mut r = record(Outcome::Failed, format!("Issuing credentials failed: {e}"));
                r.duration_seconds = Some(issuance.duration.get());
                r.session_policy_sha256 = issuance.scope.sha256();
                self.audit.write(&r).await?;
                return Err(e.into());
            }
        };

        let mut r = record(Outcome::Success, audit::MESSAGE_ISSUED.to_owned());
        r.origin.region = issued.region.clone();
        r.duration_seconds = Some(issuance.duration.get());
        r.access_key_id = Some(issued.credentials.access_key_id.clone());
        r.lease_id = Some(issued.lease_id.clone());
        r.session_policy_sha256 = issuance.scope.sha256();
        r.sts_endpoint = issued.sts_endpoint.clone();
        r.access_request_id = grant.as_ref().map(|g| g.id.clone());
        // Credentials are returned only once the trail holds them and their lease is active: both
        // in one transaction. Otherwise the lease is ended (a dynamic IAM user deleted at once; STS
        // credentials nobody received expire unused) and nothing is handed out.
        if let Err(e) = self.activate(&issued, &r, grant.as_ref()).await {
            if let Err(cleanup) = self.leases.abandon(&issued.lease).await {
                tracing::warn!(lease_id = %issued.lease.id, error = %cleanup, "ending an unaudited lease failed; it stays due for the sweep");
            }
            return Err(e);
        }
        tracing::info!(
            profile = %name,
            principal = %caller,
            access_key_id = %issued.credentials.access_key_id,
            lease_id = %issued.lease_id,
            "credentials issued"
        );
        Ok(Granted {
            issued,
            issuance,
            credential_type: ty,
        })
    }

    async fn activate(
        &self,
        issued: &Issued,
        r: &AuditRecord,
        grant: Option<&AccessRequest>,
    ) -> Result<(), GrantError> {
        let activate = self.leases.activate_item(
            &issued.lease,
            &issued.credentials.access_key_id,
            issued.expiration,
        )?;
        let mut changes = vec![activate];
        if let Some(g) = grant {
            changes.push(self.requests.issued_item(g, &issued.lease_id)?);
        }
        match self.audit.write_with(changes, r).await {
            Ok(()) => Ok(()),
            // The request changed since it was read (issued by a concurrent call, denied, or
            // cancelled): these credentials are not handed out, and the lease is ended.
            Err(AuditedWriteError::Conflict) if grant.is_some() => {
                Err(GrantError::Request(RequestError::Conflict(format!(
                    "access request {} changed while credentials were issued (used by another call, denied or cancelled): nothing was handed out",
                    grant.map(|g| g.id.as_str()).unwrap_or_default()
                ))))
            }
            // The audit item's id is fresh, so the lease was no longer pending: the sweep ended an
            // issuance that outlived its budget.
            Err(AuditedWriteError::Conflict) => {
                Err(IssueError::OverBudget(ISSUE_BUDGET.as_secs()).into())
            }
            Err(AuditedWriteError::Store(f)) => Err(GrantError::Store(f)),
            Err(AuditedWriteError::Audit(_)) => Err(GrantError::AuditUnavailable),
        }
    }

    /// A refused issuance: audited as denied (with the real reason, for admins), answered with
    /// one sentence that is the same whatever the reason.
    async fn deny(
        &self,
        who: &Requester<'_>,
        name: &ProfileName,
        ty: Option<CredentialType>,
        why: String,
    ) -> GrantError {
        let mut r = AuditRecord::new(
            who.origin,
            Category::Data,
            audit::EVENT_ISSUE,
            Outcome::Denied,
            why,
        )
        .profile(name.as_str());
        r.credential_type = ty.map(|t| t.as_str().to_owned());
        match self.audit.write(&r).await {
            Ok(()) => GrantError::Forbidden(name.clone()),
            Err(e) => e.into(),
        }
    }
}

/// The lifetime of credentials issued on `r`: the request's duration, within the profile's
/// current limit, and ending before the grant does (less the issuance budget, since STS counts
/// from its own call). Too little left for AWS's shortest credentials: a `409`.
fn grant_duration(
    r: &AccessRequest,
    limit: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DurationSeconds, RequestError> {
    let ends = r.grant_expires_at.unwrap_or(now);
    let margin = i64::try_from(ISSUE_BUDGET.as_secs()).unwrap_or(20) + 1;
    let left = (ends - now).num_seconds() - margin;
    let seconds = i64::from(r.duration.min(limit)).min(left);
    let (min, max) = (DurationSeconds::MIN, r.duration.max(DurationSeconds::MIN));
    DurationSeconds::parse("duration_seconds", seconds, min, max).map_err(|_| {
        RequestError::Conflict(format!(
            "access request {} has {left} s of its grant left, less than AWS's shortest credentials ({min} s): request again",
            r.id
        ))
    })
}
