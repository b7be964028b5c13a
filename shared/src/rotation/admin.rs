//! The identity a rotation's IAM calls are signed with: `admin_secret_id`'s key (the secret's own
//! current key when it names itself) or the function's role, then `assume_role_arn` if set.

use super::{aws, session, RotatedSecret, RotationError, Rotator, Versions, CURRENT};
use crate::aws::AwsFailure;
use crate::secret::{AccessKeyPair, Secret};

/// The IAM client a rotation acts with, and the key it signs with (if it is a long-term key).
pub(super) struct Admin {
    pub iam: aws_sdk_iam::Client,
    pub key_id: Option<String>,
}

impl Rotator {
    pub(super) async fn admin(
        &self,
        value: &RotatedSecret,
        versions: &Versions,
    ) -> Result<Admin, RotationError> {
        let admin_secret = value
            .admin_secret_id
            .as_deref()
            .filter(|_| !self.own_identity);
        let base = match admin_secret {
            None => None,
            Some(id) if versions.names(id) => value.key.clone(),
            Some(id) => {
                let out = self
                    .clients
                    .secrets
                    .get_secret_value()
                    .secret_id(id)
                    .version_stage(CURRENT)
                    .send()
                    .await
                    .map_err(|e| aws("GetSecretValue", e))?;
                let pair = AccessKeyPair::from_secret_json(out.secret_string().unwrap_or_default())
                    .map_err(|reason| RotationError::BadSecret {
                        secret: id.to_owned(),
                        reason: reason.into(),
                    })?;
                Some(pair)
            }
        };
        let key_id = base.as_ref().map(|k| k.access_key_id.clone());
        let credentials = match &value.assume_role_arn {
            None => base,
            Some(role) => {
                let mut call = self
                    .clients
                    .sts
                    .assume_role()
                    .role_arn(role.as_str())
                    .role_session_name("keysmith-rotation")
                    // Bound to this secret in IAM, as RotatorRole is (SPEC §18): the target
                    // account's rotation role (infra/target-account.yaml) requires both tags.
                    .tags(session::tag(session::SECRET_TAG, &versions.arn)?)
                    .tags(session::tag(session::SECRET_NAME_TAG, &versions.name)?)
                    .customize();
                if let Some(b) = &base {
                    call = call.config_override(
                        aws_sdk_sts::config::Builder::default().credentials_provider(b.provider()),
                    );
                }
                let out = call.send().await.map_err(|e| aws("AssumeRole", e))?;
                let c = out.credentials.ok_or_else(|| RotationError::Aws {
                    call: "AssumeRole",
                    failure: AwsFailure::other("no credentials returned"),
                })?;
                Some(AccessKeyPair {
                    access_key_id: c.access_key_id,
                    secret_access_key: Secret::new(c.secret_access_key),
                    session_token: Some(Secret::new(c.session_token)),
                })
            }
        };
        let iam = match credentials {
            None => self.own_identity_iam(versions).await?,
            Some(c) => aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&self.clients.sdk)
                    .credentials_provider(c.provider())
                    .build(),
            ),
        };
        Ok(Admin { iam, key_id })
    }
}
