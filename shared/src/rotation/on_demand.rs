//! Rotating one policy now, under its lock (the scheduled path and rotate-now), and rotate-now's
//! request: marked `requested` (audited), then scheduled-rotation invoked asynchronously.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::policy::{Policy, PolicyError, PolicyStore};
use super::{Rotated, RotationError, Rotator};
use crate::audit::{AuditRecord, Category, Origin, Outcome};
use crate::aws::{classify, FailureKind};
use crate::time::format_time;

/// The `detail-type` of the event rotate-now sends scheduled-rotation.
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

/// Rotates one policy under its lock: the scheduled path (`require_due`) or "rotate now".
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
    match rotator
        .rotate_now(&policy.secret_id, origin, name, now)
        .await
    {
        Ok(rotated) => {
            policies.rotated(&policy, &owner, Utc::now()).await?;
            Ok((policy, rotated))
        }
        Err(e) => {
            if let Err(unlock) = policies.failed(name, &owner, &e.to_string()).await {
                // The lock expires by itself; the next run retries.
                tracing::warn!(policy = name, error = %unlock, "releasing a rotation lock failed");
            }
            Err(e.into())
        }
    }
}

/// Who rotate-now wakes, in order of preference: RotationQueue's workers (SPEC §14), else
/// scheduled-rotation invoked asynchronously with a `Rotation Requested` event.
pub enum Wake<'a> {
    Queue {
        sqs: &'a aws_sdk_sqs::Client,
        url: &'a str,
    },
    Function {
        lambda: &'a aws_sdk_lambda::Client,
        name: &'a str,
        region: &'a str,
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
    match wake {
        Wake::Queue { sqs, url } => {
            if let Err(e) = super::queue::enqueue(sqs, url, name, None).await {
                tracing::warn!(policy = name, error = %e, "enqueueing the rotation failed; the next scheduled run rotates the policy");
            }
        }
        Wake::Function {
            lambda,
            name: function,
            region,
        } => {
            let event = json!({
                "version": "0",
                "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": ROTATION_REQUESTED,
                "source": "keysmith",
                "account": "",
                "time": format_time(now),
                "region": region,
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
        Wake::Nobody => {}
    }
    Ok(policy)
}
