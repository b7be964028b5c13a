//! The key engine: read the secret's versions and values, make room, create the new key, prove it,
//! move `AWSCURRENT` and retire the keys the mode retires, each step audited exactly once.
//!
//! - `createSecret` first makes room (an orphan key from a crashed attempt is the first to go), so
//!   the user never needs a third key; it is a no-op once the token's `AWSPENDING` version exists.
//! - `testSecret` proves the pending key with `sts:GetCallerIdentity` (bounded retries); a pending
//!   key that no longer exists in IAM abandons the rotation instead of failing forever.
//! - `finishSecret` moves `AWSCURRENT` (and takes `AWSPENDING` off the finished version), then
//!   deletes the keys the mode retires, never a key another version or the admin holds.

use std::collections::HashSet;

use aws_sdk_iam::types::AccessKeyMetadata;
use chrono::Utc;

use super::admin::Admin;
use super::{
    aws, Ctx, Mode, Rotated, RotatedSecret, RotationError, Rotator, Step, Versions, BINDING_TAG,
    CURRENT, EVENT_ROTATED, EVENT_STEP, PENDING, PREVIOUS,
};
use crate::audit::{AuditRecord, Category, Outcome};
use crate::aws::{wait_for_identity, AwsFailure, FailureKind};
use crate::secret::{AccessKeyPair, Secret};

impl Rotator {
    pub(super) async fn versions(&self, secret: &str) -> Result<Versions, RotationError> {
        let out = self
            .clients
            .secrets
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| aws("DescribeSecret", e))?;
        Ok(Versions {
            enabled: out.rotation_enabled == Some(true),
            arn: out.arn.unwrap_or_default(),
            name: out.name.unwrap_or_default(),
            stages: out.version_ids_to_stages.unwrap_or_default(),
        })
    }

    /// A version's value; `None` if that version/stage does not exist (or has no value yet).
    pub(super) async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<RotatedSecret>, RotationError> {
        let out = self
            .clients
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .set_version_id(version.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await;
        let out = match out.map_err(|e| aws("GetSecretValue", e)) {
            Ok(out) => out,
            Err(RotationError::Aws { failure, .. }) if failure.kind == FailureKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let text = out.secret_string.unwrap_or_default();
        RotatedSecret::parse(&text)
            .map(Some)
            .map_err(|reason| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason,
            })
    }

    pub(super) async fn current_value(&self, secret: &str) -> Result<RotatedSecret, RotationError> {
        self.value(secret, None, CURRENT)
            .await?
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: "has no AWSCURRENT version".into(),
            })
    }

    /// The user's keys, oldest first: when room must be made, the oldest expendable key goes.
    pub(super) async fn keys(
        &self,
        admin: &Admin,
        user: &str,
    ) -> Result<Vec<AccessKeyMetadata>, RotationError> {
        let mut keys: Vec<AccessKeyMetadata> = admin
            .iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws("ListAccessKeys", e))?;
        keys.sort_by_key(|k| k.create_date.map(|d| d.as_nanos()).unwrap_or_default());
        Ok(keys)
    }

    /// SPEC §6 binding: the user must carry `keysmith:rotation-secret` naming this secret, read in
    /// the account where the rotation acts. Whoever can write a secret cannot aim it at a user.
    async fn check_binding(
        &self,
        admin: &Admin,
        user: &str,
        versions: &Versions,
    ) -> Result<(), RotationError> {
        let tags: Vec<aws_sdk_iam::types::Tag> = admin
            .iam
            .list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws("ListUserTags", e))?;
        if tags
            .iter()
            .any(|t| t.key == BINDING_TAG && versions.names(&t.value))
        {
            Ok(())
        } else {
            Err(RotationError::Unbound {
                user: user.to_owned(),
                secret: versions.name.clone(),
            })
        }
    }

    async fn delete_key(&self, admin: &Admin, user: &str, id: &str) -> Result<(), RotationError> {
        match admin
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = aws("DeleteAccessKey", e);
                if e.failure_kind() != FailureKind::NotFound {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn create(
        &self,
        secret: &str,
        token: &str,
        rotation_token: Option<&str>,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<(), RotationError> {
        self.lock(versions, token, ctx.owner, ctx.now).await?;
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
        let keys = self.keys(&admin, user).await?;
        let key_ids: Vec<String> = keys
            .iter()
            .filter_map(|k| k.access_key_id.clone())
            .collect();
        let protected: HashSet<&str> = [current.key_id(), admin.key_id.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let mut removed = Vec::new();
        match current.mode {
            Mode::DeleteFirst => {
                if admin
                    .key_id
                    .as_deref()
                    .is_some_and(|a| key_ids.iter().any(|k| k == a))
                {
                    return Err(RotationError::SelfDeleteFirst);
                }
                for id in &key_ids {
                    self.delete_key(&admin, user, id).await?;
                    removed.push(id.clone());
                }
            }
            Mode::Replace | Mode::Graceful => {
                // Room for the new key: an orphan from a crashed attempt, or the older key a
                // graceful rotation kept, goes first. Never the current or the admin key.
                if key_ids.len() >= 2 {
                    let victim = key_ids
                        .iter()
                        .find(|k| !protected.contains(k.as_str()))
                        .ok_or_else(|| RotationError::NoRoom {
                            user: user.to_owned(),
                        })?;
                    self.delete_key(&admin, user, victim).await?;
                    removed.push(victim.clone());
                }
                if current.mode == Mode::Replace {
                    // Everything still there goes at finishSecret.
                    let rest: Vec<String> = key_ids
                        .iter()
                        .filter(|k| !removed.contains(k))
                        .cloned()
                        .collect();
                    removed.extend(rest);
                }
            }
        }
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
        let next = current.with_new_key(&key, &removed, Utc::now());
        self.clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(&next)
            .version_stages(PENDING)
            .set_rotation_token(rotation_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| aws("PutSecretValue", e))?;
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
        self.lock(versions, token, ctx.owner, ctx.now).await?;
        let pending = self
            .value(secret, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: format!("version {token} has no AWSPENDING value"),
            })?;
        let key = pending
            .key
            .as_ref()
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: "the pending version has no key".into(),
            })?;
        if let Err(e) = self.prove(key, &pending.user_name).await {
            if matches!(e, RotationError::NotReady { .. })
                && self.pending_key_gone(secret, versions, &pending).await?
            {
                return Err(self.abandon(secret, token, versions, &pending).await?);
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

    /// Takes `AWSPENDING` off a version whose key is gone and frees the lock: the next attempt
    /// (Secrets Manager's next rotation, or the next scheduled run) starts with a new token.
    pub(super) async fn abandon(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        pending: &RotatedSecret,
    ) -> Result<RotationError, RotationError> {
        tracing::warn!(
            secret,
            token,
            "the pending key no longer exists in IAM: abandoning the rotation"
        );
        self.remove_pending(secret, token).await?;
        self.unlock(&versions.arn, token).await?;
        Ok(RotationError::Abandoned {
            user: pending.user_name.clone(),
            token: token.to_owned(),
        })
    }

    /// Takes `AWSPENDING` off version `token`.
    async fn remove_pending(&self, secret: &str, token: &str) -> Result<(), RotationError> {
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
    async fn prove(&self, key: &AccessKeyPair, user: &str) -> Result<(), RotationError> {
        let suffix = format!("/{user}");
        let config = aws_sdk_sts::config::Builder::default().credentials_provider(key.provider());
        let accepted = wait_for_identity(
            &self.clients.sts,
            config,
            self.test_timeout,
            |arn| arn.contains(":user/") && arn.ends_with(&suffix),
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

    pub(super) async fn finish(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<Rotated, RotationError> {
        self.lock(versions, token, ctx.owner, ctx.now).await?;
        let old = versions.with_stage(CURRENT).map(str::to_owned);
        if old.as_deref() != Some(token) {
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
        let kept_previous = match current.mode {
            Mode::Graceful => previous.as_deref(),
            _ => None,
        };
        let admin = self.admin(&current, versions).await?;
        let user = current.user_name.clone();
        let keep: HashSet<&str> = [
            Some(new_id.as_str()),
            kept_previous,
            pending.as_deref(),
            admin.key_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let doomed: Vec<String> = self
            .keys(&admin, &user)
            .await?
            .into_iter()
            .filter_map(|k| k.access_key_id)
            .filter(|id| !keep.contains(id.as_str()))
            .collect();
        if !doomed.is_empty() {
            self.check_binding(&admin, &user, versions).await?;
        }
        for id in &doomed {
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

    /// `createSecret` and `testSecret` are recorded as steps; `finishSecret` is the rotation itself
    /// (`event: "Access Key Rotated"`, with the policy name in `profile` for scheduled rotations).
    /// Written once per (secret, token, step): a step re-run after a crash adds nothing.
    async fn audit_step(
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
