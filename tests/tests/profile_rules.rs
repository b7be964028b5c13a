//! Profiles against moto: the kill switch survives an edit that leaves it out and its transitions
//! are audited as such (SPEC §10); a profile AWS would refuse is a `400` naming the field at `PUT`,
//! before anything reaches STS (issue 23).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::CaptureProxy;
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

/// An `iam_user` profile with a policy of `size` characters (without whitespace).
fn iam_user_profile(size: usize) -> Value {
    let doc = |n: usize| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{}", "b".repeat(n))}]})
    };
    let base = doc(0).to_string().len();
    json!({"credential_type": "iam_user", "policy_document": doc(size - base),
        "permissions_boundary_arn": keysmith_tests::api::LEASE_BOUNDARY, "allowed_principals": [DEPLOYER]})
}

/// Each profile AWS would refuse is a `400` naming its field at `PUT`, nothing is stored, and no
/// request reaches STS (every AWS call of the app goes through a recording proxy).
#[tokio::test]
async fn profiles_aws_would_refuse_are_a_400_naming_the_field_and_reach_no_sts() {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let sdk = Moto::sdk_config_at(
        &proxy.endpoint,
        aws_sdk_sts::config::Credentials::new("test", "test", None, None, "test"),
    )
    .await;
    let t = TestApp::on(moto, sdk).await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (inside, outside) = (format!("in-{id}"), format!("out-{id}"));
    for (name, path) in [(&inside, "/keysmith/"), (&outside, "/admins/")] {
        iam.create_group()
            .path(path)
            .group_name(name)
            .send()
            .await
            .unwrap();
    }
    let with = |mut base: Value, key: &str, value: Value| {
        base[key] = value;
        base
    };
    let expiry = keysmith::users::expiry_policy(chrono::Utc::now())
        .chars()
        .filter(|c| !c.is_whitespace())
        .count();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an iam_user policy that fits alone but not beside keysmith-lease-expiry",
            iam_user_profile(2048 - expiry + 1),
            "policy_document",
        ),
        (
            "a malformed policy",
            with(
                role_profile(),
                "policy_document",
                json!({"Statement": "nonsense"}),
            ),
            "policy_document",
        ),
        (
            "an unknown condition operator",
            with(
                role_profile(),
                "policy_document",
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                    "Condition": {"StringEqualz": {"aws:SourceIp": "10.0.0.1"}}}]}),
            ),
            "policy_document",
        ),
        (
            "a policy without Resource",
            with(
                role_profile(),
                "policy_document",
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
            ),
            "policy_document",
        ),
        (
            "a session tag with the aws: prefix",
            with(role_profile(), "session_tags", json!({"aws:team": "x"})),
            "session_tags.aws:team",
        ),
        (
            "session tag keys differing only in case",
            with(
                role_profile(),
                "session_tags",
                json!({"Team": "a", "team": "b"}),
            ),
            "session_tags.team",
        ),
        (
            "a newline in a session tag value",
            with(role_profile(), "session_tags", json!({"team": "a\nb"})),
            "session_tags.team",
        ),
        (
            "a session tag value over 256 characters",
            with(
                role_profile(),
                "session_tags",
                json!({"team": "v".repeat(257)}),
            ),
            "session_tags.team",
        ),
        (
            "a group outside the lease group path",
            with(
                iam_user_profile(200),
                "iam_groups",
                json!([inside, outside]),
            ),
            "iam_groups[1]",
        ),
        (
            "a group that does not exist",
            with(
                iam_user_profile(200),
                "iam_groups",
                json!([format!("none-{id}")]),
            ),
            "iam_groups[0]",
        ),
    ];
    for (i, (what, body, field)) in cases.into_iter().enumerate() {
        let name = format!("refused{i}");
        let (st, b) = put(&t, &name, &body).await;
        assert_error(st, &b, 400, "invalid_request", Some(field));
        let (st, _) = t
            .call("GET", &format!("/v1/profiles/{name}"), None, Some(ADMIN))
            .await;
        assert_eq!(st, 404, "{what}: nothing stored");
    }
    // The boundary cases pass: the largest policy that fits, a group on the path.
    let (st, b) = put(&t, "fits", &iam_user_profile(2048 - expiry)).await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = put(
        &t,
        "grouped",
        &with(iam_user_profile(200), "iam_groups", json!([inside])),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let sts: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| r.operation())
        .filter(|op| {
            [
                "AssumeRole",
                "GetSessionToken",
                "GetFederationToken",
                "GetCallerIdentity",
            ]
            .contains(&op.as_str())
        })
        .collect();
    assert!(sts.is_empty(), "{sts:?}");
}

/// Issue 31: an assumed-role session is always `arn:aws:sts::…:assumed-role/…`; the same resource
/// under an `iam` ARN can never match anybody, so it is refused where it is written, with the form
/// that works.
#[tokio::test]
async fn an_assumed_role_pattern_under_an_iam_arn_is_a_400_showing_the_sts_form() {
    let t = TestApp::new().await;
    let mut profile = role_profile();
    profile["allowed_principals"] = json!([
        "arn:aws:iam::123456789012:role/Deployers*",
        "arn:aws:iam::123456789012:assumed-role/Role/alice"
    ]);
    let (st, b) = put(&t, "never-matches", &profile).await;
    assert_error(
        st,
        &b,
        400,
        "invalid_request",
        Some("allowed_principals[1]"),
    );
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("arn:aws:sts::123456789012:assumed-role/Role/alice"),
        "the message shows the sts form: {b}"
    );
    let (st, b) = t
        .call("GET", "/v1/profiles/never-matches", None, Some(ADMIN))
        .await;
    assert_eq!(st, 404, "nothing was saved: {b}");
    // The sts form is what a session is, and is saved.
    profile["allowed_principals"] = json!(["arn:aws:sts::123456789012:assumed-role/Role/alice"]);
    let (st, b) = put(&t, "never-matches", &profile).await;
    assert_eq!(st, 201, "{b}");
}
