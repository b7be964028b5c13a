//! Profiles in the state table: `pk = "profile"`, `sk = <name>`, `doc` = the profile's JSON.
//! Every change is written in one transaction with its audit item, so no change goes unaudited and
//! no audit item describes a change that did not happen.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::Profile;
use crate::audit::{AuditLog, AuditRecord, AuditedWriteError};
use crate::aws::{classify, AwsFailure};
use crate::names::ProfileName;

const PK: &str = "profile";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("profile not found")]
    NotFound,
    #[error("the profile was changed concurrently; retry")]
    Conflict,
    #[error("the audit trail could not be written: {0}")]
    Audit(AwsFailure),
    #[error("the state table failed: {0}")]
    Aws(AwsFailure),
    #[error("stored profile {0} is unreadable")]
    Corrupt(String),
    #[error("stored profile {} breaks a rule of this version ({}); an admin must PUT it again", .0.name, .0.reason)]
    Outdated(Box<Outdated>),
}

/// A stored profile that an older version accepted and this one refuses (say, an account
/// wildcard in `allowed_principals`). It is never used — no silent widening, and no silent
/// narrowing either — until an admin saves it again; admins can still read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outdated {
    pub name: ProfileName,
    pub doc: serde_json::Value,
    pub reason: crate::names::Invalid,
}

impl Outdated {
    /// The stored document as admins read it, with what must change.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = self.doc.clone();
        if let Some(m) = doc.as_object_mut() {
            m.insert(
                "invalid".into(),
                serde_json::json!({"field": self.reason.field, "message": self.reason.message}),
            );
        }
        doc
    }
}

/// A profile as listed: usable, or outdated.
pub type Listed = Result<Profile, Outdated>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Replaced,
}

#[derive(Clone, Debug)]
pub struct ProfileStore {
    db: crate::aws::Dynamo,
    table: String,
    audit: AuditLog,
}

fn key(name: &ProfileName) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
        ("sk".to_owned(), AttributeValue::S(name.as_str().to_owned())),
    ])
}

impl ProfileStore {
    pub fn new(
        db: impl Into<crate::aws::Dynamo>,
        table: impl Into<String>,
        audit: AuditLog,
    ) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
            audit,
        }
    }

    pub async fn get(&self, name: &ProfileName) -> Result<Option<Profile>, StoreError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Aws(classify(e)))?;
        out.item.map(|item| decode(name.clone(), &item)).transpose()
    }

    /// Creates or replaces `profile`; `audit` is built once we know which it is, with whether the
    /// profile it replaces was enabled. When the request left `enabled` out (`enabled_given`
    /// false), a replaced profile keeps its kill switch as it was (SPEC §10: a `PUT` that only
    /// edits must not switch a disabled profile back on). Returns what was stored.
    pub async fn put(
        &self,
        profile: &Profile,
        enabled_given: bool,
        audit: impl FnOnce(Saved, Option<bool>, &Profile) -> AuditRecord,
    ) -> Result<(Saved, Profile), StoreError> {
        let (saved, was_enabled) = match self.get(&profile.name).await {
            Ok(Some(old)) => (Saved::Replaced, Some(old.enabled)),
            Err(StoreError::Outdated(o)) => (
                Saved::Replaced,
                Some(o.doc["enabled"].as_bool().unwrap_or(true)),
            ),
            Ok(None) => (Saved::Created, None),
            Err(e) => return Err(e),
        };
        let mut profile = profile.clone();
        if let (false, Some(was)) = (enabled_given, was_enabled) {
            profile.enabled = was;
        }
        let profile = profile;
        let mut item = key(&profile.name);
        item.insert(
            "doc".into(),
            AttributeValue::S(profile.to_json().to_string()),
        );
        let condition = match saved {
            Saved::Created => "attribute_not_exists(pk)",
            Saved::Replaced => "attribute_exists(pk)",
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Aws(AwsFailure::other(e.to_string())))?;
        let record = audit(saved, was_enabled, &profile);
        self.transact(TransactWriteItem::builder().put(put).build(), &record)
            .await?;
        Ok((saved, profile))
    }

    pub async fn delete(&self, name: &ProfileName, audit: &AuditRecord) -> Result<(), StoreError> {
        match self.get(name).await {
            Ok(Some(_)) | Err(StoreError::Outdated(_)) => {}
            Ok(None) => return Err(StoreError::NotFound),
            Err(e) => return Err(e),
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| StoreError::Aws(AwsFailure::other(e.to_string())))?;
        self.transact(TransactWriteItem::builder().delete(delete).build(), audit)
            .await
    }

    async fn transact(
        &self,
        change: TransactWriteItem,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.audit
            .write_with(vec![change], audit)
            .await
            .map_err(|e| match e {
                AuditedWriteError::Conflict => StoreError::Conflict,
                AuditedWriteError::Audit(f) => StoreError::Audit(f),
                AuditedWriteError::Store(f) => StoreError::Aws(f),
            })
    }

    /// One page of profiles in name order; `next` is the last name of the previous page.
    pub async fn list(
        &self,
        limit: usize,
        next: Option<&ProfileName>,
    ) -> Result<(Vec<Listed>, Option<String>), StoreError> {
        let out = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(PK.to_owned()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(next.map(key))
            .send()
            .await
            .map_err(|e| StoreError::Aws(classify(e)))?;
        let profiles = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                let name = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|s| ProfileName::parse("name", s).ok())
                    .ok_or_else(|| StoreError::Corrupt("(unnamed)".into()))?;
                match decode(name, item) {
                    Ok(p) => Ok(Ok(p)),
                    Err(StoreError::Outdated(o)) => Ok(Err(*o)),
                    Err(e) => Err(e),
                }
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
        Ok((profiles, next))
    }
}

fn decode(
    name: ProfileName,
    item: &HashMap<String, AttributeValue>,
) -> Result<Profile, StoreError> {
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt(name.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(doc).map_err(|_| StoreError::Corrupt(name.to_string()))?;
    Profile::parse(name.clone(), doc.as_bytes()).map_err(|reason| {
        StoreError::Outdated(Box::new(Outdated {
            name,
            doc: json,
            reason,
        }))
    })
}
