//! The audit trail (SPEC §7): one DynamoDB item per event, written before the caller sees a result.
//!
//! Layout: partition `day` (`YYYY-MM-DD`), sort key `sk` = `<time>#<uuid>` with a fixed-width time,
//! so a day's items sort chronologically. GSIs `by_principal` and `by_profile` share that sort key,
//! which gives the three queries SPEC asks for (time range, principal, profile) without a scan.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{Map, Value};

use crate::aws::{classify, AwsFailure, FailureKind};
use crate::ops::{self, Metric, Ops};
use crate::state::put_new;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Data,
    Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    fn level(self) -> Level {
        match self {
            Outcome::Success => Level::Info,
            Outcome::Denied => Level::Warn,
            Outcome::Failed => Level::Error,
        }
    }
}

/// Who asked, from where: the request context every audit item carries.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub principal: String,
    pub source_ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub region: String,
}

/// One audit item. It has no field that can hold a secret: key ids only.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    pub id: uuid::Uuid,
    pub origin: Origin,
    pub category: Category,
    pub level: Level,
    pub event: String,
    pub message: String,
    pub outcome: Outcome,
    pub duration_seconds: Option<u32>,
    pub profile: Option<String>,
    pub credential_type: Option<String>,
    pub access_key_id: Option<String>,
    pub lease_id: Option<String>,
}

pub const EVENT_ISSUE: &str = "AWS STS Temporary";
pub const MESSAGE_ISSUED: &str = "AWS STS Temporary Key Generated.";

impl AuditRecord {
    pub fn new(
        origin: &Origin,
        category: Category,
        event: &str,
        outcome: Outcome,
        message: impl Into<String>,
    ) -> Self {
        Self {
            time: Utc::now(),
            id: uuid::Uuid::new_v4(),
            origin: origin.clone(),
            category,
            level: outcome.level(),
            event: event.to_owned(),
            message: message.into(),
            outcome,
            duration_seconds: None,
            profile: None,
            credential_type: None,
            access_key_id: None,
            lease_id: None,
        }
    }

    pub fn profile(mut self, name: &str) -> Self {
        self.profile = Some(name.to_owned());
        self
    }

    fn sort_key(&self) -> String {
        format!("{}#{}", format_time(self.time), self.id)
    }

    fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut item = HashMap::from([
            (
                "day".to_owned(),
                s(&self.time.format("%Y-%m-%d").to_string()),
            ),
            ("sk".to_owned(), s(&self.sort_key())),
            ("time".to_owned(), s(&format_time(self.time))),
            ("principal".to_owned(), s(&self.origin.principal)),
            ("source_ip".to_owned(), s(&self.origin.source_ip)),
            ("user_agent".to_owned(), s(&self.origin.user_agent)),
            ("request_id".to_owned(), s(&self.origin.request_id)),
            ("region".to_owned(), s(&self.origin.region)),
            (
                "category".to_owned(),
                s(match self.category {
                    Category::Data => "Data",
                    Category::Config => "Config",
                }),
            ),
            (
                "level".to_owned(),
                s(match self.level {
                    Level::Info => "INFO",
                    Level::Warn => "WARN",
                    Level::Error => "ERROR",
                }),
            ),
            ("event".to_owned(), s(&self.event)),
            ("message".to_owned(), s(&self.message)),
            ("outcome".to_owned(), s(self.outcome.as_str())),
        ]);
        // Absent values are left out rather than written empty: `principal` and `profile` key the
        // GSIs, and DynamoDB refuses empty strings in index keys.
        let optional = [
            ("profile", self.profile.as_deref()),
            ("credential_type", self.credential_type.as_deref()),
            ("access_key_id", self.access_key_id.as_deref()),
            ("lease_id", self.lease_id.as_deref()),
        ];
        for (name, value) in optional {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                item.insert(name.to_owned(), s(v));
            }
        }
        if let Some(d) = self.duration_seconds {
            item.insert(
                "duration_seconds".to_owned(),
                AttributeValue::N(d.to_string()),
            );
        }
        if self.origin.principal.is_empty() {
            item.remove("principal");
        }
        item
    }
}

impl AuditRecord {
    /// The item as JSON (EventBridge `detail`), exactly the fields the trail stores.
    pub fn to_json(&self) -> Value {
        item_to_json(self.to_item())
    }
}

pub use crate::time::format_time;

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
    db: aws_sdk_dynamodb::Client,
    table: String,
    ops: Ops,
}

/// A query over the trail. Built by the API layer from validated parameters.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub profile: Option<String>,
    pub event: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The `sk` of the last item of the previous page.
    pub next: Option<String>,
}

/// Without `since`, a time-range query (no principal, no profile) looks back this far.
pub const DEFAULT_WINDOW_DAYS: u64 = 30;
/// The longest time-range query: it walks one partition per day.
pub const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Debug)]
pub struct AuditPage {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

impl AuditLog {
    pub fn new(db: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
            ops: Ops::default(),
        }
    }

    /// Also reports what is audited as metrics and events (SPEC §11).
    pub fn reporting(mut self, ops: Ops) -> Self {
        self.ops = ops;
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
            self.ops.recorded(record).await;
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

    /// Newest first. Principal and profile queries use their index; a time-range query walks day
    /// partitions backwards from `until`.
    pub async fn query(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let until = q.until.unwrap_or_else(Utc::now);
        let since = q.since.unwrap_or_else(|| {
            until
                .checked_sub_days(Days::new(DEFAULT_WINDOW_DAYS))
                .unwrap_or(until)
        });
        let low = format_time(since);
        // '~' sorts after every character of `<time>#<uuid>`, so `until` itself is included.
        let high = format!("{}#~", format_time(until));

        let (index, key_name, key_value) = match (&q.principal, &q.profile) {
            (Some(p), _) => (Some("by_principal"), "principal", p.clone()),
            (None, Some(p)) => (Some("by_profile"), "profile", p.clone()),
            (None, None) => (None, "day", day_of(q.next.as_deref().unwrap_or(&high))),
        };
        let mut filters = Vec::new();
        let mut values = HashMap::from([(":low".to_owned(), AttributeValue::S(low.clone()))]);
        if q.principal.is_some() {
            if let Some(profile) = &q.profile {
                filters.push("profile = :profile");
                values.insert(":profile".into(), AttributeValue::S(profile.clone()));
            }
        }
        if let Some(event) = &q.event {
            filters.push("event = :event");
            values.insert(":event".into(), AttributeValue::S(event.clone()));
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let last_day = day_of(&low);

        let mut items = Vec::new();
        // Resume after the cursor item: its table key (day, sk) plus the index's partition key.
        let mut start = q.next.as_ref().map(|next| {
            HashMap::from([
                ("day".to_owned(), AttributeValue::S(day_of(next))),
                ("sk".to_owned(), AttributeValue::S(next.clone())),
                (key_name.to_owned(), AttributeValue::S(key_value.clone())),
            ])
        });
        let mut key_value = key_value;
        loop {
            let mut values = values.clone();
            values.insert(":key".into(), AttributeValue::S(key_value.clone()));
            values.insert(":high".into(), AttributeValue::S(high.clone()));
            let want = q.limit.saturating_sub(items.len());
            let page = self
                .db
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :key AND sk BETWEEN :low AND :high")
                .expression_attribute_names("#k", key_name)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_values(Some(values))
                .scan_index_forward(false)
                .limit(i32::try_from(want.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AuditError::Read(classify(e)))?;
            items.extend(page.items.unwrap_or_default());
            if items.len() >= q.limit {
                items.truncate(q.limit);
                break;
            }
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None if index.is_none() && key_value > last_day => {
                    // Next older day partition.
                    key_value = previous_day(&key_value).unwrap_or_default();
                    if key_value.is_empty() {
                        break;
                    }
                }
                None => break,
            }
        }
        let next = if items.len() == q.limit {
            items
                .last()
                .and_then(|i| i.get("sk"))
                .and_then(|v| v.as_s().ok())
                .cloned()
        } else {
            None
        };
        Ok(AuditPage {
            items: items.into_iter().map(item_to_json).collect(),
            next,
        })
    }
}

fn day_of(sort_key: &str) -> String {
    sort_key.get(..10).unwrap_or_default().to_owned()
}

fn previous_day(day: &str) -> Option<String> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    d.pred_opt().map(|p| p.format("%Y-%m-%d").to_string())
}

/// Is `s` a page cursor this module produced (`<time>#<uuid>`)?
pub fn parse_cursor(s: &str) -> Option<String> {
    let (time, id) = s.split_once('#')?;
    DateTime::parse_from_rfc3339(time).ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(s.to_owned())
}

fn item_to_json(item: HashMap<String, AttributeValue>) -> Value {
    let mut out = Map::new();
    for (k, v) in item {
        if k == "day" || k == "sk" {
            continue;
        }
        let value = match v {
            AttributeValue::S(s) => Value::String(s),
            AttributeValue::N(n) => n
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(n)),
            AttributeValue::Bool(b) => Value::Bool(b),
            _ => continue,
        };
        out.insert(k, value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_has_keys_and_omits_empty_index_keys() {
        let origin = Origin {
            principal: "arn:aws:iam::1:user/a".into(),
            ..Origin::default()
        };
        let mut r = AuditRecord::new(&origin, Category::Data, EVENT_ISSUE, Outcome::Denied, "no");
        r.profile = Some(String::new());
        let item = r.to_item();
        assert_eq!(item["level"].as_s().unwrap(), "WARN");
        assert_eq!(item["outcome"].as_s().unwrap(), "denied");
        assert!(!item.contains_key("profile"));
        assert_eq!(item["sk"].as_s().unwrap().len(), 27 + 1 + 36);
        assert_eq!(
            &item["sk"].as_s().unwrap()[..10],
            item["day"].as_s().unwrap()
        );
    }

    #[test]
    fn cursors_and_days() {
        assert_eq!(previous_day("2026-03-01").unwrap(), "2026-02-28");
        let sk = format!("2026-11-21T15:04:05.000001Z#{}", uuid::Uuid::new_v4());
        assert_eq!(parse_cursor(&sk), Some(sk.clone()));
        assert_eq!(parse_cursor("2026-11-21#x"), None);
        assert_eq!(day_of(&sk), "2026-11-21");
    }
}
