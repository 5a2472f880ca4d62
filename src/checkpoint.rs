//! The checkpoint in S3, kept compatible with the original: one object holding `YYYYMMDDHHmmss`.
//!
//! The journal holds the authoritative checkpoint; S3 is a copy for existing deployments and
//! other hosts. A failed S3 write leaves the journal's checkpoint marked unsynced, and the next
//! run writes it again.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use chrono_tz::Tz;

use crate::aws::describe;
use crate::timefmt;

/// What to do about an S3 failure (one byte: the error stays small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// S3 cannot be reached or refuses.
    Reach,
    /// The object holds no usable checkpoint.
    Content,
}

impl std::fmt::Display for Remedy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Remedy::Reach => {
                "check S3_HARVEST_TS_BUCKET, AWS credentials/region and AWS_ENDPOINT_URL"
            }
            Remedy::Content => {
                "write a correct one with `harvester checkpoint --set YYYYMMDDHHmmss` \
                 (OPENCAST_TIMEZONE), or remove it with `harvester checkpoint --clear`"
            }
        })
    }
}

/// How far after now a checkpoint may lie (clocks of hosts differ a little); one further on
/// would make every harvest wait for that moment and take nothing until then.
pub const MAX_CLOCK_SKEW_US: i64 = 15 * 60 * 1_000_000;

/// An S3 failure, naming the object, what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("S3 checkpoint s3://{bucket}/{key}: {what}: {detail}; {remedy}")]
pub struct S3Error {
    pub bucket: String,
    pub key: String,
    pub what: String,
    /// The cause in brief (for an SDK error, [`crate::aws::describe`]: the service's code and
    /// message, or the root of the chain; for an object's contents, a short escaped quote).
    pub detail: String,
    /// What to do.
    pub remedy: Remedy,
    /// The cause itself.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The checkpoint object of one deployment.
#[derive(Clone)]
pub struct S3Checkpoint {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl S3Checkpoint {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, key: &str) -> S3Checkpoint {
        S3Checkpoint {
            client,
            bucket: bucket.to_string(),
            key: key.to_string(),
        }
    }

    fn err(
        &self,
        what: &str,
        detail: String,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> S3Error {
        S3Error {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            what: what.into(),
            detail,
            remedy: Remedy::Reach,
            source: source.into(),
        }
    }

    /// The object holds no checkpoint a harvest can start from.
    fn bad_content(&self, what: &str, detail: String) -> S3Error {
        S3Error {
            remedy: Remedy::Content,
            ..self.err(what, detail.clone(), detail)
        }
    }

    /// Reads the checkpoint (`None` when the bucket or the object does not exist).
    pub async fn read(&self, tz: Tz) -> Result<Option<i64>, S3Error> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let code = crate::aws::error_code(&e).unwrap_or("");
                if matches!(code, "NoSuchKey" | "NoSuchBucket") {
                    return Ok(None);
                }
                return Err(self.err("cannot read", describe(&e), e));
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| self.err("cannot read the body", e.to_string(), e))?
            .into_bytes();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        // The contents are quoted short and escaped: the object may hold anything (a megabyte,
        // terminal escapes).
        let us = timefmt::parse_compact(&text, tz).map_err(|_| {
            self.bad_content(
                "holds no usable timestamp",
                format!(
                    "it holds '{}', not YYYYMMDDHHmmss",
                    crate::escape::quoted_short(&text, 40)
                ),
            )
        })?;
        let now = timefmt::now_us();
        if us > now + MAX_CLOCK_SKEW_US {
            return Err(self.bad_content(
                "holds a checkpoint in the future",
                format!(
                    "{} ({tz}) is after now ({}); a harvest from it would take nothing until then",
                    timefmt::format_compact(us, tz),
                    timefmt::format_compact(now, tz)
                ),
            ));
        }
        Ok(Some(us))
    }

    /// Writes the checkpoint, creating the bucket when it is missing.
    pub async fn write(&self, last_action_us: i64, tz: Tz) -> Result<(), S3Error> {
        let body = timefmt::format_compact(last_action_us, tz);
        for attempt in 0..2 {
            let res = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .body(ByteStream::from(body.clone().into_bytes()))
                .content_type("text/plain")
                .send()
                .await;
            match res {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let code = crate::aws::error_code(&e).unwrap_or("");
                    if code == "NoSuchBucket" && attempt == 0 {
                        self.create_bucket().await?;
                        continue;
                    }
                    return Err(self.err("cannot write", describe(&e), e));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Removes the checkpoint object (a missing one is fine).
    pub async fn delete(&self) -> Result<(), S3Error> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = crate::aws::error_code(&e).unwrap_or("");
                if matches!(code, "NoSuchKey" | "NoSuchBucket") {
                    Ok(())
                } else {
                    Err(self.err("cannot delete", describe(&e), e))
                }
            }
        }
    }

    async fn create_bucket(&self) -> Result<(), S3Error> {
        tracing::info!(bucket = %self.bucket, "creating missing S3 bucket");
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        if !region.is_empty() && region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = crate::aws::error_code(&e).unwrap_or("");
                if matches!(code, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                    Ok(())
                } else {
                    Err(self.err("cannot create the bucket", describe(&e), e))
                }
            }
        }
    }
}
