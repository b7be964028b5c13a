//! Revoking STS credentials (SPEC §10, §10a): they cannot be deleted, so Keysmith denies them in
//! the inline policy `keysmith-revocations` of the role or base user they act through — in that
//! target's own account — and prunes each `Deny` once every credential it can match has expired.
//!
//! Every change follows one order, so that "revoked" is true and nothing is lost or unaudited:
//! 1. the target's lock ([`deny_set`]); the IAM client of the target's account ([`target`]);
//! 2. the deny set from the state table (never read back from IAM), edited;
//! 3. the new set and its audit item in one transaction, on condition that the lock is still held
//!    and the version is the one read (fencing);
//! 4. the document rendered from the set and written to IAM; the version marked applied.
//!
//! A crash or failure after 3 leaves the target due at once: the scheduled run writes the stored
//! set to IAM. A revoke of an already revoked lease writes it again too (it repairs an out-of-band
//! change).

mod change;
mod deny_set;
mod iam;
pub mod policy;
mod profile_revoke;
mod target;
mod usecase;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{AuditLog, Origin};
use crate::aws::{AwsFailure, FailureKind};
use crate::lease::Lease;
use crate::state::due_items;
use change::{Change, Refused};
use deny_set::DenySets;
use policy::{ceil_second, cutoff_statement, Document, POLICY_NAME};
pub use target::{Accounts, Target};
pub use usecase::{LeaseRevoked, ProfileRevoked, RevokeError, Revoker, EVENT_REVOKED};

pub const EVENT_PRUNED: &str = "Revocations Pruned";
pub const EVENT_STARTED: &str = "Revocation Started";

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("{0}")]
    Target(String),
    #[error("IAM {action} on {target} failed: {failure}")]
    Iam {
        action: &'static str,
        target: String,
        failure: AwsFailure,
    },
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
    #[error("the audit trail could not be written: {0}")]
    Audit(AwsFailure),
    #[error("another revocation on {0} is under way; retry")]
    Busy(String),
    #[error("the revocation lock on {0} expired before the change was recorded; retry")]
    LockLost(String),
    #[error("{target} is in account {account}, not Keysmith's ({home}), and no revoker role is configured (KEYSMITH_REVOKER_ROLE_NAME): nothing was revoked")]
    ForeignAccount {
        target: String,
        account: String,
        home: String,
    },
    #[error("the revoker role {role_arn} could not be assumed: {failure}")]
    Revoker {
        role_arn: String,
        failure: AwsFailure,
    },
    #[error("the inline policy {POLICY_NAME} of {target} has no room for another lease entry; an admin can revoke profile {profile} (POST /v1/profiles/{profile}/revoke)")]
    OwnerFull { target: String, profile: String },
    #[error("the inline policies of {target} would exceed IAM's {limit}-character quota even with profile-wide cut-offs; remove other inline policies or wait for the scheduled run to prune expired entries")]
    Full { target: String, limit: usize },
}

impl RevocationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Iam { failure: f, .. }
            | Self::Store(f)
            | Self::Audit(f)
            | Self::Revoker { failure: f, .. } => f.kind,
            _ => FailureKind::Other,
        }
    }
}

/// Who asks for a revocation: only an admin's may widen into profile-wide cut-offs.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub origin: &'a Origin,
    pub admin: bool,
    pub reason: Option<&'a str>,
}

/// What a revocation changed on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub target: Target,
    /// The statement now in force for this revocation.
    pub statement: String,
    /// Profiles whose per-lease entries were folded into cut-offs at now to make room (an admin's
    /// revoke on a full policy): every session of theirs through this target issued before now is
    /// denied too.
    pub folded: Vec<String>,
    /// The policy's size after the change, and the budget it had (the quota minus the target's
    /// other inline policies).
    pub size: usize,
    pub budget: usize,
}

impl Applied {
    /// Sizes are for admins only: they tell an attacker how close a policy is to full.
    pub fn to_json(&self, admin: bool) -> Value {
        let mut v = json!({
            "target": self.target.arn,
            "target_type": self.target.kind.as_str(),
            "policy_name": POLICY_NAME,
            "statement": self.statement,
            "fallback": (!self.folded.is_empty()).then_some("profile_cutoff"),
        });
        if admin {
            v["folded_profiles"] = json!(self.folded);
            v["policy_size"] = json!(self.size);
            v["policy_budget"] = json!(self.budget);
        }
        v
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// (target ARN, entries removed, policy deleted)
    pub pruned: Vec<(String, usize, bool)>,
    pub failed: Vec<(String, String)>,
}

impl PruneReport {
    pub fn to_json(&self) -> Value {
        json!({
            "pruned": self.pruned.iter().map(|(t, n, d)| json!({"target": t, "entries_removed": n, "policy_deleted": d})).collect::<Vec<_>>(),
            "failed": self.failed.iter().map(|(t, e)| json!({"target": t, "error": e})).collect::<Vec<_>>(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Revocations {
    accounts: Accounts,
    sets: DenySets,
    audit: AuditLog,
}

impl Revocations {
    pub fn new(
        accounts: Accounts,
        db: impl Into<crate::aws::Dynamo>,
        table: impl Into<String>,
        audit: AuditLog,
    ) -> Self {
        Self {
            accounts,
            sets: DenySets::new(db, table.into()),
            audit,
        }
    }

    /// The target an STS lease's credentials act through.
    pub fn lease_target(lease: &Lease) -> Result<Target, RevocationError> {
        let arn = lease.target.as_deref().ok_or_else(|| {
            RevocationError::Target(format!("lease {} records no role or base user", lease.id))
        })?;
        Target::from_arn(arn)
    }

    /// Denies one lease's session tag on its role / base user, or re-applies the entry when it is
    /// already there. Lease entries keep [`Document::reserve`] free; when one does not fit, an
    /// admin's revoke folds every profile's entries into per-profile cut-offs at now (and says
    /// which), an owner's is refused.
    pub async fn revoke_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<Applied, RevocationError> {
        let target = Self::lease_target(lease)?;
        let change = Change {
            actor,
            profile: Some(&lease.profile),
            lease_id: Some(&lease.id),
        };
        self.change(&target, now, change, |doc, budget| {
            if let Some(covering) = doc.covering(&lease.profile, &lease.id, lease.created_at) {
                return Ok((covering, Vec::new()));
            }
            let statement = format!("Deny aws:PrincipalTag/keysmith:lease = {}", lease.id);
            doc.add_lease(&lease.profile, &lease.id, lease.expires_at);
            if doc.size() <= budget.saturating_sub(Document::reserve()) {
                return Ok((statement, Vec::new()));
            }
            if !actor.admin {
                return Err(Refused::OwnerFull);
            }
            let before = ceil_second(now);
            let folded = doc.fold_all_into_cutoffs(before);
            if doc.size() > budget {
                return Err(Refused::Full);
            }
            Ok((cutoff_statement(Some(&lease.profile), before), folded))
        })
        .await
    }

    /// Denies sessions of `profile` (None: every session token of the user) issued before
    /// `before` (an admin's profile revoke), and untagged sessions of `sources` (the callers'
    /// `SourceIdentity`) issued before it, when they fit. On a full policy every profile's lease
    /// entries are folded into cut-offs first.
    pub async fn revoke_before(
        &self,
        target: &Target,
        profile: Option<&str>,
        sources: &[String],
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<Applied, RevocationError> {
        let before = ceil_second(before);
        let change = Change {
            actor,
            profile,
            lease_id: None,
        };
        self.change(target, now, change, |doc, budget| {
            doc.add_cutoff(profile, before);
            if doc.add_sources(before, sources) && doc.size() > budget {
                doc.remove_sources(before);
            }
            let mut folded = Vec::new();
            if doc.size() > budget && actor.admin {
                folded = doc.fold_all_into_cutoffs(ceil_second(now));
            }
            if doc.size() > budget {
                return Err(Refused::Full);
            }
            Ok((cutoff_statement(profile, before), folded))
        })
        .await
    }

    /// The scheduled run's part (SPEC §10): every due target is pruned of entries whose
    /// credentials have all expired, and any stored set not yet written to IAM is written. Each
    /// change is audited in the same transaction as the set. One target's failure does not stop
    /// the others; it is reported, and the target stays due.
    pub async fn prune_due(&self, now: DateTime<Utc>, origin: &Origin) -> PruneReport {
        let mut report = PruneReport::default();
        let items = match due_items(self.sets.db(), self.sets.table(), target::PK, now).await {
            Ok(items) => items,
            Err(e) => {
                report
                    .failed
                    .push(("(due revocations)".to_owned(), e.to_string()));
                return report;
            }
        };
        for item in items {
            let Some(arn) = item.get("target").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let result = match Target::from_arn(arn) {
                Ok(target) => self.prune(&target, now, origin).await,
                Err(e) => Err(e),
            };
            match result {
                Ok((removed, deleted)) => report.pruned.push((arn.clone(), removed, deleted)),
                Err(e) => {
                    tracing::warn!(target = %arn, error = %e, "pruning a revocation policy failed; the next run retries");
                    report.failed.push((arn.clone(), e.to_string()));
                }
            }
        }
        report
    }
}
