//! The quarantine response as a job: an EventBridge event from IAM (CloudTrail) or GuardDuty, the
//! exposure it reports answered by `hygiene::quarantine`. A failure fails the invocation, so
//! EventBridge's asynchronous retries finish the (idempotent) response.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::Origin;
use crate::hygiene::quarantine::{Exposure, Responders, Response};
use crate::hygiene::HygieneError;
use crate::App;

pub async fn quarantine(
    app: &App,
    exposure: &Exposure,
    now: DateTime<Utc>,
    origin: &Origin,
) -> Result<Value, HygieneError> {
    let issuer = app.issuer();
    // The quarantine policy denies the user acting on its own keys: rotate as Keysmith.
    let rotator = app.rotator.acting_as_itself();
    let responders = Responders {
        iam: &app.clients.iam,
        audit: &app.audit,
        policies: &app.policies,
        rotator: &rotator,
        revoker: app.revoker(&issuer),
        state_table: &app.config.state_table,
    };
    let done = responders.respond(exposure, now, origin).await?;
    Ok(json!({
        "quarantine": done.iter().map(|(key, response)| match response {
            Response::Rotated { policy, new_access_key_id } => json!({"access_key_id": key,
                "action": "deactivated", "policy": policy, "new_access_key_id": new_access_key_id}),
            Response::LeaseRevoked { lease_id } => json!({"access_key_id": key,
                "action": "lease_revoked", "lease_id": lease_id}),
            Response::Unknown => json!({"access_key_id": key, "action": "none"}),
        }).collect::<Vec<_>>(),
    }))
}
