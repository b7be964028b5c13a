//! `GET /v1/audit` (admin): the audit trail, newest first.

use serde_json::json;

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::audit::{self, AuditQuery};
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
    let time = |field: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        q(field)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&chrono::Utc))
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
    let (since, until) = (time("since")?, time("until")?);
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(Invalid::new("since", "must not be after until").into());
        }
    }
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
        since,
        until,
        limit: limit(q("limit"), 100, 1000)?,
        next: q("next")
            .map(|n| {
                audit::parse_cursor(n)
                    .ok_or_else(|| Invalid::new("next", "is not a cursor from a previous page"))
            })
            .transpose()?,
    };
    if query.principal.is_none() && query.profile.is_none() {
        let until = query.until.unwrap_or_else(chrono::Utc::now);
        if let Some(since) = query.since {
            if (until - since).num_days() > audit::MAX_WINDOW_DAYS {
                return Err(Invalid::new(
                    "since",
                    format!(
                        "a query without principal or profile spans at most {} days",
                        audit::MAX_WINDOW_DAYS
                    ),
                )
                .into());
            }
        }
    }
    let page = app.audit.read(&query, &req.origin).await?;
    Ok(Reply::json(
        200,
        json!({"items": page.items, "next": page.next}),
    ))
}
