//! `keysmith audit`: the audit trail, newest first; `keysmith audit verify`: checked against its
//! signed checkpoints.

pub mod verify;

use crate::admin::AdminError;
use crate::client::{encode, Api, Target};
use crate::output::{list, Format};

/// Read the audit trail, newest first, or verify it (admin).
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  keysmith audit --profile deploy --limit 20\n  keysmith audit --event 'AWS STS Temporary' --since 2026-11-01T00:00:00Z --output json\n  keysmith audit verify --public-key keysmith-audit.pem"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Only items of this principal (exact ARN, or `jwt:<sub>`).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only items of this profile or rotation policy.
    #[arg(long)]
    pub profile: Option<String>,
    /// Only items with this event name.
    #[arg(long)]
    pub event: Option<String>,
    /// Only items at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only items at or before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many items.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    Verify(verify::Args),
}

/// The exit status: `audit verify` fails when it finds a problem.
pub async fn run(target: &Target, format: Format, args: &Args) -> Result<u8, AdminError> {
    match &args.command {
        Some(Command::Verify(v)) => verify::run(target, format, v).await,
        None => list_trail(target, format, args).await.map(|()| 0),
    }
}

async fn list_trail(target: &Target, format: Format, args: &Args) -> Result<(), AdminError> {
    let limit = args.limit.map(|l| l.to_string());
    let filters = [
        ("principal", &args.principal),
        ("profile", &args.profile),
        ("event", &args.event),
        ("since", &args.since),
        ("until", &args.until),
        ("limit", &limit),
    ];
    let query: Vec<String> = filters
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    let path = if query.is_empty() {
        "/v1/audit".to_owned()
    } else {
        format!("/v1/audit?{}", query.join("&"))
    };
    let api = Api::connect(target).await?;
    let page = api.call("GET", &path, None).await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let columns = [
        ("TIME", "time"),
        ("EVENT", "event"),
        ("OUTCOME", "outcome"),
        ("PRINCIPAL", "principal"),
        ("PROFILE", "profile"),
        ("MESSAGE", "message"),
    ];
    print!("{}", list(&items, &columns, format));
    Ok(())
}
