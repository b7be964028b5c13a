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
    /// SPEC §12: the access request an item is about (its transitions, approvals, issuance).
    pub access_request_id: Option<String>,
}

pub const EVENT_ISSUE: &str = "AWS STS Temporary";
pub const MESSAGE_ISSUED: &str = "AWS STS Temporary Key Generated.";
/// SPEC §6a: a key nobody recorded, found by rotation; told to the operators as events of their own.
pub const EVENT_SHADOW_DETECTED: &str = "Shadow Access Key Detected";
pub const EVENT_SHADOW_DELETED: &str = "Shadow Access Key Deleted";
/// SPEC §12: access requests. Each transition and each approval is one item of these events.
pub const EVENT_ACCESS_REQUESTED: &str = "Access Requested";
pub const EVENT_ACCESS_APPROVED: &str = "Access Approved";
pub const EVENT_ACCESS_DENIED: &str = "Access Denied";
pub const EVENT_REQUEST_CANCELLED: &str = "Access Request Cancelled";
pub const EVENT_REQUEST_EXPIRED: &str = "Access Request Expired";
pub const EVENT_BREAK_GLASS_USED: &str = "Break Glass Used";
pub const EVENT_BREAK_GLASS_REVIEWED: &str = "Break Glass Reviewed";
pub const REQUEST_EVENTS: &[&str] = &[
    EVENT_ACCESS_REQUESTED,
    EVENT_ACCESS_APPROVED,
    EVENT_ACCESS_DENIED,
    EVENT_REQUEST_CANCELLED,
    EVENT_REQUEST_EXPIRED,
    EVENT_BREAK_GLASS_USED,
    EVENT_BREAK_GLASS_REVIEWED,
];

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
            access_request_id: None,
        }
    }

    pub fn profile(mut self, name: &str) -> Self {
        self.profile = Some(name.to_owned());
        self
    }

    /// SPEC §13: `day#<shard>`, the shard a hash of the id, so writes spread over 16 partitions.
    pub(super) fn partition(&self) -> String {
        partition(
            &self.time.format("%Y-%m-%d").to_string(),
            &self.id.to_string(),
        )
    }

    pub(super) fn sort_key(&self) -> String {
        format!("{}#{}", format_time(self.time), self.id)
    }

    pub(super) fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut item = HashMap::from([
            ("day".to_owned(), s(&self.partition())),
            ("sk".to_owned(), s(&self.sort_key())),
            ("time".to_owned(), s(&format_time(self.time))),
            ("principal".to_owned(), s(&self.origin.principal)),
            (
                "source_ip".to_owned(),
                s(cut(&self.origin.source_ip, FREE_TEXT)),
            ),
            (
                "user_agent".to_owned(),
                s(cut(&self.origin.user_agent, FREE_TEXT)),
            ),
            (
                "request_id".to_owned(),
                s(cut(&self.origin.request_id, FREE_TEXT)),
            ),
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
            ("message".to_owned(), s(cut(&self.message, MESSAGE))),
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
            ("access_request_id", self.access_request_id.as_deref()),
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

/// Shards of a day's partition (SPEC §13).
pub const SHARDS: u8 = 16;
/// What a caller can make long (user agent, source ip, request id) is cut to this many
/// characters when written, so one item stays small and a page of them fits a Lambda response.
pub const FREE_TEXT: usize = 512;
/// Messages quote callers' filters and names; cut to this many characters.
pub const MESSAGE: usize = 2048;

/// The partition of an item of `day` (`YYYY-MM-DD`) with this id: `day#<0..15>`, the shard
/// being the first byte of SHA-256(id) modulo 16.
pub fn partition(day: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let first = Sha256::digest(id.as_bytes())[0];
    format!("{day}#{}", first % SHARDS)
}

/// The first `max` characters of `text` (never splitting a character).
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// SPEC §13's item hash and its canonical JSON (RFC 8785), shared with `keysmith audit verify`
/// (docs/audit-integrity.md): anyone can recompute it from `GET /v1/audit`'s answer.
pub use keysmith_audit_proof::{canonical, item_hash};

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
        let day = item["day"].as_s().unwrap();
        assert_eq!(&item["sk"].as_s().unwrap()[..10], &day[..10]);
        let shard: u8 = day[11..].parse().unwrap();
        assert!(shard < SHARDS, "{day}");
    }

    #[test]
    fn free_text_is_cut_on_a_character() {
        let origin = Origin {
            user_agent: "é".repeat(10_000),
            ..Origin::default()
        };
        let mut r = AuditRecord::new(&origin, Category::Data, EVENT_ISSUE, Outcome::Denied, "m");
        r.message = "x".repeat(100_000);
        let item = r.to_item();
        assert_eq!(
            item["user_agent"].as_s().unwrap().chars().count(),
            FREE_TEXT
        );
        assert_eq!(item["message"].as_s().unwrap().len(), MESSAGE);
    }

    #[test]
    fn shards_spread() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            seen.insert(partition("2026-12-04", &uuid::Uuid::new_v4().to_string()));
        }
        assert_eq!(seen.len(), usize::from(SHARDS));
    }
}
