//! `GET /v1/keys/{access_key_id}` (admin, SPEC §15): which key is this? And
//! `POST /v1/keys/{access_key_id}/reactivate` (admin): ask to undo the key report's deactivation
//! (`202`; scheduled-rotation carries it out).

use super::request::{Reply, Request};
use super::ApiError;
use crate::keys::{AccessKeyId, KeyLookup};
use crate::App;

pub(super) async fn show(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.require_admin(app, "look up access keys").await?;
    let id = AccessKeyId::parse("access_key_id", id)?;
    let lookup = KeyLookup {
        audit: &app.audit,
        leases: &app.leases,
        iam: &app.clients.iam,
    };
    Ok(Reply::json(200, lookup.find(&id, &req.origin).await?))
}

pub(super) async fn reactivate(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.empty_or_empty_object()?;
    req.require_admin(app, "reactivate access keys").await?;
    let id = AccessKeyId::parse("access_key_id", id)?;
    let pending = crate::hygiene::Pending {
        db: &app.clients.dynamodb,
        table: &app.config.state_table,
        dry_run: app.config.key_age_dry_run,
    };
    let requested = crate::hygiene::request_reactivation(
        &app.clients.iam,
        &app.audit,
        &pending,
        &id,
        &req.origin,
    )
    .await?;
    Ok(Reply::json(202, serde_json::json!(requested)))
}
