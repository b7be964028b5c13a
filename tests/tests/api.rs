//! The HTTP API against moto: profiles, validation, identity, authorization, audit.

use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, STRANGER};
use serde_json::{json, Value};

fn assumed_role_profile() -> Value {
    json!({
        "credential_type": "assumed_role",
        "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
        "default_duration_seconds": 1800,
        // Role chaining (no base key): AWS's one-hour cap.
        "max_duration_seconds": 3600,
        "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*"]
    })
}

#[tokio::test]
async fn profile_lifecycle_is_admin_only_and_audited() {
    let t = TestApp::new().await;
    let body = assumed_role_profile().to_string();
    let (s, created) = t
        .call("PUT", "/v1/profiles/deploy", Some(&body), Some(ADMIN))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "deploy");
    assert_eq!(created["default_duration_seconds"], 1800);
    let (s, _) = t
        .call("PUT", "/v1/profiles/deploy", Some(&body), Some(ADMIN))
        .await;
    assert_eq!(s, 200);
    let (s, got) = t
        .call("GET", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_eq!((s, &got), (200, &created));

    for name in ["a1", "b2", "c3"] {
        t.put_profile(name, assumed_role_profile()).await;
    }
    let (s, page) = t
        .call("GET", "/v1/profiles?limit=3", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = page["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "b2", "c3"]);
    let next = page["next"].as_str().unwrap();
    let (_, rest) = t
        .call(
            "GET",
            &format!("/v1/profiles?limit=3&next={next}"),
            None,
            Some(ADMIN),
        )
        .await;
    assert_eq!(rest["profiles"][0]["name"], "deploy");

    // Non-admins can neither read nor change profiles, and each refusal is audited.
    for (method, path) in [
        ("GET", "/v1/profiles/deploy"),
        ("GET", "/v1/profiles"),
        ("DELETE", "/v1/profiles/deploy"),
        ("GET", "/v1/audit"),
    ] {
        let (s, b) = t.call(method, path, None, Some(DEPLOYER)).await;
        assert_error(s, &b, 403, "forbidden", None);
    }
    let (s, b) = t
        .call("PUT", "/v1/profiles/x", Some(&body), Some(DEPLOYER))
        .await;
    assert_error(s, &b, 403, "forbidden", None);

    let (s, b) = t
        .call("DELETE", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_eq!((s, b), (204, Value::Null));
    let (s, b) = t
        .call("GET", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 404, "not_found", None);
    let (s, b) = t
        .call("DELETE", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 404, "not_found", None);

    let items = t.audit_items().await;
    let count = |event: &str| {
        items
            .iter()
            .filter(|i| i["event"].as_s().unwrap() == event)
            .count()
    };
    assert_eq!(count("Profile Created"), 4);
    assert_eq!(count("Profile Replaced"), 1);
    assert_eq!(count("Profile Deleted"), 1);
    assert_eq!(count("Admin Access Denied"), 5);
    let denied = items
        .iter()
        .find(|i| i["event"].as_s().unwrap() == "Admin Access Denied")
        .unwrap();
    assert_eq!(denied["outcome"].as_s().unwrap(), "denied");
    assert_eq!(denied["principal"].as_s().unwrap(), DEPLOYER);
    assert_eq!(denied["category"].as_s().unwrap(), "Config");
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field() {
    let t = TestApp::new().await;
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{not json".into(), 400, "invalid_request", "body"),
        (r#"{"credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/r", "colour": 1}"#.into(), 400, "invalid_request", "colour"),
        (r#"{"credential_type": 5}"#.into(), 400, "invalid_request", "credential_type"),
        (r#"{"credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/r", "max_duration_seconds": "x"}"#.into(), 400, "invalid_request", "max_duration_seconds"),
        (r#"{"credential_type": "session_token"}"#.into(), 400, "invalid_request", "source_secret_id"),
        (r#"{"credential_type": "federation_token"}"#.into(), 400, "invalid_request", "source_secret_id"),
        (r#"{"credential_type": "assumed_role", "role_arn": "nope"}"#.into(), 400, "invalid_request", "role_arn"),
        (r#"{"credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/r", "allowed_principals": [1]}"#.into(), 400, "invalid_request", "allowed_principals[0]"),
        (r#"{"credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/r", "sts_endpoint": "http://evil.example.com"}"#.into(), 400, "invalid_request", "sts_endpoint"),
        (r#"[]"#.into(), 400, "invalid_request", "body"),
        (format!(r#"{{"credential_type": "assumed_role", "description": "{}"}}"#, "x".repeat(70 * 1024)), 413, "payload_too_large", "body"),
    ];
    for (body, status, code, field) in cases {
        let (s, b) = t
            .call("PUT", "/v1/profiles/p", Some(&body), Some(ADMIN))
            .await;
        assert_error(s, &b, status, code, Some(field));
    }
    let (s, b) = t
        .call("PUT", "/v1/profiles/bad%20name", Some("{}"), Some(ADMIN))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("name"));
    let (s, b) = t
        .call(
            "GET",
            &format!("/v1/profiles/{}", "x".repeat(65)),
            None,
            Some(ADMIN),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("name"));
    let (s, b) = t
        .call("GET", "/v1/profiles?limit=0", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("limit"));
    let (s, b) = t
        .call("GET", "/v1/profiles?colour=red", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("colour"));
    let (s, b) = t
        .call("GET", "/v1/audit?since=yesterday", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("since"));
    let (s, b) = t.call("GET", "/v1/nothing", None, Some(ADMIN)).await;
    assert_error(s, &b, 404, "not_found", None);
    let (s, b) = t
        .call("PATCH", "/v1/profiles/p", Some("{}"), Some(ADMIN))
        .await;
    assert_error(s, &b, 405, "method_not_allowed", None);
    // Nothing half-done: none of the refused PUTs stored a profile.
    let (_, list) = t.call("GET", "/v1/profiles", None, Some(ADMIN)).await;
    assert_eq!(list["profiles"], json!([]));
}

#[tokio::test]
async fn durations_mfa_and_identity_rules() {
    let t = TestApp::new().await;
    t.put_profile("deploy", assumed_role_profile()).await;
    t.put_profile(
        "mfa",
        json!({
            "credential_type": "session_token", "source_secret_id": "keysmith/none",
            "mfa_serial_number": "arn:aws:iam::123456789012:mfa/alice",
            "allowed_principals": [DEPLOYER]
        }),
    )
    .await;
    let t = &t;
    let post = |profile: &str, body: Value| {
        let path = format!("/v1/profiles/{profile}/credentials");
        async move {
            t.call("POST", &path, Some(&body.to_string()), Some(DEPLOYER))
                .await
        }
    };
    for (d, why) in [
        (899, "below 900"),
        (129_601, "above 129600"),
        (43_201, "above assumed_role's 43200"),
        (3601, "above the profile max"),
    ] {
        let (s, b) = post("deploy", json!({"duration_seconds": d})).await;
        assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("duration_seconds"),
            "{why}: {b}"
        );
    }
    let (s, b) = post("deploy", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["lease_duration"], 1800,
        "no duration means the profile default"
    );
    let (s, b) = post("deploy", json!({"duration_seconds": 3600})).await;
    assert_eq!((s, &b["lease_duration"]), (200, &json!(3600)));

    let (s, b) = post("mfa", json!({})).await;
    assert_error(s, &b, 400, "invalid_request", Some("token_code"));

    // Identity comes from the request context only.
    let (s, b) = t
        .call("POST", "/v1/profiles/deploy/credentials", Some("{}"), None)
        .await;
    assert_error(s, &b, 401, "unauthenticated", None);
    let (s, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some("{}"),
            Some(STRANGER),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    assert!(b.get("secret_access_key").is_none());

    let items = t.audit_items().await;
    let denied: Vec<_> = items
        .iter()
        .filter(|i| i["outcome"].as_s().unwrap() == "denied")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["principal"].as_s().unwrap(), STRANGER);
    assert_eq!(denied[0]["profile"].as_s().unwrap(), "deploy");
    assert_eq!(denied[0]["event"].as_s().unwrap(), "AWS STS Temporary");
    assert_eq!(denied[0]["level"].as_s().unwrap(), "WARN");
}

#[tokio::test]
async fn no_credentials_without_an_audit_trail() {
    let t = TestApp::new().await;
    t.put_profile("deploy", assumed_role_profile()).await;
    // The same state table, but an audit table that does not exist.
    let broken = TestApp::with_tables(t.sdk.clone(), &t.state_table, "no-such-audit-table");
    let (s, b) = broken
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 503, "audit_unavailable", None);
    let text = b.to_string();
    assert!(
        !text.contains("secret_access_key") && !text.contains("session_token"),
        "{text}"
    );
    // A profile change cannot happen unaudited either: it is refused whole.
    let (s, b) = broken
        .call("DELETE", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 503, "audit_unavailable", None);
    let (s, _) = t
        .call("GET", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200, "the profile survived the refused delete");
}

#[tokio::test]
async fn audit_trail_is_queryable_by_principal_profile_and_time() {
    let t = TestApp::new().await;
    t.put_profile("deploy", assumed_role_profile()).await;
    t.put_profile("other", assumed_role_profile()).await;
    for profile in ["deploy", "deploy", "other"] {
        let (s, _) = t
            .call(
                "POST",
                &format!("/v1/profiles/{profile}/credentials"),
                Some("{}"),
                Some(DEPLOYER),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some("{}"),
            Some(STRANGER),
        )
        .await;
    assert_eq!(s, 403);

    let t = &t;
    let get = |q: &str| {
        let path = format!("/v1/audit?{q}");
        async move {
            let (s, b) = t.call("GET", &path, None, Some(ADMIN)).await;
            assert_eq!(s, 200, "{b}");
            b
        }
    };
    let by_profile = get("profile=deploy&event=AWS%20STS%20Temporary").await;
    assert_eq!(
        by_profile["items"].as_array().unwrap().len(),
        3,
        "{by_profile}"
    );
    let by_principal = get(&format!("principal={DEPLOYER}")).await;
    let items = by_principal["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let times: Vec<&str> = items.iter().map(|i| i["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let both = get(&format!("principal={DEPLOYER}&profile=other")).await;
    assert_eq!(both["items"].as_array().unwrap().len(), 1);

    // Time range over the day partitions, paged two at a time: 2 profile puts + 4 issuances, and
    // the `Audit Read` items of the queries above (SPEC §13); a page never lists its own read.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for pages in 1.. {
        assert!(pages <= 20, "paging does not terminate");
        let q = match &next {
            Some(n) => format!("limit=2&next={n}"),
            None => "limit=2".to_owned(),
        };
        let page = get(&q).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["event"] != "Audit Read")
                .map(|i| i["time"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    // A window wholly in the future is refused, not a 502 from DynamoDB (issue 26).
    let (s, future) = t
        .call(
            "GET",
            "/v1/audit?since=2099-01-01T00:00:00Z&until=2099-01-02T00:00:00Z",
            None,
            Some(ADMIN),
        )
        .await;
    assert_eq!((s, &future["error"]["field"]), (400, &json!("since")));
}
