//! Request-time options (SPEC §16): a role chosen per request from the profile's `role_arns`,
//! scope-down by a session policy or a subset of the profile's policy ARNs.

use keysmith_tests::api::{assert_error, TestApp, ADMIN, DEPLOYER, LEASE_BOUNDARY};
use keysmith_tests::aws::{assumable_role, caller_arn};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Fault};
use serde_json::{json, Value};

async fn issue(t: &TestApp, body: Value) -> (u16, Value) {
    t.call(
        "POST",
        "/v1/profiles/choose/credentials",
        Some(&body.to_string()),
        Some(DEPLOYER),
    )
    .await
}

#[tokio::test]
async fn a_request_chooses_a_listed_role_and_nothing_else() {
    let t = TestApp::new().await;
    let a = assumable_role(&t.sdk, "/keysmith/", "choice-a").await;
    let b = assumable_role(&t.sdk, "/keysmith/", "choice-b").await;
    let unlisted = assumable_role(&t.sdk, "/keysmith/", "choice-c").await;

    // role_arn or role_arns, never both; 1 to 50 distinct exact ARNs.
    for (body, field) in [
        (json!({"role_arn": a, "role_arns": [b]}), "role_arns"),
        (json!({"role_arns": []}), "role_arns"),
        (json!({"role_arns": [a, a]}), "role_arns"),
        (
            json!({"role_arns": ["arn:aws:iam::123456789012:role/*"]}),
            "role_arns",
        ),
        (
            json!({"role_arns": (0..51).map(|i| format!("arn:aws:iam::123456789012:role/r{i}")).collect::<Vec<_>>()}),
            "role_arns",
        ),
        (json!({}), "role_arn"),
    ] {
        let mut profile =
            json!({"credential_type": "assumed_role", "allowed_principals": [DEPLOYER]});
        profile
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let (s, r) = t
            .call(
                "PUT",
                "/v1/profiles/choose",
                Some(&profile.to_string()),
                Some(ADMIN),
            )
            .await;
        assert_error(s, &r, 400, "invalid_request", Some(field));
    }
    t.put_profile(
        "choose",
        json!({"credential_type": "assumed_role", "role_arns": [a, b], "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (_, got) = t
        .call("GET", "/v1/profiles/choose", None, Some(ADMIN))
        .await;
    assert_eq!(got["role_arns"], json!([a, b]), "{got}");

    // A listed role issues for that role, and the lease acts through it.
    let (s, creds) = issue(&t, json!({"role_arn": b})).await;
    assert_eq!(s, 200, "{creds}");
    let arn = caller_arn(
        Moto::shared(),
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
        creds["session_token"].as_str(),
    )
    .await
    .unwrap();
    assert!(arn.contains(":assumed-role/choice-b/"), "{arn}");
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(leases["leases"][0]["target"], json!(b));

    // An unlisted one is refused (and audited); none at all is a 400 naming the field.
    let (s, r) = issue(&t, json!({"role_arn": unlisted})).await;
    assert_error(s, &r, 403, "role_not_allowed", None);
    let (s, r) = issue(&t, json!({})).await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
    let (s, r) = issue(&t, json!({"role_arn": "deploy"})).await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
    let denied: Vec<_> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| {
            i["outcome"].as_s().unwrap() == "denied"
                && i["message"].as_s().unwrap().contains("choice-c")
        })
        .collect();
    assert_eq!(denied.len(), 1);

    // A profile revoke covers every role a request could have chosen.
    let (s, r) = t
        .call("POST", "/v1/profiles/choose/revoke", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{r}");
    let mut targets: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, [a.as_str(), b.as_str()], "{r}");

    // A fixed role_arn profile takes no role_arn in the request.
    t.put_profile(
        "fixed",
        json!({"credential_type": "assumed_role", "role_arn": a, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let (s, r) = t
        .call(
            "POST",
            "/v1/profiles/fixed/credentials",
            Some(&json!({"role_arn": a}).to_string()),
            Some(DEPLOYER),
        )
        .await;
    assert_error(s, &r, 400, "invalid_request", Some("role_arn"));
}

fn sha256(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_session_policy_narrows_the_session_and_is_recorded_by_its_hash() {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let t = TestApp::on(moto, Moto::fast_sdk_config_at(&proxy.endpoint).await).await;
    let role = assumable_role(&t.sdk, "/keysmith/", "scoped").await;
    let listed = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    t.put_profile(
        "open",
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    t.put_profile(
        "listed",
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER],
            "policy_arns": [listed, "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}),
    )
    .await;
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::team-bucket/*"}]});
    let compact = policy.to_string();
    let call = |profile: &'static str, body: Value| {
        let t = &t;
        async move {
            t.call(
                "POST",
                &format!("/v1/profiles/{profile}/credentials"),
                Some(&body.to_string()),
                Some(DEPLOYER),
            )
            .await
        }
    };

    // Sent to STS as the session policy (whitespace removed), recorded by its hash only.
    let from = proxy.requests().len();
    let pretty = serde_json::to_string_pretty(&policy).unwrap();
    let (s, creds) = call("open", json!({"session_policy": pretty})).await;
    assert_eq!(s, 200, "{creds}");
    let sent: Vec<_> = proxy.requests()[from..]
        .iter()
        .filter(|r| r.operation() == "AssumeRole")
        .map(|r| r.form("Policy"))
        .collect();
    assert_eq!(sent, [Some(compact.clone())]);
    let hash = sha256(&compact);
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    assert_eq!(leases["leases"][0]["session_policy_sha256"], json!(hash));
    let issued: Vec<_> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["outcome"].as_s().unwrap() == "success" && i.contains_key("lease_id"))
        .collect();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["session_policy_sha256"].as_s().unwrap(), &hash);
    assert!(!issued[0]
        .values()
        .any(|v| v.as_s().is_ok_and(|s| s.contains("team-bucket"))));

    // 2,049 characters without whitespace is a 400 naming the field; so is a policy ARN the
    // profile does not list, and a second inline policy on a profile that sets its own.
    let pad = 2050 - compact.len(); // the "*" it replaces is one character
    let mut big = policy.clone();
    big["Statement"][0]["Resource"] =
        json!(format!("arn:aws:s3:::team-bucket/{}", "x".repeat(pad)));
    assert_eq!(big.to_string().len(), 2049);
    let (s, r) = call("open", json!({"session_policy": big})).await;
    assert_error(s, &r, 400, "invalid_request", Some("session_policy"));
    let (s, r) = call(
        "listed",
        json!({"policy_arns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
    )
    .await;
    assert_error(s, &r, 400, "invalid_request", Some("policy_arns"));
    let (s, r) = call("listed", json!({"session_policy": policy})).await;
    assert_error(s, &r, 400, "invalid_request", Some("session_policy"));

    // A listed subset replaces the profile's list for this session.
    let from = proxy.requests().len();
    let (s, r) = call("listed", json!({"policy_arns": [listed]})).await;
    assert_eq!(s, 200, "{r}");
    let assume = proxy.requests()[from..]
        .iter()
        .find(|r| r.operation() == "AssumeRole")
        .cloned()
        .unwrap();
    assert_eq!(
        assume.form("PolicyArns.member.1.arn"),
        Some(listed.to_owned())
    );
    assert_eq!(assume.form("PolicyArns.member.2.arn"), None);

    // STS's PackedPolicyTooLarge is the caller's 400, not a 502.
    proxy.set_faults(Some(std::sync::Arc::new(|r| {
        if r.operation() == "AssumeRole" {
            Fault::Answer(400, "<ErrorResponse><Error><Type>Sender</Type><Code>PackedPolicyTooLarge</Code><Message>Packed policy consumes 112% of allotted space</Message></Error><RequestId>x</RequestId></ErrorResponse>".into())
        } else {
            Fault::Pass
        }
    })));
    let (s, r) = call("open", json!({"session_policy": policy})).await;
    proxy.set_faults(None);
    assert_error(s, &r, 400, "invalid_request", Some("session_policy"));
}

#[tokio::test]
async fn an_iam_user_lease_is_narrowed_by_a_deny_outside_the_requested_policy() {
    let t = TestApp::new().await;
    let iam = aws_sdk_iam::Client::new(&t.sdk);
    let mut arns = Vec::new();
    for name in ["scope-read", "scope-write"] {
        let p = iam
            .create_policy()
            .policy_name(name)
            .policy_document(keysmith_tests::aws::allow_all().to_string())
            .send()
            .await
            .unwrap();
        arns.push(p.policy.unwrap().arn.unwrap());
    }
    t.put_profile(
        "users",
        json!({"credential_type": "iam_user", "permissions_boundary_arn": LEASE_BOUNDARY,
            "policy_arns": arns, "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let call = |body: Value| {
        let t = &t;
        async move {
            t.call(
                "POST",
                "/v1/profiles/users/credentials",
                Some(&body.to_string()),
                Some(DEPLOYER),
            )
            .await
        }
    };
    // Only what a Deny of its complement can express exactly: one Allow of actions and resources.
    for bad in [
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}),
    ] {
        let (s, r) = call(json!({"session_policy": bad})).await;
        assert_error(s, &r, 400, "invalid_request", Some("session_policy"));
    }
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::team", "arn:aws:s3:::team/*"]}]});
    let (s, r) = call(json!({"session_policy": policy, "policy_arns": [arns[0]]})).await;
    assert_eq!(s, 200, "{r}");
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    let lease = &leases["leases"][0];
    assert_eq!(
        lease["session_policy_sha256"],
        json!(sha256(&policy.to_string()))
    );
    let user = lease["user_name"].as_str().unwrap();
    let attached: Vec<String> = iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .attached_policies
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.policy_arn)
        .collect();
    assert_eq!(attached, [arns[0].clone()], "only the chosen one");
    let doc = iam
        .get_user_policy()
        .user_name(user)
        .policy_name("keysmith-scope-down")
        .send()
        .await
        .unwrap()
        .policy_document;
    let doc: Value = serde_json::from_str(&keysmith_tests::proxy::percent_decode(&doc)).unwrap();
    assert_eq!(
        doc["Statement"],
        json!([
            {"Sid": "KeysmithScopeDownActions", "Effect": "Deny",
             "NotAction": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"},
            {"Sid": "KeysmithScopeDownResources", "Effect": "Deny", "Action": "*",
             "NotResource": ["arn:aws:s3:::team", "arn:aws:s3:::team/*"]}
        ])
    );
}

#[tokio::test]
async fn lease_users_are_named_by_the_profiles_template() {
    let t = TestApp::new().await;
    let base = json!({"credential_type": "iam_user", "permissions_boundary_arn": LEASE_BOUNDARY,
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
        "allowed_principals": [DEPLOYER]});
    let with = |template: &str| {
        let mut p = base.clone();
        p["username_template"] = json!(template);
        p
    };
    for bad in [
        "lease-{{profile}}-{{caller}}",
        "{{random}}-{{who}}",
        "bad name {{random}}",
    ] {
        let (s, r) = t
            .call(
                "PUT",
                "/v1/profiles/named",
                Some(&with(bad).to_string()),
                Some(ADMIN),
            )
            .await;
        assert_error(s, &r, 400, "invalid_request", Some("username_template"));
    }
    // lease- + 49 + - + alice + - + 8 random: 70 characters before cutting.
    let profile = "p".repeat(49);
    t.put_profile(&profile, with("lease-{{profile}}-{{caller}}-{{random}}"))
        .await;
    let (s, creds) = t
        .call(
            "POST",
            &format!("/v1/profiles/{profile}/credentials"),
            Some(r#"{"duration_seconds": 900}"#),
            Some(DEPLOYER),
        )
        .await;
    assert_eq!(s, 200, "{creds}");
    let (_, leases) = t.call("GET", "/v1/leases", None, Some(DEPLOYER)).await;
    let user = leases["leases"][0]["user_name"].as_str().unwrap();
    assert_eq!(user.len(), 64, "{user}");
    assert!(user.starts_with("lease-pppp"), "{user}");
    let random = &user[user.len() - 8..];
    assert!(
        random
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{user}"
    );
    let arn = caller_arn(
        Moto::shared(),
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
        None,
    )
    .await
    .unwrap();
    assert!(arn.ends_with(&format!("/{user}")), "{arn}");
}

#[tokio::test]
async fn a_fallback_endpoint_issues_when_the_primary_cannot_and_only_then() {
    let moto = Moto::shared();
    let t = TestApp::new().await;
    let role = assumable_role(&t.sdk, "/keysmith/", "fallback").await;
    let primary = CaptureProxy::start(&moto.endpoint).await;
    let fallback = CaptureProxy::start(&moto.endpoint).await;
    // Nothing listens on port 1: the primary refuses connections.
    let profile = |primary: &str| {
        json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [DEPLOYER],
            "sts_endpoint": primary, "sts_region": "us-east-1",
            "sts_fallback_endpoints": [fallback.endpoint], "sts_fallback_regions": ["us-east-1"]})
    };
    let (s, r) = t
        .call(
            "PUT",
            "/v1/profiles/fb",
            Some(
                &json!({"credential_type": "assumed_role", "role_arn": role,
                "sts_fallback_endpoints": ["http://example.com"]})
                .to_string(),
            ),
            Some(ADMIN),
        )
        .await;
    assert_error(
        s,
        &r,
        400,
        "invalid_request",
        Some("sts_fallback_endpoints"),
    );
    let issue = || async {
        t.call("POST", "/v1/profiles/fb/credentials", None, Some(DEPLOYER))
            .await
    };
    let assumed = |p: &CaptureProxy| {
        p.requests()
            .iter()
            .filter(|r| r.operation() == "AssumeRole")
            .count()
    };

    t.put_profile("fb", profile("http://127.0.0.1:1")).await;
    let (s, creds) = issue().await;
    assert_eq!(s, 200, "{creds}");
    assert_eq!(assumed(&fallback), 1);
    let named: Vec<String> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| i["outcome"].as_s().unwrap() == "success" && i.contains_key("lease_id"))
        .filter_map(|i| i.get("sts_endpoint").and_then(|v| v.as_s().ok().cloned()))
        .collect();
    assert_eq!(named, std::slice::from_ref(&fallback.endpoint));

    // A 5xx from the primary (after the SDK's retries) also moves on; a 403 never does.
    t.put_profile("fb", profile(&primary.endpoint)).await;
    for (fault, status, tried) in [(Fault::ServerError, 200, 2), (Fault::Denied, 502, 2)] {
        let f = fault.clone();
        primary.set_faults(Some(std::sync::Arc::new(move |r| {
            if r.operation() == "AssumeRole" {
                f.clone()
            } else {
                Fault::Pass
            }
        })));
        let (s, r) = issue().await;
        assert_eq!(s, status, "{fault:?}: {r}");
        assert_eq!(assumed(&fallback), tried, "{fault:?}");
    }
}
