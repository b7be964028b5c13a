//! `finishSecret`: prove the pending key, move `AWSCURRENT`, take `AWSPENDING` off, then retire
//! what the mode retires (only `replace` deletes here) and report keys no version records.

use std::collections::HashSet;

use super::{
    aws, Ctx, Mode, Rotated, RotationError, Rotator, Step, Versions, CURRENT, EVENT_SHADOW_DELETED,
    PENDING, PREVIOUS,
};

impl Rotator {
    pub(super) async fn finish(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<Rotated, RotationError> {
        self.lock(versions, token, ctx).await?;
        let old = versions.with_stage(CURRENT).map(str::to_owned);
        if old.as_deref() != Some(token) {
            self.verify_pending(secret, token, versions, ctx).await?;
            self.clients
                .secrets
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage(CURRENT)
                .move_to_version_id(token)
                .set_remove_from_version_id(old.clone())
                .send()
                .await
                .map_err(|e| aws("UpdateSecretVersionStage", e))?;
        }
        // The finished version no longer needs AWSPENDING: without it the secret shows no
        // rotation in progress, and the next RotateSecret starts cleanly.
        if versions.has_stage(token, PENDING) {
            self.remove_pending(secret, token).await?;
        }
        // Read back what is now current (always by stage: see LOCAL-AWS.md) and retire the rest.
        let current = self.current_value(secret).await?;
        let new_id =
            current
                .key_id()
                .map(str::to_owned)
                .ok_or_else(|| RotationError::BadSecret {
                    secret: secret.to_owned(),
                    reason: "the new AWSCURRENT version has no key".into(),
                })?;
        // The key this rotation replaced: kept in graceful mode, named in the audit item.
        let previous = self
            .value(secret, None, PREVIOUS)
            .await?
            .and_then(|p| p.key_id().map(str::to_owned))
            .filter(|p| *p != new_id);
        // A newer rotation's pending key is live too: a late duplicate finishSecret of an older
        // rotation must not remove it.
        let pending = match versions.with_stage(PENDING).filter(|p| *p != token) {
            Some(_) => self
                .value(secret, None, PENDING)
                .await?
                .and_then(|p| p.key_id().map(str::to_owned)),
            None => None,
        };
        let admin = self.admin(&current, versions).await?;
        let user = current.user_name.clone();
        let keep: HashSet<&str> = [
            Some(new_id.as_str()),
            pending.as_deref(),
            admin.key_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let others: Vec<String> = self
            .keys(&admin, &user)
            .await?
            .into_iter()
            .filter_map(|k| k.access_key_id)
            .filter(|id| !keep.contains(id.as_str()))
            .collect();
        // Only replace deletes at finishSecret (§6a); elsewhere a key no version records is
        // reported and left.
        let mut doomed = Vec::new();
        for id in others {
            let recorded = previous.as_deref() == Some(id.as_str());
            match (current.mode, recorded) {
                (Mode::Replace, _) => doomed.push(id),
                // The key AWSPREVIOUS records: graceful keeps it, and it is no shadow elsewhere.
                (_, true) => {}
                _ => {
                    self.report_shadow_key(ctx, secret, token, Step::Finish, &user, &id)
                        .await?
                }
            }
        }
        if !doomed.is_empty() {
            self.check_binding(&admin, &user, versions).await?;
        }
        for id in &doomed {
            if previous.as_deref() != Some(id.as_str()) {
                self.audit_key(
                    ctx,
                    secret,
                    token,
                    Step::Finish,
                    EVENT_SHADOW_DELETED,
                    id,
                    format!("finishSecret: access key {id} of user {user}, which no version of secret {secret} recorded, deleted (replace mode)."),
                )
                .await?;
            }
            self.delete_key(&admin, &user, id).await?;
        }
        let policy = ctx
            .policy
            .map(|p| format!("rotation policy {p}: "))
            .unwrap_or_default();
        self.audit_step(
            ctx,
            secret,
            token,
            Step::Finish,
            Some(&new_id),
            format!(
                "{policy}access key of user {user} rotated: {} -> {new_id} ({} mode); deleted: {}.",
                previous.as_deref().unwrap_or("none"),
                current.mode.as_str(),
                if doomed.is_empty() {
                    "none".to_owned()
                } else {
                    doomed.join(", ")
                }
            ),
        )
        .await?;
        self.unlock(&versions.arn, token).await?;
        Ok(Rotated {
            user_name: user,
            old_access_key_id: previous,
            new_access_key_id: new_id,
        })
    }

    /// §6a: `AWSCURRENT` moves only to a key that is among the user's keys and works. A pending
    /// key that vanished after `testSecret` abandons the version, and nothing is deleted.
    async fn verify_pending(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<(), RotationError> {
        let (pending, key) = self.pending_with_key(secret, token).await?;
        if self.pending_key_gone(secret, versions, &pending).await? {
            let reason = format!(
                "finishSecret: its pending key {} is not among the user's keys",
                key.access_key_id
            );
            return Err(self
                .abandon(secret, token, versions, &pending, ctx, reason)
                .await?);
        }
        self.prove(&key, &pending.user_name).await
    }
}
