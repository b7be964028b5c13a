//! What the rotation reads: the secret's versions and values (always by stage: see
//! LOCAL-AWS.md), the user's keys, and deleting one key.

use aws_sdk_iam::types::AccessKeyMetadata;

use super::admin::Admin;
use super::{aws, RotatedSecret, RotationError, Rotator, Versions, CURRENT, PENDING};
use crate::aws::FailureKind;
use crate::secret::AccessKeyPair;

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

    /// The `AWSPENDING` value of version `token` and its key: both exist once `createSecret` has
    /// run (what `testSecret` and `finishSecret` act on).
    pub(super) async fn pending_with_key(
        &self,
        secret: &str,
        token: &str,
    ) -> Result<(RotatedSecret, AccessKeyPair), RotationError> {
        let pending = self
            .value(secret, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: format!("version {token} has no AWSPENDING value"),
            })?;
        let key = pending
            .key
            .clone()
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: "the pending version has no key".into(),
            })?;
        Ok((pending, key))
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

    pub(super) async fn delete_key(
        &self,
        admin: &Admin,
        user: &str,
        id: &str,
    ) -> Result<(), RotationError> {
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

    /// Sets one of `user`'s keys `Inactive` (never deletes it): the quarantine response and
    /// `retire_unused_hours`.
    pub(super) async fn set_inactive(
        &self,
        admin: &Admin,
        user: &str,
        id: &str,
    ) -> Result<(), RotationError> {
        admin
            .iam
            .update_access_key()
            .user_name(user)
            .access_key_id(id)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send()
            .await
            .map_err(|e| aws("UpdateAccessKey", e))?;
        Ok(())
    }
}
