//! Lease routes: list (admins all, anyone else their own), renew (SPEC §16); revoking one is
//! [`super::revoke`].

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::json::parse_optional_json;
use crate::lease::{Lease, Renewer};
use crate::names::{Invalid, ProfileName};
use crate::App;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    duration_seconds: Option<i64>,
}

/// `POST /v1/leases/{id}/renew` (its owner or an admin): a live `iam_user` lease ends later.
pub(super) async fn renew(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    let body: RenewBody = parse_optional_json(&req.body)?;
    let id = lease_id(id, "lease_id")?;
    let who = Renewer {
        origin: &req.origin,
        admin: req.is_admin(app),
    };
    let lease = app
        .leases
        .renew(&app.profiles, &app.audit, &id, body.duration_seconds, who)
        .await?;
    Ok(Reply::json(200, lease.to_json()))
}

/// Admins see every lease; anyone else sees their own.
pub(super) async fn list(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&["profile", "limit", "next"])?;
    let profile = q("profile")
        .map(|p| ProfileName::parse("profile", p))
        .transpose()?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next").map(|n| lease_id(n, "next")).transpose()?;
    let owner = (!req.is_admin(app)).then_some(req.caller.principal.as_str());
    let (leases, next) = app
        .leases
        .list(
            profile.as_ref().map(ProfileName::as_str),
            owner,
            limit,
            next.as_deref(),
        )
        .await?;
    let leases: Vec<Value> = leases.iter().map(Lease::to_json).collect();
    Ok(Reply::json(200, json!({"leases": leases, "next": next})))
}

pub(super) fn lease_id(s: &str, field: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| Invalid::new(field, "must be a lease id (a UUID)").into())
}
