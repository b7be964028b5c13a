//! The old-key report (`KEYSMITH_MAX_KEY_AGE_DAYS`): active IAM keys past the age, audited, and
//! deactivated unless dry-run; never a key Keysmith itself depends on.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::ScheduleError;
use crate::audit::{AuditRecord, Category, Level, Origin, Outcome};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::profile::Kind;
use crate::rotation::{RotatedSecret, CURRENT};
use crate::App;

pub const EVENT_OLD_KEY: &str = "Old Access Key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldKey {
    pub user_name: String,
    pub access_key_id: String,
    pub age_days: i64,
    pub deactivated: bool,
}

/// Active IAM keys older than `max_age` days, each audited at `WARN` before anything is done to
/// it; deactivated too when `KEYSMITH_KEY_AGE_DRY_RUN=false`. Keys Keysmith itself depends on (the
/// base keys of profiles, the current and admin keys of rotated secrets) are never touched: their
/// rotation is the rotation policies' job. A user deleted mid-run is skipped.
pub(super) async fn old_keys(
    app: &App,
    max_age: u32,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<Vec<OldKey>, ScheduleError> {
    let iam = &app.clients.iam;
    let own = own_keys(app).await?;
    let users: Vec<aws_sdk_iam::types::User> = iam
        .list_users()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ScheduleError::OldKeys(classify(e)))?;
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
            Err(f) => return Err(ScheduleError::OldKeys(f)),
        };
        for key in keys {
            let (Some(id), Some(created)) = (key.access_key_id, key.create_date) else {
                continue;
            };
            let active = key.status.as_ref().is_some_and(|s| s.as_str() == "Active");
            let age_days = (now.timestamp() - created.secs()) / 86_400;
            if active && age_days > i64::from(max_age) && !own.contains(&id) {
                found.push(OldKey {
                    user_name: user.user_name.clone(),
                    access_key_id: id,
                    age_days,
                    deactivated: false,
                });
            }
        }
    }
    for key in &mut found {
        let deactivate = !app.config.key_age_dry_run;
        let action = if deactivate {
            "deactivated"
        } else {
            "reported only (dry run)"
        };
        tracing::warn!(user = %key.user_name, access_key_id = %key.access_key_id, age_days = key.age_days, action, "IAM access key older than KEYSMITH_MAX_KEY_AGE_DAYS");
        let mut r = AuditRecord::new(
            origin,
            Category::Data,
            EVENT_OLD_KEY,
            Outcome::Success,
            format!(
                "Access key {} of user {} is {} days old (limit {max_age}): {action}.",
                key.access_key_id, key.user_name, key.age_days
            ),
        );
        r.level = Level::Warn;
        r.credential_type = Some("iam_access_key".into());
        r.access_key_id = Some(key.access_key_id.clone());
        // The audit item is the record of the deactivation: it is written first.
        app.audit.write(&r).await?;
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
                Err(f) => return Err(ScheduleError::OldKeys(f)),
            }
        }
    }
    Ok(found)
}

/// The access key ids Keysmith works with: profiles' base keys, rotated secrets' current keys and
/// their admin keys. A secret that cannot be read is left out (it has no key to protect here).
async fn own_keys(app: &App) -> Result<HashSet<String>, ScheduleError> {
    let mut secrets = HashSet::new();
    let mut next = None;
    loop {
        let (profiles, more) = app
            .profiles
            .list(100, next.as_ref())
            .await
            .map_err(|e| ScheduleError::OldKeys(AwsFailure::other(e.to_string())))?;
        for p in profiles {
            // A profile refused as outdated still names its base key's secret: keep it safe too.
            let p = match p {
                Ok(p) => p,
                Err(outdated) => {
                    if let Some(id) = outdated.doc["source_secret_id"].as_str() {
                        secrets.insert(id.to_owned());
                    }
                    continue;
                }
            };
            match p.kind {
                Kind::SessionToken {
                    source_secret_id, ..
                }
                | Kind::FederationToken {
                    source_secret_id, ..
                } => {
                    secrets.insert(source_secret_id);
                }
                Kind::AssumedRole {
                    source_secret_id: Some(s),
                    ..
                } => {
                    secrets.insert(s);
                }
                _ => {}
            }
        }
        match more.map(|m| crate::names::ProfileName::parse("next", &m)) {
            Some(Ok(m)) => next = Some(m),
            _ => break,
        }
    }
    let mut rotated = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (policies, more) = app.policies.list(100, cursor.as_deref()).await?;
        rotated.extend(policies.into_iter().map(|p| p.secret_id));
        match more {
            Some(m) => cursor = Some(m),
            None => break,
        }
    }
    let mut keys = HashSet::new();
    for id in rotated {
        if let Some(text) = secret_string(app, &id).await? {
            if let Ok(value) = RotatedSecret::parse(&text) {
                keys.extend(value.key_id().map(str::to_owned));
                if let Some(admin) = value.admin_secret_id {
                    secrets.insert(admin);
                }
            }
        }
    }
    for id in secrets {
        if let Some(text) = secret_string(app, &id).await? {
            if let Ok(pair) = crate::secret::AccessKeyPair::from_secret_json(&text) {
                keys.insert(pair.access_key_id);
            }
        }
    }
    Ok(keys)
}

async fn secret_string(app: &App, id: &str) -> Result<Option<String>, ScheduleError> {
    let out = app
        .clients
        .secrets
        .get_secret_value()
        .secret_id(id)
        .version_stage(CURRENT)
        .send()
        .await
        .map_err(classify);
    match out {
        Ok(o) => Ok(o.secret_string),
        Err(f) if f.kind == FailureKind::NotFound => Ok(None),
        Err(f) => Err(ScheduleError::OldKeys(f)),
    }
}
