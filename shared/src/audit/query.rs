//! Reading the trail: by time range (a day's 16 shards, fanned out and merged), principal or
//! profile (GSIs), newest first, paged by a cursor that is the last item's sort key.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures_util::future::try_join_all;
use serde_json::{Map, Value};

use super::record::SHARDS;
use super::{AuditError, AuditLog};
use crate::aws::classify;
use crate::names::Invalid;
use crate::time::format_time;

/// A query over the trail, its window checked ([`Window::new`]).
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub profile: Option<String>,
    pub event: Option<String>,
    pub window: Window,
    pub limit: usize,
}

/// Without `since`, a query looks back this far.
pub const DEFAULT_WINDOW_DAYS: u64 = 30;
/// The longest window: a time-range query walks one day (16 partitions) at a time.
pub const MAX_WINDOW_DAYS: i64 = 366;
/// A page stops growing past this many bytes of JSON, whatever `limit` says: Lambda answers at
/// most 6 MB.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The time window of a query and where in it a page starts, checked so that every query is
/// bounded: DynamoDB refuses a `BETWEEN` whose ends are reversed (`since` in the future), and a
/// cursor far outside the window would walk one day after another until the function times out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The sort key of the previous page's last item.
    pub next: Option<String>,
    /// Whether `since`/`until` were given (the `Audit Read` message names only those).
    pub given: (bool, bool),
}

impl Window {
    pub fn new(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        next: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Window, Invalid> {
        let given = (since.is_some(), until.is_some());
        let until = until.unwrap_or(now);
        let since = match since {
            Some(s) if s > now => return Err(Invalid::new("since", "must not be in the future")),
            Some(s) if s > until => return Err(Invalid::new("since", "must not be after until")),
            Some(s) => s,
            None => until
                .checked_sub_days(Days::new(DEFAULT_WINDOW_DAYS))
                .unwrap_or(until),
        };
        if (until - since).num_days() > MAX_WINDOW_DAYS {
            return Err(Invalid::new(
                "since",
                format!("a query spans at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        let next = next
            .map(|n| {
                let time = parse_cursor(n)
                    .ok_or_else(|| Invalid::new("next", "is not a cursor from a previous page"))?;
                if time < since || time > until {
                    return Err(Invalid::new(
                        "next",
                        "is outside the query's window (since .. until): use the cursor with the query that returned it",
                    ));
                }
                Ok(n.to_owned())
            })
            .transpose()?;
        Ok(Window {
            since,
            until,
            next,
            given,
        })
    }

    /// The sort-key range, inclusive: `until` itself is included ('~' sorts after every
    /// character of `<time>#<uuid>`); after a cursor, the range ends at the cursor, which the
    /// reader then leaves out.
    fn range(&self) -> (String, String) {
        let high = match &self.next {
            Some(cursor) => cursor.clone(),
            None => format!("{}#~", format_time(self.until)),
        };
        (format_time(self.since), high)
    }
}

#[derive(Debug)]
pub struct AuditPage {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// SPEC §13: reading the trail is itself audited.
pub const EVENT_AUDIT_READ: &str = "Audit Read";

type Item = HashMap<String, AttributeValue>;

/// One partition (a table partition or an index key) read newest first within a sort-key range.
struct Partition<'a> {
    index: Option<&'static str>,
    key_name: &'static str,
    key_value: String,
    low: &'a str,
    high: &'a str,
    /// Attribute equalities DynamoDB filters on (after `Limit`, hence the paging in `newest`).
    filters: Vec<(&'static str, &'a str)>,
    /// A strongly consistent read (base table only): the sealer's.
    consistent: bool,
}

impl AuditLog {
    /// A query on behalf of a caller, audited as `Audit Read` (`Config`) before the page is
    /// returned: a read the trail cannot record returns nothing. Written after the query, so a
    /// page never lists its own read.
    pub async fn read(
        &self,
        q: &AuditQuery,
        origin: &super::Origin,
    ) -> Result<AuditPage, AuditError> {
        let w = &q.window;
        let filters: Vec<String> = [
            ("principal", q.principal.clone()),
            ("profile", q.profile.clone()),
            ("event", q.event.clone()),
            ("since", w.given.0.then(|| format_time(w.since))),
            ("until", w.given.1.then(|| format_time(w.until))),
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
            if w.next.is_some() {
                ", a later page"
            } else {
                ""
            }
        );
        self.read_as(origin, message, self.query(q)).await
    }

    /// Runs `read` and writes its `Audit Read` item (SPEC §13), in that order.
    pub(super) async fn read_as<T>(
        &self,
        origin: &super::Origin,
        message: String,
        read: impl std::future::Future<Output = Result<T, AuditError>>,
    ) -> Result<T, AuditError> {
        let r = super::AuditRecord::new(
            origin,
            super::Category::Config,
            EVENT_AUDIT_READ,
            super::Outcome::Success,
            message,
        );
        let page = read.await?;
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

    /// Newest first. Principal and profile queries read their index; a time-range query reads
    /// a day's shards at once, merges them, and steps back a day while the page is not full.
    pub async fn query(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let (low, high) = q.window.range();
        let event: Vec<_> = q
            .event
            .as_deref()
            .map(|e| ("event", e))
            .into_iter()
            .collect();
        let mut items: Vec<Item> = Vec::new();
        match (&q.principal, &q.profile) {
            (Some(principal), profile) => {
                let mut filters = event.clone();
                filters.extend(profile.as_deref().map(|p| ("profile", p)));
                let part = Partition {
                    index: Some("by_principal"),
                    key_name: "principal",
                    key_value: principal.clone(),
                    low: &low,
                    high: &high,
                    filters,
                    consistent: false,
                };
                items = self.newest(&part, q.limit).await?;
            }
            (None, Some(profile)) => {
                let part = Partition {
                    index: Some("by_profile"),
                    key_name: "profile",
                    key_value: profile.clone(),
                    low: &low,
                    high: &high,
                    filters: event,
                    consistent: false,
                };
                items = self.newest(&part, q.limit).await?;
            }
            (None, None) => {
                let mut day = day_of(&high);
                let last_day = day_of(&low);
                while items.len() < q.limit {
                    let want = q.limit - items.len();
                    let parts = day_partitions(&day).into_iter().map(|key_value| Partition {
                        index: None,
                        key_name: "day",
                        key_value,
                        low: &low,
                        high: &high,
                        filters: event.clone(),
                        consistent: false,
                    });
                    let reads = parts.map(|p| async move { self.newest(&p, want).await });
                    let mut merged: Vec<Item> = try_join_all(reads).await?.concat();
                    merged.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
                    merged.truncate(want);
                    items.extend(merged);
                    if day <= last_day {
                        break;
                    }
                    match previous_day(&day) {
                        Some(d) => day = d,
                        None => break,
                    }
                }
            }
        }
        Ok(page(items, q.limit))
    }

    /// Up to `want` items of one partition, newest first, strictly before the range's high end
    /// when that end is a cursor.
    async fn newest(&self, p: &Partition<'_>, want: usize) -> Result<Vec<Item>, AuditError> {
        let mut values = HashMap::from([
            (":key".to_owned(), AttributeValue::S(p.key_value.clone())),
            (":low".to_owned(), AttributeValue::S(p.low.to_owned())),
            (":high".to_owned(), AttributeValue::S(p.high.to_owned())),
        ]);
        let mut names = HashMap::from([("#k".to_owned(), p.key_name.to_owned())]);
        let mut conditions = Vec::new();
        for (n, (field, value)) in p.filters.iter().enumerate() {
            values.insert(format!(":f{n}"), AttributeValue::S((*value).to_owned()));
            names.insert(format!("#f{n}"), (*field).to_owned());
            conditions.push(format!("#f{n} = :f{n}"));
        }
        let filter = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(&self.table)
                .set_index_name(p.index.map(str::to_owned))
                .key_condition_expression("#k = :key AND sk BETWEEN :low AND :high")
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .consistent_read(p.consistent)
                // One more than wanted: the cursor item itself may come first.
                .limit(i32::try_from(want.saturating_add(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AuditError::Read(classify(e)))?;
            out.extend(
                page.items
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| sort_key(i) != p.high),
            );
            if out.len() >= want {
                out.truncate(want);
                return Ok(out);
            }
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// Every item of one day's partitions with a sort key in `[low, high)`, read consistently
    /// (the sealer's read of a closed period; `high` is a bare time, below every key at it).
    pub(super) async fn between(
        &self,
        day: &str,
        low: &str,
        high: &str,
    ) -> Result<Vec<Value>, AuditError> {
        let reads = day_partitions(day).into_iter().map(|key_value| async move {
            let part = Partition {
                index: None,
                key_name: "day",
                key_value,
                low,
                high,
                filters: Vec::new(),
                consistent: true,
            };
            self.newest(&part, usize::MAX).await
        });
        let items = try_join_all(reads).await?.concat();
        Ok(items.into_iter().map(item_to_json).collect())
    }
}

/// A day's partitions: its 16 shards, and the bare day that tables written before sharding
/// hold (docs/decisions.md: reading it costs one empty query).
fn day_partitions(day: &str) -> Vec<String> {
    let mut parts: Vec<String> = (0..SHARDS).map(|shard| format!("{day}#{shard}")).collect();
    parts.push(day.to_owned());
    parts
}

/// A page of `limit` items at most, also cut at [`PAGE_BYTES`] of JSON (at least one item);
/// `next` is set when the page is full by either measure.
fn page(items: Vec<Item>, limit: usize) -> AuditPage {
    let mut out = Vec::with_capacity(items.len());
    let mut bytes = 0;
    let mut last = None;
    let mut full = items.len() >= limit;
    for item in items {
        let key = sort_key(&item).to_owned();
        let json = item_to_json(item);
        bytes += json.to_string().len();
        if bytes > PAGE_BYTES && !out.is_empty() {
            full = true;
            break;
        }
        out.push(json);
        last = Some(key);
    }
    AuditPage {
        items: out,
        next: if full { last } else { None },
    }
}

fn sort_key(item: &Item) -> &str {
    item.get("sk")
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn day_of(sort_key: &str) -> String {
    sort_key.get(..10).unwrap_or_default().to_owned()
}

fn previous_day(day: &str) -> Option<String> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    d.pred_opt().map(|p| p.format("%Y-%m-%d").to_string())
}

/// The time of a page cursor this module produced (`<time>#<uuid>`).
pub fn parse_cursor(s: &str) -> Option<DateTime<Utc>> {
    let (time, id) = s.split_once('#')?;
    let t = DateTime::parse_from_rfc3339(time).ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(t.with_timezone(&Utc))
}

pub(super) fn item_to_json(item: Item) -> Value {
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

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cursors_and_days() {
        assert_eq!(previous_day("2026-03-01").unwrap(), "2026-02-28");
        let sk = format!("2026-11-21T15:04:05.000001Z#{}", uuid::Uuid::new_v4());
        assert_eq!(parse_cursor(&sk), Some(at("2026-11-21T15:04:05.000001Z")));
        assert_eq!(parse_cursor("2026-11-21#x"), None);
        assert_eq!(day_of(&sk), "2026-11-21");
        assert_eq!(day_partitions("2026-11-21").len(), 17);
    }

    #[test]
    fn windows_are_bounded() {
        let now = at("2026-12-04T12:00:00Z");
        let future = Window::new(Some(at("2026-12-05T00:00:00Z")), None, None, now);
        assert_eq!(future.unwrap_err().field, "since");
        let wide = Window::new(Some(at("2024-01-01T00:00:00Z")), None, None, now);
        assert_eq!(wide.unwrap_err().field, "since");
        let far = format!("9999-12-31T00:00:00.000000Z#{}", uuid::Uuid::new_v4());
        assert_eq!(
            Window::new(None, None, Some(&far), now).unwrap_err().field,
            "next"
        );
        let old = format!("2026-10-01T00:00:00.000000Z#{}", uuid::Uuid::new_v4());
        assert_eq!(
            Window::new(None, None, Some(&old), now).unwrap_err().field,
            "next"
        );
        let inside = format!("2026-12-01T00:00:00.000000Z#{}", uuid::Uuid::new_v4());
        let w = Window::new(None, None, Some(&inside), now).unwrap();
        assert_eq!(w.since, at("2026-11-04T12:00:00Z"));
        assert_eq!(w.range().1, inside);
    }
}
