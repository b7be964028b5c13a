//! The audit trail (SPEC §7): one DynamoDB item per event, written before the caller sees a result.
//!
//! Layout: partition `day` = `YYYY-MM-DD#<shard>` (16 shards by a hash of the item id, SPEC §13),
//! sort key `sk` = `<time>#<uuid>` with a fixed-width time, so a day's items sort chronologically
//! in each shard. GSIs `by_principal`, `by_profile` and `by_access_key` share that sort key, which
//! gives the queries SPEC asks for (time range, principal, profile, key) without a scan.
//!
//! [`record`] is the item, [`query`] reads the trail, [`report`] tells operators what was written
//! (metrics and events, derived from the record in one place), [`seal`] signs closed periods.

mod query;
mod record;
mod report;
mod seal;

pub use crate::time::format_time;
pub use query::{
    parse_cursor, AuditPage, AuditQuery, Window, DEFAULT_WINDOW_DAYS, EVENT_AUDIT_READ,
    MAX_WINDOW_DAYS, PAGE_BYTES,
};
pub use record::*;
pub use report::Reporter;
pub use seal::{
    parse_checkpoint_cursor, CheckpointPage, CheckpointStore, SealError, SealReport, Sealer,
};

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use crate::aws::{classify, AwsFailure, FailureKind};
use crate::ops::{self, Metric};
use crate::state::put_new;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit trail could not be written: {0}")]
    Unavailable(AwsFailure),
    #[error("the audit trail could not be read: {0}")]
    Read(AwsFailure),
}

/// Why an audited change was not written.
#[derive(Debug)]
pub enum AuditedWriteError {
    /// The change's condition failed: someone changed the item meanwhile.
    Conflict,
    Audit(AwsFailure),
    Store(AwsFailure),
}

#[derive(Clone, Debug)]
pub struct AuditLog {
    db: crate::aws::Dynamo,
    table: String,
    reporter: Reporter,
}

impl AuditLog {
    pub fn new(db: impl Into<crate::aws::Dynamo>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
            reporter: Reporter::default(),
        }
    }

    /// Also reports what is audited as metrics and events (SPEC §11).
    pub fn reporting(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Appends `record` (append-only: see `state::put_new`).
    pub async fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let written = put_new(&self.db, &self.table, record.to_item())
            .await
            .map_err(AuditError::Unavailable);
        self.reported(record, written.is_ok()).await;
        written
    }

    /// Metrics and events follow the record, never precede it: only a written item is reported.
    async fn reported(&self, record: &AuditRecord, written: bool) {
        if written {
            self.reporter.recorded(record).await;
        } else {
            ops::count(Metric::AuditWriteFailed, None);
        }
    }

    /// Writes `changes` (to the state table) and its audit item in one transaction: the change
    /// happens audited or not at all. Callers read the state table just before, so a missing table
    /// here is the audit table. The record's id is the `ClientRequestToken`, and a failed condition
    /// is checked against the record itself: if an earlier attempt (whose answer was lost) wrote
    /// it, the change happened and this is success, not a conflict.
    pub async fn write_with(
        &self,
        changes: Vec<TransactWriteItem>,
        record: &AuditRecord,
    ) -> Result<(), AuditedWriteError> {
        let result = self
            .transact(changes, record, Some(&record.id.to_string()))
            .await;
        let written = match result {
            Err(f) if f.kind == FailureKind::ConditionFailed => {
                if self
                    .exists(record)
                    .await
                    .map_err(AuditedWriteError::Store)?
                {
                    Ok(())
                } else {
                    Err(AuditedWriteError::Conflict)
                }
            }
            Err(f) if f.kind == FailureKind::NotFound => Err(AuditedWriteError::Audit(f)),
            Err(f) => Err(AuditedWriteError::Store(f)),
            Ok(()) => Ok(()),
        };
        if !matches!(written, Err(AuditedWriteError::Conflict)) {
            self.reported(record, written.is_ok()).await;
        }
        written
    }

    /// Writes `record` once per `once` key, however often it is called: a marker item
    /// (`pk = "audit-once"`, `sk = once`) in `marker_table` is put in the same transaction, on
    /// condition that it does not exist yet. A step retried after a crash writes nothing new.
    pub async fn write_once(
        &self,
        record: &AuditRecord,
        marker_table: &str,
        once: &str,
    ) -> Result<(), AuditError> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        // Markers only need to outlive the retries of one rotation.
        let expires = record.time.timestamp() + 90 * 86_400;
        let marker = Put::builder()
            .table_name(marker_table)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s("audit-once")),
                ("sk".to_owned(), s(once)),
                (
                    "expires_at".to_owned(),
                    AttributeValue::N(expires.to_string()),
                ),
            ])))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(|e| AuditError::Unavailable(AwsFailure::other(e.to_string())))?;
        let change = TransactWriteItem::builder().put(marker).build();
        // No ClientRequestToken: a retried step builds its record anew (time, id), and DynamoDB
        // refuses a reused token with other items (IdempotentParameterMismatch) for 10 minutes.
        // The marker's condition alone makes the write happen once; a retry finds it and is done.
        // Reported once too: a retried step whose item exists is neither counted nor announced again.
        match self.transact(vec![change], record, None).await {
            Ok(()) => {
                self.reported(record, true).await;
                Ok(())
            }
            Err(f) if f.kind == FailureKind::ConditionFailed => Ok(()),
            Err(f) => {
                self.reported(record, false).await;
                Err(AuditError::Unavailable(f))
            }
        }
    }

    async fn transact(
        &self,
        changes: Vec<TransactWriteItem>,
        record: &AuditRecord,
        token: Option<&str>,
    ) -> Result<(), AwsFailure> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(|e| AwsFailure::other(e.to_string()))?;
        self.db
            .transact_write_items()
            .set_transact_items(Some(changes))
            .transact_items(TransactWriteItem::builder().put(put).build())
            .set_client_request_token(token.map(str::to_owned))
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Whether `record` is in the table (read consistently).
    async fn exists(&self, record: &AuditRecord) -> Result<bool, AwsFailure> {
        let item = record.to_item();
        let key: HashMap<String, AttributeValue> = item
            .into_iter()
            .filter(|(k, _)| k == "day" || k == "sk")
            .collect();
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item.is_some())
    }
}
