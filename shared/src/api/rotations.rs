//! Rotation policy routes (admin), and rotate-now.

use serde_json::{json, Value};

use super::request::{limit, Reply, Request};
use super::ApiError;
use crate::audit::{AuditRecord, Category, Outcome};
use crate::aws::FailureKind;
use crate::names::{Invalid, ProfileName};
use crate::rotation::policy::Policy;
use crate::rotation::RotationError;
use crate::rotation::{self, PolicyRotationError};
use crate::{Api, App};

pub(super) async fn put(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.require_admin(app, "change rotation policies").await?;
    let policy = Policy::parse(name, &req.body)?;
    // The secret must exist and name a user before anything is stored.
    let user = app
        .rotator
        .user_of(&policy.secret_id)
        .await
        .map_err(|e| match e {
            RotationError::BadSecret { reason, .. } => {
                Invalid::new("secret_id", format!("is not a rotatable secret: {reason}")).into()
            }
            RotationError::Aws { failure, .. } if failure.kind == FailureKind::NotFound => {
                Invalid::new("secret_id", "does not exist").into()
            }
            e => ApiError::from(PolicyRotationError::from(e)),
        })?;
    let now = chrono::Utc::now();
    let (created, stored) = app
        .policies
        .put(&policy, now, |created| {
            let (event, verb) = if created {
                ("Rotation Policy Created", "created")
            } else {
                ("Rotation Policy Replaced", "replaced")
            };
            AuditRecord::new(
                &req.origin,
                Category::Config,
                event,
                Outcome::Success,
                format!(
                    "Rotation policy {} {verb} for secret {} (user {user}).",
                    policy.name, policy.secret_id
                ),
            )
            .profile(policy.name.as_str())
        })
        .await?;
    Ok(Reply::json(
        if created { 201 } else { 200 },
        stored.to_json(now),
    ))
}

pub(super) async fn get(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.require_admin(app, "read rotation policies").await?;
    let policy = app
        .policies
        .get(name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("rotation policy {name} not found")))?;
    Ok(Reply::json(200, policy.to_json(chrono::Utc::now())))
}

pub(super) async fn list(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let q = req.query(&["limit", "next"])?;
    req.require_admin(app, "list rotation policies").await?;
    let limit = limit(q("limit"), 50, 100)?;
    let next = q("next")
        .map(|n| ProfileName::parse("next", n))
        .transpose()?;
    let (policies, next) = app
        .policies
        .list(limit, next.as_ref().map(ProfileName::as_str))
        .await?;
    let now = chrono::Utc::now();
    let policies: Vec<Value> = policies.iter().map(|p| p.to_json(now)).collect();
    Ok(Reply::json(
        200,
        json!({"rotations": policies, "next": next}),
    ))
}

pub(super) async fn delete(app: &App, req: &Request, name: ProfileName) -> Result<Reply, ApiError> {
    req.no_query()?;
    req.no_body()?;
    req.require_admin(app, "delete rotation policies").await?;
    let record = AuditRecord::new(
        &req.origin,
        Category::Config,
        "Rotation Policy Deleted",
        Outcome::Success,
        format!("Rotation policy {name} deleted."),
    )
    .profile(name.as_str());
    app.policies.delete(name.as_str(), &record).await?;
    Ok(Reply::empty(204))
}

/// Asynchronous (SPEC §6): marks the policy requested and answers `202`; scheduled-rotation does
/// the rotation, so this function holds no right to create or delete keys or to write secrets.
pub(super) async fn rotate_now(
    api: &Api,
    req: &Request,
    name: ProfileName,
) -> Result<Reply, ApiError> {
    let app = &api.app;
    req.no_query()?;
    req.empty_or_empty_object()?;
    req.require_admin(app, "rotate keys").await?;
    let wake = match &app.config.rotation_queue_url {
        Some(url) => rotation::Wake::Queue {
            sqs: &app.clients.sqs,
            url,
        },
        None => rotation::Wake::Nobody,
    };
    let policy = rotation::request_now(&app.policies, wake, name.as_str(), &req.origin).await?;
    Ok(Reply::json(202, policy.to_json(chrono::Utc::now())))
}
