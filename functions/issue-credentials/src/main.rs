//! issue-credentials: the HTTP API (API Gateway HTTP API, payload v2) in front of `keysmith`.
// The handlers' futures nest deeply (SDK calls inside use cases inside the runtime); a clean
// non-incremental build measures their layout past the default limit of 128.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use keysmith::api::HttpEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keysmith::logging::init();
    let app = &keysmith::Api::from_env_or_exit().await;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<HttpEvent>| async move {
            Ok::<ApiGatewayV2httpResponse, Error>(keysmith::api::handle(app, event.payload).await)
        },
    ))
    .await
}
