//! The key report's job: the held keys gathered, then `hygiene::report` over every IAM user
//! (SPEC §15: `KEYSMITH_MAX_KEY_AGE_DAYS`, `KEYSMITH_UNUSED_KEY_DAYS`, `KEYSMITH_KEY_AGE_DRY_RUN`).

use chrono::{DateTime, Utc};

use super::ScheduleError;
use crate::audit::Origin;
use crate::hygiene::{self, Holdings, Limits, OldKey};
use crate::App;

pub(super) async fn old_keys(
    app: &App,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<Vec<OldKey>, ScheduleError> {
    let protected = Holdings {
        profiles: &app.profiles,
        policies: &app.policies,
        secrets: &app.clients.secrets,
        rotation_function: app.config.secret_rotation_function_arn.as_deref(),
    }
    .keys()
    .await?;
    let limits = Limits {
        max_age_days: app.config.max_key_age_days,
        unused_days: app.config.unused_key_days,
        dry_run: app.config.key_age_dry_run,
    };
    Ok(hygiene::report(
        &app.clients.iam,
        &app.audit,
        &protected,
        limits,
        now,
        origin,
    )
    .await?)
}
