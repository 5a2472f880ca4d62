//! `harvester run`: the long-running service. One process harvests every interval and forwards
//! continuously; an explicit shutdown signal (SIGTERM/SIGINT) lets each loop finish the unit of
//! work in hand and commit it.
//!
//! An I/O error under the journal (a full disk, say) poisons redb's handle: no later write
//! succeeds until the file is closed and opened again, and redb refuses a second open while any
//! handle lives. So the service runs in *sessions*: open the journal, build the harvester and the
//! forwarders on it, serve until shutdown or an I/O error, tear every one of them down (the HTTP
//! routes reach the journal through a [`JournalSlot`] that is emptied meanwhile), close the file,
//! and open it again with backoff. What a failed transaction held was never committed, so
//! nothing is lost and the checkpoint never passes it; the next session harvests from the
//! checkpoint again, and dedupe by id keeps every action once.

mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::{watch, Notify};

use super::{
    check_sink_settings, default_start, journal_error, make_sink, owner, parse_outputs,
    s3_checkpoint, s3_client_if, sync_checkpoint, AppError, Output,
};
use crate::checkpoint::S3Checkpoint;
use crate::cli::{Cli, RunArgs, SinkArgs};
use crate::config::{self, ConfigError};
use crate::episodes::EpisodeCache;
use crate::forward;
use crate::harvest::{self, HarvestError, HarvestOptions, HarvestSummary, Harvester};
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::opencast::Opencast;
use crate::timefmt;

pub use http::{ApiToken, RecordAccess, TOKEN_VAR};

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

/// The open journal as the HTTP routes reach it: present while a session runs, empty while the
/// file is closed for a reopen (a route then answers 503 instead of keeping the file open).
#[derive(Clone, Default)]
pub struct JournalSlot(Arc<RwLock<Option<Arc<Journal>>>>);

impl JournalSlot {
    pub fn get(&self) -> Option<Arc<Journal>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, j: Option<Arc<Journal>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = j;
    }
}

/// Slowest retry of a journal that cannot be opened or written.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// What every session needs, built once.
struct Service<'a> {
    args: &'a RunArgs,
    outputs: Vec<Output>,
    tz: Tz,
    every: Duration,
    opencast: Opencast,
    s3: Option<S3Checkpoint>,
    metrics: Arc<Metrics>,
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
    let token = ApiToken::from_env()?;
    let opencast = config::opencast(&args.opencast, None)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing the work in hand");
        let _ = stop_tx.send(true);
    });
    let metrics = Arc::new(Metrics::new(opencast.client().stats_handle()));
    metrics.set_journal_path(&cli.journal);
    if let Some(e) = args.sink.enrich.enricher.get() {
        let _ = metrics.enrichment.set(e.clone());
    }
    let path = cli.journal.as_path();
    // A journal that cannot be used (in use, of a newer format) fails the command; one that
    // meets an I/O error (a full disk) is waited out, as one met later is.
    let first = try_open(path, args).await?;
    if let Err(e) = &first {
        if !e.needs_reopen() {
            return Err(journal_error(path, first.err().expect("an error")));
        }
    }
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);

    let slot = JournalSlot::default();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::io(format!("cannot listen on METRICS_ADDR {addr}"), e))?;
    let access = RecordAccess::for_addr(&addr, token);
    let app = http::router(metrics.clone(), slot.clone(), access);
    let mut srv_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = srv_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    tracing::info!(%addr, every_s = every.as_secs_f64(), "harvester running; /metrics and /healthz on the address");
    let mut journal = match first {
        Ok(j) => Some(j),
        Err(e) => {
            report_down(&metrics, e.at(path), FIRST_BACKOFF);
            open_with_backoff(path, args, &metrics, stop_rx.clone(), FIRST_BACKOFF).await?
        }
    };

    let svc = Service {
        args,
        outputs,
        tz,
        every,
        opencast,
        s3,
        metrics: metrics.clone(),
    };
    let mut backoff = FIRST_BACKOFF;
    while let Some(j) = journal.take() {
        slot.set(Some(j.clone()));
        let (fault, healthy_cycles) = svc.session(j.clone(), stop_rx.clone()).await;
        slot.set(None);
        close(j, &stop_rx).await;
        let Some(e) = fault else { break };
        metrics.journal_faults.inc();
        if healthy_cycles > 0 {
            backoff = FIRST_BACKOFF;
        }
        report_down(&metrics, e.at(path), backoff);
        let mut stop = stop_rx.clone();
        pause(backoff, &mut stop).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        journal = open_with_backoff(path, args, &metrics, stop_rx.clone(), backoff).await?;
    }
    // The server holds no journal (its slot is empty by now); one that does not stop is ended.
    let mut server = server;
    if tokio::time::timeout(Duration::from_secs(2), &mut server)
        .await
        .is_err()
    {
        server.abort();
        let _ = server.await;
    }
    tracing::info!("harvester stopped");
    Ok(())
}

/// Opens the journal and records this process as its holder.
async fn try_open(
    path: &Path,
    args: &RunArgs,
) -> Result<Result<Arc<Journal>, JournalError>, AppError> {
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || Journal::open(&p)).await?;
    match res {
        Ok(j) => {
            owner::claim(path, "run", Some(&args.metrics_addr));
            // A journal with unreadable blocks would take their records for duplicates forever:
            // `run` stops with the remedy, as `harvest` does.
            super::refuse_damage(&j)?;
            Ok(Ok(Arc::new(j)))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Shows why the journal is closed on /healthz and in the log.
fn report_down(metrics: &Metrics, e: JournalError, retry_in: Duration) {
    metrics.journal_down(&e.to_string());
    tracing::error!(error = %e, retry_in_s = retry_in.as_secs_f64(),
        "the journal is closed after an I/O error; opening it again");
}

/// Opens the journal again, retrying with backoff whatever the error (its cause, a full disk
/// say, may be gone next time); `None` when shutdown came first.
async fn open_with_backoff(
    path: &Path,
    args: &RunArgs,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
    mut backoff: Duration,
) -> Result<Option<Arc<Journal>>, AppError> {
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        metrics.journal_reopens.inc();
        match try_open(path, args).await? {
            Ok(j) => {
                metrics.journal_up();
                tracing::info!(path = %path.display(), "journal open again; harvesting and forwarding resume");
                return Ok(Some(j));
            }
            Err(e) => {
                report_down(metrics, e.at(path), backoff);
                pause(backoff, &mut stop).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Closes the journal once the last handle on it is gone (a request or a blocking task may
/// still hold one for a moment), so that it can be opened again.
async fn close(journal: Arc<Journal>, stop: &watch::Receiver<bool>) {
    let mut j = journal;
    let mut waited = Duration::ZERO;
    loop {
        match Arc::try_unwrap(j) {
            Ok(inner) => {
                // Closing writes to the file; keep it off the async threads.
                let _ = tokio::task::spawn_blocking(move || drop(inner)).await;
                return;
            }
            Err(back) => {
                j = back;
                if *stop.borrow() && waited > Duration::from_secs(5) {
                    return;
                }
                if waited.as_secs() > 0 && waited.as_millis() % 10_000 == 0 {
                    tracing::warn!(
                        waited_s = waited.as_secs(),
                        "the journal is still held by a task; waiting to close it"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
        }
    }
}

/// A journal I/O error met by any task of a session: the first one is kept, and the session
/// stops.
struct Fault {
    stop: watch::Sender<bool>,
    error: Mutex<Option<JournalError>>,
}

impl Fault {
    fn raise(&self, e: JournalError) {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        self.stop.send_replace(true);
    }
}

/// How a harvest cycle ended.
enum Cycle {
    Done(HarvestSummary),
    Interrupted,
    JournalFault(JournalError),
    Failed(AppError),
    /// Opencast answered an error status: the body it sent stays in the log, off /healthz.
    OpencastStatus {
        url: String,
        status: u16,
    },
}

impl Service<'_> {
    /// Serves on one open journal until shutdown (`None`) or a journal I/O error (`Some`), then
    /// stops every task that holds the journal. Returns also how many harvest cycles succeeded.
    async fn session(
        &self,
        journal: Arc<Journal>,
        stop: watch::Receiver<bool>,
    ) -> (Option<JournalError>, u64) {
        let (session_tx, session_rx) = watch::channel(false);
        let fault = Arc::new(Fault {
            stop: session_tx,
            error: Mutex::new(None),
        });
        let relay = {
            let (mut stop, fault) = (stop.clone(), fault.clone());
            tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
                fault.stop.send_replace(true);
            })
        };
        let new_records = Arc::new(Notify::new());
        let forwarders: Vec<_> = self
            .outputs
            .iter()
            .map(|o| {
                tokio::spawn(forward_loop(
                    journal.clone(),
                    o.clone(),
                    self.args.sink.clone(),
                    self.metrics.clone(),
                    new_records.clone(),
                    session_rx.clone(),
                    fault.clone(),
                ))
            })
            .collect();
        let episodes = EpisodeCache::new(
            self.opencast.clone(),
            journal.clone(),
            Duration::from_secs(self.args.episode_cache_expire.max(1)),
            self.tz,
        );
        let mut harvester = Harvester::new(
            self.opencast.clone(),
            episodes,
            journal.clone(),
            HarvestOptions {
                batch_size: self.args.batch_size,
                tz: self.tz,
                prefetch: self.args.pace.max_in_flight,
                ..HarvestOptions::default()
            },
        );
        harvester.shutdown = Some(session_rx.clone());
        let mut session = session_rx.clone();
        let mut warned_size = false;
        let mut healthy_cycles = 0;
        while !*session.borrow() {
            match self.cycle(&harvester, &journal).await {
                Cycle::Done(s) => {
                    self.metrics.count_harvest(&s);
                    self.metrics.harvest_ok();
                    healthy_cycles += 1;
                    tracing::info!(
                        actions = s.actions,
                        batches = s.batches,
                        dead_letters = s.dead_letters,
                        duplicates_skipped = s.duplicates,
                        seconds = format!("{:.3}", s.seconds),
                        "harvest cycle"
                    );
                }
                Cycle::Interrupted => break,
                Cycle::JournalFault(e) => {
                    // /healthz stays 503 after the reopen until a harvest succeeds again.
                    let e = e.at(journal.path());
                    self.metrics.harvest_failed(&e.to_string());
                    fault.raise(e);
                    break;
                }
                Cycle::Failed(e) => {
                    self.metrics.harvest_failed(&e.to_string());
                    tracing::error!(error = %e, "harvest cycle failed; retrying next cycle");
                }
                Cycle::OpencastStatus { url, status } => {
                    let e =
                        format!("Opencast answered {status} for {url} (the log has its answer)");
                    self.metrics.harvest_failed(&e);
                    tracing::error!(error = %e, "harvest cycle failed; retrying next cycle");
                }
            }
            new_records.notify_waiters();
            // The checkpoint lag on /metrics stays current while the journal is closed, too.
            if let Ok(cp) = journal.checkpoint() {
                self.metrics.checkpoint(cp.map(|c| c.last_action_us));
            }
            if let Some(s3) = &self.s3 {
                if let Err(e) = sync_checkpoint(&journal, s3, self.tz).await {
                    self.metrics.s3_errors.inc();
                    tracing::error!(error = %e, "checkpoint not written to S3");
                }
            }
            self.warn_size(&journal, &mut warned_size);
            pause(self.every, &mut session).await;
        }
        fault.stop.send_replace(true);
        relay.abort();
        drop(harvester);
        for f in forwarders {
            let abort = f.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let e = fault.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        (e, healthy_cycles)
    }

    /// One harvest from the checkpoint to now.
    async fn cycle(&self, harvester: &Harvester, journal: &Journal) -> Cycle {
        // A poisoned handle shows here first when the last cycle's write failed elsewhere.
        if let Err(e) = journal.checkpoint() {
            return fault_or_failed(e);
        }
        let start = match default_start(
            journal,
            self.s3.as_ref(),
            self.tz,
            self.args.interval,
            self.args.pace.overlap,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => return Cycle::Failed(e),
        };
        let end = timefmt::floor_second(timefmt::now_us());
        let windows = harvest::windows(
            start,
            end.max(start),
            self.args.max_start_end_span.filter(|m| *m > 0),
        );
        if windows.len() > 1 {
            tracing::warn!(
                windows = windows.len(),
                "behind by more than MAX_START_END_SPAN: catching up window by window"
            );
        }
        match harvester.harvest(&windows).await {
            Ok(s) => Cycle::Done(s),
            Err(HarvestError::Interrupted) => Cycle::Interrupted,
            Err(HarvestError::Journal(e)) => fault_or_failed(e),
            // The body Opencast sent with an error status stays in the log, off /healthz.
            Err(HarvestError::Opencast(crate::opencast::OpencastError::Status {
                url,
                status,
                ..
            })) => Cycle::OpencastStatus { url, status },
            Err(e) => Cycle::Failed(e.into()),
        }
    }

    fn warn_size(&self, journal: &Journal, warned: &mut bool) {
        let limit = self.args.journal_warn_size;
        let size = std::fs::metadata(journal.path())
            .map(|m| m.len())
            .unwrap_or(0);
        if size > limit && !*warned {
            tracing::warn!(size, limit,
                "the journal is larger than JOURNAL_WARN_SIZE: is a sink down? (`harvester journal stats` shows each sink's lag)");
            *warned = true;
        } else if size <= limit {
            *warned = false;
        }
    }
}

fn fault_or_failed(e: JournalError) -> Cycle {
    if e.needs_reopen() {
        Cycle::JournalFault(e)
    } else {
        Cycle::Failed(e.into())
    }
}

/// Forwards to one sink for as long as the session runs, reconnecting and backing off while
/// the sink is down: the journal holds everything meanwhile. A journal I/O error ends the
/// session (the journal must be reopened).
async fn forward_loop(
    journal: Arc<Journal>,
    output: Output,
    sink_args: SinkArgs,
    metrics: Arc<Metrics>,
    new_records: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    fault: Arc<Fault>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut sink = None;
    // `stdout`, `sqs` or `es`: the label of the per-sink latency and dead letters.
    let kind = format!("{output:?}").to_lowercase();
    let send_time = metrics.sink_send_histogram(&kind);
    metrics.sink_dead_letters(&kind, 0);
    while !*stop.borrow() {
        if sink.is_none() {
            match make_sink(&output, &sink_args, &journal).await {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    metrics.sink_error(&kind);
                    tracing::warn!(error = %e, "sink unavailable; records wait in the journal");
                    pause(backoff, &mut stop).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let (s, cursor) = sink.as_mut().expect("connected");
        let notified = new_records.notified();
        let dead_before = s.dead_letters();
        let res =
            forward::forward_observed(&journal, s, cursor, Some(&stop), Some(&send_time)).await;
        metrics.sink_dead_letters(&kind, s.dead_letters().saturating_sub(dead_before));
        match res {
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
            Err(forward::ForwardError::Journal(e)) if e.needs_reopen() => {
                fault.raise(e);
                return;
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
