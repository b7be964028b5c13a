//! Fault injection at every AWS call site of issuance, revocation and rotation: a proxy in front
//! of moto answers the chosen call with throttling, a 5xx, access denied, a timeout, or runs it and
//! loses the response. The caller gets the documented 429/502/503, nothing half-done remains, and
//! a retry without faults succeeds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keysmith_tests::api::{TestApp, ADMIN, DEPLOYER};
use keysmith_tests::aws::{allow_all, caller_arn, secret, user_with_key};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Fault, FaultRule};
use serde_json::{json, Value};

/// An app whose every AWS call goes through a fault proxy, with fast retries and timeouts.
async fn faulty_app() -> (TestApp, CaptureProxy) {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let mut t = TestApp::on(moto, Moto::fast_sdk_config_at(&proxy.endpoint).await).await;
    t.app.issuer = t
        .app
        .issuer
        .clone()
        .with_ready_timeout(Duration::from_secs(2));
    t.app.rotator = t
        .app
        .rotator
        .clone()
        .with_test_timeout(Duration::from_secs(2));
    (t, proxy)
}

/// Faults `operation` (optionally only on requests naming `table`): always, or only the first time.
fn at(operation: &'static str, table: Option<String>, fault: Fault, once: bool) -> FaultRule {
    let hits = Arc::new(AtomicUsize::new(0));
    Arc::new(move |r| {
        let matches = r.operation() == operation
            && table.as_ref().is_none_or(|t| r.body.contains(t.as_str()));
        if matches && (!once || hits.fetch_add(1, Ordering::SeqCst) == 0) {
            fault.clone()
        } else {
            Fault::Pass
        }
    })
}

const TIMEOUT: Fault = Fault::Delay(Duration::from_millis(1500));

/// The documented status for a fault at a call site.
fn expected(fault: &Fault, audit_write: bool) -> u16 {
    match (fault, audit_write) {
        (Fault::LoseResponse, _) => 200,
        (_, true) => 503,
        (Fault::Throttle, false) => 429,
        (_, false) => 502,
    }
}

fn no_secrets(body: &Value) {
    let text = body.to_string();
    assert!(
        !text.contains("secret_access_key") && !text.contains("session_token"),
        "{text}"
    );
}

#[tokio::test]
async fn sts_issuance_under_faults_at_every_call() {
    let (t, proxy) = faulty_app().await;
    let base = format!("keysmith/fault-base-{}", uuid::Uuid::new_v4().simple());
    let (k, s) = user_with_key(&t.sdk, &base.replace('/', "-"), &allow_all()).await;
    secret(
        &t.sdk,
        &base,
        &json!({"access_key_id": k, "secret_access_key": s}),
    )
    .await;
    t.put_profile("deploy", json!({"credential_type": "assumed_role", "source_secret_id": base,
        "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy", "allowed_principals": [DEPLOYER]})).await;
    let sites: Vec<(&str, Option<String>, bool)> = vec![
        ("GetItem", Some(t.state_table.clone()), false),
        ("GetSecretValue", None, false),
        ("AssumeRole", None, false),
        ("PutItem", Some(t.audit_table.clone()), true),
    ];
    let mut injected = 0;
    for (op, table, audit) in &sites {
        for fault in [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Denied,
            TIMEOUT,
            Fault::LoseResponse,
        ] {
            let before = count_issued(&t).await;
            proxy.set_faults(Some(at(
                op,
                table.clone(),
                fault.clone(),
                fault == Fault::LoseResponse,
            )));
            let (s, b) = t
                .call(
                    "POST",
                    "/v1/profiles/deploy/credentials",
                    Some("{}"),
                    Some(DEPLOYER),
                )
                .await;
            proxy.set_faults(None);
            injected += 1;
            assert_eq!(s, expected(&fault, *audit), "{op} {fault:?}: {b}");
            if s == 200 {
                assert_eq!(
                    count_issued(&t).await,
                    before + 1,
                    "{op} {fault:?}: one audit item per issued key"
                );
            } else {
                no_secrets(&b);
                assert_eq!(
                    count_issued(&t).await,
                    before,
                    "{op} {fault:?}: nothing issued"
                );
            }
            let (s, b) = t
                .call(
                    "POST",
                    "/v1/profiles/deploy/credentials",
                    Some("{}"),
                    Some(DEPLOYER),
                )
                .await;
            assert_eq!(s, 200, "retry after {op} {fault:?}: {b}");
        }
    }
    eprintln!(
        "faults injected into STS issuance: {injected} at {} call sites",
        sites.len()
    );
}

async fn count_issued(t: &TestApp) -> usize {
    t.audit_items()
        .await
        .iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == "AWS STS Temporary"
                && i["outcome"].as_s().unwrap() == "success"
        })
        .count()
}

#[tokio::test]
async fn iam_user_issuance_and_revocation_under_faults_leave_nothing_behind() {
    let (t, proxy) = faulty_app().await;
    let iam = aws_sdk_iam::Client::new(&Moto::shared().sdk_config().await);
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", json!({"credential_type": "iam_user", "user_path": path,
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "allowed_principals": [DEPLOYER]})).await;
    let users = || {
        let (iam, path) = (iam.clone(), path.clone());
        async move {
            iam.list_users()
                .path_prefix(path)
                .send()
                .await
                .unwrap()
                .users
                .len()
        }
    };
    let issue_sites: Vec<(&str, Option<String>, bool)> = vec![
        ("PutItem", Some(t.state_table.clone()), false),
        ("CreateUser", None, false),
        ("PutUserPolicy", None, false),
        ("CreateAccessKey", None, false),
        ("UpdateItem", Some(t.state_table.clone()), false),
        ("GetCallerIdentity", None, false),
        ("PutItem", Some(t.audit_table.clone()), true),
    ];
    let mut injected = 0;
    for (op, table, audit) in &issue_sites {
        for fault in [Fault::Throttle, Fault::LoseResponse] {
            proxy.set_faults(Some(at(
                op,
                table.clone(),
                fault.clone(),
                fault == Fault::LoseResponse,
            )));
            let (s, b) = t
                .call(
                    "POST",
                    "/v1/profiles/temp/credentials",
                    Some("{}"),
                    Some(DEPLOYER),
                )
                .await;
            proxy.set_faults(None);
            injected += 1;
            let want = match (op, &fault) {
                // Throttled while waiting for the new key: the wait runs out (502), user deleted.
                (&"GetCallerIdentity", Fault::Throttle) => 502,
                // A lost CreateUser is retried into EntityAlreadyExists: refused, user deleted.
                (&"CreateUser", Fault::LoseResponse) => 502,
                _ => expected(&fault, *audit),
            };
            assert_eq!(s, want, "{op} {fault:?}: {b}");
            if s == 200 {
                assert_eq!(users().await, 1, "{op} {fault:?}");
                let lease = b["lease_id"].as_str().unwrap();
                let (s, _) = t
                    .call(
                        "DELETE",
                        &format!("/v1/leases/{lease}"),
                        None,
                        Some(DEPLOYER),
                    )
                    .await;
                assert_eq!(s, 200);
            } else {
                no_secrets(&b);
            }
            assert_eq!(users().await, 0, "{op} {fault:?}: no user left behind");
        }
    }

    // Revocation: the lease ends on retry, and the user is gone.
    let revoke_sites = [
        "ListAccessKeys",
        "DeleteAccessKey",
        "DeleteUserPolicy",
        "DeleteUser",
        "UpdateItem",
    ];
    for op in revoke_sites {
        for fault in [Fault::Throttle, Fault::LoseResponse] {
            let (s, b) = t
                .call(
                    "POST",
                    "/v1/profiles/temp/credentials",
                    Some("{}"),
                    Some(DEPLOYER),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            let lease = b["lease_id"].as_str().unwrap().to_owned();
            proxy.set_faults(Some(at(
                op,
                None,
                fault.clone(),
                fault == Fault::LoseResponse,
            )));
            let (s, b) = t
                .call(
                    "DELETE",
                    &format!("/v1/leases/{lease}"),
                    None,
                    Some(DEPLOYER),
                )
                .await;
            proxy.set_faults(None);
            injected += 1;
            assert_eq!(
                s,
                if fault == Fault::Throttle { 429 } else { 200 },
                "revoke {op} {fault:?}: {b}"
            );
            let (s, b) = t
                .call(
                    "DELETE",
                    &format!("/v1/leases/{lease}"),
                    None,
                    Some(DEPLOYER),
                )
                .await;
            assert_eq!(
                (s, &b["status"]),
                (200, &json!("revoked")),
                "retry revoke after {op} {fault:?}"
            );
            assert_eq!(users().await, 0);
        }
    }
    eprintln!(
        "faults injected into iam_user issuance and revocation: {injected} at {} call sites",
        issue_sites.len() + revoke_sites.len()
    );
}

#[tokio::test]
async fn rotate_now_under_faults_at_every_call_converges_on_retry() {
    let (t, proxy) = faulty_app().await;
    let sites = [
        "DescribeSecret",
        "GetSecretValue",
        "ListAccessKeys",
        "CreateAccessKey",
        "PutSecretValue",
        "GetCallerIdentity",
        "UpdateSecretVersionStage",
        "DeleteAccessKey",
        "UpdateItem",
    ];
    let mut injected = 0;
    for (i, op) in sites.iter().enumerate() {
        let user = format!(
            "fault-rot-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let (k, s) = user_with_key(&t.sdk, &user, &allow_all()).await;
        let sid = format!("keysmith/{user}");
        secret(
            &t.sdk,
            &sid,
            &json!({"user_name": user, "access_key_id": k, "secret_access_key": s}),
        )
        .await;
        let name = format!("p{i}");
        let (s, b) = t
            .call(
                "PUT",
                &format!("/v1/rotations/{name}"),
                Some(&json!({"secret_id": sid, "interval_days": 30}).to_string()),
                Some(ADMIN),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        proxy.set_faults(Some(at(op, None, Fault::Throttle, false)));
        let (s, b) = t
            .call(
                "POST",
                &format!("/v1/rotations/{name}/rotate"),
                None,
                Some(ADMIN),
            )
            .await;
        proxy.set_faults(None);
        injected += 1;
        // Throttled while proving the new key: testSecret's wait runs out (502).
        let want = if *op == "GetCallerIdentity" { 502 } else { 429 };
        assert_eq!(s, want, "{op}: {b}");
        let (s, b) = t
            .call(
                "POST",
                &format!("/v1/rotations/{name}/rotate"),
                None,
                Some(ADMIN),
            )
            .await;
        assert_eq!(s, 200, "retry after {op}: {b}");
        let new = b["new_access_key_id"].as_str().unwrap();
        let keys = aws_sdk_iam::Client::new(&t.sdk)
            .list_access_keys()
            .user_name(&user)
            .send()
            .await
            .unwrap()
            .access_key_metadata;
        assert!(
            keys.len() <= 2 && keys.iter().any(|k| k.access_key_id.as_deref() == Some(new)),
            "{op}: {keys:?}"
        );
        let current = aws_sdk_secretsmanager::Client::new(&t.sdk)
            .get_secret_value()
            .secret_id(&sid)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
        let arn = caller_arn(
            Moto::shared(),
            v["access_key_id"].as_str().unwrap(),
            v["secret_access_key"].as_str().unwrap(),
            None,
        )
        .await;
        assert!(
            arn.is_ok_and(|a| a.ends_with(&format!("/{user}"))),
            "{op}: AWSCURRENT works"
        );
    }
    eprintln!(
        "faults injected into rotation: {injected} at {} call sites",
        sites.len()
    );
}
