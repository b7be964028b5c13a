//! The revocation use cases (SPEC §10, §10a): revoking one lease (its owner or an admin) and
//! everything a profile issued before a time (an admin). Each is audited as `Credentials Revoked`
//! (`Config`, `WARN`) or `Lease Revoked`, with its reason; the API only parses and maps. A
//! profile's revoke is [`super::profile_revoke`].

use chrono::{DateTime, Utc};

use super::{Actor, Applied, RevocationError, Revocations};
use crate::audit::{
    AuditError, AuditLog, AuditRecord, AuditedWriteError, Category, Level, Outcome,
};
use crate::aws::AwsFailure;
use crate::issue::{IssueError, Issuer};
use crate::lease::{Lease, LeaseError, LeaseStatus, Leases};
use crate::profile::CredentialType;

pub const EVENT_REVOKED: &str = "Credentials Revoked";

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit trail is unavailable, so nothing was done")]
    AuditUnavailable,
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
}

/// A revoked lease, and what its revocation changed (STS leases).
#[derive(Debug)]
pub struct LeaseRevoked {
    pub lease: Lease,
    pub applied: Option<Applied>,
    /// Leases of folded profiles a fold's cut-offs now deny too.
    pub also: Vec<String>,
}

/// What a profile revoke did.
#[derive(Debug)]
pub struct ProfileRevoked {
    pub targets: Vec<Applied>,
    pub leases_revoked: Vec<String>,
    pub note: Option<String>,
}

/// The services revocation uses.
pub struct Revoker<'a> {
    pub revocations: &'a Revocations,
    pub leases: &'a Leases,
    pub audit: &'a AuditLog,
    pub issuer: &'a Issuer,
}

pub(super) fn because(reason: Option<&str>) -> String {
    reason.map_or_else(
        || " No reason given.".to_owned(),
        |r| format!(" Reason: {r}"),
    )
}

pub(super) fn record(
    actor: &Actor<'_>,
    profile: &str,
    ty: CredentialType,
    outcome: Outcome,
    message: String,
) -> AuditRecord {
    let mut r = AuditRecord::new(
        actor.origin,
        Category::Config,
        EVENT_REVOKED,
        outcome,
        message,
    )
    .profile(profile);
    r.credential_type = Some(ty.as_str().to_owned());
    if outcome == Outcome::Success {
        r.level = Level::Warn;
    }
    r
}

pub(super) fn written(result: Result<(), AuditedWriteError>) -> Result<(), RevokeError> {
    match result {
        // Revoked meanwhile by another call: the Deny is in place either way.
        Ok(()) | Err(AuditedWriteError::Conflict) => Ok(()),
        Err(AuditedWriteError::Audit(_)) => Err(RevokeError::AuditUnavailable),
        Err(AuditedWriteError::Store(f)) => Err(RevokeError::Store(f)),
    }
}

impl Revoker<'_> {
    /// Ends lease `id` now, for its owner or an admin: an `iam_user` lease by deleting its user, an
    /// STS lease by denying it on its role or base user. Repeating it answers the same revoked lease
    /// (and re-applies an STS lease's entry).
    pub async fn revoke_lease(
        &self,
        id: &str,
        actor: Actor<'_>,
    ) -> Result<LeaseRevoked, RevokeError> {
        let lease = self.leases.get(id).await?;
        let caller = &actor.origin.principal;
        if lease.principal != *caller && !actor.admin {
            let r = lease.audit_record(
                actor.origin,
                Outcome::Denied,
                format!("{caller} may not revoke a lease of {}.", lease.principal),
            );
            self.audit.write(&r).await?;
            return Err(RevokeError::Forbidden(
                "only the lease's owner or an admin may revoke it".into(),
            ));
        }
        if lease.is_sts() {
            return self.sts_lease(lease, actor).await;
        }
        match self.leases.revoke(&lease).await {
            Ok((revoked, _)) => {
                let message = format!(
                    "Lease {} revoked; IAM user {} deleted.{}",
                    lease.id,
                    lease.user_name,
                    actor
                        .reason
                        .map(|w| format!(" Reason: {w}"))
                        .unwrap_or_default()
                );
                self.audit
                    .write(&lease.audit_record(actor.origin, Outcome::Success, message))
                    .await?;
                Ok(LeaseRevoked {
                    lease: revoked,
                    applied: None,
                    also: Vec::new(),
                })
            }
            Err(e) => {
                let message = format!("Revoking lease {} failed: {e}", lease.id);
                self.audit
                    .write(&lease.audit_record(actor.origin, Outcome::Failed, message))
                    .await?;
                Err(e.into())
            }
        }
    }

    async fn sts_lease(&self, lease: Lease, actor: Actor<'_>) -> Result<LeaseRevoked, RevokeError> {
        let ty = lease.credential_type;
        if ty == CredentialType::SessionToken {
            let message = format!(
                "session_token credentials carry no session tags, so lease {} cannot be revoked alone: an admin can revoke every session token of its base user with POST /v1/profiles/{}/revoke",
                lease.id, lease.profile
            );
            let mut r = record(&actor, &lease.profile, ty, Outcome::Denied, message.clone());
            r.lease_id = Some(lease.id.clone());
            self.audit.write(&r).await?;
            return Err(RevokeError::Conflict(message));
        }
        let now = Utc::now();
        // Expired credentials need no Deny; the lease is only marked. A lease already revoked gets
        // its entry written again (a repeated revoke repairs an out-of-band change).
        let applied = if lease.expires_at > now {
            match self.revocations.revoke_lease(&lease, now, actor).await {
                Ok(a) => Some(a),
                Err(e) => {
                    let message = format!("Revoking lease {} failed: {e}", lease.id);
                    let mut r = record(&actor, &lease.profile, ty, Outcome::Failed, message);
                    r.lease_id = Some(lease.id.clone());
                    self.audit.write(&r).await?;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        if lease.status == LeaseStatus::Revoked {
            return Ok(LeaseRevoked {
                lease,
                applied,
                also: Vec::new(),
            });
        }
        let what = match &applied {
            Some(a) if !a.folded.is_empty() => format!(
                "the per-lease entry did not fit IAM's inline policy quota on {}, so every session of profile(s) {} through it issued before now is denied instead ({})",
                a.target.arn,
                a.folded.join(", "),
                a.statement
            ),
            Some(a) => format!("{} in keysmith-revocations of {}", a.statement, a.target.arn),
            None => "its credentials had already expired".to_owned(),
        };
        let message = format!(
            "Lease {} revoked by {}: {what}.{}",
            lease.id,
            actor.origin.principal,
            because(actor.reason)
        );
        let mut r = record(&actor, &lease.profile, ty, Outcome::Success, message);
        r.lease_id = Some(lease.id.clone());
        let mark = self.leases.mark_revoked_items(&lease, now)?;
        written(self.audit.write_with(mark, &r).await)?;
        // After a fold (admins only) the folded profiles' other sessions through this target
        // issued before now are denied too: the lease list says so.
        let mut also = Vec::new();
        if let Some(a) = applied.as_ref().filter(|a| !a.folded.is_empty()) {
            also = self.end_folded(a, &lease.id, now, &actor).await?;
        }
        let mut revoked = lease;
        revoked.status = LeaseStatus::Revoked;
        revoked.revoked_at = Some(now);
        Ok(LeaseRevoked {
            lease: revoked,
            applied,
            also,
        })
    }

    /// Marks the live STS leases that a fold's cut-offs now deny (those of the folded profiles
    /// through the same target), each audited.
    pub(super) async fn end_folded(
        &self,
        applied: &Applied,
        except: &str,
        now: DateTime<Utc>,
        actor: &Actor<'_>,
    ) -> Result<Vec<String>, RevokeError> {
        let mut also = Vec::new();
        for profile in &applied.folded {
            let covered: Vec<Lease> = self
                .live_leases(profile, now, now)
                .await?
                .into_iter()
                .filter(|l| {
                    l.id != except
                        && l.is_sts()
                        && l.credential_type != CredentialType::SessionToken
                        && l.target.as_deref() == Some(applied.target.arn.as_str())
                })
                .collect();
            also.extend(self.end_leases(profile, covered, now, actor).await?);
        }
        Ok(also)
    }

    /// Every live lease of the profile created before `before` (STS leases: not yet expired).
    pub(super) async fn live_leases(
        &self,
        profile: &str,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Lease>, RevokeError> {
        let (leases, read) = self.leases.live_of_profile(profile, before, now).await?;
        tracing::info!(
            profile,
            live = leases.len(),
            items_read = read,
            "live leases of a profile"
        );
        Ok(leases)
    }

    /// Ends `leases`: `iam_user` ones (user deleted), STS ones marked revoked (the policy change
    /// denies them), each audited.
    pub(super) async fn end_leases(
        &self,
        profile: &str,
        leases: Vec<Lease>,
        now: DateTime<Utc>,
        actor: &Actor<'_>,
    ) -> Result<Vec<String>, RevokeError> {
        let mut done = Vec::new();
        for lease in leases {
            if lease.is_sts() {
                let message = format!(
                    "Lease {} revoked with profile {profile}.{}",
                    lease.id,
                    because(actor.reason)
                );
                let mut r = record(
                    actor,
                    profile,
                    lease.credential_type,
                    Outcome::Success,
                    message,
                );
                r.lease_id = Some(lease.id.clone());
                let mark = self.leases.mark_revoked_items(&lease, now)?;
                written(self.audit.write_with(mark, &r).await)?;
            } else {
                self.leases.revoke(&lease).await?;
                let message = format!(
                    "Lease {} revoked with profile {profile}; IAM user {} deleted.{}",
                    lease.id,
                    lease.user_name,
                    because(actor.reason)
                );
                self.audit
                    .write(&lease.audit_record(actor.origin, Outcome::Success, message))
                    .await?;
            }
            done.push(lease.id);
        }
        Ok(done)
    }
}
