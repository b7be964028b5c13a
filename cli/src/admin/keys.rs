//! `keysmith keys show AKIA…` (admin, SPEC §15): which key is this?

use crate::admin::{print_object, AdminError};
use crate::client::{encode, Api, Target};
use crate::output::Format;

/// Find who owns an access key, its audit items and IAM's view of it (admin).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  keysmith keys show AKIAIOSFODNN7EXAMPLE")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The lease or rotation behind a key, its audit items, and IAM's status and last use.
    #[command(after_help = "Example:\n  keysmith keys show AKIAIOSFODNN7EXAMPLE")]
    Show { access_key_id: String },
    /// Reactivate a key the key report deactivated as unused or old (never a quarantined one):
    /// the request is recorded at once and carried out by the next sweep (within 3 minutes).
    #[command(after_help = "Example:\n  keysmith keys reactivate AKIAIOSFODNN7EXAMPLE")]
    Reactivate { access_key_id: String },
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let api = Api::connect(target).await?;
    match &args.command {
        Command::Show { access_key_id } => {
            let path = format!("/v1/keys/{}", encode(access_key_id));
            let answer = api.call("GET", &path, None).await?;
            print_object(&answer, format, access_key_id);
        }
        Command::Reactivate { access_key_id } => {
            let path = format!("/v1/keys/{}/reactivate", encode(access_key_id));
            let answer = api
                .call("POST", &path, Some(&serde_json::json!({})))
                .await?;
            print_object(&answer, format, access_key_id);
        }
    }
    Ok(())
}
