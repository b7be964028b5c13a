//! A recording HTTP proxy: stands in as a profile's `sts_endpoint`, keeps every request it sees
//! (so tests can check how Keysmith signed and parameterised it) and forwards it to moto.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The access key id a SigV4 `Authorization` header was signed with.
    pub fn signing_key_id(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let credential = auth.split("Credential=").nth(1)?;
        credential.split('/').next()
    }

    /// A form parameter of an AWS Query protocol body (STS), URL-decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Pass,
    /// Answer the service's throttling error without forwarding.
    Throttle,
    /// Answer HTTP 500 without forwarding.
    ServerError,
    /// Answer HTTP 403 AccessDenied without forwarding.
    Denied,
    /// Wait this long, then forward (longer than the SDK's attempt timeout: a timeout).
    Delay(std::time::Duration),
    /// Forward (the call takes effect), then answer HTTP 500: the response is lost.
    LoseResponse,
    /// Answer this status and body without forwarding (an AWS behaviour moto lacks).
    Answer(u16, String),
    /// Forward, then rewrite the response body (what IAM or STS might answer instead).
    Rewrite(Rewriter),
}

/// A response body rewrite, for `Fault::Rewrite`.
#[derive(Clone)]
pub struct Rewriter(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rewriter")
    }
}

impl PartialEq for Rewriter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Decides a fault per request, from the request and how many requests the proxy has seen.
pub type FaultRule = Arc<dyn Fn(&Captured) -> Fault + Send + Sync>;

pub struct CaptureProxy {
    pub endpoint: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    rule: Arc<Mutex<Option<FaultRule>>>,
}

impl Captured {
    /// The AWS operation: `X-Amz-Target`'s action (JSON protocols) or the form's `Action` (query).
    pub fn operation(&self) -> String {
        match self.header("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_owned(),
            None => self.form("Action").unwrap_or_default(),
        }
    }
}

impl CaptureProxy {
    /// Starts on 127.0.0.1 and a free port, forwarding to `upstream` (moto).
    pub async fn start(upstream: &str) -> CaptureProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let requests: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let rule: Arc<Mutex<Option<FaultRule>>> = Arc::default();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let (store, faults, upstream) = (requests.clone(), rule.clone(), upstream.to_owned());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (store, faults, client, upstream) = (
                    store.clone(),
                    faults.clone(),
                    client.clone(),
                    upstream.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (store, faults, client, upstream) = (
                            store.clone(),
                            faults.clone(),
                            client.clone(),
                            upstream.clone(),
                        );
                        async move { forward(req, &store, &faults, &client, &upstream).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        CaptureProxy {
            endpoint,
            requests,
            rule,
        }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    /// Injects faults from now on (`None`: pass everything).
    pub fn set_faults(&self, rule: Option<FaultRule>) {
        *self.rule.lock().unwrap() = rule;
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The service's own error shape: JSON (`X-Amz-Target` protocols) or query XML.
fn error_response(request: &Captured, status: u16, code: &str) -> Response<Full<Bytes>> {
    let (content_type, body) = if request.header("x-amz-target").is_some() {
        let ct = request
            .header("content-type")
            .unwrap_or("application/x-amz-json-1.0")
            .to_owned();
        (
            ct,
            format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#),
        )
    } else {
        ("text/xml".to_owned(), format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the fault proxy</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        ))
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn forward(
    req: Request<Incoming>,
    store: &Mutex<Vec<Captured>>,
    faults: &Mutex<Option<FaultRule>>,
    client: &HttpClient,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let captured = Captured {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    store.lock().unwrap().push(captured.clone());
    let rule = faults.lock().unwrap().clone();
    let fault = rule.map_or(Fault::Pass, |r| r(&captured));
    // JSON protocols (DynamoDB, Secrets Manager) name it ThrottlingException; query ones Throttling.
    let throttle_code = if captured.header("x-amz-target").is_some() {
        "ThrottlingException"
    } else {
        "Throttling"
    };
    match &fault {
        Fault::Throttle => return Ok(error_response(&captured, 400, throttle_code)),
        Fault::ServerError => return Ok(error_response(&captured, 500, "InternalFailure")),
        Fault::Denied => return Ok(error_response(&captured, 403, "AccessDenied")),
        Fault::Delay(d) => tokio::time::sleep(*d).await,
        Fault::Answer(status, body) => {
            let content_type = if captured.header("x-amz-target").is_some() {
                "application/x-amz-json-1.0"
            } else {
                "text/xml"
            };
            return Ok(Response::builder()
                .status(*status)
                .header("content-type", content_type)
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap());
        }
        Fault::Pass | Fault::LoseResponse | Fault::Rewrite(_) => {}
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let response = client.request(out.body(Full::new(body)).unwrap()).await;
    if fault == Fault::LoseResponse {
        return Ok(error_response(&captured, 500, "InternalFailure"));
    }
    Ok(match response {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let mut body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut parts = parts;
            if let Fault::Rewrite(rewrite) = &fault {
                body = Bytes::from((rewrite.0)(&String::from_utf8_lossy(&body)));
                parts.headers.remove("content-length");
            }
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(format!("proxy: {e}"))))
            .unwrap(),
    })
}

/// A bare POST (for moto's control API); returns the status code.
pub async fn post(url: &str, content_type: &str, body: &str) -> u16 {
    post_with(url, &[("content-type", content_type)], body)
        .await
        .0
}

/// A POST with headers; returns status and body.
pub async fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    request("POST", url, headers, body).await
}

/// A bare GET; returns status and body.
pub async fn get(url: &str) -> (u16, String) {
    request("GET", url, &[], "").await
}

/// Any request; returns status and body (status 0: no answer).
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    match client.request(req).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => (0, String::new()),
    }
}
