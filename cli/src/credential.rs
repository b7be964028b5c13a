//! One set of credentials as the API issues them (the fields the client needs), and the shapes
//! the AWS SDKs read. Below the cache and the commands: it imports neither.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::secret::Secret;

/// One set of credentials as the API issues them (the fields the client needs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    pub expiration: String,
    #[serde(default)]
    pub credential_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

impl Issued {
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expiration)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// More than `window` seconds remain at `now`.
    pub fn fresh_at(&self, now: DateTime<Utc>, window: u64) -> bool {
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        self.expires_at()
            .is_some_and(|t| (t - now).num_seconds() > window)
    }

    /// The `credential_process` answer (AWS CLI and SDKs).
    pub fn credential_process(&self) -> Value {
        let mut v = json!({
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key.expose(),
            "Expiration": self.expiration,
        });
        if let Some(t) = &self.session_token {
            v["SessionToken"] = json!(t.expose());
        }
        v
    }
}
