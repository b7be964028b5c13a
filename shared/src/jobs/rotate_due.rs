//! Rotating every due policy (requested ones included: rotate-now makes a policy due at once),
//! a few at a time.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};

use super::{RunReport, ScheduleError};
use crate::audit::Origin;
use crate::rotation::policy::PolicyError;
use crate::rotation::{run_due_policy, PolicyRotationError, PolicyRun};
use crate::App;

/// Rotations run at once per scheduled run: enough to finish many policies inside one invocation,
/// few enough to stay clear of IAM's request rate (the SDK backs off and retries on throttling).
pub const CONCURRENCY: usize = 4;

/// The rotations of a run only: every due policy, requested ones included (rotate-now makes a
/// policy due at once). What the `Rotation Requested` event runs. With RotationQueue configured
/// they are enqueued for its workers instead (SPEC §14).
pub async fn run_rotations(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RunReport, ScheduleError> {
    if let Some(url) = &app.config.rotation_queue_url {
        return super::queue::enqueue_due(app, url, now).await;
    }
    let due = app.policies.due(now).await?;
    let mut report = RunReport {
        policies_read: due.items_read,
        ..RunReport::default()
    };
    let outcomes: Vec<_> = stream::iter(due.policies)
        .map(|p| async move {
            let name = p.name.to_string();
            let outcome = run_due_policy(&app.policies, &app.rotator, &name, now, origin).await;
            (name, outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(PolicyRun::Rotated(_, rotated)) => report.rotated.push((name, rotated)),
            Ok(PolicyRun::Checked(_, retirement)) => report.checked.push((name, retirement)),
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
