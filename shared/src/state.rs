//! Shared DynamoDB access: writing a new item exactly once, and the state table's sparse `due`
//! index, where leases (`due_pk = "lease"`) and rotation policies (`due_pk = "rotation"`) wait
//! with their due time in `due_at`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::aws::{classify, AwsFailure, FailureKind};
use crate::time::format_time;

/// Every item of kind `due_pk` due at or before `now`: a query that reads only those items.
pub(crate) async fn due_items(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    due_pk: &str,
    now: DateTime<Utc>,
) -> Result<Vec<HashMap<String, AttributeValue>>, AwsFailure> {
    Ok(due_items_counted(db, table, due_pk, now).await?.0)
}

/// `due_items`, and how many items DynamoDB read for them (`ScannedCount`): the number that shows
/// a run reads only the due work.
pub(crate) async fn due_items_counted(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    due_pk: &str,
    now: DateTime<Utc>,
) -> Result<(Vec<HashMap<String, AttributeValue>>, usize), AwsFailure> {
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut start = None;
    loop {
        let out = db
            .query()
            .table_name(table)
            .index_name("due")
            .key_condition_expression("due_pk = :pk AND due_at <= :now")
            .expression_attribute_values(":pk", AttributeValue::S(due_pk.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(classify)?;
        scanned += usize::try_from(out.scanned_count).unwrap_or_default();
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) => start = Some(k),
            None => return Ok((items, scanned)),
        }
    }
}

/// Puts a new item whose `sk` is fresh (a uuid in it). The "must not exist" condition keeps such
/// items write-once; failing it can only mean an earlier attempt of this very write succeeded
/// (its response was lost and the SDK retried), which is success.
pub(crate) async fn put_new(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<(), AwsFailure> {
    let result = db
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(sk)")
        .send()
        .await;
    match result.map_err(classify) {
        Ok(_) => Ok(()),
        Err(f) if f.kind == FailureKind::ConditionFailed => Ok(()),
        Err(f) => Err(f),
    }
}
