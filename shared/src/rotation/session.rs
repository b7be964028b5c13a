//! The IAM client a rotation uses when it acts with the function's own identity (no
//! `admin_secret_id`, no `assume_role_arn`): a session of the rotator role
//! (`KEYSMITH_ROTATOR_ROLE_ARN`) tagged with the secret being rotated, so that IAM itself, not
//! only the code's `ListUserTags` check, binds the rotation to that secret's user (SPEC §18). The
//! role's policy lets a session change the keys of a user only when the user's
//! `keysmith:rotation-secret` tag equals the session's `keysmith:secret` (the secret's ARN) or
//! `keysmith:secret-name` (its name: SPEC §6 allows either as the tag's value).
//!
//! Without a rotator role (local runs against moto, older stacks) the function's own client is
//! used, as before.

use aws_sdk_sts::types::Tag;

use super::{aws, RotationError, Rotator, Versions};
use crate::aws::AwsFailure;
use crate::secret::{AccessKeyPair, Secret};

pub const SECRET_TAG: &str = "keysmith:secret";
pub const SECRET_NAME_TAG: &str = "keysmith:secret-name";
/// CloudTrail names the rotation by this session name.
const SESSION_NAME: &str = "keysmith-rotation";
/// STS's shortest session: a step takes seconds (testSecret's wait at most 20 s), and each step
/// assumes the role afresh.
const SESSION_SECONDS: i32 = 900;

pub(super) fn tag(key: &str, value: &str) -> Result<Tag, RotationError> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| RotationError::Aws {
            call: "AssumeRole",
            failure: AwsFailure::other(e.to_string()),
        })
}

impl Rotator {
    pub(super) async fn own_identity_iam(
        &self,
        versions: &Versions,
    ) -> Result<aws_sdk_iam::Client, RotationError> {
        let Some(role) = self.rotator_role.as_deref() else {
            return Ok((*self.clients.iam).clone());
        };
        let out = self
            .clients
            .sts
            .assume_role()
            .role_arn(role)
            .role_session_name(SESSION_NAME)
            .duration_seconds(SESSION_SECONDS)
            .tags(tag(SECRET_TAG, &versions.arn)?)
            .tags(tag(SECRET_NAME_TAG, &versions.name)?)
            .send()
            .await
            .map_err(|e| aws("AssumeRole", e))?;
        let c = out.credentials.ok_or_else(|| RotationError::Aws {
            call: "AssumeRole",
            failure: AwsFailure::other("no credentials returned"),
        })?;
        let pair = AccessKeyPair {
            access_key_id: c.access_key_id,
            secret_access_key: Secret::new(c.secret_access_key),
            session_token: Some(Secret::new(c.session_token)),
        };
        Ok(aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&self.clients.sdk)
                .credentials_provider(pair.provider())
                .build(),
        ))
    }
}
