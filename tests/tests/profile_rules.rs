//! Profiles against moto: the kill switch survives an edit that leaves it out and its transitions
//! are audited as such (SPEC §10); a profile AWS would refuse is a `400` naming the field at `PUT`,
//! before anything reaches STS (issue 23).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER};
use serde_json::{json, Value};

fn role_profile() -> Value {
    json!({
        "credential_type": "assumed_role",
        "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
        "max_duration_seconds": 3600,
        "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*"]
    })
}

fn s<'a>(item: &'a HashMap<String, AttributeValue>, key: &str) -> &'a str {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

async fn put(t: &TestApp, name: &str, body: &Value) -> (u16, Value) {
    t.call(
        "PUT",
        &format!("/v1/profiles/{name}"),
        Some(&body.to_string()),
        Some(ADMIN),
    )
    .await
}

#[tokio::test]
async fn a_put_without_enabled_keeps_the_kill_switch_and_its_transitions_are_audited() {
    let t = TestApp::new().await;
    let mut off = role_profile();
    off["enabled"] = json!(false);
    let (st, b) = put(&t, "deploy", &off).await;
    assert_eq!((st, &b["enabled"]), (201, &json!(false)), "{b}");

    // An edit that leaves `enabled` out keeps the profile switched off.
    let mut edited = role_profile();
    edited["description"] = json!("edited");
    let (st, b) = put(&t, "deploy", &edited).await;
    assert_eq!((st, &b["enabled"]), (200, &json!(false)), "{b}");
    let (_, got) = t
        .call("GET", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_eq!(got["enabled"], false);
    assert_eq!(got["description"], "edited");
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_error(st, &b, 403, "profile_disabled", None);

    let mut on = role_profile();
    on["enabled"] = json!(true);
    let (st, b) = put(&t, "deploy", &on).await;
    assert_eq!((st, &b["enabled"]), (200, &json!(true)));
    // Left out again: stays on.
    let (st, b) = put(&t, "deploy", &role_profile()).await;
    assert_eq!((st, &b["enabled"]), (200, &json!(true)));
    let (st, _) = put(&t, "deploy", &off).await;
    assert_eq!(st, 200);

    let items = t.audit_items().await;
    let mut events: Vec<(&str, &str, &str)> = items
        .iter()
        .filter(|i| s(i, "profile") == "deploy" && s(i, "event").starts_with("Profile "))
        .map(|i| (s(i, "time"), s(i, "event"), s(i, "level")))
        .collect();
    events.sort();
    let events: Vec<(&str, &str)> = events.iter().map(|(_, e, l)| (*e, *l)).collect();
    assert_eq!(
        events,
        [
            ("Profile Created", "INFO"),
            ("Profile Replaced", "INFO"),
            ("Profile Enabled", "INFO"),
            ("Profile Replaced", "INFO"),
            ("Profile Disabled", "WARN"),
        ]
    );
}
