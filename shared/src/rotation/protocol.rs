//! The Secrets Manager rotation protocol, guarded as AWS's own template guards it, and the same
//! steps driven in-process (scheduled rotation and rotate-now). Every failed step is audited.

use chrono::{DateTime, Utc};

use super::{
    Ctx, Rotated, RotationError, RotationEvent, Rotator, Step, CURRENT, EVENT_FAILED, PENDING,
};
use crate::audit::{AuditRecord, Category, Origin, Outcome};

/// The lock owner of every Secrets Manager hook invocation: the hook continues its own rotation
/// across invocations, and Secrets Manager never runs two steps of one rotation at once.
pub const HOOK_OWNER: &str = "secretsmanager";

impl Rotator {
    /// One step of the Secrets Manager rotation protocol.
    pub async fn run(&self, event: &RotationEvent, origin: &Origin) -> Result<(), RotationError> {
        let ctx = Ctx {
            origin,
            policy: None,
            owner: HOOK_OWNER,
            now: Utc::now(),
        };
        let result = self.step(event, &ctx).await;
        if let Err(e) = &result {
            self.audit_failure(&ctx, &event.secret_id, event.step, e)
                .await;
        }
        result
    }

    async fn step(&self, event: &RotationEvent, ctx: &Ctx<'_>) -> Result<(), RotationError> {
        let (secret, token) = (&event.secret_id, &event.client_request_token);
        let versions = self.versions(secret).await?;
        if !versions.enabled {
            return Err(RotationError::NotEnabled(secret.clone()));
        }
        if !versions.stages.contains_key(token) {
            return Err(RotationError::UnknownToken {
                secret: secret.clone(),
                token: token.clone(),
            });
        }
        let current = versions.has_stage(token, CURRENT);
        if current && event.step != Step::Finish {
            tracing::info!(
                secret,
                token,
                step = event.step.as_str(),
                "version is already AWSCURRENT: nothing to do"
            );
            return Ok(());
        }
        if !current && !versions.has_stage(token, PENDING) {
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
                    ctx,
                )
                .await
            }
            // IAM itself holds the key: there is no other system to set it in.
            Step::Set => Ok(()),
            Step::Test => self.test(secret, token, &versions, ctx).await,
            Step::Finish => self.finish(secret, token, &versions, ctx).await.map(drop),
        }
    }

    /// A whole rotation, in-process, through the same steps (scheduled rotation and rotate-now;
    /// the secret need not have Secrets Manager rotation enabled). A rotation left half-done is
    /// continued with its token once its lock is free; one whose pending key has vanished is
    /// abandoned and started anew. `now` is the run's time (the lock's clock).
    pub async fn rotate_now(
        &self,
        secret: &str,
        origin: &Origin,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotated, RotationError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let ctx = Ctx {
            origin,
            policy: Some(policy),
            owner: &owner,
            now,
        };
        let mut step = Step::Create;
        let mut held = None;
        let result = self
            .rotate_in_process(secret, &ctx, &mut step, &mut held)
            .await;
        if let Err(e) = &result {
            self.audit_failure(&ctx, secret, step, e).await;
            // A failed run frees the secret at once (a crashed one leaves the lock to expire).
            if let (Some((arn, token)), false) = (held, matches!(e, RotationError::Locked { .. })) {
                if let Err(unlock) = self.unlock(&arn, &token).await {
                    tracing::warn!(secret, error = %unlock, "releasing a secret's rotation lock failed");
                }
            }
        }
        result
    }

    async fn rotate_in_process(
        &self,
        secret: &str,
        ctx: &Ctx<'_>,
        step: &mut Step,
        held: &mut Option<(String, String)>,
    ) -> Result<Rotated, RotationError> {
        let versions = self.versions(secret).await?;
        let current = versions.with_stage(CURRENT).map(str::to_owned);
        let pending = versions.with_stage(PENDING).map(str::to_owned);
        // A finish cut short: AWSCURRENT moved, but AWSPENDING is still on it, or the lock
        // (released last) still names it. Finish that rotation rather than start another.
        let interrupted = match &pending {
            Some(p) if Some(p) == current.as_ref() => Some(p.clone()),
            Some(_) => None,
            None => self
                .lock_token(&versions.arn)
                .await?
                .filter(|t| Some(t) == current.as_ref()),
        };
        if let Some(token) = interrupted {
            *step = Step::Finish;
            *held = Some((versions.arn.clone(), token.clone()));
            return self.finish(secret, &token, &versions, ctx).await;
        }
        let token = match pending {
            Some(p) => {
                self.lock(&versions, &p, ctx.owner, ctx.now).await?;
                *held = Some((versions.arn.clone(), p.clone()));
                match self.value(secret, Some(&p), PENDING).await? {
                    Some(v) if self.pending_key_gone(secret, &versions, &v).await? => {
                        self.abandon(secret, &p, &versions, &v).await?;
                        uuid::Uuid::new_v4().to_string()
                    }
                    _ => p,
                }
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        *held = Some((versions.arn.clone(), token.clone()));
        self.create(secret, &token, None, &versions, ctx).await?;
        *step = Step::Test;
        self.test(secret, &token, &versions, ctx).await?;
        *step = Step::Finish;
        let versions = self.versions(secret).await?;
        self.finish(secret, &token, &versions, ctx).await
    }

    /// Checks that `secret` exists and holds a rotatable value; returns its user's name.
    pub async fn user_of(&self, secret: &str) -> Result<String, RotationError> {
        Ok(self.current_value(secret).await?.user_name)
    }

    /// SPEC §7: a failed step writes `Access Key Rotation Failed` (`ERROR`, `failed`) naming the
    /// step, the secret and the AWS error code.
    async fn audit_failure(&self, ctx: &Ctx<'_>, secret: &str, step: Step, e: &RotationError) {
        let mut r = AuditRecord::new(
            ctx.origin,
            Category::Data,
            EVENT_FAILED,
            Outcome::Failed,
            format!(
                "{}: rotation of secret {secret} failed ({}): {e}",
                step.as_str(),
                e.code()
            ),
        );
        r.profile = ctx.policy.map(str::to_owned);
        r.credential_type = Some("iam_access_key".into());
        r.lease_id = Some(format!("{secret}#{}", step.as_str()));
        tracing::error!(secret, step = step.as_str(), error = %e, "rotation step failed");
        if let Err(a) = self.audit.write(&r).await {
            tracing::error!(secret, error = %a, "the failed rotation step could not be audited");
        }
    }
}
