//! `make demo`: the main job of Keysmith, end to end, on this machine. Starts moto, creates the
//! tables from template.yaml, seeds an IAM user, a role and a base-key secret, then drives the
//! built `issue-credentials` binary through the Lambda Runtime API: creates a profile of each STS
//! type, issues credentials, proves each with `aws sts get-caller-identity`, rotates a user's key
//! through its secret, and prints the audit trail. Then the `keysmith` client, through a local
//! gateway that checks SigV4 signatures as API Gateway's IAM authorizer does: `keysmith exec`
//! and `credential_process = keysmith credentials` with the real AWS CLI, and the admin commands.
//! Everything it started stops when it ends.

use std::process::{Command, Stdio};
use std::sync::Arc;

use keysmith_tests::gateway::Gateway;

use keysmith_tests::aws::{allow_all, assumable_role, secret, user_with_key};
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{event, function_binary, venv};
use serde_json::{json, Value};

const STATE: &str = "keysmith-state";
const AUDIT: &str = "keysmith-audit";

fn step(text: &str) {
    println!("\n==> {text}");
}

async fn call(
    f: &FunctionProcess,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> (i64, Value) {
    let mut e = event(template);
    e["rawPath"] = path.into();
    e["requestContext"]["http"]["path"] = path.into();
    if let Some(b) = body {
        e["body"] = b.to_string().into();
    }
    let r = f
        .invoke(&e)
        .await
        .unwrap_or_else(|err| panic!("invocation failed: {err}"));
    let status = r["statusCode"].as_i64().unwrap_or(0);
    let body = serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (status, body)
}

/// `aws sts get-caller-identity` (the real AWS CLI) with the given credentials: the ARN.
fn whoami(endpoint: &str, key: &str, secret: &str, token: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(venv().join("bin/aws"));
    cmd.args([
        "sts",
        "get-caller-identity",
        "--output",
        "text",
        "--query",
        "Arn",
        "--endpoint-url",
        endpoint,
    ])
    .env("AWS_ACCESS_KEY_ID", key)
    .env("AWS_SECRET_ACCESS_KEY", secret)
    .env("AWS_DEFAULT_REGION", REGION)
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if let Some(t) = token {
        cmd.env("AWS_SESSION_TOKEN", t);
    }
    let out = cmd.output().expect("cannot run the aws cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `program args…` (blocking, off the runtime's serving threads) and prints it with its
/// output, indented.
fn shown(mut cmd: Command, display: &str, stdin: Option<&str>) -> String {
    use std::io::Write;
    println!("    $ {display}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = tokio::task::block_in_place(|| {
        let mut child = cmd.spawn().expect("cannot start the command");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("command output")
    });
    assert!(
        out.status.success(),
        "{display}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    for line in text.lines() {
        println!("      {line}");
    }
    text
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    step("starting moto (local AWS) on 127.0.0.1");
    let moto = Moto::start();
    println!("    {}", moto.endpoint);
    moto.create_tables(STATE, AUDIT);
    println!("    tables {STATE} and {AUDIT} created from template.yaml");

    step("seeding IAM: a base user whose key lives in Secrets Manager, and a role to assume");
    let sdk = moto.sdk_config().await;
    let (key_id, key_secret) = user_with_key(&sdk, "demo-base", &allow_all()).await;
    secret(
        &sdk,
        "keysmith/demo-base",
        &json!({"access_key_id": key_id, "secret_access_key": key_secret}),
    )
    .await;
    let role_arn = assumable_role(&sdk, "/keysmith/", "deploy").await;
    println!("    user demo-base (key {key_id}) -> secret keysmith/demo-base\n    role {role_arn}");

    step("starting the issue-credentials function (Lambda Runtime API)");
    let f = Arc::new(
        FunctionProcess::start(
            &function_binary("issue-credentials"),
            &[
                ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                ("AWS_REGION", REGION),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("KEYSMITH_STATE_TABLE", STATE),
                ("KEYSMITH_AUDIT_TABLE", AUDIT),
                ("KEYSMITH_ADMINS", "arn:aws:iam::123456789012:user/admin"),
            ],
        )
        .await,
    );

    let deployers = json!(["arn:aws:iam::123456789012:role/Deployers*"]);
    let profiles = [
        (
            "deploy",
            json!({"credential_type": "assumed_role", "role_arn": role_arn,
            "description": "CI deploys", "allowed_principals": deployers}),
        ),
        (
            "session",
            json!({"credential_type": "session_token", "source_secret_id": "keysmith/demo-base",
            "allowed_principals": deployers}),
        ),
        (
            "federated",
            json!({"credential_type": "federation_token", "source_secret_id": "keysmith/demo-base",
            "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
            "allowed_principals": deployers}),
        ),
    ];
    for (name, profile) in &profiles {
        step(&format!(
            "admin creates profile {name} ({})",
            profile["credential_type"]
        ));
        let (status, body) = call(
            &f,
            "profile-put.json",
            &format!("/v1/profiles/{name}"),
            Some(profile.clone()),
        )
        .await;
        println!("    PUT /v1/profiles/{name} -> {status}");
        assert_eq!(status, 201, "{body}");
    }

    for (name, _) in &profiles {
        step(&format!(
            "alice (role Deployers-ci) asks for {name} credentials"
        ));
        let path = format!("/v1/profiles/{name}/credentials");
        let (status, creds) = call(
            &f,
            "credentials-post.json",
            &path,
            Some(json!({"duration_seconds": 900})),
        )
        .await;
        assert_eq!(status, 200, "{creds}");
        println!(
            "    POST {path} -> {status}: {} {}, expires {}, lease {}",
            creds["credential_type"],
            creds["access_key_id"],
            creds["expiration"],
            creds["lease_id"]
        );
        let who = whoami(
            &moto.endpoint,
            creds["access_key_id"].as_str().unwrap(),
            creds["secret_access_key"].as_str().unwrap(),
            creds["session_token"].as_str(),
        );
        println!("    aws sts get-caller-identity -> {who}");
    }

    step("an admin rotates ci-deployer's long-lived key through its secret (rotate now)");
    let (old_key, old_secret) = user_with_key(&sdk, "ci-deployer", &allow_all()).await;
    // Rotation binding: the user names the one secret allowed to rotate it.
    keysmith_tests::aws::bind(&sdk, "ci-deployer", "keysmith/ci-deployer").await;
    println!("    aws iam tag-user --user-name ci-deployer --tags Key=keysmith:rotation-secret,Value=keysmith/ci-deployer");
    secret(
        &sdk,
        "keysmith/ci-deployer",
        &json!({"user_name": "ci-deployer", "access_key_id": old_key,
        "secret_access_key": old_secret, "mode": "replace"}),
    )
    .await;
    let policy =
        json!({"secret_id": "keysmith/ci-deployer", "interval_days": 30, "rotation_hour_utc": 3});
    let (status, _) = call(
        &f,
        "rotation-put.json",
        "/v1/rotations/ci-deployer",
        Some(policy),
    )
    .await;
    println!("    PUT /v1/rotations/ci-deployer -> {status}");
    let (status, rotated) = call(
        &f,
        "rotation-rotate.json",
        "/v1/rotations/ci-deployer/rotate",
        None,
    )
    .await;
    assert_eq!(status, 202, "{rotated}");
    println!(
        "    POST /v1/rotations/ci-deployer/rotate -> {status}: status {}",
        rotated["status"]
    );
    // Rotate-now only marks the policy; scheduled-rotation rotates it (here: its hourly event).
    let scheduled = FunctionProcess::start(
        &function_binary("scheduled-rotation"),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", STATE),
            ("KEYSMITH_AUDIT_TABLE", AUDIT),
            ("KEYSMITH_ADMINS", "arn:aws:iam::123456789012:user/admin"),
        ],
    )
    .await;
    let report = scheduled
        .invoke(&event("scheduled.json"))
        .await
        .unwrap_or_else(|err| panic!("scheduled-rotation failed: {err}"));
    let done = &report["rotated"][0];
    println!(
        "    scheduled-rotation -> rotated {}: {} -> {}",
        done["policy"], done["old_access_key_id"], done["new_access_key_id"]
    );
    let current = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id("keysmith/ci-deployer")
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let value: Value = serde_json::from_str(current.secret_string().unwrap_or_default()).unwrap();
    let keys = aws_sdk_iam::Client::new(&sdk)
        .list_access_keys()
        .user_name("ci-deployer")
        .send()
        .await
        .unwrap();
    println!(
        "    AWSCURRENT holds {}; ci-deployer has {} key(s)",
        value["access_key_id"],
        keys.access_key_metadata.len()
    );
    let who = whoami(
        &moto.endpoint,
        value["access_key_id"].as_str().unwrap(),
        value["secret_access_key"].as_str().unwrap(),
        None,
    );
    println!("    aws sts get-caller-identity with the new key -> {who}");

    step("a stranger is refused (and the refusal is audited)");
    let mut stranger = event("credentials-post.json");
    stranger["requestContext"]["authorizer"]["iam"]["userArn"] =
        "arn:aws:iam::123456789012:user/mallory".into();
    let r = f.invoke(&stranger).await.unwrap();
    println!(
        "    POST /v1/profiles/deploy/credentials as mallory -> {}",
        r["statusCode"]
    );

    step("the audit trail (GET /v1/audit), newest first");
    let mut e = event("audit-get.json");
    e["rawQueryString"] = "limit=20".into();
    e["queryStringParameters"] = json!({"limit": "20"});
    let r = f.invoke(&e).await.unwrap();
    let trail: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    for item in trail["items"].as_array().unwrap() {
        println!(
            "    {} {:7} {:6} {:<24} {:<11} {:<16} {}",
            item["time"].as_str().unwrap_or(""),
            item["outcome"].as_str().unwrap_or(""),
            item["level"].as_str().unwrap_or(""),
            item["event"].as_str().unwrap_or(""),
            item["profile"].as_str().unwrap_or("-"),
            item["credential_type"].as_str().unwrap_or("-"),
            item["access_key_id"].as_str().unwrap_or("-"),
        );
    }
    client(&moto, &sdk, f.clone(), &role_arn).await;
    step("done: stopping the function and moto");
}

/// The `keysmith` client against the API behind a SigV4-checking gateway.
async fn client(moto: &Moto, sdk: &aws_config::SdkConfig, f: Arc<FunctionProcess>, role_arn: &str) {
    step("the keysmith client, through a local gateway that checks SigV4 signatures like API Gateway's IAM authorizer");
    let (admin_key, admin_secret) = user_with_key(sdk, "admin", &allow_all()).await;
    let (alice_key, alice_secret) = user_with_key(sdk, "alice", &allow_all()).await;
    let keys = Arc::new(keysmith_tests::keyring::KeyRing::default());
    keys.add(&admin_key, &admin_secret, None, None);
    keys.add(&alice_key, &alice_secret, None, None);
    let authorizer = keysmith_tests::sigv4::Authorizer::new(&moto.endpoint, keys);
    let gateway = Gateway::start_sigv4(f, authorizer, 0).await;
    println!(
        "    API {} ; IAM users admin and alice sign with their own keys",
        gateway.endpoint
    );
    let home = tempfile::tempdir().expect("temporary home");
    let keysmith = function_binary("keysmith");
    let aws = venv().join("bin/aws");
    let config = home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile deploy]\nregion = {REGION}\ncredential_process = {} credentials deploy\n",
            keysmith.display()
        ),
    )
    .expect("write the AWS config");
    let path = format!(
        "{}:{}",
        venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let command = |program: &std::path::Path, key: &str, secret: &str| {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("KEYSMITH_API", &gateway.endpoint)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        c
    };
    let profile = json!({"credential_type": "assumed_role", "role_arn": role_arn,
        "description": "deploys, from people's laptops too",
        "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*", "arn:aws:iam::123456789012:user/alice"]});
    let mut put = command(&keysmith, &admin_key, &admin_secret);
    put.args(["profiles", "put", "deploy", "--file", "-"]);
    shown(
        put,
        "keysmith profiles put deploy --file -   # as admin",
        Some(&profile.to_string()),
    );

    let mut exec = command(&keysmith, &alice_key, &alice_secret);
    exec.args(["exec", "deploy", "--"]).arg(&aws).args([
        "sts",
        "get-caller-identity",
        "--output",
        "text",
        "--query",
        "Arn",
        "--endpoint-url",
        &moto.endpoint,
    ]);
    shown(
        exec,
        "keysmith exec deploy -- aws sts get-caller-identity   # as alice",
        None,
    );

    println!(
        "    ~/.aws/config: [profile deploy] credential_process = keysmith credentials deploy"
    );
    for _ in 0..2 {
        let before = gateway.requests();
        let mut cli = command(&aws, &alice_key, &alice_secret);
        cli.args([
            "--profile",
            "deploy",
            "sts",
            "get-caller-identity",
            "--output",
            "text",
            "--query",
            "Arn",
            "--endpoint-url",
            &moto.endpoint,
        ]);
        shown(cli, "aws --profile deploy sts get-caller-identity", None);
        println!(
            "      (requests to the Keysmith API for this call: {}; keysmith's cache answers while the credentials last)",
            gateway.requests() - before
        );
    }

    let mut list = command(&keysmith, &admin_key, &admin_secret);
    list.args(["profiles", "list"]);
    shown(list, "keysmith profiles list", None);
    let mut audit = command(&keysmith, &admin_key, &admin_secret);
    audit.args(["audit", "--limit", "5"]);
    shown(audit, "keysmith audit --limit 5", None);
}
