//! `keysmith serve PROFILE`: a loopback endpoint speaking the AWS SDKs' container credentials
//! protocol (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`), like
//! aws-vault's ECS server: a random token compared in constant time, `403` without the exact
//! token; credentials renewed once fewer than the refresh window (at least botocore's 15 minutes)
//! remains. At most `MAX_CONNECTIONS` connections at once, each closed when its request head does
//! not arrive within `HEADER_TIMEOUT`: idle sockets cannot starve the SDK that needs an answer.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::client::{Api, Target};
use crate::issued::{self, IssueArgs, IssueError, Issued};
use crate::secret::Secret;

pub const PATH: &str = "/keysmith/credentials";

/// Connections served at once; one more is closed at once rather than queued behind idle ones.
pub const MAX_CONNECTIONS: usize = 512;
/// A connection whose request head is not complete this long after it opened (or after its last
/// answer, when kept alive) is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Every SDK refreshes credentials with under 15 minutes left (botocore, the Rust SDK, Java's
/// prefetch): handing out less would have them ask again on every use.
pub const MIN_REMAINING: u64 = 900;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("no randomness for the authorization token: {0}")]
    Random(String),
    #[error("profile {profile} issues {kind} credentials without a session token, and every SDK's container credentials provider requires one (`Token`): use `keysmith exec {profile}` without --server, or `credential_process = keysmith credentials {profile}`")]
    NoSessionToken { profile: String, kind: String },
}

/// Serve credentials to local programs through the container credentials protocol.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith serve deploy --port 9911\n  # in another shell: export the two lines it prints, then run any AWS SDK program"
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// The loopback port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// A running endpoint: what a process needs to reach it.
pub struct Endpoint {
    pub uri: String,
    pub token: Secret,
    /// Every lease whose credentials this endpoint has held (for `exec --revoke-on-exit`).
    pub leases: Arc<std::sync::Mutex<Vec<String>>>,
}

struct State {
    target: Target,
    issue: IssueArgs,
    token: Secret,
    /// Held only to read or replace the value, never across a network call.
    current: std::sync::Mutex<Option<Issued>>,
    /// One renewal at a time; a request with fresh credentials at hand never waits for it.
    renewing: Mutex<()>,
    leases: Arc<std::sync::Mutex<Vec<String>>>,
}

impl State {
    fn window(&self) -> u64 {
        self.issue.refresh_window.max(MIN_REMAINING)
    }

    fn fresh(&self) -> Option<Issued> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|c| c.fresh_at(Utc::now(), self.window()))
            .cloned()
    }

    /// The current credentials, renewed first when fewer than the refresh window remains.
    async fn credentials(&self) -> Result<Issued, IssueError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _renewing = self.renewing.lock().await;
        // Whoever held the renewal before us may have renewed already.
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        // A new client each time: the caller's own credentials may have been renewed meanwhile.
        let api = Api::connect(&self.target).await?;
        let mut issue = self.issue.clone();
        issue.refresh_window = self.window();
        let fresh = issued::get(&api, &issue).await?;
        if let Some(id) = &fresh.lease_id {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            if !leases.contains(id) {
                leases.push(id.clone());
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}

fn token() -> Result<Secret, ServeError> {
    let mut bytes = [0u8; 30];
    getrandom::getrandom(&mut bytes).map_err(|e| ServeError::Random(e.to_string()))?;
    Ok(Secret::new(hex::encode(bytes)))
}

/// Starts the endpoint on 127.0.0.1 after a first successful issuance (so a refusal shows at
/// once); it serves until the process ends.
pub async fn start(target: &Target, issue: &IssueArgs, port: u16) -> Result<Endpoint, ServeError> {
    let state = Arc::new(State {
        target: target.clone(),
        issue: issue.clone(),
        token: token()?,
        current: std::sync::Mutex::new(None),
        renewing: Mutex::new(()),
        leases: Arc::default(),
    });
    let first = state.credentials().await?;
    if first.session_token.is_none() {
        return Err(ServeError::NoSessionToken {
            profile: issue.profile.clone(),
            kind: first.credential_type,
        });
    }
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| ServeError::Bind { port, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { port, source })?;
    let endpoint = Endpoint {
        // The literal address every SDK accepts for plain http (some refuse `localhost`).
        uri: format!("http://127.0.0.1:{}{PATH}", addr.port()),
        token: state.token.clone(),
        leases: state.leases.clone(),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Over the limit the connection is dropped (closed) at once: queueing it would make a
            // real client wait behind sockets that may never speak.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, hyper::Error>(answer(&state, &req).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    });
    Ok(endpoint)
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn message(status: u16, text: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"message": text}).to_string())
}

async fn answer(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = state.token.expose().as_bytes();
    if !bool::from(given.ct_eq(expected)) {
        return message(403, "missing or wrong authorization token");
    }
    if req.uri().path() != PATH {
        return message(404, "not found");
    }
    if req.method() != hyper::Method::GET {
        return message(405, "method not allowed");
    }
    match state.credentials().await {
        Ok(c) => {
            let mut body = json!({
                "AccessKeyId": c.access_key_id,
                "SecretAccessKey": c.secret_access_key.expose(),
                "Expiration": c.expiration,
            });
            if let Some(t) = &c.session_token {
                body["Token"] = json!(t.expose());
            }
            reply(200, body.to_string())
        }
        // The message is the API's or the transport's: it never holds a secret.
        Err(e) => message(502, &e.to_string()),
    }
}

/// Prints the two `export`-ready lines, then serves until stopped.
pub async fn run(target: &Target, args: &Args) -> Result<(), ServeError> {
    let endpoint = start(target, &args.issue, args.port).await?;
    let mut out = std::io::stdout().lock();
    // The token is what this command exists to hand out.
    let _ = writeln!(out, "AWS_CONTAINER_CREDENTIALS_FULL_URI={}", endpoint.uri);
    let _ = writeln!(
        out,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN={}",
        endpoint.token.expose()
    );
    let _ = out.flush();
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
