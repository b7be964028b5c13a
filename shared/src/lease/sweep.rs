//! The sweep: ends due leases (expired `iam_user` ones, unfinished issuances of any type) and gives
//! back the count of expired STS leases.

use chrono::{DateTime, Utc};

use super::store::End;
use super::{Lease, LeaseError, LeaseStatus, Leases, PK};
use crate::audit::{AuditLog, Origin, Outcome};
use crate::state::due_items;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevokeReport {
    pub revoked: Vec<String>,
    /// STS leases past their expiry whose count was given back.
    pub expired: usize,
    pub failed: Vec<(String, String)>,
}

impl Leases {
    /// Live leases due at or before `now` (expired, or pending past the grace), from the `due`
    /// index (no scan).
    pub async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<Lease>, LeaseError> {
        let items = due_items(&self.db, &self.table, PK, now)
            .await
            .map_err(LeaseError::Store)?;
        Ok(items.iter().filter_map(Lease::from_item).collect())
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
                // An STS lease at its expiry: out of the `due` index, its count given back.
                // Nothing to audit: nothing changes in AWS.
                (true, false) => {
                    match self.end(&lease, now, End::Expired).await {
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
                (true, true) => self.end(&lease, now, End::Revoked).await,
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
