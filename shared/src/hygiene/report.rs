//! The unused and old key report (SPEC §15): active IAM keys past `KEYSMITH_MAX_KEY_AGE_DAYS` or
//! unused for `KEYSMITH_UNUSED_KEY_DAYS`, each audited; deactivated (never deleted) when not a
//! dry run and over every limit that is set — except keys Keysmith holds ([`super::protected`])
//! and keys of users tagged `keysmith:exempt` with a reason.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{HygieneError, EVENT_DEACTIVATED, EXEMPT_TAG};
use crate::audit::{AuditLog, AuditRecord, Category, Level, Origin, Outcome};
use crate::aws::{classify, FailureKind};

pub const EVENT_OLD_KEY: &str = "Old Access Key";
pub const EVENT_UNUSED_KEY: &str = "Unused Access Key";

/// What the report looks for; `None` switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_age_days: Option<u32>,
    pub unused_days: Option<u32>,
    pub dry_run: bool,
}

/// One key the report flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldKey {
    pub user_name: String,
    pub access_key_id: String,
    pub age_days: i64,
    /// Days since IAM last saw the key used (since creation when never), when `unused_days` is set.
    pub unused_days: Option<i64>,
    /// The user's `keysmith:exempt` reason: the key is reported, never touched.
    pub exempt: Option<String>,
    pub deactivated: bool,
}

impl OldKey {
    fn old(&self, l: &Limits) -> bool {
        l.max_age_days.is_some_and(|m| self.age_days > i64::from(m))
    }

    fn unused(&self, l: &Limits) -> bool {
        matches!((l.unused_days, self.unused_days), (Some(m), Some(d)) if d > i64::from(m))
    }

    /// Over every limit that is set (and some limit is set).
    fn over_all(&self, l: &Limits) -> bool {
        (l.max_age_days.is_none() || self.old(l))
            && (l.unused_days.is_none() || self.unused(l))
            && (l.max_age_days.is_some() || l.unused_days.is_some())
    }
}

/// Runs the report over every IAM user. `protected` are the key ids Keysmith holds.
pub async fn report(
    iam: &aws_sdk_iam::Client,
    audit: &AuditLog,
    protected: &HashSet<String>,
    limits: Limits,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<Vec<OldKey>, HygieneError> {
    let users: Vec<aws_sdk_iam::types::User> = iam
        .list_users()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| HygieneError::Iam(classify(e)))?;
    let mut found = Vec::new();
    for user in &users {
        let keys: Result<Vec<_>, _> = iam
            .list_access_keys()
            .user_name(&user.user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await;
        let keys = match keys.map_err(classify) {
            Ok(keys) => keys,
            Err(f) if f.kind == FailureKind::NotFound => continue,
            Err(f) => return Err(HygieneError::Iam(f)),
        };
        let mut flagged = Vec::new();
        for key in keys {
            let (Some(id), Some(created)) = (key.access_key_id, key.create_date) else {
                continue;
            };
            let active = key.status.as_ref().is_some_and(|s| s.as_str() == "Active");
            if !active || protected.contains(&id) {
                continue;
            }
            let age_days = (now.timestamp() - created.secs()) / 86_400;
            // A key younger than the unused limit cannot have been unused for longer.
            let unused_days = match limits.unused_days {
                Some(limit) if age_days > i64::from(limit) => {
                    Some(days_unused(iam, &id, created.secs(), now).await?)
                }
                _ => None,
            };
            let k = OldKey {
                user_name: user.user_name.clone(),
                access_key_id: id,
                age_days,
                unused_days,
                exempt: None,
                deactivated: false,
            };
            if k.old(&limits) || k.unused(&limits) {
                flagged.push(k);
            }
        }
        if !flagged.is_empty() {
            let exempt = exemption(iam, &user.user_name).await?;
            for mut k in flagged {
                k.exempt = exempt.clone().flatten();
                found.push(k);
            }
        }
    }
    for key in &mut found {
        act(iam, audit, key, &limits, origin).await?;
    }
    Ok(found)
}

/// Audits `key` (the item is the record of the action, so it comes first), then deactivates it
/// when asked and allowed.
async fn act(
    iam: &aws_sdk_iam::Client,
    audit: &AuditLog,
    key: &mut OldKey,
    limits: &Limits,
    origin: &Origin,
) -> Result<(), HygieneError> {
    let deactivate = !limits.dry_run && key.exempt.is_none() && key.over_all(limits);
    let mut why = Vec::new();
    if key.old(limits) {
        why.push(format!(
            "{} days old (limit {})",
            key.age_days,
            limits.max_age_days.unwrap_or_default()
        ));
    }
    if key.unused(limits) {
        why.push(format!(
            "unused for {} days (limit {})",
            key.unused_days.unwrap_or_default(),
            limits.unused_days.unwrap_or_default()
        ));
    }
    let action = match (&key.exempt, deactivate, limits.dry_run) {
        (Some(reason), _, _) => format!("not touched: the user is exempt ({reason})"),
        (None, true, _) => "deactivated (reactivate with `keysmith keys reactivate`)".to_owned(),
        (None, false, true) => "reported only (dry run)".to_owned(),
        (None, false, false) => "reported only (not over every limit)".to_owned(),
    };
    tracing::warn!(user = %key.user_name, access_key_id = %key.access_key_id, reasons = %why.join(", "), action = %action, "IAM access key flagged by the key report");
    let event = if deactivate {
        EVENT_DEACTIVATED
    } else if key.old(limits) {
        EVENT_OLD_KEY
    } else {
        EVENT_UNUSED_KEY
    };
    let mut r = AuditRecord::new(
        origin,
        Category::Data,
        event,
        Outcome::Success,
        format!(
            "Access key {} of user {} is {}: {action}.",
            key.access_key_id,
            key.user_name,
            why.join(" and ")
        ),
    );
    r.level = Level::Warn;
    r.credential_type = Some("iam_access_key".into());
    r.access_key_id = Some(key.access_key_id.clone());
    audit.write(&r).await?;
    if deactivate {
        let done = iam
            .update_access_key()
            .user_name(&key.user_name)
            .access_key_id(&key.access_key_id)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send()
            .await
            .map_err(classify);
        match done {
            Ok(_) => key.deactivated = true,
            Err(f) if f.kind == FailureKind::NotFound => {}
            Err(f) => return Err(HygieneError::Iam(f)),
        }
    }
    Ok(())
}

/// Whole days since the key was last used, or since it was created when never used.
async fn days_unused(
    iam: &aws_sdk_iam::Client,
    id: &str,
    created: i64,
    now: DateTime<Utc>,
) -> Result<i64, HygieneError> {
    let used = iam
        .get_access_key_last_used()
        .access_key_id(id)
        .send()
        .await
        .map_err(|e| HygieneError::Iam(classify(e)))?;
    let last = used
        .access_key_last_used
        .and_then(|l| l.last_used_date)
        .map_or(created, |d| d.secs());
    Ok((now.timestamp() - last) / 86_400)
}

/// The user's exemption: `Some(Some(reason))` when tagged with a reason, `Some(None)` when the
/// tag is there without one (which exempts nothing), `None` without the tag.
async fn exemption(
    iam: &aws_sdk_iam::Client,
    user: &str,
) -> Result<Option<Option<String>>, HygieneError> {
    let tags = iam
        .list_user_tags()
        .user_name(user)
        .send()
        .await
        .map_err(classify);
    let tags = match tags {
        Ok(t) => t.tags,
        Err(f) if f.kind == FailureKind::NotFound => return Ok(None),
        Err(f) => return Err(HygieneError::Iam(f)),
    };
    Ok(tags.into_iter().find(|t| t.key == EXEMPT_TAG).map(|t| {
        let reason = t.value.trim().to_owned();
        (!reason.is_empty()).then_some(reason)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(age: i64, unused: Option<i64>) -> OldKey {
        OldKey {
            user_name: "u".into(),
            access_key_id: "AKIA".into(),
            age_days: age,
            unused_days: unused,
            exempt: None,
            deactivated: false,
        }
    }

    #[test]
    fn deactivation_needs_every_limit_that_is_set() {
        let both = Limits {
            max_age_days: Some(90),
            unused_days: Some(30),
            dry_run: false,
        };
        assert!(key(100, Some(40)).over_all(&both));
        assert!(!key(100, Some(10)).over_all(&both), "old but in use");
        assert!(!key(50, Some(40)).over_all(&both), "unused but young");
        let age_only = Limits {
            unused_days: None,
            ..both
        };
        assert!(key(100, None).over_all(&age_only));
        let unused_only = Limits {
            max_age_days: None,
            ..both
        };
        assert!(key(40, Some(40)).over_all(&unused_only));
        assert!(!key(40, None).over_all(&unused_only));
    }
}
