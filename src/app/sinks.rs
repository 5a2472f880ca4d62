//! The sinks named on the command line: parsing `--output`, checking their settings, connecting
//! them, and forwarding to each in turn.

use std::sync::Arc;

use super::AppError;
use crate::aws;
use crate::cli::SinkArgs;
use crate::config::ConfigError;
use crate::es::EsClient;
use crate::forward::{self, EsConfig, EsSink, Sink, SqsConfig, SqsSink, StdoutSink};
use crate::journal::Journal;

/// A sink named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Sqs,
    Es,
    Xapi,
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
            "xapi" | "lrs" => {
                // Every xAPI setting is checked here, before anything runs.
                sink.xapi.config()?;
                sink.xapi.shape()?;
                sink.enrich.privacy_settings()?;
                Output::Xapi
            }
            "none" | "journal" => continue,
            other => {
                return Err(ConfigError::new(format!(
                    "--output '{other}' is not a sink; use sqs, - (stdout), es, xapi, a list such as sqs,es, or none"
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
            return Err(ConfigError::new(
                "output sqs needs a queue: set SQS_QUEUE_NAME (in .env) or pass -q/--queue-name, or use -o - for stdout"
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
        .map_err(|e| ConfigError::new(format!("{e} (set ELASTICSEARCH_HOST or --es-host)")))?;
    sink.es_tls.trust()?;
    crate::enrich::Scope::parse(&sink.enrich.enrich_sinks).map_err(ConfigError::new)?;
    forward::es::check_index_pattern(&sink.es_action_index)
        .map_err(|e| ConfigError::new(format!("ES_ACTION_INDEX: {e}")))?;
    let n = sink.sqs_max_batch_bytes;
    if !(1024..=forward::sqs::MAX_BATCH_BYTES).contains(&n) {
        return Err(ConfigError::new(format!(
            "SQS_MAX_BATCH_BYTES={n} is out of range; SQS takes 1024 to {} bytes per batch",
            forward::sqs::MAX_BATCH_BYTES
        )));
    }
    Ok(())
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
            Sink::Stdout(StdoutSink::enriched(sink.enrich.for_sink(false)?)),
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
                .await?
                .with_enrichment(sink.enrich.for_sink(false)?);
            Ok((Sink::Sqs(s), format!("sqs:{name}")))
        }
        Output::Es => {
            let client = EsClient::new(
                &sink.es_host,
                std::time::Duration::from_secs(sink.es_timeout.max(1)),
                &sink.es_tls.trust()?,
            )
            .await
            .map_err(|e| match e {
                crate::es::EsError::BadHost(_) => AppError::Config(ConfigError::new(e.to_string())),
                e => AppError::Es(e),
            })?;
            let cfg = EsConfig {
                max_docs: sink.es_bulk_docs as usize,
                max_bytes: sink.es_bulk_bytes.max(1024),
                attempts: sink.es_attempts,
                ..EsConfig::new(&sink.es_action_index)
            };
            let s = EsSink::connect(client, cfg, journal.clone())
                .await?
                .with_enrichment(sink.enrich.for_sink(true)?);
            Ok((Sink::Es(s), format!("es:{}", sink.es_action_index)))
        }
        Output::Xapi => {
            let cfg = sink.xapi.config()?;
            let shape = std::sync::Arc::new(sink.xapi.shape()?);
            let privacy = sink.enrich.privacy_settings()?.clone();
            let cursor = cfg.cursor();
            let s = forward::XapiSink::new(cfg, shape, Some(privacy), Some(journal.clone()))
                .map_err(|e| {
                    AppError::Config(ConfigError::new(format!("cannot make the LRS client: {e}")))
                })?;
            Ok((Sink::Xapi(Box::new(s)), cursor))
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
                res.map_err(AppError::from).map(|f| {
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
