//! Issuing temporary credentials (SPEC §4–5) through STS, with the profile's policies, tags,
//! MFA and endpoint, signed with the base key from Secrets Manager or the function's own role.

use aws_sdk_sts::config::Region;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::aws::{classify, wait_for_identity, AwsFailure, Clients, FailureKind};
use crate::config::StsTarget;
use crate::iam_user::{IamError, UserSpec};
use crate::lease::{Lease, LeaseError, LeaseStatus, Leases};
use crate::names::{sanitize_iam_name, DurationSeconds, Invalid, SessionName, TokenCode};
use crate::profile::{parse_json, CredentialType, Kind, Policies, Profile};
use crate::secret::{AccessKeyPair, Secret};

/// How long an `iam_user` issuance waits for IAM to accept the new key (IAM is eventually
/// consistent; a new key usually works within seconds). API Gateway allows 30 s in all.
pub const IAM_USER_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    duration_seconds: Option<i64>,
    token_code: Option<String>,
    session_name: Option<String>,
}

/// A credentials request, checked against its profile.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub duration: DurationSeconds,
    pub token_code: Option<TokenCode>,
    pub session_name: Option<SessionName>,
}

impl Issuance {
    /// An empty body asks for the profile's defaults.
    pub fn parse(profile: &Profile, body: &[u8]) -> Result<Self, Invalid> {
        let raw: RawRequest = if body.iter().all(u8::is_ascii_whitespace) {
            RawRequest {
                duration_seconds: None,
                token_code: None,
                session_name: None,
            }
        } else {
            parse_json(body)?
        };
        let ty = profile.credential_type();
        let duration = match raw.duration_seconds {
            None => profile.default_duration,
            Some(d) => {
                let d = DurationSeconds::parse(
                    "duration_seconds",
                    d,
                    DurationSeconds::MIN,
                    ty.max_seconds(),
                )?;
                if d.get() > profile.duration_limit() {
                    return Err(Invalid::new(
                        "duration_seconds",
                        format!(
                            "must not exceed the profile's max_duration_seconds ({})",
                            profile.duration_limit()
                        ),
                    ));
                }
                d
            }
        };
        let mfa_serial = match &profile.kind {
            Kind::SessionToken {
                mfa_serial_number, ..
            }
            | Kind::AssumedRole {
                mfa_serial_number, ..
            } => mfa_serial_number.as_ref(),
            _ => None,
        };
        let token_code = match (mfa_serial, raw.token_code.as_deref()) {
            (Some(_), None) => {
                return Err(Invalid::new(
                    "token_code",
                    "is required: this profile requires MFA",
                ))
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "token_code",
                    "is not used: this profile has no MFA device",
                ))
            }
            (_, code) => code
                .map(|c| TokenCode::parse("token_code", c))
                .transpose()?,
        };
        let session_name = match (ty, raw.session_name.as_deref()) {
            (_, None) => None,
            (CredentialType::AssumedRole, Some(s)) => Some(SessionName::parse("session_name", s)?),
            (CredentialType::FederationToken, Some(s)) if s.len() <= 32 => {
                Some(SessionName::parse("session_name", s)?)
            }
            (CredentialType::FederationToken, Some(_)) => {
                return Err(Invalid::new(
                    "session_name",
                    "must be 2 to 32 characters for federation_token",
                ))
            }
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "session_name",
                    format!("is not used by {} profiles", ty.as_str()),
                ))
            }
        };
        Ok(Self {
            duration,
            token_code,
            session_name,
        })
    }
}

/// Credentials handed out, and where they came from.
#[derive(Debug)]
pub struct Issued {
    pub lease_id: String,
    pub credentials: AccessKeyPair,
    pub expiration: DateTime<Utc>,
    /// The STS region that issued or checked them, for the audit trail.
    pub region: String,
    /// The revocable lease behind `iam_user` credentials.
    pub lease: Option<Lease>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the base key secret {id} {reason}")]
    BaseKey {
        id: String,
        reason: String,
        kind: FailureKind,
    },
    #[error("AWS STS refused: {0}")]
    Sts(AwsFailure),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("the lease could not be recorded: {0}")]
    Lease(#[from] LeaseError),
    #[error("the new IAM user's key was not accepted by STS within the wait")]
    NotReady,
}

impl IssueError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Sts(f) | Self::Iam(IamError { failure: f, .. }) => f.kind,
            Self::Lease(e) => e.failure_kind(),
            Self::BaseKey { kind, .. } => *kind,
            Self::NotReady => FailureKind::Other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Issuer {
    clients: Clients,
    sts: StsTarget,
    leases: Leases,
    ready_timeout: std::time::Duration,
}

impl Issuer {
    pub fn new(clients: Clients, global_sts: StsTarget, leases: Leases) -> Self {
        Self {
            clients,
            sts: global_sts,
            leases,
            ready_timeout: IAM_USER_READY_TIMEOUT,
        }
    }

    /// Tests shorten the wait for a new IAM user's key.
    pub fn with_ready_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Issues credentials of `profile`'s type for `principal` (the caller, recorded by AWS as
    /// `SourceIdentity` and in the session name).
    pub async fn issue(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
    ) -> Result<Issued, IssueError> {
        let target = profile.sts.or(&self.sts);
        let region = target
            .region
            .clone()
            .unwrap_or_else(|| self.clients.region.clone());
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
                    .config_override(overrides(&target, Some(&base)))
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
                let name = req
                    .session_name
                    .as_ref()
                    .map_or_else(|| federated_name(principal), ToString::to_string);
                self.clients
                    .sts
                    .get_federation_token()
                    .name(name)
                    .duration_seconds(req.duration.as_i32())
                    .set_policy(policies.document.clone())
                    .set_policy_arns(policy_arns(policies))
                    .set_tags(tags(session_tags)?)
                    .customize()
                    .config_override(overrides(&target, Some(&base)))
                    .send()
                    .await
                    .map_err(|e| IssueError::Sts(classify(e)))?
                    .credentials
            }
            Kind::AssumedRole {
                role_arn,
                source_secret_id,
                external_id,
                policies,
                session_tags,
                mfa_serial_number,
            } => {
                let base = match source_secret_id {
                    Some(id) => Some(self.base_key(id).await?),
                    None => None,
                };
                let session_name = req
                    .session_name
                    .clone()
                    .unwrap_or_else(|| SessionName::for_caller(principal));
                self.clients
                    .sts
                    .assume_role()
                    .role_arn(role_arn.as_str())
                    .role_session_name(session_name.as_str())
                    .duration_seconds(req.duration.as_i32())
                    .source_identity(source_identity(principal))
                    .set_external_id(external_id.clone())
                    .set_policy(policies.document.clone())
                    .set_policy_arns(policy_arns(policies))
                    .set_tags(tags(session_tags)?)
                    .set_serial_number(mfa_serial_number.clone())
                    .set_token_code(req.token_code.as_ref().map(ToString::to_string))
                    .customize()
                    .config_override(overrides(&target, base.as_ref()))
                    .send()
                    .await
                    .map_err(|e| IssueError::Sts(classify(e)))?
                    .credentials
            }
            Kind::IamUser { .. } => {
                return self
                    .issue_iam_user(profile, req, principal, &target, region)
                    .await
            }
        };
        let c = credentials
            .ok_or_else(|| IssueError::Sts(AwsFailure::other("STS returned no credentials")))?;
        let expiration = DateTime::from_timestamp(c.expiration.secs(), c.expiration.subsec_nanos())
            .ok_or_else(|| {
                IssueError::Sts(AwsFailure::other("STS returned an invalid expiration"))
            })?;
        Ok(Issued {
            lease_id: uuid::Uuid::new_v4().to_string(),
            credentials: AccessKeyPair {
                access_key_id: c.access_key_id,
                secret_access_key: Secret::new(c.secret_access_key),
                session_token: Some(Secret::new(c.session_token)),
            },
            expiration,
            region,
            lease: None,
        })
    }

    /// A fresh IAM user for this lease. The lease is recorded first, so a crash at any later
    /// point leaves a record that revocation (on request or at expiry) can finish; any failure
    /// here deletes the user at once.
    async fn issue_iam_user(
        &self,
        profile: &Profile,
        req: &Issuance,
        principal: &str,
        target: &StsTarget,
        region: String,
    ) -> Result<Issued, IssueError> {
        let Kind::IamUser {
            policies,
            iam_groups,
            permissions_boundary_arn,
            user_path,
        } = &profile.kind
        else {
            return Err(IssueError::Sts(AwsFailure::other(
                "not an iam_user profile",
            )));
        };
        let now = Utc::now();
        let id = uuid::Uuid::new_v4().to_string();
        let lease = Lease {
            user_name: user_name(profile.name.as_str(), principal, &id),
            id,
            profile: profile.name.to_string(),
            principal: principal.to_owned(),
            access_key_id: None,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(i64::from(req.duration.get())),
            status: LeaseStatus::Pending,
            revoked_at: None,
        };
        self.leases.record(&lease).await?;
        let spec = UserSpec {
            user_name: lease.user_name.clone(),
            path: user_path.clone(),
            policies: policies.clone(),
            groups: iam_groups.clone(),
            permissions_boundary: permissions_boundary_arn.clone(),
            tags: vec![
                ("keysmith:lease-id".into(), lease.id.clone()),
                ("keysmith:profile".into(), lease.profile.clone()),
                ("keysmith:principal".into(), tag_value(principal)),
            ],
        };
        let result = async {
            let key = self.leases.users.create(&spec).await?;
            self.leases.activate(&lease.id, &key.access_key_id).await?;
            self.wait_until_usable(&key, target, &spec).await?;
            Ok::<_, IssueError>(key)
        }
        .await;
        match result {
            Ok(credentials) => {
                let mut lease = lease;
                lease.access_key_id = Some(credentials.access_key_id.clone());
                lease.status = LeaseStatus::Active;
                Ok(Issued {
                    lease_id: lease.id.clone(),
                    credentials,
                    expiration: lease.expires_at,
                    region,
                    lease: Some(lease),
                })
            }
            Err(e) => {
                if let Err(cleanup) = self.leases.revoke(&lease).await {
                    // The lease stays due: the scheduled revoker finishes the job.
                    tracing::warn!(lease_id = %lease.id, error = %cleanup, "cleanup after a failed iam_user issuance failed");
                }
                Err(e)
            }
        }
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

/// Per-call STS settings: the profile's (or global) endpoint and region, and the base key.
fn overrides(target: &StsTarget, base: Option<&AccessKeyPair>) -> aws_sdk_sts::config::Builder {
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

fn tags(t: &std::collections::BTreeMap<String, String>) -> Result<Option<Vec<Tag>>, IssueError> {
    if t.is_empty() {
        return Ok(None);
    }
    t.iter()
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
fn source_identity(principal: &str) -> String {
    let s = sanitize_iam_name(principal);
    let start = s.len().saturating_sub(64);
    let s = &s[start..];
    if s.len() < 2 {
        format!("keysmith-{s}")
    } else {
        s.to_owned()
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

/// GetFederationToken's `Name` is 2–32 characters.
fn federated_name(principal: &str) -> String {
    let mut name = SessionName::for_caller(principal).to_string();
    name.truncate(32);
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::ProfileName;
    use serde_json::json;

    fn profile(body: serde_json::Value) -> Profile {
        Profile::parse(
            ProfileName::parse("n", "deploy").unwrap(),
            body.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn field(p: &Profile, body: serde_json::Value) -> String {
        Issuance::parse(p, body.to_string().as_bytes())
            .unwrap_err()
            .field
    }

    #[test]
    fn durations() {
        let p = profile(
            json!({"credential_type": "session_token", "source_secret_id": "s",
                               "max_duration_seconds": 7200}),
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 899})),
            "duration_seconds"
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 129_601})),
            "duration_seconds"
        );
        assert_eq!(
            field(&p, json!({"duration_seconds": 7201})),
            "duration_seconds"
        );
        assert_eq!(Issuance::parse(&p, b"").unwrap().duration.get(), 3600);
        assert_eq!(Issuance::parse(&p, b"{}").unwrap().duration.get(), 3600);
        let r = profile(json!({"credential_type": "assumed_role",
                               "role_arn": "arn:aws:iam::123456789012:role/r"}));
        let err = Issuance::parse(&r, br#"{"duration_seconds": 43201}"#).unwrap_err();
        assert_eq!(err.field, "duration_seconds");
        assert!(err.message.contains("43200"), "{}", err.message);
    }

    #[test]
    fn mfa() {
        let p = profile(
            json!({"credential_type": "session_token", "source_secret_id": "s",
                               "mfa_serial_number": "arn:aws:iam::123456789012:mfa/alice"}),
        );
        assert_eq!(field(&p, json!({})), "token_code");
        assert_eq!(field(&p, json!({"token_code": "12345"})), "token_code");
        assert!(Issuance::parse(&p, br#"{"token_code": "123456"}"#).is_ok());
        let q = profile(json!({"credential_type": "session_token", "source_secret_id": "s"}));
        assert_eq!(field(&q, json!({"token_code": "123456"})), "token_code");
        assert_eq!(field(&q, json!({"session_name": "abc"})), "session_name");
        assert_eq!(field(&q, json!({"extra": 1})), "extra");
        assert_eq!(
            field(&q, json!({"duration_seconds": "1"})),
            "duration_seconds"
        );
    }

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
        assert_eq!(federated_name(&format!("jwt:{}", "x".repeat(40))).len(), 32);
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
