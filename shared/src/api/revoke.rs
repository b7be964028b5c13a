//! Revoking STS credentials (SPEC §10): one lease (`DELETE /v1/leases/{id}` on an
//! `assumed_role` / `federation_token` lease) and everything a profile issued before a time
//! (`POST /v1/profiles/{name}/revoke`). Every revocation is audited as `Credentials Revoked`
//! (`Config`, `WARN`) with its reason.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{Reply, Request};
use super::ApiError;
use crate::audit::{AuditRecord, AuditedWriteError, Category, Level, Outcome};
use crate::aws::FailureKind;
use crate::issue::{source_identity, IssueError};
use crate::lease::{Lease, LeaseStatus};
use crate::names::{Invalid, ProfileName};
use crate::profile::{parse_optional_json, CredentialType, Kind, StoreError};
use crate::revocation::policy::TargetKind;
use crate::revocation::{Actor, Applied, Revocations, Target};
use crate::{Api, App};

pub const EVENT_REVOKED: &str = "Credentials Revoked";
const MAX_REASON: usize = 1024;
/// `issued_before` may lie this far ahead of the function's clock (the caller's clock skew).
const MAX_SKEW_SECONDS: i64 = 300;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    issued_before: Option<String>,
    reason: Option<String>,
}

fn reason(r: Option<String>) -> Result<Option<String>, Invalid> {
    let r = r.filter(|r| !r.trim().is_empty());
    if r.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON) {
        return Err(Invalid::new(
            "reason",
            format!("must be at most {MAX_REASON} characters"),
        ));
    }
    Ok(r)
}

/// The optional `{"reason": ...}` of `DELETE /v1/leases/{id}`.
pub(super) fn lease_reason(req: &Request) -> Result<Option<String>, ApiError> {
    let body: LeaseBody = parse_optional_json(&req.body)?;
    Ok(reason(body.reason)?)
}

fn record(
    req: &Request,
    profile: &str,
    ty: CredentialType,
    outcome: Outcome,
    message: String,
) -> AuditRecord {
    let mut r = AuditRecord::new(
        &req.origin,
        Category::Config,
        EVENT_REVOKED,
        outcome,
        message,
    )
    .profile(profile);
    r.credential_type = Some(ty.as_str().to_owned());
    if outcome == Outcome::Success {
        r.level = Level::Warn;
    }
    r
}

fn because(reason: Option<&str>) -> String {
    reason.map_or_else(
        || " No reason given.".to_owned(),
        |r| format!(" Reason: {r}"),
    )
}

/// Revokes an `assumed_role` / `federation_token` lease (the caller is its owner or an admin).
pub(super) async fn sts_lease(
    app: &App,
    req: &Request,
    lease: Lease,
    why: Option<String>,
) -> Result<Reply, ApiError> {
    let ty = lease.credential_type;
    if ty == CredentialType::SessionToken {
        let message = format!(
            "session_token credentials carry no session tags, so lease {} cannot be revoked alone: an admin can revoke every session token of its base user with POST /v1/profiles/{}/revoke",
            lease.id, lease.profile
        );
        let mut r = record(req, &lease.profile, ty, Outcome::Denied, message.clone());
        r.lease_id = Some(lease.id.clone());
        app.audit.write(&r).await?;
        return Err(ApiError::Conflict(message));
    }
    let admin = req.is_admin(app);
    let now = Utc::now();
    let actor = Actor {
        origin: &req.origin,
        admin,
        reason: why.as_deref(),
    };
    // Expired credentials need no Deny; the lease is only marked. A lease already revoked gets
    // its entry written again (a repeated revoke repairs an out-of-band change).
    let applied = if lease.expires_at > now {
        match app.revocations.revoke_lease(&lease, now, actor).await {
            Ok(a) => Some(a),
            Err(e) => {
                let mut r = record(
                    req,
                    &lease.profile,
                    ty,
                    Outcome::Failed,
                    format!("Revoking lease {} failed: {e}", lease.id),
                );
                r.lease_id = Some(lease.id.clone());
                app.audit.write(&r).await?;
                return Err(e.into());
            }
        }
    } else {
        None
    };
    if lease.status == LeaseStatus::Revoked {
        let mut body = lease.to_json();
        body["revocation"] = applied.as_ref().map_or(Value::Null, |a| a.to_json(admin));
        return Ok(Reply::json(200, body));
    }
    let what = match &applied {
        Some(a) if !a.folded.is_empty() => format!(
            "the per-lease entry did not fit IAM's inline policy quota on {}, so every session of profile(s) {} through it issued before now is denied instead ({})",
            a.target.arn,
            a.folded.join(", "),
            a.statement
        ),
        Some(a) => format!("{} in keysmith-revocations of {}", a.statement, a.target.arn),
        None => "its credentials had already expired".to_owned(),
    };
    let mut r = record(
        req,
        &lease.profile,
        ty,
        Outcome::Success,
        format!(
            "Lease {} revoked by {}: {what}.{}",
            lease.id,
            req.caller.principal,
            because(why.as_deref())
        ),
    );
    r.lease_id = Some(lease.id.clone());
    let mark = app.leases.mark_revoked_items(&lease, now)?;
    match app.audit.write_with(mark, &r).await {
        // Revoked meanwhile by another call: the Deny is in place either way.
        Ok(()) | Err(AuditedWriteError::Conflict) => {}
        Err(AuditedWriteError::Audit(_)) => return Err(ApiError::AuditUnavailable),
        Err(AuditedWriteError::Store(f)) => return Err(super::error::upstream(&f)),
    }
    // After a fold (admins only) the folded profiles' other sessions through this target issued
    // before now are denied too: the lease list says so.
    let mut also = Vec::new();
    if let Some(a) = applied.as_ref().filter(|a| !a.folded.is_empty()) {
        also = end_folded(app, req, a, &lease.id, now, why.as_deref()).await?;
    }
    let mut revoked = lease;
    revoked.status = LeaseStatus::Revoked;
    revoked.revoked_at = Some(now);
    let mut body = revoked.to_json();
    body["revocation"] = applied.as_ref().map_or(Value::Null, |a| a.to_json(admin));
    if !also.is_empty() {
        body["revocation"]["also_revoked"] = json!(also);
    }
    Ok(Reply::json(200, body))
}

/// Marks the live STS leases that a fold's cut-offs now deny (those of the folded profiles through
/// the same target), each audited.
async fn end_folded(
    app: &App,
    req: &Request,
    applied: &Applied,
    except: &str,
    now: DateTime<Utc>,
    why: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let mut also = Vec::new();
    for profile in &applied.folded {
        let covered: Vec<Lease> = live_leases(app, profile, now, now)
            .await?
            .into_iter()
            .filter(|l| {
                l.id != except
                    && l.is_sts()
                    && l.credential_type != CredentialType::SessionToken
                    && l.target.as_deref() == Some(applied.target.arn.as_str())
            })
            .collect();
        also.extend(end_leases(app, req, profile, covered, now, why).await?);
    }
    Ok(also)
}

/// `POST /v1/profiles/{name}/revoke` (admin).
pub(super) async fn profile(
    api: &Api,
    req: &Request,
    name: ProfileName,
) -> Result<Reply, ApiError> {
    let app = &api.app;
    req.no_query()?;
    req.require_admin(app, "revoke a profile's credentials")
        .await?;
    let body: ProfileBody = parse_optional_json(&req.body)?;
    let why = reason(body.reason)?;
    let now = Utc::now();
    let before = match body.issued_before.as_deref() {
        None => now,
        Some(t) => {
            let t = DateTime::parse_from_rfc3339(t)
                .map_err(|_| Invalid::new("issued_before", "must be an RFC 3339 time"))?
                .with_timezone(&Utc);
            if t > now + chrono::Duration::seconds(MAX_SKEW_SECONDS) {
                return Err(Invalid::new("issued_before", "must not be in the future").into());
            }
            t
        }
    };
    let profile = match app.profiles.get(&name).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(ApiError::NotFound(format!("profile {name} not found"))),
        Err(StoreError::Outdated(o)) => {
            return Err(ApiError::Conflict(format!(
                "profile {name} must be saved again before it can be revoked: {}",
                o.reason
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let ty = profile.credential_type();
    let mut targets = Vec::new();
    let mut note = None;
    let mut ended = Vec::new();
    let mut folded_ended = Vec::new();
    let result: Result<(), ApiError> = async {
        let current = match &profile.kind {
            Kind::AssumedRole { role_arn, .. } => Some(Target::from_arn(role_arn.as_str())?),
            Kind::FederationToken { .. } | Kind::SessionToken { .. } => {
                let arn = api
                    .issuer
                    .profile_base_user(&profile)
                    .await
                    .map_err(|e| match e {
                        // The profile names a secret that is not there: a fact about the
                        // profile, not an AWS failure.
                        IssueError::BaseKey {
                            kind: FailureKind::NotFound,
                            ..
                        } => ApiError::Conflict(format!(
                            "{e}: the profile's base user cannot be found, so nothing was revoked"
                        )),
                        e => e.into(),
                    })?;
                Some(Target::from_arn(&arn)?)
            }
            Kind::IamUser { .. } => None,
        };
        // The profile's role or base user now, and every one its live leases act through (the
        // profile may have pointed elsewhere when they were issued).
        let live = live_leases(app, name.as_str(), before, now).await?;
        let mut scopes: Vec<(Target, bool)> = Vec::new();
        let mut add = |target: Target, tagged: bool| {
            if !scopes
                .iter()
                .any(|(t, g)| t.arn == target.arn && *g == tagged)
            {
                scopes.push((target, tagged));
            }
        };
        if let Some(t) = current {
            add(t, ty != CredentialType::SessionToken);
        }
        for lease in live.iter().filter(|l| l.is_sts()) {
            add(
                Revocations::lease_target(lease)?,
                lease.credential_type != CredentialType::SessionToken,
            );
        }
        for (target, tagged) in scopes {
            let scope = tagged.then_some(name.as_str());
            if !tagged {
                note = Some(format!(
                    "session tokens carry no tags: this denies every session token of {} issued before the time, from any profile or tool",
                    target.arn
                ));
            }
            let actor = Actor {
                origin: &req.origin,
                admin: true,
                reason: why.as_deref(),
            };
            // On a role, the callers of the live leases by SourceIdentity too: a chained session
            // that lost the tags is still theirs (SPEC §18).
            let mut sources: Vec<String> = Vec::new();
            if target.kind == TargetKind::Role {
                for l in live.iter().filter(|l| l.target.as_deref() == Some(target.arn.as_str())) {
                    let id = source_identity(&l.principal);
                    if !sources.contains(&id) {
                        sources.push(id);
                    }
                }
            }
            let applied = app
                .revocations
                .revoke_before(&target, scope, &sources, before, now, actor)
                .await?;
            targets.push(applied.to_json(true));
            let others = Applied {
                folded: applied
                    .folded
                    .iter()
                    .filter(|p| p.as_str() != name.as_str())
                    .cloned()
                    .collect(),
                ..applied
            };
            folded_ended.extend(end_folded(app, req, &others, "", now, why.as_deref()).await?);
        }
        // Leases issued before the time are marked (STS) or ended (iam_user).
        ended = end_leases(app, req, name.as_str(), live, now, why.as_deref()).await?;
        ended.append(&mut folded_ended);
        Ok(())
    }
    .await;
    let leases: Result<Vec<String>, ApiError> = Ok(ended);
    let (outcome, message) = match (&result, &leases) {
        (Ok(()), Ok(ids)) => (
            Outcome::Success,
            format!(
                "Credentials of profile {name} issued before {} revoked by {}: {} policy change(s), {} lease(s) revoked.{}",
                before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                req.caller.principal,
                targets.len(),
                ids.len(),
                because(why.as_deref())
            ),
        ),
        (Err(e), _) | (_, Err(e)) => (
            Outcome::Failed,
            format!("Revoking the credentials of profile {name} failed: {e}"),
        ),
    };
    app.audit
        .write(&record(req, name.as_str(), ty, outcome, message))
        .await?;
    result?;
    let leases = leases?;
    Ok(Reply::json(
        200,
        json!({
            "profile": name.as_str(),
            "credential_type": ty.as_str(),
            "issued_before": before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "reason": why,
            "targets": targets,
            "leases_revoked": leases,
            "note": note,
        }),
    ))
}

/// Every live lease of the profile created before `before` (STS leases: not yet expired).
async fn live_leases(
    app: &App,
    profile: &str,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Lease>, ApiError> {
    let (leases, read) = app.leases.live_of_profile(profile, before, now).await?;
    tracing::info!(
        profile,
        live = leases.len(),
        items_read = read,
        "live leases of a profile"
    );
    Ok(leases)
}

/// Ends `leases`: `iam_user` ones (user deleted), STS ones marked revoked (the policy change
/// denies them), each audited.
async fn end_leases(
    app: &App,
    req: &Request,
    profile: &str,
    leases: Vec<Lease>,
    now: DateTime<Utc>,
    why: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let mut done = Vec::new();
    for lease in leases {
        if lease.is_sts() {
            let mut r = record(
                req,
                profile,
                lease.credential_type,
                Outcome::Success,
                format!(
                    "Lease {} revoked with profile {profile}.{}",
                    lease.id,
                    because(why)
                ),
            );
            r.lease_id = Some(lease.id.clone());
            match app
                .audit
                .write_with(app.leases.mark_revoked_items(&lease, now)?, &r)
                .await
            {
                Ok(()) | Err(AuditedWriteError::Conflict) => {}
                Err(AuditedWriteError::Audit(_)) => return Err(ApiError::AuditUnavailable),
                Err(AuditedWriteError::Store(f)) => return Err(super::error::upstream(&f)),
            }
        } else {
            app.leases.revoke(&lease).await?;
            let r = lease.audit_record(
                &req.origin,
                Outcome::Success,
                format!(
                    "Lease {} revoked with profile {profile}; IAM user {} deleted.{}",
                    lease.id,
                    lease.user_name,
                    because(why)
                ),
            );
            app.audit.write(&r).await?;
        }
        done.push(lease.id);
    }
    Ok(done)
}
