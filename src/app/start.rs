//! Where a harvest without `--start` begins.

use chrono_tz::Tz;

use super::AppError;
use crate::checkpoint::{S3Checkpoint, MAX_CLOCK_SKEW_US};
use crate::journal::Journal;
use crate::timefmt;

/// Where the start of a harvest without `--start` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFrom {
    /// The journal's checkpoint, less the overlap.
    Journal { checkpoint_us: i64 },
    /// The S3 checkpoint (a journal without one): the checkpoint itself, no overlap.
    S3 { checkpoint_us: i64 },
    /// Neither: now less the default interval.
    Interval,
}

/// The start of a harvest without `--start`, from the checkpoints found (the one decision
/// [`default_start`] and `harvester check` share).
pub(crate) fn start_of(
    journal_cp: Option<i64>,
    s3_cp: Option<i64>,
    now_us: i64,
    interval_min: u64,
    overlap_s: u64,
) -> (i64, StartFrom) {
    let overlap_us = (overlap_s.min(86_400) as i64) * 1_000_000;
    if let Some(cp) = journal_cp {
        let start = timefmt::floor_second(cp).saturating_sub(overlap_us);
        return (start, StartFrom::Journal { checkpoint_us: cp });
    }
    if let Some(cp) = s3_cp {
        // A journal that has no checkpoint has no dedupe memory of the overlap either:
        // re-reading it would send its actions downstream a second time. Start at the
        // checkpoint, as the original did.
        return (cp, StartFrom::S3 { checkpoint_us: cp });
    }
    (
        timefmt::floor_second(now_us) - interval_min as i64 * 60_000_000,
        StartFrom::Interval,
    )
}

/// Where a harvest without `--start` begins: `overlap_s` seconds before the journal's
/// checkpoint, else at the S3 one, else `interval_min` minutes ago.
///
/// The overlap re-reads the end of the last window: rows Opencast committed late, or that a
/// clock skew put before the checkpoint, are harvested then, and those already journaled are
/// skipped by id (counted as duplicates). The checkpoint itself never moves backwards.
pub(crate) async fn default_start(
    journal: &Journal,
    s3: Option<&S3Checkpoint>,
    tz: Tz,
    interval_min: u64,
    overlap_s: u64,
) -> Result<i64, AppError> {
    let journal_cp = journal.checkpoint()?.map(|c| c.last_action_us);
    if let Some(cp) = journal_cp.filter(|cp| *cp > timefmt::now_us() + MAX_CLOCK_SKEW_US) {
        // Every harvest would take the window from it to now, which is empty: nothing would be
        // harvested until that moment, and nothing would say so.
        return Err(super::failed(format!(
            "the journal's checkpoint {} (OPENCAST_TIMEZONE {tz}) is after now ({}): no harvest \
             would take anything until then. Write a correct one with `harvester checkpoint \
             --set YYYYMMDDHHmmss`, or give --start",
            timefmt::format_compact(cp, tz),
            timefmt::format_compact(timefmt::now_us(), tz)
        )));
    }
    let s3_cp = match (journal_cp, s3) {
        (None, Some(s3)) => s3.read(tz).await?,
        _ => None,
    };
    let (start, from) = start_of(
        journal_cp,
        s3_cp,
        timefmt::now_us(),
        interval_min,
        overlap_s,
    );
    match from {
        StartFrom::Journal { checkpoint_us } if overlap_s > 0 => tracing::info!(
            checkpoint = %timefmt::format_compact(checkpoint_us, tz),
            overlap_s,
            "re-reading HARVEST_OVERLAP seconds before the checkpoint: actions already \
             journaled there are skipped as duplicates (duplicates_skipped)"
        ),
        StartFrom::S3 { checkpoint_us } => tracing::info!(
            checkpoint = %timefmt::format_compact(checkpoint_us, tz),
            "starting from the S3 checkpoint"
        ),
        _ => {}
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_comes_from_the_journal_then_s3_then_the_interval() {
        let now = 1_700_000_000_500_000;
        let cp = 1_600_000_000_250_000;
        // The journal's checkpoint, cut to its second, less the overlap.
        assert_eq!(
            start_of(Some(cp), Some(1), now, 2, 60),
            (
                1_600_000_000_000_000 - 60_000_000,
                StartFrom::Journal { checkpoint_us: cp }
            )
        );
        // The S3 checkpoint itself: a journal without one has no dedupe memory of the overlap.
        assert_eq!(
            start_of(None, Some(cp), now, 2, 60),
            (cp, StartFrom::S3 { checkpoint_us: cp })
        );
        assert_eq!(
            start_of(None, None, now, 2, 60),
            (1_700_000_000_000_000 - 120_000_000, StartFrom::Interval)
        );
    }
}
