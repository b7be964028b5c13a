//! The rotation engine (SPEC §6) and the Secrets Manager rotation protocol on top of it.
//!
//! Every step re-reads its state from Secrets Manager and IAM, so any step can be re-run after a
//! crash at any point and converges:
//! - `createSecret` first makes room (an orphan key from a crashed attempt is the first to go), so
//!   the user never needs a third key; it is a no-op once the token's `AWSPENDING` version exists.
//! - `testSecret` proves the pending key with `sts:GetCallerIdentity` (bounded retries).
//! - `finishSecret` moves `AWSCURRENT` (and takes `AWSPENDING` off the finished version), then
//!   deletes the keys the mode retires. Retiring is
//!   idempotent and also runs when the token is already current, so a crash between the move and
//!   the deletes is finished by a retry.

pub mod policy;
mod secret;

pub use secret::{Mode, RotatedSecret};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::types::AccessKeyMetadata;
use chrono::Utc;
use serde::Deserialize;

use crate::audit::{AuditError, AuditLog, AuditRecord, Category, Origin, Outcome};
use crate::aws::{classify, wait_for_identity, AwsFailure, Clients, FailureKind};
use crate::secret::{AccessKeyPair, Secret};

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const EVENT_ROTATED: &str = "Access Key Rotated";
pub const EVENT_STEP: &str = "Access Key Rotation Step";
/// How long `testSecret` waits for IAM to accept a new key.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

/// The event Secrets Manager sends a rotation function. `aws_lambda_events` lacks
/// `RotationToken`, so this is the project's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RotationEvent {
    pub step: Step,
    pub secret_id: String,
    pub client_request_token: String,
    #[serde(default)]
    pub rotation_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("rotation is not enabled for secret {0}")]
    NotEnabled(String),
    #[error("token {token} is not a version of secret {secret}")]
    UnknownToken { secret: String, token: String },
    #[error("version {token} of secret {secret} is not AWSPENDING")]
    NotPending { secret: String, token: String },
    #[error("secret {secret}: {reason}")]
    BadSecret { secret: String, reason: String },
    #[error("{call} failed: {failure}")]
    Aws {
        call: &'static str,
        failure: AwsFailure,
    },
    #[error("the pending key of {user} was not accepted by STS within {} s", TEST_TIMEOUT.as_secs())]
    NotReady { user: String },
    #[error("user {user} already has two keys that must be kept (current and admin); delete one by hand")]
    NoRoom { user: String },
    #[error("delete_first cannot rotate the key the rotation itself signs with")]
    SelfDeleteFirst,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("injected crash after {0}")]
    Crashed(&'static str),
}

impl RotationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Aws { failure, .. } => failure.kind,
            _ => FailureKind::Other,
        }
    }
}

/// Called after every AWS call with its name; returning `true` makes the engine stop there as if
/// the process had died. Tests use it to prove every step converges after a crash at any point.
pub type Checkpoint = Arc<dyn Fn(&'static str) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct Rotator {
    clients: Clients,
    audit: AuditLog,
    test_timeout: Duration,
    checkpoint: Option<Checkpoint>,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator").finish_non_exhaustive()
    }
}

/// The IAM client a rotation acts with, and the key it signs with (if it is a long-term key).
struct Admin {
    iam: aws_sdk_iam::Client,
    key_id: Option<String>,
}

/// What Secrets Manager knows about the secret's versions.
struct Versions {
    enabled: bool,
    arn: String,
    name: String,
    stages: HashMap<String, Vec<String>>,
}

impl Versions {
    fn with_stage(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(id, _)| id.as_str())
    }

    fn names(&self, id: &str) -> bool {
        id == self.arn || id == self.name
    }
}

impl Rotator {
    pub fn new(clients: Clients, audit: AuditLog) -> Self {
        Self {
            clients,
            audit,
            test_timeout: TEST_TIMEOUT,
            checkpoint: None,
        }
    }

    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    pub fn with_test_timeout(mut self, timeout: Duration) -> Self {
        self.test_timeout = timeout;
        self
    }

    fn check(&self, call: &'static str) -> Result<(), RotationError> {
        match &self.checkpoint {
            Some(crash) if crash(call) => Err(RotationError::Crashed(call)),
            _ => Ok(()),
        }
    }

    /// One step of the Secrets Manager rotation protocol, guarded as AWS's own template guards it.
    pub async fn run(&self, event: &RotationEvent, origin: &Origin) -> Result<(), RotationError> {
        let (secret, token) = (&event.secret_id, &event.client_request_token);
        let versions = self.versions(secret).await?;
        if !versions.enabled {
            return Err(RotationError::NotEnabled(secret.clone()));
        }
        let ctx = Ctx {
            origin,
            policy: None,
        };
        let Some(stages) = versions.stages.get(token) else {
            return Err(RotationError::UnknownToken {
                secret: secret.clone(),
                token: token.clone(),
            });
        };
        let current = stages.iter().any(|s| s == CURRENT);
        if current && event.step != Step::Finish {
            tracing::info!(
                secret,
                token,
                step = event.step.as_str(),
                "version is already AWSCURRENT: nothing to do"
            );
            return Ok(());
        }
        if !current && !stages.iter().any(|s| s == PENDING) {
            return Err(RotationError::NotPending {
                secret: secret.clone(),
                token: token.clone(),
            });
        }
        match event.step {
            Step::Create => {
                self.create(
                    secret,
                    token,
                    event.rotation_token.as_deref(),
                    &versions,
                    &ctx,
                )
                .await
            }
            // IAM itself holds the key: there is no other system to set it in.
            Step::Set => Ok(()),
            Step::Test => self.test(secret, token, &ctx).await,
            Step::Finish => self.finish(secret, token, &versions, &ctx).await.map(drop),
        }
    }

    /// A whole rotation, in-process, through the same steps (for scheduled rotation and "rotate
    /// now"; the secret need not have Secrets Manager rotation enabled). A rotation left half-done
    /// (an `AWSPENDING` version that is not current) is resumed with its token, not started anew.
    pub async fn rotate_now(
        &self,
        secret: &str,
        origin: &Origin,
        policy: &str,
    ) -> Result<Rotated, RotationError> {
        let ctx = Ctx {
            origin,
            policy: Some(policy),
        };
        let versions = self.versions(secret).await?;
        let current = versions.with_stage(CURRENT);
        let token = match versions.with_stage(PENDING) {
            Some(pending) if Some(pending) != current => pending.to_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        self.create(secret, &token, None, &versions, &ctx).await?;
        self.test(secret, &token, &ctx).await?;
        let versions = self.versions(secret).await?;
        self.finish(secret, &token, &versions, &ctx).await
    }

    /// Checks that `secret` exists and holds a rotatable value; returns its user's name.
    pub async fn user_of(&self, secret: &str) -> Result<String, RotationError> {
        Ok(self.current_value(secret).await?.user_name)
    }

    async fn versions(&self, secret: &str) -> Result<Versions, RotationError> {
        let out = self
            .clients
            .secrets
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| aws("DescribeSecret", e))?;
        self.check("DescribeSecret")?;
        Ok(Versions {
            enabled: out.rotation_enabled == Some(true),
            arn: out.arn.unwrap_or_default(),
            name: out.name.unwrap_or_default(),
            stages: out.version_ids_to_stages.unwrap_or_default(),
        })
    }

    /// A version's value; `None` if that version/stage does not exist.
    async fn value(
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
                self.check("GetSecretValue")?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.check("GetSecretValue")?;
        let text = out.secret_string.unwrap_or_default();
        RotatedSecret::parse(&text)
            .map(Some)
            .map_err(|reason| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason,
            })
    }

    async fn current_value(&self, secret: &str) -> Result<RotatedSecret, RotationError> {
        self.value(secret, None, CURRENT)
            .await?
            .ok_or_else(|| RotationError::BadSecret {
                secret: secret.to_owned(),
                reason: "has no AWSCURRENT version".into(),
            })
    }

    /// IAM credentials for the rotation: `admin_secret_id`'s key (this secret's own current key
    /// when it names itself) or the function's role, then `assume_role_arn` if set.
    async fn admin(
        &self,
        value: &RotatedSecret,
        versions: &Versions,
    ) -> Result<Admin, RotationError> {
        let base = match value.admin_secret_id.as_deref() {
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
                self.check("GetSecretValue")?;
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
                    .customize();
                if let Some(b) = &base {
                    call = call.config_override(
                        aws_sdk_sts::config::Builder::default().credentials_provider(b.provider()),
                    );
                }
                let out = call.send().await.map_err(|e| aws("AssumeRole", e))?;
                self.check("AssumeRole")?;
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
            None => self.clients.iam.clone(),
            Some(c) => aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&self.clients.sdk)
                    .credentials_provider(c.provider())
                    .build(),
            ),
        };
        Ok(Admin { iam, key_id })
    }

    async fn keys(
        &self,
        admin: &Admin,
        user: &str,
    ) -> Result<Vec<AccessKeyMetadata>, RotationError> {
        let out = admin
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws("ListAccessKeys", e))?;
        self.check("ListAccessKeys")?;
        let mut keys = out.access_key_metadata;
        // Oldest first: when room must be made, the oldest expendable key goes.
        keys.sort_by_key(|k| k.create_date.map(|d| d.as_nanos()).unwrap_or_default());
        Ok(keys)
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
        self.check("DeleteAccessKey")
    }

    async fn create(
        &self,
        secret: &str,
        token: &str,
        rotation_token: Option<&str>,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<(), RotationError> {
        let current = self.current_value(secret).await?;
        if self.value(secret, Some(token), PENDING).await?.is_some() {
            tracing::info!(
                secret,
                token,
                "createSecret: the pending version exists already"
            );
            return Ok(());
        }
        let user = current.user_name.as_str();
        let admin = self.admin(&current, versions).await?;
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
        self.check("CreateAccessKey")?;
        let key = AccessKeyPair {
            access_key_id: key.access_key_id,
            secret_access_key: Secret::new(key.secret_access_key),
            session_token: None,
        };
        self.clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(current.with_new_key(&key, &removed, Utc::now()))
            .version_stages(PENDING)
            .set_rotation_token(rotation_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| aws("PutSecretValue", e))?;
        self.check("PutSecretValue")?;
        self.audit_step(
            ctx,
            secret,
            Step::Create,
            Some(&key.access_key_id),
            format!(
                "createSecret: new access key {} for user {user} ({} mode); removed now: {}.",
                key.access_key_id,
                current.mode.as_str(),
                if removed.is_empty() {
                    "none".to_owned()
                } else {
                    removed.join(", ")
                }
            ),
        )
        .await
    }

    async fn test(&self, secret: &str, token: &str, ctx: &Ctx<'_>) -> Result<(), RotationError> {
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
        self.prove(key, &pending.user_name).await?;
        self.audit_step(
            ctx,
            secret,
            Step::Test,
            Some(&key.access_key_id),
            format!(
                "testSecret: access key {} works as user {}.",
                key.access_key_id, pending.user_name
            ),
        )
        .await
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
            || self.check("GetCallerIdentity"),
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

    async fn finish(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
        ctx: &Ctx<'_>,
    ) -> Result<Rotated, RotationError> {
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
            self.check("UpdateSecretVersionStage")?;
        }
        // The finished version no longer needs AWSPENDING: without it the secret shows no
        // rotation in progress, and the next RotateSecret starts cleanly.
        if versions
            .stages
            .get(token)
            .is_some_and(|s| s.iter().any(|x| x == PENDING))
        {
            self.clients
                .secrets
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage(PENDING)
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| aws("UpdateSecretVersionStage", e))?;
            self.check("UpdateSecretVersionStage")?;
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
        let kept_previous = match current.mode {
            Mode::Graceful => previous.as_deref(),
            _ => None,
        };
        let admin = self.admin(&current, versions).await?;
        let keep: HashSet<&str> = [
            Some(new_id.as_str()),
            kept_previous,
            admin.key_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let user = current.user_name.clone();
        let mut retired = Vec::new();
        for key in self.keys(&admin, &user).await? {
            let Some(id) = key.access_key_id else {
                continue;
            };
            if !keep.contains(id.as_str()) {
                self.delete_key(&admin, &user, &id).await?;
                retired.push(id);
            }
        }
        let policy = ctx
            .policy
            .map(|p| format!("rotation policy {p}: "))
            .unwrap_or_default();
        self.audit_step(
            ctx,
            secret,
            Step::Finish,
            Some(&new_id),
            format!(
                "{policy}access key of user {user} rotated: {} -> {new_id} ({} mode); deleted: {}.",
                previous.as_deref().unwrap_or("none"),
                current.mode.as_str(),
                if retired.is_empty() {
                    "none".to_owned()
                } else {
                    retired.join(", ")
                }
            ),
        )
        .await?;
        Ok(Rotated {
            user_name: user,
            old_access_key_id: previous,
            new_access_key_id: new_id,
        })
    }

    /// `createSecret` and `testSecret` are recorded as steps; `finishSecret` is the rotation itself
    /// (`event: "Access Key Rotated"`, with the policy name in `profile` for scheduled rotations).
    async fn audit_step(
        &self,
        ctx: &Ctx<'_>,
        secret: &str,
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
        self.audit.write(&r).await?;
        Ok(())
    }
}

/// Who a rotation runs for, as its audit items record it.
struct Ctx<'a> {
    origin: &'a Origin,
    policy: Option<&'a str>,
}

/// The outcome of a whole rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub user_name: String,
    pub old_access_key_id: Option<String>,
    pub new_access_key_id: String,
}

fn aws<E: aws_sdk_sts::error::ProvideErrorMetadata>(
    call: &'static str,
    e: aws_sdk_sts::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> RotationError {
    RotationError::Aws {
        call,
        failure: classify(e),
    }
}
