//! The hourly job (scheduled-rotation): rotate the policies that are due or requested, end
//! expired `iam_user` leases, report (or deactivate) IAM keys older than
//! `KEYSMITH_MAX_KEY_AGE_DAYS`. Rotate-now marks a policy requested and invokes this job.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::audit::{AuditError, AuditRecord, Category, Level, Origin, Outcome};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::lease::{LeaseError, RevokeReport};
use crate::profile::Kind;
use crate::rotation::policy::{Policy, PolicyError};
use crate::rotation::{Rotated, RotatedSecret, RotationError, CURRENT};
use crate::time::format_time;
use crate::App;

/// The `detail-type` of the event rotate-now sends scheduled-rotation.
pub const ROTATION_REQUESTED: &str = "Rotation Requested";
pub const EVENT_REQUESTED: &str = "Rotation Requested";

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
        .rotate_now(&policy.secret_id, origin, name, now)
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
    #[error("the old-key report failed: {0}")]
    OldKeys(AwsFailure),
    #[error("{0} revocation polic(ies) could not be pruned or written; they stay due")]
    Prune(usize),
    #[error("the old-key report could not be audited: {0}")]
    OldKeysAudit(#[from] AuditError),
}

/// One scheduled run. A policy's failure is reported (and audited) and the policy stays due; a
/// failure to read the due work, to end leases, or to run or audit the old-key report fails the
/// run (EventBridge retries it, and the failure alarms).
pub async fn run(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RunReport, ScheduleError> {
    let mut report = run_rotations(app, now, origin).await?;
    report.leases = app.leases.revoke_expired(now, &app.audit, origin).await?;
    report.revocations = app.revocations.prune_due(now, origin).await;
    if let Some(max_age) = app.config.max_key_age_days {
        report.old_keys = old_keys(app, max_age, now, origin).await?;
    }
    // A prune that failed (its IAM write or its audit item) fails the run, after everything else
    // is done, so EventBridge retries it and the alarm fires; the target stays due meanwhile.
    let failed = report.revocations.failed.len();
    if failed > 0 {
        for _ in 0..failed {
            crate::ops::count(crate::ops::Metric::SweepFailed, Some("revocations"));
        }
        return Err(ScheduleError::Prune(failed));
    }
    Ok(report)
}

/// The rotations of a run only: every due policy, requested ones included (rotate-now makes a
/// policy due at once). What the `Rotation Requested` event runs.
pub async fn run_rotations(
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
    Ok(report)
}

/// Rotate-now: marks the policy `requested` (audited) and invokes scheduled-rotation
/// asynchronously with a `Rotation Requested` event. Invoking is best effort: if it fails, or no
/// function is configured, the policy stays requested and the next hourly run rotates it.
pub async fn request_rotation(
    app: &App,
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    origin: &Origin,
) -> Result<Policy, PolicyError> {
    let now = Utc::now();
    let mut record = AuditRecord::new(
        origin,
        Category::Config,
        EVENT_REQUESTED,
        Outcome::Success,
        format!("Rotation of policy {name} requested; scheduled-rotation runs it."),
    );
    record.profile = Some(name.to_owned());
    let policy = app.policies.request(name, now, &record).await?;
    if let Some(function) = &app.config.rotation_function {
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": ROTATION_REQUESTED,
            "source": "keysmith",
            "account": "",
            "time": format_time(now),
            "region": app.region,
            "resources": [],
            "detail": {"policy": name},
        });
        let sent = lambda
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(policy = name, function, error = %classify(e), "invoking scheduled-rotation failed; the next scheduled run rotates the policy");
        }
    }
    Ok(policy)
}

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
async fn old_keys(
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
