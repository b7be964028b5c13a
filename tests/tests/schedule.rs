//! Scheduled rotation: due work only, exactly once, convergence after a killed run, lease expiry,
//! the old-key report, and the rotation-policy API.

use chrono::{Duration, Timelike, Utc};
use keysmith::audit::Origin;
use keysmith::jobs as schedule;
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER};
use keysmith_tests::aws::caller_arn;
use keysmith_tests::moto::Moto;
use keysmith_tests::rotation::Snapshot;
use serde_json::{json, Value};

fn origin() -> Origin {
    Origin {
        principal: "keysmith:scheduled-rotation".into(),
        region: "us-east-1".into(),
        ..Origin::default()
    }
}

/// A user with one key and a secret recording it; returns (secret name, user, key id).
async fn rotatable(t: &TestApp) -> (String, String, String) {
    keysmith_tests::rotation::rotatable(&t.sdk, "sched").await
}

async fn put_policy(t: &TestApp, name: &str, body: Value) {
    t.put_rotation(name, body).await;
}

fn names(report: &schedule::RunReport) -> Vec<String> {
    let mut n: Vec<String> = report.rotated.iter().map(|(p, _)| p.clone()).collect();
    n.sort();
    n
}

async fn assert_current_works(t: &TestApp, secret: &str, user: &str, original: &str) {
    let s = Snapshot::take(&t.sdk, &t.sdk, secret, user).await;
    let (id, key) = s.current_key();
    assert_ne!(id, original, "{secret} was rotated");
    let arn = caller_arn(Moto::shared(), id, key, None).await.unwrap();
    assert!(arn.ends_with(&format!("/{user}")), "{arn}");
    assert!(s.keys.len() <= 2);
}

#[tokio::test]
async fn a_run_rotates_exactly_the_due_policies() {
    let t = TestApp::new().await;
    let now = Utc::now();
    let hour = now.hour();
    let later_hour = (hour + 2) % 24;
    let mut secrets = Vec::new();
    for (name, extra) in [
        ("due-now", json!({})),
        ("due-this-hour", json!({"rotation_hour_utc": hour})),
        ("later-today", json!({"rotation_hour_utc": later_hour})),
        ("disabled", json!({"enabled": false})),
    ] {
        let (secret, user, key) = rotatable(&t).await;
        let mut body = json!({"secret_id": secret, "interval_days": 30});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        put_policy(&t, name, body).await;
        secrets.push((name, secret, user, key));
    }
    // A scheduled run comes after the policies were written.
    let now = Utc::now();
    let report = schedule::run(&t.app, now, &origin()).await.unwrap();
    assert_eq!(
        names(&report),
        ["due-now", "due-this-hour"],
        "{:?}",
        report.to_json()
    );
    assert_eq!(report.policies_read, 2);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for (name, secret, user, key) in &secrets[..2] {
        assert_current_works(&t, secret, user, key).await;
        let rotated = report.rotated.iter().find(|(p, _)| p == name).unwrap();
        assert_eq!(rotated.1.old_access_key_id.as_deref(), Some(key.as_str()));
    }
    for (_, secret, user, key) in &secrets[2..] {
        let s = Snapshot::take(&t.sdk, &t.sdk, secret, user).await;
        assert_eq!(s.current_key().0, key, "{secret} was not due");
    }
    // Audited: the policy, the user, the old and new key ids.
    let items = t.audit_items().await;
    let rotated: Vec<_> = items
        .iter()
        .filter(|i| i["event"].as_s().unwrap() == "Access Key Rotated")
        .collect();
    assert_eq!(rotated.len(), 2);
    for (name, _, user, key) in &secrets[..2] {
        let item = rotated
            .iter()
            .find(|i| i.get("profile").and_then(|p| p.as_s().ok()) == Some(&name.to_string()))
            .unwrap();
        let message = item["message"].as_s().unwrap();
        let new = item["access_key_id"].as_s().unwrap();
        assert!(
            message.contains(user.as_str())
                && message.contains(key.as_str())
                && message.contains(new.as_str()),
            "{message}"
        );
    }

    // Rotated ones are not due again until their interval has passed.
    let again = schedule::run(&t.app, now + Duration::minutes(5), &origin())
        .await
        .unwrap();
    assert!(
        again.rotated.is_empty() && again.policies_read == 0,
        "{:?}",
        again.to_json()
    );
    let month = schedule::run(&t.app, now + Duration::days(31), &origin())
        .await
        .unwrap();
    assert_eq!(names(&month), ["due-now", "due-this-hour", "later-today"]);
}

#[tokio::test]
async fn concurrent_runs_rotate_each_policy_once() {
    let t = TestApp::new().await;
    let mut policies = Vec::new();
    for i in 0..3 {
        let (secret, user, key) = rotatable(&t).await;
        put_policy(
            &t,
            &format!("p{i}"),
            json!({"secret_id": secret, "interval_days": 7}),
        )
        .await;
        policies.push((secret, user, key));
    }
    let now = Utc::now();
    let (o1, o2) = (origin(), origin());
    let (a, b) = tokio::join!(
        schedule::run(&t.app, now, &o1),
        schedule::run(&t.app, now, &o2),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all = names(&a);
    all.extend(names(&b));
    all.sort();
    assert_eq!(
        all,
        ["p0", "p1", "p2"],
        "each policy rotated exactly once: {:?} {:?}",
        a.to_json(),
        b.to_json(),
    );
    for (secret, user, key) in &policies {
        let s = Snapshot::take(&t.sdk, &t.sdk, secret, user).await;
        assert_eq!(
            s.previous.unwrap()["access_key_id"],
            key.as_str(),
            "one rotation: AWSPREVIOUS is the original key"
        );
    }
}

#[tokio::test]
async fn a_run_killed_after_any_call_is_finished_by_the_next() {
    let moto = Moto::shared();
    let proxy = keysmith_tests::proxy::CaptureProxy::start(&moto.endpoint).await;
    let t = TestApp::on(moto, Moto::fast_sdk_config_at(&proxy.endpoint).await).await;
    let (secret, user, key) = rotatable(&t).await;
    put_policy(
        &t,
        "probe",
        json!({"secret_id": secret, "interval_days": 1}),
    )
    .await;
    // Count the AWS calls of one whole scheduled rotation (and the rest of the run).
    let from = proxy.requests().len();
    schedule::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_current_works(&t, &secret, &user, &key).await;
    let sites = proxy.requests().len() - from;
    assert!(sites >= 10, "{sites}");

    for at in 0..sites {
        let (secret, user, key) = rotatable(&t).await;
        let name = format!("kill-{at}");
        put_policy(&t, &name, json!({"secret_id": secret, "interval_days": 1})).await;
        let now = Utc::now();
        // The process dies after call `at`: it may have rotated, or failed, or never returned.
        proxy.set_faults(Some(keysmith_tests::rotation::crash_after(at)));
        let _ = schedule::run(&t.app, now, &origin()).await;
        proxy.set_faults(None);
        // The next hourly run, after the dead run's locks have expired.
        let next = schedule::run(&t.app, now + Duration::minutes(61), &origin())
            .await
            .unwrap();
        let policy = t.app.policies.get(&name).await.unwrap().unwrap();
        assert!(
            policy.last_rotated_at.is_some()
                && policy.status == keysmith::rotation::policy::Status::Idle,
            "crash at call {at}: {policy:?} {:?}",
            next.to_json()
        );
        assert_current_works(&t, &secret, &user, &key).await;
    }
}

#[tokio::test]
async fn expired_leases_are_ended_by_a_run_and_live_ones_are_not() {
    let t = TestApp::new().await;
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", json!({"credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "user_path": path, "permissions_boundary_arn": keysmith_tests::api::LEASE_BOUNDARY, "allowed_principals": [DEPLOYER]})).await;
    let issue = |d: u32| {
        let t = &t;
        async move {
            let (s, b) = t
                .call(
                    "POST",
                    "/v1/profiles/temp/credentials",
                    Some(&json!({"duration_seconds": d}).to_string()),
                    Some(DEPLOYER),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            b["lease_id"].as_str().unwrap().to_owned()
        }
    };
    let short = issue(900).await;
    let long = issue(7200).await;
    let report = schedule::run(&t.app, Utc::now() + Duration::seconds(1000), &origin())
        .await
        .unwrap();
    assert_eq!(report.leases.revoked, std::slice::from_ref(&short));
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    assert_eq!(
        iam.list_users()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .users
            .len(),
        1
    );
    assert_eq!(
        t.app.leases.get(&long).await.unwrap().status,
        keysmith::lease::LeaseStatus::Active
    );
}

#[tokio::test]
async fn a_run_reads_only_the_due_policies_of_a_thousand() {
    let t = TestApp::new().await;
    let now = Utc::now();
    for i in 0..10 {
        let (secret, _, _) = rotatable(&t).await;
        put_policy(
            &t,
            &format!("due-{i}"),
            json!({"secret_id": secret, "interval_days": 30}),
        )
        .await;
    }
    // 990 policies that are not due yet, written in batches.
    keysmith_tests::seed_not_due_policies(&t.sdk, &t.state_table, 990, now).await;
    let report = schedule::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(report.rotated.len(), 10, "{:?}", report.failed);
    assert_eq!(
        report.policies_read, 10,
        "the run read the due policies, not all 1000"
    );
}

#[tokio::test]
async fn old_keys_are_reported_and_deactivated_only_when_asked() {
    let moto = Moto::start();
    let mut t = TestApp::on(&moto, moto.sdk_config().await).await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    iam.create_user()
        .user_name("old-timer")
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("old-timer")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap()
        .access_key_id;
    t.app.config.max_key_age_days = Some(90);
    let soon = schedule::run(&t.app, Utc::now() + Duration::days(30), &origin())
        .await
        .unwrap();
    assert!(soon.old_keys.is_empty());
    let later = Utc::now() + Duration::days(100);
    let report = schedule::run(&t.app, later, &origin()).await.unwrap();
    assert_eq!(report.old_keys.len(), 1, "{:?}", report.to_json());
    assert_eq!(report.old_keys[0].access_key_id, key);
    assert!(!report.old_keys[0].deactivated, "dry run by default");
    let status = |iam: aws_sdk_iam::Client| async move {
        iam.list_access_keys()
            .user_name("old-timer")
            .send()
            .await
            .unwrap()
            .access_key_metadata[0]
            .status
            .clone()
            .unwrap()
    };
    assert_eq!(status(iam.clone()).await.as_str(), "Active");
    let warned = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["event"].as_s().unwrap() == "Old Access Key")
        .count();
    assert_eq!(warned, 1);
    t.app.config.key_age_dry_run = false;
    let acted = schedule::run(&t.app, later, &origin()).await.unwrap();
    assert!(acted.old_keys[0].deactivated);
    assert_eq!(status(iam).await.as_str(), "Inactive");
}

#[tokio::test]
async fn rotation_policy_api() {
    let t = TestApp::new().await;
    let (secret, _, key) = rotatable(&t).await;
    let put = |name: &str, body: Value| {
        let (t, path) = (&t, format!("/v1/rotations/{name}"));
        async move {
            t.call("PUT", &path, Some(&body.to_string()), Some(ADMIN))
                .await
        }
    };
    for (body, field) in [
        (
            json!({"secret_id": secret, "interval_days": 0}),
            "interval_days",
        ),
        (
            json!({"secret_id": secret, "interval_days": 366}),
            "interval_days",
        ),
        (
            json!({"secret_id": secret, "interval_days": 30, "rotation_hour_utc": 24}),
            "rotation_hour_utc",
        ),
        (
            json!({"secret_id": "keysmith/missing", "interval_days": 30}),
            "secret_id",
        ),
        (
            json!({"secret_id": secret, "interval_days": 30, "colour": "red"}),
            "colour",
        ),
    ] {
        let (s, b) = put("ci", body).await;
        assert_error(s, &b, 400, "invalid_request", Some(field));
    }
    let no_user = format!("keysmith/nouser-{}", uuid::Uuid::new_v4().simple());
    keysmith_tests::aws::secret(&t.sdk, &no_user, &json!({"note": "no user"})).await;
    let (s, b) = put("ci", json!({"secret_id": no_user, "interval_days": 30})).await;
    assert_error(s, &b, 400, "invalid_request", Some("secret_id"));

    let body = json!({"secret_id": secret, "interval_days": 30, "rotation_hour_utc": 3});
    let (s, created) = put("ci", body.clone()).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(
        created["next_due_at"].as_str().unwrap()[11..13].to_owned(),
        "03"
    );
    let (s, _) = put("ci", body).await;
    assert_eq!(s, 200);
    let (s, got) = t.call("GET", "/v1/rotations/ci", None, Some(ADMIN)).await;
    assert_eq!((s, &got["interval_days"]), (200, &json!(30)));
    let (s, b) = t
        .call(
            "PUT",
            "/v1/rotations/ci",
            Some(&got.to_string()),
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200, "a GET body can be PUT back: {b}");
    let (s, list) = t.call("GET", "/v1/rotations", None, Some(ADMIN)).await;
    assert_eq!((s, list["rotations"].as_array().unwrap().len()), (200, 1));
    let (s, b) = t.call("GET", "/v1/rotations", None, Some(DEPLOYER)).await;
    assert_error(s, &b, 403, "forbidden", None);

    let (s, requested) = t
        .call("POST", "/v1/rotations/ci/rotate", None, Some(ADMIN))
        .await;
    assert_eq!((s, &requested["status"]), (202, &json!("requested")));
    let report = schedule::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(
        report.rotated[0].1.old_access_key_id.as_deref(),
        Some(key.as_str())
    );
    let (_, got) = t.call("GET", "/v1/rotations/ci", None, Some(ADMIN)).await;
    assert!(got["last_rotated_at"].as_str().is_some());
    assert_eq!(got["status"], "idle");
    let (s, b) = t
        .call("POST", "/v1/rotations/nope/rotate", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 404, "not_found", None);
    let (s, _) = t
        .call("DELETE", "/v1/rotations/ci", None, Some(ADMIN))
        .await;
    assert_eq!(s, 204);
    let (s, b) = t.call("GET", "/v1/rotations/ci", None, Some(ADMIN)).await;
    assert_error(s, &b, 404, "not_found", None);
}

/// Issue 11 deliverable 4: `POST …/rotate` answers `202` (empty body or `{}`) and marks the policy
/// `requested`; nothing changes in IAM until scheduled-rotation runs, which then rotates it (with
/// RotationQueue configured, rotate-now also enqueues it: `queue.rs`). A failure shows as
/// `status: failed` with `last_error`.
#[tokio::test]
async fn rotate_now_is_asynchronous() {
    let moto = Moto::shared();
    let t = TestApp::on(moto, moto.sdk_config().await).await;
    let later = (Utc::now().hour() + 2) % 24;
    let (secret, user, key) = rotatable(&t).await;
    put_policy(
        &t,
        "asap",
        json!({"secret_id": secret, "interval_days": 30, "rotation_hour_utc": later}),
    )
    .await;
    let keys = |t: &TestApp| {
        let iam = aws_sdk_iam::Client::new(&t.sdk);
        let user = user.clone();
        async move {
            let mut k: Vec<String> = iam
                .list_access_keys()
                .user_name(&user)
                .send()
                .await
                .unwrap()
                .access_key_metadata
                .into_iter()
                .filter_map(|k| k.access_key_id)
                .collect();
            k.sort();
            k
        }
    };
    assert_eq!(
        schedule::run(&t.app, Utc::now(), &origin())
            .await
            .unwrap()
            .policies_read,
        0,
        "not due by its schedule"
    );
    for body in [None, Some("{}")] {
        let (s, b) = t
            .call("POST", "/v1/rotations/asap/rotate", body, Some(ADMIN))
            .await;
        assert_eq!(
            (s, &b["status"]),
            (202, &json!("requested")),
            "{body:?}: {b}"
        );
        assert_eq!(
            keys(&t).await,
            std::slice::from_ref(&key),
            "unchanged until scheduled-rotation runs"
        );
    }
    let (s, b) = t
        .call(
            "POST",
            "/v1/rotations/asap/rotate",
            Some(r#"{"now": true}"#),
            Some(ADMIN),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("body"));
    let (_, got) = t.call("GET", "/v1/rotations/asap", None, Some(ADMIN)).await;
    assert_eq!(got["status"], "requested");
    // The standard hourly Scheduled Event runs every requested rotation.
    let report = schedule::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(names(&report), ["asap"], "{:?}", report.to_json());
    assert_current_works(&t, &secret, &user, &key).await;
    assert_ne!(keys(&t).await, std::slice::from_ref(&key));
    let (_, got) = t.call("GET", "/v1/rotations/asap", None, Some(ADMIN)).await;
    assert_eq!(
        (&got["status"], &got["last_error"]),
        (&json!("idle"), &Value::Null)
    );

    // A user not bound to the secret: the requested rotation fails, visibly.
    let (secret, user, _) = rotatable(&t).await;
    aws_sdk_iam::Client::new(&t.sdk)
        .untag_user()
        .user_name(&user)
        .tag_keys("keysmith:rotation-secret")
        .send()
        .await
        .unwrap();
    put_policy(
        &t,
        "unbound",
        json!({"secret_id": secret, "interval_days": 30, "rotation_hour_utc": later}),
    )
    .await;
    let (s, _) = t
        .call("POST", "/v1/rotations/unbound/rotate", None, Some(ADMIN))
        .await;
    assert_eq!(s, 202);
    let report = schedule::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.to_json());
    let (_, got) = t
        .call("GET", "/v1/rotations/unbound", None, Some(ADMIN))
        .await;
    assert_eq!(got["status"], "failed");
    assert!(
        got["last_error"]
            .as_str()
            .unwrap()
            .contains("keysmith:rotation-secret"),
        "{got}"
    );
}

/// Issue 12: `rotation_hour_utc` moves the due time later, never earlier. Rotated now at hour H
/// with `interval_days: 1`: tomorrow's H:00 comes before 24 h have passed, so it is not due then.
#[tokio::test]
async fn a_rotation_hour_never_makes_a_policy_due_early() {
    let t = TestApp::new().await;
    let (secret, _, _) = rotatable(&t).await;
    let hour = Utc::now().hour();
    put_policy(
        &t,
        "daily",
        json!({"secret_id": secret, "interval_days": 1, "rotation_hour_utc": hour}),
    )
    .await;
    let rotated_at = Utc::now();
    let first = schedule::run(&t.app, rotated_at, &origin()).await.unwrap();
    assert_eq!(names(&first), ["daily"]);
    let tomorrow_at_hour = (rotated_at + Duration::days(1))
        .date_naive()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc();
    for at in [rotated_at + Duration::hours(23), tomorrow_at_hour] {
        let run = schedule::run(&t.app, at, &origin()).await.unwrap();
        assert!(run.rotated.is_empty(), "due at {at}: {:?}", run.to_json());
    }
    let later = schedule::run(&t.app, rotated_at + Duration::days(2), &origin())
        .await
        .unwrap();
    assert_eq!(names(&later), ["daily"]);
}
