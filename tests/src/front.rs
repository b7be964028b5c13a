//! The dev stack's AWS endpoint: what `AWS_ENDPOINT_URL` names for the functions and for people.
//! It forwards every request to moto, with two local additions AWS has and moto lacks here:
//! - Lambda's `Invoke` (`POST /2015-03-31/functions/{name}/invocations`) of the stack's own
//!   functions runs them (through the Lambda Runtime API emulator), so rotate-now's asynchronous
//!   invocation of scheduled-rotation and a secret's rotation steps really run;
//! - the key pairs IAM and STS hand out (`CreateAccessKey`, `AssumeRole`, …) are recorded in the
//!   gateway's [`KeyRing`], so whoever holds one can call the API, as on AWS.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::keyring::KeyRing;
use crate::runtime::FunctionProcess;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Lambda functions served locally, by function name.
pub type Functions = HashMap<String, Arc<FunctionProcess>>;

pub struct Front {
    pub endpoint: String,
    shared: Arc<Shared>,
}

struct Shared {
    moto: String,
    keys: Arc<KeyRing>,
    /// Set once the functions run (they need this endpoint first).
    functions: OnceLock<Functions>,
    client: HttpClient,
}

impl Front {
    /// Serves on 127.0.0.1 and a free port, in front of the moto server at `moto`; `Invoke`
    /// reaches moto until [`Front::serve_functions`] names the local functions.
    pub async fn start(moto: &str, keys: Arc<KeyRing>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the AWS endpoint");
        let endpoint = format!(
            "http://{}",
            listener.local_addr().expect("endpoint address")
        );
        let shared = Arc::new(Shared {
            moto: moto.to_owned(),
            keys,
            functions: OnceLock::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let server = shared.clone();
        tokio::spawn(async move {
            let shared = server;
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, hyper::Error>(handle(req, &shared).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Front { endpoint, shared }
    }

    pub fn serve_functions(&self, functions: Functions) {
        let _ = self.shared.functions.set(functions);
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The function an `Invoke` path names (by name or ARN), when it is one of ours.
fn invoked<'a>(path: &str, functions: Option<&'a Functions>) -> Option<&'a Arc<FunctionProcess>> {
    let name = path
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    let name = crate::proxy::percent_decode(name);
    let name = name.rsplit(':').next().unwrap_or(&name);
    functions?.get(name)
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(400, &[], format!("front: {e}")),
    };
    if parts.method == hyper::Method::POST {
        if let Some(function) = invoked(parts.uri.path(), shared.functions.get()) {
            let asynchronous = parts
                .headers
                .get("x-amz-invocation-type")
                .is_some_and(|t| t.as_bytes() == b"Event");
            return invoke(function.clone(), &body, asynchronous).await;
        }
    }
    let action = form_action(&body);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", shared.moto));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return answer(400, &[], "front: a request that cannot be forwarded");
    };
    match shared.client.request(out).await {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if parts.status.is_success() {
                if let Some(action) = action {
                    shared
                        .keys
                        .record_answer(&action, &String::from_utf8_lossy(&body));
                }
            }
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => answer(502, &[], format!("front: moto did not answer: {e}")),
    }
}

/// The `Action` of a query-protocol (form) body: IAM's and STS's.
fn form_action(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "Action").then(|| crate::proxy::percent_decode(v))
    })
}

/// Lambda's `Invoke`: `Event` answers `202` at once and runs the function in the background;
/// `RequestResponse` answers `200` with the function's result, or its error with
/// `X-Amz-Function-Error: Unhandled`, as Lambda does.
async fn invoke(
    function: Arc<FunctionProcess>,
    payload: &[u8],
    asynchronous: bool,
) -> Response<Full<Bytes>> {
    let event: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => {
            return answer(
                400,
                &[("x-amzn-errortype", "InvalidRequestContentException")],
                r#"{"Type":"User","message":"Could not parse request body into json"}"#,
            )
        }
    };
    if asynchronous {
        tokio::spawn(async move {
            let _ = function.invoke(&event).await;
        });
        return answer(202, &[], Bytes::new());
    }
    match function.invoke(&event).await {
        Ok(result) => answer(
            200,
            &[("content-type", "application/json")],
            result.to_string(),
        ),
        Err(error) => answer(
            200,
            &[
                ("content-type", "application/json"),
                ("x-amz-function-error", "Unhandled"),
            ],
            error,
        ),
    }
}
