//! `keysmith profiles list|get|put|delete`.

use std::path::PathBuf;

use crate::admin::{all_pages, print_object, read_body, AdminError};
use crate::client::{encode, Api, Target};
use crate::output::{list, Format};

/// Manage profiles (admin).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith profiles list\n  keysmith profiles get deploy --output json\n  keysmith profiles put deploy --file deploy.json\n  keysmith profiles delete deploy"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List every profile.
    #[command(after_help = "Example:\n  keysmith profiles list")]
    List,
    /// Show one profile.
    #[command(after_help = "Example:\n  keysmith profiles get deploy")]
    Get { name: String },
    /// Create or replace a profile from a JSON file (`-`: standard input).
    #[command(after_help = "Example:\n  keysmith profiles put deploy --file deploy.json")]
    Put {
        name: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a profile.
    #[command(after_help = "Example:\n  keysmith profiles delete deploy")]
    Delete { name: String },
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let path = |name: &str| format!("/v1/profiles/{}", encode(name));
    match &args.command {
        Command::List => {
            let api = Api::connect(target).await?;
            let items = all_pages(&api, "/v1/profiles", "profiles").await?;
            let columns = [
                ("NAME", "name"),
                ("TYPE", "credential_type"),
                // A switched-off profile (`enabled: false`, 403 profile_disabled) stands out.
                ("ENABLED", "enabled"),
                ("MAX SECONDS", "max_duration_seconds"),
                ("ALLOWED", "allowed_principals"),
                ("DESCRIPTION", "description"),
            ];
            print!("{}", list(&items, &columns, format));
        }
        Command::Get { name } => {
            let api = Api::connect(target).await?;
            print_object(&api.call("GET", &path(name), None).await?, format, "");
        }
        Command::Put { name, file } => {
            let body = read_body(file)?;
            let api = Api::connect(target).await?;
            let answer = api.call("PUT", &path(name), Some(&body)).await?;
            print_object(&answer, format, &format!("saved profile {name}"));
        }
        Command::Delete { name } => {
            let api = Api::connect(target).await?;
            let answer = api.call("DELETE", &path(name), None).await?;
            print_object(&answer, format, &format!("deleted profile {name}"));
        }
    }
    Ok(())
}
