//! One rotation at a time per secret (SPEC §6 "Rotation safety"): an item in the state table
//! (`pk = "rotation-lock"`, `sk = <secret ARN>`) naming the rotation's token and its owner, taken
//! by every step and released at the end of `finishSecret`, or expired after 15 minutes. A step of
//! another rotation (another token) fails while the lock is held, before it changes anything.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use super::policy::LOCK_TTL_MINUTES;
use super::{RotationError, Rotator, Versions, CURRENT, PENDING};
use crate::aws::{classify, FailureKind};
use crate::time::format_time;

const PK: &str = "rotation-lock";

fn key(arn: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
        ("sk".to_owned(), AttributeValue::S(arn.to_owned())),
    ])
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn store(call: &'static str, f: crate::aws::AwsFailure) -> RotationError {
    RotationError::Aws { call, failure: f }
}

impl Rotator {
    /// Takes (or renews) the secret's lock for rotation `token` of `owner`: only when nobody holds
    /// it, it expired, this very rotation of this owner holds it, or its holder is a dead rotation
    /// (a token neither `AWSPENDING` nor `AWSCURRENT`: Secrets Manager moved on from it).
    pub(super) async fn lock(
        &self,
        versions: &Versions,
        token: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RotationError> {
        let arn = versions.arn.as_str();
        match self.try_lock(arn, token, owner, now, None).await {
            Err(RotationError::Locked { .. }) => {}
            other => return other,
        }
        match self.lock_token(arn).await? {
            Some(holder)
                if holder != token
                    && !versions.has_stage(&holder, PENDING)
                    && !versions.has_stage(&holder, CURRENT) =>
            {
                self.try_lock(arn, token, owner, now, Some(&holder)).await
            }
            _ => Err(RotationError::Locked {
                secret: arn.to_owned(),
            }),
        }
    }

    async fn try_lock(
        &self,
        arn: &str,
        token: &str,
        owner: &str,
        now: DateTime<Utc>,
        dead: Option<&str>,
    ) -> Result<(), RotationError> {
        let mut condition =
            "attribute_not_exists(sk) OR #u < :now OR (#t = :t AND #o = :o)".to_owned();
        let mut values = HashMap::from([
            (":t".to_owned(), s(token)),
            (":o".to_owned(), s(owner)),
            (
                ":u".to_owned(),
                s(format_time(now + Duration::minutes(LOCK_TTL_MINUTES))),
            ),
            (":now".to_owned(), s(format_time(now))),
        ]);
        if let Some(d) = dead {
            condition.push_str(" OR #t = :dead");
            values.insert(":dead".to_owned(), s(d));
        }
        let out = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.state_table)
            .set_key(Some(key(arn)))
            .update_expression("SET #t = :t, #o = :o, #u = :u")
            .condition_expression(condition)
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#u", "until")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(_) => Ok(()),
            Err(f) if f.kind == FailureKind::ConditionFailed => Err(RotationError::Locked {
                secret: arn.to_owned(),
            }),
            Err(f) => Err(store("UpdateItem", f)),
        }
    }

    /// Releases the lock if rotation `token` still holds it.
    pub(super) async fn unlock(&self, arn: &str, token: &str) -> Result<(), RotationError> {
        let out = self
            .clients
            .dynamodb
            .delete_item()
            .table_name(&self.state_table)
            .set_key(Some(key(arn)))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":t", s(token))
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(_) => Ok(()),
            Err(f) if f.kind == FailureKind::ConditionFailed => Ok(()),
            Err(f) => Err(store("DeleteItem", f)),
        }
    }

    /// The token of the rotation holding the lock of `arn`, if any (expired or not).
    pub(super) async fn lock_token(&self, arn: &str) -> Result<Option<String>, RotationError> {
        let out = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.state_table)
            .set_key(Some(key(arn)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store("GetItem", classify(e)))?;
        Ok(out
            .item
            .and_then(|i| i.get("token").and_then(|t| t.as_s().ok()).cloned()))
    }
}
