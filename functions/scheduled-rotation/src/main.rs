//! scheduled-rotation: the hourly EventBridge job in front of `keysmith::schedule`.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use keysmith::audit::Origin;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = match keysmith::App::from_env().await {
        Ok(app) => app,
        Err(e) => {
            // One clear line naming the variable; Lambda reports the non-zero exit as an init error.
            tracing::error!("{e}");
            std::process::exit(1);
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| async move {
            let origin = Origin {
                principal: "keysmith:scheduled-rotation".into(),
                request_id: event.context.request_id.clone(),
                region: app.region.clone(),
                ..Origin::default()
            };
            let report = keysmith::schedule::run(app, chrono::Utc::now(), &origin).await?;
            let report = report.to_json();
            tracing::info!(report = %report, "scheduled run done");
            Ok::<Value, Error>(report)
        },
    ))
    .await
}
