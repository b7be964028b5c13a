//! The HTTP API (SPEC §4): an API Gateway HTTP API (payload v2) event in, a response out. Routing
//! is on `requestContext.http.method` and `rawPath`, so explicit routes and `{proxy+}` behave alike.

mod error;
mod identity;

pub use error::ApiError;
pub use identity::Caller;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use crate::audit::{self, AuditQuery, AuditRecord, Category, Origin, Outcome};
use crate::aws::FailureKind;
use crate::issue::Issuance;
use crate::lease::Lease;
use crate::names::{Invalid, ProfileName};
use crate::profile::{Profile, Saved};
use crate::rotation::policy::Policy;
use crate::rotation::RotationError;
use crate::schedule::{self, PolicyRotationError};
use crate::App;

pub const MAX_BODY: usize = 64 * 1024;

/// Every route, as (method, path template). The router below answers exactly these and
/// `infra/openapi.yaml` documents exactly these: a test holds the three together.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/profiles"),
    ("PUT", "/v1/profiles/{name}"),
    ("GET", "/v1/profiles/{name}"),
    ("DELETE", "/v1/profiles/{name}"),
    ("POST", "/v1/profiles/{name}/credentials"),
    ("GET", "/v1/leases"),
    ("DELETE", "/v1/leases/{lease_id}"),
    ("GET", "/v1/rotations"),
    ("PUT", "/v1/rotations/{name}"),
    ("GET", "/v1/rotations/{name}"),
    ("DELETE", "/v1/rotations/{name}"),
    ("POST", "/v1/rotations/{name}/rotate"),
    ("GET", "/v1/audit"),
];

/// A request after the edge: identity checked, body decoded and size-limited.
struct Request {
    method: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    caller: Caller,
    origin: Origin,
}

struct Reply {
    status: u16,
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }
}

pub async fn handle(app: &App, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    // Boxed: the routes' nested futures are deep enough that a function's `main`, which awaits
    // this one, exceeds rustc's query depth when laying them out inline.
    let reply = match Box::pin(route(app, event)).await {
        Ok(reply) => reply,
        Err(e) => {
            if e.status() >= 500 {
                tracing::warn!(status = e.status(), error = %e, "request failed");
            }
            let mut r = Reply::json(e.status(), e.body());
            if let ApiError::MethodNotAllowed { allow, .. } = e {
                return respond(r.status, r.body.take(), Some(allow));
            }
            r
        }
    };
    respond(reply.status, reply.body, None)
}

fn respond(
    status: u16,
    body: Option<Value>,
    allow: Option<&'static str>,
) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    // Responses may carry credentials: no cache anywhere may keep them.
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some(allow) = allow {
        headers.insert("allow", HeaderValue::from_static(allow));
    }
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = body.map(|b| Body::Text(b.to_string()));
    r
}

fn parse_request(app: &App, event: ApiGatewayV2httpRequest) -> Result<Request, ApiError> {
    let ctx = &event.request_context;
    let caller = Caller::from_context(ctx).ok_or(ApiError::Unauthenticated)?;
    let body = match event.body {
        None => Vec::new(),
        Some(b) if event.is_base64_encoded => aws_smithy_types::base64::decode(&b)
            .map_err(|_| Invalid::new("body", "is not valid base64"))?,
        Some(b) => b.into_bytes(),
    };
    if body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut path = event
        .raw_path
        .or_else(|| ctx.http.path.clone())
        .unwrap_or_default();
    // A named stage prefixes rawPath with its name; `$default` does not.
    if let Some(stage) = ctx.stage.as_deref().filter(|s| *s != "$default") {
        if let Some(rest) = path.strip_prefix(&format!("/{stage}/")) {
            path = format!("/{rest}");
        }
    }
    let query = event
        .query_string_parameters
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Request {
        method: ctx.http.method.as_str().to_owned(),
        segments: path
            .trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect(),
        query,
        body,
        origin: Origin {
            principal: caller.principal.clone(),
            source_ip: ctx.http.source_ip.clone().unwrap_or_default(),
            user_agent: ctx.http.user_agent.clone().unwrap_or_default(),
            request_id: ctx.request_id.clone().unwrap_or_default(),
            region: app.region.clone(),
        },
        caller,
    })
}

async fn route(app: &App, event: ApiGatewayV2httpRequest) -> Result<Reply, ApiError> {
    let req = parse_request(app, event)?;
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    let not_allowed = |allow: &'static str| ApiError::MethodNotAllowed {
        method: method.to_owned(),
        allow,
    };
    match segments.as_slice() {
        ["v1", "profiles"] => match method {
            "GET" => list_profiles(app, &req).await,
            _ => Err(not_allowed("GET")),
        },
        ["v1", "profiles", name] => {
            let allow = "GET, PUT, DELETE";
            if !matches!(method, "GET" | "PUT" | "DELETE") {
                return Err(not_allowed(allow));
            }
            let name = ProfileName::parse("name", name)?;
            match method {
                "PUT" => put_profile(app, &req, name).await,
                "GET" => get_profile(app, &req, name).await,
                _ => delete_profile(app, &req, name).await,
            }
        }
        ["v1", "profiles", name, "credentials"] => match method {
            "POST" => issue(app, &req, ProfileName::parse("name", name)?).await,
            _ => Err(not_allowed("POST")),
        },
        ["v1", "leases"] => match method {
            "GET" => list_leases(app, &req).await,
            _ => Err(not_allowed("GET")),
        },
        ["v1", "leases", id] => match method {
            "DELETE" => revoke_lease(app, &req, id).await,
            _ => Err(not_allowed("DELETE")),
        },
        ["v1", "rotations"] => match method {
            "GET" => list_rotations(app, &req).await,
            _ => Err(not_allowed("GET")),
        },
        ["v1", "rotations", name] => {
            if !matches!(method, "GET" | "PUT" | "DELETE") {
                return Err(not_allowed("GET, PUT, DELETE"));
            }
            let name = ProfileName::parse("name", name)?;
            match method {
                "PUT" => put_rotation(app, &req, name).await,
                "GET" => get_rotation(app, &req, name).await,
                _ => delete_rotation(app, &req, name).await,
            }
        }
        ["v1", "rotations", name, "rotate"] => match method {
            "POST" => rotate_now(app, &req, ProfileName::parse("name", name)?).await,
            _ => Err(not_allowed("POST")),
        },
        ["v1", "audit"] => match method {
            "GET" => query_audit(app, &req).await,
            _ => Err(not_allowed("GET")),
        },
        _ => Err(ApiError::NotFound("no such route".into())),
    }
}

/// Only the listed query parameters are accepted: a misspelt one is a 400, not silently ignored.
fn query<'a>(
    req: &'a Request,
    allowed: &[&str],
) -> Result<impl Fn(&str) -> Option<&'a str>, ApiError> {
    if let Some((k, _)) = req
        .query
        .iter()
        .find(|(k, _)| !allowed.contains(&k.as_str()))
    {
        return Err(Invalid::new(k.clone(), "is not a parameter of this route").into());
    }
    Ok(move |name: &str| {
        req.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
}

fn no_query(req: &Request) -> Result<(), ApiError> {
    query(req, &[]).map(drop)
}

fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Invalid::new("limit", format!("must be an integer from 1 to {max}")).into()),
    }
}

fn no_body(req: &Request) -> Result<(), ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        Err(Invalid::new("body", "must be empty for this route").into())
    }
}

/// Admin routes. A refusal is audited like any other denial, before the caller hears of it.
async fn require_admin(app: &App, req: &Request, what: &str) -> Result<(), ApiError> {
    if app.config.is_admin(&req.caller.principals) {
        return Ok(());
    }
    let record = AuditRecord::new(
        &req.origin,
        Category::Config,
        "Admin Access Denied",
        Outcome::Denied,
        format!(
            "{} is not an admin and may not {what}.",
            req.caller.principal
        ),
    );
    app.audit.write(&record).await?;
    Err(ApiError::Forbidden(format!(
        "admin rights are required to {what}"
    )))
}

async fn put_profile(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    require_admin(app, req, "change profiles").await?;
    let profile = Profile::parse(name, &req.body)?;
    let ty = profile.credential_type().as_str();
    let saved = app
        .profiles
        .put(&profile, |saved| {
            let (event, verb) = match saved {
                Saved::Created => ("Profile Created", "created"),
                Saved::Replaced => ("Profile Replaced", "replaced"),
            };
            let mut r = AuditRecord::new(
                &req.origin,
                Category::Config,
                event,
                Outcome::Success,
                format!("Profile {} {verb}.", profile.name),
            )
            .profile(profile.name.as_str());
            r.credential_type = Some(ty.to_owned());
            r
        })
        .await?;
    let status = if saved == Saved::Created { 201 } else { 200 };
    Ok(Reply::json(status, profile.to_json()))
}

async fn get_profile(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    require_admin(app, req, "read profiles").await?;
    let profile = app
        .profiles
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("profile {name} not found")))?;
    Ok(Reply::json(200, profile.to_json()))
}

async fn list_profiles(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = query(req, &["limit", "next"])?;
    require_admin(app, req, "list profiles").await?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next")
        .map(|n| ProfileName::parse("next", n))
        .transpose()?;
    let (profiles, next) = app.profiles.list(limit, next.as_ref()).await?;
    let profiles: Vec<Value> = profiles.iter().map(Profile::to_json).collect();
    Ok(Reply::json(
        200,
        json!({"profiles": profiles, "next": next}),
    ))
}

async fn delete_profile(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    no_body(req)?;
    require_admin(app, req, "delete profiles").await?;
    let record = AuditRecord::new(
        &req.origin,
        Category::Config,
        "Profile Deleted",
        Outcome::Success,
        format!("Profile {name} deleted."),
    )
    .profile(name.as_str());
    app.profiles.delete(&name, &record).await?;
    Ok(Reply {
        status: 204,
        body: None,
    })
}

async fn issue(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    let q = query(req, &["format"])?;
    let credential_process = match q("format") {
        None | Some("json") => false,
        Some("credential_process") => true,
        Some(_) => return Err(Invalid::new("format", "must be json or credential_process").into()),
    };
    let profile = app
        .profiles
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("profile {name} not found")))?;
    let ty = profile.credential_type().as_str();
    let record = |outcome: Outcome, message: String| {
        let mut r = AuditRecord::new(
            &req.origin,
            Category::Data,
            audit::EVENT_ISSUE,
            outcome,
            message,
        )
        .profile(name.as_str());
        r.credential_type = Some(ty.to_owned());
        r
    };

    if !profile.allows(&req.caller.principals) {
        let r = record(
            Outcome::Denied,
            format!(
                "{} is not in allowed_principals of profile {name}.",
                req.caller.principal
            ),
        );
        app.audit.write(&r).await?;
        return Err(ApiError::Forbidden(format!(
            "you may not use profile {name}"
        )));
    }
    let issuance = Issuance::parse(&profile, &req.body)?;
    let issued = match app
        .issuer
        .issue(&profile, &issuance, &req.caller.principal)
        .await
    {
        Ok(issued) => issued,
        Err(e) => {
            let mut r = record(Outcome::Failed, format!("Issuing credentials failed: {e}"));
            r.duration_seconds = Some(issuance.duration.get());
            app.audit.write(&r).await?;
            return Err(e.into());
        }
    };

    let lease_id = issued.lease_id.clone();
    let mut r = record(Outcome::Success, audit::MESSAGE_ISSUED.to_owned());
    r.origin.region = issued.region.clone();
    r.duration_seconds = Some(issuance.duration.get());
    r.access_key_id = Some(issued.credentials.access_key_id.clone());
    r.lease_id = Some(lease_id.clone());
    // Credentials are returned only once the trail holds them. A dynamic IAM user is deleted at
    // once; STS credentials cannot be revoked and expire unused.
    if let Err(e) = app.audit.write(&r).await {
        if let Some(lease) = &issued.lease {
            if let Err(cleanup) = app.leases.revoke(lease).await {
                tracing::warn!(lease_id = %lease.id, error = %cleanup, "deleting an unaudited IAM user failed; it stays due for revocation");
            }
        }
        return Err(e.into());
    }
    tracing::info!(
        profile = %name,
        principal = %req.caller.principal,
        access_key_id = %issued.credentials.access_key_id,
        lease_id = %lease_id,
        "credentials issued"
    );

    let c = &issued.credentials;
    let token = c.session_token.as_ref().map(|t| t.expose());
    let expiration = issued.expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = if credential_process {
        json!({
            "Version": 1,
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key.expose(),
            "SessionToken": token,
            "Expiration": expiration,
        })
    } else {
        json!({
            "access_key_id": c.access_key_id,
            "secret_access_key": c.secret_access_key.expose(),
            "session_token": token,
            "expiration": expiration,
            "lease_id": lease_id,
            "lease_duration": issuance.duration.get(),
            "profile": name.as_str(),
            "credential_type": ty,
        })
    };
    Ok(Reply::json(200, body))
}

/// Admins see every lease; anyone else sees their own.
async fn list_leases(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = query(req, &["profile", "limit", "next"])?;
    let profile = q("profile")
        .map(|p| ProfileName::parse("profile", p))
        .transpose()?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next").map(|n| lease_id(n, "next")).transpose()?;
    let owner =
        (!app.config.is_admin(&req.caller.principals)).then_some(req.caller.principal.as_str());
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

fn lease_id(s: &str, field: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| Invalid::new(field, "must be a lease id (a UUID)").into())
}

/// Ends a lease now: its IAM user and everything on it are deleted. Repeating the call answers
/// `200` with the same revoked lease every time.
async fn revoke_lease(app: &App, req: &Request, id: &str) -> Result<Reply, ApiError> {
    no_query(req)?;
    no_body(req)?;
    let id = lease_id(id, "lease_id")?;
    let lease = app.leases.get(&id).await?;
    let record =
        |outcome: Outcome, message: String| lease.audit_record(&req.origin, outcome, message);
    let owner = lease.principal == req.caller.principal;
    if !owner && !app.config.is_admin(&req.caller.principals) {
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
    match app.leases.revoke(&lease).await {
        Ok((revoked, _)) => {
            app.audit
                .write(&record(
                    Outcome::Success,
                    format!(
                        "Lease {} revoked; IAM user {} deleted.",
                        lease.id, lease.user_name
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

async fn put_rotation(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    require_admin(app, req, "change rotation policies").await?;
    let policy = Policy::parse(name, &req.body)?;
    // The secret must exist and name a user before anything is stored.
    let user = app
        .rotator
        .user_of(&policy.secret_id)
        .await
        .map_err(|e| match e {
            RotationError::BadSecret { reason, .. } => {
                Invalid::new("secret_id", format!("is not a rotatable secret: {reason}")).into()
            }
            RotationError::Aws { failure, .. } if failure.kind == FailureKind::NotFound => {
                Invalid::new("secret_id", "does not exist").into()
            }
            e => ApiError::from(PolicyRotationError::from(e)),
        })?;
    let now = chrono::Utc::now();
    let (created, stored) = app
        .policies
        .put(&policy, now, |created| {
            let (event, verb) = if created {
                ("Rotation Policy Created", "created")
            } else {
                ("Rotation Policy Replaced", "replaced")
            };
            AuditRecord::new(
                &req.origin,
                Category::Config,
                event,
                Outcome::Success,
                format!(
                    "Rotation policy {} {verb} for secret {} (user {user}).",
                    policy.name, policy.secret_id
                ),
            )
            .profile(policy.name.as_str())
        })
        .await?;
    Ok(Reply::json(
        if created { 201 } else { 200 },
        stored.to_json(now),
    ))
}

async fn get_rotation(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    require_admin(app, req, "read rotation policies").await?;
    let policy = app
        .policies
        .get(name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("rotation policy {name} not found")))?;
    Ok(Reply::json(200, policy.to_json(chrono::Utc::now())))
}

async fn list_rotations(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = query(req, &["limit", "next"])?;
    require_admin(app, req, "list rotation policies").await?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next")
        .map(|n| ProfileName::parse("next", n))
        .transpose()?;
    let (policies, next) = app
        .policies
        .list(limit, next.as_ref().map(ProfileName::as_str))
        .await?;
    let now = chrono::Utc::now();
    let policies: Vec<Value> = policies.iter().map(|p| p.to_json(now)).collect();
    Ok(Reply::json(
        200,
        json!({"rotations": policies, "next": next}),
    ))
}

async fn delete_rotation(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    no_body(req)?;
    require_admin(app, req, "delete rotation policies").await?;
    let record = AuditRecord::new(
        &req.origin,
        Category::Config,
        "Rotation Policy Deleted",
        Outcome::Success,
        format!("Rotation policy {name} deleted."),
    )
    .profile(name.as_str());
    app.policies.delete(name.as_str(), &record).await?;
    Ok(Reply {
        status: 204,
        body: None,
    })
}

/// Asynchronous (SPEC §6): marks the policy requested and answers `202`; scheduled-rotation does
/// the rotation, so this function holds no right to create or delete keys or to write secrets.
async fn rotate_now(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    no_query(req)?;
    if !req.body.iter().all(u8::is_ascii_whitespace)
        && !serde_json::from_slice::<serde_json::Map<String, Value>>(&req.body)
            .is_ok_and(|m| m.is_empty())
    {
        return Err(Invalid::new("body", "must be empty or {}").into());
    }
    require_admin(app, req, "rotate keys").await?;
    let policy = schedule::request_rotation(app, name.as_str(), &req.origin).await?;
    Ok(Reply::json(202, policy.to_json(chrono::Utc::now())))
}

async fn query_audit(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = query(
        req,
        &[
            "principal",
            "profile",
            "event",
            "since",
            "until",
            "limit",
            "next",
        ],
    )?;
    require_admin(app, req, "read the audit trail").await?;
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
    let page = app.audit.query(&query).await?;
    Ok(Reply::json(
        200,
        json!({"items": page.items, "next": page.next}),
    ))
}
