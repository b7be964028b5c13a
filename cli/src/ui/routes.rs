//! The page's own routes: the token and `Host` checks, then one signed API call each. Answers
//! carry only the fields the page shows (named below), never credentials.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use super::{page, random_hex, Ui};
use crate::client::{encode, ClientError};

const MAX_BODY: usize = 16 * 1024;
/// The header the page sends its token in (a custom header: a cross-site form cannot set it).
const TOKEN_HEADER: &str = "x-keysmith-token";

const LEASE_FIELDS: &[&str] = &[
    "lease_id",
    "profile",
    "principal",
    "credential_type",
    "access_key_id",
    "created_at",
    "expiration",
    "status",
];
const AUDIT_FIELDS: &[&str] = &[
    "time",
    "event",
    "level",
    "category",
    "outcome",
    "principal",
    "profile",
    "lease_id",
    "message",
];
const REQUEST_FIELDS: &[&str] = &[
    "request_id",
    "profile",
    "requester",
    "reason",
    "ticket",
    "duration_seconds",
    "break_glass",
    "status",
    "created_at",
    "expires_at",
    "digest",
    "approvals",
    "min_approvals",
];

fn reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The API's error, passed on with its status (the message never holds a secret).
fn api_error(e: &ClientError) -> Response<Full<Bytes>> {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => error(*status, code, message),
        other => error(502, "upstream_error", &other.to_string()),
    }
}

/// The named fields of each object in `items`.
fn pick(items: &[Value], fields: &[&str]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| {
                let mut out = Map::new();
                for f in fields {
                    if let Some(v) = item.get(*f).filter(|v| !v.is_null()) {
                        out.insert((*f).to_owned(), v.clone());
                    }
                }
                Value::Object(out)
            })
            .collect(),
    )
}

fn same(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The token from the header, or (for the page itself) from the URL's query.
fn authorized(ui: &Ui, req: &Request<Incoming>, page: bool) -> bool {
    let expected = ui.token.expose();
    if let Some(h) = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return same(h, expected);
    }
    page && url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "token" && same(&v, expected))
}

async fn json_body(req: Request<Incoming>) -> Option<Value> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .ok()?
        .to_bytes();
    if bytes.is_empty() {
        return Some(json!({}));
    }
    serde_json::from_slice(&bytes).ok()
}

/// A text field of the page's body, bounded.
fn text(body: &Value, field: &str) -> Option<String> {
    body[field]
        .as_str()
        .filter(|s| s.len() <= 1000)
        .map(str::to_owned)
}

pub async fn answer(ui: &Ui, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let port = ui.host.rsplit(':').next().unwrap_or_default();
    if host != ui.host && host != format!("localhost:{port}") {
        return error(403, "forbidden", "this page answers on 127.0.0.1 only");
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let is_page = method == Method::GET && (path == "/" || path == "/index.html");
    if !authorized(ui, &req, is_page) {
        return error(
            403,
            "forbidden",
            "missing or wrong token: open the URL `keysmith ui` printed",
        );
    }
    if is_page {
        return match random_hex(16) {
            Ok(nonce) => page(&nonce),
            Err(e) => error(500, "internal", &e.to_string()),
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let api = match ui.api().await {
        Ok(api) => api,
        Err(e) => return api_error(&e),
    };
    match (method, segments.as_slice()) {
        (Method::GET, ["api", "leases"]) => {
            match crate::admin::all_pages(&api, "/v1/leases?limit=100", "leases").await {
                Ok(items) => {
                    let live: Vec<Value> = items
                        .into_iter()
                        .filter(|l| matches!(l["status"].as_str(), Some("active" | "pending")))
                        .take(500)
                        .collect();
                    reply(200, &json!({"leases": pick(&live, LEASE_FIELDS)}))
                }
                Err(e) => api_error(&e),
            }
        }
        (Method::POST, ["api", "leases", id, "revoke"]) => {
            match crate::admin::leases::revoke(&api, id, Some("revoked from keysmith ui")).await {
                Ok(answer) => reply(200, &pick(std::slice::from_ref(&answer), LEASE_FIELDS)[0]),
                Err(e) => api_error(&e),
            }
        }
        (Method::GET, ["api", "audit"]) => {
            match api.call("GET", "/v1/audit?limit=25", None).await {
                Ok(page) => {
                    let items = page["items"].as_array().cloned().unwrap_or_default();
                    reply(200, &json!({"items": pick(&items, AUDIT_FIELDS)}))
                }
                Err(e) => api_error(&e),
            }
        }
        (Method::GET, ["api", "requests"]) => {
            match api
                .call("GET", "/v1/requests?status=pending&limit=100", None)
                .await
            {
                Ok(page) => {
                    let items = page["requests"].as_array().cloned().unwrap_or_default();
                    reply(
                        200,
                        &json!({"enabled": true, "requests": pick(&items, REQUEST_FIELDS)}),
                    )
                }
                // An API without access requests (SPEC §12) has no such route.
                Err(ClientError::Api { status: 404, .. }) => {
                    reply(200, &json!({"enabled": false, "requests": []}))
                }
                Err(e) => api_error(&e),
            }
        }
        (Method::POST, ["api", "requests", id, action @ ("approve" | "deny")]) => {
            let Some(body) = json_body(req).await else {
                return error(400, "invalid_request", "the body must be a JSON object");
            };
            let mut out = Map::new();
            if *action == "approve" {
                let Some(digest) = text(&body, "digest") else {
                    return error(400, "invalid_request", "approve needs the digest shown");
                };
                out.insert("digest".into(), json!(digest));
            }
            if let Some(c) = text(&body, "comment").filter(|c| !c.is_empty()) {
                out.insert("comment".into(), json!(c));
            }
            let path = format!("/v1/requests/{}/{action}", encode(id));
            match api.call("POST", &path, Some(&Value::Object(out))).await {
                Ok(answer) => reply(200, &pick(std::slice::from_ref(&answer), REQUEST_FIELDS)[0]),
                Err(e) => api_error(&e),
            }
        }
        _ => error(404, "not_found", "no such page"),
    }
}
