//! `keysmith credentials PROFILE`: the `credential_process` JSON, from the cache when it can.

use crate::client::{Api, Target};
use crate::issued::{self, IssueArgs, IssueError};

/// Print credentials in the `credential_process` shape (cached per API, profile and caller).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith credentials deploy\n  # ~/.aws/config:\n  #   [profile deploy]\n  #   credential_process = keysmith credentials deploy"
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
}

pub async fn run(target: &Target, args: &Args) -> Result<(), IssueError> {
    let api = Api::connect(target).await?;
    let issued = issued::get(&api, &args.issue).await?;
    println!("{}", issued.credential_process());
    Ok(())
}
