//! `make dev`: moto, the tables, the built `issue-credentials` function and a local HTTP gateway,
//! all on 127.0.0.1, until Ctrl-C. The caller's identity is the gateway's: `--as ARN` (default:
//! the admin) or `--anonymous`; nothing in a request can change it. With `--sigv4` the gateway
//! checks SigV4 signatures instead, as API Gateway's IAM authorizer does, and prints the key of an
//! IAM user `admin` it created in moto, for `keysmith` or `awscurl`.

use std::sync::Arc;

use keysmith_tests::gateway::Gateway;
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;

#[tokio::main]
async fn main() {
    let mut principal = Some("arn:aws:iam::123456789012:user/admin".to_owned());
    let mut port = 8080u16;
    let mut sigv4 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--as" => principal = args.next(),
            "--anonymous" => principal = None,
            "--sigv4" => sigv4 = true,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            other => {
                eprintln!(
                    "usage: gateway [--port N] [--as ARN | --anonymous | --sigv4] (unknown argument {other})"
                );
                std::process::exit(2);
            }
        }
    }
    let moto = Moto::start();
    moto.create_tables("keysmith-state", "keysmith-audit");
    let admins = std::env::var("KEYSMITH_ADMINS")
        .unwrap_or_else(|_| "arn:aws:iam::123456789012:user/admin".into());
    let function = FunctionProcess::start(
        &keysmith_tests::function_binary("issue-credentials"),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", "keysmith-state"),
            ("KEYSMITH_AUDIT_TABLE", "keysmith-audit"),
            ("KEYSMITH_ADMINS", &admins),
            // iam_user profiles must name it (moto needs no such policy to exist).
            (
                "KEYSMITH_LEASE_BOUNDARY_ARNS",
                keysmith_tests::api::LEASE_BOUNDARY,
            ),
        ],
    )
    .await;
    let _gateway = if sigv4 {
        let sdk = moto.sdk_config().await;
        let (key, secret) =
            keysmith_tests::aws::user_with_key(&sdk, "admin", &keysmith_tests::aws::allow_all())
                .await;
        let gateway = Gateway::start_sigv4(Arc::new(function), &moto.endpoint, port).await;
        println!(
            "Keysmith API on {} (SigV4, IAM authorizer)",
            gateway.endpoint
        );
        // Keys of the local emulator, printed on purpose: they exist only in this moto.
        println!(
            "As user admin: export KEYSMITH_API={} AWS_REGION={REGION} AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}",
            gateway.endpoint
        );
        gateway
    } else {
        let gateway = Gateway::start(Arc::new(function), principal.clone(), port).await;
        println!(
            "Keysmith API on {} as {}",
            gateway.endpoint,
            principal.as_deref().unwrap_or("(no identity)")
        );
        gateway
    };
    println!(
        "AWS (moto) on {}; tables keysmith-state, keysmith-audit. Ctrl-C stops everything.",
        moto.endpoint
    );
    // Ctrl-C reaches the whole process group (the function too); moto's wrapper ends with our stdin.
    std::future::pending::<()>().await;
}
