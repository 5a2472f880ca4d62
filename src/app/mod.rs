//! The commands: each wires settings, journal, source and sinks together for one job.

mod check;
mod demo;
pub mod docs;
mod harvest_cmd;
pub mod journal;
mod load_episodes;
pub mod owner;
pub mod run;

pub use check::check;
pub use demo::{bench_fetch, demo, sim};
pub use harvest_cmd::harvest;
pub use load_episodes::load_episodes;

use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;

use crate::checkpoint::S3Checkpoint;
use crate::cli::{CheckpointArgs, Cli, ForwardArgs, S3Args, SinkArgs};
use crate::config::{self, ConfigError};
use crate::es::EsClient;
use crate::forward::{self, EsConfig, EsSink, Sink, SqsConfig, SqsSink, StdoutSink};
use crate::journal::{Checkpoint, Journal};
use crate::{aws, timefmt};

/// A command's failure: bad settings (exit 2) or a runtime fault (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => 2,
            AppError::Failed(_) => 1,
        }
    }
}

pub(crate) fn failed(e: impl std::fmt::Display) -> AppError {
    AppError::Failed(e.to_string())
}

/// A sink named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Sqs,
    Es,
}

/// Parses `--output`: a comma-separated list of `sqs`, `-` (stdout), `es` and `none`.
pub fn parse_outputs(s: &str, sink: &SinkArgs) -> Result<Vec<Output>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let o = match part {
            "sqs" if sink.queue_name.as_deref() == Some("-") => Output::Stdout,
            "sqs" => Output::Sqs,
            "-" | "stdout" => Output::Stdout,
            "es" | "elasticsearch" => Output::Es,
            "none" | "journal" => continue,
            other => {
                return Err(ConfigError(format!(
                    "--output '{other}' is not a sink; use sqs, - (stdout), es, a list such as sqs,es, or none"
                )))
            }
        };
        if o == Output::Sqs
            && sink
                .queue_name
                .as_deref()
                .map(str::trim)
                .unwrap_or("")
                .is_empty()
        {
            return Err(ConfigError(
                "output sqs needs a queue: set SQS_QUEUE_NAME (in .env) or pass -q/--queue-name, or use -o - for stdout".into(),
            ));
        }
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

/// Checks the sink settings that can be checked without a network: SQS batch limits, the
/// Elasticsearch host and index pattern; and opens the enrichment databases.
pub(crate) fn check_sink_settings(sink: &SinkArgs) -> Result<(), ConfigError> {
    check_sink_formats(sink)?;
    sink.enrich.check()
}

/// The part of [`check_sink_settings`] that reads no file: every format and range.
pub(crate) fn check_sink_formats(sink: &SinkArgs) -> Result<(), ConfigError> {
    crate::es::parse_host(&sink.es_host)
        .map_err(|e| ConfigError(format!("{e} (set ELASTICSEARCH_HOST or --es-host)")))?;
    crate::enrich::Scope::parse(&sink.enrich.enrich_sinks).map_err(ConfigError)?;
    forward::es::check_index_pattern(&sink.es_action_index)
        .map_err(|e| ConfigError(format!("ES_ACTION_INDEX: {e}")))?;
    let n = sink.sqs_max_batch_bytes;
    if !(1024..=forward::sqs::MAX_BATCH_BYTES).contains(&n) {
        return Err(ConfigError(format!(
            "SQS_MAX_BATCH_BYTES={n} is out of range; SQS takes 1024 to {} bytes per batch",
            forward::sqs::MAX_BATCH_BYTES
        )));
    }
    Ok(())
}

pub(crate) fn open_journal(path: &Path) -> Result<Arc<Journal>, AppError> {
    open_journal_as(path, &command_name(), None)
}

/// The subcommand this process runs, for the journal's owner record.
fn command_name() -> String {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default()
}

/// Opens the journal and records this process as its holder; a journal held by another process
/// is an error that names that process.
pub(crate) fn open_journal_as(
    path: &Path,
    command: &str,
    metrics_addr: Option<&str>,
) -> Result<Arc<Journal>, AppError> {
    match Journal::open(path) {
        Ok(j) => {
            owner::claim(path, command, metrics_addr);
            if matches!(command, "harvest" | "run") {
                refuse_damage(&j)?;
            }
            Ok(Arc::new(j))
        }
        Err(e) => Err(journal_error(path, e)),
    }
}

/// Opens the journal for a command that only reads it: the file is never written (no owner
/// record, no upgrade, no repair), a missing one is an error, not a new journal.
pub(crate) fn open_journal_read(path: &Path) -> Result<Arc<Journal>, AppError> {
    Journal::open_read_only(path)
        .map(Arc::new)
        .map_err(|e| journal_error(path, e))
}

/// A journal error for the user; a journal held by another process names that process.
pub(crate) fn journal_error(path: &Path, e: crate::journal::JournalError) -> AppError {
    match e {
        e @ crate::journal::JournalError::InUse { .. } => match owner::read(path) {
            Some(o) => failed(format!("{e} (held by {})", owner::describe(&o))),
            None => failed(e),
        },
        e => failed(e),
    }
}

/// A harvest into a journal with unreadable blocks would take their records for duplicates
/// forever: each harvest decodes a slice of the journal (a full pass over a few runs) and stops
/// with the remedy when a block cannot be read.
pub(crate) fn refuse_damage(j: &Journal) -> Result<(), AppError> {
    let bad = j
        .scrub(crate::journal::salvage::SCRUB_RECORDS)
        .map_err(failed)?;
    if bad.is_empty() {
        return Ok(());
    }
    let at: Vec<String> = bad.iter().take(5).map(u64::to_string).collect();
    Err(failed(format!(
        "journal {} has {} unreadable block(s) (at sequence {}{}): their records are lost from \
         the journal while their action ids still count as harvested, so no harvest would bring \
         them back. Stop harvests, run `harvester journal salvage` (it sets the blocks aside and \
         prints the harvest that brings their records back), then harvest again",
        j.path().display(),
        bad.len(),
        at.join(", "),
        if bad.len() > 5 { ", …" } else { "" }
    )))
}

/// Connects the sink of `o`; returns it with the name of its cursor (`stdout`, `sqs:<queue>`,
/// `es:<index pattern>`).
pub(crate) async fn make_sink(
    o: &Output,
    sink: &SinkArgs,
    journal: &Arc<Journal>,
) -> Result<(Sink, String), AppError> {
    match o {
        Output::Stdout => Ok((
            Sink::Stdout(StdoutSink::enriched(sink.enrich.for_sink(false))),
            "stdout".into(),
        )),
        Output::Sqs => {
            let name = sink.queue_name.clone().unwrap_or_default();
            let cfg = SqsConfig {
                max_batch_bytes: sink.sqs_max_batch_bytes,
                group_id: sink.sqs_message_group_id.clone(),
                ..SqsConfig::new(&name)
            };
            let client = aws::sqs_client(&aws::sdk_config().await);
            let s = SqsSink::connect(client, cfg, journal.clone())
                .await
                .map_err(failed)?
                .with_enrichment(sink.enrich.for_sink(false));
            Ok((Sink::Sqs(s), format!("sqs:{name}")))
        }
        Output::Es => {
            let client = EsClient::new(
                &sink.es_host,
                std::time::Duration::from_secs(sink.es_timeout.max(1)),
            )
            .map_err(|e| ConfigError(e.to_string()))?;
            let cfg = EsConfig {
                max_docs: sink.es_bulk_docs as usize,
                max_bytes: sink.es_bulk_bytes.max(1024),
                attempts: sink.es_attempts,
                ..EsConfig::new(&sink.es_action_index)
            };
            let s = EsSink::connect(client, cfg, journal.clone())
                .await
                .map_err(failed)?
                .with_enrichment(sink.enrich.for_sink(true));
            Ok((Sink::Es(s), format!("es:{}", sink.es_action_index)))
        }
    }
}

/// Forwards to each output in turn; returns the first error after trying them all.
pub(crate) async fn forward_all(
    journal: &Arc<Journal>,
    outputs: &[Output],
    sink: &SinkArgs,
) -> Result<u64, AppError> {
    let mut first_err = None;
    let mut total = 0;
    for o in outputs {
        let res = match make_sink(o, sink, journal).await {
            Ok((mut s, cursor)) => {
                let res = forward::forward(journal, &mut s, &cursor).await;
                let requests = s.requests();
                res.map_err(failed).map(|f| {
                    tracing::info!(sink = %cursor, forwarded = f.forwarded, cursor = f.cursor, requests, "forwarded");
                    f.forwarded
                })
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(n) => total += n,
            Err(e) => {
                tracing::error!(error = %e, "forwarding failed");
                first_err.get_or_insert(e);
            }
        }
    }
    log_enrichment(sink);
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// The enrichment figures of this process, in the log (after a forward).
pub(crate) fn log_enrichment(sink: &SinkArgs) {
    let Some(e) = sink.enrich.enricher.get() else {
        return;
    };
    let f = e.stats().figures();
    let rate = crate::enrich::EnrichFigures::rate;
    tracing::info!(
        located = f.located,
        not_located = f.not_located,
        ua_parsed = f.ua_parsed,
        ua_missing = f.ua_missing,
        ip_cache_hit_rate = format!("{:.3}", rate(f.ip_cache_hits, f.ip_cache_misses)),
        ua_cache_hit_rate = format!("{:.3}", rate(f.ua_cache_hits, f.ua_cache_misses)),
        "enrichment"
    );
}

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
    let Some(cp) = journal.checkpoint().map_err(failed)? else {
        return Ok(());
    };
    if cp.synced_to_s3 {
        return Ok(());
    }
    s3.write(cp.last_action_us, tz).await.map_err(|e| {
        failed(format!(
            "{e} (the checkpoint is safe in the journal and will be written to S3 on the next run)"
        ))
    })?;
    journal.mark_checkpoint_synced(&cp).map_err(failed)?;
    tracing::info!(checkpoint = %timefmt::format_compact(cp.last_action_us, tz), "checkpoint written to S3");
    Ok(())
}

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
    let journal_cp = journal
        .checkpoint()
        .map_err(failed)?
        .map(|c| c.last_action_us);
    let s3_cp = match (journal_cp, s3) {
        (None, Some(s3)) => s3.read(tz).await.map_err(failed)?,
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

/// `harvester forward`.
pub async fn forward(cli: &Cli, args: &ForwardArgs) -> Result<(), AppError> {
    let outputs = parse_outputs(&args.output, &args.sink)?;
    check_sink_settings(&args.sink)?;
    let journal = open_journal(&cli.journal)?;
    let n = forward_all(&journal, &outputs, &args.sink).await?;
    tracing::info!(forwarded = n, "forward complete");
    Ok(())
}

/// `harvester checkpoint`.
pub async fn checkpoint(cli: &Cli, args: &CheckpointArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let set = args
        .set
        .as_deref()
        .map(|s| timefmt::parse_compact(s, tz).map_err(|e| ConfigError(format!("--set: {e}"))))
        .transpose()?;
    let journal = open_journal(&cli.journal)?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);
    if args.clear {
        journal.clear_checkpoint().map_err(failed)?;
        if let Some(s3) = &s3 {
            s3.delete().await.map_err(failed)?;
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
        journal.set_checkpoint(cp).map_err(failed)?;
        if let Some(s3) = &s3 {
            sync_checkpoint(&journal, s3, tz).await?;
        }
    }
    let local = journal.checkpoint().map_err(failed)?;
    let remote = match &s3 {
        Some(s3) => Some(s3.read(tz).await.map_err(failed)?),
        None => None,
    };
    let show = |us: Option<i64>| {
        us.map(|u| timefmt::format_compact(u, tz))
            .unwrap_or_else(|| "none".into())
    };
    println!("journal: {}", show(local.map(|c| c.last_action_us)));
    if let Some(cp) = local {
        println!("synced to S3: {}", cp.synced_to_s3);
    }
    match remote {
        Some(r) => println!("s3: {}", show(r)),
        None => println!("s3: not configured (S3_HARVEST_TS_BUCKET unset)"),
    }
    Ok(())
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
