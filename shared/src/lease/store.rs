//! Writing leases: birth (counted), activation with the issuance's audit item, abandonment,
//! revocation — each a transaction whose condition holds once, so a count changes exactly once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Duration, Utc};

use super::{
    build_err, count, failed_conditions, key, Lease, LeaseError, LeaseStatus, Leases,
    REVOKED_RETENTION_DAYS,
};
use crate::audit::format_time;
use crate::aws::classify;
use crate::state::put_new;
use crate::users::Deleted;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Status `revoked` (once), the first `revoked_at`, and a TTL.
    Revoked,
    /// An STS lease past its expiry: only out of the `due` index (its status reads `expired`).
    Expired,
}

/// The writes that end a lease: its record out of the `due` index (and revoked, for
/// [`End::Revoked`]) and its unit of the live counts given back, in one transaction whose
/// condition holds once, so the counts go down exactly once however often it runs.
pub(super) fn end_items(
    table: &str,
    lease: &Lease,
    now: DateTime<Utc>,
    end: End,
) -> Result<Vec<TransactWriteItem>, LeaseError> {
    let mut values = HashMap::new();
    let mut names = HashMap::new();
    let (mut set, mut remove, mut cond) = match end {
        End::Revoked => {
            let ttl = (now + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            values.insert(":revoked".to_owned(), AttributeValue::S("revoked".into()));
            values.insert(":now".to_owned(), AttributeValue::S(format_time(now)));
            values.insert(":ttl".to_owned(), AttributeValue::N(ttl.to_string()));
            names.insert("#s".to_owned(), "status".to_owned());
            (
                "SET #s = :revoked, revoked_at = if_not_exists(revoked_at, :now), expires_at = :ttl ".to_owned(),
                "REMOVE due_pk, due_at".to_owned(),
                "attribute_exists(sk) AND #s <> :revoked".to_owned(),
            )
        }
        End::Expired => (
            String::new(),
            "REMOVE due_pk, due_at".to_owned(),
            "attribute_exists(due_pk)".to_owned(),
        ),
    };
    let mut items = Vec::new();
    if let Some(counter) = &lease.counter {
        remove.push_str(", count_sk, counted");
        cond.push_str(" AND (attribute_exists(count_sk) OR attribute_exists(counted))");
        items.extend(count::decrements(table, counter, &lease.profile)?);
    }
    set.push_str(&remove);
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(&lease.id)))
        .update_expression(set)
        .condition_expression(cond)
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(build_err)?;
    items.insert(0, TransactWriteItem::builder().update(update).build());
    Ok(items)
}

impl Leases {
    /// Runs [`end_items`]. A failed condition on the lease means it already ended (by another
    /// call, or by this one before a lost response): the counts went down then, so that is
    /// success too.
    pub(super) async fn end(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        end: End,
    ) -> Result<(), LeaseError> {
        let mut tx = self.db.transact_write_items();
        for item in end_items(&self.table, lease, now, end)? {
            tx = tx.transact_items(item);
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => Ok(()),
            Err(e) => Err(LeaseError::Store(classify(e))),
        }
    }

    /// The writes that mark an STS lease revoked (once: the condition fails if it already is) and
    /// give back its count, for a transaction with the revocation's audit item.
    pub fn mark_revoked_items(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<TransactWriteItem>, LeaseError> {
        end_items(&self.table, lease, now, End::Revoked)
    }

    /// Records a lease without counting it (tests and tools; issuance uses [`Self::record_counted`]).
    pub async fn record(&self, lease: &Lease) -> Result<(), LeaseError> {
        put_new(&self.db, &self.table, lease.to_item())
            .await
            .map_err(LeaseError::Store)
    }

    /// Records a new (pending) lease and counts it against its caller's `max` live leases of the
    /// profile and the profile's total, in one transaction: over a cap, nothing is written.
    pub async fn record_counted(&self, lease: &Lease, max: u32) -> Result<(), LeaseError> {
        let counter = lease
            .counter
            .clone()
            .ok_or_else(|| build_err("a new lease has no counter"))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        let mut tx = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        for item in count::increments(&self.table, &counter, &lease.profile, max)? {
            tx = tx.transact_items(item);
        }
        let Err(e) = tx.send().await else {
            return Ok(());
        };
        match failed_conditions(&e).as_deref() {
            // The lease id is fresh: it exists only if an earlier attempt of this very
            // transaction committed (its response was lost and the SDK retried).
            Some([true, ..]) => Ok(()),
            Some([false, true, _]) => Err(LeaseError::Limit {
                retry_after: self.seconds_until_a_lease_ends(lease).await,
                profile: lease.profile.clone(),
                principal: lease.principal.clone(),
                max,
            }),
            Some([false, false, true]) => Err(LeaseError::ProfileLimit(lease.profile.clone())),
            _ => Err(LeaseError::Store(classify(e))),
        }
    }

    /// The write that makes a pending lease active with its key id and real expiry (due then, not
    /// at the end of the grace), for the transaction with the issuance's audit item: the
    /// credentials are handed out only if both commit. It fails if the lease is no longer pending
    /// (the sweep ended a too-slow issuance).
    pub fn activate_item(
        &self,
        lease: &Lease,
        access_key_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<TransactWriteItem, LeaseError> {
        let exp = format_time(expires_at);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.id)))
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .expression_attribute_values(":k", AttributeValue::S(access_key_id.to_owned()))
            .expression_attribute_values(":exp", AttributeValue::S(exp));
        update = if lease.is_sts() {
            let ttl = (expires_at + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            update
                .update_expression("SET #s = :active, access_key_id = :k, due_at = :exp, lease_expires_at = :exp, expires_at = :ttl")
                .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()))
        } else {
            update.update_expression(
                "SET #s = :active, access_key_id = :k, due_at = :exp, lease_expires_at = :exp",
            )
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_err)?)
            .build())
    }

    /// Ends the lease of an issuance that failed before its credentials were handed out: an
    /// `iam_user` lease is revoked (its user deleted); an STS lease's record is deleted (nothing was
    /// delivered) and its count given back. Safe to repeat.
    pub async fn abandon(&self, lease: &Lease) -> Result<(), LeaseError> {
        if !lease.is_sts() {
            return self.revoke(lease).await.map(|_| ());
        }
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.id)))
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .build()
            .map_err(build_err)?;
        let mut tx = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build());
        if let Some(counter) = &lease.counter {
            for item in count::decrements(&self.table, counter, &lease.profile)? {
                tx = tx.transact_items(item);
            }
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            // Already gone or ended by the sweep: nothing is left to undo.
            Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => Ok(()),
            Err(e) => Err(LeaseError::Store(classify(e))),
        }
    }

    /// For `Retry-After`: when the caller's first live lease of the profile ends (best effort).
    async fn seconds_until_a_lease_ends(&self, lease: &Lease) -> u64 {
        let now = Utc::now();
        let first_end = self
            .list(Some(&lease.profile), Some(&lease.principal), 100, None)
            .await
            .ok()
            .and_then(|(leases, _)| {
                leases
                    .iter()
                    .filter(|l| l.status != LeaseStatus::Revoked)
                    .map(|l| l.expires_at)
                    .min()
            });
        first_end.map_or(60, |t| {
            u64::try_from((t - now).num_seconds()).unwrap_or(0).max(1)
        })
    }

    pub async fn get(&self, id: &str) -> Result<Lease, LeaseError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LeaseError::Store(classify(e)))?;
        let item = out.item.ok_or(LeaseError::NotFound)?;
        Lease::from_item(&item).ok_or_else(|| LeaseError::Corrupt(id.to_owned()))
    }

    /// Ends a lease: deletes the user and everything on it, then marks the record revoked. Safe to
    /// repeat at any point: a user already gone counts as deleted, a revoked lease stays revoked
    /// (with its first `revoked_at`).
    pub async fn revoke(&self, lease: &Lease) -> Result<(Lease, Deleted), LeaseError> {
        if lease.is_sts() {
            return Err(LeaseError::NotIamUser(lease.id.clone()));
        }
        let deleted = self.users.delete(&lease.user_name).await?;
        if lease.status == LeaseStatus::Revoked {
            return Ok((lease.clone(), deleted));
        }
        let now = Utc::now();
        self.end(lease, now, End::Revoked).await?;
        let mut revoked = lease.clone();
        revoked.status = LeaseStatus::Revoked;
        revoked.revoked_at = Some(now);
        revoked.counter = None;
        Ok((revoked, deleted))
    }
}
