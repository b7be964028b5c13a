//! Access requests in the state table (layout in `model.rs`). Every change is a whole-item put on
//! condition that the `version` read is still the stored one, in one transaction with its audit
//! item (and the items that keep a rule: one per approver, one per unreviewed break glass), so
//! two writers never both win and no change goes unaudited.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use base64::Engine;
use chrono::{DateTime, Utc};

use super::model::{AccessRequest, PK, PREFIX};
use super::RequestError;
use crate::audit::{AuditLog, AuditRecord, AuditedWriteError};
use crate::aws::{classify, AwsFailure};

const APPROVAL_PK: &str = "request-approval";
const BREAK_GLASS_PK: &str = "break-glass";

/// Which index a listing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Index {
    /// Every request, newest first (the base table's `pk = "request"`).
    All,
    Status(super::Status),
    Owner(String),
    Profile(String),
}

impl Index {
    /// Whether `key` is a start key of this index's query: exactly its attributes, its own
    /// partition (a cursor of another query would be refused by DynamoDB, a 5xx).
    pub fn fits(&self, key: &HashMap<String, AttributeValue>) -> bool {
        let (_, hash, value) = self.parts();
        let extra: &[&str] = match self {
            Self::All => &[],
            Self::Status(_) => &["due_pk", "due_at"],
            Self::Owner(_) => &["principal"],
            Self::Profile(_) => &["profile", "created_at"],
        };
        key.len() == 2 + extra.len()
            && ["pk", "sk"]
                .iter()
                .chain(extra)
                .all(|k| key.contains_key(*k))
            && key.get(hash).and_then(|v| v.as_s().ok()) == Some(&value)
    }

    /// (index name, hash attribute, value); `None` index: the base table.
    fn parts(&self) -> (Option<&'static str>, &'static str, String) {
        match self {
            Self::All => (None, "pk", PK.to_owned()),
            Self::Status(s) => (Some("due"), "due_pk", format!("{PREFIX}{}", s.as_str())),
            Self::Owner(o) => (Some("by_owner"), "principal", format!("{PREFIX}{o}")),
            Self::Profile(p) => (Some("by_profile"), "profile", format!("{PREFIX}{p}")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestStore {
    db: crate::aws::Dynamo,
    table: String,
    audit: AuditLog,
}

fn build_err(e: impl std::fmt::Display) -> RequestError {
    RequestError::Store(AwsFailure::other(e.to_string()))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl RequestStore {
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

    pub async fn get(&self, id: &str) -> Result<Option<AccessRequest>, RequestError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(AccessRequest::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| RequestError::Store(classify(e)))?;
        match out.item {
            None => Ok(None),
            Some(item) => AccessRequest::from_item(&item)
                .map(Some)
                .ok_or_else(|| RequestError::Corrupt(id.to_owned())),
        }
    }

    /// The request's item, written only if `expect_version` is the stored version (`None`: only
    /// if there is none yet).
    pub fn put_item(
        &self,
        request: &AccessRequest,
        expect_version: Option<u64>,
    ) -> Result<TransactWriteItem, RequestError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(request.to_item()));
        let put = match expect_version {
            None => put.condition_expression("attribute_not_exists(sk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_err)?)
            .build())
    }

    /// One item per (request, approver), written once: the same approver never counts twice,
    /// whatever the timing of their calls.
    pub fn approval_item(
        &self,
        request: &AccessRequest,
        identity: &str,
    ) -> Result<TransactWriteItem, RequestError> {
        let ttl = (request.expires_at + chrono::Duration::days(super::RETENTION_DAYS)).timestamp();
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(APPROVAL_PK))
            .item("sk", s(&format!("{}#{identity}", request.id)))
            .item("approver", s(identity))
            .item("expires_at", AttributeValue::N(ttl.to_string()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn break_glass_key(profile: &str, identity: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(BREAK_GLASS_PK)),
            ("sk".to_owned(), s(&format!("{profile}#{identity}"))),
        ])
    }

    /// The marker of an unreviewed break glass of (profile, identity): while it exists, that
    /// identity cannot break glass on that profile again.
    pub fn break_glass_marker(
        &self,
        request: &AccessRequest,
    ) -> Result<TransactWriteItem, RequestError> {
        let mut item = Self::break_glass_key(&request.profile, &request.requester_identity);
        item.insert("request_id".into(), s(&request.id));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub fn clear_break_glass(
        &self,
        request: &AccessRequest,
    ) -> Result<TransactWriteItem, RequestError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::break_glass_key(
                &request.profile,
                &request.requester_identity,
            )))
            .condition_expression("attribute_not_exists(sk) OR request_id = :id")
            .expression_attribute_values(":id", s(&request.id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The unreviewed break glass request of (profile, identity), if any.
    pub async fn unreviewed_break_glass(
        &self,
        profile: &str,
        identity: &str,
    ) -> Result<Option<String>, RequestError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::break_glass_key(profile, identity)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| RequestError::Store(classify(e)))?;
        Ok(out
            .item
            .and_then(|i| i.get("request_id").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Writes `changes` with `record` in one transaction. `Ok(false)`: a condition failed (someone
    /// else changed the request first); the caller reads it again.
    pub async fn commit(
        &self,
        changes: Vec<TransactWriteItem>,
        record: &AuditRecord,
    ) -> Result<bool, RequestError> {
        match self.audit.write_with(changes, record).await {
            Ok(()) => Ok(true),
            Err(AuditedWriteError::Conflict) => Ok(false),
            Err(AuditedWriteError::Audit(_)) => Err(RequestError::AuditUnavailable),
            Err(AuditedWriteError::Store(f)) => Err(RequestError::Store(f)),
        }
    }

    /// One page of `index` (newest first), at most `limit` items read, after `start` (a cursor
    /// from [`Self::cursor`]); with `status` (only for the profile index), a filter on it.
    pub async fn page(
        &self,
        index: &Index,
        status: Option<super::Status>,
        limit: usize,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<AccessRequest>, Option<HashMap<String, AttributeValue>>), RequestError> {
        let (name, hash, value) = index.parts();
        let mut q = self
            .db
            .query()
            .table_name(&self.table)
            .set_index_name(name.map(str::to_owned))
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":h", s(&value))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(100))
            .set_exclusive_start_key(start);
        if let Some(st) = status {
            q = q
                .filter_expression("#s = :s")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":s", s(st.as_str()));
        }
        let out = q
            .send()
            .await
            .map_err(|e| RequestError::Store(classify(e)))?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|i| {
                AccessRequest::from_item(i).ok_or_else(|| RequestError::Corrupt("(list)".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, out.last_evaluated_key))
    }

    /// Requests of `status` whose `due_at` is past: the ones the scheduled run expires.
    pub async fn due(
        &self,
        status: super::Status,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccessRequest>, RequestError> {
        let items = crate::state::due_items(
            &self.db,
            &self.table,
            &format!("{PREFIX}{}", status.as_str()),
            now,
        )
        .await
        .map_err(RequestError::Store)?;
        items
            .iter()
            .map(|i| {
                AccessRequest::from_item(i).ok_or_else(|| RequestError::Corrupt("(due)".into()))
            })
            .collect()
    }
}

/// A page cursor: the last evaluated key's string attributes, base64url JSON (opaque to callers).
pub fn encode_cursor(phase: u8, key: &HashMap<String, AttributeValue>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::json!(v.as_s().ok()?))))
        .collect();
    let doc = serde_json::json!({"p": phase, "k": map});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
}

/// The phase and key of a cursor [`encode_cursor`] made; `None` for anything else. Only the
/// attributes a request's keys use, and only a request's own `pk`, are accepted.
pub fn decode_cursor(text: &str) -> Option<(u8, HashMap<String, AttributeValue>)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let phase = u8::try_from(doc["p"].as_u64()?).ok()?;
    let mut key = HashMap::new();
    for (k, v) in doc["k"].as_object()? {
        if ![
            "pk",
            "sk",
            "principal",
            "profile",
            "created_at",
            "due_pk",
            "due_at",
        ]
        .contains(&k.as_str())
        {
            return None;
        }
        key.insert(k.clone(), s(v.as_str()?));
    }
    // Empty: the start of a phase; otherwise a request's own key.
    let own = key
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some(PK);
    (key.is_empty() || own).then_some((phase, key))
}
