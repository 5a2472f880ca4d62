//! `harvester run`: the long-running service. One process harvests every interval and forwards
//! continuously; an explicit shutdown signal (SIGTERM/SIGINT) lets each loop finish the unit of
//! work in hand and commit it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::sync::{watch, Notify};

use super::{
    check_sink_settings, default_start, failed, make_sink, parse_outputs, s3_checkpoint,
    s3_client_if, sync_checkpoint, AppError, Output,
};
use crate::cli::{Cli, RunArgs, SinkArgs};
use crate::config::{self, ConfigError};
use crate::episodes::EpisodeCache;
use crate::forward;
use crate::harvest::{self, HarvestError, HarvestOptions, Harvester};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::timefmt;

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Sleeps `d`, or less if shutdown is asked for.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {},
        _ = stop.changed() => {},
    }
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let outputs = parse_outputs(&args.output, &args.sink)?;
    check_sink_settings(&args.sink)?;
    if args.interval == 0 {
        return Err(
            ConfigError("DEFAULT_INTERVAL/--interval must be at least 1 minute".into()).into(),
        );
    }
    let every = match args.every {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        Some(_) => {
            return Err(ConfigError(
                "HARVEST_EVERY/--every takes a number of seconds above 0".into(),
            )
            .into())
        }
        None => Duration::from_secs(args.interval * 60),
    };
    let addr: SocketAddr = args.metrics_addr.parse().map_err(|_| {
        ConfigError(format!(
            "METRICS_ADDR '{}' is not an address like 127.0.0.1:9898",
            args.metrics_addr
        ))
    })?;
    let opencast = config::opencast(&args.opencast, None)?;
    let journal = super::open_journal_as(&cli.journal, "run", Some(&args.metrics_addr))?;
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing the work in hand");
        let _ = stop_tx.send(true);
    });

    let metrics = Arc::new(Metrics::new(
        journal.clone(),
        opencast.client().stats_handle(),
    ));
    if let Some(e) = args.sink.enrich.enricher.get() {
        let _ = metrics.enrichment.set(e.clone());
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| failed(format!("cannot listen on METRICS_ADDR {addr}: {e}")))?;
    let m = metrics.clone();
    let h = metrics.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { m.render() }))
        .route(
            "/healthz",
            get(move || async move {
                match h.health() {
                    Ok(()) => (axum::http::StatusCode::OK, "ok\n".to_string()),
                    Err(e) => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        format!("last harvest failed: {e}\n"),
                    ),
                }
            }),
        );
    let app = app.merge(journal_routes(journal.clone()));
    let mut srv_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = srv_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    tracing::info!(%addr, every_s = every.as_secs_f64(), "harvester running; /metrics and /healthz on the address");

    let new_records = Arc::new(Notify::new());
    let mut forwarders = Vec::new();
    for o in outputs {
        forwarders.push(tokio::spawn(forward_loop(
            journal.clone(),
            o,
            args.sink.clone(),
            metrics.clone(),
            new_records.clone(),
            stop_rx.clone(),
        )));
    }

    let episodes = EpisodeCache::new(
        opencast.clone(),
        journal.clone(),
        Duration::from_secs(args.episode_cache_expire.max(1)),
        tz,
    );
    let mut harvester = Harvester::new(
        opencast,
        episodes,
        journal.clone(),
        HarvestOptions {
            batch_size: args.batch_size,
            tz,
            ..HarvestOptions::default()
        },
    );
    harvester.shutdown = Some(stop_rx.clone());
    let mut stop = stop_rx.clone();
    let mut warned_size = false;
    while !*stop.borrow() {
        let result = async {
            let start = default_start(&journal, s3.as_ref(), tz, args.interval).await?;
            let end = timefmt::floor_second(timefmt::now_us());
            let windows = harvest::windows(
                start,
                end.max(start),
                args.max_start_end_span.filter(|m| *m > 0),
            );
            if windows.len() > 1 {
                tracing::warn!(
                    windows = windows.len(),
                    "behind by more than MAX_START_END_SPAN: catching up window by window"
                );
            }
            harvester.harvest(&windows).await.map_err(failed)
        }
        .await;
        match result {
            Ok(s) => {
                metrics
                    .actions_harvested
                    .fetch_add(s.actions, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .duplicates_skipped
                    .fetch_add(s.duplicates, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .dead_letters
                    .fetch_add(s.dead_letters, std::sync::atomic::Ordering::Relaxed);
                metrics.harvest_ok();
                tracing::info!(
                    actions = s.actions,
                    batches = s.batches,
                    dead_letters = s.dead_letters,
                    duplicates_skipped = s.duplicates,
                    seconds = format!("{:.3}", s.seconds),
                    "harvest cycle"
                );
            }
            Err(e) if e.to_string() == HarvestError::Interrupted.to_string() => break,
            Err(e) => {
                metrics.harvest_failed(&e.to_string());
                tracing::error!(error = %e, "harvest cycle failed; retrying next cycle");
            }
        }
        new_records.notify_waiters();
        if let Some(s3) = &s3 {
            if let Err(e) = sync_checkpoint(&journal, s3, tz).await {
                metrics
                    .s3_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "checkpoint not written to S3");
            }
        }
        let size = std::fs::metadata(journal.path())
            .map(|m| m.len())
            .unwrap_or(0);
        if size > args.journal_warn_size && !warned_size {
            tracing::warn!(size, limit = args.journal_warn_size,
                "the journal is larger than JOURNAL_WARN_SIZE: is a sink down? (`harvester journal stats` shows each sink's lag)");
            warned_size = true;
        } else if size <= args.journal_warn_size {
            warned_size = false;
        }
        pause(every, &mut stop).await;
    }
    for f in forwarders {
        let _ = tokio::time::timeout(Duration::from_secs(10), f).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    tracing::info!("harvester stopped");
    Ok(())
}

/// `/journal/stats` and `/journal/dump`: the running service answers what `harvester journal`
/// cannot read itself while this process holds the file.
fn journal_routes(journal: Arc<Journal>) -> Router {
    let js = journal.clone();
    Router::new()
        .route(
            "/journal/stats",
            get(move || {
                let j = js.clone();
                async move {
                    let res = tokio::task::spawn_blocking(move || crate::journal::inspect::stats(&j)).await;
                    match res.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                        Ok(s) => axum::http::Response::builder()
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from(serde_json::to_string(&s).unwrap_or_default()))
                            .unwrap(),
                        Err(e) => axum::http::Response::builder()
                            .status(500)
                            .body(axum::body::Body::from(e))
                            .unwrap(),
                    }
                }
            }),
        )
        .route(
            "/journal/dump",
            get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
                let j = journal.clone();
                async move {
                    let url = reqwest::Url::parse(&format!("http://x/?{}", q.unwrap_or_default()));
                    let pairs: Vec<(String, String)> = url
                        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
                        .unwrap_or_default();
                    let req = match super::journal::DumpRequest::from_pairs(&pairs) {
                        Ok(r) => r,
                        Err(e) => {
                            return axum::http::Response::builder()
                                .status(400)
                                .body(axum::body::Body::from(e.to_string()))
                                .unwrap()
                        }
                    };
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
                    tokio::task::spawn_blocking(move || {
                        let mut w = ChannelWriter { tx, buf: Vec::with_capacity(1 << 16) };
                        if let Ok(bad) = super::journal::write_dump(&j, &req, &mut w) {
                            for b in bad {
                                tracing::error!(first_seq = b.first_seq, error = %b.error, "dump skipped an unreadable block");
                            }
                        }
                        let _ = w.flush();
                    });
                    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
                    axum::http::Response::builder()
                        .header("content-type", "application/x-ndjson")
                        .body(axum::body::Body::from_stream(stream))
                        .unwrap()
                }
            }),
        )
}

/// Streams a dump to an HTTP response in 64 KiB chunks; a gone client stops the dump.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Forwards to one sink for as long as the service runs, reconnecting and backing off while the
/// sink is down: the journal holds everything meanwhile.
async fn forward_loop(
    journal: Arc<Journal>,
    output: Output,
    sink_args: SinkArgs,
    metrics: Arc<Metrics>,
    new_records: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut sink = None;
    while !*stop.borrow() {
        if sink.is_none() {
            match make_sink(&output, &sink_args, &journal).await {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    metrics.sink_error(&format!("{output:?}").to_lowercase());
                    tracing::warn!(error = %e, "sink unavailable; records wait in the journal");
                    pause(backoff, &mut stop).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let (s, cursor) = sink.as_mut().expect("connected");
        let notified = new_records.notified();
        match forward::forward_until(&journal, s, cursor, Some(&stop)).await {
            Ok(f) => {
                if f.forwarded > 0 {
                    metrics.forwarded(cursor, f.forwarded);
                    tracing::info!(sink = %cursor, forwarded = f.forwarded, "forwarded");
                }
                backoff = Duration::from_millis(500);
                tokio::select! {
                    _ = notified => {},
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {},
                    _ = stop.changed() => {},
                }
            }
            Err(e) => {
                if let forward::ForwardError::Sink { forwarded, .. } = &e {
                    metrics.forwarded(cursor, *forwarded);
                }
                metrics.sink_error(cursor);
                tracing::warn!(error = %e, "forwarding failed; retrying");
                pause(backoff, &mut stop).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
