//! `POST /v1/requests`: a request (pending), or a break glass (approved at once, loudly).

use chrono::Duration;

use super::{
    new_id, now_micros, text, ticket_note, unreviewed, AccessRequest, Actor, Bound, NewRequest,
    RequestError, Requests, Status, MAX_REASON, MAX_TICKET,
};
use crate::audit::{
    AuditRecord, Category, Level, Outcome, EVENT_ACCESS_REQUESTED, EVENT_BREAK_GLASS_USED,
};
use crate::names::{DurationSeconds, Invalid};

impl Requests<'_> {
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
}
