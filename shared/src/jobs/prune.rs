//! Pruning revocations (SPEC §10): every due target's expired entries removed and any recorded
//! set not yet in IAM written. One target's failure does not stop the others; it fails the run
//! after everything else is done, so EventBridge retries it and the alarm fires.

use chrono::{DateTime, Utc};

use super::ScheduleError;
use crate::audit::Origin;
use crate::ops::{count, Metric};
use crate::revocation::PruneReport;
use crate::App;

pub(super) async fn prune_due(app: &App, now: DateTime<Utc>, origin: &Origin) -> PruneReport {
    app.revocations.prune_due(now, origin).await
}

/// Each failed target counts `SweepFailures`; any fails the run (the targets stay due).
pub(super) fn failed(report: &PruneReport) -> Result<(), ScheduleError> {
    let failed = report.failed.len();
    if failed == 0 {
        return Ok(());
    }
    for _ in 0..failed {
        count(Metric::SweepFailed, Some("revocations"));
    }
    Err(ScheduleError::Prune(failed))
}
