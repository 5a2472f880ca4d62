//! One session of the service: serving on one open journal until shutdown or a journal I/O
//! error. Harvest cycles run here every interval; the forwarders ([`super::forwarder`]) run
//! beside them, and every task ends before the session returns (the journal can then close).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::super::{default_start, sync_checkpoint, Output};
use super::forwarder::forward_loop;
use crate::app::AppError;
use crate::checkpoint::S3Checkpoint;
use crate::cli::RunArgs;
use crate::episodes::EpisodeCache;
use crate::harvest::{self, HarvestError, HarvestOptions, HarvestSummary, Harvester};
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::opencast::{Opencast, OpencastError};
use crate::shutdown::{Completion, Shutdown, Trigger};
use crate::timefmt;

/// How long the forwarders get to finish the batch in hand once a session stops; one still
/// busy after it (a sink that does not answer) is aborted, so that the journal can close.
const FORWARDERS_GRACE: Duration = Duration::from_secs(10);

/// What every session needs, built once.
pub(super) struct Service<'a> {
    pub(super) args: &'a RunArgs,
    pub(super) outputs: Vec<Output>,
    pub(super) tz: Tz,
    pub(super) every: Duration,
    pub(super) opencast: Opencast,
    pub(super) s3: Option<S3Checkpoint>,
    pub(super) metrics: Arc<Metrics>,
}

/// A journal I/O error met by any task of a session: the first one is kept, and the session
/// stops.
pub(super) struct Fault {
    stop: Trigger,
    error: Mutex<Option<JournalError>>,
}

impl Fault {
    /// Keeps `e` unless a cause is kept already; a follow-up error ("had an I/O error earlier")
    /// raised first gives way to the cause itself when it comes (tasks race to raise).
    pub(super) fn raise(&self, e: JournalError) {
        {
            let mut kept = self.error.lock().unwrap_or_else(|p| p.into_inner());
            let replace = match &*kept {
                None => true,
                Some(k) => super::reopen::is_follow_up(k) && !super::reopen::is_follow_up(&e),
            };
            if replace {
                *kept = Some(e);
            }
        }
        self.stop.fire();
    }

    fn take(&self) -> Option<JournalError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
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
    pub(super) async fn session(
        &self,
        journal: Arc<Journal>,
        stop: Shutdown,
    ) -> (Option<JournalError>, u64) {
        let (trigger, session) = Trigger::new();
        let fault = Arc::new(Fault {
            stop: trigger,
            error: Mutex::new(None),
        });
        // The service's shutdown stops the session too.
        let relay = {
            let fault = fault.clone();
            tokio::spawn(async move {
                stop.wait().await;
                fault.stop.fire();
            })
        };
        let new_records = Arc::new(Notify::new());
        let done = Completion::new();
        let forwarders = self.spawn_forwarders(&journal, &new_records, &session, &fault, &done);
        let harvester = self.harvester(&journal, session.clone());
        let mut warned_size = false;
        let mut healthy_cycles = 0;
        while !session.is_shutdown() {
            self.metrics.cycle_running(true);
            let cycle = self.cycle(&harvester, &journal, &session).await;
            self.metrics.cycle_running(false);
            match cycle {
                Cycle::Done(s) => {
                    self.record(&s);
                    healthy_cycles += 1;
                }
                Cycle::Interrupted => break,
                Cycle::JournalFault(e) => {
                    // /healthz stays 503 after the reopen until a harvest succeeds again.
                    let e = e.at(journal.path());
                    self.metrics
                        .harvest_failed_journal(&e.to_string(), super::reopen::is_follow_up(&e));
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
            self.after_cycle(&journal, &mut warned_size).await;
            session.sleep(self.every).await;
        }
        fault.stop.fire();
        relay.abort();
        drop(harvester);
        // Each forwarder ends once its batch in hand is acknowledged.
        let _ = tokio::time::timeout(FORWARDERS_GRACE, done.wait()).await;
        for f in forwarders {
            f.abort();
        }
        (fault.take(), healthy_cycles)
    }

    /// A forwarder per output, each holding a guard of `done` until it ends.
    fn spawn_forwarders(
        &self,
        journal: &Arc<Journal>,
        new_records: &Arc<Notify>,
        session: &Shutdown,
        fault: &Arc<Fault>,
        done: &Completion,
    ) -> Vec<JoinHandle<()>> {
        self.outputs
            .iter()
            .map(|o| {
                let guard = done.guard();
                let task = forward_loop(
                    journal.clone(),
                    o.clone(),
                    self.args.sink.clone(),
                    self.metrics.clone(),
                    new_records.clone(),
                    session.clone(),
                    fault.clone(),
                );
                tokio::spawn(async move {
                    task.await;
                    drop(guard);
                })
            })
            .collect()
    }

    /// The session's harvester: it stops at the page in hand once `session` fires.
    fn harvester(&self, journal: &Arc<Journal>, session: Shutdown) -> Harvester {
        let episodes = EpisodeCache::new(
            self.opencast.clone(),
            journal.clone(),
            Duration::from_secs(self.args.episode_cache_expire.max(1)),
            self.tz,
        );
        Harvester::new(
            self.opencast.clone(),
            episodes,
            journal.clone(),
            HarvestOptions {
                batch_size: self.args.batch_size,
                tz: self.tz,
                prefetch: self.args.pace.max_in_flight,
                api: self.args.opencast.settings().api,
                ..HarvestOptions::default()
            },
        )
        .with_shutdown(session)
    }

    /// Counts and logs a successful cycle.
    fn record(&self, s: &HarvestSummary) {
        self.metrics.count_harvest(s);
        self.metrics.harvest_ok();
        tracing::info!(
            actions = s.actions,
            batches = s.batches,
            dead_letters = s.dead_letters,
            duplicates_skipped = s.duplicates,
            seconds = format!("{:.3}", s.seconds),
            "harvest cycle"
        );
    }

    /// After every cycle, whatever its outcome: the checkpoint's lag, its copy on S3 and the
    /// journal's size.
    async fn after_cycle(&self, journal: &Arc<Journal>, warned_size: &mut bool) {
        // The checkpoint lag on /metrics stays current while the journal is closed, too.
        if let Ok(cp) = journal.checkpoint() {
            self.metrics.checkpoint(cp.map(|c| c.last_action_us));
        }
        if let Some(s3) = &self.s3 {
            if let Err(e) = sync_checkpoint(journal, s3, self.tz).await {
                self.metrics.s3_error();
                tracing::error!(error = %e, "checkpoint not written to S3");
            }
        }
        self.warn_size(journal, warned_size);
    }

    /// One harvest from the checkpoint to now.
    async fn cycle(&self, harvester: &Harvester, journal: &Journal, session: &Shutdown) -> Cycle {
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
        match harvest_until_stopped(harvester, &windows, session).await {
            Ok(s) => Cycle::Done(s),
            Err(HarvestError::Interrupted) => Cycle::Interrupted,
            Err(HarvestError::Journal(e)) => fault_or_failed(e),
            // The body Opencast sent with an error status stays in the log, off /healthz.
            Err(HarvestError::Opencast(OpencastError::Status { url, status, .. })) => {
                Cycle::OpencastStatus { url, status }
            }
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

/// How long a harvest may go on after shutdown is asked for: the page in hand commits, but a
/// request Opencast does not answer (or answers only after retries) is not waited out, which
/// would outlast a service manager's stop timeout (systemd's is 90 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The harvest of `windows`; once `session` shuts down it has [`SHUTDOWN_GRACE`] to stop at a
/// page boundary by itself, then it is dropped. Dropping it loses only pages not yet committed
/// (a commit already running on the blocking pool completes on its own), so the checkpoint
/// never passes what is not in the journal.
async fn harvest_until_stopped(
    harvester: &Harvester,
    windows: &[(i64, i64)],
    session: &Shutdown,
) -> Result<HarvestSummary, HarvestError> {
    let harvest = harvester.harvest(windows);
    tokio::pin!(harvest);
    tokio::select! {
        r = &mut harvest => r,
        _ = session.wait() => tokio::time::timeout(SHUTDOWN_GRACE, &mut harvest)
            .await
            .unwrap_or(Err(HarvestError::Interrupted)),
    }
}
