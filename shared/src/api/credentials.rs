//! `POST /v1/profiles/{name}/credentials`: the one route that hands out secrets. It parses the
//! request and shapes the answer; [`crate::issue::Issuing`] decides and issues.

use serde_json::json;

use super::request::{Reply, Request};
use super::ApiError;
use crate::issue::{Granted, Requester};
use crate::names::{Invalid, ProfileName};
use crate::Api;

pub(super) async fn issue(api: &Api, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    let q = req.query(&["format"])?;
    let credential_process = match q("format") {
        None | Some("json") => false,
        Some("credential_process") => true,
        Some(_) => return Err(Invalid::new("format", "must be json or credential_process").into()),
    };
    let issuing = api.app.issuing(&api.issuer);
    let who = Requester {
        origin: &req.origin,
        principal: &req.caller.principal,
        principals: &req.caller.principals,
        admin: req.is_admin(&api.app),
    };
    let Granted {
        issued,
        issuance,
        credential_type,
    } = issuing.issue(&name, &req.body, &who).await?;

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
            "lease_id": issued.lease_id,
            "lease_duration": issuance.duration.get(),
            "profile": name.as_str(),
            "credential_type": credential_type.as_str(),
        })
    };
    Ok(Reply::json(200, body))
}
