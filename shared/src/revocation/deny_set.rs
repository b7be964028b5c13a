//! The deny set of each target, kept in the state table (SPEC §10a): the source of truth for its
//! `keysmith-revocations` policy, never read back from IAM (which is eventually consistent and has
//! no conditional write).
//!
//! Item `pk = "revocation"`, `sk = "<role|user>#<arn>"`: `doc` (the policy as Keysmith renders
//! it), `version` (bumped by every change, under the target's lock and on condition of the version
//! read), `applied` (the version last written to IAM), the lock (`lock_owner`, `lock_until`) and,
//! in the `due` index, when the target next needs work: at once while `applied < version` (a
//! change whose IAM write did not finish), else when its next entry can be pruned.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::{DateTime, Duration, Utc};

use super::policy::Document;
use super::target::{Target, PK};
use super::RevocationError;
use crate::audit::format_time;
use crate::aws::{classify, AwsFailure, FailureKind};

/// A lock outlives any revocation (a few IAM calls, each bounded by the SDK's 12 s operation
/// timeout); a crashed holder's lock expires by itself.
const LOCK_TTL: Duration = Duration::seconds(30);
const LOCK_ATTEMPTS: u32 = 20;

/// A target's deny set as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stored {
    pub doc: Document,
    pub version: u64,
    pub applied: u64,
}

#[derive(Clone, Debug)]
pub(super) struct DenySets {
    db: crate::aws::Dynamo,
    table: String,
}

fn store(f: AwsFailure) -> RevocationError {
    RevocationError::Store(f)
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

impl DenySets {
    pub fn new(db: impl Into<crate::aws::Dynamo>, table: String) -> Self {
        Self {
            db: db.into(),
            table,
        }
    }

    pub fn db(&self) -> &aws_sdk_dynamodb::Client {
        &self.db
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stored deny set, or `None` when this target has none yet (a target revoked by an
    /// older version keeps its set only in IAM: the caller imports it once).
    pub async fn load(&self, target: &Target) -> Result<Option<Stored>, RevocationError> {
        let Some(item) = self.item(target).await? else {
            return Ok(None);
        };
        let Some(version) = number(&item, "version") else {
            return Ok(None);
        };
        let text = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .map_or("", String::as_str);
        let doc = Document::parse(text).ok_or_else(|| {
            RevocationError::Target(format!(
                "the stored deny set of {} is unreadable",
                target.arn
            ))
        })?;
        Ok(Some(Stored {
            doc,
            version,
            applied: number(&item, "applied").unwrap_or(0),
        }))
    }

    /// The change of a deny set from `from` (None: not stored yet) to `doc`, for a transaction
    /// with its audit item. It holds only while `owner` holds the lock and nobody else changed
    /// the set: the fencing that keeps two writers from losing each other's entries. The target
    /// becomes due at once, so a crash before the IAM write is repaired by the next run.
    pub fn change_item(
        &self,
        target: &Target,
        owner: &str,
        from: Option<u64>,
        doc: &Document,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, RevocationError> {
        let next = from.map_or(1, |v| v + 1);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(target.key()))
            .update_expression(
                "SET doc = :doc, version = :next, due_pk = :pk, due_at = :now, target = :arn, target_type = :kind",
            )
            .expression_attribute_values(":doc", AttributeValue::S(doc.to_json()))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":pk", AttributeValue::S(PK.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
            .expression_attribute_values(":arn", AttributeValue::S(target.arn.clone()))
            .expression_attribute_values(
                ":kind",
                AttributeValue::S(target.kind.as_str().to_owned()),
            )
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        update = match from {
            None => {
                update.condition_expression("lock_owner = :owner AND attribute_not_exists(version)")
            }
            Some(v) => update
                .condition_expression("lock_owner = :owner AND version = :from")
                .expression_attribute_values(":from", AttributeValue::N(v.to_string())),
        };
        let update = update
            .build()
            .map_err(|e| store(AwsFailure::other(e.to_string())))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Takes the target's lock (waiting a little for another holder); returns the owner token.
    pub async fn lock(
        &self,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<String, RevocationError> {
        let owner = uuid::Uuid::new_v4().to_string();
        for attempt in 0..LOCK_ATTEMPTS {
            let now = now.max(Utc::now());
            let result = self
                .db
                .update_item()
                .table_name(&self.table)
                .set_key(Some(target.key()))
                .update_expression(
                    "SET lock_owner = :owner, lock_until = :until, target = :arn, target_type = :kind",
                )
                .condition_expression("attribute_not_exists(lock_until) OR lock_until < :now")
                .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
                .expression_attribute_values(
                    ":until",
                    AttributeValue::S(format_time(now + LOCK_TTL)),
                )
                .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
                .expression_attribute_values(":arn", AttributeValue::S(target.arn.clone()))
                .expression_attribute_values(
                    ":kind",
                    AttributeValue::S(target.kind.as_str().to_owned()),
                )
                .send()
                .await
                .map_err(classify);
            match result {
                Ok(_) => return Ok(owner),
                // An earlier attempt of this very call may have taken it (its answer was lost).
                Err(f)
                    if f.kind == FailureKind::ConditionFailed
                        && self.holder(target).await?.as_deref() == Some(owner.as_str()) =>
                {
                    return Ok(owner)
                }
                Err(f) if f.kind == FailureKind::ConditionFailed => {
                    tokio::time::sleep(StdDuration::from_millis(100 + 50 * u64::from(attempt)))
                        .await;
                }
                Err(f) => return Err(store(f)),
            }
        }
        Err(RevocationError::Busy(target.arn.clone()))
    }

    /// The fencing check before an IAM write: renews the lock for a full term, on condition that
    /// `owner` still holds it, unexpired, at `version`. A holder that stalled past its lock (and
    /// may have been overtaken) fails here and writes nothing; one that passes has a whole term
    /// left, more than the IAM call's bound.
    pub async fn fence(
        &self,
        target: &Target,
        owner: &str,
        version: u64,
    ) -> Result<(), RevocationError> {
        let now = Utc::now();
        let result = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target.key()))
            .update_expression("SET lock_until = :until")
            .condition_expression("lock_owner = :owner AND lock_until > :now AND version = :v")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":until", AttributeValue::S(format_time(now + LOCK_TTL)))
            .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await
            .map_err(classify);
        match result {
            Ok(_) => Ok(()),
            Err(f) if f.kind == FailureKind::ConditionFailed => {
                Err(RevocationError::LockLost(target.arn.clone()))
            }
            Err(f) => Err(store(f)),
        }
    }

    /// Who holds the target's lock now (expired or not).
    async fn holder(&self, target: &Target) -> Result<Option<String>, RevocationError> {
        Ok(self
            .item(target)
            .await?
            .and_then(|i| i.get("lock_owner").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// The target's item, read consistently.
    async fn item(
        &self,
        target: &Target,
    ) -> Result<Option<HashMap<String, AttributeValue>>, RevocationError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(target.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store(classify(e)))?;
        Ok(out.item)
    }

    /// Releases the lock. `applied`: the version just written to IAM, with when the target is
    /// next due (`None`: nothing left to prune). Without it the due time stays as it is (a
    /// failed IAM write stays due at once, so it is retried).
    pub async fn unlock(
        &self,
        target: &Target,
        owner: &str,
        applied: Option<(u64, Option<DateTime<Utc>>)>,
    ) -> Result<(), RevocationError> {
        let mut q = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target.key()))
            .condition_expression("lock_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        q = match applied {
            None => q.update_expression("REMOVE lock_owner, lock_until"),
            Some((v, None)) => q
                .update_expression("SET applied = :v REMOVE lock_owner, lock_until, due_pk, due_at")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            Some((v, Some(at))) => q
                .update_expression(
                    "SET applied = :v, due_pk = :pk, due_at = :at REMOVE lock_owner, lock_until",
                )
                .expression_attribute_values(":v", AttributeValue::N(v.to_string()))
                .expression_attribute_values(":pk", AttributeValue::S(PK.to_owned()))
                .expression_attribute_values(":at", AttributeValue::S(format_time(at))),
        };
        match q.send().await.map_err(classify) {
            Ok(_) => Ok(()),
            // Not ours any more: an earlier attempt of this very call released it (its answer
            // was lost and the SDK retried), or it expired and a later holder took it. Either way
            // the recorded set, this change included, is what IAM holds or the holder writes.
            Err(f) if f.kind == FailureKind::ConditionFailed => {
                tracing::info!(target = %target.arn, "the revocation lock was already released");
                Ok(())
            }
            Err(f) => Err(store(f)),
        }
    }
}
