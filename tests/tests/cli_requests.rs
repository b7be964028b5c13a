//! Access requests end to end with the `keysmith` binary (SPEC §12, §17), through the SigV4
//! gateway: `keysmith request … --wait` in one process, `keysmith approve` in another (after the
//! requester's own approval is refused), then `keysmith exec --request` runs a command with the
//! granted credentials, once.

use std::process::Stdio;

use keysmith_tests::cli::{show, CliStack};
use keysmith_tests::venv;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_wait_approve_in_another_process_then_exec_with_the_grant() {
    let s = CliStack::start().await;
    let sdk = s.moto.sdk_config().await;
    let role =
        keysmith_tests::aws::assumable_role(&sdk, "/keysmith/", &format!("gated-{}", s.id)).await;
    let profile = json!({"credential_type": "assumed_role", "role_arn": role,
        "allowed_principals": [s.alice.arn, s.admin.arn],
        "approval": {"approvers": [s.admin.arn, s.alice.arn], "grant_ttl_seconds": 3600}});
    s.put_profile("gated", &profile);

    // Without a request: refused, with how to ask.
    let out = s.run(&s.alice, &["credentials", "gated"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keysmith request gated"),
        "{}",
        show(&out)
    );

    let waiting = s
        .command(&s.alice)
        .args([
            "request",
            "gated",
            "--reason",
            "deploy OPS-7",
            "--ticket",
            "OPS-7",
            "--wait",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The approver finds it among the pending requests.
    let mut id = None;
    for _ in 0..100 {
        let out = s.run(
            &s.admin,
            &["requests", "--status", "pending", "--output", "json"],
        );
        assert!(out.status.success(), "{}", show(&out));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(r) = list.as_array().unwrap().first() {
            id = Some(r["request_id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = id.expect("the request never appeared");

    // The requester may not approve their own request; a declined prompt approves nothing.
    let out = s.run(&s.alice, &["approve", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        show(&out)
    );
    let out = s.run(&s.admin, &["approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let shown = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        shown.contains("deploy OPS-7") && shown.contains("digest"),
        "{shown}"
    );

    let out = s.run(
        &s.admin,
        &[
            "approve",
            &id,
            "--yes",
            "--comment",
            "matches OPS-7",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let approved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(approved["status"], "approved");

    let done = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    s.keep_stderr(&done);
    assert!(done.status.success(), "{}", show(&done));
    let waited: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(
        (&waited["request_id"], &waited["status"]),
        (&json!(id), &json!("approved"))
    );

    // exec --request: the command runs as the profile's role.
    let aws = venv().join("bin/aws");
    let endpoint = s.moto.endpoint.clone();
    let out = s.output(
        s.command(&s.alice)
            .args(["exec", "gated", "--request", &id, "--"])
            .arg(&aws)
            .args([
                "sts",
                "get-caller-identity",
                "--endpoint-url",
                &endpoint,
                "--output",
                "json",
            ]),
    );
    assert!(out.status.success(), "{}", show(&out));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        who["Arn"]
            .as_str()
            .unwrap()
            .contains(&format!("assumed-role/gated-{}/", s.id)),
        "{who}"
    );

    // Once: a fresh issuance on the same request (no cache) is refused.
    let out = s.run(
        &s.alice,
        &["credentials", "gated", "--request", &id, "--no-cache"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict"),
        "{}",
        show(&out)
    );
    let out = s.run(&s.alice, &["requests", "--output", "json"]);
    let mine: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mine[0]["status"], "issued", "{mine}");
    s.scan();
}

/// Two sessions of one role, signed with SigV4 as a real client signs: the second session is the
/// requester, so it cannot approve; a person of another identity can.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_session_of_the_requesters_role_cannot_approve_through_sigv4() {
    let s = CliStack::start().await;
    let sdk = s.moto.sdk_config().await;
    let role = keysmith_tests::aws::assumable_role(&sdk, "/", &format!("dev-{}", s.id)).await;
    let sts = aws_sdk_sts::Client::new(&sdk);
    let mut sessions = Vec::new();
    for name in ["alice", "alice-laptop"] {
        let c = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(name)
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap();
        keysmith_tests::leaks::record_from(
            &json!({"secret_access_key": c.secret_access_key, "session_token": c.session_token}),
        );
        s.keys.add(
            &c.access_key_id,
            &c.secret_access_key,
            Some(&c.session_token),
            None,
        );
        sessions.push((c.access_key_id, c.secret_access_key, c.session_token));
    }
    let session = |i: usize, args: &[&str]| {
        let (key, secret, token) = &sessions[i];
        let user = keysmith_tests::cli::User {
            arn: String::new(),
            key_id: key.clone(),
            secret: secret.clone(),
        };
        s.output(s.command(&user).env("AWS_SESSION_TOKEN", token).args(args))
    };
    let target =
        keysmith_tests::aws::assumable_role(&sdk, "/keysmith/", &format!("team-{}", s.id)).await;
    let profile = json!({"credential_type": "assumed_role", "role_arn": target,
        "allowed_principals": [role],
        "approval": {"approvers": [role, s.admin.arn]}});
    s.put_profile("team", &profile);

    let out = session(
        0,
        &["request", "team", "--reason", "on call", "--output", "json"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = r["request_id"].as_str().unwrap();
    assert!(r["requester"].as_str().unwrap().ends_with("/alice"), "{r}");
    let out = session(1, &["approve", id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        show(&out)
    );
    let out = s.run(&s.admin, &["approve", id, "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    // The other session is the same person: it may use the grant.
    let out = session(1, &["credentials", "team", "--request", id]);
    assert!(out.status.success(), "{}", show(&out));
    s.record(&out);
    s.scan();
}
