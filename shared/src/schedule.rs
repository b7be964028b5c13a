//! The hourly job (scheduled-rotation): rotate the policies that are due, end expired `iam_user`
//! leases, report (or deactivate) IAM keys older than `KEYSMITH_MAX_KEY_AGE_DAYS`.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::audit::{AuditRecord, Category, Level, Origin, Outcome};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::lease::{LeaseError, RevokeReport};
use crate::rotation::policy::{Policy, PolicyError};
use crate::rotation::{Rotated, RotationError};
use crate::App;

/// Rotations run at once per scheduled run: enough to finish many policies inside one invocation,
/// few enough to stay clear of IAM's request rate (the SDK backs off and retries on throttling).
pub const CONCURRENCY: usize = 4;
pub const EVENT_OLD_KEY: &str = "Old Access Key";

#[derive(Debug, thiserror::Error)]
pub enum PolicyRotationError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

impl PolicyRotationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Rotation(e) => e.failure_kind(),
            Self::Policy(PolicyError::Store(f) | PolicyError::Audit(f)) => f.kind,
            Self::Policy(_) => FailureKind::Other,
        }
    }
}

/// Rotates one policy under its lock: the scheduled path (`require_due`) or "rotate now".
pub async fn rotate_policy(
    app: &App,
    name: &str,
    now: DateTime<Utc>,
    require_due: bool,
    origin: &Origin,
) -> Result<(Policy, Rotated), PolicyRotationError> {
    let owner = uuid::Uuid::new_v4().to_string();
    let policy = app.policies.lock(name, &owner, now, require_due).await?;
    match app
        .rotator
        .rotate_now(&policy.secret_id, origin, name)
        .await
    {
        Ok(rotated) => {
            app.policies.rotated(&policy, &owner, Utc::now()).await?;
            Ok((policy, rotated))
        }
        Err(e) => {
            if let Err(unlock) = app.policies.failed(name, &owner, &e.to_string()).await {
                // The lock expires by itself; the next run retries.
                tracing::warn!(policy = name, error = %unlock, "releasing a rotation lock failed");
            }
            Err(e.into())
        }
    }
}

#[derive(Debug, Default)]
pub struct RunReport {
    /// Items the due-policy query returned: proportional to the due work, not to all policies.
    pub policies_read: usize,
    pub rotated: Vec<(String, Rotated)>,
    /// Due policies another run (or a rotate-now) holds.
    pub skipped: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub leases: RevokeReport,
    pub old_keys: Vec<OldKey>,
    pub revocations: crate::revocation::PruneReport,
}

impl RunReport {
    pub fn to_json(&self) -> Value {
        json!({
            "policies_read": self.policies_read,
            "rotated": self.rotated.iter().map(|(p, r)| json!({"policy": p, "user_name": r.user_name,
                "old_access_key_id": r.old_access_key_id, "new_access_key_id": r.new_access_key_id})).collect::<Vec<_>>(),
            "skipped": self.skipped,
            "failed": self.failed.iter().map(|(p, e)| json!({"policy": p, "error": e})).collect::<Vec<_>>(),
            "leases_revoked": self.leases.revoked,
            "leases_failed": self.leases.failed.iter().map(|(l, e)| json!({"lease_id": l, "error": e})).collect::<Vec<_>>(),
            "revocations": self.revocations.to_json(),
            "old_keys": self.old_keys.iter().map(|k| json!({"user_name": k.user_name, "access_key_id": k.access_key_id,
                "age_days": k.age_days, "deactivated": k.deactivated})).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("reading due rotation policies failed: {0}")]
    Policies(#[from] PolicyError),
    #[error("ending expired leases failed: {0}")]
    Leases(#[from] LeaseError),
}

/// One scheduled run. Each part's failures are reported; only a failure to read the due work at
/// all fails the run (and EventBridge's retry runs it again).
pub async fn run(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RunReport, ScheduleError> {
    let due = app.policies.due(now).await?;
    let mut report = RunReport {
        policies_read: due.items_read,
        ..RunReport::default()
    };
    let outcomes: Vec<_> = stream::iter(due.policies)
        .map(|p| async move {
            let name = p.name.to_string();
            let outcome = rotate_policy(app, &name, now, true, origin).await;
            (name, outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (name, outcome) in outcomes {
        match outcome {
            Ok((_, rotated)) => report.rotated.push((name, rotated)),
            Err(PolicyRotationError::Policy(PolicyError::Locked | PolicyError::NotFound)) => {
                report.skipped.push(name)
            }
            Err(e) => {
                tracing::error!(policy = %name, error = %e, "scheduled rotation failed; the next run retries");
                report.failed.push((name, e.to_string()));
            }
        }
    }
    report.leases = app.leases.revoke_expired(now, &app.audit, origin).await?;
    report.revocations =
        crate::revocation::scheduled_prune(&app.revocations, &app.audit, now, origin).await;
    if let Some(max_age) = app.config.max_key_age_days {
        match old_keys(app, max_age, now, origin).await {
            Ok(keys) => report.old_keys = keys,
            Err(e) => tracing::error!(error = %e, "the old-key report failed"),
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldKey {
    pub user_name: String,
    pub access_key_id: String,
    pub age_days: i64,
    pub deactivated: bool,
}

/// Active IAM keys older than `max_age` days, each logged and audited at `WARN`; deactivated
/// too when `KEYSMITH_KEY_AGE_DRY_RUN=false`.
async fn old_keys(
    app: &App,
    max_age: u32,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<Vec<OldKey>, AwsFailure> {
    let iam = &app.clients.iam;
    let mut found = Vec::new();
    let mut marker = None;
    loop {
        let page = iam
            .list_users()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(classify)?;
        for user in &page.users {
            let keys = iam
                .list_access_keys()
                .user_name(&user.user_name)
                .send()
                .await
                .map_err(classify)?;
            for key in keys.access_key_metadata {
                let (Some(id), Some(created)) = (key.access_key_id, key.create_date) else {
                    continue;
                };
                let active = key.status.as_ref().is_some_and(|s| s.as_str() == "Active");
                let age_days = (now.timestamp() - created.secs()) / 86_400;
                if active && age_days > i64::from(max_age) {
                    found.push(OldKey {
                        user_name: user.user_name.clone(),
                        access_key_id: id,
                        age_days,
                        deactivated: false,
                    });
                }
            }
        }
        match (page.is_truncated, page.marker) {
            (true, Some(m)) => marker = Some(m),
            _ => break,
        }
    }
    for key in &mut found {
        if !app.config.key_age_dry_run {
            iam.update_access_key()
                .user_name(&key.user_name)
                .access_key_id(&key.access_key_id)
                .status(aws_sdk_iam::types::StatusType::Inactive)
                .send()
                .await
                .map_err(classify)?;
            key.deactivated = true;
        }
        let action = if key.deactivated {
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
        if let Err(e) = app.audit.write(&r).await {
            tracing::error!(error = %e, "audit write for an old key failed");
        }
    }
    Ok(found)
}

/// Which job an EventBridge event asks for. The hourly schedule's standard event (empty `detail`)
/// runs everything; the lease sweep's own schedule (every 3 minutes) says `{"job": "sweep"}` and
/// only ends due leases, so rotations and the old-key report stay hourly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Full,
    Sweep,
}

impl Job {
    pub fn of(detail: &Value) -> Self {
        match detail.get("job").and_then(Value::as_str) {
            Some("sweep") => Self::Sweep,
            _ => Self::Full,
        }
    }
}

/// The lease sweep alone: ends expired leases and those of issuances that died.
pub async fn sweep(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RunReport, ScheduleError> {
    Ok(RunReport {
        leases: app.leases.revoke_expired(now, &app.audit, origin).await?,
        ..RunReport::default()
    })
}

#[cfg(test)]
mod job_tests {
    use super::*;

    #[test]
    fn only_the_sweep_schedule_asks_for_the_sweep_alone() {
        assert_eq!(Job::of(&json!({})), Job::Full);
        assert_eq!(Job::of(&Value::Null), Job::Full);
        assert_eq!(Job::of(&json!({"job": "rotate"})), Job::Full);
        assert_eq!(Job::of(&json!({"job": "sweep"})), Job::Sweep);
    }
}
