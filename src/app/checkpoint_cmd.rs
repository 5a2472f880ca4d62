//! `harvester checkpoint`.

use chrono_tz::Tz;

use super::{open_journal, s3_checkpoint, s3_client_if, sync_checkpoint, AppError};
use crate::checkpoint::S3Checkpoint;
use crate::cli::{CheckpointArgs, Cli};
use crate::config::{self, ConfigError};
use crate::journal::{Checkpoint, JournalError};
use crate::timefmt;

/// `harvester checkpoint`.
pub async fn checkpoint(cli: &Cli, args: &CheckpointArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let set = args
        .set
        .as_deref()
        .map(|s| timefmt::parse_compact(s, tz).map_err(|e| ConfigError::caused("--set", e)))
        .transpose()?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);
    if !args.clear && set.is_none() {
        return show(cli, s3.as_ref(), tz).await;
    }
    let journal = open_journal(&cli.journal)?;
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
    drop(journal);
    report(local, s3.as_ref(), tz).await
}

/// `harvester checkpoint` without `--set` or `--clear`: shows, and never writes; a journal that
/// is not there is not created (nor its owner file).
async fn show(cli: &Cli, s3: Option<&S3Checkpoint>, tz: Tz) -> Result<(), AppError> {
    let local = match crate::journal::Journal::open_read_only(&cli.journal) {
        Ok(j) => j.checkpoint()?,
        Err(JournalError::Missing { .. }) => {
            say!(
                "journal: none (there is no journal at {})",
                cli.journal.display()
            )?;
            return report_s3(s3, tz).await;
        }
        Err(e) => return Err(super::journal_error(&cli.journal, e)),
    };
    report(local, s3, tz).await
}

fn compact(us: Option<i64>, tz: Tz) -> String {
    us.map(|u| timefmt::format_compact(u, tz))
        .unwrap_or_else(|| "none".into())
}

/// Prints the journal's checkpoint and the S3 one.
async fn report(
    local: Option<Checkpoint>,
    s3: Option<&S3Checkpoint>,
    tz: Tz,
) -> Result<(), AppError> {
    say!("journal: {}", compact(local.map(|c| c.last_action_us), tz))?;
    if let Some(cp) = local {
        say!("synced to S3: {}", cp.synced_to_s3)?;
    }
    report_s3(s3, tz).await
}

async fn report_s3(s3: Option<&S3Checkpoint>, tz: Tz) -> Result<(), AppError> {
    match s3 {
        Some(s3) => say!("s3: {}", compact(s3.read(tz).await?, tz))?,
        None => say!("s3: not configured (S3_HARVEST_TS_BUCKET unset)")?,
    }
    Ok(())
}
