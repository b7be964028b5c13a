//! `keysmith exec PROFILE -- COMMAND…`: runs COMMAND with the credentials in its environment (or,
//! with `--server`, with a loopback credentials endpoint) and exits with its status.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;

use crate::client::{Api, Target};
use crate::env::{variables, REMOVED};
use crate::issued::{self, IssueArgs, IssueError};
use crate::serve::{self, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// Run a command with the profile's credentials, and exit with its status.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith exec deploy -- aws sts get-caller-identity\n  keysmith exec deploy --server -- ./long-running-job"
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// Give the command a loopback credentials endpoint instead, so it renews on its own.
    #[arg(long)]
    pub server: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Variables that would shadow the ones we set.
const CREDENTIAL_VARIABLES: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];
const CONTAINER_VARIABLES: [&str; 3] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Runs the command; the answer is the exit code to leave with.
pub async fn run(target: &Target, args: &Args) -> Result<u8, ExecError> {
    let (program, rest) = match args.command.split_first() {
        Some(split) => split,
        None => return Ok(2),
    };
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    for name in REMOVED.iter().chain(&CONTAINER_VARIABLES) {
        command.env_remove(name);
    }
    if args.server {
        let endpoint = serve::start(target, &args.issue, 0).await?;
        for name in CREDENTIAL_VARIABLES {
            command.env_remove(name);
        }
        command
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint.uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", endpoint.token.expose());
    } else {
        let api = Api::connect(target).await.map_err(IssueError::from)?;
        let issued = issued::get(&api, &args.issue).await?;
        command.env_remove("AWS_SESSION_TOKEN");
        command.env_remove("AWS_SECURITY_TOKEN");
        for (name, value) in variables(&issued) {
            command.env(name, value);
        }
    }
    let status = command.status().await.map_err(|source| ExecError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    Ok(exit_code(status))
}

/// The child's code; killed by a signal: 128 + the signal, as shells report it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from((128 + signal) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}
