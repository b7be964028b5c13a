//! The sealing job (SPEC §13): every 5 minutes, checkpoints for the audit trail's closed periods.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{SealError, Sealer};

/// Seals what closed since the last run; the report names each period and its item count, or
/// says that sealing is off. A failure (KMS, S3, DynamoDB) fails the run: EventBridge retries it,
/// the function's error alarm fires, and the next run picks up where this one stopped.
pub async fn seal(sealer: &Sealer, now: DateTime<Utc>) -> Result<Value, SealError> {
    let report = sealer.seal(now).await?;
    Ok(json!({
        "sealed": report.sealed.iter().map(|(start, count)| json!({"period_start": start, "count": count})).collect::<Vec<_>>(),
        "archived": report.archived,
        "off": report.off,
    }))
}
