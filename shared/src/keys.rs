//! "Which key is this?" (SPEC §15): given an access key id from a log, a finding or a leak
//! report, the Keysmith object that owns it (a lease, or the rotation that created it), its audit
//! items (the audit table's `by_access_key` index), and IAM's view of it.

use serde_json::{json, Value};

use crate::audit::{AuditError, AuditLog, AuditRecord, Category, Origin, Outcome};
use crate::aws::{classify, AwsFailure, Lazy};
use crate::lease::{LeaseError, Leases};
use crate::names::Invalid;

pub const EVENT_KEY_LOOKED_UP: &str = "Access Key Looked Up";
/// The newest audit items a report shows.
const ITEMS: usize = 50;

/// An IAM (`AKIA…`) or STS (`ASIA…`) access key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let ok = s.len() >= 16
            && s.len() <= 128
            && (s.starts_with("AKIA") || s.starts_with("ASIA"))
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(Invalid::new(
                field,
                "must be an access key id (AKIA… or ASIA…, letters and digits)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_sts(&self) -> bool {
        self.0.starts_with("ASIA")
    }
}

/// The lease a key's audit items name. Leases are UUIDs; a rotation's items use the field for
/// their step marker.
pub fn lease_of(items: &[Value]) -> Option<&str> {
    items.iter().find_map(|i| {
        i.get("lease_id")
            .and_then(Value::as_str)
            .filter(|l| uuid::Uuid::parse_str(l).is_ok())
    })
}

/// The `Access Key Rotated` item of the rotation that created the key (items newest first: the
/// oldest such item). Its `profile` is the rotation policy.
pub fn creating_rotation(items: &[Value]) -> Option<&Value> {
    items
        .iter()
        .rev()
        .find(|i| i["event"] == crate::rotation::EVENT_ROTATED)
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("Keysmith never issued or rotated access key {0}")]
    NotFound(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// The services a lookup reads.
pub struct KeyLookup<'a> {
    pub audit: &'a AuditLog,
    pub leases: &'a Leases,
    pub iam: &'a Lazy<aws_sdk_iam::Client>,
}

impl KeyLookup<'_> {
    /// The report as the API returns it; the lookup itself is audited first.
    pub async fn find(&self, id: &AccessKeyId, origin: &Origin) -> Result<Value, KeyError> {
        let items = self.audit.by_access_key(id.as_str(), ITEMS).await?;
        let mut r = AuditRecord::new(
            origin,
            Category::Config,
            EVENT_KEY_LOOKED_UP,
            Outcome::Success,
            format!(
                "{} looked up access key {}: {} audit item(s).",
                origin.principal,
                id.as_str(),
                items.len()
            ),
        );
        r.access_key_id = Some(id.as_str().to_owned());
        if items.is_empty() {
            r.outcome = Outcome::Denied;
            r.message = format!(
                "{} looked up access key {}, which Keysmith never issued or rotated.",
                origin.principal,
                id.as_str()
            );
            self.audit.write(&r).await?;
            return Err(KeyError::NotFound(id.as_str().to_owned()));
        }
        self.audit.write(&r).await?;
        // The items of this key only; the lookup's own item is newer than the page.
        let owner = match lease_of(&items) {
            Some(l) => {
                let lease = self.leases.get(l).await?;
                json!({"type": "lease", "lease": lease.to_json()})
            }
            None => {
                let created = creating_rotation(&items);
                json!({
                    "type": "rotation",
                    "policy": created.and_then(|i| i.get("profile")).cloned(),
                    "created_at": created.map(|i| i["time"].clone()),
                    "created_by": created.map(|i| i["message"].clone()),
                })
            }
        };
        let iam = if id.is_sts() {
            Value::Null
        } else {
            self.iam_view(id)
                .await
                .unwrap_or_else(|f| json!({"error": format!("IAM could not be read: {f}")}))
        };
        Ok(json!({
            "access_key_id": id.as_str(),
            "owner": owner,
            "iam": iam,
            "audit": items,
        }))
    }

    /// Status, creation and last use, as IAM sees the key now.
    async fn iam_view(&self, id: &AccessKeyId) -> Result<Value, AwsFailure> {
        let used = self
            .iam
            .get_access_key_last_used()
            .access_key_id(id.as_str())
            .send()
            .await
            .map_err(classify)?;
        let user = used.user_name.unwrap_or_default();
        let last = used.access_key_last_used;
        let keys = self
            .iam
            .list_access_keys()
            .user_name(&user)
            .send()
            .await
            .map_err(classify)?
            .access_key_metadata;
        let this = keys
            .iter()
            .find(|k| k.access_key_id.as_deref() == Some(id.as_str()));
        Ok(json!({
            "user_name": user,
            "status": this.and_then(|k| k.status.as_ref()).map(|s| s.as_str().to_owned()),
            "created": this.and_then(|k| k.create_date).map(|d| d.to_string()),
            "last_used": last.as_ref().and_then(|l| l.last_used_date).map(|d| d.to_string()),
            "last_used_service": last.as_ref().map(|l| l.service_name.clone()),
            "last_used_region": last.as_ref().map(|l| l.region.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_iam_or_sts_ids() {
        assert!(AccessKeyId::parse("k", "AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(AccessKeyId::parse("k", "ASIAIOSFODNN7EXAMPLE").is_ok());
        for bad in [
            "",
            "AKIA",
            "akiaiosfodnn7example",
            "AKIA/../x12345678901",
            "XKIAIOSFODNN7EXAMPLE",
        ] {
            assert_eq!(
                AccessKeyId::parse("k", bad).unwrap_err().field,
                "k",
                "{bad}"
            );
        }
    }
}
