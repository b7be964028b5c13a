//! `keysmith doctor [PROFILE]` (SPEC §17): is this machine ready to use Keysmith? Each check prints
//! `ok` or `fail` with what it saw and, when it fails, what to do; the exit status is 0 only when
//! every check is ok. Checks never print a secret: keys are named by their id only.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::cache::Cache;
use crate::client::{Api, ClientError, Target};
use crate::issued::{self, IssueArgs};
use crate::output::Format;

/// A clock further than this from the API's is reported: SigV4 refuses requests more than 5
/// minutes off, and issued expiry times look shorter or longer than they are.
pub const MAX_SKEW_SECONDS: i64 = 60;

/// Check that the API answers signed calls, the clock, the cache and (with a profile) issuance.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith doctor\n  keysmith doctor deploy          # also checks that credentials are issued\n  keysmith doctor --output json"
)]
pub struct Args {
    /// Also check that credentials for this profile are issued (a new lease, not the cache).
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Fail,
    /// Not run: a check it needs failed.
    Skip,
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn ok(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail,
        fix: None,
    }
}

fn fail(name: &'static str, detail: String, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail,
        fix: Some(fix.into()),
    }
}

fn skip(name: &'static str, why: &str) -> Check {
    Check {
        name,
        status: Status::Skip,
        detail: why.to_owned(),
        fix: None,
    }
}

/// The fix for an error of the signed call.
fn api_fix(e: &ClientError, api: &str) -> String {
    match e {
        ClientError::NoApi | ClientError::BadUrl(_) | ClientError::PlainHttp(_) => {
            "set KEYSMITH_API (or pass --api) to the stack's ApiUrl output, https://<id>.execute-api.<region>.amazonaws.com".into()
        }
        ClientError::NoRegion => "pass --region, or set AWS_REGION".into(),
        ClientError::Nested(_) | ClientError::Credentials(_) => {
            "give the AWS SDK credentials: `aws sso login`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; `aws sts get-caller-identity` must work".into()
        }
        ClientError::Signing(_) => "check your AWS credentials and region".into(),
        ClientError::Transport { .. } => format!(
            "check the API URL ({api}): it must be the stack's ApiUrl output, reachable from here"
        ),
        ClientError::Api { status: 404, .. } => format!(
            "{api} does not look like a Keysmith API (GET /v1/leases is not found): use the stack's ApiUrl output, stage included"
        ),
        ClientError::Api {
            status: 401 | 403, ..
        } => "the API refused your signature: check AWS_REGION (or --region), that your credentials are current, and the clock check below".into(),
        ClientError::Api { .. } => "see the API's message; the function's logs say more".into(),
    }
}

/// The clock check from the API's `Date` header.
fn clock(date: Option<&str>, now: DateTime<Utc>) -> Check {
    let Some(date) = date else {
        return fail(
            "clock",
            "the API's answer had no Date header to compare with".into(),
            "check the API URL: API Gateway always sends Date",
        );
    };
    let Ok(theirs) = DateTime::parse_from_rfc2822(date) else {
        return fail(
            "clock",
            format!("the API's Date header is not an HTTP date: {date:?}"),
            "check the API URL",
        );
    };
    let skew = (now - theirs.with_timezone(&Utc)).num_seconds();
    if skew.abs() <= MAX_SKEW_SECONDS {
        return ok(
            "clock",
            format!("within {} s of the API's ({date})", skew.abs()),
        );
    }
    let way = if skew > 0 { "ahead of" } else { "behind" };
    fail(
        "clock",
        format!(
            "clock skew: this machine's clock is {} s {way} the API's (Date: {date}); SigV4 refuses requests more than 300 s off, and expiry times are misjudged",
            skew.abs()
        ),
        "synchronise the clock with NTP (`timedatectl set-ntp true`, `chronyc makestep`, or `sudo sntp -sS time.apple.com` on macOS)",
    )
}

/// The cache directory check (opening it creates it `0700` when it is missing).
fn cache() -> Check {
    let shown = crate::cache::directory()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "(none)".into());
    match Cache::open() {
        Ok(_) => ok("cache", format!("{shown}: yours, 0700, not a symbolic link")),
        Err(e) => fail("cache", e.to_string(), "set KEYSMITH_CACHE_DIR to a directory of your own with mode 0700 (`mkdir -m 700 DIR`), or fix the one named"),
    }
}

async fn issuance(api: &Api, profile: &str) -> Check {
    let args = IssueArgs {
        profile: profile.to_owned(),
        duration_seconds: None,
        token_code: None,
        session_name: None,
        refresh_window: issued::REFRESH_WINDOW,
        no_cache: true,
        request: None,
    };
    match issued::fetch(api, &args).await {
        Ok(i) => ok(
            "credentials",
            format!(
                "profile {profile}: {} credentials {} until {}{}",
                i.credential_type,
                i.access_key_id,
                i.expiration,
                i.lease_id
                    .map(|l| format!(", lease {l}"))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => {
            let fix = match &e {
                issued::IssueError::Client(ClientError::Api { status: 403, .. }) => format!(
                    "ask an admin to allow your principal (you sign with key {}) in {profile}'s allowed_principals, or check the profile's name (`keysmith profiles list` as an admin)",
                    api.caller_key_id()
                ),
                issued::IssueError::Client(ClientError::Api { status: 429, .. }) => {
                    "too many live leases: `keysmith leases list`, then revoke what you no longer use".into()
                }
                _ => "see the API's message; `keysmith credentials PROFILE` shows the same".into(),
            };
            fail("credentials", format!("profile {profile}: {e}"), fix)
        }
    }
}

async fn checks(target: &Target, profile: Option<&str>) -> Vec<Check> {
    let shown = target.api.clone().unwrap_or_else(|| "(no API)".into());
    let mut out = Vec::new();
    let api = match Api::connect(target).await {
        Ok(api) => api,
        Err(e) => {
            let fix = api_fix(&e, &shown);
            out.push(fail("api", e.to_string(), fix));
            out.push(skip("clock", "needs an answer of the API"));
            out.push(cache());
            if profile.is_some() {
                out.push(skip("credentials", "needs the API"));
            }
            return out;
        }
    };
    let answer = api.exchange("GET", "/v1/leases?limit=1", None).await;
    let signed_ok = match &answer {
        Ok(a) => match &a.result {
            Ok(_) => {
                out.push(ok(
                    "api",
                    format!(
                        "{shown}: a signed GET /v1/leases answered {} (signed with {})",
                        a.status,
                        api.caller_key_id()
                    ),
                ));
                true
            }
            Err(e) => {
                out.push(fail(
                    "api",
                    format!(
                        "{shown}: a signed GET /v1/leases answered {}: {e}",
                        a.status
                    ),
                    api_fix(e, &shown),
                ));
                false
            }
        },
        Err(e) => {
            out.push(fail("api", format!("{shown}: {e}"), api_fix(e, &shown)));
            false
        }
    };
    match &answer {
        Ok(a) => out.push(clock(a.date.as_deref(), Utc::now())),
        Err(_) => out.push(skip("clock", "the API gave no answer")),
    }
    out.push(cache());
    if let Some(p) = profile {
        if signed_ok {
            out.push(issuance(&api, p).await);
        } else {
            out.push(skip("credentials", "the API check failed"));
        }
    }
    out
}

fn label(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Fail => "fail",
        Status::Skip => "skip",
    }
}

/// Runs the checks, prints them, and answers the exit status (0: all ok; 1: any not ok).
pub async fn run(target: &Target, format: Format, args: &Args) -> u8 {
    let found = checks(target, args.profile.as_deref()).await;
    let all_ok = found.iter().all(|c| c.status == Status::Ok);
    match format {
        Format::Json => {
            let items: Vec<Value> = found
                .iter()
                .map(|c| json!({"check": c.name, "status": label(c.status), "detail": c.detail, "fix": c.fix}))
                .collect();
            println!("{}", json!({"ok": all_ok, "checks": items}));
        }
        Format::Table => {
            for c in &found {
                println!("{:<4}  {:<11}  {}", label(c.status), c.name, c.detail);
                if let Some(fix) = &c.fix {
                    println!("{:<4}  {:<11}  fix: {fix}", "", "");
                }
            }
        }
    }
    u8::from(!all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_check_names_the_skew() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = clock(Some("Fri, 04 Dec 2026 12:00:30 GMT"), now);
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        let c = clock(Some("Fri, 04 Dec 2026 11:50:00 GMT"), now);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("600 s ahead of"), "{}", c.detail);
        let c = clock(Some("Fri, 04 Dec 2026 12:10:00 GMT"), now);
        assert!(c.detail.contains("600 s behind"), "{}", c.detail);
        assert_eq!(clock(None, now).status, Status::Fail);
        assert_eq!(clock(Some("yesterday"), now).status, Status::Fail);
    }
}
