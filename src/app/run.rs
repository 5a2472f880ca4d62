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
//!
//! The rooms: this file starts the service and runs its sessions one after another;
//! [`reopen`] opens, closes and reopens the journal; [`session`] serves on one open journal
//! (the harvest cycles); [`forwarder`] forwards to one sink; [`http`] is the HTTP API, served
//! on TCP and on the Unix socket of [`socket`], with the record access of [`access`].

mod access;
mod forwarder;
mod http;
mod reopen;
mod session;
pub mod socket;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::{
    check_sink_settings, journal_error, parse_outputs, s3_checkpoint, s3_client_if, AppError,
    Output,
};
use crate::cli::{Cli, RunArgs};
use crate::config::{self, ConfigError};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::retry;
use crate::shutdown::{Shutdown, Trigger};

pub use access::{ApiToken, RecordAccess, TOKEN_VAR};
use http::RecordPermits;
pub use reopen::JournalSlot;
use reopen::{close, open_with_backoff, report_down, try_open};
use session::Service;

/// Resolves on `kind`; never when it cannot be listened for.
async fn signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

/// Resolves on SIGTERM, SIGINT or SIGHUP, naming it. SIGHUP (a closed terminal, or a service
/// manager's reload) stops the service as SIGTERM does: the work in hand is committed, and the
/// manager's restart reads the settings again. Left to its default, it killed the process.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = signal(SignalKind::terminate()) => "SIGTERM",
        _ = signal(SignalKind::hangup()) => "SIGHUP",
    }
}

/// The service's shutdown: fired by SIGTERM, SIGINT or SIGHUP.
fn on_signal() -> Shutdown {
    let (trigger, shutdown) = Trigger::new();
    tokio::spawn(async move {
        let which = shutdown_signal().await;
        tracing::info!(
            signal = which,
            "shutdown requested: finishing the work in hand"
        );
        trigger.fire();
    });
    shutdown
}

/// The settings of `run` beyond the harvest's own, checked before anything starts.
struct Settings {
    tz: Tz,
    outputs: Vec<Output>,
    every: Duration,
    addr: SocketAddr,
}

impl Settings {
    fn parse(args: &RunArgs) -> Result<Settings, AppError> {
        let tz = config::parse_tz(&args.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
        let outputs = parse_outputs(&args.output, &args.sink)?;
        check_sink_settings(&args.sink)?;
        if args.interval == 0 {
            return Err(
                ConfigError::new("DEFAULT_INTERVAL/--interval must be at least 1 minute").into(),
            );
        }
        let every = match args.every {
            Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
            Some(_) => {
                return Err(ConfigError::new(
                    "HARVEST_EVERY/--every takes a number of seconds above 0",
                )
                .into())
            }
            None => Duration::from_secs(args.interval * 60),
        };
        let addr: SocketAddr = args.metrics_addr.parse().map_err(|_| {
            ConfigError::new(format!(
                "METRICS_ADDR '{}' is not an address like 127.0.0.1:9898",
                args.metrics_addr
            ))
        })?;
        Ok(Settings {
            tz,
            outputs,
            every,
            addr,
        })
    }
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<(), AppError> {
    let Settings {
        tz,
        outputs,
        every,
        addr,
    } = Settings::parse(args)?;
    let token = ApiToken::from_env()?;
    let opencast = config::opencast(&args.opencast.settings(), None)?;
    let stop = on_signal();
    // In the background: an Opencast that does not answer must not hold up the service.
    tokio::spawn({
        let oc = opencast.clone();
        async move { super::identity::confirm(&oc, super::identity::OnDoubt::Warn).await }
    });
    let metrics = Arc::new(Metrics::new(opencast.client().stats_handle()));
    metrics.set_stall_after(Duration::from_secs(args.stall_after));
    metrics.set_journal_path(&cli.journal);
    if let Some(e) = args.sink.enrich.enricher.get() {
        metrics.set_enrichment(e.clone());
    }
    let path = cli.journal.as_path();
    // A journal that cannot be used (in use, of a newer format) fails the command; one that
    // meets an I/O error (a full disk) is waited out, as one met later is.
    let first = match try_open(path, args).await? {
        Err(e) if !e.needs_reopen() => return Err(journal_error(path, e)),
        first => first,
    };
    let s3 = s3_checkpoint(&args.s3, s3_client_if(&args.s3).await);

    let slot = JournalSlot::default();
    let server = serve_http(
        addr,
        path,
        token,
        metrics.clone(),
        slot.clone(),
        stop.clone(),
    )
    .await?;
    tracing::info!(%addr, every_s = every.as_secs_f64(), "harvester running; /metrics and /healthz on the address");
    let mut reopen = retry::JOURNAL_REOPEN.retries();
    let journal = match first {
        Ok(j) => Some(j),
        Err(e) => {
            // The first attempt again comes at once; then with backoff.
            report_down(&metrics, e.at(path), Duration::ZERO);
            open_with_backoff(path, args, &metrics, &stop, &mut reopen).await?
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
    serve(&svc, path, journal, &slot, &stop, &mut reopen).await?;
    stop_http(server).await;
    tracing::info!("harvester stopped");
    Ok(())
}

/// Listens with the HTTP API until `stop` fires: on `addr` (records only with the token) and
/// on the Unix socket beside the journal at `journal` (records for whoever may read the
/// journal). A socket that cannot be made is warned about: the service runs on without it.
async fn serve_http(
    addr: SocketAddr,
    journal: &Path,
    token: Option<ApiToken>,
    metrics: Arc<Metrics>,
    slot: JournalSlot,
    stop: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::io(format!("cannot listen on METRICS_ADDR {addr}"), e))?;
    let permits = RecordPermits::default();
    let mut socket = match socket::bind(journal) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no record socket: `harvester journal dump` and `stats` \
                cannot ask this service (over TCP they need HARVESTER_API_TOKEN)");
            None
        }
    };
    let access = RecordAccess::for_tcp(
        &addr,
        token,
        socket.as_ref().map(|s| s.path().to_path_buf()),
    );
    let tcp = http::router(metrics.clone(), slot.clone(), access, permits.clone());
    let unix = socket.as_mut().and_then(|s| s.take_listener()).map(|l| {
        let app = http::router(metrics, slot, RecordAccess::Socket, permits);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move { stop.wait().await })
                .await;
        })
    });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, tcp)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await;
        if let Some(u) = unix {
            let _ = u.await;
        }
        // The socket file goes with the service.
        drop(socket);
    }))
}

/// The server holds no journal (its slot is empty by now); one that does not stop is ended.
async fn stop_http(mut server: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(2), &mut server)
        .await
        .is_err()
    {
        server.abort();
        let _ = server.await;
    }
}

/// Runs sessions on the journal until shutdown: after a session's journal I/O error, closes the
/// journal and opens it again with backoff (reset once a session harvested successfully).
async fn serve(
    svc: &Service<'_>,
    path: &Path,
    mut journal: Option<Arc<Journal>>,
    slot: &JournalSlot,
    stop: &Shutdown,
    reopen: &mut retry::Retries,
) -> Result<(), AppError> {
    while let Some(j) = journal.take() {
        slot.set(Some(j.clone()));
        let (fault, healthy_cycles) = svc.session(j.clone(), stop.clone()).await;
        slot.set(None);
        close(j, stop).await;
        let Some(e) = fault else { break };
        svc.metrics.journal_fault();
        if healthy_cycles > 0 {
            reopen.reset();
        }
        let wait = reopen.next_delay();
        report_down(&svc.metrics, e.at(path), wait);
        stop.sleep(wait).await;
        journal = open_with_backoff(path, svc.args, &svc.metrics, stop, reopen).await?;
    }
    Ok(())
}
