//! `keysmith leases list|revoke|renew`.

use crate::admin::{all_pages, print_object, AdminError};
use crate::client::{encode, Api, ClientError, Target};
use crate::output::{list, Format};

/// List, revoke or renew leases (your own, or any as an admin).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith leases list --profile deploy\n  keysmith leases revoke 0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c\n  keysmith leases renew 0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c --duration-seconds 3600"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List live leases.
    #[command(after_help = "Example:\n  keysmith leases list --profile deploy")]
    List {
        /// Only leases of this profile.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Revoke one lease.
    #[command(
        after_help = "Example:\n  keysmith leases revoke 0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c --reason \"pasted in #general\""
    )]
    Revoke {
        lease_id: String,
        /// Why, for the audit trail (`Credentials Revoked`).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Make a live iam_user lease end later (STS credentials cannot be extended).
    #[command(
        after_help = "Example:\n  keysmith leases renew 0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c --duration-seconds 3600"
    )]
    Renew {
        lease_id: String,
        /// The lease ends this long from now (default: the profile's default duration), never
        /// past the profile's max_duration_seconds after the lease began.
        #[arg(long, value_name = "N")]
        duration_seconds: Option<u32>,
    },
}

/// `DELETE /v1/leases/{id}`, and this machine's cached copy of the revoked keys goes too (SPEC
/// §17: nothing serves a revoked lease); a cache that cannot be opened holds nothing to remove.
pub async fn revoke(
    api: &Api,
    lease_id: &str,
    reason: Option<&str>,
) -> Result<serde_json::Value, ClientError> {
    let path = format!("/v1/leases/{}", encode(lease_id));
    let body = reason.map(|r| serde_json::json!({ "reason": r }));
    let answer = api.call("DELETE", &path, body.as_ref()).await?;
    if let Ok(cache) = crate::cache::Cache::open() {
        if let Err(e) = cache.forget_lease(lease_id) {
            eprintln!("keysmith: the revoked lease's cached credentials could not be removed: {e}");
        }
    }
    Ok(answer)
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let api = Api::connect(target).await?;
    match &args.command {
        Command::List { profile } => {
            let path = match profile {
                Some(p) => format!("/v1/leases?profile={}", encode(p)),
                None => "/v1/leases".to_owned(),
            };
            let items = all_pages(&api, &path, "leases").await?;
            let columns = [
                ("LEASE", "lease_id"),
                ("PROFILE", "profile"),
                ("TYPE", "credential_type"),
                ("PRINCIPAL", "principal"),
                ("EXPIRATION", "expiration"),
                ("STATUS", "status"),
            ];
            print!("{}", list(&items, &columns, format));
        }
        Command::Revoke { lease_id, reason } => {
            let answer = revoke(&api, lease_id, reason.as_deref()).await?;
            print_object(&answer, format, &format!("revoked lease {lease_id}"));
        }
        Command::Renew {
            lease_id,
            duration_seconds,
        } => {
            let path = format!("/v1/leases/{}/renew", encode(lease_id));
            let body = match duration_seconds {
                Some(d) => serde_json::json!({ "duration_seconds": d }),
                None => serde_json::json!({}),
            };
            let answer = api.call("POST", &path, Some(&body)).await?;
            let until = answer["expiration"].as_str().unwrap_or("?");
            print_object(
                &answer,
                format,
                &format!("renewed lease {lease_id} until {until}"),
            );
        }
    }
    Ok(())
}
