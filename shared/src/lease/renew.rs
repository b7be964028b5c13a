//! Renewing a live `iam_user` lease (SPEC §16): its owner or an admin moves its end later, never
//! past `max_duration_seconds` after its creation. STS credentials cannot be extended (`409`).
//!
//! Order: IAM's `keysmith-lease-expiry` first, then the lease record and its `Lease Renewed`
//! audit item in one transaction. A failure between the two leaves IAM allowing longer than the
//! record, so the sweep still deletes the user at the old end: the renewal simply did not happen
//! (unaudited, an error answered), and repeating it converges. A lease with a minute or less left
//! is not renewed: the sweep may already have read it as due, and would end it after a renewal.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::{DateTime, Duration, Utc};

use super::{build_err, key, Lease, LeaseError, LeaseStatus, Leases};
use crate::audit::{
    format_time, AuditError, AuditLog, AuditRecord, AuditedWriteError, Category, Origin, Outcome,
};
use crate::aws::AwsFailure;
use crate::names::{DurationSeconds, Invalid, ProfileName};
use crate::profile::{ProfileStore, StoreError};

pub const EVENT_LEASE_RENEWED: &str = "Lease Renewed";
/// A lease is renewed only while it has more than this left (see the module's note).
pub const RENEW_MARGIN: Duration = Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("only the lease's owner or an admin may renew it")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("profile {0} is switched off (enabled: false); ask an admin")]
    Disabled(ProfileName),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Profile(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit trail is unavailable, so nothing was renewed")]
    AuditUnavailable,
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
}

/// Who asks.
pub struct Renewer<'a> {
    pub origin: &'a Origin,
    pub admin: bool,
}

impl Leases {
    /// Renews lease `id` to end `duration` (the profile's default when `None`) from now.
    pub async fn renew(
        &self,
        profiles: &ProfileStore,
        audit: &AuditLog,
        id: &str,
        duration: Option<i64>,
        who: Renewer<'_>,
    ) -> Result<Lease, RenewError> {
        let lease = self.get(id).await?;
        let caller = &who.origin.principal;
        if lease.principal != *caller && !who.admin {
            let mut r = renewal_record(&lease, who.origin, Outcome::Denied);
            r.message = format!("{caller} may not renew a lease of {}.", lease.principal);
            audit.write(&r).await?;
            return Err(RenewError::Forbidden);
        }
        if lease.is_sts() {
            return Err(RenewError::Conflict(format!(
                "lease {} holds STS credentials, which cannot be extended: issue new ones",
                lease.id
            )));
        }
        let now = Utc::now();
        if lease.status != LeaseStatus::Active || lease.expires_at <= now + RENEW_MARGIN {
            return Err(RenewError::Conflict(format!(
                "lease {} is not live (or ends within a minute): issue new credentials",
                lease.id
            )));
        }
        let name = ProfileName::parse("profile", &lease.profile)?;
        let Some(profile) = profiles.get(&name).await? else {
            return Err(RenewError::Conflict(format!(
                "profile {name} no longer exists"
            )));
        };
        if !profile.enabled {
            return Err(RenewError::Disabled(name));
        }
        let seconds = match duration {
            None => profile.default_duration,
            Some(d) => DurationSeconds::parse(
                "duration_seconds",
                d,
                DurationSeconds::MIN,
                profile.duration_limit(),
            )?,
        };
        let until = truncate(now + Duration::seconds(i64::from(seconds.get())));
        let limit = lease.created_at + Duration::seconds(i64::from(profile.duration_limit()));
        if until > limit {
            return Err(Invalid::new(
                "duration_seconds",
                format!(
                    "would end the lease after {}: max_duration_seconds ({}) after its creation",
                    format_time(limit),
                    profile.duration_limit()
                ),
            )
            .into());
        }
        // SPEC §12: a lease issued on an access request never outlives the request's grant.
        if let Some(grant_end) = lease.not_after.filter(|end| until > *end) {
            return Err(Invalid::new(
                "duration_seconds",
                format!(
                    "would end the lease after {}, when the grant of the access request it was issued on ends",
                    format_time(grant_end)
                ),
            )
            .into());
        }
        if until <= lease.expires_at {
            return Err(Invalid::new(
                "duration_seconds",
                format!(
                    "must end the lease after its current expiration, {}",
                    format_time(lease.expires_at)
                ),
            )
            .into());
        }
        self.users
            .set_expiry(&lease.user_name, until)
            .await
            .map_err(LeaseError::from)?;
        let mut r = renewal_record(&lease, who.origin, Outcome::Success);
        r.message = format!(
            "Lease {} renewed until {} (was {}); IAM user {}'s {} rewritten.",
            lease.id,
            format_time(until),
            format_time(lease.expires_at),
            lease.user_name,
            crate::users::EXPIRY_POLICY
        );
        r.duration_seconds = Some(seconds.get());
        let extend = self.extend_item(&lease, until, now)?;
        match audit.write_with(vec![extend], &r).await {
            Ok(()) => {}
            Err(AuditedWriteError::Conflict) => {
                return Err(RenewError::Conflict(format!(
                    "lease {} changed while it was being renewed (revoked, ended or renewed): read it again",
                    lease.id
                )))
            }
            Err(AuditedWriteError::Store(f)) => return Err(RenewError::Store(f)),
            Err(AuditedWriteError::Audit(_)) => return Err(RenewError::AuditUnavailable),
        }
        Ok(Lease {
            expires_at: until,
            ..lease
        })
    }

    /// The write that moves an active lease's end (and its due time), only if nothing changed
    /// it since it was read and it still has more than [`RENEW_MARGIN`] left.
    fn extend_item(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, LeaseError> {
        let s = |v: String| AttributeValue::S(v);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.id)))
            .update_expression("SET due_at = :until, lease_expires_at = :until")
            .condition_expression(
                "#s = :active AND lease_expires_at = :old AND lease_expires_at > :soon",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":active", s("active".into()))
            .expression_attribute_values(":old", s(format_time(lease.expires_at)))
            .expression_attribute_values(":soon", s(format_time(now + RENEW_MARGIN)))
            .expression_attribute_values(":until", s(format_time(until)))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn renewal_record(lease: &Lease, origin: &Origin, outcome: Outcome) -> AuditRecord {
    let mut r = AuditRecord::new(
        origin,
        Category::Data,
        EVENT_LEASE_RENEWED,
        outcome,
        String::new(),
    )
    .profile(&lease.profile);
    r.credential_type = Some(lease.credential_type.as_str().to_owned());
    r.lease_id = Some(lease.id.clone());
    r.access_key_id = lease.access_key_id.clone();
    r
}

/// Whole seconds: the expiry policy and the record say the same instant.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}
