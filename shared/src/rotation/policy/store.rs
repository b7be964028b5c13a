//! The policies in the state table: written with their audit item, listed, found due, locked
//! for a rotation and released.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Duration, Utc};

use super::{key, s, Policy, PolicyError, Status, LOCK_TTL_MINUTES, PK};

/// How a run leaves a policy it locked.
#[derive(Debug, Clone)]
pub struct Settle {
    pub rotated_at: Option<DateTime<Utc>>,
    pub status: Status,
    pub reason: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
}
use crate::audit::{AuditLog, AuditRecord, AuditedWriteError};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::state::due_items_counted;
use crate::time::format_time;

#[derive(Clone, Debug)]
pub struct PolicyStore {
    db: crate::aws::Dynamo,
    table: String,
    audit: AuditLog,
}

/// Due policies read by one query, and how many items DynamoDB read for it (`ScannedCount`).
#[derive(Debug)]
pub struct Due {
    pub policies: Vec<Policy>,
    pub items_read: usize,
}

impl PolicyStore {
    pub fn new(
        db: impl Into<crate::aws::Dynamo>,
        table: impl Into<String>,
        audit: AuditLog,
    ) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
            audit,
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<Policy>, PolicyError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PolicyError::Store(classify(e)))?;
        Ok(out.item.as_ref().and_then(Policy::from_item))
    }

    /// Creates or replaces a policy (keeping its rotation history), with its audit item in the
    /// same transaction. Returns whether it was created.
    pub async fn put(
        &self,
        policy: &Policy,
        now: DateTime<Utc>,
        audit: impl FnOnce(bool) -> AuditRecord,
    ) -> Result<(bool, Policy), PolicyError> {
        let existing = self.get(policy.name.as_str()).await?;
        let created = existing.is_none();
        let mut policy = policy.clone();
        policy.last_rotated_at = existing.and_then(|e| e.last_rotated_at);
        if created {
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(policy.to_item(now)))
                .condition_expression("attribute_not_exists(sk)")
                .build()
                .map_err(|e| PolicyError::Store(AwsFailure::other(e.to_string())))?;
            self.transact(TransactWriteItem::builder().put(put).build(), &audit(true))
                .await?;
            return Ok((true, policy));
        }
        let mut values = HashMap::from([(":doc".to_owned(), s(policy.doc()))]);
        let expression = if policy.enabled {
            values.insert(":pk".into(), s(PK));
            values.insert(":due".into(), s(format_time(policy.next_due(now))));
            "SET doc = :doc, due_pk = :pk, due_at = :due"
        } else {
            "SET doc = :doc REMOVE due_pk, due_at"
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(policy.name.as_str())))
            .update_expression(expression)
            .condition_expression("attribute_exists(sk)")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| PolicyError::Store(AwsFailure::other(e.to_string())))?;
        self.transact(
            TransactWriteItem::builder().update(update).build(),
            &audit(false),
        )
        .await?;
        Ok((false, policy))
    }

    pub async fn delete(&self, name: &str, audit: &AuditRecord) -> Result<(), PolicyError> {
        if self.get(name).await?.is_none() {
            return Err(PolicyError::NotFound);
        }
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .condition_expression("attribute_exists(sk)")
            .build()
            .map_err(|e| PolicyError::Store(AwsFailure::other(e.to_string())))?;
        self.transact(TransactWriteItem::builder().delete(delete).build(), audit)
            .await
    }

    async fn transact(
        &self,
        change: TransactWriteItem,
        audit: &AuditRecord,
    ) -> Result<(), PolicyError> {
        self.audit
            .write_with(vec![change], audit)
            .await
            .map_err(|e| match e {
                AuditedWriteError::Conflict => PolicyError::Conflict,
                AuditedWriteError::Audit(f) => PolicyError::Audit(f),
                AuditedWriteError::Store(f) => PolicyError::Store(f),
            })
    }

    pub async fn list(
        &self,
        limit: usize,
        next: Option<&str>,
    ) -> Result<(Vec<Policy>, Option<String>), PolicyError> {
        let out = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(PK))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(next.map(key))
            .send()
            .await
            .map_err(|e| PolicyError::Store(classify(e)))?;
        let policies = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(Policy::from_item)
            .collect();
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
        Ok((policies, next))
    }

    /// The enabled policies due at `now`, from the `due` index: reads only those items.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Due, PolicyError> {
        let (items, scanned) = due_items_counted(&self.db, &self.table, PK, now)
            .await
            .map_err(PolicyError::Store)?;
        Ok(Due {
            items_read: scanned,
            policies: items.iter().filter_map(Policy::from_item).collect(),
        })
    }

    /// Marks the policy `requested` and due now, with its audit item in the same transaction:
    /// the next scheduled-rotation run rotates it, whatever its schedule.
    pub async fn request(
        &self,
        name: &str,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<Policy, PolicyError> {
        let Some(mut policy) = self.get(name).await? else {
            return Err(PolicyError::NotFound);
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .update_expression(
                "SET #status = :requested, due_pk = :pk, due_at = :now, requested_at = :now",
            )
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":requested", s(Status::Requested.as_str()))
            .expression_attribute_values(":pk", s(PK))
            .expression_attribute_values(":now", s(format_time(now)))
            .build()
            .map_err(|e| PolicyError::Store(AwsFailure::other(e.to_string())))?;
        self.transact(TransactWriteItem::builder().update(update).build(), audit)
            .await?;
        policy.status = Status::Requested;
        Ok(policy)
    }

    /// Takes the policy's lock for `owner` until `now + LOCK_TTL_MINUTES`. With `require_due`, only
    /// if the policy is still due: a run that lost the race, or a duplicate delivery, gets `Locked`.
    pub async fn lock(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        require_due: bool,
    ) -> Result<Policy, PolicyError> {
        let mut condition =
            "attribute_exists(sk) AND (attribute_not_exists(lock_until) OR lock_until < :now)"
                .to_owned();
        if require_due {
            condition.push_str(" AND due_at <= :now");
        }
        let out = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .update_expression("SET lock_owner = :owner, lock_until = :until, #status = :rotating")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":rotating", s(Status::Rotating.as_str()))
            .condition_expression(condition)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(
                ":until",
                s(format_time(now + Duration::minutes(LOCK_TTL_MINUTES))),
            )
            .expression_attribute_values(":now", s(format_time(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out.map_err(classify) {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(Policy::from_item)
                .ok_or(PolicyError::NotFound),
            Err(f) if f.kind == FailureKind::ConditionFailed => match self.get(name).await? {
                None => Err(PolicyError::NotFound),
                Some(_) => Err(PolicyError::Locked),
            },
            Err(f) => Err(PolicyError::Store(f)),
        }
    }

    /// Releases `owner`'s lock as `settle` says: the rotation (if any) recorded, the status and
    /// its reason, and the next time the policy is due (`None`: out of the due index).
    pub async fn settle(
        &self,
        name: &str,
        owner: &str,
        settle: &Settle,
    ) -> Result<(), PolicyError> {
        let mut set = vec!["#status = :status"];
        let mut remove = vec!["lock_owner", "lock_until", "last_error"];
        let mut update = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .condition_expression("lock_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(settle.status.as_str()));
        if let Some(at) = settle.rotated_at {
            set.push("last_rotated_at = :at");
            remove.push("requested_at");
            update = update.expression_attribute_values(":at", s(format_time(at)));
        }
        match &settle.reason {
            Some(reason) => {
                set.push("status_reason = :reason");
                update = update.expression_attribute_values(":reason", s(reason.clone()));
            }
            None => remove.push("status_reason"),
        }
        match settle.due_at {
            Some(due) => {
                set.push("due_pk = :pk");
                set.push("due_at = :due");
                update = update
                    .expression_attribute_values(":pk", s(PK))
                    .expression_attribute_values(":due", s(format_time(due)));
            }
            // A disabled policy rotated on request leaves the due index again.
            None => remove.extend(["due_pk", "due_at"]),
        }
        update
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .send()
            .await
            .map_err(|e| PolicyError::Store(classify(e)))?;
        Ok(())
    }

    /// Releases the lock after a failed rotation; the policy stays due, so the next run retries.
    pub async fn failed(&self, name: &str, owner: &str, error: &str) -> Result<(), PolicyError> {
        self.db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .update_expression(
                "SET last_error = :e, #status = :failed REMOVE lock_owner, lock_until",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .condition_expression("lock_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":e", s(error.chars().take(1000).collect::<String>()))
            .send()
            .await
            .map_err(|e| PolicyError::Store(classify(e)))?;
        Ok(())
    }
}
