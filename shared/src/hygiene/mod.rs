//! Key hygiene and incident response (SPEC §15): the unused and old key report ([`report`]),
//! the keys it must never touch ([`protected`]), undoing its deactivations ([`reactivate`]), and
//! the answer to AWS quarantining a key ([`quarantine`]). "Which key is this?" is `crate::keys`.

mod protected;
pub mod quarantine;
mod reactivate;
mod report;

pub use protected::Holdings;
pub use reactivate::{
    complete_reactivations, request_reactivation, Pending, Reactivation, EVENT_REACTIVATED,
    EVENT_REACTIVATION_REQUESTED,
};
pub use report::{report, Limits, OldKey, EVENT_OLD_KEY, EVENT_UNUSED_KEY};

use crate::audit::AuditError;
use crate::aws::AwsFailure;

/// The report deactivated the key (and only this event lets `keys reactivate` undo it).
pub const EVENT_DEACTIVATED: &str = "Access Key Deactivated";
/// An IAM user tagged with this key (the value the reason, required) is never acted on.
pub const EXEMPT_TAG: &str = "keysmith:exempt";

#[derive(Debug, thiserror::Error)]
pub enum HygieneError {
    #[error("IAM could not be read or changed: {0}")]
    Iam(AwsFailure),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("IAM has no access key {0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
}
