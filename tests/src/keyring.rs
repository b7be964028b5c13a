//! The keys the local gateway can check signatures with. API Gateway asks IAM; a local gateway
//! cannot (IAM never hands a secret out twice), so it keeps its own record: keys registered by
//! whoever created them (the test harness, the dev stack's seed), and every key pair an IAM or
//! STS answer hands out through the dev stack's AWS endpoint (`front.rs`). Nothing is read from
//! moto's internals: a request that upsets moto's state dump cannot lock callers out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// A key pair as it was handed out.
#[derive(Clone)]
pub struct Known {
    pub secret: String,
    /// STS credentials only.
    pub token: Option<String>,
    pub expires: Option<SystemTime>,
}

#[derive(Default)]
pub struct KeyRing {
    keys: Mutex<HashMap<String, Known>>,
}

/// Query-protocol (XML) actions whose answer carries a new key pair.
const MINTING: [&str; 6] = [
    "CreateAccessKey",
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
    "AssumeRoleWithSAML",
    "GetSessionToken",
    "GetFederationToken",
];

/// The text of the first `<name>…</name>` element (the answers are flat enough for this).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl KeyRing {
    pub fn add(
        &self,
        key_id: &str,
        secret: &str,
        token: Option<&str>,
        expires: Option<SystemTime>,
    ) {
        let known = Known {
            secret: secret.to_owned(),
            token: token.map(str::to_owned),
            expires,
        };
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(key_id.to_owned(), known);
        }
    }

    pub fn get(&self, key_id: &str) -> Option<Known> {
        self.keys.lock().ok()?.get(key_id).cloned()
    }

    /// Records the key pair in a successful answer to `action` (IAM's or STS's XML); returns
    /// whether there was one.
    pub fn record_answer(&self, action: &str, xml: &str) -> bool {
        if !MINTING.contains(&action) {
            return false;
        }
        let (Some(id), Some(secret)) =
            (element(xml, "AccessKeyId"), element(xml, "SecretAccessKey"))
        else {
            return false;
        };
        let token = element(xml, "SessionToken").map(unescape);
        let expires = element(xml, "Expiration")
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .map(SystemTime::from);
        self.add(&unescape(id), &unescape(secret), token.as_deref(), expires);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_key_pairs_iam_and_sts_hand_out() {
        let ring = KeyRing::default();
        let iam = "<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey><UserName>u</UserName>\
            <AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status><SecretAccessKey>s/1+x</SecretAccessKey>\
            </AccessKey></CreateAccessKeyResult></CreateAccessKeyResponse>";
        assert!(ring.record_answer("CreateAccessKey", iam));
        let k = ring.get("AKIA1").unwrap();
        assert_eq!((k.secret.as_str(), k.token.is_none()), ("s/1+x", true));
        let sts = "<AssumeRoleResult><Credentials><SessionToken>t&amp;t</SessionToken>\
            <SecretAccessKey>s2</SecretAccessKey><Expiration>2026-11-21T15:04:05Z</Expiration>\
            <AccessKeyId>ASIA2</AccessKeyId></Credentials></AssumeRoleResult>";
        assert!(ring.record_answer("AssumeRole", sts));
        let k = ring.get("ASIA2").unwrap();
        assert_eq!(k.token.as_deref(), Some("t&t"));
        assert!(k.expires.is_some());
        assert!(!ring.record_answer("ListUsers", iam));
    }
}
