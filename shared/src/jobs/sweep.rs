//! The lease sweep: ends expired leases and those of issuances that died, and carries out the
//! key reactivations admins asked for (every 3 minutes on its own schedule, and in every hourly
//! run).

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
        reactivated: reactivations(app, origin).await?,
        requests_expired: super::expire_requests::expire_requests(app, now, origin).await?,
        ..RunReport::default()
    })
}

/// Reactivations admins asked for (SPEC §15, `keys reactivate`): only this function may change a
/// key's status.
pub(super) async fn reactivations(
    app: &App,
    origin: &Origin,
) -> Result<Vec<String>, ScheduleError> {
    let pending = crate::hygiene::Pending {
        db: &app.clients.dynamodb,
        table: &app.config.state_table,
        dry_run: app.config.key_age_dry_run,
    };
    Ok(
        crate::hygiene::complete_reactivations(&app.clients.iam, &app.audit, &pending, origin)
            .await?,
    )
}

pub(super) async fn end_due_leases(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<RevokeReport, ScheduleError> {
    Ok(app.leases.revoke_expired(now, &app.audit, origin).await?)
}
