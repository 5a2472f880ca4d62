//! `harvester checkpoint`.

use super::{open_journal, s3_checkpoint, s3_client_if, sync_checkpoint, AppError};
use crate::cli::{CheckpointArgs, Cli};
use crate::config::{self, ConfigError};
use crate::journal::Checkpoint;
use crate::timefmt;

/// `harvester checkpoint`.
pub async fn checkpoint(cli: &Cli, args: &CheckpointArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let set = args
        .set
        .as_deref()
        .map(|s| timefmt::parse_compact(s, tz).map_err(|e| ConfigError::caused("--set", e)))
        .transpose()?;
    let journal = open_journal(&cli.journal)?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);
    if args.clear {
        journal.clear_checkpoint()?;
        if let Some(s3) = &s3 {
            s3.delete().await?;
        }
        eprintln!("checkpoint cleared; the next harvest starts at now - DEFAULT_INTERVAL unless given --start");
        return Ok(());
    }
    if let Some(us) = set {
        let cp = Checkpoint {
            last_action_us: us,
            synced_to_s3: false,
            updated_at_us: timefmt::now_us(),
        };
        journal.set_checkpoint(cp)?;
        if let Some(s3) = &s3 {
            sync_checkpoint(&journal, s3, tz).await?;
        }
    }
    let local = journal.checkpoint()?;
    let remote = match &s3 {
        Some(s3) => Some(s3.read(tz).await?),
        None => None,
    };
    let show = |us: Option<i64>| {
        us.map(|u| timefmt::format_compact(u, tz))
            .unwrap_or_else(|| "none".into())
    };
    say!("journal: {}", show(local.map(|c| c.last_action_us)))?;
    if let Some(cp) = local {
        say!("synced to S3: {}", cp.synced_to_s3)?;
    }
    match remote {
        Some(r) => say!("s3: {}", show(r))?,
        None => say!("s3: not configured (S3_HARVEST_TS_BUCKET unset)")?,
    }
    Ok(())
}
