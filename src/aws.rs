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

/// Renders an SDK error briefly: the service's code and message when it answered, the HTTP
/// status and the start of the body when something else answered (a proxy's error page), else
/// the whole chain (connection refused, timeout, ...). Text from the answer is escaped.
pub fn describe<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use crate::escape::quoted_short;
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (None, None) => {
                    // Not an AWS error document: whoever answered is named by its status and
                    // the start of what it said ("(no message)" told nothing).
                    let raw = se.raw();
                    let body = raw
                        .body()
                        .bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
                    format!(
                        "HTTP {} with no AWS error in the answer (a proxy or gateway on the \
                         way?){}",
                        raw.status().as_u16(),
                        if body.is_empty() {
                            ", and an empty body".to_string()
                        } else {
                            format!(": '{}'", quoted_short(&body, 200))
                        }
                    )
                }
                (code, message) => format!(
                    "{}: {}",
                    quoted_short(code.unwrap_or("error"), 100),
                    quoted_short(message.unwrap_or("(no message)"), 500)
                ),
            }
        }
        other => {
            // "dispatch failure: ... Connection refused (os error 111)": the kind and the root cause.
            let mut root: &dyn std::error::Error = other;
            while let Some(next) = root.source() {
                root = next;
            }
            let top = quoted_short(&other.to_string(), 500);
            let cause = quoted_short(&root.to_string(), 500);
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

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::SdkError;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    /// Issue 19 point 15: through a failing proxy, S3 and SQS errors said "(no message)".
    #[test]
    fn an_answer_that_is_no_aws_error_is_shown_by_status_and_body() {
        let raw = HttpResponse::new(
            502u16.try_into().unwrap(),
            SdkBody::from("<html><body>\n<h1>502 Bad Gateway</h1>\u{1b}[2J</body></html>"),
        );
        let e = SdkError::service_error(
            GetObjectError::generic(aws_sdk_s3::error::ErrorMetadata::builder().build()),
            raw,
        );
        let d = super::describe(&e);
        assert!(
            d.contains("HTTP 502") && d.contains("502 Bad Gateway"),
            "{d}"
        );
        assert!(!d.contains("(no message)") && !d.contains('\u{1b}'), "{d}");
    }
}
