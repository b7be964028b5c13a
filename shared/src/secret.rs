//! Secret material (secret access keys, session tokens) in a type that cannot leak by accident:
//! `Debug` and `Display` redact, there is no `Serialize`, and the only way to the plaintext is
//! [`Secret::expose`], which is greppable.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext. Call it only where the secret is handed to its rightful owner: the SDK's
    /// credentials provider, or the one response body that issues credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A long-term or temporary AWS key pair.
#[derive(Clone, Debug)]
pub struct AccessKeyPair {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl AccessKeyPair {
    /// Reads a key pair out of a Secrets Manager secret string. Accepts the three spellings in use:
    /// `access_key_id`, `AccessKeyId` and `aws_access_key_id` (and their secret twins). The error
    /// never repeats the secret's content.
    pub fn from_secret_json(secret_string: &str) -> Result<Self, &'static str> {
        let value: serde_json::Value =
            serde_json::from_str(secret_string).map_err(|_| "the secret is not a JSON object")?;
        let pick = |names: [&str; 3]| {
            names
                .iter()
                .find_map(|n| value.get(*n).and_then(|v| v.as_str()))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let access_key_id = pick(["access_key_id", "AccessKeyId", "aws_access_key_id"])
            .ok_or("the secret has no access_key_id")?;
        let secret_access_key = pick([
            "secret_access_key",
            "SecretAccessKey",
            "aws_secret_access_key",
        ])
        .ok_or("the secret has no secret_access_key")?;
        Ok(Self {
            access_key_id,
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        })
    }

    pub(crate) fn provider(&self) -> aws_sdk_sts::config::Credentials {
        aws_sdk_sts::config::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_owned(),
            self.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "keysmith-secret",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("wJalr"));
        let pair = AccessKeyPair {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: s,
            session_token: Some(Secret::new("FwoGZXIvYXdzEXAMPLETOKEN")),
        };
        let debug = format!("{pair:?}");
        assert!(debug.contains("AKIAEXAMPLE"));
        assert!(
            !debug.contains("wJalr") && !debug.contains("FwoGZX"),
            "{debug}"
        );
    }

    #[test]
    fn reads_all_three_spellings() {
        for (id, secret) in [
            ("access_key_id", "secret_access_key"),
            ("AccessKeyId", "SecretAccessKey"),
            ("aws_access_key_id", "aws_secret_access_key"),
        ] {
            let json = format!(r#"{{"{id}": "AKIA1", "{secret}": "s3cr3t", "user_name": "u"}}"#);
            let pair = AccessKeyPair::from_secret_json(&json).unwrap();
            assert_eq!(pair.access_key_id, "AKIA1");
            assert_eq!(pair.secret_access_key.expose(), "s3cr3t");
        }
    }

    #[test]
    fn bad_secret_errors_do_not_echo_content() {
        let err = AccessKeyPair::from_secret_json("not json s3cr3t").unwrap_err();
        assert!(!err.contains("s3cr3t"));
        let err = AccessKeyPair::from_secret_json(r#"{"access_key_id": "AKIA1"}"#).unwrap_err();
        assert_eq!(err, "the secret has no secret_access_key");
    }
}
