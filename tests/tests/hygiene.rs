//! Key hygiene and incident response (SPEC §15, issue 28), against moto: the unused and old key
//! report (dry run by default, exemptions with a reason, never Keysmith's own keys — also a
//! secret rotated on Secrets Manager's schedule by Keysmith's function), `keys reactivate`, the
//! quarantine response for a rotated key, a lease's key and an unknown key, and the canary
//! through the built scheduled-rotation.

use chrono::{Duration, Utc};
use keysmith::audit::Origin;
use keysmith::hygiene::quarantine::Exposure;
use keysmith::jobs;
use keysmith_tests::api::{assert_error, key_events as events, TestApp, ADMIN, DEPLOYER};
use keysmith_tests::aws::{caller_arn, key_status as status};
use keysmith_tests::moto::Moto;
use keysmith_tests::rotation::{rotatable, rotation_lambda, start_rotation, Snapshot};
use serde_json::{json, Value};

fn origin() -> Origin {
    Origin {
        principal: "keysmith:scheduled-rotation".into(),
        region: "us-east-1".into(),
        ..Origin::default()
    }
}

async fn user_with_key(iam: &aws_sdk_iam::Client, name: &str, exempt: Option<&str>) -> String {
    let mut create = iam.create_user().user_name(name);
    if let Some(reason) = exempt {
        create = create.tags(
            aws_sdk_iam::types::Tag::builder()
                .key("keysmith:exempt")
                .value(reason)
                .build()
                .unwrap(),
        );
    }
    create.send().await.unwrap();
    iam.create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap()
        .access_key_id
}

#[tokio::test]
async fn the_report_deactivates_only_what_it_may_and_reactivate_undoes_it() {
    let moto = Moto::start();
    let mut t = TestApp::on(&moto, moto.sdk_config().await).await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let idle = user_with_key(&iam, "idle", None).await;
    let exempt = user_with_key(&iam, "break-glass", Some("the CFO's emergency key")).await;
    let no_reason = user_with_key(&iam, "no-reason", Some(" ")).await;
    // A rotation policy's secret, and a secret Secrets Manager rotates on its own schedule with
    // Keysmith's function: their current keys are Keysmith's.
    let (secret, hyg_user, _) = rotatable(&t.sdk, "hyg").await;
    t.put_rotation("hyg", json!({"secret_id": secret, "interval_days": 365}))
        .await;
    // Rotated now, so the runs 100 days on find it not due and its current key 100 days old.
    jobs::run(&t.app, Utc::now(), &origin()).await.unwrap();
    let policy_key = Snapshot::take(&t.sdk, &t.sdk, &secret, &hyg_user)
        .await
        .current_key()
        .0
        .to_owned();
    let lambda = rotation_lambda(&moto, &t.sdk).await;
    let (scheduled, sm_user, scheduled_key) = rotatable(&t.sdk, "sm").await;
    start_rotation(&t.sdk, &scheduled, &lambda).await;
    t.app.config.max_key_age_days = Some(90);
    t.app.config.unused_key_days = Some(30);
    t.app.config.secret_rotation_function_arn = Some(lambda.clone());

    let later = Utc::now() + Duration::days(100);
    let dry = jobs::run(&t.app, later, &origin()).await.unwrap();
    let flagged: Vec<&str> = dry
        .old_keys
        .iter()
        .map(|k| k.access_key_id.as_str())
        .collect();
    for key in [&idle, &exempt, &no_reason] {
        assert!(
            flagged.contains(&key.as_str()),
            "{key} reported: {:?}",
            dry.to_json()
        );
    }
    for key in [&policy_key, &scheduled_key] {
        assert!(
            !flagged.contains(&key.as_str()),
            "Keysmith's own key {key} reported"
        );
    }
    assert!(
        dry.old_keys.iter().all(|k| !k.deactivated),
        "dry run by default"
    );
    assert!(dry.old_keys.iter().all(|k| k.unused_days == Some(100)));
    assert_eq!(status(&iam, "idle", &idle).await, "Active");

    t.app.config.key_age_dry_run = false;
    let acted = jobs::run(&t.app, later, &origin()).await.unwrap();
    let by_key = |k: &str| {
        acted
            .old_keys
            .iter()
            .find(|o| o.access_key_id == k)
            .unwrap()
    };
    assert!(by_key(&idle).deactivated);
    assert!(
        by_key(&no_reason).deactivated,
        "an exemption without a reason exempts nothing"
    );
    assert!(!by_key(&exempt).deactivated);
    assert_eq!(
        by_key(&exempt).exempt.as_deref(),
        Some("the CFO's emergency key")
    );
    assert_eq!(status(&iam, "idle", &idle).await, "Inactive");
    assert_eq!(status(&iam, "break-glass", &exempt).await, "Active");
    for (user, key) in [(&hyg_user, &policy_key), (&sm_user, &scheduled_key)] {
        assert_eq!(status(&iam, user, key).await, "Active", "{key} was touched");
    }
    let items = t.audit_items().await;
    assert_eq!(events(&items, "Access Key Deactivated", &idle), 1);
    assert_eq!(
        events(&items, "Old Access Key", &exempt),
        2,
        "reported each run"
    );

    // Back to a dry run, Keysmith may change no key: refused, not queued for nobody.
    t.app.config.key_age_dry_run = true;
    let path = format!("/v1/keys/{idle}/reactivate");
    let (s, b) = t.call("POST", &path, None, Some(ADMIN)).await;
    assert_error(s, &b, 409, "conflict", None);
    t.app.config.key_age_dry_run = false;
    // Reactivate: the report's deactivation only, once.
    let reactivate = |key: String| {
        let t = &t;
        async move {
            t.call(
                "POST",
                &format!("/v1/keys/{key}/reactivate"),
                None,
                Some(ADMIN),
            )
            .await
        }
    };
    let (s, b) = reactivate(idle.clone()).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        b,
        json!({"access_key_id": idle, "user_name": "idle", "status": "requested"})
    );
    // Asked twice before it is done: the same request.
    let (s, _) = reactivate(idle.clone()).await;
    assert_eq!(s, 202);
    assert_eq!(
        status(&iam, "idle", &idle).await,
        "Inactive",
        "the API changes no key"
    );
    let swept = jobs::sweep(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(swept.reactivated, vec![idle.clone()]);
    assert_eq!(status(&iam, "idle", &idle).await, "Active");
    let again = jobs::sweep(&t.app, Utc::now(), &origin()).await.unwrap();
    assert!(again.reactivated.is_empty());
    let (s, b) = reactivate(idle.clone()).await;
    assert_error(s, &b, 409, "conflict", None);
    let (s, b) = reactivate(exempt.clone()).await;
    assert_error(s, &b, 409, "conflict", None);
    let (s, b) = reactivate("AKIAIOSFODNN7EXAMPLE".into()).await;
    assert_error(s, &b, 404, "not_found", None);
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/keys/{idle}/reactivate"),
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let items = t.audit_items().await;
    assert_eq!(
        events(&items, "Access Key Reactivation Requested", &idle),
        1
    );
    assert_eq!(events(&items, "Access Key Reactivated", &idle), 1);
}

fn guardduty(key: &str) -> Value {
    json!({"type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": key,
        "principalId": "AIDAEXAMPLE", "userName": "x", "userType": "IAMUser"}}})
}

#[tokio::test]
async fn a_quarantined_key_is_answered_by_what_owns_it() {
    let t = TestApp::new().await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    // A rotated key: rotated once by Keysmith, so the trail knows it.
    let (secret, user, original) = rotatable(&t.sdk, "quar").await;
    t.put_rotation("quar", json!({"secret_id": secret, "interval_days": 1}))
        .await;
    let (s, b) = t
        .call("POST", "/v1/rotations/quar/rotate", None, Some(ADMIN))
        .await;
    assert_eq!(s, 202, "{b}");
    jobs::run(&t.app, Utc::now(), &origin()).await.unwrap();
    let exposed = Snapshot::take(&t.sdk, &t.sdk, &secret, &user)
        .await
        .current_key()
        .0
        .to_owned();
    assert_ne!(exposed, original);

    let event = Exposure::of("aws.guardduty", &guardduty(&exposed)).unwrap();
    let report = jobs::quarantine(&t.app, &event, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(report["quarantine"][0]["action"], "deactivated", "{report}");
    // Replace mode deletes it once the new key works; until then, and in graceful mode, it is
    // inactive. Either way it no longer signs anything.
    let s = status(&iam, &user, &exposed).await;
    assert!(s == "Inactive" || s == "Deleted", "{s}");
    let after = Snapshot::take(&t.sdk, &t.sdk, &secret, &user).await;
    let (current, secret_key) = after.current_key();
    assert_ne!(current, exposed, "a new key is current");
    let arn = caller_arn(Moto::shared(), current, secret_key, None)
        .await
        .unwrap();
    assert!(arn.ends_with(&format!("/{user}")), "{arn}");
    // A duplicate delivery changes nothing and writes nothing.
    jobs::quarantine(&t.app, &event, Utc::now(), &origin())
        .await
        .unwrap();
    let again = Snapshot::take(&t.sdk, &t.sdk, &secret, &user).await;
    assert_eq!(again.current_key().0, current, "not rotated twice");
    let items = t.audit_items().await;
    assert_eq!(events(&items, "Access Key Quarantined", &exposed), 1);

    // A lease's key (an assumed_role lease's STS key): the lease ends.
    let role = keysmith_tests::aws::assumable_role(&t.sdk, "/keysmith/", "quar-deploy").await;
    t.put_profile(
        "deploy",
        json!({"credential_type": "assumed_role", "role_arn": role,
        "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (s, issued) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    let key = issued["access_key_id"].as_str().unwrap();
    let event = Exposure::of("aws.guardduty", &guardduty(key)).unwrap();
    let report = jobs::quarantine(&t.app, &event, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(
        report["quarantine"][0]["action"], "lease_revoked",
        "{report}"
    );
    let lease = t
        .app
        .leases
        .get(issued["lease_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(lease.to_json()["status"], "revoked");

    // AWS quarantines a user Keysmith knows nothing of: audited, nothing changed.
    let stranger = user_with_key(&iam, "stranger", None).await;
    let attach = json!({"eventName": "AttachUserPolicy", "requestParameters": {"userName": "stranger",
        "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"}});
    let event = Exposure::of("aws.iam", &attach).unwrap();
    let report = jobs::quarantine(&t.app, &event, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(report["quarantine"][0]["action"], "none", "{report}");
    assert_eq!(status(&iam, "stranger", &stranger).await, "Active");
    let items = t.audit_items().await;
    assert_eq!(events(&items, "Access Key Quarantined", &stranger), 1);
}

/// The canary through the built scheduled-rotation: issue, prove, revoke, and both metrics (EMF
/// lines on stdout); a broken canary profile fails, says so, and counts a failure.
#[tokio::test]
async fn the_canary_issues_proves_revokes_and_measures() {
    let t = TestApp::new().await;
    let role = keysmith_tests::aws::assumable_role(&t.sdk, "/keysmith/", "canary").await;
    t.put_profile(
        "canary",
        json!({"credential_type": "assumed_role", "role_arn": role,
        "allowed_principals": ["group:keysmith-canary"]}),
    )
    .await;
    let moto = Moto::shared();
    let start = |profile: &'static str| {
        let (state, audit) = (t.state_table.clone(), t.audit_table.clone());
        async move {
            keysmith_tests::runtime::FunctionProcess::start(
                &keysmith_tests::function_binary("scheduled-rotation"),
                &[
                    ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                    ("AWS_REGION", keysmith_tests::moto::REGION),
                    ("AWS_ACCESS_KEY_ID", "test"),
                    ("AWS_SECRET_ACCESS_KEY", "test"),
                    ("KEYSMITH_STATE_TABLE", &state),
                    ("KEYSMITH_AUDIT_TABLE", &audit),
                    ("KEYSMITH_ADMINS", ADMIN),
                    ("KEYSMITH_CANARY_PROFILE", profile),
                ],
            )
            .await
        }
    };
    let f = start("canary").await;
    let out = f
        .invoke(&keysmith_tests::event("canary.json"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", f.logs()));
    assert_eq!(out["canary"], "ok", "{out}\n{}", f.logs());
    let lease = t
        .app
        .leases
        .get(out["lease_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(lease.to_json()["status"], "revoked");
    assert_eq!(lease.to_json()["principal"], "keysmith:canary");
    let logs = f.logs();
    assert!(logs.contains("\"CanaryLatency\":"), "{logs}");
    assert!(logs.contains("\"CanaryFailure\":0"), "{logs}");

    let broken = start("no-such-profile").await;
    let out = broken
        .invoke(&keysmith_tests::event("canary.json"))
        .await
        .unwrap();
    assert_eq!(out["canary"], "failed", "{out}");
    assert!(
        out["error"].as_str().unwrap().starts_with("issue:"),
        "{out}"
    );
    assert!(
        broken.logs().contains("\"CanaryFailure\":1"),
        "{}",
        broken.logs()
    );
}
