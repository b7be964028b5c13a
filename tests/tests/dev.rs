//! `make dev`'s stack (issue 31), driven through the built `keysmith` and `keysmith-dev` binaries
//! as a person would: a failed issuance never locks anybody out (the gateway no longer reads
//! moto's internals), rotate-now completes, and `keysmith-dev rotate-secret` rotates a secret
//! through the hook end to end.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keysmith_tests::cli::{show, User};
use keysmith_tests::dev::DevStack;
use keysmith_tests::function_binary;
use serde_json::{json, Value};

/// The environment `make dev` prints for `who`, with a home of the test's own.
fn command(stack: &DevStack, who: &User, home: &Path, program: &str) -> Command {
    let mut c = Command::new(function_binary(program));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KEYSMITH_API", &stack.gateway.endpoint)
        .env("AWS_ENDPOINT_URL", &stack.aws.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", &who.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &who.secret);
    c
}

/// Runs off the runtime's threads (the gateway and the functions' emulator run on it).
async fn output(mut c: Command, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

async fn keysmith(stack: &DevStack, who: &User, home: &Path, args: &[&str]) -> Output {
    let mut c = command(stack, who, home, "keysmith");
    c.args(args);
    output(c, None).await
}

async fn put_profile(stack: &DevStack, home: &Path, name: &str, profile: &Value) -> Output {
    let mut c = command(stack, &stack.admin, home, "keysmith");
    c.args(["profiles", "put", name, "--file", "-"]);
    output(c, Some(profile.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_issuance_never_locks_the_admin_out() {
    let stack = DevStack::start(0, Duration::from_secs(3600)).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // The README's ReadOnlyAccess iam_user case: the managed policy exists, the lease is issued.
    let out = keysmith(
        &stack,
        &stack.alice,
        home,
        &["credentials", "dev-user", "--no-cache"],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let out = keysmith(&stack, &stack.admin, home, &["profiles", "list"]).await;
    assert!(out.status.success(), "{}", show(&out));
    // Its owner ends it, with a reason the audit trail keeps (`leases revoke --reason`).
    let out = keysmith(
        &stack,
        &stack.alice,
        home,
        &[
            "leases",
            "list",
            "--profile",
            "dev-user",
            "--output",
            "json",
        ],
    )
    .await;
    let leases: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let lease = leases[0]["lease_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let out = keysmith(
        &stack,
        &stack.alice,
        home,
        &["leases", "revoke", &lease, "--reason", "done with it"],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let out = keysmith(
        &stack,
        &stack.admin,
        home,
        &["audit", "--event", "Lease Revoked", "--output", "json"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done with it"),
        "{}",
        show(&out)
    );

    // One that IAM refuses: the issuance fails (and cleans up); nobody is locked out after it.
    let broken = json!({"credential_type": "iam_user",
        "policy_arns": ["arn:aws:iam::aws:policy/NoSuchPolicyAnywhere"],
        "permissions_boundary_arn": keysmith_tests::api::LEASE_BOUNDARY,
        "allowed_principals": [stack.alice.arn]});
    let out = put_profile(&stack, home, "broken-user", &broken).await;
    assert!(out.status.success(), "{}", show(&out));
    let out = keysmith(
        &stack,
        &stack.alice,
        home,
        &["credentials", "broken-user", "--no-cache"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = keysmith(&stack, &stack.admin, home, &["profiles", "list"]).await;
    assert!(out.status.success(), "the admin after it: {}", show(&out));
    let out = keysmith(
        &stack,
        &stack.alice,
        home,
        &["credentials", "dev-role", "--no-cache"],
    )
    .await;
    assert!(out.status.success(), "alice after it: {}", show(&out));
    // A key the gateway never saw handed out is refused.
    let stranger = User {
        arn: String::new(),
        key_id: "AKIAIOSFODNN7NOTKNOWN".into(),
        secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    };
    let out = keysmith(&stack, &stranger, home, &["profiles", "list"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// The user's keys, and the key the secret's `AWSCURRENT` holds.
async fn keys(stack: &DevStack, user: &str, secret: &str) -> (Vec<String>, String) {
    let sdk = keysmith_tests::moto::Moto::sdk_config_at(
        &stack.aws.endpoint,
        aws_sdk_sts::config::Credentials::new("test", "test", None, None, "test"),
    )
    .await;
    let listed = aws_sdk_iam::Client::new(&sdk)
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap();
    let ids = listed
        .access_key_metadata()
        .iter()
        .filter_map(|k| k.access_key_id().map(str::to_owned))
        .collect();
    let current = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let value: Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    (
        ids,
        value["access_key_id"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_and_rotate_now_rotate_a_key_under_make_dev() {
    let stack = DevStack::start(0, Duration::from_secs(3600)).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let sdk = keysmith_tests::moto::Moto::sdk_config_at(
        &stack.aws.endpoint,
        aws_sdk_sts::config::Credentials::new("test", "test", None, None, "test"),
    )
    .await;
    let (user, secret) = ("ci-deployer", "keysmith/ci-deployer");
    let iam = aws_sdk_iam::Client::new(&sdk);
    iam.create_user().user_name(user).send().await.unwrap();
    let first = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap()
        .access_key_id;
    keysmith_tests::aws::secret(&sdk, secret, &json!({"user_name": user})).await;
    keysmith_tests::aws::bind(&sdk, user, secret).await;

    // The hook, driven as Secrets Manager drives it.
    let mut c = command(&stack, &stack.admin, home, "keysmith-dev");
    c.args(["rotate-secret", secret]);
    let out = output(c, None).await;
    assert!(out.status.success(), "{}", show(&out));
    let (ids, current) = keys(&stack, user, secret).await;
    assert_eq!(ids, vec![current.clone()], "replace mode: only the new key");
    assert_ne!(current, first);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("finishSecret: done") && stdout.contains(&current),
        "{stdout}"
    );

    // Rotate-now: scheduled-rotation, invoked by the API, takes the policy back to idle.
    let policy = json!({"secret_id": secret, "interval_days": 30});
    let mut c = command(&stack, &stack.admin, home, "keysmith");
    c.args(["rotations", "put", "ci-deployer", "--file", "-"]);
    let out = output(c, Some(policy.to_string())).await;
    assert!(out.status.success(), "{}", show(&out));
    let out = keysmith(
        &stack,
        &stack.admin,
        home,
        &["rotations", "rotate", "ci-deployer"],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let started = Instant::now();
    let got = loop {
        let out = keysmith(
            &stack,
            &stack.admin,
            home,
            &["rotations", "get", "ci-deployer", "--output", "json"],
        )
        .await;
        let got: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if got["status"] == "idle" && got["last_rotated_at"].is_string() {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rotate-now did not reach idle: {}",
            show(&out)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (ids, newest) = keys(&stack, user, secret).await;
    assert_eq!(ids, vec![newest.clone()], "{got}");
    assert_ne!(newest, current, "rotate-now made a new key: {got}");
}
