//! Request-time options (SPEC §16): a role chosen per request from the profile's `role_arns`.

use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER};
use keysmith_tests::aws::{assumable_role, caller_arn};
use keysmith_tests::moto::Moto;
use serde_json::{json, Value};

async fn issue(t: &TestApp, body: Value) -> (u16, Value) {
    t.call(
        "POST",
        "/v1/profiles/choose/credentials",
        Some(&body.to_string()),
        Some(DEPLOYER),
    )
    .await
}

#[tokio::test]
async fn a_request_chooses_a_listed_role_and_nothing_else() {
    let t = TestApp::new().await;
    let a = assumable_role(&t.sdk, "/keysmith/", "choice-a").await;
    let b = assumable_role(&t.sdk, "/keysmith/", "choice-b").await;
    let unlisted = assumable_role(&t.sdk, "/keysmith/", "choice-c").await;

    // role_arn or role_arns, never both; 1 to 50 distinct exact ARNs.
    for (body, field) in [
        (json!({"role_arn": a, "role_arns": [b]}), "role_arns"),
        (json!({"role_arns": []}), "role_arns"),
        (json!({"role_arns": [a, a]}), "role_arns"),
        (
            json!({"role_arns": ["arn:aws:iam::123456789012:role/*"]}),
            "role_arns",
        ),
        (
            json!({"role_arns": (0..51).map(|i| format!("arn:aws:iam::123456789012:role/r{i}")).collect::<Vec<_>>()}),
            "role_arns",
        ),
        (json!({}), "role_arn"),
    ] {
        let mut profile =
            json!({"credential_type": "assumed_role", "allowed_principals": [DEPLOYER]});
        profile
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let (s, r) = t
            .call(
                "PUT",
                "/v1/profiles/choose",
                Some(&profile.to_string()),
                Some(ADMIN),
            )
            .await;
        assert_error(s, &r, 400, "invalid_request", Some(field));
    }
    t.put_profile(
        "choose",
        json!({"credential_type": "assumed_role", "role_arns": [a, b], "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (_, got) = t
        .call("GET", "/v1/profiles/choose", None, Some(ADMIN))
        .await;
    assert_eq!(got["role_arns"], json!([a, b]), "{got}");

    // A listed role issues for that role, and the lease acts through it.
    let (s, creds) = issue(&t, json!({"role_arn": b})).await;
    assert_eq!(s, 200, "{creds}");
    let arn = caller_arn(
        Moto::shared(),
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
        creds["session_token"].as_str(),
    )
    .await
    .unwrap();
    assert!(arn.contains(":assumed-role/choice-b/"), "{arn}");
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(leases["leases"][0]["target"], json!(b));

    // An unlisted one is refused (and audited); none at all is a 400 naming the field.
    let (s, r) = issue(&t, json!({"role_arn": unlisted})).await;
    assert_error(s, &r, 403, "role_not_allowed", None);
    let (s, r) = issue(&t, json!({})).await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
    let (s, r) = issue(&t, json!({"role_arn": "deploy"})).await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
    let denied: Vec<_> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| {
            i["outcome"].as_s().unwrap() == "denied"
                && i["message"].as_s().unwrap().contains("choice-c")
        })
        .collect();
    assert_eq!(denied.len(), 1);

    // A profile revoke covers every role a request could have chosen.
    let (s, r) = t
        .call("POST", "/v1/profiles/choose/revoke", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{r}");
    let mut targets: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, [a.as_str(), b.as_str()], "{r}");

    // A fixed role_arn profile takes no role_arn in the request.
    t.put_profile(
        "fixed",
        json!({"credential_type": "assumed_role", "role_arn": a, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (s, r) = t
        .call(
            "POST",
            "/v1/profiles/fixed/credentials",
            Some(&json!({"role_arn": a}).to_string()),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
}
