//! AWS SDK configuration shared by the S3 checkpoint and the SQS sink.
//!
//! The standard AWS environment applies (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` and its
//! per-service forms); the region defaults to `us-east-1` like the original's boto setup, and an
//! endpoint override (a local S3 such as moto) gets path-style bucket addressing.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The longest one attempt of an S3 or SQS request may take. The SDK sets no read timeout of
/// its own, so an endpoint that accepts a connection and never answers (a service out of memory,
/// a proxy gone silent) held a forward there for good; the SDK's own retries and the sinks'
/// then take over. A `SendMessageBatch` of at most 1 MiB or a checkpoint object takes well
/// under a second on a working link.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Establishing a connection (the SDK's default is 3.1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration from the environment.
pub async fn sdk_config() -> SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new("us-east-1"));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// An S3 client; path-style addressing whenever an endpoint override is in force.
pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden =
        cfg.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn sqs_client(cfg: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(cfg)
}

/// Renders an SDK error briefly: the service's code and message when it answered, else the
/// whole chain (connection refused, timeout, ...).
pub fn describe<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("(no message)")
            )
        }
        other => {
            // "dispatch failure: ... Connection refused (os error 111)": the kind and the root cause.
            let mut root: &dyn std::error::Error = other;
            while let Some(next) = root.source() {
                root = next;
            }
            let top = other.to_string();
            let cause = root.to_string();
            if cause == top {
                top
            } else {
                format!("{top}: {cause}")
            }
        }
    }
}

/// The service's error code, when the service answered.
pub fn error_code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code())
}
