//! Reading leases through the table's indexes: one caller's (`by_owner`), one profile's live ones
//! (`by_profile`), never a scan.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use super::{
    key, Lease, LeaseError, LeaseStatus, Leases, BY_OWNER, BY_PROFILE, LONGEST_LEASE_SECONDS, PK,
};
use crate::audit::format_time;
use crate::aws::classify;

impl Leases {
    /// Leases (live and recently revoked), optionally of one profile and/or one principal; `next`
    /// is the last lease id of the previous page. One principal's leases are read through the
    /// `by_owner` index: nobody else's lease is read to answer them.
    pub async fn list(
        &self,
        profile: Option<&str>,
        principal: Option<&str>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<(Vec<Lease>, Option<String>), LeaseError> {
        let mut values = HashMap::new();
        let mut query = self.db.query().table_name(&self.table);
        let mut start = next.map(key);
        match principal {
            Some(p) => {
                values.insert(":owner".to_owned(), AttributeValue::S(p.to_owned()));
                query = query
                    .index_name(BY_OWNER)
                    .key_condition_expression("principal = :owner");
                if let Some(start) = &mut start {
                    start.insert("principal".into(), AttributeValue::S(p.to_owned()));
                }
            }
            None => {
                values.insert(":pk".to_owned(), AttributeValue::S(PK.to_owned()));
                query = query.key_condition_expression("pk = :pk");
            }
        }
        if let Some(p) = profile {
            values.insert(":profile".into(), AttributeValue::S(p.to_owned()));
            query = query.filter_expression("profile = :profile");
        }
        let query = query
            .set_expression_attribute_values(Some(values))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        let mut leases = Vec::new();
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LeaseError::Store(classify(e)))?;
            for item in out.items.unwrap_or_default() {
                let lease =
                    Lease::from_item(&item).ok_or_else(|| LeaseError::Corrupt("(list)".into()))?;
                leases.push(lease);
            }
            if leases.len() >= limit {
                leases.truncate(limit);
                let next = leases.last().map(|l| l.id.clone());
                return Ok((leases, next));
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok((leases, None)),
            }
        }
    }

    /// The live leases of `profile` issued before `before`, through the `by_profile` index
    /// (`profile`, `created_at`): only leases issued within the longest credential lifetime before
    /// now can still be live, so that is all a query reads, however many leases the profile ever
    /// had. Also returns how many items DynamoDB read.
    pub async fn live_of_profile(
        &self,
        profile: &str,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Lease>, usize), LeaseError> {
        let from = now - Duration::seconds(LONGEST_LEASE_SECONDS) - Duration::minutes(1);
        let mut live = Vec::new();
        let mut read = 0;
        let mut start = None;
        loop {
            let out = self
                .db
                .query()
                .table_name(&self.table)
                .index_name(BY_PROFILE)
                .key_condition_expression("profile = :p AND created_at BETWEEN :from AND :to")
                .expression_attribute_values(":p", AttributeValue::S(profile.to_owned()))
                .expression_attribute_values(":from", AttributeValue::S(format_time(from)))
                .expression_attribute_values(":to", AttributeValue::S(format_time(before)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LeaseError::Store(classify(e)))?;
            read += usize::try_from(out.scanned_count).unwrap_or_default();
            for item in out.items.unwrap_or_default() {
                let l = Lease::from_item(&item)
                    .ok_or_else(|| LeaseError::Corrupt("(by_profile)".into()))?;
                if l.status != LeaseStatus::Revoked
                    && l.created_at < before
                    && (!l.is_sts() || l.expires_at > now)
                {
                    live.push(l);
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok((live, read)),
            }
        }
    }
}
