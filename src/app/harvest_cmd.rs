//! `harvester harvest`: the original's command, journal first.
//!
//! Each output's forwarder follows the journal while the harvest runs (as `run`'s do), so a run
//! killed part way through a large window has delivered what it journaled; once the harvest
//! ends, a last pass forwards the rest, and its outcome is the command's.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::{
    check_sink_settings, default_start, failed, make_sink, open_journal_as, parse_outputs,
    s3_checkpoint, s3_client_if, sync_checkpoint, AppError, Output,
};
use crate::checkpoint::S3Checkpoint;
use crate::cli::{Cli, HarvestArgs, SinkArgs};
use crate::config::{self, ConfigError};
use crate::episodes::EpisodeCache;
use crate::forward::{self, ForwardError};
use crate::harvest::{self, HarvestError, HarvestOptions, Harvester};
use crate::journal::Journal;
use crate::opencast::Opencast;
use crate::retry;
use crate::shutdown::{Shutdown, Trigger};
use crate::timefmt;

/// How often an idle follower looks for newly committed pages.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `harvester harvest`.
pub async fn harvest(cli: &Cli, args: &HarvestArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let outputs = parse_outputs(&args.output, &args.sink)?;
    check_sink_settings(&args.sink)?;
    if !(args.wait.is_finite() && args.wait >= 0.0) {
        return Err(ConfigError::new("--wait takes a number of seconds, 0 or more").into());
    }
    if args.interval == 0 {
        return Err(
            ConfigError::new("DEFAULT_INTERVAL/--interval must be at least 1 minute").into(),
        );
    }
    let parse_opt = |v: &Option<String>, flag: &str| -> Result<Option<i64>, ConfigError> {
        v.as_deref()
            .map(|s| {
                // An end in the hour DST repeats is the later of its two instants.
                let parsed = if flag == "--end" {
                    timefmt::parse_compact_end(s, tz)
                } else {
                    timefmt::parse_compact(s, tz)
                };
                parsed.map_err(|e| ConfigError::caused(flag.to_string(), e))
            })
            .transpose()
    };
    let start_flag = parse_opt(&args.start, "--start")?;
    let end_flag = parse_opt(&args.end, "--end")?;
    let update = !args.no_update_last_ts;
    let opencast = config::opencast(&args.opencast.settings(), None)?;

    let journal = open_journal_as(&cli.journal, "harvest", None)?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);
    let windows = plan_windows(args, &journal, s3.as_ref(), tz, (start_flag, end_flag)).await?;
    super::identity::confirm(&opencast, super::identity::OnDoubt::Fail).await?;
    let harvester = harvester(args, opencast, journal.clone(), tz);
    let (done, harvest_done) = Trigger::new();
    let followers: Vec<_> = outputs
        .iter()
        .map(|o| {
            let (journal, sink_args) = (journal.clone(), args.sink.clone());
            tokio::spawn(follow(journal, o.clone(), sink_args, harvest_done.clone()))
        })
        .collect();
    let result = harvester.harvest(&windows).await;
    done.fire();
    let mut errors: Vec<AppError> = Vec::new();
    let summary = match result {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "harvest stopped; what was journaled before stays, and is forwarded");
            errors.push(e.into());
            None
        }
    };
    if update {
        if let Some(s3) = &s3 {
            if let Err(e) = sync_checkpoint(&journal, s3, tz).await {
                tracing::error!(error = %e, "checkpoint not written to S3");
                errors.push(e);
            }
        }
    }
    let forwarded = join_followers(followers, &mut errors).await;
    if let Some(s) = summary {
        s.log(forwarded, tz);
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The harvester of `harvest`'s settings; it runs to the end of its windows.
fn harvester(args: &HarvestArgs, opencast: Opencast, journal: Arc<Journal>, tz: Tz) -> Harvester {
    let episodes = EpisodeCache::new(
        opencast.clone(),
        journal.clone(),
        Duration::from_secs(args.episode_cache_expire.max(1)),
        tz,
    );
    Harvester::new(
        opencast,
        episodes,
        journal,
        HarvestOptions {
            batch_size: args.batch_size,
            wait: Duration::from_secs_f64(args.wait),
            tz,
            update_checkpoint: !args.no_update_last_ts,
            prefetch: args.pace.max_in_flight,
            api: args.opencast.settings().api,
            ..HarvestOptions::default()
        },
    )
}

/// The windows to harvest: `--start`/`--end` (each defaulting as the original did: from the
/// checkpoint, to now), checked against `MAX_START_END_SPAN`.
async fn plan_windows(
    args: &HarvestArgs,
    journal: &Journal,
    s3: Option<&S3Checkpoint>,
    tz: Tz,
    (start_flag, end_flag): (Option<i64>, Option<i64>),
) -> Result<Vec<(i64, i64)>, AppError> {
    let now = timefmt::floor_second(timefmt::now_us());
    let start = match start_flag {
        Some(s) => s,
        None => {
            let overlap = args.pace.overlap;
            default_start(journal, s3, tz, args.interval, overlap).await?
        }
    };
    let end = end_flag.unwrap_or(now);
    if end < start {
        return Err(ConfigError::new(format!(
            "the window ends before it starts ({}..{}); check --start/--end",
            timefmt::format_compact(start, tz),
            timefmt::format_compact(end, tz)
        ))
        .into());
    }
    let split = match span_verdict(
        start,
        end,
        args.max_start_end_span,
        args.disable_start_end_span_check,
        args.catch_up,
    ) {
        SpanVerdict::TooLarge { span, max } => {
            return Err(HarvestError::SpanTooLarge {
                start: timefmt::format_compact(start, tz),
                end: timefmt::format_compact(end, tz),
                span,
                max,
            }
            .into())
        }
        SpanVerdict::CatchUp { max, .. } => Some(max),
        _ => None,
    };
    let windows = harvest::windows(start, end, split);
    tracing::info!(
        start = %timefmt::format_compact(start, tz),
        end = %timefmt::format_compact(end, tz),
        windows = windows.len(),
        "harvest starting"
    );
    Ok(windows)
}

/// Waits for every follower's last pass: the records they forwarded in all; their errors join
/// `errors`.
async fn join_followers(
    followers: Vec<tokio::task::JoinHandle<Result<u64, AppError>>>,
    errors: &mut Vec<AppError>,
) -> u64 {
    let mut forwarded = 0;
    for f in followers {
        match f.await {
            Ok(Ok(n)) => forwarded += n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "forwarding failed");
                errors.push(e);
            }
            Err(e) => errors.push(failed(format!("forwarder task failed: {e}"))),
        }
    }
    forwarded
}

/// What `harvest` makes of a window's span against `MAX_START_END_SPAN` (shared with
/// `harvester check`, which reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanVerdict {
    /// MAX_START_END_SPAN is unset or 0.
    NoLimit {
        span: i64,
    },
    Within {
        span: i64,
        max: i64,
    },
    /// Larger, and `--disable-start-end-span-check` lets it through.
    Disabled {
        span: i64,
        max: i64,
    },
    /// Larger, and `--catch-up` harvests it in windows of `max`.
    CatchUp {
        span: i64,
        max: i64,
    },
    /// Larger: the harvest exits 1.
    TooLarge {
        span: i64,
        max: i64,
    },
}

pub(crate) fn span_verdict(
    start: i64,
    end: i64,
    max_span: Option<i64>,
    disable_check: bool,
    catch_up: bool,
) -> SpanVerdict {
    let span = (end - start) / 1_000_000;
    match max_span.filter(|m| *m > 0) {
        None => SpanVerdict::NoLimit { span },
        Some(max) if span <= max => SpanVerdict::Within { span, max },
        Some(max) if disable_check => SpanVerdict::Disabled { span, max },
        Some(max) if catch_up => SpanVerdict::CatchUp { span, max },
        Some(max) => SpanVerdict::TooLarge { span, max },
    }
}

/// Forwards to `output` while the harvest runs (best effort: a failing sink is retried with
/// backoff, the journal holds everything meanwhile), then, once `done` fires, forwards the
/// rest; that last pass's error is returned. Returns the records forwarded in all.
async fn follow(
    journal: Arc<Journal>,
    output: Output,
    sink_args: SinkArgs,
    done: Shutdown,
) -> Result<u64, AppError> {
    let mut forwarded = 0u64;
    let mut sink = None;
    let mut backoff = retry::FORWARD.retries();
    while !done.is_shutdown() {
        if sink.is_none() {
            match make_sink(&output, &sink_args, &journal).await {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "sink unavailable while harvesting; records wait in the journal");
                    done.sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        let Some((s, cursor)) = sink.as_mut() else {
            continue;
        };
        match forward::forward(&journal, s, cursor).await {
            Ok(f) => {
                forwarded += f.forwarded;
                backoff.reset();
                if f.forwarded == 0 {
                    done.sleep(FOLLOW_POLL).await;
                }
            }
            Err(e) => {
                if let ForwardError::Sink { forwarded: n, .. } = &e {
                    forwarded += n;
                }
                tracing::warn!(error = %e, "forwarding while harvesting failed; retrying");
                done.sleep(backoff.next_delay()).await;
            }
        }
    }
    let (mut s, cursor) = match sink {
        Some(s) => s,
        None => make_sink(&output, &sink_args, &journal).await?,
    };
    match forward::forward(&journal, &mut s, &cursor).await {
        Ok(f) => {
            forwarded += f.forwarded;
            tracing::info!(sink = %cursor, forwarded, cursor = f.cursor, requests = s.requests(), dead_letters = s.dead_letters(), "forwarded");
            Ok(forwarded)
        }
        Err(mut e) => {
            if let ForwardError::Sink { forwarded: n, .. } = &mut e {
                *n += forwarded;
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_verdicts() {
        let s = 1_000_000;
        assert_eq!(
            span_verdict(0, 100 * s, None, false, false),
            SpanVerdict::NoLimit { span: 100 }
        );
        assert_eq!(
            span_verdict(0, 100 * s, Some(0), false, false),
            SpanVerdict::NoLimit { span: 100 }
        );
        assert_eq!(
            span_verdict(0, 100 * s, Some(100), false, false),
            SpanVerdict::Within {
                span: 100,
                max: 100
            }
        );
        assert_eq!(
            span_verdict(0, 101 * s, Some(100), false, false),
            SpanVerdict::TooLarge {
                span: 101,
                max: 100
            }
        );
        assert_eq!(
            span_verdict(0, 101 * s, Some(100), false, true),
            SpanVerdict::CatchUp {
                span: 101,
                max: 100
            }
        );
        // --disable-start-end-span-check wins over --catch-up, as it always did.
        assert_eq!(
            span_verdict(0, 101 * s, Some(100), true, true),
            SpanVerdict::Disabled {
                span: 101,
                max: 100
            }
        );
    }
}
