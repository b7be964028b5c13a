//! "Which key is this?" (SPEC §15): `GET /v1/keys/{access_key_id}` finds a lease's STS key, a
//! lease user's key and a rotated key, with their audit items and IAM's view; `404` otherwise.

use chrono::Utc;
use keysmith::audit::Origin;
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY};
use keysmith_tests::aws::assumable_role;
use serde_json::{json, Value};

async fn show(t: &TestApp, key: &str) -> (u16, Value) {
    t.call("GET", &format!("/v1/keys/{key}"), None, Some(ADMIN))
        .await
}

async fn issue(t: &TestApp, profile: &str) -> Value {
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some(r#"{"duration_seconds": 900}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

#[tokio::test]
async fn a_key_is_traced_to_its_lease_or_rotation_and_an_unknown_one_is_404() {
    let t = TestApp::new().await;
    let role = assumable_role(&t.sdk, "/keysmith/", "keys-deploy").await;
    t.put_profile(
        "deploy",
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    t.put_profile(
        "temp",
        json!({"credential_type": "iam_user", "permissions_boundary_arn": LEASE_BOUNDARY,
            "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
            "allowed_principals": [DEPLOYER]}),
    )
    .await;

    // An STS key (ASIA…): its lease, no IAM view.
    let sts = issue(&t, "deploy").await;
    let key = sts["access_key_id"].as_str().unwrap();
    let (s, r) = show(&t, key).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["owner"]["type"], "lease");
    assert_eq!(r["owner"]["lease"]["lease_id"], sts["lease_id"]);
    assert_eq!(r["owner"]["lease"]["principal"], DEPLOYER);
    assert_eq!(r["iam"], Value::Null);
    assert!(r["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["lease_id"] == sts["lease_id"] && i["outcome"] == "success"));

    // A lease user's key: its lease, and IAM's view of the key.
    let user = issue(&t, "temp").await;
    let key = user["access_key_id"].as_str().unwrap();
    let (s, r) = show(&t, key).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["owner"]["lease"]["lease_id"], user["lease_id"]);
    assert_eq!(r["iam"]["status"], "Active", "{r}");
    assert_eq!(r["iam"]["user_name"], r["owner"]["lease"]["user_name"]);

    // A rotated key: the rotation that created it.
    let (secret, _, old) = keysmith_tests::rotation::rotatable(&t.sdk, "keys").await;
    t.put_rotation("ci", json!({"secret_id": secret, "interval_days": 30}))
        .await;
    let origin = Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Origin::default()
    };
    let run = keysmith::jobs::run(&t.app, Utc::now(), &origin)
        .await
        .unwrap();
    let new = run.rotated[0].1.new_access_key_id.clone();
    let (s, r) = show(&t, &new).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["owner"]["type"], "rotation");
    assert_eq!(r["owner"]["policy"], "ci");
    assert!(
        r["owner"]["created_by"].as_str().unwrap().contains(&old),
        "names the key it replaced: {r}"
    );
    assert_eq!(r["iam"]["status"], "Active");

    // Never issued or rotated by Keysmith; not a key id; not an admin.
    let (s, r) = show(&t, "AKIAIOSFODNN7EXAMPLE").await;
    assert_error(s, &r, 404, "not_found", None);
    let (s, r) = show(&t, "not-a-key").await;
    assert_error(s, &r, 400, "invalid_request", Some("access_key_id"));
    let (s, r) = t
        .call("GET", &format!("/v1/keys/{new}"), None, Some(DEPLOYER))
        .await;
    assert_error(s, &r, 403, "forbidden", None);

    // Each lookup is audited.
    let lookups = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["event"].as_s().unwrap() == "Access Key Looked Up")
        .count();
    assert_eq!(lookups, 4);
}
