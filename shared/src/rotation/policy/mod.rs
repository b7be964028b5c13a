//! Rotation policies (SPEC §6): which secret to rotate, how often, at what hour. Stored in the
//! state table (`pk = "rotation"`, `sk = <name>`); an enabled policy carries `due_pk = "rotation"`
//! and `due_at = <next due time>`, so a scheduled run queries the `due` index for exactly the due
//! policies. The lock lives on the policy item: a conditional update that only succeeds while the
//! policy is unlocked (or its lock expired) and, for scheduled runs, still due ([`store`]).

mod store;

pub use store::{Due, PolicyStore, Settle};

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::aws::AwsFailure;
use crate::names::{aws_id, Invalid, ProfileName};
use crate::profile::parse_json;
use crate::time::format_time;

const PK: &str = "rotation";
/// A lock outlives the longest Lambda invocation (15 min): a run that dies leaves a lock that
/// the next hourly run finds expired.
pub const LOCK_TTL_MINUTES: i64 = 15;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: ProfileName,
    pub secret_id: String,
    pub interval_days: u16,
    pub rotation_hour_utc: Option<u8>,
    pub enabled: bool,
    pub last_rotated_at: Option<DateTime<Utc>>,
    pub status: Status,
    pub last_error: Option<String>,
    /// SPEC §15, graceful mode: the previous key is deactivated only once unused this long.
    pub retire_unused_hours: Option<u16>,
    /// Why the policy is `waiting_for_unused` (the key, its last use, when it may retire).
    pub status_reason: Option<String>,
    /// Rotate-now asked for a rotation that has not happened yet (it may wait for the previous
    /// key to fall unused, so `status` alone cannot remember it).
    pub requested: bool,
}

/// Where a policy's rotation stands (`GET /v1/rotations/{name}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Idle,
    /// Rotate-now asked for it; the next scheduled-rotation run does it.
    Requested,
    Rotating,
    Failed,
    /// SPEC §15: the previous key is still in use; it stays active until unused for
    /// `retire_unused_hours`, and a due rotation waits for it.
    WaitingForUnused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Requested => "requested",
            Self::Rotating => "rotating",
            Self::Failed => "failed",
            Self::WaitingForUnused => "waiting_for_unused",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "requested" => Self::Requested,
            "rotating" => Self::Rotating,
            "failed" => Self::Failed,
            "waiting_for_unused" => Self::WaitingForUnused,
            _ => Self::Idle,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Option<String>,
    secret_id: String,
    interval_days: i64,
    rotation_hour_utc: Option<i64>,
    enabled: Option<bool>,
    retire_unused_hours: Option<i64>,
    // Read-only fields of GET output, accepted (and ignored) so a GET body can be PUT back.
    #[allow(dead_code)]
    last_rotated_at: Option<Value>,
    #[allow(dead_code)]
    next_due_at: Option<Value>,
    #[allow(dead_code)]
    last_error: Option<Value>,
    #[allow(dead_code)]
    status: Option<Value>,
    #[allow(dead_code)]
    status_reason: Option<Value>,
}

impl Policy {
    pub fn parse(name: ProfileName, body: &[u8]) -> Result<Self, Invalid> {
        let raw: RawPolicy = parse_json(body)?;
        if raw.name.as_deref().is_some_and(|n| n != name.as_str()) {
            return Err(Invalid::new(
                "name",
                "must match the policy name in the path",
            ));
        }
        if !(1..=365).contains(&raw.interval_days) {
            return Err(Invalid::new("interval_days", "must be between 1 and 365"));
        }
        let hour = match raw.rotation_hour_utc {
            None => None,
            Some(h @ 0..=23) => u8::try_from(h).ok(),
            Some(_) => {
                return Err(Invalid::new(
                    "rotation_hour_utc",
                    "must be between 0 and 23",
                ))
            }
        };
        let retire_unused_hours = match raw.retire_unused_hours {
            None => None,
            Some(h @ 1..=720) => u16::try_from(h).ok(),
            Some(_) => {
                return Err(Invalid::new(
                    "retire_unused_hours",
                    "must be between 1 and 720",
                ))
            }
        };
        Ok(Self {
            name,
            secret_id: aws_id("secret_id", &raw.secret_id, 1, 2048, "/+=.@-:!")?,
            interval_days: u16::try_from(raw.interval_days).unwrap_or(365),
            rotation_hour_utc: hour,
            enabled: raw.enabled.unwrap_or(true),
            last_rotated_at: None,
            status: Status::Idle,
            last_error: None,
            retire_unused_hours,
            status_reason: None,
            requested: false,
        })
    }

    /// When the policy is next due: `interval_days` after the last rotation, moved later (never
    /// earlier) to the next `rotation_hour_utc:00` when set. Never rotated: now, or the next such
    /// hour (this hour's run still counts).
    pub fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let at_hour = |t: DateTime<Utc>, h: u8| {
            let time = NaiveTime::from_hms_opt(u32::from(h), 0, 0).unwrap_or_default();
            t.date_naive().and_time(time).and_utc()
        };
        match (self.last_rotated_at, self.rotation_hour_utc) {
            (None, None) => now,
            (None, Some(h)) => {
                let today = at_hour(now, h);
                if today >= now - Duration::hours(1) {
                    today
                } else {
                    today + Duration::days(1)
                }
            }
            (Some(last), None) => last + Duration::days(i64::from(self.interval_days)),
            (Some(last), Some(h)) => {
                let earliest = last + Duration::days(i64::from(self.interval_days));
                let slot = at_hour(earliest, h);
                if slot >= earliest {
                    slot
                } else {
                    slot + Duration::days(1)
                }
            }
        }
    }

    /// Whether the rotation itself is due (not only a check of the previous key).
    pub fn rotation_due(&self, now: DateTime<Utc>) -> bool {
        self.requested || (self.enabled && self.next_due(now) <= now)
    }

    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        json!({
            "name": self.name.as_str(),
            "secret_id": self.secret_id,
            "interval_days": self.interval_days,
            "rotation_hour_utc": self.rotation_hour_utc,
            "enabled": self.enabled,
            "last_rotated_at": self.last_rotated_at.map(format_time),
            "next_due_at": self.enabled.then(|| format_time(self.next_due(now))),
            "status": self.status.as_str(),
            "status_reason": self.status_reason,
            "last_error": self.last_error,
            "retire_unused_hours": self.retire_unused_hours,
        })
    }

    fn doc(&self) -> String {
        json!({
            "secret_id": self.secret_id,
            "interval_days": self.interval_days,
            "rotation_hour_utc": self.rotation_hour_utc,
            "enabled": self.enabled,
            "retire_unused_hours": self.retire_unused_hours,
        })
        .to_string()
    }

    /// The item of a new policy (never rotated). `PolicyStore::put` writes it; bulk imports and
    /// benchmarks can write it with `BatchWriteItem`.
    pub fn to_item(&self, now: DateTime<Utc>) -> HashMap<String, AttributeValue> {
        let mut item = key(self.name.as_str());
        item.insert("doc".into(), s(self.doc()));
        if self.enabled {
            item.insert("due_pk".into(), s(PK));
            item.insert("due_at".into(), s(format_time(self.next_due(now))));
        }
        item
    }

    pub(super) fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
        let name = ProfileName::parse("name", s("sk")?).ok()?;
        let mut p = Policy::parse(name, s("doc")?.as_bytes()).ok()?;
        p.last_rotated_at = s("last_rotated_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        p.status = s("status").map_or(Status::Idle, |v| Status::parse(v));
        p.last_error = s("last_error").cloned();
        p.status_reason = s("status_reason").cloned();
        p.requested = item.contains_key("requested_at");
        Some(p)
    }
}

pub(super) fn key(name: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
        ("sk".to_owned(), AttributeValue::S(name.to_owned())),
    ])
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("rotation policy not found")]
    NotFound,
    #[error("the rotation policy is being rotated right now")]
    Locked,
    #[error("the rotation policy was changed concurrently; retry")]
    Conflict,
    #[error("the audit trail could not be written: {0}")]
    Audit(AwsFailure),
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(body: Value) -> Result<Policy, Invalid> {
        Policy::parse(
            ProfileName::parse("n", "ci").unwrap(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            policy(json!({"secret_id": "s", "interval_days": 0}))
                .unwrap_err()
                .field,
            "interval_days"
        );
        assert_eq!(
            policy(json!({"secret_id": "s", "interval_days": 366}))
                .unwrap_err()
                .field,
            "interval_days"
        );
        assert_eq!(
            policy(json!({"secret_id": "s", "interval_days": 1, "rotation_hour_utc": 24}))
                .unwrap_err()
                .field,
            "rotation_hour_utc"
        );
        assert_eq!(
            policy(json!({"interval_days": 1})).unwrap_err().field,
            "secret_id"
        );
        assert_eq!(
            policy(json!({"secret_id": "s", "interval_days": 1, "x": 1}))
                .unwrap_err()
                .field,
            "x"
        );
        assert!(policy(
            json!({"secret_id": "s", "interval_days": 30, "rotation_hour_utc": 3, "enabled": true})
        )
        .is_ok());
    }

    #[test]
    fn due_times() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let now = t("2026-11-21T10:20:00Z");
        let mut p = policy(json!({"secret_id": "s", "interval_days": 30})).unwrap();
        assert_eq!(p.next_due(now), now, "never rotated, no hour: due now");
        p.last_rotated_at = Some(t("2026-11-01T03:20:00Z"));
        assert_eq!(p.next_due(now), t("2026-12-01T03:20:00Z"));
        p.rotation_hour_utc = Some(3);
        assert_eq!(
            p.next_due(now),
            t("2026-12-02T03:00:00Z"),
            "03:00 on the 1st would be 20 minutes early"
        );
        p.last_rotated_at = None;
        assert_eq!(
            p.next_due(now),
            t("2026-11-22T03:00:00Z"),
            "never rotated: the next 03:00"
        );
        p.rotation_hour_utc = Some(10);
        assert_eq!(
            p.next_due(now),
            t("2026-11-21T10:00:00Z"),
            "this hour's run still counts"
        );
        // Rotated yesterday at 10:20, one day, hour 3: today's 03:00 is too early.
        p.interval_days = 1;
        p.rotation_hour_utc = Some(3);
        p.last_rotated_at = Some(t("2026-11-20T10:20:00Z"));
        assert_eq!(p.next_due(now), t("2026-11-22T03:00:00Z"));
        p.last_rotated_at = Some(t("2026-11-20T02:00:00Z"));
        assert_eq!(p.next_due(now), t("2026-11-21T03:00:00Z"));
    }
}
