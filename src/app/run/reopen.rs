//! The journal across sessions: opening it (and claiming it for this process), closing it once
//! nobody holds it, opening it again with backoff after an I/O error, and the slot through which
//! the HTTP routes reach it meanwhile.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::super::{owner, refuse_damage, AppError};
use crate::cli::RunArgs;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::retry::Retries;
use crate::shutdown::Shutdown;

/// The open journal as the HTTP routes reach it: present while a session runs, empty while the
/// file is closed for a reopen (a route then answers 503 instead of keeping the file open).
#[derive(Clone, Default)]
pub struct JournalSlot(Arc<RwLock<Option<Arc<Journal>>>>);

impl JournalSlot {
    pub fn get(&self) -> Option<Arc<Journal>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set(&self, j: Option<Arc<Journal>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = j;
    }
}

/// Opens the journal and records this process as its holder.
pub(super) async fn try_open(
    path: &Path,
    args: &RunArgs,
) -> Result<Result<Arc<Journal>, JournalError>, AppError> {
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || Journal::open(&p)).await?;
    match res {
        Ok(j) => {
            owner::claim_service(path, &args.metrics_addr, &super::socket::path_of(path));
            // A journal with unreadable blocks would take their records for duplicates forever:
            // `run` stops with the remedy, as `harvest` does.
            refuse_damage(&j)?;
            Ok(Ok(Arc::new(j)))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Shows why the journal is closed on /healthz and in the log: its first cause (a full disk),
/// never only the error that followed it.
pub(super) fn report_down(metrics: &Metrics, e: JournalError, retry_in: Duration) {
    metrics.journal_down(&e.to_string(), is_follow_up(&e));
    let shown = metrics.health().err().unwrap_or_else(|| e.to_string());
    tracing::error!(error = %shown, retry_in_s = retry_in.as_secs_f64(),
        "the journal is closed after an I/O error; opening it again");
}

/// Whether `e` only says that an earlier I/O error poisoned the handle.
pub(super) fn is_follow_up(e: &JournalError) -> bool {
    matches!(e, JournalError::NeedsReopen { .. })
}

/// Opens the journal again, retrying with `backoff` whatever the error (its cause, a full disk
/// say, may be gone next time); `None` when shutdown came first.
pub(super) async fn open_with_backoff(
    path: &Path,
    args: &RunArgs,
    metrics: &Metrics,
    stop: &Shutdown,
    backoff: &mut Retries,
) -> Result<Option<Arc<Journal>>, AppError> {
    loop {
        if stop.is_shutdown() {
            return Ok(None);
        }
        metrics.journal_reopen_attempt();
        match try_open(path, args).await? {
            Ok(j) => {
                metrics.journal_up();
                tracing::info!(path = %path.display(), "journal open again; harvesting and forwarding resume");
                return Ok(Some(j));
            }
            Err(e) => {
                let wait = backoff.next_delay();
                report_down(metrics, e.at(path), wait);
                stop.sleep(wait).await;
            }
        }
    }
}

/// Closes the journal once the last handle on it is gone (a request or a blocking task may
/// still hold one for a moment), so that it can be opened again.
pub(super) async fn close(journal: Arc<Journal>, stop: &Shutdown) {
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
                if stop.is_shutdown() && waited > Duration::from_secs(5) {
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
