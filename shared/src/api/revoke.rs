//! Revocation routes (SPEC §10): `DELETE /v1/leases/{id}` and `POST /v1/profiles/{name}/revoke`.
//! They parse the request and map the answer; [`crate::revocation::Revoker`] does the work.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{Reply, Request};
use super::ApiError;
use crate::names::{Invalid, ProfileName};
use crate::profile::{parse_optional_json, StoreError};
use crate::revocation::{Actor, Revoker};
use crate::Api;

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

fn revoker(api: &Api) -> Revoker<'_> {
    api.app.revoker(&api.issuer)
}

/// `DELETE /v1/leases/{id}` (its owner or an admin). Repeating it answers `200` with the same
/// revoked lease every time. An optional body `{"reason": "..."}` goes into the audit trail.
pub(super) async fn lease(api: &Api, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    let body: LeaseBody = parse_optional_json(&req.body)?;
    let why = reason(body.reason)?;
    let id = super::leases::lease_id(id, "lease_id")?;
    let admin = req.is_admin(&api.app);
    let actor = Actor {
        origin: &req.origin,
        admin,
        reason: why.as_deref(),
    };
    let done = revoker(api).revoke_lease(&id, actor).await?;
    let mut body = done.lease.to_json();
    if done.lease.is_sts() {
        body["revocation"] = done
            .applied
            .as_ref()
            .map_or(Value::Null, |a| a.to_json(admin));
        if !done.also.is_empty() {
            body["revocation"]["also_revoked"] = json!(done.also);
        }
    }
    Ok(Reply::json(200, body))
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
    let actor = Actor {
        origin: &req.origin,
        admin: true,
        reason: why.as_deref(),
    };
    let done = revoker(api).revoke_profile(&profile, before, actor).await?;
    let targets: Vec<Value> = done.targets.iter().map(|a| a.to_json(true)).collect();
    Ok(Reply::json(
        200,
        json!({
            "profile": name.as_str(),
            "credential_type": profile.credential_type().as_str(),
            "issued_before": before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "reason": why,
            "targets": targets,
            "leases_revoked": done.leases_revoked,
            "note": done.note,
        }),
    ))
}
