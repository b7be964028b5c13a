//! Every change to a target's deny set, in one order (see the module above): lock, read the set
//! from the state table, edit, record the set with its audit item in one fenced transaction,
//! render and write the IAM document, release marking the version applied.

use chrono::{DateTime, Utc};

use super::policy::{Document, POLICY_NAME};
use super::{
    iam, Actor, Applied, RevocationError, Revocations, Target, EVENT_PRUNED, EVENT_STARTED,
};
use crate::audit::{AuditRecord, AuditedWriteError, Category, Level, Origin, Outcome};

/// Why an edit could not be made.
pub(super) enum Refused {
    /// A lease owner's entry does not fit beside the admin reserve.
    OwnerFull,
    /// Nothing fits, cut-offs included.
    Full,
}

/// An edit of a deny set: the statement in force afterwards, and the profiles folded.
pub(super) type Edited = Result<(String, Vec<String>), Refused>;

/// A change to make under the lock.
pub(super) struct Change<'a> {
    pub(super) actor: Actor<'a>,
    pub(super) profile: Option<&'a str>,
    pub(super) lease_id: Option<&'a str>,
}

impl Revocations {
    pub(super) async fn prune(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<(usize, bool), RevocationError> {
        let iam = self.accounts.iam_for(target).await?;
        let owner = self.sets.lock(target, now).await?;
        let result = async {
            let import = async { Ok(iam::read(&iam, target).await?.current) };
            let (from, applied, mut doc) = self.stored_or(target, import).await?;
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
    pub(super) async fn change(
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
            let imported = std::future::ready(Ok(inline.current));
            let (from, _, mut doc) = self.stored_or(target, imported).await?;
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

    /// The stored set, or (first touch of a target revoked by an older version) the document
    /// `import` reads from IAM: awaited only then.
    async fn stored_or(
        &self,
        target: &Target,
        import: impl std::future::Future<Output = Result<Option<Document>, RevocationError>>,
    ) -> Result<(Option<u64>, u64, Document), RevocationError> {
        Ok(match self.sets.load(target).await? {
            Some(s) => (Some(s.version), s.applied, s.doc),
            None => (None, 0, import.await?.unwrap_or_default()),
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
