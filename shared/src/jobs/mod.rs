//! The scheduled work of scheduled-rotation, one file per job: rotate what is due
//! ([`rotate_due`]), end due leases ([`sweep`]), prune revocations ([`prune`]), report old keys
//! ([`key_report`]), seal the audit trail ([`seal`], every 5 minutes), and RotationQueue's
//! sending and working ([`queue`]); [`run`] is the hourly
//! sequence. Like `api/`, a job only sequences use cases
//! of the domain modules and reports.

mod canary;
mod expire_requests;
mod key_report;
mod prune;
mod quarantine;
mod queue;
mod rotate_due;
mod seal;
mod sweep;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::Origin;
pub use crate::hygiene::{OldKey, EVENT_OLD_KEY};
use crate::lease::{LeaseError, RevokeReport};
use crate::rotation::policy::PolicyError;
use crate::rotation::{Retirement, Rotated};
use crate::App;
pub use canary::{canary, CANARY_GROUP, CANARY_PRINCIPAL};
use key_report::old_keys;
pub use quarantine::quarantine;
pub use queue::{work, WorkReport, THROTTLED_DELAY_SECONDS};
pub use rotate_due::{run_rotations, CONCURRENCY};
pub use seal::seal;
pub use sweep::sweep;

#[derive(Debug, Default)]
pub struct RunReport {
    /// Items the due-policy query returned: proportional to the due work, not to all policies.
    pub policies_read: usize,
    /// Due rotations sent to RotationQueue (SPEC §14) rather than rotated here.
    pub enqueued: usize,
    pub rotated: Vec<(String, Rotated)>,
    /// Policies due only for a check of their previous key (SPEC §15 `retire_unused_hours`), or
    /// due but waiting for it to fall unused.
    pub checked: Vec<(String, Retirement)>,
    /// Due policies another run (or a rotate-now) holds.
    pub skipped: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub leases: RevokeReport,
    pub old_keys: Vec<OldKey>,
    /// Keys reactivated as admins asked (`keys reactivate`).
    pub reactivated: Vec<String>,
    pub revocations: crate::revocation::PruneReport,
    /// SPEC §12: access requests recorded `expired` by this run.
    pub requests_expired: usize,
}

impl RunReport {
    pub fn to_json(&self) -> Value {
        json!({
            "policies_read": self.policies_read,
            "enqueued": self.enqueued,
            "rotated": self.rotated.iter().map(|(p, r)| json!({"policy": p, "user_name": r.user_name,
                "old_access_key_id": r.old_access_key_id, "new_access_key_id": r.new_access_key_id})).collect::<Vec<_>>(),
            "checked": self.checked.iter().map(|(p, r)| retirement_json(p, r)).collect::<Vec<_>>(),
            "skipped": self.skipped,
            "failed": self.failed.iter().map(|(p, e)| json!({"policy": p, "error": e})).collect::<Vec<_>>(),
            "leases_revoked": self.leases.revoked,
            "leases_failed": self.leases.failed.iter().map(|(l, e)| json!({"lease_id": l, "error": e})).collect::<Vec<_>>(),
            "revocations": self.revocations.to_json(),
            "reactivated": self.reactivated,
            "requests_expired": self.requests_expired,
            "old_keys": self.old_keys.iter().map(|k| json!({"user_name": k.user_name, "access_key_id": k.access_key_id,
                "age_days": k.age_days, "unused_days": k.unused_days, "exempt": k.exempt,
                "deactivated": k.deactivated})).collect::<Vec<_>>(),
        })
    }
}

fn retirement_json(policy: &str, r: &Retirement) -> Value {
    match r {
        Retirement::Nothing => json!({"policy": policy, "previous_key": "none"}),
        Retirement::NotGraceful(mode) => {
            json!({"policy": policy, "previous_key": "none", "mode": mode.as_str()})
        }
        Retirement::Retired { access_key_id } => {
            json!({"policy": policy, "previous_key": "retired", "access_key_id": access_key_id})
        }
        Retirement::Waiting {
            access_key_id,
            retire_after,
            ..
        } => json!({"policy": policy, "previous_key": "waiting_for_unused",
            "access_key_id": access_key_id, "retire_after": crate::time::format_time(*retire_after)}),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("reading due rotation policies failed: {0}")]
    Policies(#[from] PolicyError),
    #[error("ending expired leases failed: {0}")]
    Leases(#[from] LeaseError),
    #[error("the key report failed: {0}")]
    KeyReport(#[from] crate::hygiene::HygieneError),
    #[error("{0} revocation polic(ies) could not be pruned or written; they stay due")]
    Prune(usize),
    #[error("expiring access requests failed: {0}")]
    Requests(#[from] crate::requests::RequestError),
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
    report.leases = sweep::end_due_leases(app, now, origin).await?;
    report.reactivated = sweep::reactivations(app, origin).await?;
    report.requests_expired = expire_requests::expire_requests(app, now, origin).await?;
    report.revocations = prune::prune_due(app, now, origin).await;
    if app.config.max_key_age_days.is_some() || app.config.unused_key_days.is_some() {
        report.old_keys = old_keys(app, now, origin).await?;
    }
    // After everything else is done: a failed prune fails the run.
    prune::failed(&report.revocations)?;
    Ok(report)
}

/// Which job an EventBridge event asks for. The hourly schedule's standard event (empty `detail`)
/// runs everything; the lease sweep's own schedule (every 3 minutes) says `{"job": "sweep"}` and
/// only ends due leases, so rotations and the old-key report stay hourly; the sealing schedule
/// (every 5 minutes) says `{"job": "seal"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Full,
    Sweep,
    Seal,
    Canary,
}

impl Job {
    pub fn of(detail: &Value) -> Self {
        match detail.get("job").and_then(Value::as_str) {
            Some("sweep") => Self::Sweep,
            Some("seal") => Self::Seal,
            Some("canary") => Self::Canary,
            _ => Self::Full,
        }
    }
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
        assert_eq!(Job::of(&json!({"job": "seal"})), Job::Seal);
    }
}
