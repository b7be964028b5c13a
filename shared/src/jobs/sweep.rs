//! The lease sweep: ends expired leases and those of issuances that died (every 3 minutes on its
//! own schedule, and in every hourly run).

use chrono::{DateTime, Utc};

use super::{RunReport, ScheduleError};
use crate::audit::Origin;
use crate::lease::RevokeReport;
use crate::App;

/// The sweep alone (the 3-minute schedule's event).
pub async fn sweep(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RunReport, ScheduleError> {
    Ok(RunReport {
        leases: end_due_leases(app, now, origin).await?,
        ..RunReport::default()
    })
}

pub(super) async fn end_due_leases(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RevokeReport, ScheduleError> {
    Ok(app.leases.revoke_expired(now, &app.audit, origin).await?)
}
