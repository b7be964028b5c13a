//! The edge of every route: the event turned into a [`Request`] (identity from the request
//! context only, body decoded and capped), query-parameter and body checks, and the admin gate.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{ApiError, Caller, MAX_BODY};
use crate::audit::{AuditRecord, Category, Origin, Outcome};
use crate::names::Invalid;
use crate::App;

/// An HTTP API payload v2 event. `aws_lambda_events` types JWT claims as strings, but a claim
/// may arrive as a native JSON array (SPEC §3): the claims are lifted out raw before the rest is
/// read into the crate's type, so such an event is neither refused nor flattened.
#[derive(Debug, Clone)]
pub struct HttpEvent {
    pub request: ApiGatewayV2httpRequest,
    pub claims: Map<String, Value>,
}

impl<'de> Deserialize<'de> for HttpEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut event = Value::deserialize(d)?;
        let claims = match event
            .pointer_mut("/requestContext/authorizer/jwt/claims")
            .map(Value::take)
        {
            Some(Value::Object(claims)) => claims,
            _ => Map::new(),
        };
        let request = serde_json::from_value(event).map_err(serde::de::Error::custom)?;
        Ok(Self { request, claims })
    }
}

impl From<ApiGatewayV2httpRequest> for HttpEvent {
    fn from(request: ApiGatewayV2httpRequest) -> Self {
        let claims = request
            .request_context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| {
                jwt.claims
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        Self { request, claims }
    }
}

/// A request after the edge: identity checked, body decoded and size-limited.
pub(super) struct Request {
    pub method: String,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub caller: Caller,
    pub origin: Origin,
}

pub(super) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self { status, body: None }
    }
}

impl Request {
    pub fn parse(app: &App, event: HttpEvent) -> Result<Self, ApiError> {
        let HttpEvent {
            request: event,
            claims,
        } = event;
        let ctx = &event.request_context;
        let caller = Caller::from_context(ctx, &claims).ok_or(ApiError::Unauthenticated)?;
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
        Ok(Self {
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

    /// Only the listed query parameters are accepted: a misspelt one is a 400, not silently
    /// ignored.
    pub fn query<'a>(
        &'a self,
        allowed: &[&str],
    ) -> Result<impl Fn(&str) -> Option<&'a str>, ApiError> {
        if let Some((k, _)) = self
            .query
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            return Err(Invalid::new(k.clone(), "is not a parameter of this route").into());
        }
        Ok(move |name: &str| {
            self.query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    }

    pub fn no_query(&self) -> Result<(), ApiError> {
        self.query(&[]).map(drop)
    }

    /// An action's body: nothing, or `{}`.
    pub fn empty_or_empty_object(&self) -> Result<(), ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace)
            || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&self.body)
                .is_ok_and(|m| m.is_empty())
        {
            Ok(())
        } else {
            Err(Invalid::new("body", "must be empty or {}").into())
        }
    }

    pub fn no_body(&self) -> Result<(), ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err(Invalid::new("body", "must be empty for this route").into())
        }
    }

    pub fn is_admin(&self, app: &App) -> bool {
        app.config.is_admin(&self.caller.principals)
    }

    /// Admin routes. A refusal is audited like any other denial, before the caller hears of it.
    pub async fn require_admin(&self, app: &App, what: &str) -> Result<(), ApiError> {
        if self.is_admin(app) {
            return Ok(());
        }
        let record = AuditRecord::new(
            &self.origin,
            Category::Config,
            "Admin Access Denied",
            Outcome::Denied,
            format!(
                "{} is not an admin and may not {what}.",
                self.caller.principal
            ),
        );
        app.audit.write(&record).await?;
        Err(ApiError::Forbidden(format!(
            "admin rights are required to {what}"
        )))
    }
}

pub(super) fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Invalid::new("limit", format!("must be an integer from 1 to {max}")).into()),
    }
}
