//! Decisions on a request: approve (each approver once; the approval that reaches
//! `min_approvals` approves), deny, cancel, and the review of a break glass.

use std::collections::HashMap;

use chrono::{Duration, Utc};

use super::{busy, AccessRequest, Actor, Given, RequestError, Requests, Status, ATTEMPTS};
use crate::audit::{
    Outcome, EVENT_ACCESS_APPROVED, EVENT_ACCESS_DENIED, EVENT_BREAK_GLASS_REVIEWED,
    EVENT_REQUEST_CANCELLED,
};
use crate::lease::counting_identity;

impl Requests<'_> {
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
            let once = vec![self.store.approval_item(&r, &me)?];
            if let Some(done) = self.write_next(&r, next, &rec, once, Some(attempt)).await? {
                return Ok(done);
            }
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
            if let Some(done) = self
                .write_next(&r, next, &rec, Vec::new(), Some(attempt))
                .await?
            {
                return Ok(done);
            }
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
            let unblock = vec![self.store.clear_break_glass(&r)?];
            if let Some(done) = self
                .write_next(&r, next, &rec, unblock, Some(attempt))
                .await?
            {
                return Ok(done);
            }
            r = self.load(id).await?;
        }
        Err(busy())
    }
}
