//! `make dev`: the whole product on 127.0.0.1 against moto, until Ctrl-C (see `keysmith_tests::dev`).
//!
//!     keysmith-dev [up] [--port 8080] [--schedule-seconds 60]
//!     keysmith-dev rotate-secret SECRET_ID
//!
//! `up` prints, for an admin and for a non-admin caller, the lines that point a shell at the stack.
//! `rotate-secret` does locally what Secrets Manager does on AWS when a secret rotates: it starts a
//! rotation (`RotateSecret` names the hook, which leaves a new `AWSPENDING` version without a
//! value), then invokes the hook with `createSecret`, `setSecret`, `testSecret` and `finishSecret`
//! for that version, stopping at the first failure. It reads the stack from `AWS_ENDPOINT_URL`.

use std::time::Duration;

use keysmith_tests::dev::{secret_rotation_arn, DevStack, SECRET_ROTATION};
use serde_json::{json, Value};

const USAGE: &str = "usage: keysmith-dev [up] [--port N] [--schedule-seconds N]\n       keysmith-dev rotate-secret SECRET_ID";

fn usage(problem: &str) -> ! {
    eprintln!("keysmith-dev: {problem}\n{USAGE}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("rotate-secret") => {
            args.next();
            let (Some(secret), None) = (args.next(), args.next()) else {
                usage("rotate-secret takes one SECRET_ID");
            };
            if let Err(e) = rotate_secret(&secret).await {
                eprintln!("keysmith-dev: {e}");
                std::process::exit(1);
            }
        }
        Some("up") => {
            args.next();
            up(args.collect()).await
        }
        _ => up(args.collect()).await,
    }
}

async fn up(args: Vec<String>) {
    let (mut port, mut schedule) = (8080u16, 60u64);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // The gateway always checks SigV4 now; the flag of the former `make dev ARGS=--sigv4`.
        if arg == "--sigv4" {
            continue;
        }
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--port", Some(p)) => port = u16::try_from(p).unwrap_or_else(|_| usage("bad port")),
            ("--schedule-seconds", Some(s)) if s > 0 => schedule = s,
            _ => usage(&format!("unknown or incomplete argument {arg}")),
        }
    }
    let stack = DevStack::start(port, Duration::from_secs(schedule)).await;
    println!("{}", stack.banner());
    // Ctrl-C reaches the whole process group (the functions too); moto's wrapper ends with our
    // stdin. A test stops the stack the same way, by signalling its process group.
    std::future::pending::<()>().await;
}

async fn rotate_secret(secret: &str) -> Result<(), String> {
    let sdk = keysmith::aws::sdk_config_loader().load().await;
    if sdk.endpoint_url().is_none() {
        return Err("AWS_ENDPOINT_URL is not set: paste the lines `make dev` printed first".into());
    }
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let token = uuid::Uuid::new_v4().to_string();
    sm.rotate_secret()
        .secret_id(secret)
        .rotation_lambda_arn(secret_rotation_arn())
        .client_request_token(&token)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("RotateSecret {secret}: {}", keysmith::aws::classify(e)))?;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event = json!({"Step": step, "SecretId": secret, "ClientRequestToken": token});
        let out = lambda
            .invoke()
            .function_name(SECRET_ROTATION)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|e| format!("invoking {SECRET_ROTATION}: {}", keysmith::aws::classify(e)))?;
        if out.function_error().is_some() {
            let payload = out
                .payload()
                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                .unwrap_or_default();
            return Err(format!("{step} failed: {payload}"));
        }
        println!("{step}: done");
    }
    let current = sm
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| format!("reading {secret}: {}", keysmith::aws::classify(e)))?;
    let value: Value = current
        .secret_string()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    println!(
        "{secret}: version {token} is AWSCURRENT, access key {}",
        value["access_key_id"].as_str().unwrap_or("?")
    );
    Ok(())
}
