//! The JSON of a rotated secret (SPEC §6). Only `user_name` is required before the first
//! rotation; every field Keysmith does not own is kept as it is.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::names::{aws_id, RoleArn};
use crate::secret::{AccessKeyPair, Secret};
use crate::time::format_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create the new key, prove it, then delete every other key.
    Replace,
    /// Keep two valid keys: the previous one stays active until the next rotation.
    Graceful,
    /// Delete every key first, then create the new one.
    DeleteFirst,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Graceful => "graceful",
            Self::DeleteFirst => "delete_first",
        }
    }
}

/// The key fields SPEC §5 accepts, the canonical spelling first.
const KEY_SPELLINGS: [(&str, &str); 3] = [
    ("access_key_id", "secret_access_key"),
    ("AccessKeyId", "SecretAccessKey"),
    ("aws_access_key_id", "aws_secret_access_key"),
];

/// A rotated secret's value. `Debug` shows no secret.
#[derive(Clone)]
pub struct RotatedSecret {
    pub user_name: String,
    pub key: Option<AccessKeyPair>,
    pub mode: Mode,
    pub admin_secret_id: Option<String>,
    pub assume_role_arn: Option<RoleArn>,
    raw: Map<String, Value>,
}

impl fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("user_name", &self.user_name)
            .field(
                "access_key_id",
                &self.key.as_ref().map(|k| &k.access_key_id),
            )
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl RotatedSecret {
    /// Parses a secret string. Errors describe the problem, never the content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: Map<String, Value> =
            serde_json::from_str(text).map_err(|_| "the secret is not a JSON object".to_owned())?;
        let text_field = |name: &str| -> Result<Option<String>, String> {
            match raw.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{name} must be a string")),
            }
        };
        let user_name = text_field("user_name")?.ok_or("the secret has no user_name")?;
        aws_id("user_name", &user_name, 1, 64, "+=,.@-").map_err(|e| e.to_string())?;
        let mode = match text_field("mode")?.as_deref() {
            None | Some("replace") => Mode::Replace,
            Some("graceful") => Mode::Graceful,
            Some("delete_first") => Mode::DeleteFirst,
            Some(_) => return Err("mode must be replace, graceful or delete_first".into()),
        };
        // SPEC §5's spellings, canonical first; `with_new_key` writes only the canonical one.
        let mut id = None;
        let mut secret = None;
        for (i, s) in KEY_SPELLINGS {
            id = id.or(text_field(i)?);
            secret = secret.or(text_field(s)?);
        }
        let key = match (id, secret) {
            (Some(id), Some(secret)) => Some(AccessKeyPair {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: None,
            }),
            (None, None) => None,
            _ => return Err("access_key_id and secret_access_key must be set together".into()),
        };
        let assume_role_arn = text_field("assume_role_arn")?
            .map(|a| RoleArn::parse("assume_role_arn", &a))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            user_name,
            key,
            mode,
            admin_secret_id: text_field("admin_secret_id")?,
            assume_role_arn,
            raw,
        })
    }

    /// The next version: the new key, when it was made, which keys this rotation removes, and
    /// every other field unchanged.
    pub fn with_new_key(
        &self,
        key: &AccessKeyPair,
        removed: &[String],
        now: DateTime<Utc>,
    ) -> String {
        let mut raw = self.raw.clone();
        for (i, s) in KEY_SPELLINGS {
            raw.remove(i);
            raw.remove(s);
        }
        raw.insert("access_key_id".into(), json!(key.access_key_id));
        raw.insert(
            "secret_access_key".into(),
            json!(key.secret_access_key.expose()),
        );
        raw.insert("created_at".into(), json!(format_time(now)));
        raw.insert("removed_access_key_ids".into(), json!(removed));
        raw.insert("mode".into(), json!(self.mode.as_str()));
        Value::Object(raw).to_string()
    }

    /// The keys this version's rotation removes (`removed_access_key_ids`).
    pub fn removed(&self) -> Vec<String> {
        self.raw
            .get("removed_access_key_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.access_key_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_and_keeps_other_fields() {
        let s = RotatedSecret::parse(r#"{"user_name": "ci", "team": "payments"}"#).unwrap();
        assert_eq!(s.mode, Mode::Replace);
        assert!(s.key.is_none());
        let key = AccessKeyPair {
            access_key_id: "AKIANEW".into(),
            secret_access_key: Secret::new("s3cr3t-value"),
            session_token: None,
        };
        let next: Value =
            serde_json::from_str(&s.with_new_key(&key, &["AKIAOLD".into()], Utc::now())).unwrap();
        assert_eq!(next["team"], "payments");
        assert_eq!(next["access_key_id"], "AKIANEW");
        assert_eq!(next["removed_access_key_ids"], json!(["AKIAOLD"]));
        assert_eq!(next["mode"], "replace");
        let again = RotatedSecret::parse(&next.to_string()).unwrap();
        assert!(!format!("{again:?}").contains("s3cr3t"));
    }

    #[test]
    fn reads_every_spelling_and_writes_the_canonical_one() {
        for (i, s) in KEY_SPELLINGS {
            let text = json!({"user_name": "ci", i: "AKIAOLD", s: "old-secret"}).to_string();
            let v = RotatedSecret::parse(&text).unwrap();
            assert_eq!(v.key_id(), Some("AKIAOLD"), "{i}");
            let key = AccessKeyPair {
                access_key_id: "AKIANEW".into(),
                secret_access_key: Secret::new("new-secret"),
                session_token: None,
            };
            let next: Value = serde_json::from_str(&v.with_new_key(&key, &[], Utc::now())).unwrap();
            let fields: Vec<&String> = next.as_object().unwrap().keys().collect();
            assert!(
                !fields.iter().any(|f| [
                    "AccessKeyId",
                    "SecretAccessKey",
                    "aws_access_key_id",
                    "aws_secret_access_key"
                ]
                .contains(&f.as_str())),
                "{fields:?}"
            );
            assert_eq!(next["access_key_id"], "AKIANEW");
        }
    }

    #[test]
    fn refuses_bad_secrets_without_echoing_them() {
        for bad in [
            "not json s3cr3t",
            r#"{"mode": "replace"}"#,
            r#"{"user_name": "a b"}"#,
            r#"{"user_name": "u", "mode": "sometimes"}"#,
            r#"{"user_name": "u", "access_key_id": "AKIA"}"#,
            r#"{"user_name": "u", "assume_role_arn": "s3cr3t"}"#,
        ] {
            let err = RotatedSecret::parse(bad).unwrap_err();
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }
}
