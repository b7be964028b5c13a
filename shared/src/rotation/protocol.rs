//! The Secrets Manager rotation protocol, guarded as AWS's own template guards it, and the same
//! steps driven in-process (scheduled rotation and rotate-now). Every failed step is audited.

use chrono::{DateTime, Utc};

use super::policy::LOCK_TTL_MINUTES;
use super::{
    Ctx, Rotated, RotationError, RotationEvent, Rotator, Step, Versions, CURRENT, EVENT_FAILED,
    HOOK_STEP_HOLD, PENDING,
};
use crate::audit::{AuditRecord, Category, Origin, Outcome};

/// How often an in-process rotation looks again after waiting for another path's step.
const MAX_LOOKS: usize = 8;

impl Rotator {
    /// One step of the Secrets Manager rotation protocol, for an invocation whose deadline is
    /// unknown (it holds the lock for `HOOK_STEP_HOLD` at most).
    pub async fn run(&self, event: &RotationEvent, origin: &Origin) -> Result<(), RotationError> {
        self.run_until(event, origin, None).await
    }

    /// One step of the Secrets Manager rotation protocol. The invocation (its request id) holds
    /// the secret's lock while the step runs, until `deadline` at most if it dies.
    pub async fn run_until(
        &self,
        event: &RotationEvent,
        origin: &Origin,
        deadline: Option<std::time::SystemTime>,
    ) -> Result<(), RotationError> {
        let now = Utc::now();
        let deadline = deadline.map(DateTime::<Utc>::from);
        let hold = chrono::Duration::from_std(HOOK_STEP_HOLD).unwrap_or_default();
        let ctx = Ctx {
            origin,
            policy: None,
            owner: &origin.request_id,
            now,
            hold_until: deadline.unwrap_or(now + hold),
        };
        let mut arn = None;
        let result = self.step(event, &ctx, &mut arn).await;
        if let Err(e) = &result {
            self.audit_failure(&ctx, &event.secret_id, event.step, e)
                .await;
        }
        // A finished rotation's lock is gone already; a step that never got it holds nothing.
        let holds = match &result {
            Ok(()) => event.step != Step::Finish,
            Err(e) => !matches!(e, RotationError::Locked { .. }),
        };
        if let Some(arn) = arn.filter(|_| holds) {
            if let Err(e) = self.release_hold(&arn, ctx.owner).await {
                tracing::warn!(secret = %event.secret_id, error = %e, "releasing the step's hold failed; it ends at the invocation's deadline");
            }
        }
        result
    }

    async fn step(
        &self,
        event: &RotationEvent,
        ctx: &Ctx<'_>,
        arn: &mut Option<String>,
    ) -> Result<(), RotationError> {
        let (secret, token) = (&event.secret_id, &event.client_request_token);
        let mut versions = self.versions(secret).await?;
        if !self.guard(event, &versions)? {
            return Ok(());
        }
        *arn = Some(versions.arn.clone());
        // Always look again under the lock: a duplicate delivery may have waited for the first,
        // the lock may have been free or another's a moment ago, or (SPEC §6a) rotate-now may be
        // continuing this very rotation under its token and have just finished it — the renewal
        // of "our" lock says nothing about what happened between the first look and now.
        self.lock(&versions, token, ctx).await?;
        versions = self.versions(secret).await?;
        if !self.guard(event, &versions)? {
            // Done by the other invocation; the lock this step took must not outlive it.
            self.unlock(&versions.arn, token).await?;
            return Ok(());
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

    /// Secrets Manager's guards: `false` when the step has nothing to do (its version is current).
    fn guard(&self, event: &RotationEvent, versions: &Versions) -> Result<bool, RotationError> {
        let (secret, token) = (&event.secret_id, &event.client_request_token);
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
            return Ok(false);
        }
        if !current && !versions.has_stage(token, PENDING) {
            return Err(RotationError::NotPending {
                secret: secret.clone(),
                token: token.clone(),
            });
        }
        Ok(true)
    }

    /// A whole rotation, in-process, through the same steps (scheduled rotation and rotate-now;
    /// the secret need not have Secrets Manager rotation enabled). SPEC §6a: a rotation another
    /// path left pending is continued under its own token, unless its key is gone from IAM: then
    /// it is abandoned and a new rotation runs, in the same call. `now` is the run's time (the
    /// lock's clock).
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
            hold_until: now + chrono::Duration::minutes(LOCK_TTL_MINUTES),
        };
        let mut step = Step::Create;
        let mut arn = None;
        let result = self
            .rotate_in_process(secret, &ctx, &mut step, &mut arn)
            .await;
        if let Err(e) = &result {
            self.audit_failure(&ctx, secret, step, e).await;
        }
        // A finished rotation released its lock. A failed one keeps it (the next run continues it
        // or finds it dead, and it carries the pre-create record): this run only lets go of its hold.
        if let Some(arn) = arn.filter(|_| result.is_err()) {
            if let Err(unlock) = self.release_hold(&arn, &owner).await {
                tracing::warn!(secret, error = %unlock, "releasing a secret's rotation lock failed");
            }
        }
        result
    }

    async fn rotate_in_process(
        &self,
        secret: &str,
        ctx: &Ctx<'_>,
        step: &mut Step,
        arn: &mut Option<String>,
    ) -> Result<Rotated, RotationError> {
        let mut versions = self.versions(secret).await?;
        *arn = Some(versions.arn.clone());
        // Each wait for another invocation's step is followed by a fresh look at the secret.
        let mut looks = 0;
        let token = loop {
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
                return self.finish(secret, &token, &versions, ctx).await;
            }
            let Some(p) = pending else {
                break uuid::Uuid::new_v4().to_string();
            };
            // Another path's rotation: continue it under its own token (the lock is the
            // rotation's). A step another invocation is running is waited for, then the secret
            // is read again; "in progress" is an answer only while that rotation is alive.
            if self.lock(&versions, &p, ctx).await? {
                looks += 1;
                if looks > MAX_LOOKS {
                    return Err(RotationError::Locked {
                        secret: versions.arn.clone(),
                    });
                }
                versions = self.versions(secret).await?;
                continue;
            }
            match self.value(secret, Some(&p), PENDING).await? {
                Some(v) if self.pending_key_gone(secret, &versions, &v).await? => {
                    let reason = format!(
                        "its pending key {} no longer exists in IAM",
                        v.key_id().unwrap_or("none")
                    );
                    self.abandon(secret, &p, &versions, &v, ctx, reason).await?;
                    break uuid::Uuid::new_v4().to_string();
                }
                _ => break p,
            }
        };
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
