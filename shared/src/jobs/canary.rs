//! The canary (SPEC §15, `{"job": "canary"}`, hourly): issues credentials from
//! `KEYSMITH_CANARY_PROFILE` the way the API does (audited, leased), proves them with
//! `sts:GetCallerIdentity`, and revokes the lease — so the whole path, revocation included, is
//! exercised every hour. It emits `CanaryLatency` (milliseconds, the whole round) and
//! `CanaryFailure` (0 or 1: an alarm watches failures and missing data).
//!
//! The canary asks as principal `keysmith:canary` in group `keysmith-canary`: the profile lets it
//! in with `"allowed_principals": ["group:keysmith-canary"]`.

use std::time::Instant;

use serde_json::{json, Value};

use crate::audit::Origin;
use crate::issue::Requester;
use crate::names::ProfileName;
use crate::ops::{self, Metric};
use crate::revocation::Actor;
use crate::App;

pub const CANARY_PRINCIPAL: &str = "keysmith:canary";
pub const CANARY_GROUP: &str = "group:keysmith-canary";

/// One canary round; the report says what happened (a failure is reported and measured, not
/// raised: a retried invocation would only repeat it).
pub async fn canary(app: &App, origin: &Origin) -> Value {
    let Some(profile) = app.config.canary_profile.clone() else {
        return json!({"canary": "off", "reason": "KEYSMITH_CANARY_PROFILE is not set"});
    };
    let started = Instant::now();
    let result = round(app, &profile, origin).await;
    let millis = started.elapsed().as_millis() as f64;
    ops::measure(Metric::CanaryLatency, millis);
    ops::measure(
        Metric::CanaryFailure,
        if result.is_ok() { 0.0 } else { 1.0 },
    );
    match result {
        Ok((lease_id, arn)) => json!({"canary": "ok", "profile": profile.as_str(),
            "lease_id": lease_id, "caller": arn, "latency_ms": millis}),
        Err(step) => {
            tracing::error!(profile = %profile, failure = %step, "the canary failed");
            json!({"canary": "failed", "profile": profile.as_str(), "error": step, "latency_ms": millis})
        }
    }
}

/// Issue, prove, revoke; the error names the step that failed.
async fn round(
    app: &App,
    profile: &ProfileName,
    origin: &Origin,
) -> Result<(String, String), String> {
    let issuer = app.issuer();
    let principals = [CANARY_PRINCIPAL.to_owned(), CANARY_GROUP.to_owned()];
    let canary_origin = Origin {
        principal: CANARY_PRINCIPAL.into(),
        ..origin.clone()
    };
    let who = Requester {
        origin: &canary_origin,
        principal: CANARY_PRINCIPAL,
        principals: &principals,
        admin: false,
    };
    let granted = app
        .issuing(&issuer)
        .issue(profile, b"{\"duration_seconds\": 900}", &who)
        .await
        .map_err(|e| format!("issue: {e}"))?;
    let lease_id = granted.issued.lease_id.clone();
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&app.clients.sdk)
            .credentials_provider(granted.issued.credentials.provider())
            .build(),
    );
    let proved = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("prove: {}", crate::aws::classify(e)))
        .map(|out| out.arn.unwrap_or_default());
    // Revoked whether or not the proof worked: the canary leaves nothing live behind.
    let revoker = app.revoker(&issuer);
    let actor = Actor {
        origin: &canary_origin,
        admin: true,
        reason: Some("the canary's round is over"),
    };
    let revoked = revoker
        .revoke_lease(&lease_id, actor)
        .await
        .map_err(|e| format!("revoke lease {lease_id}: {e}"));
    let arn = proved?;
    revoked?;
    Ok((lease_id, arn))
}
