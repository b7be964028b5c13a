//! `POST /v1/profiles/{name}/credentials`: the one route that hands out secrets.

use serde_json::json;

use super::request::{Reply, Request};
use super::ApiError;
use crate::audit::{self, AuditRecord, AuditedWriteError, Category, Outcome};
use crate::issue::{Issuance, IssueError};
use crate::names::{Invalid, ProfileName};
use crate::profile::StoreError;
use crate::{Api, App};

pub(super) async fn issue(api: &Api, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    let app = &api.app;
    let q = req.query(&["format"])?;
    let credential_process = match q("format") {
        None | Some("json") => false,
        Some("credential_process") => true,
        Some(_) => return Err(Invalid::new("format", "must be json or credential_process").into()),
    };
    let caller = &req.caller.principal;
    let profile = match app.profiles.get(&name).await {
        Ok(Some(profile)) => profile,
        Ok(None) if req.is_admin(app) => {
            return Err(ApiError::NotFound(format!("profile {name} not found")))
        }
        // Nobody learns which profiles exist by probing: the same answer as a forbidden one.
        Ok(None) => {
            let why = format!("{caller} asked for profile {name}, which does not exist.");
            return Err(deny(app, req, &name, None, why).await);
        }
        Err(StoreError::Outdated(o)) => {
            tracing::warn!(profile = %name, reason = %o.reason, "stored profile breaks a rule of this version: refused until an admin saves it again");
            let why = format!(
                "Profile {name} is refused until an admin saves it again: {}.",
                o.reason
            );
            return Err(deny(app, req, &name, None, why).await);
        }
        Err(e) => return Err(e.into()),
    };
    let ty = profile.credential_type().as_str();
    let record = |outcome: Outcome, message: String| {
        let mut r = AuditRecord::new(
            &req.origin,
            Category::Data,
            audit::EVENT_ISSUE,
            outcome,
            message,
        )
        .profile(name.as_str());
        r.credential_type = Some(ty.to_owned());
        r
    };

    if !profile.allows(&req.caller.principals) {
        let why = format!("{caller} is not in allowed_principals of profile {name}.");
        return Err(deny(app, req, &name, Some(ty), why).await);
    }
    // Only after the allowed_principals check: anyone else gets the same `403 forbidden` as for
    // a profile that does not exist, so the switch tells a stranger nothing.
    if !profile.enabled {
        let why = format!("{caller} asked for profile {name}, which is switched off.");
        let r = record(Outcome::Denied, why);
        app.audit.write(&r).await?;
        return Err(ApiError::ProfileDisabled(name.to_string()));
    }
    let issuance = Issuance::parse(&profile, &req.body)?;
    let issued = match api
        .issuer
        .issue(&profile, &issuance, &req.caller.principal)
        .await
    {
        Ok(issued) => issued,
        Err(e) => {
            let mut r = record(Outcome::Failed, format!("Issuing credentials failed: {e}"));
            r.duration_seconds = Some(issuance.duration.get());
            app.audit.write(&r).await?;
            return Err(e.into());
        }
    };

    let lease_id = issued.lease_id.clone();
    let mut r = record(Outcome::Success, audit::MESSAGE_ISSUED.to_owned());
    r.origin.region = issued.region.clone();
    r.duration_seconds = Some(issuance.duration.get());
    r.access_key_id = Some(issued.credentials.access_key_id.clone());
    r.lease_id = Some(lease_id.clone());
    // Credentials are returned only once the trail holds them and their lease is active: both
    // in one transaction. Otherwise the lease is ended (a dynamic IAM user deleted at once; STS
    // credentials nobody received expire unused) and nothing is handed out.
    let lease = &issued.lease;
    let written =
        match app
            .leases
            .activate_item(lease, &issued.credentials.access_key_id, issued.expiration)
        {
            Err(e) => Err(ApiError::from(e)),
            Ok(activate) => match app.audit.write_with(vec![activate], &r).await {
                Ok(()) => Ok(()),
                // The audit item's id is fresh, so the lease was no longer pending: the sweep ended
                // an issuance that outlived its budget.
                Err(AuditedWriteError::Conflict) => Err(ApiError::from(IssueError::OverBudget(
                    crate::lease::ISSUE_BUDGET.as_secs(),
                ))),
                Err(AuditedWriteError::Store(f)) => Err(super::error::upstream(&f)),
                Err(AuditedWriteError::Audit(_)) => Err(ApiError::AuditUnavailable),
            },
        };
    if let Err(e) = written {
        if let Err(cleanup) = app.leases.abandon(lease).await {
            tracing::warn!(lease_id = %lease.id, error = %cleanup, "ending an unaudited lease failed; it stays due for the sweep");
        }
        return Err(e);
    }
    tracing::info!(
        profile = %name,
        principal = %req.caller.principal,
        access_key_id = %issued.credentials.access_key_id,
        lease_id = %lease_id,
        "credentials issued"
    );

    let c = &issued.credentials;
    let token = c.session_token.as_ref().map(|t| t.expose());
    let expiration = issued.expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = if credential_process {
        json!({
            "Version": 1,
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key.expose(),
            "SessionToken": token,
            "Expiration": expiration,
        })
    } else {
        json!({
            "access_key_id": c.access_key_id,
            "secret_access_key": c.secret_access_key.expose(),
            "session_token": token,
            "expiration": expiration,
            "lease_id": lease_id,
            "lease_duration": issuance.duration.get(),
            "profile": name.as_str(),
            "credential_type": ty,
        })
    };
    Ok(Reply::json(200, body))
}

/// A refused issuance: audited as denied (with the real reason, for admins), answered with one
/// sentence that is the same whatever the reason, so a refusal tells the caller nothing more.
async fn deny(
    app: &App,
    req: &Request,
    name: &ProfileName,
    credential_type: Option<&str>,
    why: String,
) -> ApiError {
    let mut r = AuditRecord::new(
        &req.origin,
        Category::Data,
        audit::EVENT_ISSUE,
        Outcome::Denied,
        why,
    )
    .profile(name.as_str());
    r.credential_type = credential_type.map(str::to_owned);
    match app.audit.write(&r).await {
        Ok(()) => ApiError::Forbidden(format!("you may not use profile {name}")),
        Err(e) => e.into(),
    }
}
