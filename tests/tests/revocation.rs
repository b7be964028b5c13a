//! Revoking STS credentials (SPEC §10, issue 14) against moto: session tags on the wire, STS
//! leases, per-lease and per-profile `Deny`s in `keysmith-revocations`, pruning, the size quota,
//! and switched-off profiles. moto evaluates no IAM condition, so the tests assert on the policy
//! documents Keysmith writes (which moto's IAM must accept) and on the recorded STS requests.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_iam::Client as Iam;
use chrono::{Duration, Utc};
use keysmith::audit::Origin;
use keysmith::lease::Lease;
use keysmith::profile::CredentialType;
use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY, STRANGER};
use keysmith_tests::aws::{allow_all, assumable_role, secret, user_with_key};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::CaptureProxy;
use keysmith_tests::revocations::{decode, denied_leases, role_policy, unique, POLICY};
use serde_json::{json, Value};

async fn issue(t: &TestApp, profile: &str) -> Value {
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some("{}"),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

/// A role in moto and an `assumed_role` profile for it; returns (role name, role ARN).
async fn role_profile(t: &TestApp, profile: &str, extra: Value) -> (String, String) {
    let name = unique("role");
    let arn = assumable_role(&t.sdk, "/keysmith/", &name).await;
    let mut body = json!({"credential_type": "assumed_role", "role_arn": arn,
        "session_tags": {"team": "payments"}, "allowed_principals": [DEPLOYER]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    t.put_profile(profile, body).await;
    (name, arn)
}

/// A base IAM user with its key in a secret; returns (user name, secret id).
async fn base_user(t: &TestApp) -> (String, String) {
    let name = unique("base");
    let (key, secret_key) = user_with_key(&t.sdk, &name, &allow_all()).await;
    let secret_id = format!("keysmith/{name}");
    secret(
        &t.sdk,
        &secret_id,
        &json!({"access_key_id": key, "secret_access_key": secret_key}),
    )
    .await;
    (name, secret_id)
}

async fn user_policy(iam: &Iam, user: &str) -> Option<Value> {
    iam.get_user_policy()
        .user_name(user)
        .policy_name(POLICY)
        .send()
        .await
        .ok()
        .map(|out| decode(&out.policy_document))
}

fn audit_of<'a>(
    items: &'a [HashMap<String, AttributeValue>],
    event: &str,
) -> Vec<&'a HashMap<String, AttributeValue>> {
    items
        .iter()
        .filter(|i| i["event"].as_s().unwrap() == event)
        .collect()
}

fn s<'a>(item: &'a HashMap<String, AttributeValue>, field: &str) -> &'a str {
    item.get(field)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

#[tokio::test]
async fn sts_sessions_carry_their_lease_and_profile_as_session_tags() {
    let t = TestApp::new().await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    role_profile(
        &t,
        "tagged",
        json!({"sts_endpoint": proxy.endpoint, "sts_region": "us-east-1"}),
    )
    .await;
    let issued = issue(&t, "tagged").await;
    let sent = proxy.requests();
    let r = sent
        .iter()
        .find(|r| r.form("Action").as_deref() == Some("AssumeRole"))
        .unwrap();
    let tags: HashMap<String, String> = (1..=3)
        .map(|i| {
            (
                r.form(&format!("Tags.member.{i}.Key")).unwrap(),
                r.form(&format!("Tags.member.{i}.Value")).unwrap(),
            )
        })
        .collect();
    assert_eq!(tags["keysmith:lease"], issued["lease_id"].as_str().unwrap());
    assert_eq!(tags["keysmith:profile"], "tagged");
    assert_eq!(tags["team"], "payments", "the profile's own tags stay");
    assert_eq!(r.form("Tags.member.4.Key"), None);
    // Transitive (SPEC §10a): a chained session keeps both, so revocations still match it.
    let transitive: Vec<String> = (1..=3)
        .filter_map(|i| r.form(&format!("TransitiveTagKeys.member.{i}")))
        .collect();
    assert_eq!(transitive, ["keysmith:lease", "keysmith:profile"]);

    // federation_token: the same two tags, and the base user is found by GetCallerIdentity.
    let (user, secret_id) = base_user(&t).await;
    t.put_profile("fed-tagged", json!({"credential_type": "federation_token",
        "source_secret_id": secret_id, "policy_document": allow_all(),
        "sts_endpoint": proxy.endpoint, "sts_region": "us-east-1", "allowed_principals": [DEPLOYER]}))
        .await;
    let fed = issue(&t, "fed-tagged").await;
    let sent = proxy.requests();
    let r = sent
        .iter()
        .find(|r| r.form("Action").as_deref() == Some("GetFederationToken"))
        .unwrap();
    assert_eq!(
        r.form("Tags.member.1.Key").as_deref(),
        Some("keysmith:lease")
    );
    assert_eq!(
        r.form("Tags.member.1.Value").as_deref(),
        fed["lease_id"].as_str()
    );
    assert_eq!(
        r.form("Tags.member.2.Key").as_deref(),
        Some("keysmith:profile")
    );
    assert_eq!(r.form("Tags.member.2.Value").as_deref(), Some("fed-tagged"));

    // Both are listed as STS leases with their target.
    let (st, body) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(st, 200, "{body}");
    let leases = body["leases"].as_array().unwrap();
    let role_lease = leases
        .iter()
        .find(|l| l["lease_id"] == issued["lease_id"])
        .unwrap();
    assert_eq!(role_lease["credential_type"], "assumed_role");
    // The key id finds the lease of a leaked key (README, Incident response).
    assert_eq!(role_lease["access_key_id"], issued["access_key_id"]);
    assert_eq!(role_lease["status"], "active");
    assert!(role_lease["target"]
        .as_str()
        .unwrap()
        .contains(":role/keysmith/role-"));
    let fed_lease = leases
        .iter()
        .find(|l| l["lease_id"] == fed["lease_id"])
        .unwrap();
    assert_eq!(
        fed_lease["target"],
        format!("arn:aws:iam::123456789012:user/{user}")
    );
}

#[tokio::test]
async fn a_profile_may_not_set_keysmith_session_tags() {
    let t = TestApp::new().await;
    for key in ["keysmith:lease", "keysmith:profile", "Keysmith:Other"] {
        let body = json!({"credential_type": "assumed_role",
            "role_arn": "arn:aws:iam::123456789012:role/keysmith/x",
            "session_tags": {key: "forged"}, "allowed_principals": [DEPLOYER]});
        let (st, b) = t
            .call(
                "PUT",
                "/v1/profiles/forge",
                Some(&body.to_string()),
                Some(ADMIN),
            )
            .await;
        assert_error(
            st,
            &b,
            400,
            "invalid_request",
            Some(&format!("session_tags.{key}")),
        );
    }
}

#[tokio::test]
async fn revoking_one_of_three_leases_denies_exactly_that_one_and_repeating_is_a_no_op() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, _) = role_profile(&t, "deploy", json!({})).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                issue(&t, "deploy").await["lease_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        v
    };
    // A stranger may not revoke it.
    let path = format!("/v1/leases/{}", ids[1]);
    let (st, b) = t.call("DELETE", &path, None, Some(STRANGER)).await;
    assert_error(st, &b, 403, "forbidden", None);
    assert_eq!(role_policy(&iam, &role).await, None);

    let reason = json!({"reason": "pasted in a chat"}).to_string();
    let (st, first) = t.call("DELETE", &path, Some(&reason), Some(DEPLOYER)).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["status"], "revoked");
    assert_eq!(first["revocation"]["policy_name"], POLICY);
    assert_eq!(first["revocation"]["fallback"], Value::Null);
    let policy = role_policy(&iam, &role).await.expect("the policy exists");
    assert_eq!(denied_leases(&policy), vec![ids[1].clone()], "{policy}");
    assert_eq!(policy["Version"], "2012-10-17");

    // Again: 200, nothing changes.
    let (st, again) = t.call("DELETE", &path, None, Some(ADMIN)).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["status"], "revoked");
    assert_eq!(role_policy(&iam, &role).await, Some(policy));

    let (_, list) = t
        .call("GET", "/v1/leases?profile=deploy", None, Some(ADMIN))
        .await;
    let status: HashMap<&str, &str> = list["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lease_id"].as_str().unwrap(),
                l["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(status[ids[0].as_str()], "active");
    assert_eq!(status[ids[1].as_str()], "revoked");
    assert_eq!(status[ids[2].as_str()], "active");

    let items = t.audit_items().await;
    let revoked = audit_of(&items, "Credentials Revoked");
    let ok: Vec<_> = revoked
        .iter()
        .filter(|i| s(i, "outcome") == "success")
        .collect();
    assert_eq!(
        ok.len(),
        1,
        "one revocation, the repeat is a no-op: {revoked:?}"
    );
    assert_eq!(s(ok[0], "category"), "Config");
    assert_eq!(s(ok[0], "level"), "WARN");
    assert_eq!(s(ok[0], "lease_id"), ids[1]);
    assert!(s(ok[0], "message").contains("pasted in a chat"));

    // At expiry the sweep sees only the two live STS leases (to give back their count); the
    // revoked one is out of the due index.
    let mut due: Vec<String> = t
        .app
        .leases
        .expired(Utc::now() + Duration::days(3))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    due.sort();
    let mut live = vec![ids[0].clone(), ids[2].clone()];
    live.sort();
    assert_eq!(due, live);
}

#[tokio::test]
async fn a_session_token_lease_cannot_be_revoked_alone() {
    let t = TestApp::new().await;
    let (_, secret_id) = base_user(&t).await;
    t.put_profile(
        "tokens",
        json!({"credential_type": "session_token",
        "source_secret_id": secret_id, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let issued = issue(&t, "tokens").await;
    let path = format!("/v1/leases/{}", issued["lease_id"].as_str().unwrap());
    let (st, b) = t.call("DELETE", &path, None, Some(DEPLOYER)).await;
    assert_error(st, &b, 409, "conflict", None);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/profiles/tokens/revoke"),
        "{b}"
    );
}

#[tokio::test]
async fn a_profile_revoke_denies_by_issue_time_on_the_role_and_base_users_and_ends_iam_user_leases()
{
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, _) = role_profile(&t, "deploy", json!({})).await;
    let (user, secret_id) = base_user(&t).await;
    t.put_profile("fed", json!({"credential_type": "federation_token",
        "source_secret_id": secret_id, "policy_document": allow_all(), "allowed_principals": [DEPLOYER]}))
        .await;
    t.put_profile(
        "tokens",
        json!({"credential_type": "session_token",
        "source_secret_id": secret_id, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    t.put_profile(
        "temp",
        json!({"credential_type": "iam_user",
        "policy_document": allow_all(), "permissions_boundary_arn": LEASE_BOUNDARY,
        "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let role_lease = issue(&t, "deploy").await;
    issue(&t, "fed").await;
    issue(&t, "tokens").await;
    let temp: Vec<Value> = vec![issue(&t, "temp").await, issue(&t, "temp").await];

    let at = "2030-01-01T00:00:00Z";
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/revoke",
            Some(&json!({"issued_before": at}).to_string()),
            Some(DEPLOYER),
        )
        .await;
    assert_error(st, &b, 403, "forbidden", None);
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/revoke",
            Some(&json!({"issued_before": at}).to_string()),
            Some(ADMIN),
        )
        .await;
    assert_error(st, &b, 400, "invalid_request", Some("issued_before"));
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/revoke",
            Some(r#"{"when": 1}"#),
            Some(ADMIN),
        )
        .await;
    assert_error(st, &b, 400, "invalid_request", Some("when"));

    let before = (Utc::now() + Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let body = json!({"issued_before": before, "reason": "incident 42"}).to_string();
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/revoke",
            Some(&body),
            Some(ADMIN),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["targets"][0]["target_type"], "role");
    assert_eq!(b["leases_revoked"], json!([role_lease["lease_id"]]));
    let policy = role_policy(&iam, &role).await.unwrap();
    assert_eq!(
        policy["Statement"],
        json!([{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {
            "StringEquals": {"aws:PrincipalTag/keysmith:profile": "deploy"},
            "DateLessThan": {"aws:TokenIssueTime": before}}},
            // The caller of the live lease, by SourceIdentity, for sessions that lost the tags.
            {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {
            "StringEquals": {"aws:SourceIdentity": ["arn-aws-sts--123456789012-assumed-role-Deployers-ci-alice"]},
            "DateLessThan": {"aws:TokenIssueTime": before},
            "Null": {"aws:PrincipalTag/keysmith:profile": "true"}}}]),
        "{policy}"
    );

    let (st, b) = t
        .call("POST", "/v1/profiles/fed/revoke", Some(&body), Some(ADMIN))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["targets"][0]["target"],
        format!("arn:aws:iam::123456789012:user/{user}")
    );
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/tokens/revoke",
            Some(&body),
            Some(ADMIN),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(
        b["note"].as_str().unwrap().contains("every session token"),
        "{b}"
    );
    let policy = user_policy(&iam, &user).await.unwrap();
    assert_eq!(
        policy["Statement"],
        json!([
            {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {
                "StringEquals": {"aws:PrincipalTag/keysmith:profile": "fed"},
                "DateLessThan": {"aws:TokenIssueTime": before}}},
            {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {
                "DateLessThan": {"aws:TokenIssueTime": before}}}
        ]),
        "{policy}"
    );

    let (st, b) = t
        .call("POST", "/v1/profiles/temp/revoke", None, Some(ADMIN))
        .await;
    assert_eq!(st, 200, "{b}");
    let mut revoked: Vec<&str> = b["leases_revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    revoked.sort_unstable();
    let mut want: Vec<&str> = temp
        .iter()
        .map(|l| l["lease_id"].as_str().unwrap())
        .collect();
    want.sort_unstable();
    assert_eq!(revoked, want);
    let users = iam
        .list_users()
        .path_prefix("/keysmith/")
        .send()
        .await
        .unwrap()
        .users;
    assert!(
        users.iter().all(|u| !u.user_name.starts_with("ks-temp-")),
        "every lease user is deleted: {users:?}"
    );

    let items = t.audit_items().await;
    let profile_items: Vec<_> = audit_of(&items, "Credentials Revoked")
        .into_iter()
        .filter(|i| s(i, "lease_id").is_empty())
        .collect();
    assert_eq!(profile_items.len(), 4, "{profile_items:?}");
    assert!(profile_items
        .iter()
        .all(|i| s(i, "level") == "WARN" && s(i, "category") == "Config"));
    assert!(profile_items
        .iter()
        .any(|i| s(i, "message").contains("incident 42")));
}

#[tokio::test]
async fn a_scheduled_run_prunes_expired_entries_and_deletes_the_empty_policy() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, _) = role_profile(&t, "deploy", json!({})).await;
    let a = issue(&t, "deploy").await;
    let path = format!("/v1/leases/{}", a["lease_id"].as_str().unwrap());
    assert_eq!(t.call("DELETE", &path, None, Some(ADMIN)).await.0, 200);
    let origin = Origin {
        principal: "scheduled-rotation".into(),
        ..Origin::default()
    };
    // Before the lease's expiry: the entry stays.
    let report = keysmith::jobs::run(&t.app, Utc::now(), &origin)
        .await
        .unwrap();
    assert!(
        report.revocations.pruned.is_empty(),
        "{:?}",
        report.revocations
    );
    assert!(role_policy(&iam, &role).await.is_some());
    // After it (expiry rounded up to the hour): removed, and the empty policy deleted.
    let later = Utc::now() + Duration::hours(2) + Duration::minutes(1);
    let report = keysmith::jobs::run(&t.app, later, &origin).await.unwrap();
    assert_eq!(
        report.revocations.pruned.len(),
        1,
        "{:?}",
        report.revocations
    );
    assert_eq!(report.revocations.pruned[0].1, 1);
    assert!(report.revocations.pruned[0].2, "policy deleted");
    assert_eq!(role_policy(&iam, &role).await, None);
    // Nothing is due any more.
    let report = keysmith::jobs::run(&t.app, later, &origin).await.unwrap();
    assert!(report.revocations.pruned.is_empty());
    let items = t.audit_items().await;
    assert_eq!(audit_of(&items, "Revocations Pruned").len(), 1);
}

#[tokio::test]
async fn a_switched_off_profile_answers_profile_disabled_and_switching_it_on_works() {
    let t = TestApp::new().await;
    role_profile(&t, "deploy", json!({"enabled": false})).await;
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_error(st, &b, 403, "profile_disabled", None);
    // Anyone not allowed learns nothing new: the usual answer.
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            None,
            Some(STRANGER),
        )
        .await;
    assert_error(st, &b, 403, "forbidden", None);
    let items = t.audit_items().await;
    let denied: Vec<_> = audit_of(&items, "AWS STS Temporary")
        .into_iter()
        .filter(|i| s(i, "outcome") == "denied" && s(i, "principal") == DEPLOYER)
        .collect();
    assert_eq!(denied.len(), 1);
    assert!(s(denied[0], "message").contains("switched off"));

    // Admins still read it, and switch it back on.
    let (st, mut profile) = t
        .call("GET", "/v1/profiles/deploy", None, Some(ADMIN))
        .await;
    assert_eq!(st, 200);
    assert_eq!(profile["enabled"], false);
    profile["enabled"] = json!(true);
    t.put_profile("deploy", profile).await;
    issue(&t, "deploy").await;
}

#[tokio::test]
async fn three_hundred_revoked_leases_never_overflow_the_roles_inline_policy_quota() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, arn) = role_profile(&t, "deploy", json!({})).await;
    // The role's other inline policies count against the same 10,240 characters.
    let other = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{}/*", "b".repeat(1500))}]});
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("other")
        .policy_document(other.to_string())
        .send()
        .await
        .unwrap();
    let now = Utc::now();
    let origin = keysmith::audit::Origin {
        principal: ADMIN.into(),
        source_ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        request_id: "r".into(),
        region: "us-east-1".into(),
    };
    let mut first_fallback = None;
    let mut largest = 0;
    for i in 0..300_i64 {
        let lease = Lease::sts(
            uuid::Uuid::new_v4().to_string(),
            "deploy",
            DEPLOYER,
            CredentialType::AssumedRole,
            arn.clone(),
            now,
            now + Duration::minutes(15 + (i % 700)),
        );
        let actor = keysmith::revocation::Actor {
            origin: &origin,
            admin: true,
            reason: None,
        };
        let applied = t
            .app
            .revocations
            .revoke_lease(&lease, now, actor)
            .await
            .unwrap();
        if !applied.folded.is_empty() && first_fallback.is_none() {
            first_fallback = Some(i);
        }
        // Every inline policy of the role, as IAM counts them.
        let mut total = 0;
        for name in iam
            .list_role_policies()
            .role_name(&role)
            .send()
            .await
            .unwrap()
            .policy_names
        {
            let doc = iam
                .get_role_policy()
                .role_name(&role)
                .policy_name(&name)
                .send()
                .await
                .unwrap();
            total += decode(&doc.policy_document)
                .to_string()
                .chars()
                .filter(|c| !c.is_whitespace())
                .count();
        }
        assert!(total <= 10_240, "lease {i}: {total} characters");
        largest = largest.max(total);
    }
    let fell_back_at = first_fallback.expect("300 lease ids cannot fit: a fallback happens");
    eprintln!("300 revocations: largest total inline size {largest}, first fallback at lease {fell_back_at}");
    let policy = role_policy(&iam, &role).await.unwrap();
    assert!(
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |s| s["Condition"]["StringEquals"]["aws:PrincipalTag/keysmith:profile"] == "deploy"
            ),
        "the fallback is the profile-wide cut-off: {policy}"
    );
}

#[tokio::test]
async fn a_refused_assume_role_names_the_trust_policy_permissions_and_no_secret() {
    let t = TestApp::new().await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    role_profile(
        &t,
        "refused",
        json!({"sts_endpoint": proxy.endpoint, "sts_region": "us-east-1"}),
    )
    .await;
    proxy.set_faults(Some(std::sync::Arc::new(
        |r: &keysmith_tests::proxy::Captured| {
            if r.form("Action").as_deref() == Some("AssumeRole") {
                keysmith_tests::proxy::Fault::Denied
            } else {
                keysmith_tests::proxy::Fault::Pass
            }
        },
    )));
    let (st, b) = t
        .call(
            "POST",
            "/v1/profiles/refused/credentials",
            None,
            Some(DEPLOYER),
        )
        .await;
    assert_error(st, &b, 502, "upstream_error", None);
    let message = b["error"]["message"].as_str().unwrap();
    for permission in ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"] {
        assert!(message.contains(permission), "{message}");
    }
    // No lease is left for credentials that were never issued.
    let (_, list) = t.call("GET", "/v1/leases", None, Some(ADMIN)).await;
    assert_eq!(list["leases"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revocations_on_one_role_lose_no_entry() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, _) = role_profile(&t, "deploy", json!({})).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            issue(&t, "deploy").await["lease_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // IAM has no conditional write: without the lock, one read-modify-write would overwrite
    // another's entry.
    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/leases/{id}")).collect();
    let (a, b, c, d) = tokio::join!(
        t.call("DELETE", &paths[0], None, Some(ADMIN)),
        t.call("DELETE", &paths[1], None, Some(ADMIN)),
        t.call("DELETE", &paths[2], None, Some(ADMIN)),
        t.call("DELETE", &paths[3], None, Some(ADMIN)),
    );
    for (st, body) in [a, b, c, d] {
        assert_eq!(st, 200, "{body}");
    }
    let mut denied = denied_leases(&role_policy(&iam, &role).await.unwrap());
    denied.sort();
    ids.sort();
    assert_eq!(denied, ids);
}

#[tokio::test]
async fn a_fallback_denies_the_profile_and_says_so_and_a_revoke_reaches_a_previous_role() {
    let t = TestApp::new().await;
    let iam = Iam::new(&t.sdk);
    let (role, _) = role_profile(&t, "deploy", json!({})).await;
    // Leave room for two or three lease ids only (the quota counts every inline policy).
    let filler = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{}/*", "b".repeat(9_600))}]});
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("filler")
        .policy_document(filler.to_string())
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            issue(&t, "deploy").await["lease_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut fallback = None;
    for id in &ids {
        let (st, b) = t
            .call("DELETE", &format!("/v1/leases/{id}"), None, Some(ADMIN))
            .await;
        assert_eq!(st, 200, "{b}");
        if b["revocation"]["fallback"] == "profile_cutoff" {
            fallback = Some(b);
            break;
        }
    }
    let b = fallback.expect("six lease ids do not fit");
    assert!(b["revocation"]["statement"]
        .as_str()
        .unwrap()
        .contains("keysmith:profile = deploy"));
    // Every other session of the profile through this role is denied now, and listed so.
    let (_, list) = t
        .call("GET", "/v1/leases?profile=deploy", None, Some(ADMIN))
        .await;
    for l in list["leases"].as_array().unwrap() {
        assert_eq!(l["status"], "revoked", "{l}");
    }
    let policy = role_policy(&iam, &role).await.unwrap();
    assert!(
        denied_leases(&policy).is_empty(),
        "folded into the cut-off: {policy}"
    );
    let items = t.audit_items().await;
    assert!(audit_of(&items, "Credentials Revoked")
        .iter()
        .any(|i| s(i, "message").contains("did not fit")));

    // The profile moves to another role; a lease issued through the old one is still revoked.
    let (old_role, _) = role_profile(&t, "moving", json!({})).await;
    let old_lease = issue(&t, "moving").await;
    let (new_role, _) = role_profile(&t, "moving", json!({})).await;
    let (st, b) = t
        .call("POST", "/v1/profiles/moving/revoke", None, Some(ADMIN))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["leases_revoked"], json!([old_lease["lease_id"]]));
    for r in [&old_role, &new_role] {
        let p = role_policy(&iam, r)
            .await
            .unwrap_or_else(|| panic!("no policy on {r}"));
        assert_eq!(
            p["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalTag/keysmith:profile"],
            "moving"
        );
    }
}

#[tokio::test]
async fn a_profile_revoke_that_cannot_reach_its_target_is_a_conflict_not_a_server_error() {
    let t = TestApp::new().await;
    t.put_profile(
        "ghost",
        json!({"credential_type": "federation_token",
        "source_secret_id": "keysmith/does-not-exist", "policy_document": allow_all(),
        "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (st, b) = t
        .call("POST", "/v1/profiles/ghost/revoke", None, Some(ADMIN))
        .await;
    assert_error(st, &b, 409, "conflict", None);
    t.put_profile(
        "elsewhere",
        json!({"credential_type": "assumed_role",
        "role_arn": "arn:aws:iam::210987654321:role/keysmith/other-account",
        "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (st, b) = t
        .call("POST", "/v1/profiles/elsewhere/revoke", None, Some(ADMIN))
        .await;
    assert_error(st, &b, 409, "conflict", None);
    // Both failures are audited.
    let items = t.audit_items().await;
    let failed = audit_of(&items, "Credentials Revoked")
        .into_iter()
        .filter(|i| s(i, "outcome") == "failed")
        .count();
    assert_eq!(failed, 2);
}
