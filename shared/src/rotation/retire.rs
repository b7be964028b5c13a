//! Usage-gated retirement of graceful mode's previous key (SPEC §15, `retire_unused_hours`): the
//! key `AWSPREVIOUS` holds is deactivated only once IAM's `GetAccessKeyLastUsed` shows no use for
//! that many hours (since its creation when it was never used), and deleted by the next rotation's
//! `createSecret` as graceful mode always does. Until then it stays active, and a due rotation
//! waits: rotating would delete a key something still signs with.

use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{aws, Mode, RotationError, Rotator, PREVIOUS};
use crate::audit::{AuditRecord, Category, Level, Origin, Outcome};

/// A previous key deactivated because it was unused for `retire_unused_hours`.
pub const EVENT_RETIRED: &str = "Access Key Retired";
/// A rotation past its interval still waits for the previous key to fall unused (`WARN`).
pub const EVENT_RETIREMENT_OVERDUE: &str = "Access Key Retirement Overdue";

/// Where the previous key of a secret stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retirement {
    /// No active previous key: never rotated, already inactive, or gone.
    Nothing,
    /// The secret is not in graceful mode: every rotation removes the old key, nothing waits.
    NotGraceful(Mode),
    /// Deactivated by this call.
    Retired { access_key_id: String },
    /// Used within the window: stays active until `retire_after` at the earliest.
    Waiting {
        access_key_id: String,
        last_used: Option<DateTime<Utc>>,
        retire_after: DateTime<Utc>,
    },
}

impl Retirement {
    /// The sentence `GET /v1/rotations/{name}` shows as `status_reason` while waiting.
    pub fn reason(&self, hours: u16) -> Option<String> {
        let (access_key_id, last_used, retire_after) = match self {
            Self::Waiting {
                access_key_id,
                last_used,
                retire_after,
            } => (access_key_id, last_used, retire_after),
            Self::NotGraceful(mode) => {
                return Some(format!(
                    "retire_unused_hours applies to graceful mode only; the secret is in mode {}, whose rotation removes the old key",
                    mode.as_str()
                ))
            }
            _ => return None,
        };
        let used = last_used.map_or("never used since it was created".to_owned(), |t| {
            format!("last used {}", crate::time::format_time(t))
        });
        Some(format!(
            "previous access key {access_key_id} is still in use ({used}); it is deactivated once unused for {hours} h (not before {}), and the next rotation waits for it",
            crate::time::format_time(*retire_after)
        ))
    }
}

impl Rotator {
    /// Deactivates the secret's previous key once unused for `hours` (counted from its last use,
    /// and not before `became_previous`, the rotation that replaced it), else says how long it
    /// waits. Through the rotation's own identity and binding check; audited once per key.
    pub async fn retire_previous(
        &self,
        secret: &str,
        hours: u16,
        became_previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        origin: &Origin,
        policy: &str,
    ) -> Result<Retirement, RotationError> {
        let versions = self.versions(secret).await?;
        let current = self.current_value(secret).await?;
        if current.mode != Mode::Graceful {
            return Ok(Retirement::NotGraceful(current.mode));
        }
        let Some(version) = versions.with_stage(PREVIOUS) else {
            return Ok(Retirement::Nothing);
        };
        let previous = self.value(secret, Some(version), PREVIOUS).await?;
        let Some(id) = previous
            .as_ref()
            .and_then(|p| p.key_id())
            .map(str::to_owned)
        else {
            return Ok(Retirement::Nothing);
        };
        if current.key_id() == Some(id.as_str()) {
            return Ok(Retirement::Nothing);
        }
        let admin = self.admin(&current, &versions).await?;
        self.check_binding(&admin, &current.user_name, &versions)
            .await?;
        let keys = self.keys(&admin, &current.user_name).await?;
        let Some(key) = keys.iter().find(|k| k.access_key_id() == Some(id.as_str())) else {
            return Ok(Retirement::Nothing);
        };
        if key.status() == Some(&StatusType::Inactive) {
            return Ok(Retirement::Nothing);
        }
        let used = admin
            .iam
            .get_access_key_last_used()
            .access_key_id(&id)
            .send()
            .await
            .map_err(|e| aws("GetAccessKeyLastUsed", e))?;
        let to_time =
            |d: &aws_sdk_iam::primitives::DateTime| Utc.timestamp_opt(d.secs(), 0).single();
        let last_used = used
            .access_key_last_used()
            .and_then(|l| l.last_used_date())
            .and_then(to_time);
        // Never used: unused since it was made (a key without a date counts as used now). And
        // never before it became the previous key: until then it was the only current one, and
        // IAM reports use hours late.
        let since = last_used
            .or_else(|| key.create_date().and_then(to_time))
            .unwrap_or(now)
            .max(became_previous.unwrap_or(DateTime::<Utc>::MIN_UTC));
        let retire_after = since + Duration::hours(i64::from(hours));
        if retire_after > now {
            return Ok(Retirement::Waiting {
                access_key_id: id,
                last_used,
                retire_after,
            });
        }
        self.set_inactive(&admin, &current.user_name, &id).await?;
        let used = last_used.map_or("never used".to_owned(), |t| {
            format!("last used {}", crate::time::format_time(t))
        });
        let mut record = self.key_record(
            origin,
            policy,
            &id,
            EVENT_RETIRED,
            format!(
                "Previous access key {id} of user {} deactivated: unused for {hours} h ({used}); the next rotation deletes it.",
                current.user_name
            ),
        );
        record.level = Level::Info;
        self.audit
            .write_once(&record, &self.state_table, &format!("retire#{secret}#{id}"))
            .await?;
        Ok(Retirement::Retired { access_key_id: id })
    }

    /// `Access Key Retirement Overdue` (`WARN`, a metric and an event): the rotation is due but
    /// the previous key is still in use. Once per key and day, however often the policy is checked.
    pub async fn retirement_overdue(
        &self,
        origin: &Origin,
        policy: &str,
        access_key_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RotationError> {
        let record = self.key_record(
            origin,
            policy,
            access_key_id,
            EVENT_RETIREMENT_OVERDUE,
            format!("Rotation of policy {policy} is due and waits: {reason}."),
        );
        let once = format!(
            "retire-overdue#{policy}#{access_key_id}#{}",
            now.format("%Y-%m-%d")
        );
        self.audit
            .write_once(&record, &self.state_table, &once)
            .await?;
        Ok(())
    }

    fn key_record(
        &self,
        origin: &Origin,
        policy: &str,
        id: &str,
        event: &str,
        message: String,
    ) -> AuditRecord {
        let mut record = AuditRecord::new(origin, Category::Data, event, Outcome::Success, message);
        record.level = Level::Warn;
        record.profile = Some(policy.to_owned());
        record.credential_type = Some("iam_access_key".into());
        record.access_key_id = Some(id.to_owned());
        record
    }
}
