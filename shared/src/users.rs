//! Short-lived IAM users (the `iam_user` credential type): created with the profile's policies,
//! groups, boundary and path, and deleted with everything attached to them.

use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::types::Tag;
use aws_sdk_iam::Client;

use crate::aws::Lazy;
use chrono::{DateTime, Utc};

use crate::aws::{classify, AwsFailure, FailureKind};
use crate::names::Policies;
use crate::names::PolicyArn;
use crate::secret::{AccessKeyPair, Secret};

/// The inline policy's name on users Keysmith creates.
const INLINE_POLICY: &str = "keysmith-session";
/// The inline policy that makes a lease user's key useless after the lease's expiration, even if
/// revocation is late or never happens (SPEC §5).
pub const EXPIRY_POLICY: &str = "keysmith-lease-expiry";
/// SPEC §16: a request's scope-down of a lease user.
pub const SCOPE_DOWN_POLICY: &str = "keysmith-scope-down";

#[derive(Debug, Clone)]
pub struct UserSpec {
    pub user_name: String,
    pub path: String,
    pub policies: Policies,
    pub groups: Vec<String>,
    pub permissions_boundary: PolicyArn,
    pub tags: Vec<(String, String)>,
    /// The lease's expiration (whole seconds): the expiry policy denies everything after it.
    pub expires_at: DateTime<Utc>,
    /// SPEC §16: the request's scope-down, a `Deny` of everything outside its policy.
    pub scope_down: Option<String>,
}

/// `Deny *` once `aws:CurrentTime` is past `expires_at` (IAM compares ISO 8601 times; whole seconds,
/// as IAM's own examples write them).
pub fn expiry_policy(expires_at: DateTime<Utc>) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KeysmithLeaseExpiry",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateGreaterThan": {
                "aws:CurrentTime": expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            }}
        }]
    })
    .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The user existed and is gone now.
    Deleted,
    /// There was no such user (never created, or deleted before).
    AlreadyGone,
}

#[derive(Debug, thiserror::Error)]
#[error("IAM {step} failed: {failure}")]
pub struct IamError {
    pub step: &'static str,
    pub failure: AwsFailure,
}

fn step<E: aws_sdk_iam::error::ProvideErrorMetadata>(
    step: &'static str,
) -> impl FnOnce(
    aws_sdk_iam::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> IamError {
    move |e| IamError {
        step,
        failure: classify(e),
    }
}

fn gone(e: &IamError) -> bool {
    e.failure.kind == FailureKind::NotFound
}

#[derive(Clone, Debug)]
pub struct IamUsers {
    iam: Lazy<Client>,
}

impl IamUsers {
    pub fn new(iam: Lazy<Client>) -> Self {
        Self { iam }
    }

    /// Creates the user, puts the expiry policy on it, attaches what the profile grants, and gives
    /// it one access key. The expiry policy comes first: no key ever exists without it. On error
    /// the caller deletes the user (`delete` copes with any partial state).
    pub async fn create(&self, spec: &UserSpec) -> Result<AccessKeyPair, IamError> {
        let tags = spec
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IamError {
                step: "CreateUser",
                failure: AwsFailure::other(e.to_string()),
            })?;
        self.iam
            .create_user()
            .user_name(&spec.user_name)
            .path(&spec.path)
            .permissions_boundary(spec.permissions_boundary.as_str())
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(step("CreateUser"))?;
        self.iam
            .put_user_policy()
            .user_name(&spec.user_name)
            .policy_name(EXPIRY_POLICY)
            .policy_document(expiry_policy(spec.expires_at))
            .send()
            .await
            .map_err(step("PutUserPolicy"))?;
        // The scope-down before any permission: the user never holds more than the request asked.
        if let Some(doc) = &spec.scope_down {
            self.iam
                .put_user_policy()
                .user_name(&spec.user_name)
                .policy_name(SCOPE_DOWN_POLICY)
                .policy_document(doc)
                .send()
                .await
                .map_err(step("PutUserPolicy"))?;
        }
        if let Some(doc) = &spec.policies.document {
            self.iam
                .put_user_policy()
                .user_name(&spec.user_name)
                .policy_name(INLINE_POLICY)
                .policy_document(doc)
                .send()
                .await
                .map_err(step("PutUserPolicy"))?;
        }
        for arn in &spec.policies.arns {
            self.iam
                .attach_user_policy()
                .user_name(&spec.user_name)
                .policy_arn(arn.as_str())
                .send()
                .await
                .map_err(step("AttachUserPolicy"))?;
        }
        for group in &spec.groups {
            self.iam
                .add_user_to_group()
                .user_name(&spec.user_name)
                .group_name(group)
                .send()
                .await
                .map_err(step("AddUserToGroup"))?;
        }
        let key = self
            .iam
            .create_access_key()
            .user_name(&spec.user_name)
            .send()
            .await
            .map_err(step("CreateAccessKey"))?
            .access_key
            .ok_or_else(|| IamError {
                step: "CreateAccessKey",
                failure: AwsFailure::other("no key returned"),
            })?;
        Ok(AccessKeyPair {
            access_key_id: key.access_key_id,
            secret_access_key: Secret::new(key.secret_access_key),
            session_token: None,
        })
    }

    /// Rewrites a lease user's expiry policy (a renewal): the new end replaces the old at once.
    pub async fn set_expiry(&self, user: &str, expires_at: DateTime<Utc>) -> Result<(), IamError> {
        self.iam
            .put_user_policy()
            .user_name(user)
            .policy_name(EXPIRY_POLICY)
            .policy_document(expiry_policy(expires_at))
            .send()
            .await
            .map(drop)
            .map_err(step("PutUserPolicy"))
    }

    /// Deletes the user and, first, everything IAM requires gone before `DeleteUser`: access keys,
    /// login profile, MFA devices, signing certificates, SSH keys, service-specific credentials,
    /// inline and attached policies, group memberships. Safe to repeat; a missing user is
    /// `AlreadyGone`.
    pub async fn delete(&self, user: &str) -> Result<Deleted, IamError> {
        match self.strip(user).await {
            Err(e) if gone(&e) => return Ok(Deleted::AlreadyGone),
            other => other?,
        }
        match self
            .iam
            .delete_user()
            .user_name(user)
            .send()
            .await
            .map_err(step("DeleteUser"))
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if gone(&e) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    async fn strip(&self, user: &str) -> Result<(), IamError> {
        let iam = &self.iam;
        let keys = iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListAccessKeys"))?;
        for id in keys
            .access_key_metadata
            .iter()
            .filter_map(|k| k.access_key_id.as_deref())
        {
            ignore_gone(
                iam.delete_access_key()
                    .user_name(user)
                    .access_key_id(id)
                    .send()
                    .await
                    .map_err(step("DeleteAccessKey")),
            )?;
        }
        ignore_gone(
            iam.delete_login_profile()
                .user_name(user)
                .send()
                .await
                .map_err(step("DeleteLoginProfile")),
        )?;
        let mfa = iam
            .list_mfa_devices()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListMFADevices"))?;
        for serial in mfa.mfa_devices.iter().map(|d| d.serial_number.as_str()) {
            ignore_gone(
                iam.deactivate_mfa_device()
                    .user_name(user)
                    .serial_number(serial)
                    .send()
                    .await
                    .map_err(step("DeactivateMFADevice")),
            )?;
            // Virtual devices are separate resources (hardware ones cannot be deleted).
            if serial.starts_with("arn:") {
                ignore_gone(
                    iam.delete_virtual_mfa_device()
                        .serial_number(serial)
                        .send()
                        .await
                        .map_err(step("DeleteVirtualMFADevice")),
                )?;
            }
        }
        let certs = iam
            .list_signing_certificates()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListSigningCertificates"))?;
        for id in certs.certificates.iter().map(|c| c.certificate_id.as_str()) {
            ignore_gone(
                iam.delete_signing_certificate()
                    .user_name(user)
                    .certificate_id(id)
                    .send()
                    .await
                    .map_err(step("DeleteSigningCertificate")),
            )?;
        }
        let ssh = iam
            .list_ssh_public_keys()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListSSHPublicKeys"))?;
        for id in ssh
            .ssh_public_keys()
            .iter()
            .map(|k| k.ssh_public_key_id.as_str())
        {
            ignore_gone(
                iam.delete_ssh_public_key()
                    .user_name(user)
                    .ssh_public_key_id(id)
                    .send()
                    .await
                    .map_err(step("DeleteSSHPublicKey")),
            )?;
        }
        self.delete_service_credentials(user).await?;
        let inline = iam
            .list_user_policies()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListUserPolicies"))?;
        for name in &inline.policy_names {
            ignore_gone(
                iam.delete_user_policy()
                    .user_name(user)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(step("DeleteUserPolicy")),
            )?;
        }
        let attached = iam
            .list_attached_user_policies()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListAttachedUserPolicies"))?;
        for arn in attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn.as_deref())
        {
            ignore_gone(
                iam.detach_user_policy()
                    .user_name(user)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(step("DetachUserPolicy")),
            )?;
        }
        let groups = iam
            .list_groups_for_user()
            .user_name(user)
            .send()
            .await
            .map_err(step("ListGroupsForUser"))?;
        for group in groups.groups.iter().map(|g| g.group_name.as_str()) {
            ignore_gone(
                iam.remove_user_from_group()
                    .user_name(user)
                    .group_name(group)
                    .send()
                    .await
                    .map_err(step("RemoveUserFromGroup")),
            )?;
        }
        Ok(())
    }

    /// Service-specific credentials (CodeCommit, Keyspaces...). Listing them is best effort: if it
    /// fails, `DeleteUser` is the backstop, since IAM refuses to delete a user that still has any.
    async fn delete_service_credentials(&self, user: &str) -> Result<(), IamError> {
        let listed = self
            .iam
            .list_service_specific_credentials()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let creds = match listed.map_err(step("ListServiceSpecificCredentials")) {
            Ok(out) => out.service_specific_credentials.unwrap_or_default(),
            Err(e) if gone(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(user, error = %e, "could not list service-specific credentials; DeleteUser will tell");
                return Ok(());
            }
        };
        for c in creds {
            ignore_gone(
                self.iam
                    .delete_service_specific_credential()
                    .user_name(user)
                    .service_specific_credential_id(c.service_specific_credential_id)
                    .send()
                    .await
                    .map_err(step("DeleteServiceSpecificCredential")),
            )?;
        }
        Ok(())
    }
}

/// A delete of something already gone has done its job.
fn ignore_gone<T>(r: Result<T, IamError>) -> Result<(), IamError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_policy_denies_everything_after_the_expiration() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T15:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let doc: serde_json::Value = serde_json::from_str(&expiry_policy(at)).unwrap();
        let st = &doc["Statement"][0];
        assert_eq!(st["Effect"], "Deny");
        assert_eq!(st["Action"], "*");
        assert_eq!(st["Resource"], "*");
        assert_eq!(
            st["Condition"]["DateGreaterThan"]["aws:CurrentTime"],
            "2026-11-21T15:04:05Z"
        );
    }
}
