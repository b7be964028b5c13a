//! The Rust SDK's `aws-config` as any program uses it: the default credential chain (container
//! endpoint, `credential_process` profiles, …) and `sts:GetCallerIdentity` against the endpoint
//! given as the only argument. Prints the caller's ARN; for the cross-SDK tests (`cli_sdks.rs`).

use aws_config::{BehaviorVersion, Region};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let endpoint = std::env::args()
        .nth(1)
        .expect("usage: sdk_whoami ENDPOINT_URL");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let who = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await;
    match who {
        Ok(who) => println!("{}", who.arn().unwrap_or_default()),
        Err(e) => {
            eprintln!(
                "sdk_whoami: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            );
            std::process::exit(1);
        }
    }
}
