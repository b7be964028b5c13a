//! Reading the trail: by time range (one partition per day), principal or profile (GSIs), paged.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::{AuditError, AuditLog};
use crate::aws::classify;
use crate::time::format_time;

/// A query over the trail. Built by the API layer from validated parameters.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub profile: Option<String>,
    pub event: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The `sk` of the last item of the previous page.
    pub next: Option<String>,
}

/// Without `since`, a time-range query (no principal, no profile) looks back this far.
pub const DEFAULT_WINDOW_DAYS: u64 = 30;
/// The longest time-range query: it walks one partition per day.
pub const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Debug)]
pub struct AuditPage {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// SPEC §13: reading the trail is itself audited.
pub const EVENT_AUDIT_READ: &str = "Audit Read";

impl AuditLog {
    /// A query on behalf of a caller, audited as `Audit Read` (`Config`) before the page is
    /// returned: a read the trail cannot record returns nothing. Written after the query, so a
    /// page never lists its own read.
    pub async fn read(
        &self,
        q: &AuditQuery,
        origin: &super::Origin,
    ) -> Result<AuditPage, AuditError> {
        let filters: Vec<String> = [
            ("principal", q.principal.clone()),
            ("profile", q.profile.clone()),
            ("event", q.event.clone()),
            ("since", q.since.map(format_time)),
            ("until", q.until.map(format_time)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
        let message = format!(
            "{} read the audit trail ({}{}).",
            origin.principal,
            if filters.is_empty() {
                "no filter".to_owned()
            } else {
                filters.join(", ")
            },
            if q.next.is_some() {
                ", a later page"
            } else {
                ""
            }
        );
        let r = super::AuditRecord::new(
            origin,
            super::Category::Config,
            EVENT_AUDIT_READ,
            super::Outcome::Success,
            message,
        );
        let page = self.query(q).await?;
        self.write(&r).await?;
        Ok(page)
    }

    /// The newest `limit` items naming an access key (the `by_access_key` index, SPEC §15).
    pub async fn by_access_key(&self, key: &str, limit: usize) -> Result<Vec<Value>, AuditError> {
        let page = self
            .db
            .query()
            .table_name(&self.table)
            .index_name("by_access_key")
            .key_condition_expression("access_key_id = :k")
            .expression_attribute_values(":k", AttributeValue::S(key.to_owned()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| AuditError::Read(classify(e)))?;
        Ok(page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(item_to_json)
            .collect())
    }

    /// Newest first. Principal and profile queries use their index; a time-range query walks day
    /// partitions backwards from `until`.
    pub async fn query(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let until = q.until.unwrap_or_else(Utc::now);
        let since = q.since.unwrap_or_else(|| {
            until
                .checked_sub_days(Days::new(DEFAULT_WINDOW_DAYS))
                .unwrap_or(until)
        });
        let low = format_time(since);
        // '~' sorts after every character of `<time>#<uuid>`, so `until` itself is included.
        let high = format!("{}#~", format_time(until));

        let (index, key_name, key_value) = match (&q.principal, &q.profile) {
            (Some(p), _) => (Some("by_principal"), "principal", p.clone()),
            (None, Some(p)) => (Some("by_profile"), "profile", p.clone()),
            (None, None) => (None, "day", day_of(q.next.as_deref().unwrap_or(&high))),
        };
        let mut filters = Vec::new();
        let mut values = HashMap::from([(":low".to_owned(), AttributeValue::S(low.clone()))]);
        if q.principal.is_some() {
            if let Some(profile) = &q.profile {
                filters.push("profile = :profile");
                values.insert(":profile".into(), AttributeValue::S(profile.clone()));
            }
        }
        if let Some(event) = &q.event {
            filters.push("event = :event");
            values.insert(":event".into(), AttributeValue::S(event.clone()));
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let last_day = day_of(&low);

        let mut items = Vec::new();
        // Resume after the cursor item: its table key (day, sk) plus the index's partition key.
        let mut start = q.next.as_ref().map(|next| {
            HashMap::from([
                ("day".to_owned(), AttributeValue::S(day_of(next))),
                ("sk".to_owned(), AttributeValue::S(next.clone())),
                (key_name.to_owned(), AttributeValue::S(key_value.clone())),
            ])
        });
        let mut key_value = key_value;
        loop {
            let mut values = values.clone();
            values.insert(":key".into(), AttributeValue::S(key_value.clone()));
            values.insert(":high".into(), AttributeValue::S(high.clone()));
            let want = q.limit.saturating_sub(items.len());
            let page = self
                .db
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :key AND sk BETWEEN :low AND :high")
                .expression_attribute_names("#k", key_name)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_values(Some(values))
                .scan_index_forward(false)
                .limit(i32::try_from(want.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AuditError::Read(classify(e)))?;
            items.extend(page.items.unwrap_or_default());
            if items.len() >= q.limit {
                items.truncate(q.limit);
                break;
            }
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None if index.is_none() && key_value > last_day => {
                    // Next older day partition.
                    key_value = previous_day(&key_value).unwrap_or_default();
                    if key_value.is_empty() {
                        break;
                    }
                }
                None => break,
            }
        }
        let next = if items.len() == q.limit {
            items
                .last()
                .and_then(|i| i.get("sk"))
                .and_then(|v| v.as_s().ok())
                .cloned()
        } else {
            None
        };
        Ok(AuditPage {
            items: items.into_iter().map(item_to_json).collect(),
            next,
        })
    }
}

fn day_of(sort_key: &str) -> String {
    sort_key.get(..10).unwrap_or_default().to_owned()
}

fn previous_day(day: &str) -> Option<String> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    d.pred_opt().map(|p| p.format("%Y-%m-%d").to_string())
}

/// Is `s` a page cursor this module produced (`<time>#<uuid>`)?
pub fn parse_cursor(s: &str) -> Option<String> {
    let (time, id) = s.split_once('#')?;
    DateTime::parse_from_rfc3339(time).ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(s.to_owned())
}

pub(super) fn item_to_json(item: HashMap<String, AttributeValue>) -> Value {
    let mut out = Map::new();
    for (k, v) in item {
        if k == "day" || k == "sk" {
            continue;
        }
        let value = match v {
            AttributeValue::S(s) => Value::String(s),
            AttributeValue::N(n) => n
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(n)),
            AttributeValue::Bool(b) => Value::Bool(b),
            _ => continue,
        };
        out.insert(k, value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_days() {
        assert_eq!(previous_day("2026-03-01").unwrap(), "2026-02-28");
        let sk = format!("2026-11-21T15:04:05.000001Z#{}", uuid::Uuid::new_v4());
        assert_eq!(parse_cursor(&sk), Some(sk.clone()));
        assert_eq!(parse_cursor("2026-11-21#x"), None);
        assert_eq!(day_of(&sk), "2026-11-21");
    }
}
