//! Operations (SPEC §11): one EventBridge event per issuance and revocation, with the audit
//! fields and no secret; the metrics' EMF shape is unit-tested in `keysmith::ops`.

use keysmith_tests::api::{TestApp, DEPLOYER, LEASE_BOUNDARY, STRANGER};
use keysmith_tests::events::EventQueue;
use keysmith_tests::moto::Moto;
use serde_json::json;

#[tokio::test]
async fn issuances_and_revocations_put_one_event_each_on_the_default_bus() {
    // A server of its own: the rule sees every event on the bus.
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let queue = EventQueue::subscribe(&sdk).await;
    let t = TestApp::on(&moto, sdk).await;
    t.put_profile(
        "deploy",
        json!({"credential_type": "assumed_role",
               "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
               "allowed_principals": [DEPLOYER]}),
    )
    .await;
    t.put_profile(
        "temp",
        json!({"credential_type": "iam_user", "permissions_boundary_arn": LEASE_BOUNDARY,
               "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
               "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (s, issued) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    let (s, _) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            None,
            Some(STRANGER),
        )
        .await;
    assert_eq!(s, 403);
    let (s, lease) = t
        .call(
            "POST",
            "/v1/profiles/temp/credentials",
            Some(r#"{"duration_seconds": 900}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{lease}");
    let id = lease["lease_id"].as_str().unwrap();
    let (s, _) = t
        .call("DELETE", &format!("/v1/leases/{id}"), None, Some(DEPLOYER))
        .await;
    assert_eq!(s, 200);

    let events = queue.drain().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Credentials Issued",
            "Credentials Issued",
            "Credentials Revoked"
        ],
        "a denial is a metric, not an event: {events:?}"
    );
    let first = &events[0];
    assert_eq!(first["source"], "keysmith");
    let detail = &first["detail"];
    assert_eq!(detail["principal"], DEPLOYER);
    assert_eq!(detail["profile"], "deploy");
    assert_eq!(detail["access_key_id"], issued["access_key_id"]);
    assert_eq!(detail["lease_id"], issued["lease_id"]);
    assert_eq!(detail["outcome"], "success");
    // The event never carries what the response alone may carry.
    let text = events.iter().map(ToString::to_string).collect::<String>();
    for secret in [
        &issued["secret_access_key"],
        &issued["session_token"],
        &lease["secret_access_key"],
    ] {
        assert!(!text.contains(secret.as_str().unwrap()));
    }
}

#[tokio::test]
async fn rotations_and_failed_rotations_put_their_events() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let queue = EventQueue::subscribe(&sdk).await;
    let t = TestApp::on(&moto, sdk.clone()).await;
    let origin = keysmith::audit::Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Default::default()
    };
    // One user bound to its secret, one not: the second rotation fails at createSecret.
    for (user, bound) in [("ops-bound", true), ("ops-unbound", false)] {
        let (k, s) =
            keysmith_tests::aws::user_with_key(&sdk, user, &keysmith_tests::aws::allow_all()).await;
        let sid = format!("keysmith/{user}");
        keysmith_tests::aws::secret(
            &sdk,
            &sid,
            &json!({"user_name": user, "access_key_id": k, "secret_access_key": s}),
        )
        .await;
        if bound {
            keysmith_tests::aws::bind(&sdk, user, &sid).await;
        }
        let (status, body) = t
            .call(
                "PUT",
                &format!("/v1/rotations/{user}"),
                Some(&json!({"secret_id": sid, "interval_days": 30}).to_string()),
                Some(keysmith_tests::api::ADMIN),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let rotated = keysmith::rotation::rotate_policy(
            &t.app.policies,
            &t.app.rotator,
            user,
            chrono::Utc::now(),
            false,
            &origin,
        )
        .await;
        assert_eq!(rotated.is_ok(), bound, "{rotated:?}");
    }
    let events = queue.drain().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Access Key Rotated", "Rotation Failed"],
        "{events:?}"
    );
    assert_eq!(events[0]["detail"]["profile"], "ops-bound");
    assert_eq!(events[1]["detail"]["outcome"], "failed");
}
