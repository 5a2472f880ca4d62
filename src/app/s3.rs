//! The S3 copy of the checkpoint: the client when a bucket is set, and keeping it in step with
//! the journal's.

use std::sync::Arc;

use chrono_tz::Tz;

use super::AppError;
use crate::checkpoint::S3Checkpoint;
use crate::cli::S3Args;
use crate::journal::Journal;
use crate::{aws, timefmt};

pub(crate) fn s3_checkpoint(
    s3: &S3Args,
    client: Option<aws_sdk_s3::Client>,
) -> Option<S3Checkpoint> {
    let bucket = s3
        .s3_bucket
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())?;
    Some(S3Checkpoint::new(client?, bucket, &s3.s3_key))
}

pub(crate) async fn s3_client_if(s3: &S3Args) -> Option<aws_sdk_s3::Client> {
    if s3
        .s3_bucket
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .is_empty()
    {
        None
    } else {
        Some(aws::s3_client(&aws::sdk_config().await))
    }
}

/// Copies the journal's checkpoint to S3 when S3 does not have it yet.
pub(crate) async fn sync_checkpoint(
    journal: &Arc<Journal>,
    s3: &S3Checkpoint,
    tz: Tz,
) -> Result<(), AppError> {
    let Some(cp) = journal.checkpoint()? else {
        return Ok(());
    };
    if cp.synced_to_s3 {
        return Ok(());
    }
    s3.write(cp.last_action_us, tz)
        .await
        .map_err(AppError::CheckpointNotSynced)?;
    journal.mark_checkpoint_synced(&cp)?;
    tracing::info!(checkpoint = %timefmt::format_compact(cp.last_action_us, tz), "checkpoint written to S3");
    Ok(())
}
