//! The API client: where (`--api`, plain `http` only for loopback), in which region, as whom (the
//! AWS SDK's default credential chain), SigV4-signed for `execute-api` with `aws-sigv4`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use url::Url;

/// Answers larger than this are refused: Lambda's own limit for a response. A page of audit items
/// holds up to 4 MiB of items (and its envelope), so the bound must sit above that.
const MAX_RESPONSE: usize = 6 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no API given: pass --api URL or set KEYSMITH_API")]
    NoApi,
    #[error("--api {0}: not a URL")]
    BadUrl(String),
    #[error("--api {0}: plain http is only allowed for a loopback address; use https")]
    PlainHttp(String),
    #[error("no AWS region: pass --region, or use an *.execute-api.<region>.amazonaws.com URL, or configure one for the AWS SDK")]
    NoRegion,
    #[error(transparent)]
    Nested(#[from] crate::nested::Nested),
    #[error("no AWS credentials to sign the request with: {0}")]
    Credentials(String),
    #[error("signing the request failed: {0}")]
    Signing(String),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    /// An error answer of the API, in SPEC §4's shape.
    #[error("{message} ({code}{})", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
}

/// The options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub api: Option<String>,
    pub region: Option<String>,
}

/// Whether a host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `https` anywhere, `http` only on loopback; anything else is refused.
pub fn check_scheme(url: &Url, shown: &str) -> Result<(), ClientError> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(ClientError::PlainHttp(shown.to_owned())),
        _ => Err(ClientError::BadUrl(shown.to_owned())),
    }
}

/// The region of an `https://<id>.execute-api.<region>.amazonaws.com` host.
pub fn region_from_host(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let rest = host.split_once(".execute-api.")?.1;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
}

pub type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP(S) client (rustls with the system's roots; `http` too, for loopback only).
pub fn http_client() -> Result<Https, ClientError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| ClientError::Transport {
            url: "TLS".into(),
            reason: format!("no usable root certificates: {e}"),
        })?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Sends one request and reads the whole answer (bounded): `(status, body)`.
pub async fn send(
    http: &Https,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), ClientError> {
    send_dated(http, req)
        .await
        .map(|(status, _, body)| (status, body))
}

/// As `send`, with the answer's `Date` header (HTTP's own clock of the server), when it has one.
pub async fn send_dated(
    http: &Https,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), ClientError> {
    let url = redact_query(&req.uri().to_string());
    let transport = |reason: String| ClientError::Transport {
        url: url.clone(),
        reason,
    };
    let answer = tokio::time::timeout(TIMEOUT, async {
        let r = http
            .request(req)
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = r.status().as_u16();
        let date = r
            .headers()
            .get(hyper::header::DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(r.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, ClientError>((status, date, body))
    })
    .await;
    answer.map_err(|_| transport(format!("no answer within {} s", TIMEOUT.as_secs())))?
}

/// A URL for messages: the query (which may carry a session) is left out.
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

/// An error and its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The API, with the caller's AWS credentials resolved (locally, when they come from the
/// environment or a static profile: no network call is made until `call`).
pub struct Api {
    base: Url,
    region: String,
    credentials: Credentials,
    /// The SDK's configuration the credentials came from, for the other AWS calls a command
    /// makes (its credential chain already resolved and cached: nothing runs twice).
    sdk: aws_config::SdkConfig,
    /// Made on first use: loading the system's root certificates is most of a cached call's time.
    http: std::sync::OnceLock<Https>,
}

impl Api {
    pub async fn connect(target: &Target) -> Result<Api, ClientError> {
        let shown = target.api.clone().ok_or(ClientError::NoApi)?;
        let base = Url::parse(&shown).map_err(|_| ClientError::BadUrl(shown.clone()))?;
        check_scheme(&base, &shown)?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        let region = target.region.clone().or_else(|| region_from_host(&base));
        if let Some(r) = &region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let sdk = loader.load().await;
        let region = region
            .or_else(|| sdk.region().map(|r| r.as_ref().to_owned()))
            .ok_or(ClientError::NoRegion)?;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            ClientError::Credentials("the AWS SDK found no credential provider".into())
        })?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            let text = error_chain(&e);
            // The keysmith our SDK ran refused: say so plainly, not inside the SDK's error.
            if crate::nested::is_refusal(&text) {
                ClientError::Nested(crate::nested::Nested {
                    profile: crate::nested::signing_profile(),
                })
            } else {
                ClientError::Credentials(text)
            }
        })?;
        Ok(Api {
            base,
            region,
            credentials,
            sdk,
            http: std::sync::OnceLock::new(),
        })
    }

    /// The API's base URL, normalised (for cache keys).
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The caller's SDK configuration, and the region the API's requests are signed for.
    pub fn sdk(&self) -> (&aws_config::SdkConfig, &str) {
        (&self.sdk, &self.region)
    }

    /// Whether the caller's credentials expire within `seconds` (never, for long-term keys).
    pub fn expires_within(&self, seconds: u64) -> bool {
        self.credentials
            .expiry()
            .is_some_and(|t| t <= SystemTime::now() + Duration::from_secs(seconds))
    }

    /// The access key id the requests are signed with: who is calling, known without a call.
    pub fn caller_key_id(&self) -> &str {
        self.credentials.access_key_id()
    }

    pub fn http(&self) -> Result<&Https, ClientError> {
        if let Some(h) = self.http.get() {
            return Ok(h);
        }
        let made = http_client()?;
        Ok(self.http.get_or_init(|| made))
    }

    /// Calls `method path` (`path` relative to the base, with its query) with an optional JSON
    /// body: the answer's JSON, `Value::Null` for an empty one; an error answer is `Api`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.exchange(method, path, body).await?.result
    }

    /// As `call`, keeping the answer's `Date` header: an answer, error or not, is an `Answer`;
    /// only a request that got no answer at all is an `Err`.
    pub async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base());
        let body = body.map(Value::to_string).unwrap_or_default();
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let content_type = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &content_type };
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into_parts();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("keysmith-cli/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        instructions.apply_to_request_http1x(&mut req);
        let (status, date, bytes) = send_dated(self.http()?, req).await?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let result = if (200..300).contains(&status) {
            Ok(json)
        } else {
            Err(api_error(status, &json))
        };
        Ok(Answer {
            status,
            date,
            result,
        })
    }
}

/// One answer of the API.
pub struct Answer {
    pub status: u16,
    /// The `Date` header, as sent.
    pub date: Option<String>,
    pub result: Result<Value, ClientError>,
}

/// The SPEC §4 error of an answer (API Gateway's own `{"message": …}` answers too).
fn api_error(status: u16, json: &Value) -> ClientError {
    let e = &json["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let code = text(&e["code"]).unwrap_or_else(|| match status {
        401 => "unauthenticated".into(),
        403 => "forbidden".into(),
        404 => "not_found".into(),
        _ => format!("http_{status}"),
    });
    let message = text(&e["message"])
        .or_else(|| text(&json["message"]))
        .unwrap_or_else(|| format!("the API answered HTTP {status}"));
    ClientError::Api {
        status,
        code,
        message,
        field: text(&e["field"]),
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn region_comes_from_an_execute_api_host() {
        let u = url("https://abc123.execute-api.eu-west-1.amazonaws.com/prod");
        assert_eq!(region_from_host(&u).as_deref(), Some("eu-west-1"));
        assert_eq!(region_from_host(&url("https://keysmith.example.com")), None);
        assert_eq!(region_from_host(&url("http://127.0.0.1:8080")), None);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(check_scheme(&url(ok), ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.example.com",
            "http://10.0.0.1",
            "ftp://x.example",
        ] {
            assert!(check_scheme(&url(bad), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_errors_read_like_the_spec() {
        let e = api_error(
            400,
            &json!({"error": {"code": "invalid_request", "message": "bad duration", "field": "duration_seconds"}}),
        );
        assert_eq!(
            e.to_string(),
            "bad duration (invalid_request, field duration_seconds)"
        );
        let e = api_error(403, &json!({"message": "Forbidden"}));
        assert_eq!(e.to_string(), "Forbidden (forbidden)");
    }

    #[test]
    fn encodes_values() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
