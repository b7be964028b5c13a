//! Lease routes: list (admins all, anyone else their own); revoking one is [`super::revoke`].

use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::lease::Lease;
use crate::names::{Invalid, ProfileName};
use crate::App;

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
