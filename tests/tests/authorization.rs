//! Authorization that cannot be talked around (SPEC §3–5, turn 2): each test is an attack that
//! worked before, against moto.

use aws_sdk_dynamodb::types::AttributeValue;
use keysmith_tests::api::{
    assert_error, jwt_request, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY, STRANGER,
};
use serde_json::{json, Value};

fn role_profile(extra: Value) -> Value {
    let mut p = json!({
        "credential_type": "assumed_role",
        "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
        "allowed_principals": [DEPLOYER],
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn put(t: &TestApp, name: &str, profile: &Value) -> (u16, Value) {
    t.call(
        "PUT",
        &format!("/v1/profiles/{name}"),
        Some(&profile.to_string()),
        Some(ADMIN),
    )
    .await
}

#[tokio::test]
async fn endpoints_that_send_secrets_elsewhere_are_refused() {
    let t = TestApp::new().await;
    for endpoint in [
        "http://localhost:80@evil.example",
        "http://127.0.0.1:80@evil.example",
        "https://user@sts.amazonaws.com",
        "http://127.0.0.1.evil.example",
        "https://sts.amazonaws.com/?Action=x",
    ] {
        let (s, b) = put(
            &t,
            "p",
            &role_profile(json!({"sts_endpoint": endpoint, "sts_region": "us-east-1"})),
        )
        .await;
        assert_error(s, &b, 400, "invalid_request", Some("sts_endpoint"));
    }
    // A host that is not STS's own does not say which region to sign for.
    let (s, b) = put(
        &t,
        "p",
        &role_profile(json!({"sts_endpoint": "https://vpce-1.sts.eu-west-1.vpce.amazonaws.com"})),
    )
    .await;
    assert_error(s, &b, 400, "invalid_request", Some("sts_region"));
    let (s, b) = put(
        &t,
        "p",
        &role_profile(json!({"sts_endpoint": "https://sts.eu-west-1.amazonaws.com"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test]
async fn patterns_that_reach_other_accounts_or_everyone_are_refused() {
    let t = TestApp::new().await;
    for pattern in [
        "*",
        "arn:aws:iam::*:user/alice",
        "arn:*:user/alice",
        "arn:aws:iam::12345678901?:user/alice",
        "*:alice",
    ] {
        let (s, b) = put(
            &t,
            "p",
            &role_profile(json!({"allowed_principals": [DEPLOYER, pattern]})),
        )
        .await;
        assert_error(s, &b, 400, "invalid_request", Some("allowed_principals[1]"));
    }
    // `*` stays inside its component: a role pattern does not reach a user of the same name.
    put(
        &t,
        "p",
        &role_profile(json!({"allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*"]})),
    )
    .await;
    let (s, _) = t
        .call(
            "POST",
            "/v1/profiles/p/credentials",
            None,
            Some("arn:aws:iam::123456789012:user/Deployers-x"),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn non_admins_cannot_tell_missing_profiles_from_forbidden_ones() {
    let t = TestApp::new().await;
    put(&t, "exists", &role_profile(json!({}))).await;
    let (s1, forbidden) = t
        .call(
            "POST",
            "/v1/profiles/exists/credentials",
            None,
            Some(STRANGER),
        )
        .await;
    let (s2, missing) = t
        .call(
            "POST",
            "/v1/profiles/absent/credentials",
            None,
            Some(STRANGER),
        )
        .await;
    assert_eq!((s1, s2), (403, 403));
    assert_eq!(
        forbidden.to_string().replace("exists", "X"),
        missing.to_string().replace("absent", "X"),
        "the same answer, name aside"
    );
    // Both are audited as denials, each with its real reason (admins read the trail).
    let items = t.audit_items().await;
    let denied: Vec<&str> = items
        .iter()
        .filter(|i| i["outcome"].as_s().unwrap() == "denied")
        .map(|i| i["message"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(
        denied.iter().any(|m| m.contains("does not exist")),
        "{denied:?}"
    );
    // Admins are told the truth.
    let (s, b) = t
        .call("POST", "/v1/profiles/absent/credentials", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 404, "not_found", None);
}

#[tokio::test]
async fn a_stored_profile_that_breaks_the_new_rules_is_refused_not_widened() {
    let t = TestApp::new().await;
    // Written by an older version, which accepted account wildcards.
    let doc = role_profile(json!({"allowed_principals": ["arn:aws:iam::*:user/mallory"]}));
    let db = aws_sdk_dynamodb::Client::new(&t.sdk);
    db.put_item()
        .table_name(&t.state_table)
        .item("pk", AttributeValue::S("profile".into()))
        .item("sk", AttributeValue::S("old".into()))
        .item("doc", AttributeValue::S(doc.to_string()))
        .send()
        .await
        .unwrap();
    let (s, b) = t
        .call("POST", "/v1/profiles/old/credentials", None, Some(STRANGER))
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t.call("GET", "/v1/profiles/old", None, Some(ADMIN)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["invalid"]["field"], "allowed_principals[0]", "{b}");
    let (s, b) = t.call("GET", "/v1/profiles", None, Some(ADMIN)).await;
    assert_eq!(
        (s, &b["profiles"][0]["invalid"]["field"]),
        (200, &json!("allowed_principals[0]"))
    );
    // An admin fixes it by saving it again.
    let (s, b) = put(&t, "old", &role_profile(json!({}))).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn jwt_groups_are_read_exactly_as_api_gateway_sends_them() {
    let t = TestApp::new().await;
    put(
        &t,
        "grp",
        &role_profile(json!({"allowed_principals": ["group:deployers"]})),
    )
    .await;
    let path = "/v1/profiles/grp/credentials?format=json";
    let status = |claims: Value| {
        let t = &t;
        async move {
            let (s, b, _) = t
                .call_event(jwt_request(
                    "POST",
                    path,
                    Some("{\"duration_seconds\": 900}"),
                    claims,
                ))
                .await;
            // Allowed callers reach STS (moto answers); the rest stop at 403.
            assert!(s == 200 || s == 403, "{s} {b}");
            s
        }
    };
    assert_eq!(
        status(json!({"sub": "u1", "groups": "[ops deployers]"})).await,
        200
    );
    assert_eq!(
        status(json!({"sub": "u2", "cognito:groups": ["ops", "deployers"]})).await,
        200
    );
    assert_eq!(
        status(json!({"sub": "u3", "groups": "deployers"})).await,
        200
    );
    // Commas never split: nobody is in a group called "ops,deployers" or its halves.
    assert_eq!(
        status(json!({"sub": "u4", "groups": "ops,deployers"})).await,
        403
    );
    assert_eq!(
        status(json!({"sub": "u5", "groups": "[ops,deployers]"})).await,
        403
    );
}

#[tokio::test]
async fn one_caller_cannot_hold_more_than_max_active_leases() {
    let t = TestApp::new().await;
    let boundary = LEASE_BOUNDARY;
    let profile = json!({
        "credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
        "permissions_boundary_arn": boundary,
        "max_active_leases": 2,
        "allowed_principals": [DEPLOYER, ADMIN],
    });
    let (s, b) = put(&t, "cap", &profile).await;
    assert_eq!(s, 201, "{b}");
    let body = r#"{"duration_seconds": 900}"#;
    let issue = |caller: &'static str| {
        let t = &t;
        async move {
            t.call_event(
                keysmith_tests::api::request(
                    "POST",
                    "/v1/profiles/cap/credentials",
                    Some(body),
                    Some(caller),
                )
                .into(),
            )
            .await
        }
    };
    let (s, first, _) = issue(DEPLOYER).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(issue(DEPLOYER).await.0, 200);
    let (s, b, headers) = issue(DEPLOYER).await;
    assert_error(s, &b, 429, "lease_limit", None);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // The cap is per caller: somebody else still gets one.
    assert_eq!(issue(ADMIN).await.0, 200);
    // Ending a lease frees its place, once.
    let lease = first["lease_id"].as_str().unwrap();
    for _ in 0..2 {
        let (s, b) = t
            .call(
                "DELETE",
                &format!("/v1/leases/{lease}"),
                None,
                Some(DEPLOYER),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(issue(DEPLOYER).await.0, 200);
    assert_eq!(issue(DEPLOYER).await.0, 429);
    // A non-admin lists only their own leases (through the by_owner index).
    let (s, mine) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(s, 200);
    let owners: Vec<&str> = mine["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["principal"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 3, "{mine}");
    assert!(owners.iter().all(|p| *p == DEPLOYER), "{owners:?}");
    let (_, all) = t.call("GET", "/v1/leases", None, Some(ADMIN)).await;
    assert_eq!(all["leases"].as_array().unwrap().len(), 4, "{all}");
}

#[tokio::test]
async fn max_active_leases_is_bounded_and_applies_to_every_type() {
    let t = TestApp::new().await;
    for n in [0, 101, -1] {
        let p = json!({"credential_type": "iam_user", "permissions_boundary_arn": LEASE_BOUNDARY,
            "policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "max_active_leases": n});
        let (s, b) = put(&t, "p", &p).await;
        assert_error(s, &b, 400, "invalid_request", Some("max_active_leases"));
    }
    let (s, b) = put(&t, "p", &role_profile(json!({"max_active_leases": 0}))).await;
    assert_error(s, &b, 400, "invalid_request", Some("max_active_leases"));
    // SPEC §10a: every credential type has the cap.
    let (s, b) = put(&t, "p", &role_profile(json!({"max_active_leases": 3}))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["max_active_leases"], 3);
}
