//! The local gateway's IAM authorizer, as API Gateway's: a request must carry a SigV4 signature
//! for `execute-api` made with a key the gateway knows (its [`KeyRing`]: keys registered by their
//! creator or seen handed out by IAM or STS); the signature is recomputed with `aws-sigv4` from
//! the key's secret. An IAM user's key must still exist and be active (asked of IAM through its
//! own API); STS credentials must not have expired. The caller is whoever moto's
//! `sts:GetCallerIdentity` says those credentials belong to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_sts::config::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use crate::keyring::{KeyRing, Known};
use crate::moto::REGION;

const INVALID: &str = "The security token included in the request is invalid";

/// How far a request's `X-Amz-Date` may be from now (AWS allows 5 minutes).
const SKEW: Duration = Duration::from_secs(300);

/// Who signed a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub access_key_id: String,
    pub arn: String,
}

pub struct Authorizer {
    moto: String,
    keys: Arc<KeyRing>,
    /// The gateway's own SDK configuration for its IAM and STS questions, built on first use.
    sdk: tokio::sync::OnceCell<SdkConfig>,
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
    /// Checks signatures with the keys in `keys`, and asks the moto server at `moto` (IAM's and
    /// STS's own API) whether a key still works and whose it is.
    pub fn new(moto: &str, keys: Arc<KeyRing>) -> Authorizer {
        Authorizer {
            moto: moto.to_owned(),
            keys,
            sdk: tokio::sync::OnceCell::new(),
            callers: Mutex::default(),
        }
    }

    async fn sdk(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| {
                let creds = Credentials::new("test", "test", None, None, "gateway");
                crate::moto::Moto::sdk_config_at(&self.moto, creds)
            })
            .await
    }

    /// The key, if it can sign now: an IAM user's key that IAM lists as `Active` (a deleted or
    /// deactivated key is refused, as API Gateway would), or STS credentials before their expiry.
    async fn usable(&self, key_id: &str) -> Result<Known, &'static str> {
        let key = self.keys.get(key_id).ok_or(INVALID)?;
        if key.token.is_some() {
            return match key.expires {
                Some(at) if at < SystemTime::now() => {
                    Err("The security token included in the request is expired")
                }
                _ => Ok(key),
            };
        }
        let iam = aws_sdk_iam::Client::new(self.sdk().await);
        let user = iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
            .ok()
            .and_then(|o| o.user_name)
            .ok_or(INVALID)?;
        let listed = iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|_| INVALID)?;
        let active = listed.access_key_metadata().iter().any(|k| {
            k.access_key_id() == Some(key_id)
                && k.status() == Some(&aws_sdk_iam::types::StatusType::Active)
        });
        active.then_some(key).ok_or(INVALID)
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
        let key = self.usable(auth.key_id).await?;
        let token = header("x-amz-security-token").map(str::to_owned);
        if key.token.is_some() && token != key.token {
            return Err(INVALID);
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
            .ok_or(INVALID)?;
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
