//! Dynamic IAM users (`iam_user`): issuance, exact attachments, revocation that leaves nothing,
//! crash and audit-failure cleanup, and the expired-lease sweep.

use aws_sdk_iam::Client as Iam;
use chrono::Utc;
use keysmith::audit::Origin;
use keysmith::lease::{Lease, LeaseStatus};
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY, STRANGER};
use keysmith_tests::aws::{allow_all, caller_arn, user_with_key};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::CaptureProxy;
use serde_json::{json, Value};

/// A group and a managed policy for profiles to use; returns the policy's arn.
async fn iam_fixtures(iam: &Iam) -> String {
    // Under the lease group path: the only groups a profile may name.
    iam.create_group()
        .path("/keysmith/")
        .group_name("deployers")
        .send()
        .await
        .unwrap();
    let doc = allow_all().to_string();
    let policy = iam
        .create_policy()
        .policy_name("keysmith-readonly")
        .policy_document(&doc)
        .send()
        .await
        .unwrap();
    policy.policy.unwrap().arn.unwrap()
}

fn profile(policy_arn: &str) -> Value {
    json!({
        "credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
        "policy_arns": [policy_arn],
        "iam_groups": ["deployers"],
        "permissions_boundary_arn": LEASE_BOUNDARY,
        "user_path": "/keysmith/ci/",
        "allowed_principals": [DEPLOYER],
    })
}

async fn keysmith_users(iam: &Iam) -> Vec<String> {
    let out = iam
        .list_users()
        .path_prefix("/keysmith/")
        .send()
        .await
        .unwrap();
    out.users.into_iter().map(|u| u.user_name).collect()
}

async fn issue(t: &TestApp, profile: &str, duration: u32) -> Value {
    let body = json!({"duration_seconds": duration}).to_string();
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some(&body),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

#[tokio::test]
async fn iam_user_credentials_work_and_revocation_leaves_nothing() {
    let moto = Moto::start();
    let root = moto.sdk_config().await;
    let (fn_key, fn_secret) = user_with_key(&root, "keysmith-function", &allow_all()).await;
    let creds = aws_sdk_sts::config::Credentials::new(&fn_key, &fn_secret, None, None, "t");
    let sdk = moto.sdk_config_with(creds.clone()).await;
    let iam = Iam::new(&sdk);
    let policy_arn = iam_fixtures(&iam).await;
    // The function talks to moto through a recording proxy: moto keeps no permissions
    // boundaries on users, so the boundary is checked on the wire.
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let t = TestApp::on(&moto, Moto::sdk_config_at(&proxy.endpoint, creds).await).await;
    moto.enable_auth().await;

    t.put_profile("temp", profile(&policy_arn)).await;
    let issued = issue(&t, "temp", 900).await;
    assert_eq!(issued["credential_type"], "iam_user");
    assert_eq!(issued["lease_duration"], 900);
    assert_eq!(issued["session_token"], Value::Null);
    let lease_id = issued["lease_id"].as_str().unwrap().to_owned();
    let key_id = issued["access_key_id"].as_str().unwrap();
    let secret = issued["secret_access_key"].as_str().unwrap();

    // The key works, and names a user under the profile's path.
    let arn = caller_arn(&moto, key_id, secret, None)
        .await
        .expect("the issued key must work");
    assert!(
        arn.starts_with("arn:aws:iam::123456789012:user/keysmith/ci/ks-temp-alice-"),
        "{arn}"
    );
    let users = keysmith_users(&iam).await;
    assert_eq!(users.len(), 1);
    let user = &users[0];

    // Exactly the profile's policies, groups, boundary and path.
    let got = iam
        .get_user()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(got.path, "/keysmith/ci/");
    let create = proxy
        .requests()
        .into_iter()
        .find(|r| r.form("Action").as_deref() == Some("CreateUser"))
        .unwrap();
    assert_eq!(create.form("UserName").as_deref(), Some(user.as_str()));
    assert_eq!(
        create.form("PermissionsBoundary").as_deref(),
        Some(LEASE_BOUNDARY)
    );
    let tags: Vec<(String, String)> = got
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert!(
        tags.contains(&("keysmith:lease-id".into(), lease_id.clone())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("keysmith:profile".into(), "temp".into())),
        "{tags:?}"
    );
    let inline = iam
        .list_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .policy_names;
    let mut inline = inline;
    inline.sort();
    assert_eq!(inline, ["keysmith-lease-expiry", "keysmith-session"]);
    let attached = iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn.as_deref())
        .collect();
    assert_eq!(attached, [policy_arn.as_str()]);
    let groups = iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .groups;
    assert_eq!(
        groups
            .iter()
            .map(|g| g.group_name.as_str())
            .collect::<Vec<_>>(),
        ["deployers"]
    );
    let keys = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key_metadata;
    assert_eq!(keys.len(), 1);

    let items = t.audit_items().await;
    let audited = items
        .iter()
        .find(|i| i.get("lease_id").and_then(|v| v.as_s().ok()) == Some(&lease_id))
        .expect("issuance audited");
    assert_eq!(audited["access_key_id"].as_s().unwrap(), key_id);
    assert_eq!(audited["credential_type"].as_s().unwrap(), "iam_user");
    assert!(!format!("{items:?}").contains(secret));

    // Others may neither see nor end the lease.
    let (s, b) = t
        .call("GET", "/v1/leases?profile=temp", None, Some(STRANGER))
        .await;
    assert_eq!((s, &b["leases"]), (200, &json!([])));
    let (s, b) = t
        .call(
            "DELETE",
            &format!("/v1/leases/{lease_id}"),
            None,
            Some(STRANGER),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t
        .call("GET", "/v1/leases?profile=temp", None, Some(DEPLOYER))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["leases"][0]["lease_id"], lease_id.as_str());
    assert_eq!(b["leases"][0]["status"], "active");

    let (s, first) = t
        .call(
            "DELETE",
            &format!("/v1/leases/{lease_id}"),
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["status"], "revoked");
    assert!(keysmith_users(&iam).await.is_empty(), "the user is gone");
    let err = iam.get_user().user_name(user).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert_eq!(
        caller_arn(&moto, key_id, secret, None).await,
        Err(403),
        "the key no longer works"
    );

    // A second revoke (here by an admin) answers the same way.
    let (s, second) = t
        .call(
            "DELETE",
            &format!("/v1/leases/{lease_id}"),
            None,
            Some(ADMIN),
        )
        .await;
    assert_eq!((s, &second), (200, &first));
    let (s, b) = t
        .call(
            "DELETE",
            &format!("/v1/leases/{}", uuid::Uuid::new_v4()),
            None,
            Some(ADMIN),
        )
        .await;
    assert_error(s, &b, 404, "not_found", None);
    let (s, b) = t
        .call("DELETE", "/v1/leases/not-a-uuid", None, Some(ADMIN))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("lease_id"));
    let revocations = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["event"].as_s().unwrap() == "Lease Revoked")
        .map(|i| i["outcome"].as_s().unwrap().clone())
        .collect::<Vec<_>>();
    assert_eq!(revocations.iter().filter(|o| *o == "success").count(), 2);
    assert_eq!(revocations.iter().filter(|o| *o == "denied").count(), 1);
}

/// Things people add to a user after Keysmith made it: revocation removes them too. (moto's auth
/// enforcement miscomputes signatures of form values with spaces, such as SSH keys, so this test
/// runs with auth off.)
#[tokio::test]
async fn revocation_also_removes_login_profile_mfa_and_ssh_keys() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", json!({"credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "user_path": path, "permissions_boundary_arn": LEASE_BOUNDARY, "allowed_principals": [DEPLOYER]})).await;
    let lease_id = issue(&t, "temp", 900).await["lease_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = t.app.leases.get(&lease_id).await.unwrap().user_name;
    let user = &user;
    // Someone adds a console password, an MFA device and an SSH key: revocation still finishes.
    iam.create_login_profile()
        .user_name(user)
        .password("Correct-Horse-9")
        .send()
        .await
        .unwrap();
    let mfa = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(format!("{user}-mfa"))
        .send()
        .await
        .unwrap();
    let serial = mfa.virtual_mfa_device.unwrap().serial_number;
    iam.enable_mfa_device()
        .user_name(user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    let mfa_name = serial.rsplit('/').next().unwrap().to_owned();
    iam.upload_ssh_public_key()
        .user_name(user)
        .ssh_public_key_body(SSH_KEY)
        .send()
        .await
        .unwrap();

    let (s, b) = t
        .call(
            "DELETE",
            &format!("/v1/leases/{lease_id}"),
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_eq!((s, &b["status"]), (200, &json!("revoked")), "{b}");
    assert!(iam
        .list_users()
        .path_prefix(&path)
        .send()
        .await
        .unwrap()
        .users
        .is_empty());
    let mfa_left = iam
        .list_virtual_mfa_devices()
        .send()
        .await
        .unwrap()
        .virtual_mfa_devices;
    assert!(
        !mfa_left
            .iter()
            .any(|d| d.serial_number.ends_with(&mfa_name)),
        "{mfa_left:?}"
    );
}

const SSH_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC3F6sJ1hX9Z0nq4s8mYxq2k0z6v8p7m9k3R4s5t6u7v8w9x0y1z2A3B4C5D6E7F8G9H0I1J2K3L4M5N6O7P8Q9R0S1T2U3V4W5X6Y7Z8a9b0c1d2e3f4g5h6i7j8k9l0m1n2o3p4q5r6s7t8u9v0w1x2y3z4A5B6C7D8E9F0G1H2I3J4K5L6M7N8O9P0Q1R2S3T4U5V6W7X8Y9Z0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F2G3H4I5J6K7L8M9N0O1P2Q3R4S5T6U7V8W9X0Y1Z2a3b4c5d6e7f8g9h0";

#[tokio::test]
async fn an_unaudited_user_is_deleted_and_a_failed_issuance_cleans_up() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    // Own names on the shared server: a path of this test's own.
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    iam.create_group()
        .path("/keysmith/")
        .group_name(&group)
        .send()
        .await
        .unwrap();
    t.put_profile(
        "temp",
        json!({"credential_type": "iam_user", "iam_groups": [group], "user_path": path,
        "permissions_boundary_arn": LEASE_BOUNDARY, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let users = |iam: &Iam, path: String| {
        let iam = iam.clone();
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

    // The audit write fails after the user exists: no credentials, no user.
    let broken = TestApp::with_tables(t.sdk.clone(), &t.state_table, "no-such-audit-table");
    let (s, b) = broken
        .call(
            "POST",
            "/v1/profiles/temp/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 503, "audit_unavailable", None);
    assert_eq!(
        users(&iam, path.clone()).await,
        0,
        "the unaudited user was deleted"
    );
    let (_, leases) = t
        .call("GET", "/v1/leases?profile=temp", None, Some(ADMIN))
        .await;
    assert_eq!(leases["leases"][0]["status"], "revoked", "{leases}");

    // IAM fails half-way (the group is gone): the user is deleted at once, the caller gets 502.
    iam.delete_group().group_name(&group).send().await.unwrap();
    let (s, b) = t
        .call(
            "POST",
            "/v1/profiles/temp/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 502, "upstream_error", None);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AddUserToGroup"),
        "{b}"
    );
    assert_eq!(users(&iam, path.clone()).await, 0);
    let items = t.audit_items().await;
    assert!(
        items
            .iter()
            .any(|i| i["outcome"].as_s().unwrap() == "failed"),
        "the failure is audited"
    );
}

fn pending_lease(user_name: &str, expires_in: i64) -> Lease {
    let now = Utc::now();
    Lease {
        id: uuid::Uuid::new_v4().to_string(),
        profile: "temp".into(),
        principal: DEPLOYER.into(),
        user_name: user_name.into(),
        access_key_id: None,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(expires_in),
        status: LeaseStatus::Pending,
        revoked_at: None,
        counter: None,
        credential_type: keysmith::profile::CredentialType::IamUser,
        target: None,
        session_policy_sha256: None,
        not_after: None,
    }
}

#[tokio::test]
async fn expired_leases_are_all_revoked_even_when_one_user_is_already_gone() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", json!({"credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "user_path": path, "permissions_boundary_arn": LEASE_BOUNDARY, "allowed_principals": [DEPLOYER]})).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            issue(&t, "temp", 900).await["lease_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let long = issue(&t, "temp", 7200).await["lease_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A crash right after the lease record, before CreateUser: a pending lease with no user.
    let crashed = pending_lease("ks-temp-alice-000000000000", 60);
    t.app.leases.record(&crashed).await.unwrap();
    ids.push(crashed.id.clone());
    // Someone deletes one user by hand.
    let first = t.app.leases.get(&ids[0]).await.unwrap();
    t.app.leases.users.delete(&first.user_name).await.unwrap();
    assert_eq!(
        iam.list_users()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .users
            .len(),
        3
    );

    let origin = Origin {
        principal: "keysmith:scheduler".into(),
        ..Origin::default()
    };
    let later = Utc::now() + chrono::Duration::seconds(1000);
    let report = t
        .app
        .leases
        .revoke_expired(later, &t.app.audit, &origin)
        .await
        .unwrap();
    let mut revoked = report.revoked.clone();
    revoked.sort();
    ids.sort();
    assert_eq!(revoked, ids, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let left = iam
        .list_users()
        .path_prefix(&path)
        .send()
        .await
        .unwrap()
        .users;
    assert_eq!(left.len(), 1, "only the unexpired lease's user remains");
    assert_eq!(
        t.app.leases.get(&long).await.unwrap().status,
        LeaseStatus::Active
    );
    for id in &ids {
        assert_eq!(
            t.app.leases.get(id).await.unwrap().status,
            LeaseStatus::Revoked
        );
    }
    // Nothing is due any more: a second sweep does nothing.
    let again = t
        .app
        .leases
        .revoke_expired(later, &t.app.audit, &origin)
        .await
        .unwrap();
    assert!(again.revoked.is_empty() && again.failed.is_empty());
    let swept = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == "Lease Revoked"
                && i["principal"].as_s().unwrap() == "keysmith:scheduler"
        })
        .count();
    assert_eq!(swept, 4);
}

fn temp_profile(path: &str, boundary: Option<&str>) -> Value {
    let mut p = json!({"credential_type": "iam_user",
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        "user_path": path, "allowed_principals": [DEPLOYER]});
    if let Some(b) = boundary {
        p["permissions_boundary_arn"] = json!(b);
    }
    p
}

/// The attack: an admin's typo (or a hijacked admin) puts `AdministratorAccess` on a profile, or no
/// ceiling at all, and every lease user becomes an administrator.
#[tokio::test]
async fn an_iam_user_profile_needs_one_of_the_deployments_lease_boundaries() {
    let t = TestApp::new().await;
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    for boundary in [
        None,
        Some("arn:aws:iam::aws:policy/AdministratorAccess"),
        Some("arn:aws:iam::123456789012:policy/keysmith/lease-boundary-typo"),
    ] {
        let (s, b) = t
            .call(
                "PUT",
                "/v1/profiles/temp",
                Some(&temp_profile(&path, boundary).to_string()),
                Some(ADMIN),
            )
            .await;
        assert_error(
            s,
            &b,
            400,
            "invalid_request",
            Some("permissions_boundary_arn"),
        );
    }
    let (s, _) = t.call("GET", "/v1/profiles/temp", None, Some(ADMIN)).await;
    assert_eq!(s, 404, "nothing was saved");

    // A profile saved while its boundary was allowed, used after the deployment dropped it: no
    // lease, no user (on AWS the template's iam:PermissionsBoundary condition refuses it too).
    t.put_profile("temp", temp_profile(&path, Some(LEASE_BOUNDARY)))
        .await;
    let mut narrowed = TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table);
    narrowed.app = {
        let mut config = narrowed.app.config.clone();
        config.lease_boundary_arns.clear();
        keysmith::App::new(config, &t.sdk)
    };
    narrowed.issuer = keysmith::Api::with(narrowed.app.clone()).issuer;
    let (s, b) = narrowed
        .call(
            "POST",
            "/v1/profiles/temp/credentials",
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &b, 502, "upstream_error", None);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("permissions_boundary_arn"),
        "{b}"
    );
    let iam = Iam::new(&t.sdk);
    assert!(iam
        .list_users()
        .path_prefix(&path)
        .send()
        .await
        .unwrap()
        .users
        .is_empty());
    let (_, leases) = t
        .call("GET", "/v1/leases?profile=temp", None, Some(ADMIN))
        .await;
    assert_eq!(leases["leases"], json!([]), "{leases}");
}

/// The attack: revocation is late (the sweep failed, or runs later), and the lease user's key
/// keeps working past its expiration. IAM ends it by itself: the key never exists without a
/// `Deny *` after the lease's expiration.
#[tokio::test]
async fn lease_users_carry_the_expiry_policy_before_their_key_exists() {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let creds = aws_sdk_sts::config::Credentials::new("test", "test", None, None, "t");
    let t = TestApp::on(moto, Moto::sdk_config_at(&proxy.endpoint, creds).await).await;
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", temp_profile(&path, Some(LEASE_BOUNDARY)))
        .await;
    let issued = issue(&t, "temp", 5400).await;
    let lease = t
        .app
        .leases
        .get(issued["lease_id"].as_str().unwrap())
        .await
        .unwrap();

    let iam = Iam::new(&moto.sdk_config().await);
    let doc = iam
        .get_user_policy()
        .user_name(&lease.user_name)
        .policy_name("keysmith-lease-expiry")
        .send()
        .await
        .unwrap()
        .policy_document;
    // IAM hands policy documents back URL-encoded.
    let doc: Value = serde_json::from_str(&keysmith_tests::proxy::percent_decode(&doc))
        .unwrap_or_else(|e| {
            panic!("{doc}: {e}");
        });
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{doc}");
    let deny = &statements[0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Action"], "*");
    assert_eq!(deny["Resource"], "*");
    let cut_off = deny["Condition"]["DateGreaterThan"]["aws:CurrentTime"]
        .as_str()
        .unwrap();
    assert_eq!(cut_off, issued["expiration"].as_str().unwrap(), "{doc}");
    let expected = Utc::now() + chrono::Duration::seconds(5400);
    let cut_off = chrono::DateTime::parse_from_rfc3339(cut_off).unwrap();
    assert!(
        (expected - cut_off.with_timezone(&Utc)).num_seconds().abs() < 30,
        "{cut_off} vs {expected}"
    );
    assert_eq!(lease.expires_at, cut_off.with_timezone(&Utc));

    // Written before the key: an issuance that dies in between leaves no key without it.
    let calls: Vec<(String, Option<String>)> = proxy
        .requests()
        .iter()
        .map(|r| (r.operation(), r.form("PolicyName")))
        .collect();
    let expiry_at = calls
        .iter()
        .position(|(op, name)| {
            op == "PutUserPolicy" && name.as_deref() == Some("keysmith-lease-expiry")
        })
        .expect("the expiry policy was put");
    let key_at = calls
        .iter()
        .position(|(op, _)| op == "CreateAccessKey")
        .unwrap();
    let user_at = calls.iter().position(|(op, _)| op == "CreateUser").unwrap();
    assert!(user_at < expiry_at && expiry_at < key_at, "{calls:?}");
}

/// The attack: the issuing function is killed right after `CreateUser` (timeout, crash, out of
/// memory). The lease stays pending with a user behind it; before, nothing removed that user until
/// the lease's expiry (up to 36 hours).
#[tokio::test]
async fn an_issuance_killed_after_create_user_is_cleaned_by_the_next_sweep() {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let creds = aws_sdk_sts::config::Credentials::new("test", "test", None, None, "t");
    let t = std::sync::Arc::new(
        TestApp::on(moto, Moto::sdk_config_at(&proxy.endpoint, creds).await).await,
    );
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", temp_profile(&path, Some(LEASE_BOUNDARY)))
        .await;
    // The call after CreateUser hangs; the issuance is killed while it waits.
    proxy.set_faults(Some(std::sync::Arc::new(|r| {
        if r.operation() == "PutUserPolicy" {
            keysmith_tests::proxy::Fault::Delay(std::time::Duration::from_secs(20))
        } else {
            keysmith_tests::proxy::Fault::Pass
        }
    })));
    let started = Utc::now();
    let issuing = {
        let t = t.clone();
        tokio::spawn(async move {
            t.call(
                "POST",
                "/v1/profiles/temp/credentials",
                Some(&json!({"duration_seconds": 3600}).to_string()),
                Some(DEPLOYER),
            )
            .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy
        .requests()
        .iter()
        .any(|r| r.operation() == "PutUserPolicy")
    {
        assert!(std::time::Instant::now() < deadline, "no PutUserPolicy");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    issuing.abort();
    assert!(issuing.await.unwrap_err().is_cancelled());
    proxy.set_faults(None);

    let iam = Iam::new(&moto.sdk_config().await);
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
    assert_eq!(users().await, 1, "the killed issuance left its user");
    let (_, listed) = t
        .call("GET", "/v1/leases?profile=temp", None, Some(ADMIN))
        .await;
    assert_eq!(listed["leases"][0]["status"], "pending", "{listed}");
    let lease_id = listed["leases"][0]["lease_id"].as_str().unwrap().to_owned();

    let origin = Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Origin::default()
    };
    // A sweep inside the grace leaves an issuance that may still be running alone.
    let early = keysmith::jobs::sweep(&t.app, started + chrono::Duration::seconds(60), &origin)
        .await
        .unwrap();
    assert!(early.leases.revoked.is_empty(), "{early:?}");
    assert_eq!(users().await, 1);

    // The first sweep after the grace ends it, long before the lease would expire.
    let next = started + lease_grace() + chrono::Duration::minutes(5);
    let report = keysmith::jobs::sweep(&t.app, next, &origin).await.unwrap();
    assert_eq!(
        report.leases.revoked,
        std::slice::from_ref(&lease_id),
        "{report:?}"
    );
    assert_eq!(users().await, 0, "the user is gone");
    let lease = t.app.leases.get(&lease_id).await.unwrap();
    assert_eq!(lease.status, LeaseStatus::Revoked);
    assert!(next < lease.expires_at - chrono::Duration::minutes(50));
    assert!(t.audit_items().await.iter().any(|i| {
        i["event"].as_s().unwrap() == "Lease Revoked"
            && i["lease_id"].as_s().unwrap() == &lease_id
            && i["message"].as_s().unwrap().starts_with("Unfinished lease")
    }));
}

fn lease_grace() -> chrono::Duration {
    keysmith::lease::PENDING_GRACE
}

/// The built scheduled-rotation binary, driven with both schedules' events: the sweep's event ends
/// due leases and touches no rotation; the standard hourly event does everything.
#[tokio::test]
async fn the_scheduled_binary_only_sweeps_on_the_sweep_event() {
    let t = TestApp::new().await;
    let moto = Moto::shared();
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    let iam = Iam::new(&t.sdk);
    let user = format!(
        "ks-sweep-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    iam.create_user()
        .user_name(&user)
        .path(&path)
        .send()
        .await
        .unwrap();
    let mut expired = pending_lease(&user, -60);
    expired.status = LeaseStatus::Active;
    t.app.leases.record(&expired).await.unwrap();
    // A rotation policy that is due (never rotated), for a user that does not exist.
    let secret_id = format!("keysmith/sweep-{}", uuid::Uuid::new_v4().simple());
    keysmith_tests::aws::secret(&t.sdk, &secret_id, &json!({"user_name": "nobody"})).await;
    let (s, b) = t
        .call(
            "PUT",
            "/v1/rotations/nightly",
            Some(&json!({"secret_id": secret_id, "interval_days": 30}).to_string()),
            Some(ADMIN),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");

    let f = keysmith_tests::runtime::FunctionProcess::start(
        &keysmith_tests::function_binary("scheduled-rotation"),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", keysmith_tests::moto::REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", &t.state_table),
            ("KEYSMITH_AUDIT_TABLE", &t.audit_table),
            ("KEYSMITH_ADMINS", ADMIN),
        ],
    )
    .await;
    let sweep = f
        .invoke(&keysmith_tests::event("sweep.json"))
        .await
        .unwrap();
    assert_eq!(sweep["leases_revoked"], json!([expired.id]), "{sweep}");
    assert_eq!(sweep["policies_read"], 0, "{sweep}");
    assert_eq!(sweep["failed"], json!([]), "{sweep}");
    assert!(iam
        .list_users()
        .path_prefix(&path)
        .send()
        .await
        .unwrap()
        .users
        .is_empty());

    let hourly = f
        .invoke(&keysmith_tests::event("scheduled.json"))
        .await
        .unwrap();
    assert_eq!(hourly["policies_read"], 1, "{hourly}");
    assert_eq!(hourly["failed"][0]["policy"], "nightly", "{hourly}");
    assert_eq!(hourly["leases_revoked"], json!([]), "{hourly}");
}

/// SPEC §7: a sweep whose audit write fails fails the run (retried, alarmed), after it has ended
/// every due lease; it never only logs.
#[tokio::test]
async fn a_sweep_that_cannot_audit_fails_the_run_after_ending_the_leases() {
    let t = TestApp::new().await;
    let path = format!("/keysmith/{}/", uuid::Uuid::new_v4().simple());
    t.put_profile("temp", temp_profile(&path, Some(LEASE_BOUNDARY)))
        .await;
    let lease = issue(&t, "temp", 900).await["lease_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let broken = keysmith::audit::AuditLog::new(
        aws_sdk_dynamodb::Client::new(&t.sdk),
        "no-such-audit-table",
    );
    let origin = Origin {
        principal: "keysmith:scheduler".into(),
        ..Origin::default()
    };
    let later = Utc::now() + chrono::Duration::seconds(1000);
    let failed = t.app.leases.revoke_expired(later, &broken, &origin).await;
    assert!(
        matches!(failed, Err(keysmith::lease::LeaseError::Unaudited(1))),
        "{failed:?}"
    );
    assert_eq!(
        t.app.leases.get(&lease).await.unwrap().status,
        LeaseStatus::Revoked,
        "the lease was still ended"
    );
}
