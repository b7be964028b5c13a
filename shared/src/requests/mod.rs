//! Access requests and approvals (SPEC §12): a profile with `approval` issues only on an approved
//! request. The use cases: [`Requests::create`], [`Requests::list`], [`Requests::get`],
//! [`Requests::approve`], [`Requests::deny`], [`Requests::cancel`], [`Requests::review`],
//! [`Requests::expire_due`], and for issuance [`Requests::grant_for`] and
//! [`Requests::issued_item`]. Each transition, and each approval, is one conditional write of the
//! request in one transaction with its one audit item (whose event the audit log reports).

mod create;
mod decide;
mod digest;
mod grant;
mod list;
mod model;
mod store;

pub use digest::Bound;
pub use model::{new_id, AccessRequest, Approval as Given, Status};
pub use store::{Index, RequestStore};

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::audit::{
    AuditError, AuditLog, AuditRecord, Category, Origin, Outcome, EVENT_REQUEST_EXPIRED,
};
use crate::aws::AwsFailure;
use crate::lease::counting_identity;
use crate::names::{Invalid, ProfileName};
use crate::profile::{Profile, ProfileStore, StoreError};

/// Finished requests stay readable this long (TTL).
pub const RETENTION_DAYS: i64 = 90;
pub const MAX_REASON: usize = 1000;
pub const MAX_TICKET: usize = 256;
pub const MAX_COMMENT: usize = 1000;
/// Attempts at a change that lost a race to another writer of the same request.
const ATTEMPTS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("access request not found")]
    NotFound,
    /// Only admins learn that a profile does not exist.
    #[error("profile {0} not found")]
    ProfileNotFound(ProfileName),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ApprovalRequired(String),
    #[error("profile {0} is switched off")]
    Disabled(ProfileName),
    #[error("{0}")]
    Conflict(String),
    #[error("the digest does not match request {0}: it changed, or this is not the request you were shown; read it again")]
    DigestMismatch(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Profile(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit trail is unavailable, so nothing was changed")]
    AuditUnavailable,
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
    #[error("stored access request {0} is unreadable")]
    Corrupt(String),
}

/// Who acts, as the API identified them.
pub struct Actor<'a> {
    pub origin: &'a Origin,
    pub principal: &'a str,
    pub principals: &'a [String],
    pub admin: bool,
}

impl Actor<'_> {
    /// The person for the two-person rule: another session of the same role is the same person.
    pub fn identity(&self) -> String {
        counting_identity(self.principal)
    }
}

/// A new request as the caller asked for it.
#[derive(Debug)]
pub struct NewRequest {
    pub profile: ProfileName,
    pub reason: String,
    pub duration_seconds: Option<i64>,
    pub ticket: Option<String>,
    pub break_glass: bool,
}

/// The services the use cases need.
pub struct Requests<'a> {
    pub store: &'a RequestStore,
    pub profiles: &'a ProfileStore,
    pub audit: &'a AuditLog,
}

fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, Invalid> {
    let Some(v) = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(Some(v))
}

pub fn comment(v: Option<String>) -> Result<Option<String>, Invalid> {
    text("comment", v, MAX_COMMENT)
}

impl Requests<'_> {
    fn record(
        &self,
        actor: &Actor<'_>,
        event: &str,
        outcome: Outcome,
        r: &AccessRequest,
        message: String,
    ) -> AuditRecord {
        let mut rec = AuditRecord::new(actor.origin, Category::Data, event, outcome, message)
            .profile(&r.profile);
        rec.access_request_id = Some(r.id.clone());
        rec.duration_seconds = Some(r.duration);
        rec.lease_id = r.lease_id.clone();
        rec
    }

    /// A refusal: audited (denied) before the caller hears of it.
    async fn refuse(
        &self,
        actor: &Actor<'_>,
        event: &str,
        r: &AccessRequest,
        why: String,
        err: RequestError,
    ) -> RequestError {
        match self
            .audit
            .write(&self.record(actor, event, Outcome::Denied, r, why))
            .await
        {
            Ok(()) => err,
            Err(e) => e.into(),
        }
    }

    async fn profile(&self, name: &str) -> Result<Option<Profile>, RequestError> {
        let Ok(name) = ProfileName::parse("profile", name) else {
            return Ok(None);
        };
        match self.profiles.get(&name).await {
            Ok(p) => Ok(p),
            Err(StoreError::Outdated(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn load(&self, id: &str) -> Result<AccessRequest, RequestError> {
        self.store.get(id).await?.ok_or(RequestError::NotFound)
    }

    /// Writes `next`, the change of `r`, as the version after `r`'s, with its audit item and
    /// `extra` items, in one transaction. `Ok(Some(next))` once written; `Ok(None)` when another
    /// writer changed the request first: the caller (after `pause`, a jittered wait growing with
    /// `attempt`) reads it again and decides anew.
    async fn write_next(
        &self,
        r: &AccessRequest,
        mut next: AccessRequest,
        record: &AuditRecord,
        extra: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
        pause: Option<u32>,
    ) -> Result<Option<AccessRequest>, RequestError> {
        next.version = r.version + 1;
        let mut changes = vec![self.store.put_item(&next, Some(r.version))?];
        changes.extend(extra);
        if self.store.commit(changes, record).await? {
            return Ok(Some(next));
        }
        if let Some(attempt) = pause {
            backoff(attempt).await;
        }
        Ok(None)
    }

    /// Records the expiry of a request past its time (once: a conditional write), and answers
    /// the request as it now is.
    async fn settle(
        &self,
        origin: &Origin,
        mut r: AccessRequest,
    ) -> Result<AccessRequest, RequestError> {
        for _ in 0..ATTEMPTS {
            let now = Utc::now();
            if !r.due_to_expire(now) {
                return Ok(r);
            }
            let mut next = r.clone();
            let what = match r.status {
                Status::Pending => format!(
                    "it was not approved by {}",
                    crate::time::format_time(r.expires_at)
                ),
                _ => format!(
                    "its grant ended at {}",
                    crate::time::format_time(r.grant_expires_at.unwrap_or(now))
                ),
            };
            next.status = Status::Expired;
            next.ended_at = Some(now);
            let system = Actor {
                origin,
                principal: "",
                principals: &[],
                admin: true,
            };
            let rec = self.record(
                &system,
                EVENT_REQUEST_EXPIRED,
                Outcome::Success,
                &next,
                format!(
                    "Access request {} of {} for profile {} expired: {what}.",
                    r.id, r.requester, r.profile
                ),
            );
            if let Some(done) = self.write_next(&r, next, &rec, Vec::new(), None).await? {
                return Ok(done);
            }
            r = self.load(&r.id).await?;
        }
        Err(busy())
    }

    /// Whether `actor` may see `r`: its requester, an admin, or an approver of its profile.
    async fn visible(
        &self,
        actor: &Actor<'_>,
        r: &AccessRequest,
        cache: &mut HashMap<String, bool>,
    ) -> Result<bool, RequestError> {
        if actor.admin || r.requester_identity == actor.identity() {
            return Ok(true);
        }
        self.approves(actor, &r.profile, cache).await
    }

    async fn approves(
        &self,
        actor: &Actor<'_>,
        profile: &str,
        cache: &mut HashMap<String, bool>,
    ) -> Result<bool, RequestError> {
        if let Some(v) = cache.get(profile) {
            return Ok(*v);
        }
        let v = self
            .profile(profile)
            .await?
            .and_then(|p| p.approval)
            .is_some_and(|a| a.is_approver(actor.principals));
        cache.insert(profile.to_owned(), v);
        Ok(v)
    }

    /// `GET /v1/requests/{id}`: nobody else learns that a request exists.
    pub async fn get(&self, actor: &Actor<'_>, id: &str) -> Result<AccessRequest, RequestError> {
        let r = self.load(id).await?;
        if !self.visible(actor, &r, &mut HashMap::new()).await? {
            return Err(RequestError::NotFound);
        }
        self.settle(actor.origin, r).await
    }
}

fn ticket_note(r: &AccessRequest) -> String {
    r.ticket
        .as_deref()
        .map(|t| format!(" (ticket {t})"))
        .unwrap_or_default()
}

fn unreviewed(profile: &ProfileName, open: &str) -> RequestError {
    RequestError::Conflict(format!(
        "your break glass {open} on profile {profile} has not been reviewed yet: an approver must review it (keysmith review {open}) before you may break glass there again"
    ))
}

fn busy() -> RequestError {
    RequestError::Conflict(
        "the request kept changing under concurrent calls; read it again and retry".into(),
    )
}

/// A short, jittered pause before another attempt at a contended request.
async fn backoff(attempt: u32) {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20;
    let ms = 5 * u64::from(attempt.min(6) + 1) + jitter;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
