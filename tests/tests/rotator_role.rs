//! SPEC §18 (F1): with a rotator role configured, a rotation changes the user's keys through a
//! session of that role tagged with the secret being rotated. moto accepts session tags without
//! evaluating them (the IAM simulator in `make lint` proves what the role's policy does with
//! them); here a recording proxy shows what was asked of STS and who signed the key changes.

use keysmith::aws::Clients;
use keysmith::rotation::Rotator;
use keysmith_tests::api::TestApp;
use keysmith_tests::aws::caller_arn;
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Captured};
use keysmith_tests::rotation::{rotate, rotation_lambda, start_rotation, Snapshot};
use serde_json::json;

struct Bound {
    user: String,
    secret_arn: String,
    secret_name: String,
    first_key: String,
}

/// A user with one key, tagged for its secret, and the secret recording that key.
async fn bound_user(t: &TestApp) -> Bound {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("rot-{}", &id[..12]);
    let secret_name = format!("keysmith/{user}");
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    iam.create_user().user_name(&user).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    keysmith_tests::aws::bind(&t.sdk, &user, &secret_name).await;
    let value = json!({"user_name": user, "access_key_id": key.access_key_id,
        "secret_access_key": key.secret_access_key, "mode": "replace"});
    let out = aws_sdk_secretsmanager::Client::new(&t.sdk)
        .create_secret()
        .name(&secret_name)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
    Bound {
        user,
        secret_arn: out.arn.unwrap(),
        secret_name,
        first_key: key.access_key_id,
    }
}

async fn rotator_role(t: &TestApp) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "*"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]});
    aws_sdk_iam::Client::new(&t.sdk)
        .create_role()
        .path("/keysmith-rotator/")
        .role_name(format!("rotator-{}", &id[..12]))
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .arn
}

/// A rotator whose every AWS call goes through `proxy`.
async fn rotator_through(proxy: &CaptureProxy, t: &TestApp, role: Option<String>) -> Rotator {
    let sdk = Moto::sdk_config_at(
        &proxy.endpoint,
        aws_sdk_sts::config::Credentials::new("test", "test", None, None, "test"),
    )
    .await;
    Rotator::new(Clients::new(&sdk), t.app.audit.clone(), &t.state_table).with_rotator_role(role)
}

fn of(requests: &[Captured], operation: &str) -> Vec<Captured> {
    requests
        .iter()
        .filter(|r| r.operation() == operation)
        .cloned()
        .collect()
}

#[tokio::test]
async fn key_changes_go_through_the_rotator_role_tagged_with_the_secret() {
    let moto = Moto::shared();
    let t = TestApp::new().await;
    let lambda = rotation_lambda(moto, &t.sdk).await;
    let b = bound_user(&t).await;
    let role = rotator_role(&t).await;
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let rotator = rotator_through(&proxy, &t, Some(role.clone())).await;

    let token = start_rotation(&t.sdk, &b.secret_arn, &lambda).await;
    rotate(&rotator, &b.secret_arn, &token).await.unwrap();

    let s = Snapshot::take(&t.sdk, &t.sdk, &b.secret_arn, &b.user).await;
    let (id, secret) = s.current_key();
    assert_ne!(id, b.first_key, "a new key is current");
    let arn = caller_arn(moto, id, secret, None)
        .await
        .expect("AWSCURRENT works");
    assert!(arn.ends_with(&format!(":user/{}", b.user)), "{arn}");
    assert_eq!(s.keys.len(), 1, "replace deleted the old key: {:?}", s.keys);

    let requests = proxy.requests();
    let assumed = of(&requests, "AssumeRole");
    assert!(!assumed.is_empty(), "the rotator role was assumed");
    for a in &assumed {
        assert_eq!(a.form("RoleArn").as_deref(), Some(role.as_str()));
        let tags: Vec<(String, String)> = (1..=2)
            .map(|i| {
                (
                    a.form(&format!("Tags.member.{i}.Key")).unwrap_or_default(),
                    a.form(&format!("Tags.member.{i}.Value"))
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            tags,
            [
                ("keysmith:secret".to_owned(), b.secret_arn.clone()),
                ("keysmith:secret-name".to_owned(), b.secret_name.clone()),
            ]
        );
        assert_eq!(a.form("Tags.member.3.Key"), None, "no other tag");
    }
    // Every key change was signed by a rotator session, not by the function's own key.
    let changes: Vec<Captured> = ["CreateAccessKey", "DeleteAccessKey", "ListUserTags"]
        .iter()
        .flat_map(|op| of(&requests, op))
        .collect();
    assert!(changes.len() >= 3, "{changes:?}");
    for c in &changes {
        let signer = c.signing_key_id().unwrap_or_default();
        assert_ne!(
            signer,
            "test",
            "{} signed with the function's own key",
            c.operation()
        );
    }
}

#[tokio::test]
async fn without_a_rotator_role_the_function_acts_with_its_own_identity() {
    let moto = Moto::shared();
    let t = TestApp::new().await;
    let lambda = rotation_lambda(moto, &t.sdk).await;
    let b = bound_user(&t).await;
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let rotator = rotator_through(&proxy, &t, None).await;

    let token = start_rotation(&t.sdk, &b.secret_arn, &lambda).await;
    rotate(&rotator, &b.secret_arn, &token).await.unwrap();

    let requests = proxy.requests();
    assert!(of(&requests, "AssumeRole").is_empty());
    let created = of(&requests, "CreateAccessKey");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].signing_key_id(), Some("test"));
}
