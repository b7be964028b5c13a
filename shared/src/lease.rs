//! Leases of `iam_user` credentials: a record in the state table written *before* the IAM user
//! exists, so every user Keysmith creates is findable and revocable whatever happens next.
//!
//! STS credentials (`session_token`, `federation_token`, `assumed_role`) have leases too (SPEC
//! §10), written in the same transaction as the issuance's audit item: they carry the
//! `credential_type` and the `target` they act through (role ARN or base user ARN), are never
//! `due` (nothing to delete at expiry: STS ends them) and never counted against
//! `max_active_leases`. Revoking one denies its session tag in an inline policy
//! ([`crate::revocation`]).
//!
//! Item: `pk = "lease"`, `sk = <lease id>`. While a lease is live it carries `due_pk = "lease"` and
//! `due_at` — the `due` index then lists exactly the leases to end, without a scan. An active
//! lease is due at its expiry; a pending one [`PENDING_GRACE`] after it started, so a killed
//! issuance is cleaned up by the next sweep, long before its lease would have expired. A revoked
//! lease loses those two attributes and gets a TTL (`expires_at`) so the record ages out.
//!
//! Live leases per caller and profile are counted in `pk = "lease-count"`, `sk = <profile>#<principal>`,
//! changed in the same transaction as the lease's birth and its revocation, so `max_active_leases`
//! holds under concurrent requests (a count over an index would be eventually consistent). The GSI
//! `by_owner` (`principal`, `sk`) lists one caller's leases without reading anybody else's.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::audit::{format_time, AuditLog, AuditRecord, Category, Origin, Outcome};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::iam_user::{Deleted, IamError, IamUsers};
use crate::profile::CredentialType;
use crate::state::{due_items, put_new};

const PK: &str = "lease";
const COUNT_PK: &str = "lease-count";
const BY_OWNER: &str = "by_owner";
const BY_PROFILE: &str = "by_profile";
/// The longest credentials any lease can hold (`session_token`, `federation_token`, `iam_user`:
/// 36 hours): a lease issued earlier than this before now has ended.
const LONGEST_LEASE_SECONDS: i64 = 129_600;
pub const EVENT_LEASE_REVOKED: &str = "Lease Revoked";
/// How long a revoked lease record stays readable before DynamoDB's TTL removes it.
pub const REVOKED_RETENTION_DAYS: i64 = 90;
/// An issuance finishes within the API function's 29 s timeout, so a lease still pending after
/// this long belongs to an issuance that died (its user, if any, has no recorded key).
pub const PENDING_GRACE: Duration = Duration::minutes(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Recorded; the user may or may not exist yet.
    Pending,
    /// The user and its key exist.
    Active,
    /// The user and everything on it is gone.
    Revoked,
}

impl LeaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    pub profile: String,
    pub principal: String,
    pub user_name: String,
    pub access_key_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: LeaseStatus,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the lease is in its caller's live-lease count (leases of older versions are not).
    pub counted: bool,
    /// `iam_user` for leases written before STS leases existed (the attribute is absent).
    pub credential_type: CredentialType,
    /// STS leases: the role ARN (`assumed_role`) or base IAM user ARN the session acts through.
    pub target: Option<String>,
}

impl Lease {
    /// A fresh STS lease, active from the start (the credentials exist once it is written).
    pub fn sts(
        id: String,
        profile: &str,
        principal: &str,
        credential_type: CredentialType,
        target: String,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            profile: profile.to_owned(),
            principal: principal.to_owned(),
            user_name: String::new(),
            access_key_id: None,
            created_at,
            expires_at,
            status: LeaseStatus::Active,
            revoked_at: None,
            counted: false,
            credential_type,
            target: Some(target),
        }
    }

    pub fn is_sts(&self) -> bool {
        self.credential_type != CredentialType::IamUser
    }

    /// `active`, `pending`, `revoked`, or (STS leases, which nothing ends but time) `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        if self.is_sts() && self.status == LeaseStatus::Active && self.expires_at <= now {
            return "expired";
        }
        self.status.as_str()
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "lease_id": self.id,
            "profile": self.profile,
            "principal": self.principal,
            "credential_type": self.credential_type.as_str(),
            "access_key_id": self.access_key_id,
            "created_at": format_time(self.created_at),
            "expiration": format_time(self.expires_at),
            "status": self.status_at(Utc::now()),
            "revoked_at": self.revoked_at.map(format_time),
        });
        if self.is_sts() {
            v["target"] = json!(self.target);
        } else {
            v["user_name"] = json!(self.user_name);
        }
        v
    }

    /// The audit item of a revocation (or refused revocation) of this lease.
    pub fn audit_record(&self, origin: &Origin, outcome: Outcome, message: String) -> AuditRecord {
        let mut r = AuditRecord::new(
            origin,
            Category::Data,
            EVENT_LEASE_REVOKED,
            outcome,
            message,
        )
        .profile(&self.profile);
        r.credential_type = Some(self.credential_type.as_str().to_owned());
        r.lease_id = Some(self.id.clone());
        r.access_key_id = self.access_key_id.clone();
        r
    }

    fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut item = HashMap::from([
            ("pk".to_owned(), s(PK)),
            ("sk".to_owned(), s(&self.id)),
            ("profile".to_owned(), s(&self.profile)),
            ("principal".to_owned(), s(&self.principal)),
            ("created_at".to_owned(), s(&format_time(self.created_at))),
            (
                "lease_expires_at".to_owned(),
                s(&format_time(self.expires_at)),
            ),
            ("status".to_owned(), s(self.status.as_str())),
        ]);
        if let Some(due) = self.due_at() {
            item.insert("due_pk".into(), s(PK));
            item.insert("due_at".into(), s(&format_time(due)));
        }
        if let Some(k) = &self.access_key_id {
            item.insert("access_key_id".into(), s(k));
        }
        if !self.user_name.is_empty() {
            item.insert("user_name".into(), s(&self.user_name));
        }
        if self.is_sts() {
            item.insert("credential_type".into(), s(self.credential_type.as_str()));
        }
        if let Some(t) = &self.target {
            item.insert("target".into(), s(t));
        }
        // STS leases end on their own: the record ages out a retention period after its expiry
        // (SPEC §10a), like a revoked lease's.
        if self.is_sts() {
            let ttl = (self.expires_at + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            item.insert("expires_at".into(), AttributeValue::N(ttl.to_string()));
        }
        if self.counted {
            item.insert("counted".into(), AttributeValue::Bool(true));
        }
        item
    }

    fn count_key(&self) -> HashMap<String, AttributeValue> {
        count_key(&self.profile, &self.principal)
    }

    /// When the sweep must end this lease (none once revoked; never for STS leases, which the
    /// `iam_user` sweep must not touch).
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        if self.is_sts() {
            return None;
        }
        match self.status {
            LeaseStatus::Pending => Some((self.created_at + PENDING_GRACE).min(self.expires_at)),
            LeaseStatus::Active => Some(self.expires_at),
            LeaseStatus::Revoked => None,
        }
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let t = |k: &str| {
            s(k).and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        Some(Self {
            id: s("sk")?,
            profile: s("profile")?,
            principal: s("principal")?,
            user_name: s("user_name").unwrap_or_default(),
            access_key_id: s("access_key_id"),
            created_at: t("created_at")?,
            expires_at: t("lease_expires_at")?,
            status: LeaseStatus::parse(&s("status")?)?,
            revoked_at: t("revoked_at"),
            counted: item.get("counted").and_then(|v| v.as_bool().ok()) == Some(&true),
            credential_type: match s("credential_type") {
                None => CredentialType::IamUser,
                Some(t) => CredentialType::parse(&t).ok()?,
            },
            target: s("target"),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease not found")]
    NotFound,
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
    #[error("lease {0} holds STS credentials: they are revoked through an inline policy, not by deleting a user")]
    NotIamUser(String),
    #[error("stored lease {0} is unreadable")]
    Corrupt(String),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("{0} lease revocation(s) could not be audited")]
    Unaudited(usize),
    #[error("{principal} already holds {max} live leases of profile {profile}")]
    Limit {
        profile: String,
        principal: String,
        max: u32,
        /// Seconds until the first of those leases ends.
        retry_after: u64,
    },
}

impl LeaseError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Store(f) | Self::Iam(IamError { failure: f, .. }) => f.kind,
            _ => FailureKind::Other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Leases {
    db: aws_sdk_dynamodb::Client,
    table: String,
    pub users: IamUsers,
}

fn key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
        ("sk".to_owned(), AttributeValue::S(id.to_owned())),
    ])
}

/// Profile names cannot contain `#`, so the key is unambiguous.
fn count_key(profile: &str, principal: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(COUNT_PK.to_owned())),
        (
            "sk".to_owned(),
            AttributeValue::S(format!("{profile}#{principal}")),
        ),
    ])
}

/// For each item of a cancelled transaction, in order, whether its condition failed.
fn failed_conditions(e: &SdkError<TransactWriteItemsError, HttpResponse>) -> Option<Vec<bool>> {
    let SdkError::ServiceError(ctx) = e else {
        return None;
    };
    let TransactWriteItemsError::TransactionCanceledException(t) = ctx.err() else {
        return None;
    };
    Some(
        t.cancellation_reasons()
            .iter()
            .map(|r| r.code() == Some("ConditionalCheckFailed"))
            .collect(),
    )
}

fn build_err(e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Store(AwsFailure::other(e.to_string()))
}

/// Status `revoked` (once), the first `revoked_at`, out of the `due` index, and a TTL.
fn revoked_update(table: &str, id: &str, now: DateTime<Utc>) -> Result<Update, LeaseError> {
    let ttl = (now + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
    let values = HashMap::from([
        (":revoked".to_owned(), AttributeValue::S("revoked".into())),
        (":now".to_owned(), AttributeValue::S(format_time(now))),
        (":ttl".to_owned(), AttributeValue::N(ttl.to_string())),
    ]);
    Update::builder()
        .table_name(table)
        .set_key(Some(key(id)))
        .update_expression("SET #s = :revoked, revoked_at = if_not_exists(revoked_at, :now), expires_at = :ttl REMOVE due_pk, due_at")
        .condition_expression("attribute_exists(sk) AND #s <> :revoked")
        .expression_attribute_names("#s", "status")
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(build_err)
}

/// The outcome of ending a batch of expired leases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevokeReport {
    pub revoked: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Leases {
    pub fn new(db: aws_sdk_dynamodb::Client, table: impl Into<String>, users: IamUsers) -> Self {
        Self {
            db,
            table: table.into(),
            users,
        }
    }

    /// The write of a new lease, for a transaction with its issuance's audit item.
    pub fn put_new_item(&self, lease: &Lease) -> Result<TransactWriteItem, LeaseError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The update that marks an STS lease revoked (once: the condition fails if it already is),
    /// for a transaction with the revocation's audit item.
    pub fn mark_revoked_item(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, LeaseError> {
        let update = revoked_update(&self.table, &lease.id, now)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records a new lease (its id is fresh: a retried write after a lost response succeeds).
    pub async fn record(&self, lease: &Lease) -> Result<(), LeaseError> {
        put_new(&self.db, &self.table, lease.to_item())
            .await
            .map_err(LeaseError::Store)
    }

    /// Records a new lease and counts it against its caller's `max` live leases of the profile,
    /// in one transaction: over the cap, nothing is written and the answer is `Limit`.
    pub async fn record_counted(&self, lease: &Lease, max: u32) -> Result<(), LeaseError> {
        let mut lease = lease.clone();
        lease.counted = true;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(lease.count_key()))
            .update_expression("SET live = if_not_exists(live, :zero) + :one")
            .condition_expression("attribute_not_exists(live) OR live < :max")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":max", AttributeValue::N(max.to_string()))
            .build()
            .map_err(build_err)?;
        let result = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        let Err(e) = result else { return Ok(()) };
        match failed_conditions(&e).as_deref() {
            // The lease id is fresh: it exists only if an earlier attempt of this very
            // transaction committed (its response was lost and the SDK retried).
            Some([true, ..]) => Ok(()),
            Some([false, true]) => Err(LeaseError::Limit {
                retry_after: self.seconds_until_a_lease_ends(&lease).await,
                profile: lease.profile,
                principal: lease.principal,
                max,
            }),
            _ => Err(LeaseError::Store(classify(e))),
        }
    }

    /// For `Retry-After`: when the caller's first live lease of the profile ends (best effort).
    async fn seconds_until_a_lease_ends(&self, lease: &Lease) -> u64 {
        let now = Utc::now();
        let first_end = self
            .list(Some(&lease.profile), Some(&lease.principal), 100, None)
            .await
            .ok()
            .and_then(|(leases, _)| {
                leases
                    .iter()
                    .filter(|l| l.status != LeaseStatus::Revoked)
                    .map(|l| l.expires_at)
                    .min()
            });
        first_end.map_or(60, |t| {
            u64::try_from((t - now).num_seconds()).unwrap_or(0).max(1)
        })
    }

    /// Marks a pending lease active with its key id (unless it was revoked meanwhile), and makes it
    /// due at its expiry instead of at the end of the pending grace. Repeating it with the same key
    /// is a no-op, so a retried call after a lost response succeeds.
    pub async fn activate(&self, id: &str, access_key_id: &str) -> Result<(), LeaseError> {
        self.db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .update_expression("SET #s = :active, access_key_id = :k, due_at = lease_expires_at")
            .condition_expression("#s = :pending OR (#s = :active AND access_key_id = :k)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .expression_attribute_values(":k", AttributeValue::S(access_key_id.to_owned()))
            .send()
            .await
            .map_err(|e| LeaseError::Store(classify(e)))?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Lease, LeaseError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LeaseError::Store(classify(e)))?;
        let item = out.item.ok_or(LeaseError::NotFound)?;
        Lease::from_item(&item).ok_or_else(|| LeaseError::Corrupt(id.to_owned()))
    }

    /// Ends a lease: deletes the user and everything on it, then marks the record revoked. Safe to
    /// repeat at any point: a user already gone counts as deleted, a revoked lease stays revoked
    /// (with its first `revoked_at`).
    pub async fn revoke(&self, lease: &Lease) -> Result<(Lease, Deleted), LeaseError> {
        if lease.is_sts() {
            return Err(LeaseError::NotIamUser(lease.id.clone()));
        }
        let deleted = self.users.delete(&lease.user_name).await?;
        if lease.status == LeaseStatus::Revoked {
            return Ok((lease.clone(), deleted));
        }
        let now = Utc::now();
        let update = revoked_update(&self.table, &lease.id, now)?;
        // The count goes down in the same transaction as the status goes to revoked, which
        // happens once: a repeated or concurrent revocation changes nothing.
        let mut tx = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build());
        if lease.counted {
            let count = Update::builder()
                .table_name(&self.table)
                .set_key(Some(lease.count_key()))
                .update_expression("SET live = live - :one")
                .condition_expression("live > :zero")
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .build()
                .map_err(build_err)?;
            tx = tx.transact_items(TransactWriteItem::builder().update(count).build());
        }
        if let Err(e) = tx.send().await {
            match failed_conditions(&e).as_deref() {
                // Already revoked (by another call, or by this one before a lost response).
                Some([true, ..]) => {}
                _ => return Err(LeaseError::Store(classify(e))),
            }
        }
        let mut revoked = lease.clone();
        revoked.status = LeaseStatus::Revoked;
        revoked.revoked_at = Some(now);
        Ok((revoked, deleted))
    }

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
                let l = Lease::from_item(&item).ok_or_else(|| LeaseError::Corrupt("(by_profile)".into()))?;
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

    /// Live leases due at or before `now` (expired, or pending past the grace), from the `due`
    /// index (no scan).
    pub async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<Lease>, LeaseError> {
        let items = due_items(&self.db, &self.table, PK, now)
            .await
            .map_err(LeaseError::Store)?;
        // STS leases are never written with `due_pk`; the filter keeps it that way for the sweep.
        Ok(items
            .iter()
            .filter_map(Lease::from_item)
            .filter(|l| !l.is_sts())
            .collect())
    }

    /// Ends every expired lease, each audited as `origin` (the scheduler). One failure does not
    /// stop the others; it is reported and the lease stays due, so the next run retries it.
    pub async fn revoke_expired(
        &self,
        now: DateTime<Utc>,
        audit: &AuditLog,
        origin: &Origin,
    ) -> Result<RevokeReport, LeaseError> {
        let mut report = RevokeReport::default();
        let mut unaudited = 0;
        for lease in self.expired(now).await? {
            let (outcome, message) = match self.revoke(&lease).await {
                Ok(_) => {
                    report.revoked.push(lease.id.clone());
                    let what = match lease.status {
                        LeaseStatus::Pending => "Unfinished",
                        _ => "Expired",
                    };
                    (
                        Outcome::Success,
                        format!(
                            "{what} lease {} revoked; IAM user {} deleted.",
                            lease.id, lease.user_name
                        ),
                    )
                }
                Err(e) => {
                    tracing::warn!(lease_id = %lease.id, user = %lease.user_name, error = %e, "revoking an expired lease failed");
                    report.failed.push((lease.id.clone(), e.to_string()));
                    (
                        Outcome::Failed,
                        format!("Revoking expired lease {} failed: {e}", lease.id),
                    )
                }
            };
            if outcome == Outcome::Failed {
                crate::ops::count(crate::ops::Metric::SweepFailed, Some("iam_user"));
            }
            let r = lease.audit_record(origin, outcome, message);
            if let Err(e) = audit.write(&r).await {
                // The lease is revoked (or stays due); its audit item is missing. The run fails
                // (SPEC §7), so it is retried and alarmed, after the other leases are done.
                tracing::error!(lease_id = %lease.id, error = %e, "audit write for a lease revocation failed");
                crate::ops::count(crate::ops::Metric::SweepFailed, Some("iam_user"));
                unaudited += 1;
            }
        }
        if unaudited > 0 {
            return Err(LeaseError::Unaudited(unaudited));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_leases_are_never_due_nor_counted_and_show_expired() {
        // Stored times keep microseconds: whole seconds round-trip exactly.
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default();
        let lease = Lease::sts(
            "id".into(),
            "p",
            "alice",
            CredentialType::AssumedRole,
            "arn:aws:iam::123456789012:role/r".into(),
            now - Duration::hours(2),
            now - Duration::hours(1),
        );
        assert_eq!(lease.due_at(), None);
        assert!(!lease.to_item().contains_key("due_pk"));
        assert!(!lease.counted);
        assert_eq!(lease.status_at(now), "expired");
        assert_eq!(lease.status_at(now - Duration::hours(90)), "active");
        let back = Lease::from_item(&lease.to_item()).unwrap();
        assert_eq!(back, lease);
        assert_eq!(back.to_json()["target"], "arn:aws:iam::123456789012:role/r");
    }
}
