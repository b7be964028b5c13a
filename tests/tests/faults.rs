//! Fault injection at every AWS call site of issuance, revocation and rotation: a proxy in front
//! of moto answers the chosen call with throttling, a 5xx, access denied, a timeout, or runs it and
//! loses the response. The caller gets the documented 429/502/503, nothing half-done remains, and
//! a retry without faults succeeds. Each test first records the call sites a clean run reaches and
//! fails if one of them has no fault case: a new AWS call in the code must be covered here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keysmith_tests::api::{TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY};
use keysmith_tests::aws::{allow_all, caller_arn, secret, user_with_key};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Fault, FaultRule};
use serde_json::{json, Value};

type Site = (String, Option<String>);

/// An app whose every AWS call goes through a fault proxy, with fast retries and timeouts.
async fn faulty_app() -> (TestApp, CaptureProxy) {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let mut t = TestApp::on(moto, Moto::fast_sdk_config_at(&proxy.endpoint).await).await;
    t.issuer = t.issuer.clone().with_ready_timeout(Duration::from_secs(2));
    t.app.rotator = t
        .app
        .rotator
        .clone()
        .with_test_timeout(Duration::from_secs(2));
    (t, proxy)
}

/// Faults one call site: always, or only the first time.
fn at(site: &Site, fault: Fault, once: bool) -> FaultRule {
    let hits = Arc::new(AtomicUsize::new(0));
    let (operation, table) = site.clone();
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

/// The sites a clean run reached since request number `from`: (operation, table for DynamoDB).
fn sites_since(proxy: &CaptureProxy, from: usize, t: &TestApp) -> BTreeSet<Site> {
    proxy.requests()[from..]
        .iter()
        .map(|r| {
            let table = [&t.state_table, &t.audit_table]
                .into_iter()
                .find(|tb| r.body.contains(tb.as_str()))
                .cloned();
            (r.operation(), table)
        })
        .collect()
}

const TIMEOUT: Fault = Fault::Delay(Duration::from_millis(1500));

fn no_secrets(body: &Value) {
    let text = body.to_string();
    assert!(
        !text.contains("secret_access_key") && !text.contains("session_token"),
        "{text}"
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

/// The documented answer to a fault that persists through the SDK's retries.
fn documented(site: &Site, fault: &Fault, audit_table: &str) -> u16 {
    let audit = site.1.as_deref() == Some(audit_table) && site.0 == "PutItem";
    match fault {
        Fault::LoseResponse => 200,
        _ if audit => 503,
        // Throttled while waiting for a new key to work: the bounded wait runs out.
        _ if site.0 == "GetCallerIdentity" => 502,
        // Listed best effort: IAM's DeleteUser refuses while any remain.
        _ if site.0 == "ListServiceSpecificCredentials" => 200,
        // Events are best effort (SPEC §11): the audit item is the record.
        _ if site.0 == "PutEvents" => 200,
        Fault::Throttle => 429,
        _ => 502,
    }
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
        "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy", "allowed_principals": [DEPLOYER],
        "max_active_leases": 100})).await;
    let from = proxy.requests().len();
    let (s, _) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200);
    let sites = sites_since(&proxy, from, &t);
    assert_eq!(
        sites.len(),
        5,
        "profile read, base key, AssumeRole, audit, event: {sites:?}"
    );
    let mut injected = 0;
    for site in &sites {
        for fault in [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Denied,
            TIMEOUT,
            Fault::LoseResponse,
        ] {
            let before = count_issued(&t).await;
            proxy.set_faults(Some(at(site, fault.clone(), fault == Fault::LoseResponse)));
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
            assert_eq!(
                s,
                documented(site, &fault, &t.audit_table),
                "{site:?} {fault:?}: {b}"
            );
            if s == 200 {
                assert_eq!(
                    count_issued(&t).await,
                    before + 1,
                    "{site:?} {fault:?}: one audit item per issued key"
                );
            } else {
                no_secrets(&b);
                assert_eq!(
                    count_issued(&t).await,
                    before,
                    "{site:?} {fault:?}: nothing issued"
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
            assert_eq!(s, 200, "retry after {site:?} {fault:?}: {b}");
        }
    }
    eprintln!(
        "STS issuance: {injected} faults at {} call sites",
        sites.len()
    );
}

#[tokio::test]
async fn iam_user_issuance_and_revocation_under_faults_leave_nothing_behind() {
    let (t, proxy) = faulty_app().await;
    let iam = aws_sdk_iam::Client::new(&Moto::shared().sdk_config().await);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("/keysmith/{id}/");
    let doc = allow_all().to_string();
    let policy = iam
        .create_policy()
        .policy_name(format!("fault-{id}"))
        .policy_document(&doc)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap()
        .arn
        .unwrap();
    iam.create_group()
        .path("/keysmith/")
        .group_name(format!("fault-{id}"))
        .send()
        .await
        .unwrap();
    t.put_profile("temp", json!({"credential_type": "iam_user", "user_path": path,
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "policy_arns": [policy], "iam_groups": [format!("fault-{id}")], "permissions_boundary_arn": LEASE_BOUNDARY,
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
    let issue = || {
        t.call(
            "POST",
            "/v1/profiles/temp/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
    };
    let revoke = |lease: String| {
        let t = &t;
        async move {
            t.call(
                "DELETE",
                &format!("/v1/leases/{lease}"),
                None,
                Some(DEPLOYER),
            )
            .await
        }
    };

    let from = proxy.requests().len();
    let (s, b) = issue().await;
    assert_eq!(s, 200, "{b}");
    let issue_sites = sites_since(&proxy, from, &t);
    let from = proxy.requests().len();
    assert_eq!(
        revoke(b["lease_id"].as_str().unwrap().to_owned()).await.0,
        200
    );
    let revoke_sites = sites_since(&proxy, from, &t);
    assert!(
        issue_sites.len() >= 9 && revoke_sites.len() >= 15,
        "{issue_sites:?} {revoke_sites:?}"
    );

    let mut injected = 0;
    for site in &issue_sites {
        for fault in [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Denied,
            Fault::LoseResponse,
        ] {
            proxy.set_faults(Some(at(site, fault.clone(), fault == Fault::LoseResponse)));
            let (s, b) = issue().await;
            proxy.set_faults(None);
            injected += 1;
            let want = match (site.0.as_str(), &fault) {
                // A lost CreateUser is retried into EntityAlreadyExists: refused, user deleted.
                ("CreateUser", Fault::LoseResponse) => 502,
                _ => documented(site, &fault, &t.audit_table),
            };
            assert_eq!(s, want, "{site:?} {fault:?}: {b}");
            if s == 200 {
                assert_eq!(users().await, 1, "{site:?} {fault:?}");
                assert_eq!(
                    revoke(b["lease_id"].as_str().unwrap().to_owned()).await.0,
                    200
                );
            } else {
                no_secrets(&b);
            }
            assert_eq!(users().await, 0, "{site:?} {fault:?}: no user left behind");
        }
    }
    for site in &revoke_sites {
        for fault in [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Denied,
            Fault::LoseResponse,
        ] {
            let (s, b) = issue().await;
            assert_eq!(s, 200, "{b}");
            let lease = b["lease_id"].as_str().unwrap().to_owned();
            proxy.set_faults(Some(at(site, fault.clone(), fault == Fault::LoseResponse)));
            let (s, b) = revoke(lease.clone()).await;
            proxy.set_faults(None);
            injected += 1;
            assert_eq!(
                s,
                documented(site, &fault, &t.audit_table),
                "revoke {site:?} {fault:?}: {b}"
            );
            let (s, b) = revoke(lease).await;
            assert_eq!(
                (s, &b["status"]),
                (200, &json!("revoked")),
                "retry revoke after {site:?} {fault:?}"
            );
            assert_eq!(
                users().await,
                0,
                "revoke {site:?} {fault:?}: the user is gone"
            );
        }
    }
    eprintln!(
        "iam_user issuance and revocation: {injected} faults at {} call sites",
        issue_sites.len() + revoke_sites.len()
    );
}

#[tokio::test]
async fn rotate_now_under_faults_at_every_call_converges_on_retry() {
    let (t, proxy) = faulty_app().await;
    // The admin path too: a key in admin_secret_id, through assume_role_arn.
    let admin_id = format!("keysmith/fault-admin-{}", uuid::Uuid::new_v4().simple());
    let (ak, asec) = user_with_key(&t.sdk, &admin_id.replace('/', "-"), &allow_all()).await;
    secret(
        &t.sdk,
        &admin_id,
        &json!({"access_key_id": ak, "secret_access_key": asec}),
    )
    .await;
    let mut n = 0;
    let mut policy = || {
        n += 1;
        let (t, admin_id, n) = (&t, admin_id.clone(), n);
        async move {
            let user = format!(
                "fault-rot-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            );
            let (k, s) = user_with_key(&t.sdk, &user, &allow_all()).await;
            let sid = format!("keysmith/{user}");
            keysmith_tests::aws::bind(&t.sdk, &user, &sid).await;
            secret(&t.sdk, &sid, &json!({"user_name": user, "access_key_id": k, "secret_access_key": s,
                "admin_secret_id": admin_id, "assume_role_arn": "arn:aws:iam::123456789012:role/keysmith/rotator"})).await;
            let name = format!("p{n}");
            let body = json!({"secret_id": sid, "interval_days": 30}).to_string();
            let (s, b) = t
                .call(
                    "PUT",
                    &format!("/v1/rotations/{name}"),
                    Some(&body),
                    Some(ADMIN),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            (name, user, sid)
        }
    };
    // Rotate-now only marks the policy: the rotation itself runs in scheduled-rotation, under the
    // policy's lock, as here. `later` runs come after a dead run's locks expired.
    let origin = keysmith::audit::Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Default::default()
    };
    let rotate = |name: String, later: bool| {
        let (t, origin) = (&t, &origin);
        async move {
            let now = chrono::Utc::now() + chrono::Duration::minutes(if later { 16 } else { 0 });
            keysmith::rotation::rotate_policy(
                &t.app.policies,
                &t.app.rotator,
                &name,
                now,
                false,
                origin,
            )
            .await
        }
    };
    let (name, _, _) = policy().await;
    let from = proxy.requests().len();
    rotate(name, false).await.unwrap();
    let sites = sites_since(&proxy, from, &t);
    assert!(sites.len() >= 11, "{sites:?}");
    let mut injected = 0;
    for site in &sites {
        for fault in [Fault::Throttle, Fault::ServerError, Fault::Denied] {
            let (name, user, sid) = policy().await;
            proxy.set_faults(Some(at(site, fault.clone(), false)));
            let failed = rotate(name.clone(), false).await;
            proxy.set_faults(None);
            injected += 1;
            if site.0 == "PutEvents" {
                // Best effort (SPEC §11): a lost event fails nothing.
                assert!(failed.is_ok(), "{site:?} {fault:?}: {failed:?}");
                continue;
            }
            assert!(failed.is_err(), "{site:?} {fault:?}: {failed:?}");
            let (_, rotated) = rotate(name, true)
                .await
                .unwrap_or_else(|e| panic!("retry after {site:?} {fault:?}: {e}"));
            let new = rotated.new_access_key_id.as_str();
            let keys = aws_sdk_iam::Client::new(&t.sdk)
                .list_access_keys()
                .user_name(&user)
                .send()
                .await
                .unwrap()
                .access_key_metadata;
            assert!(
                keys.len() <= 2 && keys.iter().any(|k| k.access_key_id.as_deref() == Some(new)),
                "{site:?}: {keys:?}"
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
                "{site:?}: AWSCURRENT works"
            );
        }
    }
    eprintln!("rotation: {injected} faults at {} call sites", sites.len());
}

/// Issue 12: a `TransactWriteItems` whose answer is lost (it happened, then the SDK retried) is a
/// success, not a `409` for a change that happened.
#[tokio::test]
async fn a_transaction_whose_answer_is_lost_is_a_success() {
    let (t, proxy) = faulty_app().await;
    let site: Site = ("TransactWriteItems".into(), None);
    for (name, expected) in [("lost-1", 201), ("lost-1", 200)] {
        proxy.set_faults(Some(at(&site, Fault::LoseResponse, true)));
        let from = proxy.requests().len();
        let (s, b) = t
            .call(
                "PUT",
                &format!("/v1/profiles/{name}"),
                Some(
                    &json!({"credential_type": "assumed_role",
                    "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
                    "allowed_principals": [DEPLOYER]})
                    .to_string(),
                ),
                Some(ADMIN),
            )
            .await;
        proxy.set_faults(None);
        let sent = proxy.requests()[from..]
            .iter()
            .filter(|r| r.operation() == "TransactWriteItems")
            .count();
        assert_eq!(sent, 2, "the answer was lost and the SDK retried");
        assert_eq!(s, expected, "{b}");
    }
    let changes = t
        .audit_items()
        .await
        .iter()
        .filter(|i| {
            i.get("profile")
                .and_then(|p| p.as_s().ok())
                .map(String::as_str)
                == Some("lost-1")
        })
        .count();
    assert_eq!(changes, 2, "one audit item per change");
}
