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

mod deny_set;
mod iam;
pub mod policy;
mod target;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{AuditLog, AuditRecord, AuditedWriteError, Category, Level, Origin, Outcome};
use crate::aws::{AwsFailure, FailureKind};
use crate::lease::Lease;
use crate::state::due_items;
use deny_set::DenySets;
use policy::{ceil_second, cutoff_statement, Document, POLICY_NAME};
pub use target::{Accounts, Target};

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

/// Why an edit could not be made.
enum Refused {
    /// A lease owner's entry does not fit beside the admin reserve.
    OwnerFull,
    /// Nothing fits, cut-offs included.
    Full,
}

/// An edit of a deny set: the statement in force afterwards, and the profiles folded.
type Edited = Result<(String, Vec<String>), Refused>;

/// A change to make under the lock.
struct Change<'a> {
    actor: Actor<'a>,
    profile: Option<&'a str>,
    lease_id: Option<&'a str>,
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
        db: aws_sdk_dynamodb::Client,
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

    async fn prune(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<(usize, bool), RevocationError> {
        let iam = self.accounts.iam_for(target).await?;
        let owner = self.sets.lock(target, now).await?;
        let result = async {
            let (from, applied, mut doc) = self.current(&iam, target).await?;
            let removed = doc.prune(now, target.kind);
            let mut version = from.unwrap_or(0);
            if removed > 0 || (from.is_none() && !doc.is_empty()) {
                let record = AuditRecord::new(
                    origin,
                    Category::Config,
                    EVENT_PRUNED,
                    Outcome::Success,
                    format!(
                        "{removed} expired entr{} removed from {POLICY_NAME} of {}{}.",
                        if removed == 1 { "y" } else { "ies" },
                        target.arn,
                        if doc.is_empty() {
                            "; the empty policy is deleted"
                        } else {
                            ""
                        }
                    ),
                );
                version = self
                    .record(target, &owner, from, &doc, now, &record)
                    .await?;
            }
            if version > applied {
                self.sets.fence(target, &owner, version).await?;
                iam::write(&iam, target, &doc).await?;
            }
            Ok::<_, RevocationError>((
                removed,
                doc.is_empty(),
                version,
                doc.next_prune(target.kind),
            ))
        }
        .await;
        self.release(target, &owner, result.as_ref().ok().map(|r| (r.2, r.3)))
            .await?;
        result.map(|(removed, deleted, _, _)| (removed, deleted))
    }

    /// Read-edit-record-write of the target's deny set under its lock.
    async fn change(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        change: Change<'_>,
        edit: impl FnOnce(&mut Document, usize) -> Edited,
    ) -> Result<Applied, RevocationError> {
        // First: a target in another account without a revoker role is refused before anything.
        let iam = self.accounts.iam_for(target).await?;
        let owner = self.sets.lock(target, now).await?;
        let result = async {
            let inline = iam::read(&iam, target).await?;
            let (from, _, mut doc) = self.stored_or(target, inline.current).await?;
            let read = doc.clone();
            // Entries already past are dropped on the way: room for this one.
            doc.prune(now, target.kind);
            let budget = target.kind.inline_limit().saturating_sub(inline.others);
            let (statement, folded) = edit(&mut doc, budget).map_err(|r| match r {
                Refused::OwnerFull => RevocationError::OwnerFull {
                    target: target.arn.clone(),
                    profile: change.profile.unwrap_or_default().to_owned(),
                },
                Refused::Full => RevocationError::Full {
                    target: target.arn.clone(),
                    limit: target.kind.inline_limit(),
                },
            })?;
            let mut version = from.unwrap_or(0);
            if doc != read || from.is_none() {
                let record = started(&change, target, &statement, &folded);
                version = self
                    .record(target, &owner, from, &doc, now, &record)
                    .await?;
            }
            // Always written, also when unchanged: a repeated revoke repairs IAM. Only by the
            // holder of the current version (fencing).
            self.sets.fence(target, &owner, version).await?;
            iam::write(&iam, target, &doc).await?;
            let applied = Applied {
                target: target.clone(),
                statement,
                folded,
                size: doc.size(),
                budget,
            };
            Ok::<_, RevocationError>((applied, version, doc.next_prune(target.kind)))
        }
        .await;
        self.release(target, &owner, result.as_ref().ok().map(|r| (r.1, r.2)))
            .await?;
        result.map(|r| r.0)
    }

    /// The stored set, or (first touch of a target revoked by an older version) IAM's document.
    async fn current(
        &self,
        iam: &aws_sdk_iam::Client,
        target: &Target,
    ) -> Result<(Option<u64>, u64, Document), RevocationError> {
        match self.sets.load(target).await? {
            Some(s) => Ok((Some(s.version), s.applied, s.doc)),
            None => {
                let inline = iam::read(iam, target).await?;
                Ok((None, 0, inline.current.unwrap_or_default()))
            }
        }
    }

    async fn stored_or(
        &self,
        target: &Target,
        in_iam: Option<Document>,
    ) -> Result<(Option<u64>, u64, Document), RevocationError> {
        Ok(match self.sets.load(target).await? {
            Some(s) => (Some(s.version), s.applied, s.doc),
            None => (None, 0, in_iam.unwrap_or_default()),
        })
    }

    /// The new set and its audit item, in one transaction fenced by the lock and the version.
    async fn record(
        &self,
        target: &Target,
        owner: &str,
        from: Option<u64>,
        doc: &Document,
        now: DateTime<Utc>,
        record: &AuditRecord,
    ) -> Result<u64, RevocationError> {
        let item = self.sets.change_item(target, owner, from, doc, now)?;
        match self.audit.write_with(vec![item], record).await {
            Ok(()) => Ok(from.map_or(1, |v| v + 1)),
            Err(AuditedWriteError::Conflict) => Err(RevocationError::LockLost(target.arn.clone())),
            Err(AuditedWriteError::Audit(f)) => Err(RevocationError::Audit(f)),
            Err(AuditedWriteError::Store(f)) => Err(RevocationError::Store(f)),
        }
    }

    /// Releases the lock, marking `applied` (version, next due) when the IAM write succeeded.
    async fn release(
        &self,
        target: &Target,
        owner: &str,
        applied: Option<(u64, Option<DateTime<Utc>>)>,
    ) -> Result<(), RevocationError> {
        let ok = applied.is_some();
        match self.sets.unlock(target, owner, applied).await {
            Ok(()) => Ok(()),
            Err(e) if ok => Err(e),
            Err(e) => {
                tracing::warn!(target = %target.arn, error = %e, "releasing a revocation lock failed; it expires by itself");
                Ok(())
            }
        }
    }
}

/// The audit item of a deny-set change, written with it (before IAM is touched).
fn started(
    change: &Change<'_>,
    target: &Target,
    statement: &str,
    folded: &[String],
) -> AuditRecord {
    let mut message = format!(
        "{} by {}: {statement} recorded for {POLICY_NAME} of {}.",
        change.lease_id.map_or_else(
            || "Revocation".to_owned(),
            |id| format!("Revocation of lease {id}")
        ),
        change.actor.origin.principal,
        target.arn
    );
    if !folded.is_empty() {
        message.push_str(&format!(
            " The policy was full: the lease entries of profile(s) {} were folded into cut-offs at now.",
            folded.join(", ")
        ));
    }
    if let Some(r) = change.actor.reason {
        message.push_str(&format!(" Reason: {r}"));
    }
    let mut r = AuditRecord::new(
        change.actor.origin,
        Category::Config,
        EVENT_STARTED,
        Outcome::Success,
        message,
    );
    r.level = Level::Warn;
    r.profile = change.profile.map(str::to_owned);
    r.lease_id = change.lease_id.map(str::to_owned);
    r
}
