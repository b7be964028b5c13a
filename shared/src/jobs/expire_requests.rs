//! Expiring access requests (SPEC §12): every pending request past its `expires_at` and every
//! approved one past its grant is recorded `expired`, with its one audit item and event. Runs in
//! the 3-minute sweep and the hourly run; reads only the due requests (the `due` index).

use chrono::{DateTime, Utc};

use super::ScheduleError;
use crate::audit::Origin;
use crate::App;

pub(super) async fn expire_requests(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<usize, ScheduleError> {
    Ok(app.requests().expire_due(now, origin).await?)
}
