//! One audit item (SPEC §7): who, when, from where, what. It has no field that can hold a secret.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::query::item_to_json;
use crate::time::format_time;

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
    /// SPEC §16: SHA-256 of a request's own session policy (never the policy).
    pub session_policy_sha256: Option<String>,
    /// SPEC §16: the STS endpoint that issued, when a profile names fallbacks.
    pub sts_endpoint: Option<String>,
}

pub const EVENT_ISSUE: &str = "AWS STS Temporary";
pub const MESSAGE_ISSUED: &str = "AWS STS Temporary Key Generated.";
/// SPEC §6a: a key nobody recorded, found by rotation; told to the operators as events of their own.
pub const EVENT_SHADOW_DETECTED: &str = "Shadow Access Key Detected";
pub const EVENT_SHADOW_DELETED: &str = "Shadow Access Key Deleted";

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
            session_policy_sha256: None,
            sts_endpoint: None,
        }
    }

    pub fn profile(mut self, name: &str) -> Self {
        self.profile = Some(name.to_owned());
        self
    }

    pub(super) fn sort_key(&self) -> String {
        format!("{}#{}", format_time(self.time), self.id)
    }

    pub(super) fn to_item(&self) -> HashMap<String, AttributeValue> {
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
            (
                "session_policy_sha256",
                self.session_policy_sha256.as_deref(),
            ),
            ("sts_endpoint", self.sts_endpoint.as_deref()),
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
        item.insert("id".to_owned(), s(&self.id.to_string()));
        // SPEC §13: the hash of the item as `GET /v1/audit` returns it, without `hash`.
        let hash = item_hash(&item_to_json(item.clone()));
        item.insert("hash".to_owned(), s(&hash));
        item
    }
}

/// Lowercase hex SHA-256 of an item's canonical JSON (RFC 8785 for what items hold: keys sorted,
/// no whitespace, strings escaped as JSON does, integers as digits), without its `hash`
/// (docs/audit-integrity.md). Anyone can recompute it from `GET /v1/audit`'s answer.
pub fn item_hash(item: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut item = item.clone();
    if let Value::Object(m) = &mut item {
        m.remove("hash");
    }
    Sha256::digest(canonical(&item).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 8785 (JCS) for objects, arrays, strings, booleans and integers — all an item holds. Keys
/// sort by UTF-16 code units, which for the ASCII keys of items is byte order.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

impl AuditRecord {
    /// The item as JSON (EventBridge `detail`), exactly the fields the trail stores.
    pub fn to_json(&self) -> Value {
        item_to_json(self.to_item())
    }
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
}
