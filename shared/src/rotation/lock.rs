//! One rotation at a time per secret (SPEC §6, §6a): an item in the state table
//! (`pk = "rotation-lock"`, `sk = <secret ARN>`). It belongs to a rotation, named by `token`,
//! whichever path (hook, scheduled run, rotate-now) continues it, and expires 15 minutes after the
//! last step. While a step runs, `owner` names the invocation running it (the hook's request id)
//! until `held_until` (its deadline): a duplicate delivery of the step waits for it instead of
//! running beside it. A step of another live rotation fails at once and changes nothing.
//!
//! The item also carries the record a rotation writes before `CreateAccessKey` (`before`: the
//! user's keys just before, `before_at`): a key that appeared after it and that no version
//! records was made by that attempt, and the next attempt deletes it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Duration, Utc};

use super::policy::LOCK_TTL_MINUTES;
use super::{Ctx, RotationError, Rotator, Versions};
use crate::aws::{classify, FailureKind};
use crate::time::format_time;

const PK: &str = "rotation-lock";
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

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

/// What the lock item says.
#[derive(Debug, Default)]
pub(super) struct LockState {
    pub token: Option<String>,
    /// The keys the user had just before a `CreateAccessKey`, and when they were listed.
    pub before: Option<(Vec<String>, DateTime<Utc>)>,
}

impl Rotator {
    /// Takes (or renews) the secret's lock for rotation `token` and holds it for this invocation's
    /// step: when nobody holds it, it expired, this rotation holds it and no other invocation is
    /// running one of its steps, or its holder is a dead rotation (a token neither `AWSPENDING`
    /// nor `AWSCURRENT`: Secrets Manager moved on from it). Another invocation's step of the same
    /// rotation is waited for (up to `lock_wait`); another live rotation fails at once. `true`
    /// when it did not simply renew this rotation's lock (it waited, or the lock was free or
    /// another's): the secret may have moved on meanwhile, and the caller looks again.
    pub(super) async fn lock(
        &self,
        versions: &Versions,
        token: &str,
        ctx: &Ctx<'_>,
    ) -> Result<bool, RotationError> {
        let arn = versions.arn.as_str();
        let give_up = tokio::time::Instant::now() + self.lock_wait;
        let mut waited = false;
        loop {
            match self.try_lock(arn, token, ctx, None).await {
                Err(RotationError::Locked { .. }) => {}
                other => return other.map(|renewed| waited || !renewed),
            }
            match self.lock_state(arn).await?.token {
                Some(holder) if holder != token && !versions.is_live(&holder) => {
                    match self.try_lock(arn, token, ctx, Some(&holder)).await {
                        Err(RotationError::Locked { .. }) => {}
                        other => return other.map(|renewed| waited || !renewed),
                    }
                }
                Some(holder) if holder != token => {
                    return Err(RotationError::Locked {
                        secret: arn.to_owned(),
                    })
                }
                // This rotation, with a step running in another invocation (or the item just
                // went away): wait for it, then look again.
                _ => {}
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(RotationError::Locked {
                    secret: arn.to_owned(),
                });
            }
            tokio::time::sleep(POLL).await;
            waited = true;
        }
    }

    /// `Ok(true)` when this rotation held the lock already.
    async fn try_lock(
        &self,
        arn: &str,
        token: &str,
        ctx: &Ctx<'_>,
        dead: Option<&str>,
    ) -> Result<bool, RotationError> {
        let mut condition = "attribute_not_exists(sk) OR #u < :now \
             OR (#t = :t AND (attribute_not_exists(#o) OR #o = :o OR #h < :now))"
            .to_owned();
        let mut values = HashMap::from([
            (":t".to_owned(), s(token)),
            (":o".to_owned(), s(ctx.owner)),
            (
                ":u".to_owned(),
                s(format_time(ctx.now + Duration::minutes(LOCK_TTL_MINUTES))),
            ),
            (":h".to_owned(), s(format_time(ctx.hold_until))),
            (":now".to_owned(), s(format_time(ctx.now))),
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
            .update_expression("SET #t = :t, #o = :o, #u = :u, #h = :h")
            .condition_expression(condition)
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#h", "held_until")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(out) => Ok(out
                .attributes
                .and_then(|a| a.get("token").and_then(|t| t.as_s().ok()).cloned())
                .is_some_and(|t| t == token)),
            Err(f) if f.kind == FailureKind::ConditionFailed => Err(RotationError::Locked {
                secret: arn.to_owned(),
            }),
            Err(f) => Err(store("UpdateItem", f)),
        }
    }

    /// Ends this invocation's hold (the rotation keeps the lock): the next step, from any path,
    /// may go on at once.
    pub(super) async fn release_hold(&self, arn: &str, owner: &str) -> Result<(), RotationError> {
        let out = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.state_table)
            .set_key(Some(key(arn)))
            .update_expression("REMOVE #o, #h")
            .condition_expression("#o = :o")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#h", "held_until")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(_) => Ok(()),
            Err(f) if f.kind == FailureKind::ConditionFailed => Ok(()),
            Err(f) => Err(store("UpdateItem", f)),
        }
    }

    /// Records, while rotation `token` holds the lock, the keys the user has just before a
    /// `CreateAccessKey` (SPEC §6a: a rotation records that it is creating a key).
    pub(super) async fn record_before(
        &self,
        arn: &str,
        token: &str,
        keys: &[String],
    ) -> Result<(), RotationError> {
        let ids = AttributeValue::L(keys.iter().map(|k| s(k.as_str())).collect());
        let out = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.state_table)
            .set_key(Some(key(arn)))
            .update_expression("SET #b = :b, #ba = :ba")
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#b", "before")
            .expression_attribute_names("#ba", "before_at")
            .expression_attribute_values(":t", s(token))
            .expression_attribute_values(":b", ids)
            .expression_attribute_values(":ba", s(format_time(Utc::now())))
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

    /// The lock item of `arn` (expired or not).
    pub(super) async fn lock_state(&self, arn: &str) -> Result<LockState, RotationError> {
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
        let Some(item) = out.item else {
            return Ok(LockState::default());
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let before = item.get("before").and_then(|v| v.as_l().ok()).map(|l| {
            l.iter()
                .filter_map(|v| v.as_s().ok().cloned())
                .collect::<Vec<_>>()
        });
        let before_at = text("before_at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(LockState {
            token: text("token"),
            before: before.zip(before_at),
        })
    }

    /// The token of the rotation holding the lock of `arn`, if any (expired or not).
    pub(super) async fn lock_token(&self, arn: &str) -> Result<Option<String>, RotationError> {
        Ok(self.lock_state(arn).await?.token)
    }
}
