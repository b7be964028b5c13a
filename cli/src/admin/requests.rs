//! Access requests (SPEC §12, §17): `keysmith request`, `requests`, `approve`, `deny`, `review`.
//! `approve` shows the request's fields and digest, recomputes the digest from the fields it
//! shows (so the server cannot show one request and have another approved), asks unless `--yes`,
//! and sends the digest it showed.

use std::io::{BufRead, Write};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::admin::{all_pages, print_object, AdminError};
use crate::client::{encode, Api, ClientError, Target};
use crate::output::{list, Format};

/// Ask for access to a profile that requires approval.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith request deploy --reason \"deploy the OPS-7 hotfix\" --ticket OPS-7 --wait\n  keysmith request deploy --reason \"prod is down\" --break-glass"
)]
pub struct RequestArgs {
    /// The profile to ask for.
    pub profile: String,
    /// Why you need access (approvers read it; 1 to 1000 characters).
    #[arg(long)]
    pub reason: String,
    /// Lifetime of the credentials (default: the profile's).
    #[arg(long, value_name = "N")]
    pub duration_seconds: Option<u32>,
    /// A ticket or incident reference.
    #[arg(long, value_name = "T")]
    pub ticket: Option<String>,
    /// Wait until the request is approved (or ends), polling with backoff.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits at most.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub wait_timeout: u64,
    /// Break glass: approved at once if you may, loudly audited, reviewed afterwards.
    #[arg(long)]
    pub break_glass: bool,
}

/// List access requests: yours, those you may approve, or (admins) all.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith requests --status pending\n  keysmith requests --profile deploy --output json"
)]
pub struct ListArgs {
    /// pending, approved, denied, cancelled, expired or issued.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
}

/// Approve an access request, after reading exactly what it asks for.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith approve 0190f3c5-8a1e-7c2d-9b4f-1e2d3c4b5a69\n  keysmith approve 0190f3c5-8a1e-7c2d-9b4f-1e2d3c4b5a69 --yes --comment \"matches OPS-7\""
)]
pub struct ApproveArgs {
    pub request_id: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub comment: Option<String>,
}

/// Deny an access request, or mark a break glass request reviewed.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith deny 0190f3c5-8a1e-7c2d-9b4f-1e2d3c4b5a69 --comment \"use staging\"\n  keysmith review 0190f3c5-8a1e-7c2d-9b4f-1e2d3c4b5a69 --comment \"incident 42\""
)]
pub struct DecideArgs {
    pub request_id: String,
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestCliError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("request {id} ended {status}, not approved")]
    Ended { id: String, status: String },
    #[error("request {0} was not approved within the wait; it is still pending (keysmith requests --status pending)")]
    TimedOut(String),
    #[error("the API's digest does not match the request it showed (computed {computed}): nothing was approved")]
    DigestDiffers { computed: String },
    #[error("not approved")]
    Declined,
    #[error("cannot read the confirmation: {0}")]
    Prompt(std::io::Error),
}

impl From<ClientError> for RequestCliError {
    fn from(e: ClientError) -> Self {
        Self::Admin(e.into())
    }
}

const COLUMNS: [(&str, &str); 7] = [
    ("REQUEST", "request_id"),
    ("PROFILE", "profile"),
    ("STATUS", "status"),
    ("REQUESTER", "requester"),
    ("DURATION", "duration_seconds"),
    ("REASON", "reason"),
    ("EXPIRES", "expires_at"),
];

/// `keysmith request`: prints the request (the id first, for scripts), and with `--wait` waits.
pub async fn request(
    target: &Target,
    format: Format,
    args: &RequestArgs,
) -> Result<(), RequestCliError> {
    let api = Api::connect(target).await?;
    let mut body = Map::new();
    body.insert("profile".into(), json!(args.profile));
    body.insert("reason".into(), json!(args.reason));
    if let Some(d) = args.duration_seconds {
        body.insert("duration_seconds".into(), json!(d));
    }
    if let Some(t) = &args.ticket {
        body.insert("ticket".into(), json!(t));
    }
    if args.break_glass {
        body.insert("break_glass".into(), json!(true));
    }
    let r = api
        .call("POST", "/v1/requests", Some(&Value::Object(body)))
        .await?;
    let id = r["request_id"].as_str().unwrap_or_default().to_owned();
    if format == Format::Table {
        eprintln!(
            "keysmith: request {id} is {}; an approver runs: keysmith approve {id}",
            r["status"].as_str().unwrap_or("?")
        );
    }
    let r = if args.wait {
        wait(&api, &id, Duration::from_secs(args.wait_timeout)).await?
    } else {
        r
    };
    match format {
        Format::Table => println!("{id}"),
        Format::Json => print_object(&r, format, ""),
    }
    if args.wait && format == Format::Table {
        eprintln!(
            "keysmith: approved; use it with: keysmith exec {} --request {id} -- COMMAND",
            args.profile
        );
    }
    Ok(())
}

/// Polls the request until it is approved (or issued), politely: 2 s doubling to 30 s, with
/// jitter, up to `limit`.
async fn wait(api: &Api, id: &str, limit: Duration) -> Result<Value, RequestCliError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_secs(2);
    loop {
        let r = api
            .call("GET", &format!("/v1/requests/{}", encode(id)), None)
            .await?;
        match r["status"].as_str().unwrap_or_default() {
            "approved" | "issued" => return Ok(r),
            "pending" => {}
            other => {
                return Err(RequestCliError::Ended {
                    id: id.to_owned(),
                    status: other.to_owned(),
                })
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(RequestCliError::TimedOut(id.to_owned()));
        }
        let jitter = Duration::from_millis(u64::from(jitter_byte()) * 4);
        tokio::time::sleep((pause + jitter).min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

fn jitter_byte() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::getrandom(&mut b);
    b[0]
}

/// `keysmith requests`.
pub async fn requests(
    target: &Target,
    format: Format,
    args: &ListArgs,
) -> Result<(), RequestCliError> {
    let api = Api::connect(target).await?;
    let mut query = Vec::new();
    if let Some(s) = &args.status {
        query.push(format!("status={}", encode(s)));
    }
    if let Some(p) = &args.profile {
        query.push(format!("profile={}", encode(p)));
    }
    let path = if query.is_empty() {
        "/v1/requests".to_owned()
    } else {
        format!("/v1/requests?{}", query.join("&"))
    };
    let items = all_pages(&api, &path, "requests").await?;
    print!("{}", list(&items, &COLUMNS, format));
    Ok(())
}

/// The digest SPEC §12 defines, over the fields as the request shows them.
pub fn digest_of(r: &Value) -> String {
    let canonical = keysmith_audit_proof::canonical(&json!({
        "requester": r["requester"],
        "profile": r["profile"],
        "duration": r["duration_seconds"],
        "ticket": r["ticket"],
        "reason": r["reason"],
        "break_glass": r["break_glass"],
        "created_at": r["created_at"],
    }));
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// `keysmith approve`.
pub async fn approve(
    target: &Target,
    format: Format,
    args: &ApproveArgs,
) -> Result<(), RequestCliError> {
    let api = Api::connect(target).await?;
    let path = format!("/v1/requests/{}", encode(&args.request_id));
    let r = api.call("GET", &path, None).await?;
    let computed = digest_of(&r);
    let shown = r["digest"].as_str().unwrap_or_default().to_owned();
    if computed != shown {
        return Err(RequestCliError::DigestDiffers { computed });
    }
    let fields = [
        "request_id",
        "profile",
        "requester",
        "reason",
        "ticket",
        "duration_seconds",
        "break_glass",
        "created_at",
        "expires_at",
        "status",
        "min_approvals",
        "digest",
    ];
    let mut summary = Map::new();
    for f in fields {
        summary.insert(f.to_owned(), r[f].clone());
    }
    // On standard error: standard output stays the answer alone.
    eprint!(
        "{}",
        crate::output::object(&Value::Object(summary), Format::Table)
    );
    if !args.yes {
        eprint!("Approve exactly this request (digest {shown})? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(RequestCliError::Prompt)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(RequestCliError::Declined);
        }
    }
    let mut body = json!({ "digest": shown });
    if let Some(c) = &args.comment {
        body["comment"] = json!(c);
    }
    let answer = api
        .call("POST", &format!("{path}/approve"), Some(&body))
        .await?;
    let status = answer["status"].as_str().unwrap_or("?");
    print_object(
        &answer,
        format,
        &format!("approved request {}: it is {status}", args.request_id),
    );
    Ok(())
}

/// `keysmith deny` and `keysmith review`.
pub async fn decide(
    target: &Target,
    format: Format,
    args: &DecideArgs,
    action: &str,
) -> Result<(), RequestCliError> {
    let api = Api::connect(target).await?;
    let body = match &args.comment {
        Some(c) => json!({ "comment": c }),
        None => json!({}),
    };
    let path = format!("/v1/requests/{}/{action}", encode(&args.request_id));
    let answer = api.call("POST", &path, Some(&body)).await?;
    let done = if action == "deny" {
        "denied"
    } else {
        "reviewed"
    };
    print_object(
        &answer,
        format,
        &format!("{done} request {}", args.request_id),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_servers() {
        // The same canonical form as the server's (shared/src/requests/digest.rs).
        let r = json!({"requester": "arn:aws:iam::123456789012:user/alice", "profile": "deploy",
            "duration_seconds": 3600, "ticket": null, "reason": "fix \"prod\"", "break_glass": false,
            "created_at": "2026-11-21T15:04:05.000000Z", "status": "pending"});
        let canonical = r#"{"break_glass":false,"created_at":"2026-11-21T15:04:05.000000Z","duration":3600,"profile":"deploy","reason":"fix \"prod\"","requester":"arn:aws:iam::123456789012:user/alice","ticket":null}"#;
        assert_eq!(
            digest_of(&r),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
    }
}
