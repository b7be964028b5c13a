//! `GET /v1/audit` (admin): the audit trail, newest first; `GET /v1/audit/checkpoints` (admin):
//! its sealed periods, oldest first.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::audit::{self, AuditQuery, Window};
use crate::names::{Invalid, ProfileName};
use crate::App;

pub(super) async fn query(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&[
        "principal",
        "profile",
        "event",
        "since",
        "until",
        "limit",
        "next",
    ])?;
    req.require_admin(app, "read the audit trail").await?;
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match q(field) {
            Some(v) if v.is_empty() || v.len() > 2048 => {
                Err(Invalid::new(field, "must be 1 to 2048 characters").into())
            }
            v => Ok(v.map(str::to_owned)),
        }
    };
    let query = AuditQuery {
        principal: text("principal")?,
        profile: q("profile")
            .map(|p| ProfileName::parse("profile", p))
            .transpose()?
            .map(|p| p.to_string()),
        event: text("event")?,
        window: window(&q)?,
        limit: limit(q("limit"), 100, 1000)?,
    };
    let page = app.audit.read(&query, &req.origin).await?;
    Ok(Reply::json(
        200,
        json!({"items": page.items, "next": page.next}),
    ))
}

pub(super) async fn checkpoints(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&["since", "until", "limit", "next"])?;
    req.require_admin(app, "read the audit trail's checkpoints")
        .await?;
    let Window { since, until, .. } = window(&|f: &str| if f == "next" { None } else { q(f) })?;
    let next = q("next").map(audit::parse_checkpoint_cursor).transpose()?;
    if next.is_some_and(|n| n < since || n > until) {
        return Err(Invalid::new("next", "is outside the query's window (since .. until)").into());
    }
    let limit = limit(q("limit"), 100, 1000)?;
    let page = app
        .checkpoints
        .read(&app.audit, since, until, q("next"), limit, &req.origin)
        .await?;
    Ok(Reply::json(
        200,
        json!({"checkpoints": page.checkpoints, "next": page.next}),
    ))
}

/// `since`, `until` and `next`, checked together ([`Window::new`]).
fn window<'a>(q: &impl Fn(&str) -> Option<&'a str>) -> Result<Window, ApiError> {
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        q(field)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        Invalid::new(
                            field,
                            "must be an RFC 3339 time such as 2026-11-21T00:00:00Z",
                        )
                        .into()
                    })
            })
            .transpose()
    };
    Ok(Window::new(
        time("since")?,
        time("until")?,
        q("next"),
        Utc::now(),
    )?)
}
