//! AWS SDK configuration. The SDK's own settings decide where it connects:
//! `AWS_ENDPOINT_URL` points every client at the local emulator, nothing else does.

pub use aws_config::SdkConfig;

use std::time::Duration;

/// One attempt of an AWS call: a stalled connection or response is abandoned here.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole AWS call, retries included: well inside every function's time-out, so a
/// stalled dependency becomes an answer (`503`, a retried message) instead of a
/// Lambda time-out that loses the response and its audit record.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Attempts per call (standard retry mode: exponential back-off with jitter, throttling aware).
pub const MAX_ATTEMPTS: u32 = 3;

/// The time-outs and retry policy every client of a function uses.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

pub fn retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(1))
}

/// Loads region, credentials and endpoint from the standard AWS environment, with
/// [`timeouts`] and [`retries`]. Credentials are resolved lazily, on the first call.
pub async fn load() -> SdkConfig {
    configure(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .load()
        .await
}

/// Applies [`timeouts`] and [`retries`] to a configuration loader.
pub fn configure(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader.timeout_config(timeouts()).retry_config(retries())
}

/// An S3 client with path-style addressing: the local emulator serves buckets under its own
/// host (AWS accepts both styles).
pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A one-line description of an SDK error for logs: the service's code and
/// message, or the kind of transport failure. Never the raw response.
pub fn describe_error<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("UnknownError"),
            service.err().message().unwrap_or("no message")
        ),
        SdkError::TimeoutError(_) => "request timed out".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_io() => "connection failed".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            "connection timed out".to_string()
        }
        SdkError::DispatchFailure(_) => "request could not be sent".to_string(),
        SdkError::ResponseError(_) => "response could not be read".to_string(),
        _ => "request could not be built".to_string(),
    }
}

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Error codes AWS uses for "slow down or try again": worth a retry, not a page.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "RequestThrottled",
];

/// Whether an SDK error (DynamoDB or SQS) is transient: throttling, a timeout
/// or a connection failure, as opposed to a request the service will always refuse.
pub fn is_transient<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code)),
        _ => false,
    }
}

/// A SecureString SSM parameter's value (decrypted by SSM), read once at cold start.
/// `setting` names the setting that gave `name`, for the error.
pub async fn secure_parameter(
    sdk: &SdkConfig,
    setting: &str,
    name: &str,
) -> Result<String, crate::config::ConfigError> {
    let failed = |problem: String| crate::config::ConfigError {
        setting: setting.into(),
        problem,
    };
    let output = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| failed(format!("could not be read: {}", describe_error(&e))))?;
    output
        .parameter()
        .and_then(|p| p.value())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| failed("names a parameter without a value".into()))
}
