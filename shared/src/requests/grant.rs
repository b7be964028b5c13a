//! What issuance asks of a request (SPEC §12): the caller's approved request for the profile,
//! and the write that marks it issued in the issuance's own transaction.

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::Utc;

use super::{AccessRequest, RequestError, Requests, Status};
use crate::audit::Origin;
use crate::lease::counting_identity;
use crate::names::{Invalid, ProfileName};

impl Requests<'_> {
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
}
