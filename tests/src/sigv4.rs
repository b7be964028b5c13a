//! The local gateway's IAM authorizer, as API Gateway's: a request must carry a SigV4 signature
//! for `execute-api` made with keys the emulator knows; the signature is recomputed with
//! `aws-sigv4` from the key's secret (read from moto's state, `/moto-api/data.json`), and the
//! caller is whoever moto's `sts:GetCallerIdentity` says those credentials belong to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::Value;

use crate::moto::REGION;

/// How far a request's `X-Amz-Date` may be from now (AWS allows 5 minutes).
const SKEW: Duration = Duration::from_secs(300);

/// Who signed a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub access_key_id: String,
    pub arn: String,
}

/// A key as moto knows it.
#[derive(Clone)]
struct Key {
    secret: String,
    token: Option<String>,
}

pub struct Authorizer {
    moto: String,
    callers: Mutex<HashMap<String, String>>,
}

struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(header: &str) -> Option<Authorization<'_>> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        let (k, v) = part.split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let (key_id, date, region, service, term) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    (term == "aws4_request" && scope.next().is_none()).then_some(())?;
    Some(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn amz_date(value: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(t.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

impl Authorizer {
    pub fn new(moto: &str) -> Authorizer {
        Authorizer {
            moto: moto.to_owned(),
            callers: Mutex::default(),
        }
    }

    /// The key's secret (and session token, for STS credentials) from moto's state.
    async fn key(&self, key_id: &str) -> Option<Key> {
        let (status, body) = crate::proxy::get(&format!("{}/moto-api/data.json", self.moto)).await;
        if status != 200 {
            return None;
        }
        let data: Value = serde_json::from_str(&body).ok()?;
        let find = |list: &Value| {
            list.as_array()?
                .iter()
                .find(|k| k["access_key_id"] == key_id)
                .cloned()
        };
        if let Some(k) = find(&data["sts"]["AssumedRole"]) {
            return Some(Key {
                secret: k["secret_access_key"].as_str()?.to_owned(),
                token: k["session_token"].as_str().map(str::to_owned),
            });
        }
        let k = find(&data["iam"]["AccessKey"])?;
        (k["status"] == "Active").then_some(())?;
        Some(Key {
            secret: k["secret_access_key"].as_str()?.to_owned(),
            token: None,
        })
    }

    /// The caller of a request with this method, URI (origin form), headers and body: `Err`
    /// with API Gateway's message when it is unsigned or wrongly signed.
    pub async fn authorize(
        &self,
        parts: &hyper::http::request::Parts,
        body: &[u8],
    ) -> Result<Caller, &'static str> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let auth = header("authorization").ok_or("Missing Authentication Token")?;
        let auth = parse(auth).ok_or("Authorization header requires a SigV4 signature")?;
        if auth.service != "execute-api" || auth.region != REGION {
            return Err("Credential should be scoped to a valid region and service");
        }
        let date = header("x-amz-date").ok_or("Missing X-Amz-Date")?;
        let time = amz_date(date).ok_or("Invalid X-Amz-Date")?;
        if !date.starts_with(auth.date) {
            return Err("Credential date does not match X-Amz-Date");
        }
        let skew = time
            .duration_since(SystemTime::now())
            .or_else(|_| SystemTime::now().duration_since(time))
            .unwrap_or(Duration::MAX);
        if skew > SKEW {
            return Err("Signature expired");
        }
        for required in ["host", "x-amz-date"] {
            if !auth.signed_headers.contains(&required) {
                return Err("Host and X-Amz-Date must be signed");
            }
        }
        let key = self
            .key(auth.key_id)
            .await
            .ok_or("The security token included in the request is invalid")?;
        let token = header("x-amz-security-token").map(str::to_owned);
        if key.token.is_some() && token != key.token {
            return Err("The security token included in the request is invalid");
        }
        let host = header("host").ok_or("Missing Host")?;
        let uri = format!("http://{host}{}", parts.uri);
        let headers: Vec<(&str, &str)> = auth
            .signed_headers
            .iter()
            .filter(|h| !["host", "x-amz-date", "x-amz-security-token"].contains(h))
            .map(|h| Ok((*h, header(h).ok_or("A signed header is missing")?)))
            .collect::<Result<_, &'static str>>()?;
        let identity =
            Credentials::new(auth.key_id, &key.secret, token.clone(), None, "gateway").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(auth.region)
            .name(auth.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|_| "Invalid signing parameters")?
            .into();
        let signable = SignableRequest::new(
            parts.method.as_str(),
            &uri,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|_| "Invalid request")?;
        let (_, expected) = sign(signable, &params)
            .map_err(|_| "Invalid request")?
            .into_parts();
        if expected != auth.signature {
            return Err(
                "The request signature we calculated does not match the signature you provided",
            );
        }
        let arn = self.caller_arn(auth.key_id, &key.secret, token).await?;
        Ok(Caller {
            access_key_id: auth.key_id.to_owned(),
            arn,
        })
    }

    async fn caller_arn(
        &self,
        key_id: &str,
        secret: &str,
        token: Option<String>,
    ) -> Result<String, &'static str> {
        if let Some(arn) = self
            .callers
            .lock()
            .ok()
            .and_then(|c| c.get(key_id).cloned())
        {
            return Ok(arn);
        }
        let creds = Credentials::new(key_id, secret, token, None, "gateway");
        let sdk = crate::moto::Moto::sdk_config_at(&self.moto, creds).await;
        let arn = aws_sdk_sts::Client::new(&sdk)
            .get_caller_identity()
            .send()
            .await
            .ok()
            .and_then(|o| o.arn)
            .ok_or("The security token included in the request is invalid")?;
        if let Ok(mut c) = self.callers.lock() {
            c.insert(key_id.to_owned(), arn.clone());
        }
        Ok(arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_authorization_header() {
        let a = parse("AWS4-HMAC-SHA256 Credential=AKIA1/20261121/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc").unwrap();
        assert_eq!(
            (a.key_id, a.region, a.service),
            ("AKIA1", "us-east-1", "execute-api")
        );
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert!(parse("Bearer x").is_none());
        assert!(parse("AWS4-HMAC-SHA256 Credential=AKIA1/x, Signature=abc").is_none());
    }
}
