//! The HTTP API (SPEC §4): an API Gateway HTTP API (payload v2) event in, a response out. Routing
//! is on `requestContext.http.method` and `rawPath`, so explicit routes and `{proxy+}` behave alike.
//! One file per resource holds its handlers; this one only routes.

mod audit;
mod credentials;
mod error;
mod identity;
mod keys;
mod leases;
mod profiles;
mod request;
mod requests;
mod revoke;
mod rotations;

pub use error::ApiError;
pub use identity::Caller;
pub use request::HttpEvent;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::names::ProfileName;
use crate::Api;
use request::{Reply, Request};

pub const MAX_BODY: usize = 64 * 1024;

/// Every route, as (method, path template). The router below answers exactly these and
/// `infra/openapi.yaml` documents exactly these: a test holds the three together.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/profiles"),
    ("PUT", "/v1/profiles/{name}"),
    ("GET", "/v1/profiles/{name}"),
    ("DELETE", "/v1/profiles/{name}"),
    ("POST", "/v1/profiles/{name}/credentials"),
    ("POST", "/v1/profiles/{name}/revoke"),
    ("GET", "/v1/leases"),
    ("DELETE", "/v1/leases/{lease_id}"),
    ("POST", "/v1/leases/{lease_id}/renew"),
    ("GET", "/v1/rotations"),
    ("PUT", "/v1/rotations/{name}"),
    ("GET", "/v1/rotations/{name}"),
    ("DELETE", "/v1/rotations/{name}"),
    ("POST", "/v1/rotations/{name}/rotate"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/checkpoints"),
    ("GET", "/v1/keys/{access_key_id}"),
    ("POST", "/v1/keys/{access_key_id}/reactivate"),
    ("POST", "/v1/requests"),
    ("GET", "/v1/requests"),
    ("GET", "/v1/requests/{request_id}"),
    ("DELETE", "/v1/requests/{request_id}"),
    ("POST", "/v1/requests/{request_id}/approve"),
    ("POST", "/v1/requests/{request_id}/deny"),
    ("POST", "/v1/requests/{request_id}/review"),
];

pub async fn handle(api: &Api, event: impl Into<HttpEvent>) -> ApiGatewayV2httpResponse {
    // Boxed: the routes' nested futures are deep enough that a function's `main`, which awaits
    // this one, exceeds rustc's query depth when laying them out inline.
    match Box::pin(route(api, event.into())).await {
        Ok(reply) => respond(reply.status, reply.body, &[]),
        Err(e) => {
            if matches!(e, ApiError::Throttled) {
                crate::ops::count(crate::ops::Metric::UpstreamThrottled, None);
            }
            if e.status() >= 500 {
                tracing::warn!(status = e.status(), error = %e, "request failed");
            }
            let mut headers = Vec::new();
            if let ApiError::MethodNotAllowed { allow, .. } = &e {
                headers.push(("allow", (*allow).to_owned()));
            }
            if let Some(seconds) = e.retry_after() {
                headers.push(("retry-after", seconds.to_string()));
            }
            respond(e.status(), Some(e.body()), &headers)
        }
    }
}

fn respond(
    status: u16,
    body: Option<Value>,
    extra: &[(&'static str, String)],
) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    // Responses may carry credentials: no cache anywhere may keep them.
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(*name, v);
        }
    }
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = body.map(|b| Body::Text(b.to_string()));
    r
}

async fn route(api: &Api, event: HttpEvent) -> Result<Reply, ApiError> {
    let app = &api.app;
    let req = Request::parse(app, event)?;
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    let not_allowed = |allow: &'static str| ApiError::MethodNotAllowed {
        method: method.to_owned(),
        allow,
    };
    let name = |s: &str| ProfileName::parse("name", s);
    match (segments.as_slice(), method) {
        (["v1", "profiles"], "GET") => profiles::list(app, &req).await,
        (["v1", "profiles"], _) => Err(not_allowed("GET")),
        (["v1", "profiles", n], "PUT") => profiles::put(app, &req, name(n)?).await,
        (["v1", "profiles", n], "GET") => profiles::get(app, &req, name(n)?).await,
        (["v1", "profiles", n], "DELETE") => profiles::delete(app, &req, name(n)?).await,
        (["v1", "profiles", _], _) => Err(not_allowed("GET, PUT, DELETE")),
        (["v1", "profiles", n, "credentials"], "POST") => {
            credentials::issue(api, &req, name(n)?).await
        }
        (["v1", "profiles", _, "credentials"], _) => Err(not_allowed("POST")),
        (["v1", "profiles", n, "revoke"], "POST") => revoke::profile(api, &req, name(n)?).await,
        (["v1", "profiles", _, "revoke"], _) => Err(not_allowed("POST")),
        (["v1", "keys", id], "GET") => keys::show(app, &req, id).await,
        (["v1", "keys", _], _) => Err(not_allowed("GET")),
        (["v1", "keys", id, "reactivate"], "POST") => keys::reactivate(app, &req, id).await,
        (["v1", "keys", _, "reactivate"], _) => Err(not_allowed("POST")),
        (["v1", "leases"], "GET") => leases::list(app, &req).await,
        (["v1", "leases"], _) => Err(not_allowed("GET")),
        (["v1", "leases", id], "DELETE") => revoke::lease(api, &req, id).await,
        (["v1", "leases", _], _) => Err(not_allowed("DELETE")),
        (["v1", "leases", id, "renew"], "POST") => leases::renew(app, &req, id).await,
        (["v1", "leases", _, "renew"], _) => Err(not_allowed("POST")),
        (["v1", "rotations"], "GET") => rotations::list(app, &req).await,
        (["v1", "rotations"], _) => Err(not_allowed("GET")),
        (["v1", "rotations", n], "PUT") => rotations::put(app, &req, name(n)?).await,
        (["v1", "rotations", n], "GET") => rotations::get(app, &req, name(n)?).await,
        (["v1", "rotations", n], "DELETE") => rotations::delete(app, &req, name(n)?).await,
        (["v1", "rotations", _], _) => Err(not_allowed("GET, PUT, DELETE")),
        (["v1", "rotations", n, "rotate"], "POST") => {
            rotations::rotate_now(api, &req, name(n)?).await
        }
        (["v1", "rotations", _, "rotate"], _) => Err(not_allowed("POST")),
        (["v1", "audit"], "GET") => audit::query(app, &req).await,
        (["v1", "audit"], _) => Err(not_allowed("GET")),
        (["v1", "audit", "checkpoints"], "GET") => audit::checkpoints(app, &req).await,
        (["v1", "audit", "checkpoints"], _) => Err(not_allowed("GET")),
        (["v1", "requests"], "POST") => requests::create(app, &req).await,
        (["v1", "requests"], "GET") => requests::list(app, &req).await,
        (["v1", "requests"], _) => Err(not_allowed("GET, POST")),
        (["v1", "requests", id], "GET") => requests::get(app, &req, id).await,
        (["v1", "requests", id], "DELETE") => requests::decide(app, &req, id, "cancel").await,
        (["v1", "requests", _], _) => Err(not_allowed("GET, DELETE")),
        (["v1", "requests", id, "approve"], "POST") => requests::approve(app, &req, id).await,
        (["v1", "requests", id, action @ ("deny" | "review")], "POST") => {
            requests::decide(app, &req, id, action).await
        }
        (["v1", "requests", _, "approve" | "deny" | "review"], _) => Err(not_allowed("POST")),
        _ => Err(ApiError::NotFound("no such route".into())),
    }
}
