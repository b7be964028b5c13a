//! Lease routes: list (admins all, anyone else their own) and revoke (owner or admin): an
//! `iam_user` lease by deleting its user, an STS lease through [`super::revoke`].

use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::audit::Outcome;
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

/// Ends a lease now: its IAM user and everything on it are deleted (STS leases: denied in their
/// role's or base user's inline policy). Repeating the call answers `200` with the same revoked
/// lease every time. An optional body `{"reason": "..."}` goes into the audit trail.
pub(super) async fn revoke(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    let why = super::revoke::lease_reason(req)?;
    let id = lease_id(id, "lease_id")?;
    let lease = app.leases.get(&id).await?;
    let record =
        |outcome: Outcome, message: String| lease.audit_record(&req.origin, outcome, message);
    let owner = lease.principal == req.caller.principal;
    if !owner && !req.is_admin(app) {
        let r = record(
            Outcome::Denied,
            format!(
                "{} may not revoke a lease of {}.",
                req.caller.principal, lease.principal
            ),
        );
        app.audit.write(&r).await?;
        return Err(ApiError::Forbidden(
            "only the lease's owner or an admin may revoke it".into(),
        ));
    }
    if lease.is_sts() {
        return super::revoke::sts_lease(app, req, lease, why).await;
    }
    match app.leases.revoke(&lease).await {
        Ok((revoked, _)) => {
            app.audit
                .write(&record(
                    Outcome::Success,
                    format!(
                        "Lease {} revoked; IAM user {} deleted.{}",
                        lease.id,
                        lease.user_name,
                        why.map(|w| format!(" Reason: {w}")).unwrap_or_default()
                    ),
                ))
                .await?;
            Ok(Reply::json(200, revoked.to_json()))
        }
        Err(e) => {
            app.audit
                .write(&record(
                    Outcome::Failed,
                    format!("Revoking lease {} failed: {e}", lease.id),
                ))
                .await?;
            Err(e.into())
        }
    }
}

fn lease_id(s: &str, field: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| Invalid::new(field, "must be a lease id (a UUID)").into())
}
