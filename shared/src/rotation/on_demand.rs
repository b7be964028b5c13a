//! Rotating one policy now, under its lock (the scheduled path and rotate-now), and rotate-now's
//! request: marked `requested` (audited), then enqueued for RotationQueue's workers.

use chrono::{DateTime, Utc};

use super::policy::{Policy, PolicyError, PolicyStore, Settle, Status};
use super::retire::Retirement;
use super::{Rotated, RotationError, Rotator};
use crate::audit::{AuditRecord, Category, Origin, Outcome};
use crate::aws::FailureKind;

/// The `detail-type` of an EventBridge-shaped event that makes scheduled-rotation run only the
/// rotations (rotate-now sent it before RotationQueue; scheduled-rotation still accepts it).
pub const ROTATION_REQUESTED: &str = "Rotation Requested";
pub const EVENT_REQUESTED: &str = "Rotation Requested";

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

/// Rotates one policy under its lock, whatever its schedule and its previous key's use: the
/// quarantine response and tests (`require_due: false`), or any caller that requires it due.
pub async fn rotate_policy(
    policies: &PolicyStore,
    rotator: &Rotator,
    name: &str,
    now: DateTime<Utc>,
    require_due: bool,
    origin: &Origin,
) -> Result<(Policy, Rotated), PolicyRotationError> {
    let owner = uuid::Uuid::new_v4().to_string();
    let policy = policies.lock(name, &owner, now, require_due).await?;
    rotate_locked(policies, rotator, policy, &owner, now, origin).await
}

async fn rotate_locked(
    policies: &PolicyStore,
    rotator: &Rotator,
    policy: Policy,
    owner: &str,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<(Policy, Rotated), PolicyRotationError> {
    let name = policy.name.to_string();
    match rotator
        .rotate_now(&policy.secret_id, origin, &name, now)
        .await
    {
        Ok(rotated) => {
            let at = Utc::now();
            let mut done = policy.clone();
            done.last_rotated_at = Some(at);
            // The key just replaced is graceful mode's previous key now: checked again once it
            // could have been unused for long enough.
            let check = policy
                .retire_unused_hours
                .map(|h| at + chrono::Duration::hours(i64::from(h)));
            let settle = Settle {
                rotated_at: Some(at),
                status: Status::Idle,
                reason: None,
                due_at: [done.enabled.then(|| done.next_due(at)), check]
                    .into_iter()
                    .flatten()
                    .min(),
            };
            policies.settle(&name, owner, &settle).await?;
            Ok((policy, rotated))
        }
        Err(e) => Err(release_failed(policies, &name, owner, e).await),
    }
}

/// Releases the lock after a failure (the policy stays due, so the next run retries).
async fn release_failed(
    policies: &PolicyStore,
    name: &str,
    owner: &str,
    e: RotationError,
) -> PolicyRotationError {
    if let Err(unlock) = policies.failed(name, owner, &e.to_string()).await {
        // The lock expires by itself; the next run retries.
        tracing::warn!(policy = name, error = %unlock, "releasing a rotation lock failed");
    }
    e.into()
}

/// What a scheduled run (or a queued message) did with a due policy.
#[derive(Debug)]
pub enum PolicyRun {
    Rotated(Policy, Rotated),
    /// Due only for a check of its previous key (`retire_unused_hours`), or due but waiting for
    /// that key to fall unused: not rotated, and due again when the key may retire.
    Checked(Policy, Retirement),
}

/// The scheduled path: the policy under its lock, only while still due. With
/// `retire_unused_hours`, the previous key is retired first once unused that long; while it is
/// still used, a due rotation waits (`waiting_for_unused`), since graceful mode's rotation deletes
/// it. Rotate-now waits too; only the quarantine response (`rotate_policy`) does not.
pub async fn run_due_policy(
    policies: &PolicyStore,
    rotator: &Rotator,
    name: &str,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<PolicyRun, PolicyRotationError> {
    let owner = uuid::Uuid::new_v4().to_string();
    let policy = policies.lock(name, &owner, now, true).await?;
    let Some(hours) = policy.retire_unused_hours else {
        return rotate_locked(policies, rotator, policy, &owner, now, origin)
            .await
            .map(|(p, r)| PolicyRun::Rotated(p, r));
    };
    let checked = async {
        let retirement = rotator
            .retire_previous(
                &policy.secret_id,
                hours,
                policy.last_rotated_at,
                now,
                origin,
                name,
            )
            .await?;
        let due = policy.rotation_due(now);
        // Past its interval, not only requested: that is the warning SPEC §15 asks for.
        let overdue = policy.enabled && policy.next_due(now) <= now;
        if let (Retirement::Waiting { access_key_id, .. }, true) = (&retirement, overdue) {
            let reason = retirement.reason(hours).unwrap_or_default();
            rotator
                .retirement_overdue(origin, name, access_key_id, &reason, now)
                .await?;
        }
        Ok::<_, RotationError>((retirement, due))
    }
    .await;
    let (retirement, due) = match checked {
        Ok(c) => c,
        Err(e) => return Err(release_failed(policies, name, &owner, e).await),
    };
    match retirement {
        Retirement::Waiting { retire_after, .. } => {
            // A waiting rotation is looked at again daily (the day's warning), or as soon as the
            // key may retire.
            let next = if due {
                retire_after.min(now + chrono::Duration::days(1))
            } else {
                retire_after.min(policy.next_due(now))
            };
            let settle = Settle {
                rotated_at: None,
                status: Status::WaitingForUnused,
                reason: retirement.reason(hours),
                due_at: Some(next),
            };
            policies.settle(name, &owner, &settle).await?;
            Ok(PolicyRun::Checked(policy, retirement))
        }
        _ if due => {
            let (policy, rotated) =
                rotate_locked(policies, rotator, policy, &owner, now, origin).await?;
            Ok(PolicyRun::Rotated(policy, rotated))
        }
        _ => {
            let settle = Settle {
                rotated_at: None,
                status: Status::Idle,
                reason: retirement.reason(hours),
                due_at: policy.enabled.then(|| policy.next_due(now)),
            };
            policies.settle(name, &owner, &settle).await?;
            Ok(PolicyRun::Checked(policy, retirement))
        }
    }
}

/// Who rotate-now wakes: RotationQueue's workers (SPEC §14), or nobody (no queue configured: the
/// next scheduled run rotates the request).
pub enum Wake<'a> {
    Queue {
        sqs: &'a aws_sdk_sqs::Client,
        url: &'a str,
    },
    Nobody,
}

/// Rotate-now: marks the policy `requested` (audited), then wakes whoever rotates it. Waking is
/// best effort: if it fails, or nobody is configured, the policy stays requested (due) and the
/// next hourly run rotates it.
pub async fn request_now(
    policies: &PolicyStore,
    wake: Wake<'_>,
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
    let policy = policies.request(name, now, &record).await?;
    if let Wake::Queue { sqs, url } = wake {
        if let Err(e) = super::queue::enqueue(sqs, url, name, None).await {
            tracing::warn!(policy = name, error = %e, "enqueueing the rotation failed; the next scheduled run rotates the policy");
        }
    }
    Ok(policy)
}
