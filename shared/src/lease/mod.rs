//! Leases: a record in the state table for every credential Keysmith issues, written *before*
//! the IAM user exists or STS is called, so everything Keysmith creates is findable, counted and
//! revocable whatever happens next.
//!
//! A lease is born `pending` and becomes `active` only in the transaction that writes the
//! issuance's audit item, after its key is proven: credentials never reach a caller from a lease
//! that is not active and audited. A pending lease is due [`PENDING_GRACE`] after it started, so a
//! killed issuance (its user, or STS credentials nobody received) is ended by the next sweep.
//!
//! STS leases (`session_token`, `federation_token`, `assumed_role`, SPEC §10) carry the
//! `credential_type` and the `target` they act through (role ARN or base user ARN); revoking one
//! denies its session tag in an inline policy ([`crate::revocation`]). At expiry the sweep only
//! gives back their unit of the live count: STS ends the credentials.
//!
//! Item: `pk = "lease"`, `sk = <lease id>`. While a lease is live it carries `due_pk = "lease"` and
//! `due_at` — the `due` index then lists exactly the leases to end, without a scan. An active
//! lease is due at its expiry; a pending one [`PENDING_GRACE`] after it started, so a killed
//! issuance is cleaned up by the next sweep, long before its lease would have expired. A revoked
//! lease loses those two attributes and gets a TTL (`expires_at`) so the record ages out.
//!
//! Live leases are counted per caller and per profile ([`count`]). The GSI `by_owner`
//! (`principal`, `sk`) lists one caller's leases without reading anybody else's; `by_profile`
//! (`profile`, `created_at`) finds a profile's live leases without reading its history.

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

mod count;
pub use count::{caller_counter, counting_identity, PROFILE_LIVE_LIMIT};

const PK: &str = "lease";
const BY_OWNER: &str = "by_owner";
const BY_PROFILE: &str = "by_profile";
/// The longest credentials any lease can hold (`session_token`, `federation_token`, `iam_user`:
/// 36 hours): a lease issued earlier than this before now has ended.
const LONGEST_LEASE_SECONDS: i64 = 129_600;
pub const EVENT_LEASE_REVOKED: &str = "Lease Revoked";
/// How long a revoked lease record stays readable before DynamoDB's TTL removes it.
pub const REVOKED_RETENTION_DAYS: i64 = 90;
/// An issuance finishes within its time budget ([`ISSUE_BUDGET`], well inside the API function's
/// 29 s timeout), so a lease still pending after this long belongs to an issuance that died.
pub const PENDING_GRACE: Duration = Duration::minutes(2);
/// How long an issuance may take from its lease's birth to its activation; past it the issuance
/// gives up (and ends its lease) rather than be killed by the function's timeout half-way.
pub const ISSUE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

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
    /// The caller's live-lease counter this lease holds a unit of (its `sk`), until it ends;
    /// `None` for leases of older versions that were never counted, or once given back.
    pub counter: Option<String>,
    /// `iam_user` for leases written before STS leases existed (the attribute is absent).
    pub credential_type: CredentialType,
    /// STS leases: the role ARN (`assumed_role`) or base IAM user ARN the session acts through.
    pub target: Option<String>,
}

impl Lease {
    /// A fresh STS lease, pending until its credentials are issued and audited.
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
            status: LeaseStatus::Pending,
            revoked_at: None,
            counter: Some(count::caller_counter(profile, principal)),
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
        if let Some(c) = &self.counter {
            item.insert("count_sk".into(), s(c));
        }
        item
    }

    /// When the sweep must end this lease, or give back its count (none once revoked).
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
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
            // Leases of older versions recorded only `counted`, under the raw principal.
            counter: s("count_sk").or_else(|| {
                (item.get("counted").and_then(|v| v.as_bool().ok()) == Some(&true)).then(|| {
                    format!(
                        "{}#{}",
                        s("profile").unwrap_or_default(),
                        s("principal").unwrap_or_default()
                    )
                })
            }),
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
    #[error("profile {0} already has {PROFILE_LIVE_LIMIT} live leases, all callers together")]
    ProfileLimit(String),
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

/// How a lease's life in the table ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Status `revoked` (once), the first `revoked_at`, and a TTL.
    Revoked,
    /// An STS lease past its expiry: only out of the `due` index (its status reads `expired`).
    Expired,
}

/// The writes that end a lease: its record out of the `due` index (and revoked, for
/// [`End::Revoked`]) and its unit of the live counts given back, in one transaction whose
/// condition holds once, so the counts go down exactly once however often it runs.
fn end_items(
    table: &str,
    lease: &Lease,
    now: DateTime<Utc>,
    end: End,
) -> Result<Vec<TransactWriteItem>, LeaseError> {
    let mut values = HashMap::new();
    let mut names = HashMap::new();
    let (mut set, mut remove, mut cond) = match end {
        End::Revoked => {
            let ttl = (now + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            values.insert(":revoked".to_owned(), AttributeValue::S("revoked".into()));
            values.insert(":now".to_owned(), AttributeValue::S(format_time(now)));
            values.insert(":ttl".to_owned(), AttributeValue::N(ttl.to_string()));
            names.insert("#s".to_owned(), "status".to_owned());
            (
                "SET #s = :revoked, revoked_at = if_not_exists(revoked_at, :now), expires_at = :ttl ".to_owned(),
                "REMOVE due_pk, due_at".to_owned(),
                "attribute_exists(sk) AND #s <> :revoked".to_owned(),
            )
        }
        End::Expired => (
            String::new(),
            "REMOVE due_pk, due_at".to_owned(),
            "attribute_exists(due_pk)".to_owned(),
        ),
    };
    let mut items = Vec::new();
    if let Some(counter) = &lease.counter {
        remove.push_str(", count_sk, counted");
        cond.push_str(" AND (attribute_exists(count_sk) OR attribute_exists(counted))");
        items.extend(count::decrements(table, counter, &lease.profile)?);
    }
    set.push_str(&remove);
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(&lease.id)))
        .update_expression(set)
        .condition_expression(cond)
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(build_err)?;
    items.insert(0, TransactWriteItem::builder().update(update).build());
    Ok(items)
}

/// The outcome of ending a batch of expired leases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevokeReport {
    pub revoked: Vec<String>,
    /// STS leases past their expiry whose count was given back.
    pub expired: usize,
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

    /// The writes that mark an STS lease revoked (once: the condition fails if it already is) and
    /// give back its count, for a transaction with the revocation's audit item.
    pub fn mark_revoked_items(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<TransactWriteItem>, LeaseError> {
        end_items(&self.table, lease, now, End::Revoked)
    }

    /// Records a lease without counting it (tests and tools; issuance uses [`Self::record_counted`]).
    pub async fn record(&self, lease: &Lease) -> Result<(), LeaseError> {
        put_new(&self.db, &self.table, lease.to_item())
            .await
            .map_err(LeaseError::Store)
    }

    /// Records a new (pending) lease and counts it against its caller's `max` live leases of the
    /// profile and the profile's total, in one transaction: over a cap, nothing is written.
    pub async fn record_counted(&self, lease: &Lease, max: u32) -> Result<(), LeaseError> {
        let counter = lease
            .counter
            .clone()
            .ok_or_else(|| build_err("a new lease has no counter"))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build_err)?;
        let mut tx = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        for item in count::increments(&self.table, &counter, &lease.profile, max)? {
            tx = tx.transact_items(item);
        }
        let Err(e) = tx.send().await else {
            return Ok(());
        };
        match failed_conditions(&e).as_deref() {
            // The lease id is fresh: it exists only if an earlier attempt of this very
            // transaction committed (its response was lost and the SDK retried).
            Some([true, ..]) => Ok(()),
            Some([false, true, _]) => Err(LeaseError::Limit {
                retry_after: self.seconds_until_a_lease_ends(lease).await,
                profile: lease.profile.clone(),
                principal: lease.principal.clone(),
                max,
            }),
            Some([false, false, true]) => Err(LeaseError::ProfileLimit(lease.profile.clone())),
            _ => Err(LeaseError::Store(classify(e))),
        }
    }

    /// The write that makes a pending lease active with its key id and real expiry (due then, not
    /// at the end of the grace), for the transaction with the issuance's audit item: the
    /// credentials are handed out only if both commit. It fails if the lease is no longer pending
    /// (the sweep ended a too-slow issuance).
    pub fn activate_item(
        &self,
        lease: &Lease,
        access_key_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<TransactWriteItem, LeaseError> {
        let exp = format_time(expires_at);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.id)))
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .expression_attribute_values(":k", AttributeValue::S(access_key_id.to_owned()))
            .expression_attribute_values(":exp", AttributeValue::S(exp));
        update = if lease.is_sts() {
            let ttl = (expires_at + Duration::days(REVOKED_RETENTION_DAYS)).timestamp();
            update
                .update_expression("SET #s = :active, access_key_id = :k, due_at = :exp, lease_expires_at = :exp, expires_at = :ttl")
                .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()))
        } else {
            update.update_expression(
                "SET #s = :active, access_key_id = :k, due_at = :exp, lease_expires_at = :exp",
            )
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_err)?)
            .build())
    }

    /// Ends the lease of an issuance that failed before its credentials were handed out: an
    /// `iam_user` lease is revoked (its user deleted); an STS lease's record is deleted (nothing was
    /// delivered) and its count given back. Safe to repeat.
    pub async fn abandon(&self, lease: &Lease) -> Result<(), LeaseError> {
        if !lease.is_sts() {
            return self.revoke(lease).await.map(|_| ());
        }
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.id)))
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .build()
            .map_err(build_err)?;
        let mut tx = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build());
        if let Some(counter) = &lease.counter {
            for item in count::decrements(&self.table, counter, &lease.profile)? {
                tx = tx.transact_items(item);
            }
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            // Already gone or ended by the sweep: nothing is left to undo.
            Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => Ok(()),
            Err(e) => Err(LeaseError::Store(classify(e))),
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
        // The count goes down in the same transaction as the status goes to revoked, which
        // happens once: a repeated or concurrent revocation changes nothing.
        let mut tx = self.db.transact_write_items();
        for item in end_items(&self.table, lease, now, End::Revoked)? {
            tx = tx.transact_items(item);
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
        revoked.counter = None;
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

    /// Live leases due at or before `now` (expired, or pending past the grace), from the `due`
    /// index (no scan).
    pub async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<Lease>, LeaseError> {
        let items = due_items(&self.db, &self.table, PK, now)
            .await
            .map_err(LeaseError::Store)?;
        Ok(items.iter().filter_map(Lease::from_item).collect())
    }

    /// An STS lease at its expiry: out of the `due` index, its count given back. Nothing to audit:
    /// nothing changes in AWS.
    async fn expire(&self, lease: &Lease, now: DateTime<Utc>) -> Result<(), LeaseError> {
        let mut tx = self.db.transact_write_items();
        for item in end_items(&self.table, lease, now, End::Expired)? {
            tx = tx.transact_items(item);
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => Ok(()),
            Err(e) => Err(LeaseError::Store(classify(e))),
        }
    }

    /// Ends every due lease: expired `iam_user` leases and unfinished issuances of any type are
    /// revoked, each audited as `origin` (the scheduler); expired STS leases give back their count.
    /// One failure does not stop the others; it is reported and the lease stays due, so the next
    /// run retries it.
    pub async fn revoke_expired(
        &self,
        now: DateTime<Utc>,
        audit: &AuditLog,
        origin: &Origin,
    ) -> Result<RevokeReport, LeaseError> {
        let mut report = RevokeReport::default();
        let mut unaudited = 0;
        for lease in self.expired(now).await? {
            let unfinished = lease.status == LeaseStatus::Pending;
            let result = match (lease.is_sts(), unfinished) {
                (true, false) => {
                    match self.expire(&lease, now).await {
                        Ok(()) => report.expired += 1,
                        Err(e) => {
                            tracing::warn!(lease_id = %lease.id, error = %e, "giving back an expired lease's count failed");
                            crate::ops::count(
                                crate::ops::Metric::SweepFailed,
                                Some(lease.credential_type.as_str()),
                            );
                            report.failed.push((lease.id.clone(), e.to_string()));
                        }
                    }
                    continue;
                }
                (true, true) => {
                    let mut tx = self.db.transact_write_items();
                    for item in end_items(&self.table, &lease, now, End::Revoked)? {
                        tx = tx.transact_items(item);
                    }
                    match tx.send().await {
                        Ok(_) => Ok(()),
                        Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => {
                            Ok(())
                        }
                        Err(e) => Err(LeaseError::Store(classify(e))),
                    }
                }
                (false, _) => self.revoke(&lease).await.map(|_| ()),
            };
            let what = if unfinished { "Unfinished" } else { "Expired" };
            let (outcome, message) = match result {
                Ok(()) => {
                    report.revoked.push(lease.id.clone());
                    let done = if lease.is_sts() {
                        "its credentials were never handed out".to_owned()
                    } else {
                        format!("IAM user {} deleted", lease.user_name)
                    };
                    (
                        Outcome::Success,
                        format!("{what} lease {} revoked; {done}.", lease.id),
                    )
                }
                Err(e) => {
                    tracing::warn!(lease_id = %lease.id, user = %lease.user_name, error = %e, "revoking a due lease failed");
                    report.failed.push((lease.id.clone(), e.to_string()));
                    (
                        Outcome::Failed,
                        format!(
                            "Revoking {} lease {} failed: {e}",
                            what.to_lowercase(),
                            lease.id
                        ),
                    )
                }
            };
            if outcome == Outcome::Failed {
                crate::ops::count(
                    crate::ops::Metric::SweepFailed,
                    Some(lease.credential_type.as_str()),
                );
            }
            let r = lease.audit_record(origin, outcome, message);
            if let Err(e) = audit.write(&r).await {
                // The lease is revoked (or stays due); its audit item is missing. The run fails
                // (SPEC §7), so it is retried and alarmed, after the other leases are done.
                tracing::error!(lease_id = %lease.id, error = %e, "audit write for a lease revocation failed");
                crate::ops::count(
                    crate::ops::Metric::SweepFailed,
                    Some(lease.credential_type.as_str()),
                );
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
    fn sts_leases_are_counted_due_at_expiry_and_show_expired() {
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
        let mut lease = lease;
        lease.status = LeaseStatus::Active;
        assert_eq!(lease.due_at(), Some(now - Duration::hours(1)));
        assert!(lease.to_item().contains_key("due_pk"));
        // Counted as the caller's role, not the session name.
        let by_role = Lease::sts(
            "id2".into(),
            "p",
            "arn:aws:sts::123456789012:assumed-role/Dev/renamed",
            CredentialType::AssumedRole,
            "arn:aws:iam::123456789012:role/r".into(),
            now,
            now,
        );
        assert_eq!(
            by_role.counter.as_deref(),
            Some("p#arn:aws:iam::123456789012:role/Dev")
        );
        assert_eq!(lease.status_at(now), "expired");
        assert_eq!(lease.status_at(now - Duration::hours(90)), "active");
        let back = Lease::from_item(&lease.to_item()).unwrap();
        assert_eq!(back, lease);
        assert_eq!(back.to_json()["target"], "arn:aws:iam::123456789012:role/r");
    }
}
