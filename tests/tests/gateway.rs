//! Through the local gateway, as a client sees the API: the OpenAPI document and the router agree,
//! identity comes only from the gateway, 200 concurrent issuances are each audited exactly once,
//! and a bounded schemathesis run finds no 5xx.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keysmith::api::ROUTES;
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::gateway::Gateway;
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{function_binary, repo_root, venv};
use serde_json::{json, Value};

/// `infra/openapi.yaml` as JSON (PyYAML from the project's venv reads it).
fn openapi() -> Value {
    let out = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo_root().join("infra/openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_openapi_document_and_the_router_agree() {
    let doc = openapi();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "put", "post", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, routed,
        "infra/openapi.yaml and keysmith::api::ROUTES differ"
    );

    // The router answers every listed route, and only those methods on those paths.
    let t = TestApp::new().await;
    let concrete = |p: &str| {
        p.replace("{name}", "probe")
            .replace("{lease_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{request_id}", &uuid::Uuid::new_v4().to_string())
    };
    for (method, path) in ROUTES {
        let (s, b) = t.call(method, &concrete(path), None, Some(ADMIN)).await;
        assert!(
            s != 405 && b["error"]["message"] != "no such route",
            "{method} {path}: {s} {b}"
        );
    }
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if !ROUTES.contains(&(method, path)) {
                let (s, _) = t.call(method, &concrete(path), None, Some(ADMIN)).await;
                assert_eq!(s, 405, "{method} {path}");
            }
        }
    }
}

struct Stack {
    moto: Moto,
    state: String,
    audit: String,
}

async fn stack(principal: Option<&str>) -> (Stack, Gateway) {
    let moto = Moto::start();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
    moto.create_tables(&state, &audit);
    let function = FunctionProcess::start(
        &function_binary("issue-credentials"),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", &state),
            ("KEYSMITH_AUDIT_TABLE", &audit),
            ("KEYSMITH_ADMINS", ADMIN),
        ],
    )
    .await;
    let gateway = Gateway::start(Arc::new(function), principal.map(str::to_owned), 0).await;
    (Stack { moto, state, audit }, gateway)
}

async fn send(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .unwrap();
    let r = client.request(req).await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn identity_comes_from_the_gateway_and_load_is_audited_once_per_key() {
    let (s, gw) = stack(Some(ADMIN)).await;
    let role =
        keysmith_tests::aws::assumable_role(&s.moto.sdk_config().await, "/keysmith/", "deploy")
            .await;
    let profile =
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [ADMIN]});
    let (status, b) = send(
        "PUT",
        &format!("{}/v1/profiles/deploy", gw.endpoint),
        Some(&profile.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{b}");

    // 200 concurrent issuance requests: each succeeds (or is throttled), each key audited once.
    let url = format!("{}/v1/profiles/deploy/credentials", gw.endpoint);
    let results =
        futures_util::future::join_all((0..200).map(|_| send("POST", &url, Some("{}"), &[]))).await;
    let issued: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let keys: BTreeSet<&str> = issued
        .iter()
        .map(|b| b["access_key_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), issued.len(), "every issuance is a distinct key");
    let t = TestApp::with_tables(s.moto.sdk_config().await, &s.state, &s.audit);
    let items = t.audit_items().await;
    let audited: Vec<&str> = items
        .iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == "AWS STS Temporary"
                && i["outcome"].as_s().unwrap() == "success"
        })
        .map(|i| i["access_key_id"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(
        audited.len(),
        issued.len(),
        "exactly one audit item per issued key"
    );
    assert_eq!(audited.iter().copied().collect::<BTreeSet<_>>(), keys);

    // Nothing a client sends can change who it is.
    let (status, b) = send(
        "GET",
        &format!("{}/v1/audit?limit=1", gw.endpoint),
        None,
        &[
            (
                "x-amzn-iam-user-arn",
                "arn:aws:iam::123456789012:user/mallory",
            ),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAMALLORY/x"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["items"][0]["principal"], ADMIN);
    let (anon_stack, anonymous) = stack(None).await;
    let (status, b) = send(
        "GET",
        &format!("{}/v1/profiles", anonymous.endpoint),
        None,
        &[("x-amzn-iam-user-arn", ADMIN)],
    )
    .await;
    assert_eq!(
        (status, &b["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    drop(anon_stack);
}

/// Bounded in `make test`; `make fuzz` runs the same with at least 10 000 requests.
#[tokio::test]
async fn schemathesis_finds_no_server_errors() {
    let (_stack, gw) = stack(Some(ADMIN)).await;
    let examples = std::env::var("KEYSMITH_FUZZ_EXAMPLES").unwrap_or_else(|_| "15".into());
    let out = tokio::process::Command::new(venv().join("bin/st"))
        .args([
            "run",
            "infra/openapi.yaml",
            "--url",
            &gw.endpoint,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            &examples,
            "--seed",
            "7",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .current_dir(repo_root())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    eprintln!(
        "{}",
        text.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
