//! `iam_user` issuance: a lease record, then a fresh IAM user with the profile's policies,
//! groups and boundary and one access key, returned once STS accepts the key.

use chrono::{DateTime, Utc};

use super::sts::overrides;
use super::{Issuance, IssueError, Issued, Issuer};
use crate::aws::{wait_for_identity, AwsFailure};
use crate::config::StsTarget;
use crate::lease::{caller_counter, Lease, LeaseStatus};
use crate::names::{sanitize_iam_name, SessionName};
use crate::profile::{Kind, Policies, Profile};
use crate::secret::AccessKeyPair;
use crate::users::UserSpec;

/// How long an `iam_user` issuance waits for IAM to accept the new key (IAM is eventually
/// consistent; a new key usually works within seconds). API Gateway allows 30 s in all.
pub const IAM_USER_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Issuer {
    /// A fresh IAM user for this lease. The lease is recorded (pending, counted) first, so a crash
    /// at any later point leaves a record the sweep ends within minutes; any failure here, or
    /// running past the time budget, deletes the user at once. The lease becomes active only with
    /// the issuance's audit item, after the key is proven.
    pub(super) async fn issue_iam_user(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
        target: &StsTarget,
        region: String,
        deadline: tokio::time::Instant,
    ) -> Result<Issued, IssueError> {
        let Kind::IamUser {
            policies,
            iam_groups,
            permissions_boundary_arn,
            user_path,
            username_template,
        } = &profile.kind
        else {
            return Err(IssueError::Sts(AwsFailure::other(
                "not an iam_user profile",
            )));
        };
        // The profile was checked when saved; the deployment's list may have changed since.
        profile
            .check_lease_boundary(&self.lease_boundaries)
            .map_err(|e| IssueError::BoundaryNotAllowed(e.message))?;
        let now = Utc::now();
        // Whole seconds: the expiry policy and the response state the same instant.
        let expires_at = now + chrono::Duration::seconds(i64::from(req.duration.get()));
        let expires_at = DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
        let id = uuid::Uuid::new_v4().to_string();
        let lease = Lease {
            user_name: match username_template {
                Some(t) => t.render(
                    profile.name.as_str(),
                    principal,
                    &crate::profile::random_part(),
                    now.timestamp(),
                ),
                None => user_name(profile.name.as_str(), principal, &id),
            },
            id,
            profile: profile.name.to_string(),
            principal: principal.to_owned(),
            access_key_id: None,
            created_at: now,
            expires_at,
            status: LeaseStatus::Pending,
            revoked_at: None,
            counter: Some(caller_counter(profile.name.as_str(), principal)),
            credential_type: crate::profile::CredentialType::IamUser,
            target: None,
            session_policy_sha256: req.scope.sha256(),
            not_after: req.not_after,
        };
        self.leases
            .record_counted(&lease, profile.max_active_leases)
            .await?;
        let spec = UserSpec {
            user_name: lease.user_name.clone(),
            path: user_path.clone(),
            policies: Policies {
                document: policies.document.clone(),
                arns: req.scope.policies(policies).arns,
            },
            scope_down: req.scope.user_scope_down(),
            groups: iam_groups.clone(),
            permissions_boundary: permissions_boundary_arn.clone(),
            tags: vec![
                ("keysmith:lease-id".into(), lease.id.clone()),
                ("keysmith:profile".into(), lease.profile.clone()),
                ("keysmith:principal".into(), tag_value(principal)),
            ],
            expires_at,
        };
        let credentials = self
            .within_budget(&lease, deadline, async {
                let key = self.leases.users.create(&spec).await?;
                self.wait_until_usable(&key, target, &spec).await?;
                Ok(key)
            })
            .await?;
        let mut lease = lease;
        lease.access_key_id = Some(credentials.access_key_id.clone());
        Ok(Issued {
            lease_id: lease.id.clone(),
            credentials,
            expiration: lease.expires_at,
            region,
            lease,
            sts_endpoint: None,
        })
    }

    /// Polls `sts:GetCallerIdentity` with the new key until IAM accepts it (bounded).
    async fn wait_until_usable(
        &self,
        key: &AccessKeyPair,
        target: &StsTarget,
        spec: &UserSpec,
    ) -> Result<(), IssueError> {
        let expected = format!("user{}{}", spec.path, spec.user_name);
        let accepted = wait_for_identity(
            &self.clients.sts,
            overrides(target, Some(key)),
            self.ready_timeout,
            |arn| arn.ends_with(&expected),
            || Ok::<(), IssueError>(()),
        )
        .await?;
        if accepted {
            Ok(())
        } else {
            Err(IssueError::NotReady)
        }
    }
}

/// `ks-<profile>-<caller>-<lease id prefix>`: IAM's 64 characters at most, unique per lease, and
/// readable in the console and CloudTrail.
fn user_name(profile: &str, principal: &str, lease_id: &str) -> String {
    let mut profile = sanitize_iam_name(profile);
    profile.truncate(20);
    let mut caller = SessionName::for_caller(principal).to_string();
    caller.truncate(20);
    let id: String = lease_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    format!("ks-{profile}-{caller}-{id}")
}

/// IAM tag values allow letters, digits, spaces and `_.:/=+-@`, 256 characters at most.
fn tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_fit_iam() {
        let name = user_name(
            &"p".repeat(64),
            &format!("jwt:{}", "é".repeat(40)),
            "0123abcd-4567-89ef-aaaa-bbbbccccdddd",
        );
        assert!(
            name.len() <= 64 && name.ends_with("-0123abcd4567"),
            "{name}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
            "{name}"
        );
        assert_eq!(tag_value("jwt:a|b"), "jwt:a-b");
    }
}
