//! Issuance of every STS credential type against moto, and the audit item each one leaves.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use keysmith_tests::api::{TestApp, DEPLOYER};
use keysmith_tests::aws::{allow_all, assumable_role, caller_arn, secret, user_with_key};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::CaptureProxy;
use serde_json::{json, Value};

const AUDIT_FIELDS: [&str; 17] = [
    "time",
    "principal",
    "source_ip",
    "user_agent",
    "category",
    "level",
    "event",
    "message",
    "region",
    "duration_seconds",
    "profile",
    "credential_type",
    "access_key_id",
    "lease_id",
    "request_id",
    "outcome",
    "sk",
];

/// The issuance item of `issued` (found by its lease: moto hands out the same federation key id
/// more than once) has every SPEC §7 field, the key id, and no trace of the secrets.
fn check_audit(
    items: &[HashMap<String, AttributeValue>],
    issued: &Value,
    credential_type: &str,
    duration: u64,
) {
    let key_id = issued["access_key_id"].as_str().unwrap();
    let lease_id = issued["lease_id"].as_str().unwrap();
    let item = items
        .iter()
        .find(|i| {
            i.get("lease_id")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(lease_id)
        })
        .unwrap_or_else(|| panic!("no audit item for lease {lease_id}"));
    assert_eq!(item["access_key_id"].as_s().unwrap(), key_id);
    for field in AUDIT_FIELDS {
        assert!(
            item.contains_key(field),
            "audit item lacks {field}: {item:?}"
        );
    }
    let s = |f: &str| item[f].as_s().unwrap().as_str();
    assert_eq!(s("event"), "AWS STS Temporary");
    assert_eq!(s("message"), "AWS STS Temporary Key Generated.");
    assert_eq!(s("outcome"), "success");
    assert_eq!(s("level"), "INFO");
    assert_eq!(s("category"), "Data");
    assert_eq!(s("principal"), DEPLOYER);
    assert_eq!(s("source_ip"), "203.0.113.10");
    assert_eq!(s("credential_type"), credential_type);
    assert_eq!(s("lease_id"), issued["lease_id"].as_str().unwrap());
    assert_eq!(
        item["duration_seconds"].as_n().unwrap(),
        &duration.to_string()
    );
    assert!(chrono::DateTime::parse_from_rfc3339(s("time")).is_ok());
    let dump = format!("{items:?}");
    for secret in [&issued["secret_access_key"], &issued["session_token"]] {
        assert!(
            !dump.contains(secret.as_str().unwrap()),
            "a secret reached the audit table"
        );
    }
}

async fn issue(t: &TestApp, profile: &str, body: Value) -> Value {
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some(&body.to_string()),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

#[tokio::test]
async fn assumed_role_credentials_work_under_auth_enforcement() {
    let moto = Moto::start();
    let root = moto.sdk_config().await;
    let role_arn = assumable_role(&root, "/keysmith/", "deploy").await;
    let (fn_key, fn_secret) = user_with_key(&root, "keysmith-function", &allow_all()).await;
    let function_sdk = moto
        .sdk_config_with(aws_sdk_sts::config::Credentials::new(
            &fn_key, &fn_secret, None, None, "test",
        ))
        .await;
    let t = TestApp::on(&moto, function_sdk).await;
    moto.enable_auth().await;
    assert_eq!(
        caller_arn(&moto, "AKIAUNKNOWN000000000", "nope", None).await,
        Err(403),
        "auth is on"
    );

    t.put_profile("deploy", json!({
        "credential_type": "assumed_role", "role_arn": role_arn,
        "external_id": "ext-1", "session_tags": {"team": "payments"},
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
        "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*"]
    })).await;
    let issued = issue(&t, "deploy", json!({"duration_seconds": 900})).await;
    assert_eq!(issued["credential_type"], "assumed_role");
    assert_eq!(issued["profile"], "deploy");
    assert!(issued["access_key_id"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));
    let arn = caller_arn(
        &moto,
        issued["access_key_id"].as_str().unwrap(),
        issued["secret_access_key"].as_str().unwrap(),
        issued["session_token"].as_str(),
    )
    .await
    .expect("issued credentials must work");
    // The session is named after the caller, so CloudTrail names the person.
    assert_eq!(arn, "arn:aws:sts::123456789012:assumed-role/deploy/alice");

    // A requested name is appended to the caller's, never used alone: alice cannot pass as bob.
    let named = issue(&t, "deploy", json!({"session_name": "bob"})).await;
    let arn = caller_arn(
        &moto,
        named["access_key_id"].as_str().unwrap(),
        named["secret_access_key"].as_str().unwrap(),
        named["session_token"].as_str(),
    )
    .await;
    assert_eq!(
        arn.unwrap(),
        "arn:aws:sts::123456789012:assumed-role/deploy/alice.bob"
    );
    check_audit(&t.audit_items().await, &issued, "assumed_role", 900);
}

struct BaseKey {
    key_id: String,
    secret_id: String,
}

/// An IAM user's long-term key in a Secrets Manager secret, in one of the three spellings.
async fn base_key(t: &TestApp, spelling: (&str, &str)) -> BaseKey {
    let name = format!("base-{}", uuid::Uuid::new_v4().simple());
    let (key_id, key_secret) = user_with_key(&t.sdk, &name, &allow_all()).await;
    let secret_id = format!("keysmith/{name}");
    secret(
        &t.sdk,
        &secret_id,
        &json!({spelling.0: key_id, spelling.1: key_secret}),
    )
    .await;
    BaseKey { key_id, secret_id }
}

#[tokio::test]
async fn session_token_is_signed_with_the_base_key_and_carries_mfa() {
    let t = TestApp::new().await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let base = base_key(&t, ("AccessKeyId", "SecretAccessKey")).await;
    t.put_profile(
        "session",
        json!({
            "credential_type": "session_token", "source_secret_id": base.secret_id,
            "mfa_serial_number": "arn:aws:iam::123456789012:mfa/alice",
            "sts_endpoint": proxy.endpoint, "sts_region": "eu-west-1",
            "allowed_principals": [DEPLOYER]
        }),
    )
    .await;
    let issued = issue(
        &t,
        "session",
        json!({"duration_seconds": 1800, "token_code": "123456"}),
    )
    .await;
    assert_eq!(issued["credential_type"], "session_token");
    assert!(issued["session_token"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    // GetCallerIdentity with the base key names its user (the lease's target), then the token.
    let sent = proxy.requests();
    let actions: Vec<_> = sent.iter().map(|r| r.form("Action")).collect();
    assert_eq!(
        actions,
        [
            Some("GetCallerIdentity".into()),
            Some("GetSessionToken".into())
        ],
        "{sent:?}"
    );
    assert_eq!(sent[0].signing_key_id(), Some(base.key_id.as_str()));
    let r = &sent[1];
    assert_eq!(
        r.signing_key_id(),
        Some(base.key_id.as_str()),
        "signed with the secret's key"
    );
    assert!(
        r.header("authorization")
            .unwrap()
            .contains("/eu-west-1/sts/"),
        "signed for the profile's region"
    );
    assert_eq!(r.form("DurationSeconds").as_deref(), Some("1800"));
    assert_eq!(
        r.form("SerialNumber").as_deref(),
        Some("arn:aws:iam::123456789012:mfa/alice")
    );
    assert_eq!(r.form("TokenCode").as_deref(), Some("123456"));
    let items = t.audit_items().await;
    check_audit(&items, &issued, "session_token", 1800);
    let item = items.iter().find(|i| i.get("lease_id").is_some()).unwrap();
    assert_eq!(item["region"].as_s().unwrap(), "eu-west-1");
}

#[tokio::test]
async fn federation_token_is_signed_with_the_base_key_and_carries_the_policy() {
    let t = TestApp::new().await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let base = base_key(&t, ("aws_access_key_id", "aws_secret_access_key")).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    t.put_profile(
        "fed",
        json!({
            "credential_type": "federation_token", "source_secret_id": base.secret_id,
            "policy_document": policy, "policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "sts_endpoint": proxy.endpoint, "sts_region": "us-east-1",
            "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers-ci"]
        }),
    )
    .await;
    let issued = issue(&t, "fed", json!({"duration_seconds": 129_600})).await;
    // The federated user's name begins with the caller's, whatever the request says.
    issue(&t, "fed", json!({"session_name": "bob"})).await;
    assert_eq!(issued["credential_type"], "federation_token");
    assert_eq!(issued["lease_duration"], 129_600);

    // The base user is looked up once per key (then cached): one GetCallerIdentity in all.
    let sent: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.form("Action").as_deref() != Some("GetCallerIdentity"))
        .collect();
    assert_eq!(proxy.requests().len(), 3);
    let r = &sent[0];
    assert_eq!(r.form("Action").as_deref(), Some("GetFederationToken"));
    assert_eq!(r.signing_key_id(), Some(base.key_id.as_str()));
    assert_eq!(r.form("DurationSeconds").as_deref(), Some("129600"));
    assert_eq!(r.form("Name").as_deref(), Some("alice"));
    assert_eq!(sent[1].form("Name").as_deref(), Some("alice.bob"));
    let sent_policy: Value = serde_json::from_str(&r.form("Policy").unwrap()).unwrap();
    assert_eq!(sent_policy, policy);
    assert_eq!(
        r.form("PolicyArns.member.1.arn").as_deref(),
        Some("arn:aws:iam::aws:policy/ReadOnlyAccess")
    );
    check_audit(&t.audit_items().await, &issued, "federation_token", 129_600);
}

#[tokio::test]
async fn assumed_role_request_carries_source_identity_tags_and_external_id() {
    let t = TestApp::new().await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let base = base_key(&t, ("access_key_id", "secret_access_key")).await;
    t.put_profile("role", json!({
        "credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
        "source_secret_id": base.secret_id, "external_id": "ext-42", "session_tags": {"team": "payments"},
        "sts_endpoint": proxy.endpoint, "sts_region": "us-east-1", "allowed_principals": [DEPLOYER]
    })).await;
    issue(&t, "role", json!({})).await;
    let r = &proxy.requests()[0];
    assert_eq!(r.form("Action").as_deref(), Some("AssumeRole"));
    assert_eq!(r.signing_key_id(), Some(base.key_id.as_str()));
    assert_eq!(r.form("RoleSessionName").as_deref(), Some("alice"));
    assert_eq!(r.form("ExternalId").as_deref(), Some("ext-42"));
    // Keysmith's own tags first (tests/tests/revocation.rs), then the profile's.
    assert_eq!(
        r.form("Tags.member.1.Key").as_deref(),
        Some("keysmith:lease")
    );
    assert_eq!(r.form("Tags.member.3.Key").as_deref(), Some("team"));
    assert_eq!(r.form("Tags.member.3.Value").as_deref(), Some("payments"));
    assert_eq!(r.form("DurationSeconds").as_deref(), Some("3600"));
    let source = r.form("SourceIdentity").unwrap();
    assert!(
        source.ends_with("assumed-role-Deployers-ci-alice"),
        "{source}"
    );
}

/// SPEC §5: `assumed_role` without a base key is role chaining, which AWS caps at one hour. The
/// cap is a `400` at `PUT` and at issuance, never a `502` from STS; with a base key 12 h work.
#[tokio::test]
async fn role_chaining_is_capped_at_one_hour() {
    let t = TestApp::new().await;
    let role = "arn:aws:iam::123456789012:role/keysmith/chained";
    let (s, b) = t
        .call(
            "PUT",
            "/v1/profiles/chained",
            Some(
                &json!({"credential_type": "assumed_role", "role_arn": role,
                "max_duration_seconds": 7200, "allowed_principals": [DEPLOYER]})
                .to_string(),
            ),
            Some(keysmith_tests::api::ADMIN),
        )
        .await;
    keysmith_tests::api::assert_error(s, &b, 400, "invalid_request", Some("max_duration_seconds"));
    t.put_profile(
        "chained",
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (s, b) = t
        .call(
            "POST",
            "/v1/profiles/chained/credentials",
            Some(&json!({"duration_seconds": 7200}).to_string()),
            Some(DEPLOYER),
        )
        .await;
    keysmith_tests::api::assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));

    let base = format!("keysmith/chain-base-{}", uuid::Uuid::new_v4().simple());
    let (k, sk) = user_with_key(&t.sdk, &base.replace('/', "-"), &allow_all()).await;
    secret(
        &t.sdk,
        &base,
        &json!({"access_key_id": k, "secret_access_key": sk}),
    )
    .await;
    t.put_profile(
        "based",
        json!({"credential_type": "assumed_role", "role_arn": role, "source_secret_id": base,
            "max_duration_seconds": 43_200, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let issued = issue(&t, "based", json!({"duration_seconds": 43_200})).await;
    assert_eq!(issued["lease_duration"], 43_200);
}
