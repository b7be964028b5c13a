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
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::Duration;

use crate::aws::{AwsFailure, FailureKind};
use crate::users::{IamError, IamUsers};

mod count;
mod model;
mod query;
mod renew;
mod store;
mod sweep;

pub use count::{caller_counter, counting_identity, PROFILE_LIVE_LIMIT};
pub use model::{Lease, LeaseStatus};
pub use renew::{RenewError, Renewer, EVENT_LEASE_RENEWED, RENEW_MARGIN};
pub use sweep::RevokeReport;

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
    db: crate::aws::Dynamo,
    table: String,
    pub users: IamUsers,
}

impl Leases {
    pub fn new(
        db: impl Into<crate::aws::Dynamo>,
        table: impl Into<String>,
        users: IamUsers,
    ) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
            users,
        }
    }
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
