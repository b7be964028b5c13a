//! `keysmith`: Keysmith's command-line client (SPEC §9). This file only parses and dispatches;
//! each subcommand is its own module, and every error is reported here, once.

mod admin;
mod cache;
mod client;
mod console;
mod credential;
mod credentials;
mod doctor;
mod env;
mod exec;
mod issued;
mod nested;
mod output;
mod secret;
mod serve;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::Target;
use crate::output::Format;

const EXAMPLES: &str = "Examples:
  export KEYSMITH_API=https://abc123.execute-api.eu-west-1.amazonaws.com
  keysmith credentials deploy            # credential_process JSON (cached)
  keysmith exec deploy -- aws sts get-caller-identity
  keysmith profiles list --output json";

/// Just-in-time AWS credentials from Keysmith, where people and programs need them.
#[derive(Parser, Debug)]
#[command(name = "keysmith", version, after_help = EXAMPLES)]
struct Cli {
    /// The Keysmith API's base URL (https; plain http only for loopback).
    #[arg(long, global = true, env = "KEYSMITH_API", value_name = "URL")]
    api: Option<String>,
    /// AWS region to sign for (default: from an execute-api host, else the AWS SDK's).
    #[arg(long, global = true, value_name = "REGION")]
    region: Option<String>,
    /// Output of the admin commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Credentials(credentials::Args),
    Exec(exec::Args),
    Env(env::Args),
    Serve(serve::Args),
    Console(console::Args),
    Profiles(admin::profiles::Args),
    Keys(admin::keys::Args),
    Leases(admin::leases::Args),
    Rotations(admin::rotations::Args),
    Revoke(admin::revoke::Args),
    Audit(admin::audit::Args),
    Doctor(doctor::Args),
    Ui(ui::Args),
    Request(admin::requests::RequestArgs),
    Requests(admin::requests::ListArgs),
    Approve(admin::requests::ApproveArgs),
    Deny(admin::requests::DecideArgs),
    Review(admin::requests::DecideArgs),
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Issue(#[from] issued::IssueError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error(transparent)]
    Ui(#[from] ui::UiError),
    #[error(transparent)]
    Requests(#[from] admin::requests::RequestCliError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

async fn dispatch(cli: Cli) -> Result<u8, Error> {
    let target = Target {
        api: cli.api,
        region: cli.region,
    };
    let format = cli.output;
    match &cli.command {
        Command::Credentials(a) => credentials::run(&target, a).await?,
        Command::Exec(a) => return Ok(exec::run(&target, a).await?),
        Command::Env(a) => env::run(&target, a).await?,
        Command::Serve(a) => serve::run(&target, a).await?,
        Command::Console(a) => console::run(&target, a).await?,
        Command::Profiles(a) => admin::profiles::run(&target, format, a).await?,
        Command::Keys(a) => admin::keys::run(&target, format, a).await?,
        Command::Leases(a) => admin::leases::run(&target, format, a).await?,
        Command::Rotations(a) => admin::rotations::run(&target, format, a).await?,
        Command::Revoke(a) => admin::revoke::run(&target, format, a).await?,
        Command::Audit(a) => return Ok(admin::audit::run(&target, format, a).await?),
        Command::Doctor(a) => return Ok(doctor::run(&target, format, a).await),
        Command::Ui(a) => ui::run(&target, a).await?,
        Command::Request(a) => admin::requests::request(&target, format, a).await?,
        Command::Requests(a) => admin::requests::requests(&target, format, a).await?,
        Command::Approve(a) => admin::requests::approve(&target, format, a).await?,
        Command::Deny(a) => admin::requests::decide(&target, format, a, "deny").await?,
        Command::Review(a) => admin::requests::decide(&target, format, a, "review").await?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's convention), `--help`/`--version` 0.
    let cli = Cli::parse();
    // Before the runtime starts any thread: the environment is changed here.
    if let Err(e) = nested::enter() {
        eprintln!("keysmith: {e}");
        return ExitCode::from(1);
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("keysmith: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_interface_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_stand_before_or_after_the_subcommand() {
        for argv in [
            &[
                "keysmith",
                "--api",
                "http://127.0.0.1:1",
                "--output",
                "json",
                "profiles",
                "list",
            ][..],
            &[
                "keysmith",
                "profiles",
                "list",
                "--api",
                "http://127.0.0.1:1",
                "--output",
                "json",
            ][..],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(cli.api.as_deref(), Some("http://127.0.0.1:1"));
            assert_eq!(cli.output, Format::Json);
        }
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_name() == "help" {
                    continue;
                }
                let after = sub
                    .get_after_help()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                assert!(after.contains("keysmith"), "{name} has no example");
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "keysmith");
    }

    #[test]
    fn audit_lists_the_trail_or_verifies_it() {
        let cli =
            Cli::try_parse_from(["keysmith", "audit", "--principal", "x", "--limit", "5"]).unwrap();
        match cli.command {
            Command::Audit(a) => {
                assert!(a.command.is_none());
                assert_eq!(a.principal.as_deref(), Some("x"));
                assert_eq!(a.limit, Some(5));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["keysmith", "audit"]).unwrap();
        assert!(matches!(cli.command, Command::Audit(ref a) if a.command.is_none()));

        let cli = Cli::try_parse_from([
            "keysmith",
            "audit",
            "verify",
            "--public-key",
            "f",
            "--since",
            "2026-11-01T00:00:00Z",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, Format::Json);
        match cli.command {
            Command::Audit(admin::audit::Args {
                command: Some(admin::audit::Command::Verify(v)),
                ..
            }) => {
                assert_eq!(v.public_key.as_deref(), Some(std::path::Path::new("f")));
                assert_eq!(
                    v.since.map(|t| t.to_rfc3339()).as_deref(),
                    Some("2026-11-01T00:00:00+00:00")
                );
                assert!(v.until.is_none());
            }
            other => panic!("{other:?}"),
        }

        // The listing's filters are not verify's, and verify's times must be times.
        for argv in [
            &["keysmith", "audit", "--principal", "x", "verify"][..],
            &["keysmith", "audit", "verify", "--principal", "x"][..],
            &["keysmith", "audit", "verify", "--since", "yesterday"][..],
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn the_refresh_window_defaults_to_botocores_900_seconds() {
        for argv in [
            &["keysmith", "credentials", "p"][..],
            &["keysmith", "exec", "p", "--", "true"][..],
            &["keysmith", "serve", "p"][..],
            &["keysmith", "env", "p"][..],
        ] {
            let window = match Cli::try_parse_from(argv).unwrap().command {
                Command::Credentials(a) => a.issue.refresh_window,
                Command::Exec(a) => a.issue.refresh_window,
                Command::Serve(a) => a.issue.refresh_window,
                Command::Env(a) => a.issue.refresh_window,
                other => panic!("{other:?}"),
            };
            assert_eq!(window, 900, "{argv:?}");
        }
        let cli = Cli::try_parse_from(["keysmith", "credentials", "p", "--refresh-window", "60"])
            .unwrap();
        assert!(matches!(cli.command, Command::Credentials(a) if a.issue.refresh_window == 60));
    }

    #[test]
    fn exec_takes_the_command_after_a_double_dash() {
        let cli =
            Cli::try_parse_from(["keysmith", "exec", "deploy", "--", "aws", "--version"]).unwrap();
        match cli.command {
            Command::Exec(a) => {
                assert_eq!(a.issue.profile, "deploy");
                assert_eq!(a.command, ["aws", "--version"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
