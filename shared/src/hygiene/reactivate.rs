//! `POST /v1/keys/{access_key_id}/reactivate` (SPEC §15): undoes the key report's deactivation,
//! and only that — a key Keysmith did not deactivate as unused or old (a quarantined one above
//! all) stays as it is.
//!
//! The API only records the request (audited, `202`); scheduled-rotation, which alone may change
//! a key's status, carries it out on its next sweep (every 3 minutes). The API role so holds no
//! `iam:UpdateAccessKey`: whoever subverts the API cannot switch keys on or off.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::Serialize;
use serde_json::Value;

use super::{HygieneError, EVENT_DEACTIVATED};
use crate::audit::{AuditLog, AuditRecord, AuditedWriteError, Category, Origin, Outcome};
use crate::aws::{classify, AwsFailure, Dynamo, FailureKind};
use crate::keys::AccessKeyId;

pub const EVENT_REACTIVATION_REQUESTED: &str = "Access Key Reactivation Requested";
pub const EVENT_REACTIVATED: &str = "Access Key Reactivated";
const PK: &str = "key-reactivation";

/// The events that change (or ask to change) a key's status; the newest decides.
const STATUS_EVENTS: [&str; 4] = [
    EVENT_DEACTIVATED,
    EVENT_REACTIVATION_REQUESTED,
    EVENT_REACTIVATED,
    super::quarantine::EVENT_QUARANTINED,
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reactivation {
    pub access_key_id: String,
    pub user_name: String,
    /// `requested`: scheduled-rotation reactivates it within minutes.
    pub status: &'static str,
}

/// The state table, where requests wait.
pub struct Pending<'a> {
    pub db: &'a Dynamo,
    pub table: &'a str,
    /// `KEYSMITH_KEY_AGE_DRY_RUN`: scheduled-rotation may change key status only when false.
    pub dry_run: bool,
}

async fn newest_status(audit: &AuditLog, id: &str) -> Result<Option<String>, HygieneError> {
    let items = audit.by_access_key(id, 100).await?;
    Ok(items
        .iter()
        .filter_map(|i| i.get("event").and_then(Value::as_str))
        .find(|e| STATUS_EVENTS.contains(e))
        .map(str::to_owned))
}

/// Records a reactivation of `id` when the newest status change Keysmith recorded for it is the
/// report's deactivation; a repeat while it waits answers the same.
pub async fn request_reactivation(
    iam: &aws_sdk_iam::Client,
    audit: &AuditLog,
    pending: &Pending<'_>,
    id: &AccessKeyId,
    origin: &Origin,
) -> Result<Reactivation, HygieneError> {
    let used = iam
        .get_access_key_last_used()
        .access_key_id(id.as_str())
        .send()
        .await
        .map_err(classify);
    let user_name = match used {
        Ok(u) => u.user_name.unwrap_or_default(),
        Err(f) if f.kind == FailureKind::NotFound => {
            return Err(HygieneError::NotFound(id.as_str().to_owned()))
        }
        Err(f) => return Err(HygieneError::Iam(f)),
    };
    if user_name.is_empty() {
        return Err(HygieneError::NotFound(id.as_str().to_owned()));
    }
    if pending.dry_run {
        return Err(HygieneError::Refused(
            "KeyAgeDryRun is true, so Keysmith changes no key's status: set it to false to reactivate, or reactivate the key in IAM yourself".into(),
        ));
    }
    let requested = Reactivation {
        access_key_id: id.as_str().to_owned(),
        user_name: user_name.clone(),
        status: "requested",
    };
    match newest_status(audit, id.as_str()).await?.as_deref() {
        Some(EVENT_DEACTIVATED) => {}
        Some(EVENT_REACTIVATION_REQUESTED) => return Ok(requested),
        newest => {
            return Err(HygieneError::Refused(format!(
                "Keysmith did not deactivate access key {} as unused or old{}, so it does not reactivate it",
                id.as_str(),
                newest.map(|e| format!(" (its latest status change: {e})")).unwrap_or_default()
            )))
        }
    }
    let mut r = AuditRecord::new(
        origin,
        Category::Data,
        EVENT_REACTIVATION_REQUESTED,
        Outcome::Success,
        format!(
            "{} asked to reactivate access key {} of user {user_name}, which the key report had deactivated.",
            origin.principal,
            id.as_str()
        ),
    );
    r.credential_type = Some("iam_access_key".into());
    r.access_key_id = Some(id.as_str().to_owned());
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let put = Put::builder()
        .table_name(pending.table)
        .set_item(Some(HashMap::from([
            ("pk".to_owned(), s(PK)),
            ("sk".to_owned(), s(id.as_str())),
            ("user_name".to_owned(), s(&user_name)),
            ("requested_by".to_owned(), s(&origin.principal)),
            ("request".to_owned(), s(&r.id.to_string())),
        ])))
        .condition_expression("attribute_not_exists(sk)")
        .build()
        .map_err(|e| HygieneError::Iam(AwsFailure::other(e.to_string())))?;
    match audit
        .write_with(vec![TransactWriteItem::builder().put(put).build()], &r)
        .await
    {
        // Requested meanwhile by another call: the same request.
        Ok(()) | Err(AuditedWriteError::Conflict) => Ok(requested),
        Err(AuditedWriteError::Audit(f)) => Err(HygieneError::Audit(
            crate::audit::AuditError::Unavailable(f),
        )),
        Err(AuditedWriteError::Store(f)) => Err(HygieneError::Iam(f)),
    }
}

/// Carries out the waiting requests (scheduled-rotation): each key still eligible is audited
/// `Access Key Reactivated` (once), set `Active`, and its request removed; a key quarantined since
/// is not reactivated. Returns the keys reactivated.
pub async fn complete_reactivations(
    iam: &aws_sdk_iam::Client,
    audit: &AuditLog,
    pending: &Pending<'_>,
    origin: &Origin,
) -> Result<Vec<String>, HygieneError> {
    // Switched back to a dry run while requests wait: they wait (this function may not act).
    if pending.dry_run {
        return Ok(Vec::new());
    }
    let out = pending
        .db
        .query()
        .table_name(pending.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(PK.into()))
        .limit(100)
        .send()
        .await
        .map_err(|e| HygieneError::Iam(classify(e)))?;
    let mut done = Vec::new();
    for item in out.items.unwrap_or_default() {
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let (key, user) = (text("sk"), text("user_name"));
        let newest = newest_status(audit, &key).await?;
        if matches!(
            newest.as_deref(),
            Some(EVENT_REACTIVATION_REQUESTED | EVENT_REACTIVATED)
        ) {
            let mut r = AuditRecord::new(
                origin,
                Category::Data,
                EVENT_REACTIVATED,
                Outcome::Success,
                format!(
                    "Access key {key} of user {user} reactivated, as {} asked.",
                    text("requested_by")
                ),
            );
            r.credential_type = Some("iam_access_key".into());
            r.access_key_id = Some(key.clone());
            let once = format!("reactivated#{key}#{}", text("request"));
            audit.write_once(&r, pending.table, &once).await?;
            let set = iam
                .update_access_key()
                .user_name(&user)
                .access_key_id(&key)
                .status(aws_sdk_iam::types::StatusType::Active)
                .send()
                .await
                .map_err(classify);
            match set {
                Ok(_) => done.push(key.clone()),
                Err(f) if f.kind == FailureKind::NotFound => {}
                Err(f) => return Err(HygieneError::Iam(f)),
            }
        }
        pending
            .db
            .delete_item()
            .table_name(pending.table)
            .key("pk", AttributeValue::S(PK.into()))
            .key("sk", AttributeValue::S(key))
            .send()
            .await
            .map_err(|e| HygieneError::Iam(classify(e)))?;
    }
    Ok(done)
}
