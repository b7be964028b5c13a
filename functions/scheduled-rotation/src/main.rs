//! scheduled-rotation: the hourly EventBridge job, the 3-minute lease sweep, and rotate-now's
//! asynchronous `Rotation Requested` event, in front of `keysmith::jobs`.
// The handlers' futures nest deeply (SDK calls inside use cases inside the runtime); a clean
// non-incremental build measures their layout past the default limit of 128.
#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use keysmith::audit::Origin;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = &keysmith::App::from_env_or_exit().await;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| async move {
            let origin = Origin {
                principal: "keysmith:scheduled-rotation".into(),
                request_id: event.context.request_id.clone(),
                region: app.region.clone(),
                ..Origin::default()
            };
            let now = chrono::Utc::now();
            let report = match keysmith::jobs::Job::of(&event.payload.detail) {
                keysmith::jobs::Job::Sweep => keysmith::jobs::sweep(app, now, &origin).await?,
                // Rotate-now's event runs the rotations only; the hourly Scheduled Event runs it all.
                keysmith::jobs::Job::Full
                    if event.payload.detail_type == keysmith::rotation::ROTATION_REQUESTED =>
                {
                    keysmith::jobs::run_rotations(app, now, &origin).await?
                }
                keysmith::jobs::Job::Full => keysmith::jobs::run(app, now, &origin).await?,
            };
            let report = report.to_json();
            tracing::info!(report = %report, "scheduled run done");
            Ok::<Value, Error>(report)
        },
    ))
    .await
}
