//! Profile routes (admin): create or replace, read, list, delete.

use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::audit::{AuditRecord, Category, Level, Outcome};
use crate::names::ProfileName;
use crate::profile::{Outdated, Profile, Saved, StoreError};
use crate::App;

pub(super) async fn put(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.require_admin(app, "change profiles").await?;
    let profile = Profile::parse(name, &req.body)?;
    profile.check_lease_boundary(&app.config.lease_boundary_arns)?;
    crate::profile::check_lease_groups(&app.clients.iam, &profile, &app.config.lease_group_path)
        .await
        .map_err(|f| super::error::upstream(&f))??;
    // Parsed above, so the body is a JSON object: does it set the kill switch at all?
    let enabled_given =
        serde_json::from_slice::<Value>(&req.body).is_ok_and(|body| body.get("enabled").is_some());
    let ty = profile.credential_type().as_str();
    let (saved, stored) = app
        .profiles
        .put(&profile, enabled_given, |saved, was_enabled, stored| {
            // The kill switch's transitions are audited as such (SPEC §10), not as an edit.
            let (event, verb) = match (saved, was_enabled, stored.enabled) {
                (Saved::Created, ..) => ("Profile Created", "created"),
                (Saved::Replaced, Some(true), false) => ("Profile Disabled", "disabled"),
                (Saved::Replaced, Some(false), true) => ("Profile Enabled", "enabled"),
                (Saved::Replaced, ..) => ("Profile Replaced", "replaced"),
            };
            let mut r = AuditRecord::new(
                &req.origin,
                Category::Config,
                event,
                Outcome::Success,
                format!("Profile {} {verb}.", stored.name),
            )
            .profile(stored.name.as_str());
            if event == "Profile Disabled" {
                r.level = Level::Warn;
            }
            r.credential_type = Some(ty.to_owned());
            r
        })
        .await?;
    let status = if saved == Saved::Created { 201 } else { 200 };
    Ok(Reply::json(status, stored.to_json()))
}

pub(super) async fn get(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.require_admin(app, "read profiles").await?;
    // An outdated profile is shown as stored, with what must change, so an admin can fix it.
    match app.profiles.get(&name).await {
        Ok(Some(profile)) => Ok(Reply::json(200, profile.to_json())),
        Ok(None) => Err(ApiError::NotFound(format!("profile {name} not found"))),
        Err(StoreError::Outdated(o)) => Ok(Reply::json(200, o.to_json())),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn list(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&["limit", "next"])?;
    req.require_admin(app, "list profiles").await?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next")
        .map(|n| ProfileName::parse("next", n))
        .transpose()?;
    let (profiles, next) = app.profiles.list(limit, next.as_ref()).await?;
    let profiles: Vec<Value> = profiles
        .iter()
        .map(|p| p.as_ref().map_or_else(Outdated::to_json, Profile::to_json))
        .collect();
    Ok(Reply::json(
        200,
        json!({"profiles": profiles, "next": next}),
    ))
}

pub(super) async fn delete(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.no_body()?;
    req.require_admin(app, "delete profiles").await?;
    let record = AuditRecord::new(
        &req.origin,
        Category::Config,
        "Profile Deleted",
        Outcome::Success,
        format!("Profile {name} deleted."),
    )
    .profile(name.as_str());
    app.profiles.delete(&name, &record).await?;
    Ok(Reply::empty(204))
}
