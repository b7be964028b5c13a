//! `keysmith rotations list|get|put|delete|rotate`.

use std::path::PathBuf;

use crate::admin::{all_pages, print_object, read_body, AdminError};
use crate::client::{encode, Api, Target};
use crate::output::{list, Format};

/// Manage access-key rotation policies (admin).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith rotations list\n  keysmith rotations put ci-key --file policy.json\n  keysmith rotations rotate ci-key"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List every rotation policy.
    #[command(after_help = "Example:\n  keysmith rotations list")]
    List,
    /// Show one policy with its last and next rotation.
    #[command(after_help = "Example:\n  keysmith rotations get ci-key")]
    Get { name: String },
    /// Create or replace a policy from a JSON file (`-`: standard input).
    #[command(after_help = "Example:\n  keysmith rotations put ci-key --file policy.json")]
    Put {
        name: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a policy.
    #[command(after_help = "Example:\n  keysmith rotations delete ci-key")]
    Delete { name: String },
    /// Rotate now, whatever the schedule.
    #[command(after_help = "Example:\n  keysmith rotations rotate ci-key")]
    Rotate { name: String },
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let path = |name: &str| format!("/v1/rotations/{}", encode(name));
    // A bad file is reported before anything else happens.
    let body = match &args.command {
        Command::Put { file, .. } => Some(read_body(file)?),
        _ => None,
    };
    let api = Api::connect(target).await?;
    match &args.command {
        Command::List => {
            let items = all_pages(&api, "/v1/rotations", "rotations").await?;
            let columns = [
                ("NAME", "name"),
                ("SECRET", "secret_id"),
                ("EVERY (DAYS)", "interval_days"),
                ("LAST ROTATED", "last_rotated_at"),
                ("NEXT DUE", "next_due_at"),
                ("STATUS", "status"),
            ];
            print!("{}", list(&items, &columns, format));
        }
        Command::Get { name } => {
            print_object(&api.call("GET", &path(name), None).await?, format, "");
        }
        Command::Put { name, .. } => {
            let answer = api.call("PUT", &path(name), body.as_ref()).await?;
            print_object(&answer, format, &format!("saved rotation policy {name}"));
        }
        Command::Delete { name } => {
            let answer = api.call("DELETE", &path(name), None).await?;
            print_object(&answer, format, &format!("deleted rotation policy {name}"));
        }
        Command::Rotate { name } => {
            let answer = api
                .call("POST", &format!("{}/rotate", path(name)), None)
                .await?;
            print_object(&answer, format, &format!("rotation of {name} started"));
        }
    }
    Ok(())
}
