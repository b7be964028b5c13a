//! STS issuance (`session_token`, `federation_token`, `assumed_role`): one STS call with the
//! profile's policies, tags and MFA, signed with the base key from Secrets Manager or the
//! function's own role.

use aws_sdk_sts::config::Region;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use chrono::DateTime;

use super::{Issuance, IssueError, Issued, Issuer};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::config::StsTarget;
use crate::lease::Lease;
use crate::names::{sanitize_iam_name, SessionName};
use crate::profile::{Kind, Policies, Profile, TAG_LEASE, TAG_PROFILE};
use crate::secret::{AccessKeyPair, Secret};

impl Issuer {
    pub(super) async fn issue_sts(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
        target: &StsTarget,
        region: String,
        deadline: tokio::time::Instant,
    ) -> Result<Issued, IssueError> {
        // The lease id exists before the session: it is the session's `keysmith:lease` tag.
        let lease_id = uuid::Uuid::new_v4().to_string();
        let created_at = chrono::Utc::now();
        // Recorded and counted before STS is called (a cap holds), pending until the credentials
        // are handed out and audited.
        // The profile's endpoint, then its fallbacks (SPEC §16).
        let targets: Vec<StsTarget> = std::iter::once(target.clone())
            .chain(profile.sts_fallbacks.iter().cloned())
            .collect();
        let (lease_target, _) =
            with_fallbacks(&targets, |t| self.lease_target(profile, req, t)).await?;
        let mut lease = Lease::sts(
            lease_id.clone(),
            profile.name.as_str(),
            principal,
            profile.credential_type(),
            lease_target,
            created_at,
            created_at + chrono::Duration::seconds(i64::from(req.duration.get())),
        );
        lease.session_policy_sha256 = req.scope.sha256();
        lease.not_after = req.not_after;
        self.leases
            .record_counted(&lease, profile.max_active_leases)
            .await?;
        let (c, used) = self
            .within_budget(
                &lease,
                deadline,
                with_fallbacks(&targets, |t| {
                    self.call_sts(profile, req, principal, t, &lease_id)
                }),
            )
            .await?;
        let region = used.region.clone().unwrap_or(region);
        // Named in the audit item when there was a choice.
        let sts_endpoint = (targets.len() > 1).then(|| {
            used.endpoint
                .clone()
                .unwrap_or_else(|| "the SDK's default STS endpoint".to_owned())
        });
        let expiration = DateTime::from_timestamp(c.expiration.secs(), c.expiration.subsec_nanos())
            .ok_or_else(|| {
                IssueError::Sts(AwsFailure::other("STS returned an invalid expiration"))
            })?;
        lease.expires_at = expiration;
        // The key id (never the secret) lets an incident responder find the lease of a leaked key.
        lease.access_key_id = Some(c.access_key_id.clone());
        Ok(Issued {
            lease_id,
            credentials: AccessKeyPair {
                access_key_id: c.access_key_id,
                secret_access_key: Secret::new(c.secret_access_key),
                session_token: Some(Secret::new(c.session_token)),
            },
            expiration,
            region,
            lease,
            sts_endpoint,
        })
    }

    /// The role ARN (`assumed_role`) or base IAM user ARN a session will act through.
    async fn lease_target(
        &self,
        profile: &Profile,
        req: &Issuance,
        target: &StsTarget,
    ) -> Result<String, IssueError> {
        match &profile.kind {
            Kind::SessionToken {
                source_secret_id, ..
            }
            | Kind::FederationToken {
                source_secret_id, ..
            } => {
                let base = self.base_key(source_secret_id).await?;
                self.base_user_arn(&base, target).await
            }
            Kind::AssumedRole { .. } => Ok(chosen_role(req)?.as_str().to_owned()),
            Kind::IamUser { .. } => Err(IssueError::Sts(AwsFailure::other("not an STS profile"))),
        }
    }

    async fn call_sts(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
        target: &StsTarget,
        lease_id: &str,
    ) -> Result<aws_sdk_sts::types::Credentials, IssueError> {
        let credentials = match &profile.kind {
            Kind::SessionToken {
                source_secret_id,
                mfa_serial_number,
            } => {
                let base = self.base_key(source_secret_id).await?;
                self.clients
                    .sts
                    .get_session_token()
                    .duration_seconds(req.duration.as_i32())
                    .set_serial_number(mfa_serial_number.clone())
                    .set_token_code(req.token_code.as_ref().map(ToString::to_string))
                    .customize()
                    .config_override(overrides(target, Some(&base)))
                    .send()
                    .await
                    .map_err(|e| IssueError::Sts(classify(e)))?
                    .credentials
            }
            Kind::FederationToken {
                source_secret_id,
                policies,
                session_tags,
            } => {
                let base = self.base_key(source_secret_id).await?;
                let session = req.scope.policies(policies);
                // GetFederationToken's `Name` is 2–32 characters.
                let name = SessionName::owned_by(principal, req.session_name.as_ref(), 32);
                self.clients
                    .sts
                    .get_federation_token()
                    .name(name.as_str())
                    .duration_seconds(req.duration.as_i32())
                    .set_policy_arns(policy_arns(&session))
                    .set_policy(session.document)
                    .set_tags(tags(session_tags, lease_id, profile)?)
                    .customize()
                    .config_override(overrides(target, Some(&base)))
                    .send()
                    .await
                    .map_err(|e| sts_failure(classify(e)))?
                    .credentials
            }
            Kind::AssumedRole {
                source_secret_id,
                external_id,
                policies,
                session_tags,
                mfa_serial_number,
                ..
            } => {
                let base = match source_secret_id {
                    Some(id) => Some(self.base_key(id).await?),
                    None => None,
                };
                let role_arn = chosen_role(req)?;
                let session = req.scope.policies(policies);
                let session_name = SessionName::owned_by(principal, req.session_name.as_ref(), 64);
                // Only a refusal names the trust policy: a throttle or timeout is not its fault.
                let refused = |e| {
                    let failure = classify(e);
                    match failure.kind {
                        FailureKind::Denied => IssueError::AssumeRoleRefused {
                            role_arn: role_arn.to_string(),
                            failure,
                        },
                        _ => sts_failure(failure),
                    }
                };
                self.clients
                    .sts
                    .assume_role()
                    .role_arn(role_arn.as_str())
                    .role_session_name(session_name.as_str())
                    .duration_seconds(req.duration.as_i32())
                    .source_identity(source_identity(principal))
                    .set_external_id(external_id.clone())
                    .set_policy_arns(policy_arns(&session))
                    .set_policy(session.document)
                    .set_tags(tags(session_tags, lease_id, profile)?)
                    .set_transitive_tag_keys(Some(TRANSITIVE.map(str::to_owned).to_vec()))
                    .set_serial_number(mfa_serial_number.clone())
                    .set_token_code(req.token_code.as_ref().map(ToString::to_string))
                    .customize()
                    .config_override(overrides(target, base.as_ref()))
                    .send()
                    .await
                    .map_err(refused)?
                    .credentials
            }
            Kind::IamUser { .. } => {
                return Err(IssueError::Sts(AwsFailure::other("not an STS profile")))
            }
        };
        credentials.ok_or_else(|| IssueError::Sts(AwsFailure::other("STS returned no credentials")))
    }

    /// The IAM user a base key belongs to (its ARN), which a revocation's inline policy goes on.
    /// `sts:GetCallerIdentity` needs no IAM permission and cannot be denied, so it works with any
    /// base key (`iam:GetUser` would need a grant on every base user); an access key belongs to
    /// one user for life, so the answer is cached per key id for the process.
    pub(crate) async fn base_user_arn(
        &self,
        base: &AccessKeyPair,
        target: &StsTarget,
    ) -> Result<String, IssueError> {
        if let Some(arn) = self.base_user_cache(&base.access_key_id) {
            return Ok(arn);
        }
        let out = self
            .clients
            .sts
            .get_caller_identity()
            .customize()
            .config_override(overrides(target, Some(base)))
            .send()
            .await
            .map_err(|e| IssueError::Sts(classify(e)))?;
        let arn = out.arn.filter(|a| a.contains(":user/")).ok_or_else(|| {
            IssueError::Sts(AwsFailure::other(
                "the base key does not belong to an IAM user",
            ))
        })?;
        if let Ok(mut cache) = self.base_users.lock() {
            cache.insert(base.access_key_id.clone(), arn.clone());
        }
        Ok(arn)
    }

    fn base_user_cache(&self, key_id: &str) -> Option<String> {
        self.base_users.lock().ok()?.get(key_id).cloned()
    }

    /// The base user of a `session_token` / `federation_token` profile, for a profile revoke.
    pub async fn profile_base_user(&self, profile: &Profile) -> Result<String, IssueError> {
        let (Kind::SessionToken {
            source_secret_id, ..
        }
        | Kind::FederationToken {
            source_secret_id, ..
        }) = &profile.kind
        else {
            return Err(IssueError::Sts(AwsFailure::other(
                "the profile has no base user",
            )));
        };
        let base = self.base_key(source_secret_id).await?;
        let target = profile.sts.or(&self.sts);
        self.base_user_arn(&base, &target).await
    }

    async fn base_key(&self, secret_id: &str) -> Result<AccessKeyPair, IssueError> {
        let fail = |reason: &str, kind: FailureKind| IssueError::BaseKey {
            id: secret_id.to_owned(),
            reason: reason.to_owned(),
            kind,
        };
        let out = self
            .clients
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| {
                let f = classify(e);
                match f.kind {
                    FailureKind::NotFound => fail("does not exist", f.kind),
                    FailureKind::Denied => fail("cannot be read: access denied", f.kind),
                    _ => fail(&format!("cannot be read: {f}"), f.kind),
                }
            })?;
        let text = out
            .secret_string
            .ok_or_else(|| fail("holds no secret string", FailureKind::Other))?;
        AccessKeyPair::from_secret_json(&text)
            .map_err(|reason| fail(&format!("is unusable: {reason}"), FailureKind::Other))
    }
}

/// Runs `call` against each STS target in order, going on to the next only when the one before
/// could not be reached, timed out or answered 5xx (never after an answer: a 4xx is final).
/// Returns the result and the target that gave it.
async fn with_fallbacks<'t, T, Fut>(
    targets: &'t [StsTarget],
    mut call: impl FnMut(&'t StsTarget) -> Fut,
) -> Result<(T, &'t StsTarget), IssueError>
where
    Fut: std::future::Future<Output = Result<T, IssueError>>,
{
    let mut last = None;
    for (i, t) in targets.iter().enumerate() {
        match call(t).await {
            Ok(v) => return Ok((v, t)),
            Err(e) if e.endpoint_failed() && i + 1 < targets.len() => {
                tracing::warn!(endpoint = ?t.endpoint, error = %e, "STS endpoint failed; trying the next fallback");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| IssueError::Sts(AwsFailure::other("no STS endpoint to call"))))
}

/// STS's refusal, or (`PackedPolicyTooLarge`) the caller's policy being too large: a `400`.
fn sts_failure(failure: AwsFailure) -> IssueError {
    if failure.code.as_deref() == Some("PackedPolicyTooLarge") {
        return IssueError::PolicyTooLarge(failure.message);
    }
    IssueError::Sts(failure)
}

/// The role an `assumed_role` issuance assumes, resolved (and, for `role_arns`, checked) before.
fn chosen_role(req: &Issuance) -> Result<&crate::names::RoleArn, IssueError> {
    req.role
        .as_ref()
        .ok_or_else(|| IssueError::Sts(AwsFailure::other("no role was chosen")))
}

/// Per-call STS settings: the profile's (or global) endpoint and region, and the base key.
pub(super) fn overrides(
    target: &StsTarget,
    base: Option<&AccessKeyPair>,
) -> aws_sdk_sts::config::Builder {
    let mut b = aws_sdk_sts::config::Builder::default();
    if let Some(endpoint) = &target.endpoint {
        b = b.endpoint_url(endpoint);
    }
    if let Some(region) = &target.region {
        b = b.region(Region::new(region.clone()));
    }
    if let Some(base) = base {
        b = b.credentials_provider(base.provider());
    }
    b
}

fn policy_arns(p: &Policies) -> Option<Vec<PolicyDescriptorType>> {
    (!p.arns.is_empty()).then(|| {
        p.arns
            .iter()
            .map(|a| PolicyDescriptorType::builder().arn(a.as_str()).build())
            .collect()
    })
}

/// The profile's session tags and Keysmith's own two (SPEC §10), which revocations deny by.
/// Keysmith's two are transitive ([`TRANSITIVE`], SPEC §10a): a session chained from a lease's
/// session (into the same role or another) keeps them, so the per-lease `Deny` and the profile
/// cut-off still match it. Federation tokens cannot call STS, so they need none.
const TRANSITIVE: [&str; 2] = [TAG_LEASE, TAG_PROFILE];

fn tags(
    t: &std::collections::BTreeMap<String, String>,
    lease_id: &str,
    profile: &Profile,
) -> Result<Option<Vec<Tag>>, IssueError> {
    let own = [(TAG_LEASE, lease_id), (TAG_PROFILE, profile.name.as_str())];
    own.into_iter()
        .chain(t.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| IssueError::Sts(AwsFailure::other(e.to_string())))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `SourceIdentity` allows 2–64 characters of `[\w+=,.@-]`: the caller's principal with other
/// characters replaced, keeping the end (the person's name) when it is too long.
pub fn source_identity(principal: &str) -> String {
    let s = sanitize_iam_name(principal);
    let start = s.len().saturating_sub(64);
    let s = &s[start..];
    if s.len() < 2 {
        format!("keysmith-{s}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derived_from_callers_fit_sts() {
        let long = format!(
            "arn:aws:sts::123456789012:assumed-role/{}/alice",
            "R".repeat(80)
        );
        let id = source_identity(&long);
        assert_eq!(id.len(), 64);
        assert!(id.ends_with("-alice"));
        assert_eq!(
            source_identity("arn:aws:iam::1:user/bob"),
            "arn-aws-iam--1-user-bob"
        );
    }
}
