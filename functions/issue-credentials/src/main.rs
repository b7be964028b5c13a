//! issue-credentials: the HTTP API (API Gateway HTTP API, payload v2) in front of `keysmith`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};

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
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<ApiGatewayV2httpResponse, Error>(keysmith::api::handle(app, event.payload).await)
        },
    ))
    .await
}
