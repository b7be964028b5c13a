//! Usage-gated graceful rotation (SPEC §15 `retire_unused_hours`, issue 28), against moto: the
//! previous key's last use is IAM's own (`GetAccessKeyLastUsed`, which moto updates when the key
//! signs a request); the runs' clock is moved forward instead of waiting hours.

use chrono::{DateTime, Duration, Utc};
use keysmith::audit::Origin;
use keysmith::jobs;
use keysmith::rotation::Retirement;
use keysmith_tests::api::{assert_error, key_events as count, TestApp, ADMIN};
use keysmith_tests::aws::{caller_arn, key_status as status};
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

/// The secret's current key pair (and its keys join the leak scan).
async fn current(t: &TestApp, secret: &str, user: &str) -> (String, String) {
    let snapshot = Snapshot::take(&t.sdk, &t.sdk, secret, user).await;
    let (id, secret_key) = snapshot.current_key();
    (id.to_owned(), secret_key.to_owned())
}

async fn policy(t: &TestApp, name: &str) -> Value {
    let (status, body) = t
        .call("GET", &format!("/v1/rotations/{name}"), None, Some(ADMIN))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn retire_unused_hours_is_validated() {
    let t = TestApp::new().await;
    let (secret, _) = graceful(
        &t,
        &format!("valid-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    )
    .await;
    for bad in [json!(0), json!(721), json!("24"), json!(1.5)] {
        let (status, body) = t
            .call(
                "PUT",
                "/v1/rotations/bad",
                Some(
                    &json!({"secret_id": secret, "interval_days": 30, "retire_unused_hours": bad})
                        .to_string(),
                ),
                Some(ADMIN),
            )
            .await;
        assert_error(
            status,
            &body,
            400,
            "invalid_request",
            Some("retire_unused_hours"),
        );
    }
    t.put_rotation(
        "good",
        json!({"secret_id": secret, "interval_days": 30, "retire_unused_hours": 720}),
    )
    .await;
    assert_eq!(policy(&t, "good").await["retire_unused_hours"], 720);
}

#[tokio::test]
async fn a_previous_key_in_use_waits_and_an_unused_one_is_retired() {
    let moto = Moto::start();
    let t = TestApp::on(&moto, moto.sdk_config().await).await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let user = "graceful-ci";
    let (secret, k0) = graceful(&t, user).await;
    t.put_rotation(
        "grace",
        json!({"secret_id": secret, "interval_days": 30, "retire_unused_hours": 24}),
    )
    .await;

    // Never rotated: due now. Nothing is previous yet, so it rotates: k0 becomes AWSPREVIOUS.
    let first = jobs::run_rotations(&t.app, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(first.rotated.len(), 1, "{:?}", first.to_json());
    let (k1, _) = current(&t, &secret, user).await;
    assert_eq!(status(&iam, user, &k0.access_key_id).await, "Active");

    // Something still signs with the previous key; then an admin asks for a rotation.
    caller_arn(&moto, &k0.access_key_id, &k0.secret_access_key, None)
        .await
        .unwrap();
    let used: DateTime<Utc> = Utc::now();
    let (code, body) = t
        .call("POST", "/v1/rotations/grace/rotate", None, Some(ADMIN))
        .await;
    assert_eq!(code, 202, "{body}");

    // Two hours after its last use: it stays, the rotation waits, and the status says why.
    let waiting = jobs::run_rotations(&t.app, used + Duration::hours(2), &origin())
        .await
        .unwrap();
    assert!(waiting.rotated.is_empty(), "{:?}", waiting.to_json());
    assert!(
        matches!(&waiting.checked[..], [(_, Retirement::Waiting { access_key_id, .. })] if *access_key_id == k0.access_key_id),
        "{:?}",
        waiting.to_json()
    );
    assert_eq!(status(&iam, user, &k0.access_key_id).await, "Active");
    assert_eq!(
        current(&t, &secret, user).await.0,
        k1,
        "the rotation waited"
    );
    let p = policy(&t, "grace").await;
    assert_eq!(p["status"], "waiting_for_unused", "{p}");
    let reason = p["status_reason"].as_str().unwrap();
    assert!(
        reason.contains(&k0.access_key_id) && reason.contains("24 h"),
        "{reason}"
    );
    // Requested, not past its interval: no warning yet.
    assert_eq!(
        count(
            &t.audit_items().await,
            "Access Key Retirement Overdue",
            &k0.access_key_id
        ),
        0
    );
    // Not due again before the key may retire.
    let early = jobs::run_rotations(&t.app, used + Duration::hours(3), &origin())
        .await
        .unwrap();
    assert!(
        early.checked.is_empty() && early.rotated.is_empty(),
        "{:?}",
        early.to_json()
    );

    // 25 hours without use: retired (deactivated, audited), then the waiting rotation runs and
    // graceful mode deletes the inactive previous key.
    let late = jobs::run_rotations(&t.app, used + Duration::hours(25), &origin())
        .await
        .unwrap();
    assert_eq!(late.rotated.len(), 1, "{:?}", late.to_json());
    let items = t.audit_items().await;
    assert_eq!(count(&items, "Access Key Retired", &k0.access_key_id), 1);
    assert_eq!(status(&iam, user, &k0.access_key_id).await, "Deleted");
    let (k2, k2_secret) = current(&t, &secret, user).await;
    assert_ne!(k2, k1, "{:?}", late.to_json());
    caller_arn(&moto, &k2, &k2_secret, None)
        .await
        .expect("AWSCURRENT works");
    assert_eq!(
        status(&iam, user, &k1).await,
        "Active",
        "k1 is the previous key now"
    );
    let p = policy(&t, "grace").await;
    assert_eq!(p["status"], "idle", "{p}");
    assert!(p["status_reason"].is_null(), "{p}");

    // Nobody uses k1: 25 hours after the rotation that replaced it, it is deactivated — not
    // deleted (the next rotation, 30 days on, does that) — and the policy is idle.
    let quiet = jobs::run_rotations(&t.app, Utc::now() + Duration::hours(25), &origin())
        .await
        .unwrap();
    assert!(quiet.rotated.is_empty(), "{:?}", quiet.to_json());
    assert!(
        matches!(&quiet.checked[..], [(_, Retirement::Retired { access_key_id })] if *access_key_id == k1),
        "{:?}",
        quiet.to_json()
    );
    assert_eq!(status(&iam, user, &k1).await, "Inactive");
    assert_eq!(status(&iam, user, &k2).await, "Active");
    assert_eq!(count(&t.audit_items().await, "Access Key Retired", &k1), 1);
    assert_eq!(policy(&t, "grace").await["status"], "idle");
}

/// A graceful secret of a new user, bound, with one key; returns (secret, user, the key).
async fn graceful(t: &TestApp, user: &str) -> (String, aws_sdk_iam::types::AccessKey) {
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let secret = format!("keysmith/{user}");
    iam.create_user().user_name(user).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    keysmith_tests::aws::bind(&t.sdk, user, &secret).await;
    keysmith_tests::aws::secret(
        &t.sdk,
        &secret,
        &json!({"user_name": user, "access_key_id": key.access_key_id,
            "secret_access_key": key.secret_access_key, "mode": "graceful"}),
    )
    .await;
    (secret, key)
}

#[tokio::test]
async fn a_rotation_past_its_interval_waits_with_one_warning_a_day() {
    let moto = Moto::start();
    let t = TestApp::on(&moto, moto.sdk_config().await).await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let (secret, k0) = graceful(&t, "graceful-daily").await;
    t.put_rotation(
        "daily",
        json!({"secret_id": secret, "interval_days": 1, "retire_unused_hours": 48}),
    )
    .await;
    jobs::run_rotations(&t.app, Utc::now(), &origin())
        .await
        .unwrap();
    caller_arn(&moto, &k0.access_key_id, &k0.secret_access_key, None)
        .await
        .unwrap();
    let used = Utc::now();
    // A day on the rotation is due, and k0 was used a day ago: it waits, with a warning.
    let due = jobs::run_rotations(&t.app, used + Duration::hours(25), &origin())
        .await
        .unwrap();
    assert!(due.rotated.is_empty(), "{:?}", due.to_json());
    assert_eq!(
        status(&iam, "graceful-daily", &k0.access_key_id).await,
        "Active"
    );
    let items = t.audit_items().await;
    assert_eq!(
        count(&items, "Access Key Retirement Overdue", &k0.access_key_id),
        1
    );
    let warning = items
        .iter()
        .find(|i| i["event"].as_s().unwrap() == "Access Key Retirement Overdue")
        .unwrap();
    assert_eq!(warning["level"].as_s().unwrap(), "WARN");
    assert_eq!(policy(&t, "daily").await["status"], "waiting_for_unused");
    // Once unused for 48 hours: retired, and the waiting rotation runs; no second warning.
    let done = jobs::run_rotations(&t.app, used + Duration::hours(49), &origin())
        .await
        .unwrap();
    assert_eq!(done.rotated.len(), 1, "{:?}", done.to_json());
    assert_eq!(
        status(&iam, "graceful-daily", &k0.access_key_id).await,
        "Deleted"
    );
    let items = t.audit_items().await;
    assert_eq!(
        count(&items, "Access Key Retirement Overdue", &k0.access_key_id),
        1
    );
    assert_eq!(count(&items, "Access Key Retired", &k0.access_key_id), 1);
}

#[tokio::test]
async fn outside_graceful_mode_nothing_waits() {
    let moto = Moto::start();
    let t = TestApp::on(&moto, moto.sdk_config().await).await;
    let (secret, user, k0) = keysmith_tests::rotation::rotatable(&t.sdk, "replace").await;
    t.put_rotation(
        "plain",
        json!({"secret_id": secret, "interval_days": 1, "retire_unused_hours": 24}),
    )
    .await;
    let first = jobs::run_rotations(&t.app, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(first.rotated.len(), 1, "{:?}", first.to_json());
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    assert_eq!(
        status(&iam, &user, &k0).await,
        "Deleted",
        "replace removes the old key"
    );
    // A day on, the next rotation is not held back.
    let next = jobs::run_rotations(
        &t.app,
        Utc::now() + Duration::days(1) + Duration::minutes(1),
        &origin(),
    )
    .await
    .unwrap();
    assert_eq!(next.rotated.len(), 1, "{:?}", next.to_json());
}
