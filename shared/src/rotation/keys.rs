//! Two keys, checked, not trusted (SPEC §6a). IAM's two-key limit is not atomic, and an SDK retry
//! of a `CreateAccessKey` whose answer was lost makes a second key: so `createSecret` records the
//! user's keys before it creates one (in the lock item), records the new key in the pending
//! version, lists the keys again, and deletes any key that appeared meanwhile and that no version
//! records. The next attempt does the same for a key a crashed attempt made. Keys nobody recorded that were there before (shadow keys) are only
//! reported outside `replace`, never deleted; `replace` deletes them, each audited.

use std::collections::HashSet;

use chrono::{DateTime, Duration};

use super::admin::Admin;
use super::{
    Ctx, Mode, RotatedSecret, RotationError, Rotator, Step, Versions, EVENT_ORPHAN_DELETED,
    EVENT_SHADOW_DELETED, EVENT_SHADOW_DETECTED, PENDING, PREVIOUS,
};
use crate::audit::{AuditRecord, Category, Level, Outcome};

/// How far around the recorded listing a crashed attempt's key can have been created: the
/// `CreateAccessKey` follows the record at once, give or take the SDK's retries and clock skew.
const CREATED_BEFORE: Duration = Duration::minutes(1);
const CREATED_AFTER: Duration = Duration::minutes(5);

/// One `createSecret`'s view of the secret and the user.
pub(super) struct Round<'a, 'c> {
    pub secret: &'a str,
    pub token: &'a str,
    pub versions: &'a Versions,
    pub ctx: &'a Ctx<'c>,
    pub current: &'a RotatedSecret,
    pub admin: &'a Admin,
}

/// The room made for the new key.
pub(super) struct Room {
    /// The keys this rotation removes (`removed_access_key_ids`).
    pub removed: Vec<String>,
    /// The keys left, recorded before `CreateAccessKey`.
    pub remaining: Vec<String>,
}

impl Round<'_, '_> {
    fn user(&self) -> &str {
        &self.current.user_name
    }
}

impl Rotator {
    /// Deletes a crashed attempt's key, then makes room as the mode says (§6a "Which deletions
    /// are deliberate"), reporting every key no version records.
    pub(super) async fn make_room(&self, r: &Round<'_, '_>) -> Result<Room, RotationError> {
        let current_key = r.current.key_id().map(str::to_owned);
        let previous = self
            .value(r.secret, None, PREVIOUS)
            .await?
            .and_then(|p| p.key_id().map(str::to_owned))
            .filter(|p| Some(p) != current_key.as_ref());
        let recorded: HashSet<String> = [current_key.clone(), previous.clone()]
            .into_iter()
            .chain([r.admin.key_id.clone()])
            .flatten()
            .collect();
        let before = self.lock_state(&r.versions.arn).await?.before;
        let mut remaining = Vec::new();
        for k in self.keys(r.admin, r.user()).await? {
            let Some(id) = k.access_key_id else { continue };
            let created = k
                .create_date
                .and_then(|d| DateTime::from_timestamp(d.secs(), 0));
            let orphan = !recorded.contains(&id)
                && before.as_ref().is_some_and(|(ids, at)| {
                    !ids.contains(&id)
                        && created
                            .is_some_and(|c| c >= *at - CREATED_BEFORE && c <= *at + CREATED_AFTER)
                });
            if orphan {
                self.delete_orphan(
                    r,
                    &id,
                    Step::Create,
                    "a key an earlier attempt of this secret's rotation created and never recorded",
                )
                .await?;
            } else {
                remaining.push(id);
            }
        }
        let shadows: Vec<String> = remaining
            .iter()
            .filter(|k| !recorded.contains(*k))
            .cloned()
            .collect();
        let protected: HashSet<&str> = [current_key.as_deref(), r.admin.key_id.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let mut removed = Vec::new();
        if r.current.mode == Mode::DeleteFirst
            && r.admin
                .key_id
                .as_deref()
                .is_some_and(|a| remaining.iter().any(|k| k == a))
        {
            return Err(RotationError::SelfDeleteFirst);
        }
        if r.current.mode == Mode::Graceful {
            for shadow in &shadows {
                self.report_shadow(r, shadow, Step::Create).await?;
            }
        }
        loop {
            let victim = match r.current.mode {
                Mode::DeleteFirst => remaining.first().cloned(),
                _ if remaining.len() < 2 => None,
                // The key AWSPREVIOUS holds is the older non-current one graceful retires.
                Mode::Graceful => match previous
                    .as_ref()
                    .filter(|p| remaining.contains(p) && !protected.contains(p.as_str()))
                {
                    Some(p) => Some(p.clone()),
                    None => return Err(no_room(r, &remaining, &protected, &shadows)),
                },
                // Any key no version holds may go to make room; recorded ones before shadows.
                Mode::Replace => {
                    let deletable = |k: &&String| !protected.contains(k.as_str());
                    match remaining
                        .iter()
                        .filter(deletable)
                        .find(|k| !shadows.contains(k))
                        .or_else(|| remaining.iter().find(deletable))
                    {
                        Some(k) => Some(k.clone()),
                        None => return Err(no_room(r, &remaining, &protected, &shadows)),
                    }
                }
            };
            let Some(victim) = victim else { break };
            if shadows.contains(&victim) {
                self.audit_key(
                    r.ctx,
                    r.secret,
                    r.token,
                    Step::Create,
                    EVENT_SHADOW_DELETED,
                    &victim,
                    format!(
                        "createSecret: access key {victim} of user {}, which no version of secret {} recorded, deleted ({} mode).",
                        r.user(),
                        r.secret,
                        r.current.mode.as_str()
                    ),
                )
                .await?;
            }
            self.delete_key(r.admin, r.user(), &victim).await?;
            remaining.retain(|k| *k != victim);
            removed.push(victim);
        }
        if r.current.mode == Mode::Replace {
            // Everything still there goes at finishSecret, once the new key is proven.
            removed.extend(remaining.iter().cloned());
        }
        Ok(Room { removed, remaining })
    }

    /// After `CreateAccessKey`: any key besides the new one that was not there before was made
    /// by this rotation (a retried call, a burst past IAM's limit), and no version records it.
    pub(super) async fn check_after_create(
        &self,
        r: &Round<'_, '_>,
        room: &Room,
        new_id: &str,
    ) -> Result<(), RotationError> {
        for k in self.keys(r.admin, r.user()).await? {
            let Some(id) = k.access_key_id else { continue };
            if id != new_id && !room.remaining.contains(&id) {
                self.delete_orphan(
                    r,
                    &id,
                    Step::Create,
                    "a key that appeared while this rotation created its own",
                )
                .await?;
            }
        }
        Ok(())
    }

    /// `PutSecretValue` of the new key failed: unless the version holds it after all (the answer
    /// was lost), the key is deleted now. If even that cannot be told, the record written before
    /// `CreateAccessKey` lets the next attempt delete it.
    pub(super) async fn settle_unrecorded(&self, r: &Round<'_, '_>, new_id: &str) {
        match self.value(r.secret, Some(r.token), PENDING).await {
            Ok(Some(v)) if v.key_id() == Some(new_id) => {}
            Ok(_) => {
                if let Err(e) = self.delete_key(r.admin, r.user(), new_id).await {
                    tracing::warn!(secret = r.secret, access_key_id = new_id, error = %e, "deleting an unrecorded new key failed; the next attempt deletes it");
                }
            }
            Err(e) => {
                tracing::warn!(secret = r.secret, access_key_id = new_id, error = %e, "cannot tell whether the new key was recorded; the next attempt settles it");
            }
        }
    }

    async fn delete_orphan(
        &self,
        r: &Round<'_, '_>,
        id: &str,
        step: Step,
        why: &str,
    ) -> Result<(), RotationError> {
        self.audit_key(
            r.ctx,
            r.secret,
            r.token,
            step,
            EVENT_ORPHAN_DELETED,
            id,
            format!(
                "{}: access key {id} of user {} deleted: {why}.",
                step.as_str(),
                r.user()
            ),
        )
        .await?;
        self.delete_key(r.admin, r.user(), id).await
    }

    /// `Shadow Access Key Detected` (`ERROR`, and an event): a key no version records, left alone.
    pub(super) async fn report_shadow_key(
        &self,
        ctx: &Ctx<'_>,
        secret: &str,
        token: &str,
        step: Step,
        user: &str,
        id: &str,
    ) -> Result<(), RotationError> {
        self.audit_key(
            ctx,
            secret,
            token,
            step,
            EVENT_SHADOW_DETECTED,
            id,
            format!(
                "{}: user {user} has access key {id}, which no version of secret {secret} records; it is left as it is.",
                step.as_str()
            ),
        )
        .await
    }

    async fn report_shadow(
        &self,
        r: &Round<'_, '_>,
        id: &str,
        step: Step,
    ) -> Result<(), RotationError> {
        self.report_shadow_key(r.ctx, r.secret, r.token, step, r.user(), id)
            .await
    }

    /// One item per rotation, event and key, however often the step runs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn audit_key(
        &self,
        ctx: &Ctx<'_>,
        secret: &str,
        token: &str,
        step: Step,
        event: &str,
        id: &str,
        message: String,
    ) -> Result<(), RotationError> {
        let mut rec =
            AuditRecord::new(ctx.origin, Category::Data, event, Outcome::Success, message);
        rec.level = if event == EVENT_SHADOW_DETECTED {
            Level::Error
        } else {
            Level::Warn
        };
        rec.profile = ctx.policy.map(str::to_owned);
        rec.credential_type = Some("iam_access_key".into());
        rec.access_key_id = Some(id.to_owned());
        rec.lease_id = Some(format!("{secret}#{}", step.as_str()));
        tracing::warn!(secret, event, access_key_id = id, "rotation key check");
        let once = format!("rotation#{secret}#{token}#{event}#{id}");
        self.audit
            .write_once(&rec, &self.state_table, &once)
            .await?;
        Ok(())
    }
}

fn no_room(
    r: &Round<'_, '_>,
    remaining: &[String],
    protected: &HashSet<&str>,
    shadows: &[String],
) -> RotationError {
    let current = r.current.key_id().unwrap_or("none");
    let reason = match shadows.first() {
        Some(shadow) => format!(
            "it has access key {current} (AWSCURRENT) and access key {shadow}, which no version of the secret records; \
             {} mode never deletes such a key: delete it by hand, or rotate in mode replace (or delete_first), which makes room",
            r.current.mode.as_str()
        ),
        None => format!(
            "its keys {} must all be kept (AWSCURRENT and the admin's own key); delete one by hand",
            remaining
                .iter()
                .filter(|k| protected.contains(k.as_str()))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    RotationError::NoRoom {
        user: r.user().to_owned(),
        reason,
    }
}
