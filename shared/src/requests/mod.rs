//! Access requests and approvals (SPEC §12): a profile with `approval` issues only on an approved
//! request. The use cases: [`Requests::create`], [`Requests::list`], [`Requests::get`],
//! [`Requests::approve`], [`Requests::deny`], [`Requests::cancel`], [`Requests::review`],
//! [`Requests::expire_due`], and for issuance [`Requests::grant_for`] and
//! [`Requests::issued_item`]. Each transition, and each approval, is one conditional write of the
//! request in one transaction with its one audit item (whose event the audit log reports).

mod digest;
mod model;
mod store;

pub use digest::Bound;
pub use model::{new_id, AccessRequest, Approval as Given, Status};
pub use store::{Index, RequestStore};

use std::collections::HashMap;

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Duration, Utc};

use crate::audit::{
    AuditError, AuditLog, AuditRecord, Category, Level, Origin, Outcome, EVENT_ACCESS_APPROVED,
    EVENT_ACCESS_DENIED, EVENT_ACCESS_REQUESTED, EVENT_BREAK_GLASS_REVIEWED,
    EVENT_BREAK_GLASS_USED, EVENT_REQUEST_CANCELLED, EVENT_REQUEST_EXPIRED,
};
use crate::aws::AwsFailure;
use crate::lease::counting_identity;
use crate::names::{DurationSeconds, Invalid, ProfileName};
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

    /// `POST /v1/requests`.
    pub async fn create(
        &self,
        actor: &Actor<'_>,
        new: NewRequest,
    ) -> Result<AccessRequest, RequestError> {
        let name = new.profile.clone();
        let event = if new.break_glass {
            EVENT_BREAK_GLASS_USED
        } else {
            EVENT_ACCESS_REQUESTED
        };
        let deny_profile = |why: String| {
            let mut rec =
                AuditRecord::new(actor.origin, Category::Data, event, Outcome::Denied, why)
                    .profile(name.as_str());
            rec.duration_seconds = None;
            rec
        };
        let forbidden = || RequestError::Forbidden(format!("you may not use profile {name}"));
        let profile = match self.profile(name.as_str()).await? {
            Some(p) => p,
            None if actor.admin => return Err(RequestError::ProfileNotFound(name.clone())),
            None => {
                let why = format!("{} asked for access to profile {name}, which does not exist or must be saved again.", actor.principal);
                self.audit.write(&deny_profile(why)).await?;
                return Err(forbidden());
            }
        };
        if !profile.allows(actor.principals) {
            let why = format!(
                "{} is not in allowed_principals of profile {name}.",
                actor.principal
            );
            self.audit.write(&deny_profile(why)).await?;
            return Err(forbidden());
        }
        if !profile.enabled {
            return Err(RequestError::Disabled(name.clone()));
        }
        let Some(approval) = profile.approval.clone() else {
            return Err(Invalid::new(
                "profile",
                format!("profile {name} does not require approval: issue credentials directly"),
            )
            .into());
        };
        let duration = match new.duration_seconds {
            None => profile.default_duration.get(),
            Some(d) => {
                let d = DurationSeconds::parse(
                    "duration_seconds",
                    d,
                    DurationSeconds::MIN,
                    profile.credential_type().max_seconds(),
                )?;
                if d.get() > profile.duration_limit() {
                    return Err(Invalid::new(
                        "duration_seconds",
                        format!(
                            "must not exceed the profile's max_duration_seconds ({})",
                            profile.duration_limit()
                        ),
                    )
                    .into());
                }
                d.get()
            }
        };
        let reason = text("reason", Some(new.reason), MAX_REASON)?.ok_or_else(|| {
            Invalid::new(
                "reason",
                "is required: say why you need access (1 to 1000 characters)",
            )
        })?;
        let ticket = text("ticket", new.ticket, MAX_TICKET)?;
        let identity = actor.identity();
        if new.break_glass {
            if !approval.may_break_glass(actor.principals) {
                let why = format!(
                    "{} may not break glass on profile {name}: not in break_glass_principals.",
                    actor.principal
                );
                self.audit.write(&deny_profile(why)).await?;
                return Err(RequestError::Forbidden(format!(
                    "you may not break glass on profile {name}"
                )));
            }
            if let Some(open) = self
                .store
                .unreviewed_break_glass(name.as_str(), &identity)
                .await?
            {
                return Err(unreviewed(&name, &open));
            }
        }
        let now = now_micros();
        let created = crate::time::format_time(now);
        let mut r = AccessRequest {
            id: new_id(now),
            profile: name.to_string(),
            requester: actor.principal.to_owned(),
            requester_identity: identity,
            digest: Bound {
                requester: actor.principal,
                profile: name.as_str(),
                duration,
                ticket: ticket.as_deref(),
                reason: &reason,
                break_glass: new.break_glass,
                created_at: &created,
            }
            .digest(),
            reason,
            ticket,
            duration,
            break_glass: new.break_glass,
            created_at: now,
            expires_at: now + Duration::seconds(i64::from(approval.request_ttl_seconds)),
            status: Status::Pending,
            min_approvals: approval.min_approvals,
            approvals: Vec::new(),
            approved_at: None,
            grant_expires_at: None,
            ended_by: None,
            comment: None,
            ended_at: None,
            lease_id: None,
            reviewed_by: None,
            review_comment: None,
            reviewed_at: None,
            version: 1,
        };
        let mut changes = Vec::new();
        let mut rec;
        if new.break_glass {
            // Approved at once, loudly: an ERROR item, its event and metric, and an alarm.
            r.status = Status::Approved;
            r.approved_at = Some(now);
            r.grant_expires_at =
                Some(now + Duration::seconds(i64::from(approval.grant_ttl_seconds)));
            changes.push(self.store.break_glass_marker(&r)?);
            rec = self.record(actor, EVENT_BREAK_GLASS_USED, Outcome::Success, &r, format!(
                "{} broke glass on profile {name} for {duration} s: {}{}. Approved at once until {}; an approver must review it: keysmith review {}",
                r.requester, r.reason, ticket_note(&r), crate::time::format_time(r.grant_expires_at.unwrap_or(now)), r.id
            ));
            rec.level = Level::Error;
        } else {
            rec = self.record(actor, EVENT_ACCESS_REQUESTED, Outcome::Success, &r, format!(
                "{} asks for profile {name} for {duration} s: {}{}. {} approval(s) needed before {}. Approve with: keysmith approve {}",
                r.requester, r.reason, ticket_note(&r), r.min_approvals, crate::time::format_time(r.expires_at), r.id
            ));
        }
        changes.insert(0, self.store.put_item(&r, None)?);
        if !self.store.commit(changes, &rec).await? {
            // The id is fresh: only the break glass marker can have failed.
            return match self
                .store
                .unreviewed_break_glass(name.as_str(), &r.requester_identity)
                .await?
            {
                Some(open) => Err(unreviewed(&name, &open)),
                None => Err(RequestError::Conflict(
                    "the request could not be recorded; retry".into(),
                )),
            };
        }
        Ok(r)
    }

    async fn load(&self, id: &str) -> Result<AccessRequest, RequestError> {
        self.store.get(id).await?.ok_or(RequestError::NotFound)
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
            next.version += 1;
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
            if self
                .store
                .commit(vec![self.store.put_item(&next, Some(r.version))?], &rec)
                .await?
            {
                return Ok(next);
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

    /// Checks that `actor` may decide on `r` as an approver (not its requester), auditing a
    /// refusal under `event`; returns the profile's approval settings.
    async fn as_approver(
        &self,
        actor: &Actor<'_>,
        r: &AccessRequest,
        event: &str,
        what: &str,
    ) -> Result<crate::profile::Approval, RequestError> {
        let approval = self.profile(&r.profile).await?.and_then(|p| p.approval);
        let Some(approval) = approval.filter(|a| a.is_approver(actor.principals)) else {
            let why = format!(
                "{} may not {what} request {}: not an approver of profile {}.",
                actor.principal, r.id, r.profile
            );
            let err = RequestError::Forbidden(format!(
                "you are not an approver of profile {}",
                r.profile
            ));
            return Err(self.refuse(actor, event, r, why, err).await);
        };
        if r.requester_identity == actor.identity() {
            let why = format!(
                "{} may not {what} request {}: it is their own (as {}).",
                actor.principal, r.id, r.requester_identity
            );
            let err = RequestError::Forbidden(format!(
                "you made request {} (as {}): another person must {what} it",
                r.id, r.requester_identity
            ));
            return Err(self.refuse(actor, event, r, why, err).await);
        }
        Ok(approval)
    }

    /// `POST /v1/requests/{id}/approve`: one approval per approver, counted once also when many
    /// arrive at once; at `min_approvals` the request is approved (the same write and item).
    pub async fn approve(
        &self,
        actor: &Actor<'_>,
        id: &str,
        digest: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, RequestError> {
        let me = actor.identity();
        let mut r = self.load(id).await?;
        for attempt in 0..ATTEMPTS {
            let approval = self
                .as_approver(actor, &r, EVENT_ACCESS_APPROVED, "approve")
                .await?;
            r = self.settle(actor.origin, r).await?;
            if r.approvals
                .iter()
                .any(|a| counting_identity(&a.approver) == me)
            {
                return Ok(r);
            }
            if r.status != Status::Pending {
                return Err(RequestError::Conflict(format!(
                    "request {id} is {}: only a pending request can be approved",
                    r.status.as_str()
                )));
            }
            if digest != r.digest {
                let why = format!(
                    "{} sent a digest that does not match request {id}.",
                    actor.principal
                );
                return Err(self
                    .refuse(
                        actor,
                        EVENT_ACCESS_APPROVED,
                        &r,
                        why,
                        RequestError::DigestMismatch(id.to_owned()),
                    )
                    .await);
            }
            let now = Utc::now();
            let mut next = r.clone();
            next.version += 1;
            next.approvals.push(Given {
                approver: actor.principal.to_owned(),
                comment: comment.clone(),
                at: now,
            });
            let count = u32::try_from(next.approvals.len()).unwrap_or(u32::MAX);
            let message = if count >= r.min_approvals {
                next.status = Status::Approved;
                next.approved_at = Some(now);
                next.grant_expires_at =
                    Some(now + Duration::seconds(i64::from(approval.grant_ttl_seconds)));
                format!(
                    "{} approved request {id} of {} for profile {} ({count} of {}): approved until {}.",
                    actor.principal, r.requester, r.profile, r.min_approvals,
                    crate::time::format_time(next.grant_expires_at.unwrap_or(now))
                )
            } else {
                format!(
                    "{} approved request {id} of {} for profile {} ({count} of {}): still pending.",
                    actor.principal, r.requester, r.profile, r.min_approvals
                )
            };
            let rec = self.record(
                actor,
                EVENT_ACCESS_APPROVED,
                Outcome::Success,
                &next,
                message,
            );
            let changes = vec![
                self.store.put_item(&next, Some(r.version))?,
                self.store.approval_item(&r, &me)?,
            ];
            if self.store.commit(changes, &rec).await? {
                return Ok(next);
            }
            backoff(attempt).await;
            r = self.load(id).await?;
        }
        Err(busy())
    }

    /// A change by `actor` from a live status to `to` (deny, cancel).
    async fn end(
        &self,
        actor: &Actor<'_>,
        id: &str,
        to: Status,
        comment: Option<String>,
    ) -> Result<AccessRequest, RequestError> {
        let (event, verb) = match to {
            Status::Denied => (EVENT_ACCESS_DENIED, "deny"),
            _ => (EVENT_REQUEST_CANCELLED, "cancel"),
        };
        let mut r = self.load(id).await?;
        for attempt in 0..ATTEMPTS {
            if to == Status::Denied {
                self.as_approver(actor, &r, event, verb).await?;
            } else if r.requester_identity != actor.identity() {
                if !self.visible(actor, &r, &mut HashMap::new()).await? {
                    return Err(RequestError::NotFound);
                }
                let why = format!(
                    "{} may not cancel request {id} of {}.",
                    actor.principal, r.requester
                );
                let err = RequestError::Forbidden("only the requester may cancel a request".into());
                return Err(self.refuse(actor, event, &r, why, err).await);
            }
            r = self.settle(actor.origin, r).await?;
            if r.status.is_final() {
                return Err(RequestError::Conflict(format!(
                    "request {id} is {} already",
                    r.status.as_str()
                )));
            }
            let now = Utc::now();
            let mut next = r.clone();
            next.status = to;
            next.ended_at = Some(now);
            next.ended_by = Some(actor.principal.to_owned());
            next.comment = comment.clone();
            next.version += 1;
            let message = format!(
                "{} {} request {id} of {} for profile {}{}.",
                actor.principal,
                to.as_str(),
                r.requester,
                r.profile,
                comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            );
            let rec = self.record(actor, event, Outcome::Success, &next, message);
            if self
                .store
                .commit(vec![self.store.put_item(&next, Some(r.version))?], &rec)
                .await?
            {
                return Ok(next);
            }
            backoff(attempt).await;
            r = self.load(id).await?;
        }
        Err(busy())
    }

    /// `POST /v1/requests/{id}/deny` (an approver, not the requester).
    pub async fn deny(
        &self,
        actor: &Actor<'_>,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, RequestError> {
        self.end(actor, id, Status::Denied, comment).await
    }

    /// `DELETE /v1/requests/{id}` (the requester).
    pub async fn cancel(
        &self,
        actor: &Actor<'_>,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, RequestError> {
        self.end(actor, id, Status::Cancelled, comment).await
    }

    /// `POST /v1/requests/{id}/review`: an approver (not the requester) marks a break glass
    /// reviewed, after which its requester may break glass on that profile again.
    pub async fn review(
        &self,
        actor: &Actor<'_>,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, RequestError> {
        let mut r = self.load(id).await?;
        for attempt in 0..ATTEMPTS {
            self.as_approver(actor, &r, EVENT_BREAK_GLASS_REVIEWED, "review")
                .await?;
            r = self.settle(actor.origin, r).await?;
            if !r.break_glass {
                return Err(RequestError::Conflict(format!(
                    "request {id} is not a break glass request: only those are reviewed"
                )));
            }
            if let Some(by) = &r.reviewed_by {
                return Err(RequestError::Conflict(format!(
                    "request {id} was reviewed already, by {by}"
                )));
            }
            let now = Utc::now();
            let mut next = r.clone();
            next.reviewed_at = Some(now);
            next.reviewed_by = Some(actor.principal.to_owned());
            next.review_comment = comment.clone();
            next.version += 1;
            let rec = self.record(
                actor,
                EVENT_BREAK_GLASS_REVIEWED,
                Outcome::Success,
                &next,
                format!(
                    "{} reviewed the break glass {id} of {} on profile {}{}.",
                    actor.principal,
                    r.requester,
                    r.profile,
                    comment
                        .as_deref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                ),
            );
            let changes = vec![
                self.store.put_item(&next, Some(r.version))?,
                self.store.clear_break_glass(&r)?,
            ];
            if self.store.commit(changes, &rec).await? {
                return Ok(next);
            }
            backoff(attempt).await;
            r = self.load(id).await?;
        }
        Err(busy())
    }

    /// The scheduled run: every pending request past its expiry and every approved one past its
    /// grant is recorded `expired` (one item each, however many runs see it).
    pub async fn expire_due(
        &self,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<usize, RequestError> {
        let mut expired = 0;
        for status in [Status::Pending, Status::Approved] {
            for r in self.store.due(status, now).await? {
                if self.settle(origin, r).await?.status == Status::Expired {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }

    /// Issuance with `request_id`: the approved request of `principal` for `profile`, settled.
    pub async fn grant_for(
        &self,
        origin: &Origin,
        id: &str,
        profile: &ProfileName,
        principal: &str,
    ) -> Result<AccessRequest, RequestError> {
        let not_yours =
            || RequestError::Forbidden(format!("request {id} is not an access request of yours"));
        let Some(r) = self.store.get(id).await? else {
            return Err(not_yours());
        };
        if r.requester_identity != counting_identity(principal) {
            return Err(not_yours());
        }
        if r.profile != profile.as_str() {
            return Err(Invalid::new(
                "request_id",
                format!("is a request for profile {}, not {profile}", r.profile),
            )
            .into());
        }
        let r = self.settle(origin, r).await?;
        match r.status {
            Status::Approved => Ok(r),
            Status::Pending => Err(RequestError::ApprovalRequired(format!(
                "request {id} is pending: {} of {} approvals; wait for it (keysmith request --wait) and retry",
                r.approvals.len(), r.min_approvals
            ))),
            Status::Issued => Err(RequestError::Conflict(format!(
                "request {id} was used already (lease {}): an approval issues once; request again",
                r.lease_id.as_deref().unwrap_or("?")
            ))),
            other => Err(RequestError::Conflict(format!("request {id} is {}: request again", other.as_str()))),
        }
    }

    /// The write that marks `r` issued with `lease_id`, for the issuance's activation transaction:
    /// it holds only if `r` is still approved as read and its grant has not ended, so a request
    /// issues once, and a failed issuance (which never commits it) leaves the grant usable.
    pub fn issued_item(
        &self,
        r: &AccessRequest,
        lease_id: &str,
    ) -> Result<TransactWriteItem, RequestError> {
        let mut next = r.clone();
        next.status = Status::Issued;
        next.lease_id = Some(lease_id.to_owned());
        next.ended_at = Some(Utc::now());
        next.version += 1;
        self.store.put_item(&next, Some(r.version))
    }

    /// `GET /v1/requests`: admins see all; anyone else their own and those they may approve.
    /// A page reads at most `limit` items a round and a few rounds, so it may hold fewer than
    /// `limit` with a `next` to follow.
    pub async fn list(
        &self,
        actor: &Actor<'_>,
        status: Option<Status>,
        profile: Option<&ProfileName>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<(Vec<AccessRequest>, Option<String>), RequestError> {
        let (mut phase, mut start) = match next {
            None => (0, None),
            Some(n) => {
                let (p, k) = store::decode_cursor(n)
                    .ok_or_else(|| Invalid::new("next", "is not a cursor from a previous page"))?;
                (p, (!k.is_empty()).then_some(k))
            }
        };
        let me = actor.identity();
        let union = !actor.admin && status.is_none() && profile.is_none();
        // (index, status filter on the profile index)
        let index_of = |phase: u8| match (profile, status) {
            (Some(p), s) => (Index::Profile(p.to_string()), s),
            (None, Some(s)) => (Index::Status(s), None),
            (None, None) if actor.admin => (Index::All, None),
            (None, None) if phase == 0 => (Index::Owner(me.clone()), None),
            (None, None) => (Index::Status(Status::Pending), None),
        };
        if phase > u8::from(union) {
            return Err(Invalid::new("next", "is not a cursor of this query").into());
        }
        let now = Utc::now();
        let mut cache = HashMap::new();
        let mut found = Vec::new();
        for _round in 0..8 {
            let (index, filter) = index_of(phase);
            let (items, last) = self
                .store
                .page(&index, filter, limit - found.len(), start.take())
                .await?;
            for r in items {
                let keep = match (union, phase) {
                    (true, 1) => {
                        r.requester_identity != me
                            && self.approves(actor, &r.profile, &mut cache).await?
                    }
                    _ => self.visible(actor, &r, &mut cache).await?,
                };
                // A status filter means the status a reader sees (an overdue request is expired).
                if keep && status.is_none_or(|s| r.status_at(now) == s) {
                    found.push(r);
                }
            }
            start = last;
            if start.is_none() {
                if union && phase == 0 {
                    phase = 1;
                    if found.len() >= limit {
                        return Ok((found, Some(store::encode_cursor(1, &HashMap::new()))));
                    }
                    continue;
                }
                return Ok((found, None));
            }
            if found.len() >= limit {
                break;
            }
        }
        Ok((found, start.map(|k| store::encode_cursor(phase, &k))))
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
