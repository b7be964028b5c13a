//! `keysmith ui [--port N]` (SPEC §17): a local page for approvers and admins — pending access
//! requests with approve/deny, live leases with revoke, recent audit items — served on 127.0.0.1
//! with a random token in the URL it prints, like a notebook server. The page talks only to this
//! process, which makes the signed API calls with the caller's AWS credentials (the same client as
//! every other command); what it passes on to the page is a list of known, non-secret fields.

mod routes;

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::client::{Api, ClientError, Target};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("no randomness for the page's token: {0}")]
    Random(String),
}

/// Open a local page to approve requests, revoke leases and read the audit trail.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith ui                # prints http://127.0.0.1:<port>/?token=…: open it in a browser\n  keysmith ui --port 8765"
)]
pub struct Args {
    /// The loopback port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// The page (HTML, CSS and script in one file: nothing is loaded from anywhere else).
const PAGE: &str = include_str!("ui/page.html");

pub struct Ui {
    target: Target,
    token: Secret,
    /// `127.0.0.1:<port>`: any other `Host` is refused (DNS rebinding).
    host: String,
    api: Mutex<Option<Arc<Api>>>,
}

impl Ui {
    /// The API client, made again when its credentials are about to expire (an SSO or
    /// `credential_process` identity renews).
    async fn api(&self) -> Result<Arc<Api>, ClientError> {
        let mut api = self.api.lock().await;
        if let Some(a) = api.as_ref().filter(|a| !a.expires_within(300)) {
            return Ok(a.clone());
        }
        let fresh = Arc::new(Api::connect(&self.target).await?);
        *api = Some(fresh.clone());
        Ok(fresh)
    }
}

fn random_hex(bytes: usize) -> Result<String, UiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| UiError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Starts the page's server; answers the URL to open.
pub async fn start(target: &Target, port: u16) -> Result<String, UiError> {
    // Resolve the caller's identity first, so a missing API or credentials show at once.
    let api = Api::connect(target).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| UiError::Bind { port, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| UiError::Bind { port, source })?
        .port();
    let ui = Arc::new(Ui {
        target: target.clone(),
        token: Secret::new(random_hex(32)?),
        host: format!("127.0.0.1:{port}"),
        api: Mutex::new(Some(Arc::new(api))),
    });
    let url = format!("http://127.0.0.1:{port}/?token={}", ui.token.expose());
    let slots = Arc::new(Semaphore::new(64));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let ui = ui.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let ui = ui.clone();
                    async move { Ok::<_, hyper::Error>(routes::answer(&ui, req).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    });
    Ok(url)
}

/// The page with a fresh nonce for its script and style (the only ones the policy allows).
fn page(nonce: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(PAGE.replace("__NONCE__", nonce))));
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&csp) {
        headers.insert(hyper::header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// Prints the URL to open, then serves until stopped.
pub async fn run(target: &Target, args: &Args) -> Result<(), UiError> {
    let url = start(target, args.port).await?;
    let mut out = std::io::stdout().lock();
    // The token is this page's own, printed for the person who started it (like Jupyter's).
    let _ = writeln!(out, "keysmith ui: open {url}");
    let _ = out.flush();
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
