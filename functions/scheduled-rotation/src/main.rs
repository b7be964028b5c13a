//! scheduled-rotation: the hourly EventBridge job, the 3-minute lease sweep, the 5-minute audit
//! seal, rotate-now's
//! asynchronous `Rotation Requested` event, and RotationQueue's batches (SPEC §14), in front of
//! `keysmith::jobs`.
// The handlers' futures nest deeply (SDK calls inside use cases inside the runtime); a clean
// non-incremental build measures their layout past the default limit of 128.
#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use keysmith::audit::Origin;
use keysmith::jobs::{self, Job};
use keysmith::{App, Jobs};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keysmith::logging::init();
    let services = &Jobs::from_env_or_exit().await;
    let app = &services.app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let origin = Origin {
            principal: "keysmith:scheduled-rotation".into(),
            request_id: event.context.request_id.clone(),
            region: app.region.clone(),
            ..Origin::default()
        };
        // The event source mapping's batches carry `Records`; everything else is EventBridge's.
        if event.payload.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(event.payload)?;
            return Ok::<Value, Error>(queue_batch(app, &batch, &origin).await);
        }
        let event: EventBridgeEvent<Value> = serde_json::from_value(event.payload)?;
        scheduled(services, &event, &origin).await
    }))
    .await
}

async fn scheduled(
    services: &Jobs,
    event: &EventBridgeEvent<Value>,
    origin: &Origin,
) -> Result<Value, Error> {
    let app = &services.app;
    let now = chrono::Utc::now();
    // SPEC §15: IAM's CloudTrail events and GuardDuty findings, by their rules.
    if let Some(exposure) =
        keysmith::hygiene::quarantine::Exposure::of(&event.source, &event.detail)
    {
        let report = jobs::quarantine(app, &exposure, now, origin).await?;
        tracing::info!(report = %report, "quarantine response done");
        return Ok(report);
    }
    let report = match Job::of(&event.detail) {
        Job::Canary => return Ok(jobs::canary(app, origin).await),
        Job::Seal => {
            let report = jobs::seal(&services.sealer, now).await?;
            tracing::info!(report = %report, "sealing done");
            return Ok(report);
        }
        Job::Sweep => jobs::sweep(app, now, origin).await?,
        // Rotate-now's event runs the rotations only; the hourly Scheduled Event runs it all.
        Job::Full if event.detail_type == keysmith::rotation::ROTATION_REQUESTED => {
            jobs::run_rotations(app, now, origin).await?
        }
        Job::Full => jobs::run(app, now, origin).await?,
    };
    let report = report.to_json();
    tracing::info!(report = %report, "scheduled run done");
    Ok(report)
}

async fn queue_batch(app: &App, batch: &SqsEvent, origin: &Origin) -> Value {
    let queue = app.config.rotation_queue_url.as_deref();
    let report = jobs::work(app, queue, &batch.records, origin).await;
    tracing::info!(
        rotated = report.rotated.len(),
        skipped = report.skipped.len(),
        deferred = report.deferred.len(),
        failed = report.failures.len(),
        "queue batch done"
    );
    report.batch_response()
}
