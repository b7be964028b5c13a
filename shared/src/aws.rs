//! AWS access: SDK configuration (retries, timeouts) built once per process, and one
//! classification of SDK errors that every module maps to its own error type.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// The roots AWS endpoints chain to (Amazon Trust Services), compiled in.
const AMAZON_ROOTS: &[u8] = include_bytes!("amazon-roots.pem");

/// The SDK's HTTPS client (rustls with aws-lc), trusting the Amazon roots only. The default
/// client reads the system's certificate store (~290 files here) when the first SDK client is
/// built: that was half of every cold start. With `SSL_CERT_FILE` or `SSL_CERT_DIR` set (a private
/// STS endpoint behind another CA), the system store is used as before.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let system_store =
        std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    let trust = TrustStore::empty()
        .with_native_roots(system_store)
        .with_pem_certificate(AMAZON_ROOTS);
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // Cannot happen with the compiled-in roots; the SDK's default store still works.
        Err(_) => builder.build_https(),
    }
}

/// The SDK loader with Keysmith's retry and timeout policy. API Gateway gives a request 30 s, so
/// every call is bounded well inside that: 3 attempts with backoff, 5 s an attempt, 12 s in all.
pub fn sdk_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
}

/// The functions' SDK configuration. In Lambda the credentials are in the environment, so the
/// environment provider alone is used rather than the default chain, whose profile, SSO, web
/// identity, ECS and IMDS providers (an STS client among them) would all be built at every cold
/// start to go unused. Elsewhere (tests, local runs) the default chain.
pub async fn function_sdk_config() -> SdkConfig {
    let mut loader = sdk_config_loader();
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    if in_lambda && std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader.load().await
}

/// A service client built on first use, then shared by every request of the process: a cold
/// start pays only for the clients its first request needs (every path needs DynamoDB; IAM,
/// STS, Secrets Manager, Lambda and EventBridge only some), and init stays near the floor.
#[derive(Clone)]
pub struct Lazy<C> {
    sdk: SdkConfig,
    make: fn(&SdkConfig) -> C,
    cell: std::sync::Arc<std::sync::OnceLock<C>>,
}

impl<C> Lazy<C> {
    pub fn new(sdk: &SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            sdk: sdk.clone(),
            make,
            cell: std::sync::Arc::default(),
        }
    }

    pub fn get(&self) -> &C {
        self.cell.get_or_init(|| (self.make)(&self.sdk))
    }
}

/// The DynamoDB client, built on first use like the others: even the path every request takes
/// is not init's business (a Lambda init that builds nothing runs at the floor).
pub type Dynamo = Lazy<aws_sdk_dynamodb::Client>;

/// A client built elsewhere (tests, tools), used as it is.
impl From<aws_sdk_dynamodb::Client> for Dynamo {
    fn from(client: aws_sdk_dynamodb::Client) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(client);
        Self {
            sdk: SdkConfig::builder().build(),
            make: aws_sdk_dynamodb::Client::new,
            cell: std::sync::Arc::new(cell),
        }
    }
}

impl<C> std::ops::Deref for Lazy<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.get()
    }
}

impl<C> std::fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.cell.get().is_some() {
            "Lazy(built)"
        } else {
            "Lazy(not yet)"
        })
    }
}

/// The service clients, shared by every request, each built on first use.
#[derive(Clone, Debug)]
pub struct Clients {
    pub sts: Lazy<aws_sdk_sts::Client>,
    pub secrets: Lazy<aws_sdk_secretsmanager::Client>,
    pub dynamodb: Dynamo,
    pub iam: Lazy<aws_sdk_iam::Client>,
    pub sqs: Lazy<aws_sdk_sqs::Client>,
    /// The region the functions run in (for audit items).
    pub region: String,
    /// For clients that need other credentials (a rotation's admin identity).
    pub sdk: SdkConfig,
}

impl Clients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            sts: Lazy::new(sdk, aws_sdk_sts::Client::new),
            secrets: Lazy::new(sdk, aws_sdk_secretsmanager::Client::new),
            dynamodb: Lazy::new(sdk, aws_sdk_dynamodb::Client::new),
            iam: Lazy::new(sdk, aws_sdk_iam::Client::new),
            sqs: Lazy::new(sdk, aws_sdk_sqs::Client::new),
            region: sdk.region().map(ToString::to_string).unwrap_or_default(),
            sdk: sdk.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Throttled,
    Timeout,
    NotFound,
    Denied,
    ConditionFailed,
    Invalid,
    Other,
}

/// What went wrong in an AWS call, without the request (which may carry secrets): the service's
/// error code and message, or the transport failure.
#[derive(Debug, Clone)]
pub struct AwsFailure {
    pub kind: FailureKind,
    pub code: Option<String>,
    pub message: String,
    /// The endpoint could not be reached, timed out, or answered 5xx: another endpoint may
    /// answer (SPEC §16 fallbacks). Never set for an answer the service gave (4xx).
    pub endpoint_failed: bool,
}

impl AwsFailure {
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Other,
            code: None,
            message: message.into(),
            endpoint_failed: false,
        }
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Polls `sts:GetCallerIdentity`, signed as `config` says, until `accept` takes the ARN or
/// `timeout` passes (IAM is eventually consistent: a new key can take seconds to work). Backoff
/// 250 ms doubling to 2 s. `after_call` runs after every call;
/// its error ends the wait. Returns whether the identity was accepted in time.
pub async fn wait_for_identity<E>(
    sts: &aws_sdk_sts::Client,
    config: aws_sdk_sts::config::Builder,
    timeout: Duration,
    accept: impl Fn(&str) -> bool,
    mut after_call: impl FnMut() -> Result<(), E>,
) -> Result<bool, E> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(250);
    loop {
        let answer = sts
            .get_caller_identity()
            .customize()
            .config_override(config.clone())
            .send()
            .await;
        after_call()?;
        if answer
            .ok()
            .and_then(|out| out.arn)
            .is_some_and(|arn| accept(&arn))
        {
            return Ok(true);
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

pub fn classify<E: ProvideErrorMetadata>(err: SdkError<E, HttpResponse>) -> AwsFailure {
    match err {
        SdkError::TimeoutError(_) => AwsFailure {
            kind: FailureKind::Timeout,
            code: None,
            message: "the AWS call timed out".into(),
            endpoint_failed: true,
        },
        SdkError::DispatchFailure(d) => AwsFailure {
            kind: if d.is_timeout() {
                FailureKind::Timeout
            } else {
                FailureKind::Other
            },
            code: None,
            message: "the AWS endpoint could not be reached".into(),
            endpoint_failed: true,
        },
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let err = ctx.err();
            let code = err.code().map(str::to_owned);
            let message = err
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("AWS answered HTTP {status}"));
            AwsFailure {
                kind: kind_of(code.as_deref(), &message, status),
                code,
                message,
                endpoint_failed: status >= 500,
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            AwsFailure {
                kind: kind_of(None, "", status),
                code: None,
                message: format!("AWS answered HTTP {status} with an unreadable body"),
                endpoint_failed: status >= 500,
            }
        }
        _ => AwsFailure::other("the AWS request could not be built"),
    }
}

fn kind_of(code: Option<&str>, message: &str, status: u16) -> FailureKind {
    match code.unwrap_or_default() {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException"
        | "RequestThrottled" => FailureKind::Throttled,
        "ResourceNotFoundException" | "NoSuchEntity" => FailureKind::NotFound,
        "ConditionalCheckFailedException" => FailureKind::ConditionFailed,
        "TransactionCanceledException" if message.contains("ConditionalCheckFailed") => {
            FailureKind::ConditionFailed
        }
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken" => FailureKind::Denied,
        "ValidationError"
        | "ValidationException"
        | "MalformedPolicyDocument"
        | "PackedPolicyTooLarge"
        | "InvalidParameterException" => FailureKind::Invalid,
        "" if status == 403 => FailureKind::Denied,
        "" if status == 429 => FailureKind::Throttled,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_the_five_amazon_roots_and_load() {
        let text = String::from_utf8_lossy(AMAZON_ROOTS);
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AMAZON_ROOTS);
        assert!(TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .is_ok());
    }
}
