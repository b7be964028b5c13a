//! `keysmith revoke PROFILE`: every credential the profile issued before a time stops working.

use serde_json::{json, Map};

use crate::admin::{print_object, AdminError};
use crate::client::{encode, Api, Target};
use crate::output::Format;

/// Revoke every credential a profile issued before a time (admin).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith revoke deploy --reason \"laptop lost\"\n  keysmith revoke deploy --issued-before 2026-11-21T15:00:00Z"
)]
pub struct Args {
    pub profile: String,
    /// RFC 3339 time (default: now).
    #[arg(long, value_name = "TIME")]
    pub issued_before: Option<String>,
    /// Why, for the audit trail.
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let mut body = Map::new();
    if let Some(t) = &args.issued_before {
        body.insert("issued_before".into(), json!(t));
    }
    if let Some(r) = &args.reason {
        body.insert("reason".into(), json!(r));
    }
    let api = Api::connect(target).await?;
    let path = format!("/v1/profiles/{}/revoke", encode(&args.profile));
    let answer = api.call("POST", &path, Some(&body.into())).await?;
    print_object(
        &answer,
        format,
        &format!("revoked profile {}", args.profile),
    );
    Ok(())
}
