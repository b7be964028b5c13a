//! Sealing the trail (SPEC §13): every closed period gets a checkpoint — its item count, the
//! RFC 6962 Merkle root of its item hashes in (time, id) order, the hash of the checkpoint before
//! it — signed by an asymmetric KMS key, kept in the state table and archived to an S3 Object Lock
//! bucket. `keysmith audit verify` checks all of it offline (tools/audit-proof).
//!
//! Convergence: a checkpoint is written on condition that its period has none, so duplicate or
//! overlapping runs agree on one; whoever finds a period sealed continues from the stored
//! checkpoint. The archive write follows the table write, and a checkpoint not yet archived is
//! archived by the next run before anything else, so a crash between the two loses nothing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use keysmith_audit_proof::{item_hash, merkle_root, Checkpoint, GENESIS};
use serde_json::Value;

use super::{AuditError, AuditLog, Origin};
use crate::aws::{classify, AwsFailure, Dynamo, FailureKind, Lazy};
use crate::config::SealConfig;
use crate::names::Invalid;

const PK: &str = "audit-checkpoint";
/// A run seals at most a day of 5-minute periods; a longer backlog is finished by later runs.
const MAX_PERIODS_PER_RUN: usize = 288;

/// The checkpoints in the state table.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    db: Dynamo,
    table: String,
}

pub struct CheckpointPage {
    pub checkpoints: Vec<Checkpoint>,
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the audit trail could not be read or written: {0}")]
    Store(AwsFailure),
    #[error("KMS refused to sign the checkpoint of {period}: {failure}")]
    Sign { period: String, failure: AwsFailure },
    #[error("the checkpoint of {period} could not be archived to S3: {failure}")]
    Archive { period: String, failure: AwsFailure },
    #[error("{0}")]
    Proof(String),
}

impl From<AuditError> for SealError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Unavailable(f) | AuditError::Read(f) => SealError::Store(f),
        }
    }
}

/// What a sealing run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SealReport {
    /// `(period_start, count)` of each period this run sealed.
    pub sealed: Vec<(String, u64)>,
    /// Checkpoints this run wrote to the archive bucket.
    pub archived: usize,
    /// Why nothing was sealed, when sealing is off.
    pub off: Option<&'static str>,
}

impl CheckpointStore {
    pub fn new(db: impl Into<Dynamo>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
        }
    }

    /// Checkpoints whose period starts in `[since, until]`, oldest first, after the cursor
    /// `next` (a `period_start`), read on the caller's behalf and audited as `Audit Read`.
    pub async fn read(
        &self,
        audit: &AuditLog,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        next: Option<&str>,
        limit: usize,
        origin: &Origin,
    ) -> Result<CheckpointPage, AuditError> {
        let message = format!(
            "{} read the audit trail's checkpoints ({} .. {}).",
            origin.principal,
            period_key(since),
            period_key(until)
        );
        audit
            .read_as(origin, message, self.page(since, until, next, limit))
            .await
    }

    async fn page(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        next: Option<&str>,
        limit: usize,
    ) -> Result<CheckpointPage, AuditError> {
        let out = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
            .expression_attribute_values(":pk", s(PK))
            .expression_attribute_values(":low", s(&period_key(since)))
            .expression_attribute_values(":high", s(&period_key(until)))
            .set_exclusive_start_key(
                next.map(|n| HashMap::from([("pk".to_owned(), s(PK)), ("sk".to_owned(), s(n))])),
            )
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| AuditError::Read(classify(e)))?;
        let checkpoints: Vec<Checkpoint> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| from_item(i).map(|(c, _)| c))
            .collect();
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
        Ok(CheckpointPage { checkpoints, next })
    }

    /// The newest checkpoint and whether it is archived (read consistently: the sealer's own).
    async fn latest(&self) -> Result<Option<(Checkpoint, bool)>, AwsFailure> {
        let out = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(PK))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.items.unwrap_or_default().first().and_then(from_item))
    }

    async fn get(&self, period_start: &str) -> Result<Option<(Checkpoint, bool)>, AwsFailure> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key("pk", s(PK))
            .key("sk", s(period_start))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item.as_ref().and_then(from_item))
    }

    /// Writes `c` unless its period is sealed already; returns the period's checkpoint either way.
    async fn put(&self, c: &Checkpoint) -> Result<(Checkpoint, bool), AwsFailure> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(PK)),
            ("sk".to_owned(), s(&c.period_start)),
            ("archived".to_owned(), AttributeValue::Bool(false)),
            ("count".to_owned(), AttributeValue::N(c.count.to_string())),
        ]);
        for (k, v) in [
            ("period_start", &c.period_start),
            ("period_end", &c.period_end),
            ("root", &c.root),
            ("previous", &c.previous),
            ("key_id", &c.key_id),
        ] {
            item.insert(k.to_owned(), s(v));
        }
        if let Some(sig) = &c.signature {
            item.insert("signature".to_owned(), s(sig));
        }
        let written = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(classify);
        match written {
            Ok(_) => Ok((c.clone(), false)),
            Err(f) if f.kind == FailureKind::ConditionFailed => self
                .get(&c.period_start)
                .await?
                .ok_or_else(|| AwsFailure::other("a sealed period's checkpoint vanished")),
            Err(f) => Err(f),
        }
    }

    async fn mark_archived(&self, period_start: &str) -> Result<(), AwsFailure> {
        self.db
            .update_item()
            .table_name(&self.table)
            .key("pk", s(PK))
            .key("sk", s(period_start))
            .update_expression("SET archived = :t")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }
}

/// Seals closed periods: reads the audit table, signs with KMS, writes the state table and S3.
#[derive(Clone, Debug)]
pub struct Sealer {
    audit: AuditLog,
    store: CheckpointStore,
    kms: Lazy<aws_sdk_kms::Client>,
    s3: Lazy<aws_sdk_s3::Client>,
    config: SealConfig,
}

impl Sealer {
    pub fn new(
        audit: AuditLog,
        store: CheckpointStore,
        sdk: &aws_config::SdkConfig,
        config: SealConfig,
    ) -> Self {
        Self {
            audit,
            store,
            kms: Lazy::new(sdk, aws_sdk_kms::Client::new),
            s3: Lazy::new(sdk, s3_client),
            config,
        }
    }

    /// Seals every period that closed by `now` (ended at least the lag ago) and is not sealed yet,
    /// oldest first. The first run of a deployment starts at the newest closed period.
    pub async fn seal(&self, now: DateTime<Utc>) -> Result<SealReport, SealError> {
        let Some(key_id) = self.config.signing_key.clone() else {
            return Ok(SealReport {
                off: Some("sealing is off: KEYSMITH_AUDIT_SIGNING_KEY is not set"),
                ..SealReport::default()
            });
        };
        let mut report = SealReport::default();
        let period = Duration::seconds(i64::from(self.config.period_seconds));
        let closed_end = period_floor(
            now - Duration::seconds(i64::from(self.config.lag_seconds)),
            self.config.period_seconds,
        );
        let latest = self.store.latest().await.map_err(SealError::Store)?;
        let (mut start, mut previous) = match &latest {
            Some((c, archived)) => {
                if !archived {
                    report.archived += self.archive(c).await?;
                }
                (parse_period(&c.period_end)?, c.hash())
            }
            None => (closed_end - period, GENESIS.to_owned()),
        };
        while start + period <= closed_end && report.sealed.len() < MAX_PERIODS_PER_RUN {
            let end = start + period;
            let items = self
                .audit
                .between(
                    &start.format("%Y-%m-%d").to_string(),
                    &super::format_time(start),
                    &super::format_time(end),
                )
                .await?;
            let unsigned = checkpoint(&items, start, end, previous, &key_id)?;
            let signed = self.sign(unsigned).await?;
            let (stored, archived) = self.store.put(&signed).await.map_err(SealError::Store)?;
            if !archived {
                report.archived += self.archive(&stored).await?;
            }
            report
                .sealed
                .push((stored.period_start.clone(), stored.count));
            previous = stored.hash();
            start = end;
        }
        Ok(report)
    }

    async fn sign(&self, mut c: Checkpoint) -> Result<Checkpoint, SealError> {
        let failed = |failure| SealError::Sign {
            period: c.period_start.clone(),
            failure,
        };
        let out = self
            .kms
            .get()
            .sign()
            .key_id(&c.key_id)
            .message(aws_smithy_types::Blob::new(c.signed_message()))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| failed(classify(e)))?;
        let der = out
            .signature
            .ok_or_else(|| failed(AwsFailure::other("KMS returned no signature")))?;
        c.signature = Some(base64::engine::general_purpose::STANDARD.encode(der.as_ref()));
        Ok(c)
    }

    /// Writes `c` to `checkpoints/<period_start>.json` in the archive bucket (when there is one)
    /// and marks it archived. The bucket's default retention (Object Lock, compliance) protects it.
    async fn archive(&self, c: &Checkpoint) -> Result<usize, SealError> {
        let Some(bucket) = &self.config.archive_bucket else {
            return Ok(0);
        };
        let failed = |failure| SealError::Archive {
            period: c.period_start.clone(),
            failure,
        };
        let body = serde_json::to_vec(c).map_err(|e| SealError::Proof(e.to_string()))?;
        self.s3
            .get()
            .put_object()
            .bucket(bucket)
            .key(format!("checkpoints/{}.json", c.period_start))
            .content_type("application/json")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(body.into())
            .send()
            .await
            .map_err(|e| failed(classify(e)))?;
        self.store
            .mark_archived(&c.period_start)
            .await
            .map_err(failed)?;
        Ok(1)
    }
}

/// The unsigned checkpoint of one period's items: hashes recomputed from the items' content,
/// leaves in (time, id) order.
fn checkpoint(
    items: &[Value],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    previous: String,
    key_id: &str,
) -> Result<Checkpoint, SealError> {
    let field = |i: &Value, k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut leaves: Vec<(String, String, String)> = items
        .iter()
        .map(|i| (field(i, "time"), field(i, "id"), item_hash(i)))
        .collect();
    leaves.sort();
    let hashes: Vec<String> = leaves.into_iter().map(|(_, _, h)| h).collect();
    Ok(Checkpoint {
        period_start: period_key(start),
        period_end: period_key(end),
        count: hashes.len() as u64,
        root: merkle_root(&hashes).map_err(|e| SealError::Proof(e.to_string()))?,
        previous,
        key_id: key_id.to_owned(),
        signature: None,
    })
}

/// A period bound as checkpoints write it: RFC 3339, UTC, whole seconds.
fn period_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_period(s: &str) -> Result<DateTime<Utc>, SealError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SealError::Proof(format!("a stored checkpoint has a bad period bound: {s}")))
}

/// The start of the period `t` falls in.
fn period_floor(t: DateTime<Utc>, period_seconds: u32) -> DateTime<Utc> {
    let p = i64::from(period_seconds.max(1));
    let secs = t.timestamp().div_euclid(p) * p;
    Utc.timestamp_opt(secs, 0).single().unwrap_or(t)
}

/// A checkpoint cursor: a period start the API handed out.
pub fn parse_checkpoint_cursor(s: &str) -> Result<DateTime<Utc>, Invalid> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if period_key(t.with_timezone(&Utc)) == s => Ok(t.with_timezone(&Utc)),
        _ => Err(Invalid::new("next", "is not a cursor from a previous page")),
    }
}

fn from_item(i: &HashMap<String, AttributeValue>) -> Option<(Checkpoint, bool)> {
    let text = |k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned();
    let c = Checkpoint {
        period_start: text("period_start")?,
        period_end: text("period_end")?,
        count: i.get("count")?.as_n().ok()?.parse().ok()?,
        root: text("root")?,
        previous: text("previous")?,
        key_id: text("key_id")?,
        signature: text("signature"),
    };
    let archived = i
        .get("archived")
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false);
    Some((c, archived))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// Path-style addressing when an endpoint is set (a local emulator on 127.0.0.1 has no
/// per-bucket host names); AWS's own virtual-hosted style otherwise.
fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn periods_and_keys() {
        assert_eq!(
            period_floor(at("2026-12-04T20:37:59.9Z"), 300),
            at("2026-12-04T20:35:00Z")
        );
        assert_eq!(
            period_key(at("2026-12-04T20:35:00Z")),
            "2026-12-04T20:35:00Z"
        );
        assert!(parse_checkpoint_cursor("2026-12-04T20:35:00Z").is_ok());
        assert!(parse_checkpoint_cursor("2026-12-04T20:35:00.5Z").is_err());
    }

    #[test]
    fn leaves_follow_time_then_id() {
        let item = |time: &str, id: &str| serde_json::json!({"time": time, "id": id, "event": "e"});
        let a = item("2026-12-04T20:35:01.000000Z", "b");
        let b = item("2026-12-04T20:35:01.000000Z", "a");
        let c = item("2026-12-04T20:35:00.000000Z", "z");
        let start = at("2026-12-04T20:35:00Z");
        let cp = checkpoint(
            &[a.clone(), b.clone(), c.clone()],
            start,
            start,
            GENESIS.into(),
            "k",
        )
        .unwrap();
        let want = merkle_root(&[item_hash(&c), item_hash(&b), item_hash(&a)]).unwrap();
        assert_eq!((cp.count, cp.root), (3, want));
        let empty = checkpoint(&[], start, start, GENESIS.into(), "k").unwrap();
        assert_eq!(
            empty.root,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
