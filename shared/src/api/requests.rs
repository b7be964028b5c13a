//! Access request routes (SPEC §12): they parse the request and shape the answer;
//! [`crate::requests::Requests`] decides.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::json::{parse_json, parse_optional_json};
use crate::names::{Invalid, ProfileName};
use crate::requests::{comment, Actor, NewRequest, Status};
use crate::App;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    profile: String,
    reason: String,
    duration_seconds: Option<i64>,
    ticket: Option<String>,
    #[serde(default)]
    break_glass: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    digest: String,
    comment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    comment: Option<String>,
}

fn actor<'a>(app: &App, req: &'a Request) -> Actor<'a> {
    Actor {
        origin: &req.origin,
        principal: &req.caller.principal,
        principals: &req.caller.principals,
        admin: req.is_admin(app),
    }
}

pub(super) fn request_id(s: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| Invalid::new("request_id", "must be an access request id (a UUID)").into())
}

fn answer(status: u16, r: &crate::requests::AccessRequest) -> Reply {
    Reply::json(status, r.to_json(chrono::Utc::now()))
}

/// `POST /v1/requests` → `201`.
pub(super) async fn create(app: &App, req: &Request) -> Result<Reply, ApiError> {
    req.no_query()?;
    let body: CreateBody = parse_json(&req.body)?;
    let new = NewRequest {
        profile: ProfileName::parse("profile", &body.profile)?,
        reason: body.reason,
        duration_seconds: body.duration_seconds,
        ticket: body.ticket,
        break_glass: body.break_glass,
    };
    let r = app.requests().create(&actor(app, req), new).await?;
    Ok(answer(201, &r))
}

/// `GET /v1/requests?status=&profile=&limit=&next=`.
pub(super) async fn list(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&["status", "profile", "limit", "next"])?;
    let status = q("status")
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Invalid::new(
                    "status",
                    "must be pending, approved, denied, cancelled, expired or issued",
                )
            })
        })
        .transpose()?;
    let profile = q("profile")
        .map(|p| ProfileName::parse("profile", p))
        .transpose()?;
    let limit = limit(q("limit"), 50, 100)?;
    let (items, next) = app
        .requests()
        .list(&actor(app, req), status, profile.as_ref(), limit, q("next"))
        .await?;
    let now = chrono::Utc::now();
    let items: Vec<Value> = items.iter().map(|r| r.to_json(now)).collect();
    Ok(Reply::json(200, json!({"requests": items, "next": next})))
}

/// `GET /v1/requests/{id}`.
pub(super) async fn get(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    let id = request_id(id)?;
    let r = app.requests().get(&actor(app, req), &id).await?;
    Ok(answer(200, &r))
}

/// `POST /v1/requests/{id}/approve` `{"digest", "comment"}`.
pub(super) async fn approve(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    req.no_query()?;
    let id = request_id(id)?;
    let body: ApproveBody = parse_json(&req.body)?;
    let digest = body.digest.trim().to_ascii_lowercase();
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(
            Invalid::new("digest", "must be the request's digest: 64 hex characters").into(),
        );
    }
    let comment = comment(body.comment)?;
    let r = app
        .requests()
        .approve(&actor(app, req), &id, &digest, comment)
        .await?;
    Ok(answer(200, &r))
}

/// `POST /v1/requests/{id}/deny`, `DELETE /v1/requests/{id}`, `POST /v1/requests/{id}/review`
/// (`{"comment"}`, optional).
pub(super) async fn decide(
    app: &App,
    req: &Request,
    id: &str,
    what: &str,
) -> Result<Reply, ApiError> {
    req.no_query()?;
    let id = request_id(id)?;
    let body: CommentBody = parse_optional_json(&req.body)?;
    let comment = comment(body.comment)?;
    let requests = app.requests();
    let who = actor(app, req);
    let r = match what {
        "deny" => requests.deny(&who, &id, comment).await?,
        "review" => requests.review(&who, &id, comment).await?,
        _ => requests.cancel(&who, &id, comment).await?,
    };
    Ok(answer(200, &r))
}
