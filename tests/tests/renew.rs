//! Lease renewal (SPEC §16): a live `iam_user` lease ends later, its expiry policy rewritten,
//! never past `max_duration_seconds` after its creation; only its owner or an admin; STS leases
//! answer `409`.

use chrono::{DateTime, Utc};
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY, STRANGER};
use keysmith_tests::aws::assumable_role;
use serde_json::{json, Value};

async fn issue(t: &TestApp, profile: &str, duration: u32) -> Value {
    let body = json!({"duration_seconds": duration}).to_string();
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some(&body),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn expiry_policy(t: &TestApp, user: &str) -> String {
    let doc = aws_sdk_iam::Client::new(&t.sdk)
        .get_user_policy()
        .user_name(user)
        .policy_name("keysmith-lease-expiry")
        .send()
        .await
        .unwrap()
        .policy_document;
    keysmith_tests::proxy::percent_decode(&doc)
}

#[tokio::test]
async fn a_renewed_iam_user_lease_ends_later_in_iam_and_in_its_record() {
    let t = TestApp::new().await;
    t.put_profile(
        "temp",
        json!({"credential_type": "iam_user",
            "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
            "permissions_boundary_arn": LEASE_BOUNDARY, "allowed_principals": [DEPLOYER],
            "max_duration_seconds": 7200}),
    )
    .await;
    let issued = issue(&t, "temp", 900).await;
    let id = issued["lease_id"].as_str().unwrap();
    let path = format!("/v1/leases/{id}/renew");
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    let user = leases["leases"][0]["user_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = time(&issued["expiration"]);

    // Someone else may not; beyond the profile's maximum since creation is a 400 naming the field.
    let (s, b) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": 3600}"#),
            Some(STRANGER),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": 7300}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
    let (s, b) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": "1h"}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
    assert!(expiry_policy(&t, &user)
        .await
        .contains(&before.format("%Y-%m-%dT%H:%M:%SZ").to_string()));

    let (s, renewed) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": 3600}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{renewed}");
    let after = time(&renewed["expiration"]);
    assert!(
        (after - Utc::now()).num_seconds() > 3500 && after > before,
        "{renewed}"
    );
    // IAM enforces the new end; the sweep will end the lease then, not before.
    let policy = expiry_policy(&t, &user).await;
    assert!(
        policy.contains(&after.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "{policy}"
    );
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(time(&leases["leases"][0]["expiration"]), after);
    assert!(t
        .app
        .leases
        .expired(after - chrono::Duration::seconds(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(t.app.leases.expired(after).await.unwrap().len(), 1);
    let renewals: Vec<_> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["event"].as_s().unwrap() == "Lease Renewed")
        .collect();
    assert_eq!(renewals.len(), 2, "one denied, one renewed");
    let ok = renewals
        .iter()
        .find(|i| i["outcome"].as_s().unwrap() == "success")
        .unwrap();
    assert_eq!(ok["lease_id"].as_s().unwrap(), id);
    assert_eq!(ok["principal"].as_s().unwrap(), DEPLOYER);

    // Not shorter than it already is; an admin may renew anyone's.
    let (s, b) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": 900}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
    let (s, b) = t
        .call(
            "POST",
            &path,
            Some(r#"{"duration_seconds": 5400}"#),
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // A revoked lease is no longer renewable.
    let (s, _) = t
        .call("DELETE", &format!("/v1/leases/{id}"), None, Some(DEPLOYER))
        .await;
    assert_eq!(s, 200);
    let (s, b) = t.call("POST", &path, None, Some(DEPLOYER)).await;
    assert_error(s, &b, 409, "conflict", None);
}

#[tokio::test]
async fn sts_leases_cannot_be_renewed() {
    let t = TestApp::new().await;
    let role = assumable_role(&t.sdk, "/keysmith/", "renew-deploy").await;
    t.put_profile(
        "deploy",
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let issued = issue(&t, "deploy", 900).await;
    let id = issued["lease_id"].as_str().unwrap();
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/leases/{id}/renew"),
            Some(r#"{"duration_seconds": 3600}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 409, "conflict", None);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("STS"),
        "{b}"
    );
    let (s, b) = t
        .call(
            "GET",
            &format!("/v1/leases/{id}/renew"),
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 405, "method_not_allowed", None);
}
