//! secret-rotation: the Secrets Manager rotation hook for secrets that hold IAM access keys.
// The handlers' futures nest deeply (SDK calls inside use cases inside the runtime); a clean
// non-incremental build measures their layout past the default limit of 128.
#![recursion_limit = "256"]

use keysmith::audit::Origin;
use keysmith::rotation::RotationEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keysmith::logging::init();
    // Only the rotation engine: this function never issues credentials or reads profiles.
    let app = &keysmith::RotationHook::from_env_or_exit().await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RotationEvent>| async move {
        let origin = Origin {
            principal: "secretsmanager.amazonaws.com".into(),
            request_id: event.context.request_id.clone(),
            region: app.region.clone(),
            ..Origin::default()
        };
        let step = event.payload.step.as_str();
        // The step holds the secret's lock until this invocation's deadline at most.
        let deadline = Some(event.context.deadline());
        match app
            .rotator
            .run_until(&event.payload, &origin, deadline)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(step, secret = %event.payload.secret_id, error = %e, "rotation step failed");
                Err(Error::from(e))
            }
        }
    }))
    .await
}
