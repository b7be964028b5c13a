//! The four SDKs people run — boto3, the AWS CLI, the AWS SDK for JavaScript v3 and the Rust SDK's
//! `aws-config` — get the profile's identity from `keysmith` through both of its paths: the
//! container credentials endpoint of `keysmith serve` (`AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`) and `credential_process = keysmith credentials P`. Each
//! calls `sts:GetCallerIdentity` against moto. All eight runs go at once: it stays fast.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use keysmith_tests::cli::{keysmith, show, CliStack};
use keysmith_tests::{repo_root, venv};

const BOTO3: &str = "import boto3, sys\n\
    sts = boto3.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')\n\
    print(sts.get_caller_identity()['Arn'])\n";

/// Each SDK's "who am I" against `endpoint`, as a command without an environment yet.
fn clients(endpoint: &str) -> Vec<(&'static str, Command)> {
    let js = repo_root().join("tests/js");
    assert!(
        js.join("node_modules/@aws-sdk/client-sts").exists(),
        "{} has no node_modules: run `make test` (it runs `npm ci` there) first",
        js.display()
    );
    let mut boto3 = Command::new(venv().join("bin/python"));
    boto3.args(["-c", BOTO3, endpoint]);
    let mut cli = Command::new(venv().join("bin/aws"));
    cli.args([
        "sts",
        "get-caller-identity",
        "--output",
        "text",
        "--query",
        "Arn",
    ])
    .args(["--endpoint-url", endpoint]);
    let mut node = Command::new("node");
    node.arg(js.join("whoami.mjs")).arg(endpoint);
    let mut rust = Command::new(keysmith_tests::function_binary("sdk_whoami"));
    rust.arg(endpoint);
    vec![
        ("boto3", boto3),
        ("aws cli", cli),
        ("javascript v3", node),
        ("rust aws-config", rust),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_sdks_get_the_profiles_identity_through_serve_and_credential_process() {
    let s = CliStack::start().await;
    let served = s.serve(&s.alice, "deploy", &[]);
    // The documented pattern: the SDK's profile runs keysmith, which signs as profile `base`.
    let config = s.home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile base]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [profile deploy]\nregion = us-east-1\n\
             credential_process = /usr/bin/env AWS_PROFILE=base {} credentials deploy\n",
            s.alice.key_id,
            s.alice.secret,
            keysmith().display()
        ),
    )
    .unwrap();
    let none: PathBuf = s.home.path().join("none");
    let mut running = Vec::new();
    for path in ["serve", "credential_process"] {
        for (sdk, mut command) in clients(&s.moto.endpoint) {
            command
                .env_clear()
                .env("PATH", s.path())
                .env("HOME", s.home.path())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_SHARED_CREDENTIALS_FILE", &none)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if path == "serve" {
                command
                    .env("AWS_CONFIG_FILE", &none)
                    .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &served.uri)
                    .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", &served.token);
            } else {
                command
                    .env("AWS_CONFIG_FILE", &config)
                    .env("AWS_PROFILE", "deploy")
                    .env("KEYSMITH_API", &s.gateway.endpoint)
                    .env("KEYSMITH_CACHE_DIR", s.cache_dir());
            }
            running.push((sdk, path, command.spawn().unwrap()));
        }
    }
    let role = format!(":assumed-role/deploy-{}/", s.id);
    let mut failures = Vec::new();
    for (sdk, path, child) in running {
        let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
        s.keep_stderr(&out);
        let arn = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !(out.status.success() && arn.contains(&role)) {
            failures.push(format!("{sdk} through {path}: {}", show(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    s.scan();
}
