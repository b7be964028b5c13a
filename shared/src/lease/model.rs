//! A lease as a value: its status, its JSON and audit shapes, and its state-table item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::{count, EVENT_LEASE_REVOKED, PENDING_GRACE, PK, REVOKED_RETENTION_DAYS};
use crate::audit::{format_time, AuditRecord, Category, Origin, Outcome};
use crate::profile::CredentialType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Recorded; the user may or may not exist yet.
    Pending,
    /// The user and its key exist.
    Active,
    /// The user and everything on it is gone.
    Revoked,
}

impl LeaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    pub profile: String,
    pub principal: String,
    pub user_name: String,
    pub access_key_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: LeaseStatus,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The caller's live-lease counter this lease holds a unit of (its `sk`), until it ends;
    /// `None` for leases of older versions that were never counted, or once given back.
    pub counter: Option<String>,
    /// `iam_user` for leases written before STS leases existed (the attribute is absent).
    pub credential_type: CredentialType,
    /// STS leases: the role ARN (`assumed_role`) or base IAM user ARN the session acts through.
    pub target: Option<String>,
    /// SPEC §16: SHA-256 of the request's own session policy, when it scoped the lease down.
    pub session_policy_sha256: Option<String>,
    /// SPEC §12: the end of the access request's grant this lease was issued on; a renewal
    /// never moves the lease past it.
    pub not_after: Option<DateTime<Utc>>,
}

impl Lease {
    /// A fresh STS lease, pending until its credentials are issued and audited.
    pub fn sts(
        id: String,
        profile: &str,
        principal: &str,
        credential_type: CredentialType,
        target: String,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            profile: profile.to_owned(),
            principal: principal.to_owned(),
            user_name: String::new(),
            access_key_id: None,
            created_at,
            expires_at,
            status: LeaseStatus::Pending,
            revoked_at: None,
            counter: Some(count::caller_counter(profile, principal)),
            credential_type,
            target: Some(target),
            session_policy_sha256: None,
            not_after: None,
        }
    }

    pub fn is_sts(&self) -> bool {
        self.credential_type != CredentialType::IamUser
    }

    /// `active`, `pending`, `revoked`, or (STS leases, which nothing ends but time) `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        if self.is_sts() && self.status == LeaseStatus::Active && self.expires_at <= now {
            return "expired";
        }
        self.status.as_str()
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "lease_id": self.id,
            "profile": self.profile,
            "principal": self.principal,
            "credential_type": self.credential_type.as_str(),
            "access_key_id": self.access_key_id,
            "created_at": format_time(self.created_at),
            "expiration": format_time(self.expires_at),
            "status": self.status_at(Utc::now()),
            "revoked_at": self.revoked_at.map(format_time),
        });
        if let Some(h) = &self.session_policy_sha256 {
            v["session_policy_sha256"] = json!(h);
        }
        if self.is_sts() {
            v["target"] = json!(self.target);
        } else {
            v["user_name"] = json!(self.user_name);
        }
        v
    }

    /// The audit item of a revocation (or refused revocation) of this lease.
    pub fn audit_record(&self, origin: &Origin, outcome: Outcome, message: String) -> AuditRecord {
        let mut r = AuditRecord::new(
            origin,
            Category::Data,
            EVENT_LEASE_REVOKED,
            outcome,
            message,
        )
        .profile(&self.profile);
        r.credential_type = Some(self.credential_type.as_str().to_owned());
        r.lease_id = Some(self.id.clone());
        r.access_key_id = self.access_key_id.clone();
        r
    }

    pub(super) fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut item = HashMap::from([
            ("pk".to_owned(), s(PK)),
            ("sk".to_owned(), s(&self.id)),
            ("profile".to_owned(), s(&self.profile)),
            ("principal".to_owned(), s(&self.principal)),
            ("created_at".to_owned(), s(&format_time(self.created_at))),
            (
                "lease_expires_at".to_owned(),
                s(&format_time(self.expires_at)),
            ),
            ("status".to_owned(), s(self.status.as_str())),
        ]);
        if let Some(due) = self.due_at() {
            item.insert("due_pk".into(), s(PK));
            item.insert("due_at".into(), s(&format_time(due)));
        }
        if let Some(k) = &self.access_key_id {
            item.insert("access_key_id".into(), s(k));
        }
        if !self.user_name.is_empty() {
            item.insert("user_name".into(), s(&self.user_name));
        }
        if self.is_sts() {
            item.insert("credential_type".into(), s(self.credential_type.as_str()));
        }
        if let Some(t) = &self.target {
            item.insert("target".into(), s(t));
        }
        if let Some(h) = &self.session_policy_sha256 {
            item.insert("session_policy_sha256".into(), s(h));
        }
        if let Some(t) = self.not_after {
            item.insert("not_after".into(), s(&format_time(t)));
        }
        // STS leases end on their own: the record ages out a retention period after its expiry
        // (SPEC §10a), like a revoked lease's.
        if self.is_sts() {
            let ttl = (self.expires_at + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            item.insert("expires_at".into(), AttributeValue::N(ttl.to_string()));
        }
        if let Some(c) = &self.counter {
            item.insert("count_sk".into(), s(c));
        }
        item
    }

    /// When the sweep must end this lease, or give back its count (none once revoked).
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.status {
            LeaseStatus::Pending => Some((self.created_at + PENDING_GRACE).min(self.expires_at)),
            LeaseStatus::Active => Some(self.expires_at),
            LeaseStatus::Revoked => None,
        }
    }

    pub(super) fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let t = |k: &str| {
            s(k).and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        Some(Self {
            id: s("sk")?,
            profile: s("profile")?,
            principal: s("principal")?,
            user_name: s("user_name").unwrap_or_default(),
            access_key_id: s("access_key_id"),
            created_at: t("created_at")?,
            expires_at: t("lease_expires_at")?,
            status: LeaseStatus::parse(&s("status")?)?,
            revoked_at: t("revoked_at"),
            // Leases of older versions recorded only `counted`, under the raw principal.
            counter: s("count_sk").or_else(|| {
                (item.get("counted").and_then(|v| v.as_bool().ok()) == Some(&true)).then(|| {
                    format!(
                        "{}#{}",
                        s("profile").unwrap_or_default(),
                        s("principal").unwrap_or_default()
                    )
                })
            }),
            credential_type: match s("credential_type") {
                None => CredentialType::IamUser,
                Some(t) => CredentialType::parse(&t).ok()?,
            },
            target: s("target"),
            session_policy_sha256: s("session_policy_sha256"),
            not_after: t("not_after"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_leases_are_counted_due_at_expiry_and_show_expired() {
        // Stored times keep microseconds: whole seconds round-trip exactly.
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default();
        let lease = Lease::sts(
            "id".into(),
            "p",
            "alice",
            CredentialType::AssumedRole,
            "arn:aws:iam::123456789012:role/r".into(),
            now - Duration::hours(2),
            now - Duration::hours(1),
        );
        let mut lease = lease;
        lease.status = LeaseStatus::Active;
        assert_eq!(lease.due_at(), Some(now - Duration::hours(1)));
        assert!(lease.to_item().contains_key("due_pk"));
        // Counted as the caller's role, not the session name.
        let by_role = Lease::sts(
            "id2".into(),
            "p",
            "arn:aws:sts::123456789012:assumed-role/Dev/renamed",
            CredentialType::AssumedRole,
            "arn:aws:iam::123456789012:role/r".into(),
            now,
            now,
        );
        assert_eq!(
            by_role.counter.as_deref(),
            Some("p#arn:aws:iam::123456789012:role/Dev")
        );
        assert_eq!(lease.status_at(now), "expired");
        assert_eq!(lease.status_at(now - Duration::hours(90)), "active");
        let back = Lease::from_item(&lease.to_item()).unwrap();
        assert_eq!(back, lease);
        assert_eq!(back.to_json()["target"], "arn:aws:iam::123456789012:role/r");
    }
}
