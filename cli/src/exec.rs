//! `keysmith exec PROFILE -- COMMAND…`: runs COMMAND with the credentials in its environment (or,
//! with `--server`, with a loopback credentials endpoint) and exits with its status.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};

use tokio::process::Child;
use tokio::signal::unix::{signal, Signal, SignalKind};

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
    after_help = "Examples:\n  keysmith exec deploy -- aws sts get-caller-identity\n  keysmith exec deploy --server -- ./long-running-job\n  keysmith exec deploy --revoke-on-exit -- terraform apply"
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// Give the command a loopback credentials endpoint instead, so it renews on its own.
    #[arg(long)]
    pub server: bool,
    /// When the command ends, revoke the lease(s) it was given (STS: a per-lease Deny; iam_user:
    /// the user is deleted). The credentials are issued for the command alone, not from the cache.
    #[arg(long)]
    pub revoke_on_exit: bool,
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
/// Variables that would hand the command another identity, or come before ours in an SDK's
/// chain: web identity (before the container endpoint everywhere) and the parent's container
/// endpoint (Go prefers FULL, the other SDKs RELATIVE). `--server` then sets its own FULL URI and
/// token.
const IDENTITY_VARIABLES: [&str; 7] = [
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];
/// Under `--server` the command gets no keys in its environment, so a `[default]` in the shared
/// credentials file (or a profile in the config file) would come before the endpoint: both are
/// pointed at an empty file. The region variables stay.
const SHARED_FILES: [&str; 2] = ["AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"];

/// Runs the command; the answer is the exit code to leave with.
pub async fn run(target: &Target, args: &Args) -> Result<u8, ExecError> {
    let (program, rest) = match args.command.split_first() {
        Some(split) => split,
        None => return Ok(2),
    };
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    for name in REMOVED.iter().chain(&IDENTITY_VARIABLES) {
        command.env_remove(name);
    }
    // The command is not a keysmith run inside this one: a keysmith it runs starts afresh.
    command.env_remove(crate::nested::VARIABLE);
    // A lease revoked on exit must be the command's alone: never one shared through the cache.
    let mut issue = args.issue.clone();
    issue.no_cache |= args.revoke_on_exit;
    let leases: Arc<Mutex<Vec<String>>>;
    if args.server {
        let endpoint = serve::start(target, &issue, 0).await?;
        leases = endpoint.leases.clone();
        for name in CREDENTIAL_VARIABLES {
            command.env_remove(name);
        }
        for name in SHARED_FILES {
            command.env(name, "/dev/null");
        }
        command
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint.uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", endpoint.token.expose());
    } else {
        let api = Api::connect(target).await.map_err(IssueError::from)?;
        let issued = issued::get(&api, &issue).await?;
        leases = Arc::new(Mutex::new(issued.lease_id.iter().cloned().collect()));
        command.env_remove("AWS_SESSION_TOKEN");
        command.env_remove("AWS_SECURITY_TOKEN");
        for (name, value) in variables(&issued) {
            command.env(name, value);
        }
    }
    let spawn_error = |source| ExecError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    };
    // Listening before the command starts leaves no moment where a signal kills keysmith alone.
    let signals = Signals::listen().map_err(spawn_error)?;
    let child = command.spawn().map_err(spawn_error)?;
    let status = signals.wait_passing_on(child).await.map_err(spawn_error)?;
    if args.revoke_on_exit {
        let leases = leases.lock().unwrap_or_else(|p| p.into_inner()).clone();
        revoke_all(target, &leases).await;
    }
    Ok(exit_code(status))
}

/// Revokes each lease and says so on stderr; a failure is said too, but the exit status stays
/// the command's.
async fn revoke_all(target: &Target, leases: &[String]) {
    if leases.is_empty() {
        eprintln!("keysmith: the credentials named no lease: nothing to revoke");
        return;
    }
    let api = match Api::connect(target).await {
        Ok(api) => api,
        Err(e) => {
            eprintln!(
                "keysmith: could not revoke lease(s) {}: {e}",
                leases.join(", ")
            );
            return;
        }
    };
    for id in leases {
        match crate::admin::leases::revoke(
            &api,
            id,
            Some("keysmith exec --revoke-on-exit: the command exited"),
        )
        .await
        {
            Ok(answer) => {
                let kind = answer["credential_type"].as_str().unwrap_or("lease");
                eprintln!("keysmith: revoked lease {id} ({kind}) on exit");
            }
            Err(e) => eprintln!("keysmith: could not revoke lease {id}: {e}"),
        }
    }
}

/// What keysmith does with signals while the command runs: it stays until the command ends, so
/// the shell (or CI runner) gets the prompt back, and the status, only when the command is done.
struct Signals {
    /// Ctrl-C goes to the whole foreground process group: the command has it from the terminal
    /// already. Passing it on would make it two, and a second Ctrl-C means "stop now, skip the
    /// clean-up" to terraform and many others. keysmith only stops dying of it.
    interrupt: Signal,
    /// `kill`, `timeout`, a CI runner or a supervisor address keysmith alone: passed on.
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait_passing_on(
        mut self,
        mut child: Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        let pass_on = |sig| {
            if let Some(pid) = pid {
                // The command may have just ended: its status arrives through wait below.
                let _ = rustix::process::kill_process(pid, sig);
            }
        };
        loop {
            tokio::select! {
                status = child.wait() => return status,
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => pass_on(rustix::process::Signal::TERM),
                _ = self.hangup.recv() => pass_on(rustix::process::Signal::HUP),
            }
        }
    }
}

/// The child's code; killed by a signal: 128 + the signal, as shells report it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from((128 + signal) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}
