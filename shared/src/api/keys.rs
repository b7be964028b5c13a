//! `GET /v1/keys/{access_key_id}` (admin, SPEC §15): which key is this?

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
