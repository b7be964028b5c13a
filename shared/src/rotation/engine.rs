//! The key engine: make room, create the new key, prove it, abandon a rotation whose key is gone,
//! each step audited exactly once (`finish` moves `AWSCURRENT` and retires the old keys).
//!
//! - `createSecret` first makes room (`keys`: a crashed attempt's key is the first to go), so the
//!   user never needs a third key; it is a no-op once the token's `AWSPENDING` version exists.
//! - `testSecret` proves the pending key with `sts:GetCallerIdentity` (bounded retries); a pending
//!   key that no longer exists in IAM abandons the rotation instead of failing forever.
//! - `finishSecret` moves `AWSCURRENT` only to a pending key that is among the user's keys and
//!   works (else it abandons the version), takes `AWSPENDING` off it, then (replace only) deletes
//!   the other keys, never a key another version or the admin holds.

use chrono::Utc;

use super::keys::Round;
use super::{
    aws, Ctx, RotatedSecret, RotationError, Rotator, Step, Versions, EVENT_ABANDONED,
    EVENT_ROTATED, EVENT_STEP, PENDING,
};
use crate::audit::{AuditRecord, Category, Level, Outcome};
use crate::aws::{wait_for_identity, AwsFailure};
use crate::secret::{AccessKeyPair, Secret};

impl Rotator {
    pub(super) async fn create(
        &self,
        secret: &str,
        token: &str,
        rotation_token: Option<&str>,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<(), RotationError> {
        self.lock(versions, token, ctx).await?;
        let current = self.current_value(secret).await?;
        if let Some(pending) = self.value(secret, Some(token), PENDING).await? {
            tracing::info!(
                secret,
                token,
                "createSecret: the pending version exists already"
            );
            // A retry after a crash between the put and the audit item writes it now (once).
            return self.audit_created(ctx, secret, token, &pending).await;
        }
        let user = current.user_name.as_str();
        let admin = self.admin(&current, versions).await?;
        self.check_binding(&admin, user, versions).await?;
        let round = Round {
            secret,
            token,
            versions,
            ctx,
            current: &current,
            admin: &admin,
        };
        let room = self.make_room(&round).await?;
        self.record_before(&versions.arn, token, &room.remaining)
            .await?;
        let key = admin
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws("CreateAccessKey", e))?
            .access_key
            .ok_or_else(|| RotationError::Aws {
                call: "CreateAccessKey",
                failure: AwsFailure::other("no key returned"),
            })?;
        let key = AccessKeyPair {
            access_key_id: key.access_key_id,
            secret_access_key: Secret::new(key.secret_access_key),
            session_token: None,
        };
        let next = current.with_new_key(&key, &room.removed, Utc::now());
        let put = self
            .clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(&next)
            .version_stages(PENDING)
            .set_rotation_token(rotation_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| aws("PutSecretValue", e));
        if let Err(e) = put {
            self.settle_unrecorded(&round, &key.access_key_id).await;
            return Err(e);
        }
        // Recorded first, checked after: no call lies between the new key and its record.
        self.check_after_create(&round, &room, &key.access_key_id)
            .await?;
        let pending = RotatedSecret::parse(&next).map_err(|reason| RotationError::BadSecret {
            secret: secret.to_owned(),
            reason,
        })?;
        self.audit_created(ctx, secret, token, &pending).await
    }

    async fn audit_created(
        &self,
        ctx: &Ctx<'_>,
        secret: &str,
        token: &str,
        pending: &RotatedSecret,
    ) -> Result<(), RotationError> {
        let id = pending.key_id().unwrap_or("none");
        let removed = pending.removed();
        let message = format!(
            "createSecret: new access key {id} for user {} ({} mode); to be removed: {}.",
            pending.user_name,
            pending.mode.as_str(),
            if removed.is_empty() {
                "none".to_owned()
            } else {
                removed.join(", ")
            }
        );
        self.audit_step(ctx, secret, token, Step::Create, pending.key_id(), message)
            .await
    }

    pub(super) async fn test(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<(), RotationError> {
        self.lock(versions, token, ctx).await?;
        let (pending, key) = self.pending_with_key(secret, token).await?;
        if let Err(e) = self.prove(&key, &pending.user_name).await {
            if matches!(e, RotationError::NotReady { .. })
                && self.pending_key_gone(secret, versions, &pending).await?
            {
                let reason = format!(
                    "testSecret: its pending key {} no longer exists in IAM",
                    key.access_key_id
                );
                return Err(self
                    .abandon(secret, token, versions, &pending, ctx, reason)
                    .await?);
            }
            return Err(e);
        }
        self.audit_step(
            ctx,
            secret,
            token,
            Step::Test,
            Some(&key.access_key_id),
            format!(
                "testSecret: access key {} works as user {}.",
                key.access_key_id, pending.user_name
            ),
        )
        .await
    }

    /// Whether the pending version's key has vanished from IAM (deleted out of band, or by a
    /// rotation that raced this one): then no retry can ever prove it.
    pub(super) async fn pending_key_gone(
        &self,
        secret: &str,
        versions: &Versions,
        pending: &RotatedSecret,
    ) -> Result<bool, RotationError> {
        let Some(id) = pending.key_id() else {
            return Ok(true);
        };
        let current = self.current_value(secret).await?;
        let admin = self.admin(&current, versions).await?;
        let keys = self.keys(&admin, &pending.user_name).await?;
        Ok(!keys.iter().any(|k| k.access_key_id.as_deref() == Some(id)))
    }

    /// Takes `AWSPENDING` off a version whose key is gone and frees the lock, audited once as
    /// `Access Key Rotation Abandoned` (`WARN`, with the reason): the next attempt (Secrets
    /// Manager's next rotation, or the same scheduled run) starts with a new token.
    pub(super) async fn abandon(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        pending: &RotatedSecret,
        ctx: &Ctx<'_>,
        reason: String,
    ) -> Result<RotationError, RotationError> {
        tracing::warn!(secret, token, reason, "abandoning the rotation");
        let mut r = AuditRecord::new(
            ctx.origin,
            Category::Data,
            EVENT_ABANDONED,
            Outcome::Success,
            format!(
                "rotation {token} of secret {secret} (user {}) abandoned: {reason}; nothing was deleted.",
                pending.user_name
            ),
        );
        r.level = Level::Warn;
        r.profile = ctx.policy.map(str::to_owned);
        r.credential_type = Some("iam_access_key".into());
        r.access_key_id = pending.key_id().map(str::to_owned);
        r.lease_id = Some(format!("{secret}#{token}"));
        let once = format!("rotation#{secret}#{token}#abandoned");
        self.audit.write_once(&r, &self.state_table, &once).await?;
        if versions.has_stage(token, PENDING) {
            self.remove_pending(secret, token).await?;
        }
        self.unlock(&versions.arn, token).await?;
        Ok(RotationError::Abandoned {
            user: pending.user_name.clone(),
            token: token.to_owned(),
            reason,
        })
    }

    /// Takes `AWSPENDING` off version `token`.
    pub(super) async fn remove_pending(
        &self,
        secret: &str,
        token: &str,
    ) -> Result<(), RotationError> {
        self.clients
            .secrets
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(PENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|e| aws("UpdateSecretVersionStage", e))?;
        Ok(())
    }

    /// Polls `sts:GetCallerIdentity` with `key` until it names `user` (IAM is eventually
    /// consistent: a new key can take seconds to work).
    pub(super) async fn prove(&self, key: &AccessKeyPair, user: &str) -> Result<(), RotationError> {
        let config = aws_sdk_sts::config::Builder::default().credentials_provider(key.provider());
        let accepted = wait_for_identity(
            &self.clients.sts,
            config,
            self.test_timeout,
            |arn| arn_names_user(arn, user),
            || Ok::<(), RotationError>(()),
        )
        .await?;
        if accepted {
            Ok(())
        } else {
            Err(RotationError::NotReady {
                user: user.to_owned(),
            })
        }
    }

    pub(super) async fn audit_step(
        &self,
        ctx: &Ctx<'_>,
        secret: &str,
        token: &str,
        step: Step,
        key_id: Option<&str>,
        message: String,
    ) -> Result<(), RotationError> {
        let event = if step == Step::Finish {
            EVENT_ROTATED
        } else {
            EVENT_STEP
        };
        let mut r = AuditRecord::new(ctx.origin, Category::Data, event, Outcome::Success, message);
        r.profile = ctx.policy.map(str::to_owned);
        r.credential_type = Some("iam_access_key".into());
        r.access_key_id = key_id.map(str::to_owned);
        r.lease_id = Some(format!("{secret}#{}", step.as_str()));
        tracing::info!(secret, step = step.as_str(), access_key_id = ?key_id, "rotation step done");
        let once = format!("rotation#{secret}#{token}#{}", step.as_str());
        self.audit.write_once(&r, &self.state_table, &once).await?;
        Ok(())
    }
}

/// Whether `arn` (`GetCallerIdentity`'s answer) is IAM user `user`: IAM user names are unique
/// case-insensitively, and STS answers with IAM's spelling, not the secret's.
fn arn_names_user(arn: &str, user: &str) -> bool {
    arn.split_once(":user/").is_some_and(|(_, path)| {
        path.rsplit('/')
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case(user))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_names_compare_as_iam_compares_them() {
        let arn = "arn:aws:iam::123456789012:user/service/CI-Deployer";
        assert!(super::arn_names_user(arn, "ci-deployer"));
        assert!(super::arn_names_user(arn, "CI-Deployer"));
        assert!(!super::arn_names_user(arn, "deployer"));
        assert!(!super::arn_names_user(
            "arn:aws:sts::123456789012:assumed-role/ci-deployer/x",
            "ci-deployer"
        ));
    }
}
