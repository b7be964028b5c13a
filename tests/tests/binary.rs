//! End to end: the built `issue-credentials` binary, driven through the Lambda Runtime API with the
//! events in `events/`, against moto. Logs are captured at DEBUG and searched for issued secrets.

use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{event, function_binary};
use serde_json::Value;

async fn start(moto: &Moto, state: &str, audit: &str, extra: &[(&str, &str)]) -> FunctionProcess {
    let mut env = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("KEYSMITH_STATE_TABLE", state),
        ("KEYSMITH_AUDIT_TABLE", audit),
        ("KEYSMITH_ADMINS", "arn:aws:iam::123456789012:user/admin"),
        ("RUST_LOG", "debug"),
    ];
    env.extend_from_slice(extra);
    FunctionProcess::start(&function_binary("issue-credentials"), &env).await
}

fn status(r: &Value) -> i64 {
    r["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no statusCode: {r}"))
}

fn body(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap()
}

#[tokio::test]
async fn serves_the_sample_events_without_leaking_secrets() {
    let moto = Moto::shared();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
    moto.create_tables(&state, &audit);
    let f = start(moto, &state, &audit, &[]).await;

    let put = f.invoke(&event("profile-put.json")).await.unwrap();
    assert_eq!(status(&put), 201, "{put}");
    assert_eq!(body(&put)["name"], "deploy");
    assert_eq!(
        f.invoke(&event("profile-get.json"))
            .await
            .map(|r| status(&r)),
        Ok(200)
    );
    let list = f.invoke(&event("profile-list.json")).await.unwrap();
    assert_eq!(body(&list)["profiles"].as_array().unwrap().len(), 1);

    let issued = f.invoke(&event("credentials-post.json")).await.unwrap();
    assert_eq!(status(&issued), 200, "{issued}");
    assert_eq!(issued["headers"]["cache-control"], "no-store");
    let creds = body(&issued);
    assert_eq!(creds["lease_duration"], 900);
    let process = f.invoke(&event("credentials-process.json")).await.unwrap();
    let process = body(&process);
    assert_eq!(process["Version"], 1);

    let denied = f
        .invoke(&event("credentials-no-identity.json"))
        .await
        .unwrap();
    assert_eq!(status(&denied), 401);
    assert_eq!(body(&denied)["error"]["code"], "unauthenticated");

    let trail = f.invoke(&event("audit-get.json")).await.unwrap();
    let items = body(&trail)["items"].as_array().unwrap().clone();
    let events: Vec<&str> = items.iter().map(|i| i["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["AWS STS Temporary", "AWS STS Temporary", "Profile Created"],
        "newest first"
    );

    // Revoking the profile puts its Deny on the role (which moto needs to exist).
    let _ = aws_sdk_iam::Client::new(&moto.sdk_config().await)
        .create_role()
        .path("/keysmith/")
        .role_name("deploy")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await;
    let revoked = f.invoke(&event("profile-revoke.json")).await.unwrap();
    assert_eq!(status(&revoked), 200, "{revoked}");
    assert_eq!(body(&revoked)["targets"][0]["target_type"], "role");

    assert_eq!(
        f.invoke(&event("profile-delete.json"))
            .await
            .map(|r| status(&r)),
        Ok(204)
    );

    let logs = f.logs();
    assert!(
        logs.contains("DEBUG"),
        "logs were not captured at DEBUG:\n{logs}"
    );
    for secret in [
        &creds["secret_access_key"],
        &creds["session_token"],
        &process["SecretAccessKey"],
        &process["SessionToken"],
    ] {
        let secret = secret.as_str().unwrap();
        assert!(secret.len() >= 16);
        assert!(
            !logs.contains(secret),
            "an issued secret appears in the function's logs"
        );
    }
    let trail_text = format!("{items:?}");
    assert!(!trail_text.contains(creds["secret_access_key"].as_str().unwrap()));
}

/// One clear ERROR line naming `KEYSMITH_ADMINS`, and a failed start, for each value.
async fn admins_stop_the_start(admins: Option<&str>) {
    let moto = Moto::shared();
    let mut env = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", REGION),
        ("KEYSMITH_STATE_TABLE", "s"),
        ("KEYSMITH_AUDIT_TABLE", "a"),
    ];
    if let Some(a) = admins {
        env.push(("KEYSMITH_ADMINS", a));
    }
    let mut f = FunctionProcess::start(&function_binary("issue-credentials"), &env).await;
    assert_ne!(f.wait_exit().await, Some(0), "{admins:?}");
    let logs = f.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("KEYSMITH_ADMINS"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one clear line naming the variable:\n{logs}"
    );
    assert!(lines[0].contains("ERROR"), "{logs}");
}

#[tokio::test]
async fn missing_configuration_stops_the_function_at_start_up() {
    admins_stop_the_start(None).await;
}

#[tokio::test]
async fn admin_patterns_that_reach_too_far_stop_the_function_at_start_up() {
    for admins in [
        "*",
        "arn:aws:iam::*:user/admin",
        "arn:*:user/admin",
        // Issue 31: a session is an `sts` ARN; under `iam` this pattern could never match.
        "arn:aws:iam::123456789012:assumed-role/Admins/alice",
    ] {
        admins_stop_the_start(Some(admins)).await;
    }
}

#[tokio::test]
async fn credential_process_output_drives_the_real_aws_cli() {
    let moto = Moto::start();
    let root = moto.sdk_config().await;
    let role_arn = keysmith_tests::aws::assumable_role(&root, "/keysmith/", "deploy").await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
    moto.create_tables(&state, &audit);
    let f = start(&moto, &state, &audit, &[]).await;
    let mut put = event("profile-put.json");
    let mut profile: Value = serde_json::from_str(put["body"].as_str().unwrap()).unwrap();
    profile["role_arn"] = role_arn.into();
    put["body"] = profile.to_string().into();
    assert_eq!(status(&f.invoke(&put).await.unwrap()), 201);
    let out = f.invoke(&event("credentials-process.json")).await.unwrap();
    assert_eq!(status(&out), 200, "{out}");

    // The AWS CLI runs our output through its credential_process setting.
    let dir = std::env::temp_dir().join(format!("keysmith-cli-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let creds_file = dir.join("creds.json");
    std::fs::write(&creds_file, out["body"].as_str().unwrap()).unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile keysmith]\ncredential_process = cat {}\nregion = {REGION}\n",
            creds_file.display()
        ),
    )
    .unwrap();
    moto.enable_auth().await;
    let cli = tokio::process::Command::new(keysmith_tests::venv().join("bin/aws"))
        .args([
            "sts",
            "get-caller-identity",
            "--output",
            "json",
            "--endpoint-url",
            &moto.endpoint,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
        .env("AWS_PROFILE", "keysmith")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        cli.status.success(),
        "aws cli failed: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let who: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(
        who["Arn"],
        "arn:aws:sts::123456789012:assumed-role/deploy/alice"
    );
}
