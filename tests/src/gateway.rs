//! A local HTTP gateway, like API Gateway's HTTP API in front of the function: each HTTP request on
//! 127.0.0.1 becomes an HTTP API payload v2 event and is invoked through the Lambda Runtime API.
//! The caller is either the one this gateway was configured with (`Gateway::start`, never taken
//! from the request), or, as API Gateway's IAM authorizer does it, whoever signed the request with
//! SigV4 with a key its authorizer knows (`Gateway::start_sigv4`; unsigned or wrongly signed: `403`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::runtime::FunctionProcess;
use crate::sigv4::Authorizer;

/// API Gateway's own payload limit is 10 MB; the function refuses more than 64 KiB itself.
const MAX_BODY: usize = 1024 * 1024;

pub struct Gateway {
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
}

/// Who the caller of a request is.
enum Identity {
    /// Always this IAM ARN (`None`: no identity).
    Fixed(Option<String>),
    /// Whoever signed the request (SigV4 with a key the authorizer knows).
    Signed(Box<Authorizer>),
}

impl Gateway {
    /// Serves on 127.0.0.1:`port` (0: a free port) as `principal` (an IAM ARN; `None`: no identity).
    pub async fn start(
        function: Arc<FunctionProcess>,
        principal: Option<String>,
        port: u16,
    ) -> Gateway {
        Self::serve(function, Identity::Fixed(principal), port).await
    }

    /// Serves on 127.0.0.1:`port` with an IAM authorizer: each request must be SigV4-signed for
    /// `execute-api` with a key `authorizer` knows, and the caller is its owner.
    pub async fn start_sigv4(
        function: Arc<FunctionProcess>,
        authorizer: Authorizer,
        port: u16,
    ) -> Gateway {
        Self::serve(function, Identity::Signed(Box::new(authorizer)), port).await
    }

    /// How many requests reached the gateway so far (whatever their outcome).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn serve(function: Arc<FunctionProcess>, identity: Identity, port: u16) -> Gateway {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the gateway");
        let endpoint = format!("http://{}", listener.local_addr().expect("gateway address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counter, identity) = (requests.clone(), Arc::new(identity));
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (function, identity, counter) =
                    (function.clone(), identity.clone(), counter.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (function, identity) = (function.clone(), identity.clone());
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            Ok::<_, hyper::Error>(forward(req, peer, &function, &identity).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Gateway { endpoint, requests }
    }
}

fn reply(status: u16, body: String, headers: &Map<String, Value>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        if let Some(v) = v.as_str() {
            r = r.header(k, v);
        }
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

async fn forward(
    req: Request<Incoming>,
    peer: SocketAddr,
    function: &FunctionProcess,
    identity: &Identity,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                413,
                r#"{"message":"Request Entity Too Large"}"#.into(),
                &Map::new(),
            )
        }
    };
    let caller = match identity {
        Identity::Fixed(arn) => arn.clone().map(|arn| ("ASIALOCALGATEWAY".to_owned(), arn)),
        Identity::Signed(authorizer) => match authorizer.authorize(&parts, &body).await {
            Ok(c) => Some((c.access_key_id, c.arn)),
            Err(message) => {
                return reply(403, json!({ "message": message }).to_string(), &Map::new())
            }
        },
    };
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    // API Gateway decodes parameters and joins repeated ones with commas.
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (
            crate::proxy::percent_decode(k),
            crate::proxy::percent_decode(v),
        );
        query
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
        .collect();
    let user_agent = headers.get("user-agent").cloned().unwrap_or(json!(""));
    let (body, base64) = match std::str::from_utf8(&body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (aws_smithy_types::base64::encode(&body), true),
    };
    let mut ctx = json!({
        "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
        "http": {"method": parts.method.as_str(), "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": peer.ip().to_string(), "userAgent": user_agent},
        "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
        "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        "timeEpoch": chrono::Utc::now().timestamp_millis(),
    });
    if let Some((access_key, arn)) = caller {
        ctx["authorizer"] = json!({"iam": {"accessKey": access_key, "accountId": "123456789012",
            "callerId": "local", "userArn": arn, "userId": "local"}});
    }
    let mut event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": raw_query,
        "headers": headers, "requestContext": ctx, "isBase64Encoded": base64,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    match function.invoke(&event).await {
        Ok(r) => {
            let status = r["statusCode"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(502);
            let headers = r["headers"].as_object().cloned().unwrap_or_default();
            reply(
                status,
                r["body"].as_str().unwrap_or_default().to_owned(),
                &headers,
            )
        }
        // What API Gateway answers when the integration fails.
        Err(_) => reply(
            500,
            r#"{"message":"Internal Server Error"}"#.into(),
            &Map::new(),
        ),
    }
}
