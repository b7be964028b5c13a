//! Issued credentials: asking the API for them (`POST /v1/profiles/{name}/credentials`), through
//! the on-disk cache, and the options every credential-handing command shares.

use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::cache::{Cache, CacheError};
use crate::client::{encode, Api, ClientError};
pub use crate::credential::Issued;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the API's answer holds no usable credentials ({0})")]
    BadAnswer(String),
    #[error("profile {0} requires an approved access request: ask with `keysmith request {0} --reason \"…\" --wait`, then run this again with `--request ID`")]
    NeedsApproval(String),
}

/// The default refresh window: botocore refreshes credentials with under 15 minutes left, so a
/// cached answer with less than that would be handed back to it on every credential access.
pub const REFRESH_WINDOW: u64 = 900;

/// What to ask for, and how long a cached answer is good for.
#[derive(clap::Args, Debug, Clone)]
pub struct IssueArgs {
    /// The Keysmith profile to issue credentials for.
    pub profile: String,
    /// Lifetime of the credentials (the profile bounds it).
    #[arg(long, value_name = "N")]
    pub duration_seconds: Option<u32>,
    /// MFA code, for a profile that requires one.
    #[arg(long, value_name = "CODE")]
    pub token_code: Option<String>,
    /// Appended to the session name derived from the caller.
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
    /// Fetch new credentials once fewer than this many seconds remain (botocore's 15 minutes:
    /// a shorter window makes a long-running SDK client run `credential_process` on every use).
    #[arg(long, value_name = "SECONDS", default_value_t = REFRESH_WINDOW)]
    pub refresh_window: u64,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// An approved access request of yours (`keysmith request`), for a profile that requires
    /// approval: issues once, with the request's duration.
    #[arg(long, value_name = "ID", conflicts_with = "duration_seconds")]
    pub request: Option<String>,
}

/// Asks the API for new credentials (no cache).
pub async fn fetch(api: &Api, args: &IssueArgs) -> Result<Issued, IssueError> {
    let mut body = Map::new();
    if let Some(d) = args.duration_seconds {
        body.insert("duration_seconds".into(), json!(d));
    }
    if let Some(c) = &args.token_code {
        body.insert("token_code".into(), json!(c));
    }
    if let Some(s) = &args.session_name {
        body.insert("session_name".into(), json!(s));
    }
    if let Some(r) = &args.request {
        body.insert("request_id".into(), json!(r));
    }
    let path = format!("/v1/profiles/{}/credentials", encode(&args.profile));
    let answer = match api.call("POST", &path, Some(&Value::Object(body))).await {
        Err(ClientError::Api { code, .. })
            if code == "approval_required" && args.request.is_none() =>
        {
            return Err(IssueError::NeedsApproval(args.profile.clone()));
        }
        other => other?,
    };
    let issued: Issued = serde_json::from_value(answer).map_err(|e| {
        // serde names the field, never the value.
        IssueError::BadAnswer(e.to_string())
    })?;
    if issued.expires_at().is_none() {
        return Err(IssueError::BadAnswer("no RFC 3339 expiration".into()));
    }
    Ok(issued)
}

/// Credentials for `args`: a cached answer while more than the refresh window remains (no
/// network call at all), else new ones, written back under a lock.
pub async fn get(api: &Api, args: &IssueArgs) -> Result<Issued, IssueError> {
    if args.no_cache {
        return fetch(api, args).await;
    }
    let cache = Cache::open()?;
    let duration = args
        .duration_seconds
        .map(|d| d.to_string())
        .unwrap_or_default();
    let mut parts: Vec<&str> = vec![
        api.base(),
        &args.profile,
        api.caller_key_id(),
        &duration,
        args.session_name.as_deref().unwrap_or_default(),
    ];
    // Credentials of an access request are its own entry (entries without one keep their name).
    if let Some(r) = &args.request {
        parts.push(r);
    }
    let name = Cache::entry_name(&parts);
    if let Some(hit) = cache.read(&name) {
        if hit.fresh_at(Utc::now(), args.refresh_window) {
            return Ok(hit);
        }
    }
    // One refresh at a time per entry: whoever waited reads what the other wrote.
    let _lock = cache.lock(&name)?;
    if let Some(hit) = cache.read(&name) {
        if hit.fresh_at(Utc::now(), args.refresh_window) {
            return Ok(hit);
        }
    }
    let issued = fetch(api, args).await?;
    cache.write(&name, &issued)?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn issued(expiration: &str) -> Issued {
        Issued {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("secret-value-0123456789"),
            session_token: Some(Secret::new("token-value-0123456789")),
            expiration: expiration.into(),
            credential_type: "assumed_role".into(),
            lease_id: None,
        }
    }

    #[test]
    fn fresh_only_while_more_than_the_window_remains() {
        let now = Utc::now();
        let later = (now + chrono::Duration::seconds(600)).to_rfc3339();
        assert!(issued(&later).fresh_at(now, 300));
        assert!(!issued(&later).fresh_at(now, 600));
        assert!(!issued("not a time").fresh_at(now, 0));
    }

    #[test]
    fn credential_process_shape_and_no_secret_in_debug() {
        let i = issued("2026-11-21T15:04:05Z");
        let v = i.credential_process();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["SessionToken"], "token-value-0123456789");
        let debug = format!("{i:?}");
        assert!(!debug.contains("secret-value") && !debug.contains("token-value"));
    }
}
