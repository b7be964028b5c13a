//! moto, the tables, the built `issue-credentials` function and a local HTTP gateway whose caller
//! is fixed, all on 127.0.0.1, until Ctrl-C: `--as ARN` (default: the admin) or `--anonymous`;
//! nothing in a request can change it. For trying an identity without keys (curl works). The
//! whole product, with SigV4 as API Gateway checks it, is `make dev` (`keysmith-dev`).

use std::sync::Arc;

use keysmith_tests::gateway::Gateway;
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;

#[tokio::main]
async fn main() {
    let mut principal = Some("arn:aws:iam::123456789012:user/admin".to_owned());
    let mut port = 8080u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--as" => principal = args.next(),
            "--anonymous" => principal = None,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            other => {
                eprintln!(
                    "usage: gateway [--port N] [--as ARN | --anonymous] (unknown argument {other})"
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
    let gateway = Gateway::start(Arc::new(function), principal.clone(), port).await;
    println!(
        "Keysmith API on {} as {}",
        gateway.endpoint,
        principal.as_deref().unwrap_or("(no identity)")
    );
    println!(
        "AWS (moto) on {}; tables keysmith-state, keysmith-audit. Ctrl-C stops everything.",
        moto.endpoint
    );
    // Ctrl-C reaches the whole process group (the function too); moto's wrapper ends with our stdin.
    std::future::pending::<()>().await;
}
