//! Calling the HTTP API in-process (the same `keysmith::api::handle` the function runs) against
//! moto, with HTTP API v2 events built like API Gateway builds them.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use aws_sdk_dynamodb::types::AttributeValue;
use keysmith::config::{Config, StsTarget};
use keysmith::names::{PolicyArn, PrincipalPattern};
use serde_json::{json, Value};

use crate::moto::Moto;

pub const ADMIN: &str = "arn:aws:iam::123456789012:user/admin";
pub const DEPLOYER: &str = "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice";
pub const STRANGER: &str = "arn:aws:iam::123456789012:user/mallory";
/// The one lease boundary test apps allow (`KEYSMITH_LEASE_BOUNDARY_ARNS`); moto needs no such
/// policy to exist.
pub const LEASE_BOUNDARY: &str = "arn:aws:iam::123456789012:policy/keysmith/lease-boundary";

pub struct TestApp {
    /// The shared services (what scheduled-rotation runs on); the API is built over them per call,
    /// so a test that changes them changes what the API sees.
    pub app: keysmith::App,
    /// The API's issuance, kept across calls (it caches base users per process, as in Lambda).
    pub issuer: keysmith::issue::Issuer,
    pub sdk: SdkConfig,
    pub state_table: String,
    pub audit_table: String,
}

impl TestApp {
    /// Fresh tables on the binary's shared moto server.
    pub async fn new() -> TestApp {
        let moto = Moto::shared();
        TestApp::on(moto, moto.sdk_config().await).await
    }

    pub async fn on(moto: &Moto, sdk: SdkConfig) -> TestApp {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
        moto.create_tables(&state, &audit);
        TestApp::with_tables(sdk, &state, &audit)
    }

    pub fn with_tables(sdk: SdkConfig, state: &str, audit: &str) -> TestApp {
        TestApp::configured(sdk, state, audit, |_| {})
    }

    /// Like [`TestApp::with_tables`], with the configuration changed by `edit` first.
    pub fn configured(
        sdk: SdkConfig,
        state: &str,
        audit: &str,
        edit: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = Config {
            state_table: state.to_owned(),
            audit_table: audit.to_owned(),
            admins: vec![PrincipalPattern::parse("admins", ADMIN).unwrap()],
            sts: StsTarget::default(),
            max_key_age_days: None,
            unused_key_days: None,
            secret_rotation_function_arn: None,
            canary_profile: None,
            key_age_dry_run: true,
            lease_boundary_arns: vec![PolicyArn::parse("boundary", LEASE_BOUNDARY).unwrap()],
            rotator_role_arn: None,
            lease_group_path: "/keysmith/".into(),
            revoker_role_name: None,
            rotation_queue_url: None,
            seal: keysmith::config::SealConfig::default(),
        };
        edit(&mut config);
        let app = keysmith::App::new(config, &sdk);
        TestApp {
            issuer: keysmith::Api::with(app.clone()).issuer,
            app,
            sdk,
            state_table: state.to_owned(),
            audit_table: audit.to_owned(),
        }
    }

    /// Sends a request as `caller` (None: no identity); returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        caller: Option<&str>,
    ) -> (u16, Value) {
        let (status, body, _) = self
            .call_event(request(method, path, body, caller).into())
            .await;
        (status, body)
    }

    /// issue-credentials' services over this app.
    pub fn api(&self) -> keysmith::Api {
        keysmith::Api {
            app: self.app.clone(),
            issuer: self.issuer.clone(),
        }
    }

    /// Sends any event (say, one with a JWT authorizer); returns status, JSON body and headers.
    pub async fn call_event(
        &self,
        event: keysmith::api::HttpEvent,
    ) -> (u16, Value, aws_lambda_events::http::HeaderMap) {
        let response = keysmith::api::handle(&self.api(), event).await;
        let body = match response.body {
            Some(Body::Text(t)) => {
                serde_json::from_str(&t).unwrap_or_else(|_| panic!("not JSON: {t}"))
            }
            None | Some(Body::Empty) => Value::Null,
            Some(other) => panic!("unexpected body {other:?}"),
        };
        let status = u16::try_from(response.status_code).unwrap();
        if status < 300 {
            crate::leaks::record_from(&body);
        } else {
            crate::leaks::check(&body.to_string(), "an error body");
        }
        (status, body, response.headers)
    }

    /// `PUT /v1/rotations/{name}` as an admin; a new policy (`201`).
    pub async fn put_rotation(&self, name: &str, policy: Value) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/rotations/{name}"),
                Some(&policy.to_string()),
                Some(ADMIN),
            )
            .await;
        assert_eq!(status, 201, "PUT rotation {name}: {body}");
    }

    pub async fn put_profile(&self, name: &str, profile: Value) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/profiles/{name}"),
                Some(&profile.to_string()),
                Some(ADMIN),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "PUT profile {name}: {status} {body}"
        );
    }

    /// Every item of the audit table, all pages (a test's own check, never Keysmith's way in).
    pub async fn audit_items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let db = aws_sdk_dynamodb::Client::new(&self.sdk);
        db.scan()
            .table_name(&self.audit_table)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap()
    }
}

/// An HTTP API payload v2 event with an IAM authorizer context.
pub fn request(
    method: &str,
    path: &str,
    body: Option<&str>,
    caller: Option<&str>,
) -> ApiGatewayV2httpRequest {
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let query: serde_json::Map<String, Value> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            // API Gateway hands the function decoded values.
            (k.to_owned(), json!(crate::proxy::percent_decode(v)))
        })
        .collect();
    let mut ctx = json!({
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "local.execute-api.us-east-1.amazonaws.com",
        "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.10", "userAgent": "keysmith-tests"},
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": "21/Nov/2026:15:04:05 +0000",
        "timeEpoch": 1_795_000_000_000_i64,
    });
    if let Some(arn) = caller {
        ctx["authorizer"] = json!({"iam": {"accessKey": "ASIAEXAMPLE", "accountId": "123456789012",
            "callerId": "AIDAEXAMPLE", "userArn": arn, "userId": "AIDAEXAMPLE"}});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {"content-type": "application/json"},
        "requestContext": ctx,
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if let Some(b) = body {
        event["body"] = json!(b);
    }
    serde_json::from_value(event).unwrap()
}

/// An HTTP API payload v2 event from a JWT authorizer with these `claims` (any JSON, as API
/// Gateway may send them).
pub fn jwt_request(
    method: &str,
    path: &str,
    body: Option<&str>,
    claims: Value,
) -> keysmith::api::HttpEvent {
    let mut event = serde_json::to_value(request(method, path, body, None)).unwrap();
    event["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    serde_json::from_value(event).unwrap()
}

/// Asserts the JSON error shape of SPEC §4.
pub fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, field: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
}

/// How many of the audit `items` are `event` about access key `key`.
pub fn key_events(items: &[HashMap<String, AttributeValue>], event: &str, key: &str) -> usize {
    items
        .iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == event
                && i.get("access_key_id")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(key)
        })
        .count()
}
