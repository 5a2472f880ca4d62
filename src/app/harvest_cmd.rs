//! `harvester harvest`: the original's command, journal first.

use std::time::Duration;

use super::{
    check_sink_settings, default_start, failed, forward_all, open_journal_as, parse_outputs,
    s3_checkpoint, s3_client_if, sync_checkpoint, AppError,
};
use crate::cli::{Cli, HarvestArgs};
use crate::config::{self, ConfigError};
use crate::episodes::EpisodeCache;
use crate::harvest::{self, HarvestError, HarvestOptions, Harvester};
use crate::timefmt;

/// `harvester harvest`.
pub async fn harvest(cli: &Cli, args: &HarvestArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let outputs = parse_outputs(&args.output, &args.sink)?;
    check_sink_settings(&args.sink)?;
    if !(args.wait.is_finite() && args.wait >= 0.0) {
        return Err(ConfigError("--wait takes a number of seconds, 0 or more".into()).into());
    }
    if args.interval == 0 {
        return Err(
            ConfigError("DEFAULT_INTERVAL/--interval must be at least 1 minute".into()).into(),
        );
    }
    let parse_opt = |v: &Option<String>, flag: &str| -> Result<Option<i64>, ConfigError> {
        v.as_deref()
            .map(|s| timefmt::parse_compact(s, tz).map_err(|e| ConfigError(format!("{flag}: {e}"))))
            .transpose()
    };
    let start_flag = parse_opt(&args.start, "--start")?;
    let end_flag = parse_opt(&args.end, "--end")?;
    let update = !args.no_update_last_ts;
    let opencast = config::opencast(&args.opencast, None)?;

    let journal = open_journal_as(&cli.journal, "harvest", None)?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);

    let now = timefmt::floor_second(timefmt::now_us());
    let start = match start_flag {
        Some(s) => s,
        None => default_start(&journal, s3.as_ref(), tz, args.interval).await?,
    };
    let end = end_flag.unwrap_or(now);
    if end < start {
        return Err(ConfigError(format!(
            "the window ends before it starts ({}..{}); check --start/--end",
            timefmt::format_compact(start, tz),
            timefmt::format_compact(end, tz)
        ))
        .into());
    }
    let span_s = (end - start) / 1_000_000;
    let max_span = args.max_start_end_span.filter(|m| *m > 0);
    let mut split = None;
    if let Some(max) = max_span {
        if span_s > max && !args.disable_start_end_span_check {
            if args.catch_up {
                split = Some(max);
            } else {
                return Err(failed(HarvestError::SpanTooLarge {
                    start: timefmt::format_compact(start, tz),
                    end: timefmt::format_compact(end, tz),
                    span: span_s,
                    max,
                }));
            }
        }
    }
    let windows = harvest::windows(start, end, split);
    tracing::info!(
        start = %timefmt::format_compact(start, tz),
        end = %timefmt::format_compact(end, tz),
        windows = windows.len(),
        "harvest starting"
    );
    let episodes = EpisodeCache::new(
        opencast.clone(),
        journal.clone(),
        Duration::from_secs(args.episode_cache_expire.max(1)),
        tz,
    );
    let harvester = Harvester::new(
        opencast,
        episodes,
        journal.clone(),
        HarvestOptions {
            batch_size: args.batch_size,
            wait: Duration::from_secs_f64(args.wait),
            tz,
            update_checkpoint: update,
            ..HarvestOptions::default()
        },
    );
    let result = harvester.harvest(&windows).await;
    let mut errors: Vec<AppError> = Vec::new();
    let summary = match result {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "harvest stopped; what was journaled before stays, and is forwarded");
            errors.push(failed(e));
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
    let forwarded = match forward_all(&journal, &outputs, &args.sink).await {
        Ok(n) => n,
        Err(e) => {
            errors.push(e);
            0
        }
    };
    if let Some(s) = summary {
        s.log(forwarded, tz);
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
