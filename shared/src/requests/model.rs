//! An access request as a value: its status, its JSON, its state-table item.
//!
//! Item: `pk = "request"`, `sk = <request id>` (a UUID whose first 48 bits are the creation time in
//! milliseconds, so `sk` order is creation order). Three of the state table's GSIs list requests
//! without a scan, through overloaded, prefixed keys no lease or policy can carry (principals
//! start `arn:` or `jwt:`, profile names cannot hold `#`):
//! - `due` (`due_pk`, `due_at`): `due_pk = "request#<status>"`; `due_at` is when a live status
//!   times out (pending: `expires_at`; approved: `grant_expires_at`) or when a final one began.
//!   The scheduled run reads `request#pending` / `request#approved` up to now: only what is due.
//! - `by_owner` (`principal`, `sk`): `principal = "request#<requester identity>"`.
//! - `by_profile` (`profile`, `created_at`): `profile = "request#<profile>"`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::time::format_time;

pub(super) const PK: &str = "request";
pub(super) const PREFIX: &str = "request#";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
    Issued,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::Cancelled,
        Status::Expired,
        Status::Issued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Issued => "issued",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing follows a final status (a break glass request may still be reviewed).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

/// One approver's yes.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub approver: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    pub id: String,
    pub profile: String,
    /// The requester's principal, as the trail records it.
    pub requester: String,
    /// Who the requester is for the two-person rule (a role's sessions are the role).
    pub requester_identity: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub duration: u32,
    pub break_glass: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub digest: String,
    pub status: Status,
    pub min_approvals: u32,
    pub approvals: Vec<Approval>,
    pub approved_at: Option<DateTime<Utc>>,
    pub grant_expires_at: Option<DateTime<Utc>>,
    /// Who denied or cancelled it, with their comment; when it ended.
    pub ended_by: Option<String>,
    pub comment: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    pub lease_id: Option<String>,
    pub reviewed_by: Option<String>,
    pub review_comment: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Every write bumps it; every conditional write names the one it read.
    pub version: u64,
}

impl AccessRequest {
    /// The status as of `now`: a pending request past `expires_at`, or an approved one past its
    /// grant, reads `expired` before the scheduled run (or the next action on it) records it.
    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        match self.due_to_expire(now) {
            true => Status::Expired,
            false => self.status,
        }
    }

    pub fn due_to_expire(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            Status::Pending => now >= self.expires_at,
            Status::Approved => self.grant_expires_at.is_some_and(|g| now >= g),
            _ => false,
        }
    }

    /// When the current status times out (live) or began (final): the `due` index's sort key.
    pub fn due_at(&self) -> DateTime<Utc> {
        match self.status {
            Status::Pending => self.expires_at,
            Status::Approved => self.grant_expires_at.unwrap_or(self.expires_at),
            _ => self.ended_at.unwrap_or(self.created_at),
        }
    }

    pub fn needs_review(&self) -> bool {
        self.break_glass && self.reviewed_at.is_none()
    }

    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let t = |v: Option<DateTime<Utc>>| v.map(format_time);
        json!({
            "request_id": self.id,
            "profile": self.profile,
            "requester": self.requester,
            "reason": self.reason,
            "ticket": self.ticket,
            "duration_seconds": self.duration,
            "break_glass": self.break_glass,
            "status": self.status_at(now).as_str(),
            "digest": self.digest,
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
            "min_approvals": self.min_approvals,
            "approvals": self.approvals.iter().map(|a| json!({
                "approver": a.approver, "comment": a.comment, "approved_at": format_time(a.at),
            })).collect::<Vec<_>>(),
            "approved_at": t(self.approved_at),
            "grant_expires_at": t(self.grant_expires_at),
            "ended_by": self.ended_by,
            "comment": self.comment,
            "ended_at": t(self.ended_at),
            "lease_id": self.lease_id,
            "reviewed_by": self.reviewed_by,
            "review_comment": self.review_comment,
            "reviewed_at": t(self.reviewed_at),
        })
    }

    pub(super) fn key(id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
            ("sk".to_owned(), AttributeValue::S(id.to_owned())),
        ])
    }

    pub(super) fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: u64| AttributeValue::N(v.to_string());
        let mut item = Self::key(&self.id);
        for (k, v) in [
            ("request_profile", s(&self.profile)),
            ("requester", s(&self.requester)),
            ("requester_identity", s(&self.requester_identity)),
            ("reason", s(&self.reason)),
            ("duration", n(u64::from(self.duration))),
            ("break_glass", AttributeValue::Bool(self.break_glass)),
            ("created_at", s(&format_time(self.created_at))),
            ("request_expires_at", s(&format_time(self.expires_at))),
            ("digest", s(&self.digest)),
            ("status", s(self.status.as_str())),
            ("min_approvals", n(u64::from(self.min_approvals))),
            ("version", n(self.version)),
            // The indexes (see the module's note).
            (
                "principal",
                s(&format!("{PREFIX}{}", self.requester_identity)),
            ),
            ("profile", s(&format!("{PREFIX}{}", self.profile))),
            ("due_pk", s(&format!("{PREFIX}{}", self.status.as_str()))),
            ("due_at", s(&format_time(self.due_at()))),
        ] {
            item.insert(k.to_owned(), v);
        }
        if !self.approvals.is_empty() {
            item.insert("approvals".into(), approvals_value(&self.approvals));
        }
        // A finished request ages out (TTL) a retention period after it ended; an unreviewed
        // break glass stays until it is reviewed.
        if self.status.is_final() && !self.needs_review() {
            let ttl = (self.due_at() + chrono::Duration::days(super::RETENTION_DAYS)).timestamp();
            item.insert("expires_at".into(), AttributeValue::N(ttl.to_string()));
        }
        let optional = [
            ("ticket", self.ticket.clone()),
            ("approved_at", self.approved_at.map(format_time)),
            ("grant_expires_at", self.grant_expires_at.map(format_time)),
            ("ended_by", self.ended_by.clone()),
            ("comment", self.comment.clone()),
            ("ended_at", self.ended_at.map(format_time)),
            ("lease_id", self.lease_id.clone()),
            ("reviewed_by", self.reviewed_by.clone()),
            ("review_comment", self.review_comment.clone()),
            ("reviewed_at", self.reviewed_at.map(format_time)),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                item.insert(k.to_owned(), AttributeValue::S(v));
            }
        }
        item
    }

    pub(super) fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let t = |k: &str| {
            s(k).and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok())?.parse::<u64>().ok();
        let approvals = match item.get("approvals") {
            Some(AttributeValue::L(list)) => list
                .iter()
                .filter_map(|v| {
                    let m = v.as_m().ok()?;
                    let g = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).cloned();
                    Some(Approval {
                        approver: g("approver")?,
                        comment: g("comment"),
                        at: DateTime::parse_from_rfc3339(&g("at")?)
                            .ok()?
                            .with_timezone(&Utc),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            id: s("sk")?,
            profile: s("request_profile")?,
            requester: s("requester")?,
            requester_identity: s("requester_identity")?,
            reason: s("reason")?,
            ticket: s("ticket"),
            duration: u32::try_from(n("duration")?).ok()?,
            break_glass: item.get("break_glass").and_then(|v| v.as_bool().ok()) == Some(&true),
            created_at: t("created_at")?,
            expires_at: t("request_expires_at")?,
            digest: s("digest")?,
            status: Status::parse(&s("status")?)?,
            min_approvals: u32::try_from(n("min_approvals")?).ok()?,
            approvals,
            approved_at: t("approved_at"),
            grant_expires_at: t("grant_expires_at"),
            ended_by: s("ended_by"),
            comment: s("comment"),
            ended_at: t("ended_at"),
            lease_id: s("lease_id"),
            reviewed_by: s("reviewed_by"),
            review_comment: s("review_comment"),
            reviewed_at: t("reviewed_at"),
            version: n("version")?,
        })
    }
}

pub(super) fn approvals_value(approvals: &[Approval]) -> AttributeValue {
    AttributeValue::L(
        approvals
            .iter()
            .map(|a| {
                let mut m = HashMap::from([
                    ("approver".to_owned(), AttributeValue::S(a.approver.clone())),
                    ("at".to_owned(), AttributeValue::S(format_time(a.at))),
                ]);
                if let Some(c) = &a.comment {
                    m.insert("comment".into(), AttributeValue::S(c.clone()));
                }
                AttributeValue::M(m)
            })
            .collect(),
    )
}

/// A new request id: a UUID (version 7 layout) whose first 48 bits are the time in milliseconds,
/// so ids, and the `sk` and `by_owner` orders, follow creation.
pub fn new_id(now: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random.as_bytes()[6..16]);
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(ms, &tail)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(now: DateTime<Utc>) -> AccessRequest {
        AccessRequest {
            id: new_id(now),
            profile: "deploy".into(),
            requester: "arn:aws:sts::123456789012:assumed-role/Dev/alice".into(),
            requester_identity: "arn:aws:iam::123456789012:role/Dev".into(),
            reason: "hotfix".into(),
            ticket: Some("OPS-1".into()),
            duration: 3600,
            break_glass: false,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(300),
            digest: "d".into(),
            status: Status::Pending,
            min_approvals: 2,
            approvals: vec![Approval {
                approver: "arn:aws:iam::123456789012:user/bob".into(),
                comment: Some("ok".into()),
                at: now,
            }],
            approved_at: None,
            grant_expires_at: None,
            ended_by: None,
            comment: None,
            ended_at: None,
            lease_id: None,
            reviewed_by: None,
            review_comment: None,
            reviewed_at: None,
            version: 3,
        }
    }

    #[test]
    fn round_trip_and_expiry_on_read() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T15:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = sample(now);
        let item = r.to_item();
        assert_eq!(AccessRequest::from_item(&item).unwrap(), r);
        assert_eq!(item["due_pk"].as_s().unwrap(), "request#pending");
        assert_eq!(item["profile"].as_s().unwrap(), "request#deploy");
        assert_eq!(r.status_at(now), Status::Pending);
        assert_eq!(
            r.status_at(now + chrono::Duration::seconds(300)),
            Status::Expired
        );
    }

    #[test]
    fn ids_follow_time() {
        let now = Utc::now();
        let a = new_id(now);
        let b = new_id(now + chrono::Duration::milliseconds(2));
        assert!(a < b, "{a} {b}");
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
