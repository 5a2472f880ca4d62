//! The endpoints of `harvester run`: `/metrics` and `/healthz` (public: figures and health
//! only, no personal data, no credentials) and the record endpoints `/journal/stats` and
//! `/journal/dump`, which carry personal data and answer as [`RecordAccess`] allows.
//!
//! A dump is the one long answer, paced by its client. Clients that do not read must never
//! starve the harvest: at most [`MAX_DUMPS`] record answers run at once (others get 503 with
//! `Retry-After`), each on a thread of its own (never the blocking pool the journal's commits
//! run on), a dump whose client takes no data for [`WRITE_TIMEOUT`] is ended, and a dump ends
//! as soon as the journal is to be closed (a reopen after an I/O error waits for no client).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::access::{text, RecordAccess};
use super::JournalSlot;
use crate::journal::Journal;
use crate::metrics::Metrics;

/// Record answers (dumps and stats) served at once, over every listener.
pub const MAX_DUMPS: usize = 4;

/// A dump whose client has taken nothing for this long is ended.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a refused record request is told to wait, in seconds.
const RETRY_AFTER_S: u64 = 5;

/// The record answers running now, shared by the listeners.
#[derive(Clone)]
pub struct RecordPermits(Arc<Semaphore>);

impl Default for RecordPermits {
    fn default() -> RecordPermits {
        RecordPermits(Arc::new(Semaphore::new(MAX_DUMPS)))
    }
}

/// What the record routes of one listener need.
#[derive(Clone)]
struct Records {
    slot: JournalSlot,
    metrics: Arc<Metrics>,
    access: RecordAccess,
    permits: RecordPermits,
}

impl Records {
    /// The journal and a permit to read it, or the answer to give instead.
    fn admit(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Arc<Journal>, OwnedSemaphorePermit), Box<Response<Body>>> {
        if let Some(r) = self.access.refusal(headers) {
            return Err(Box::new(r));
        }
        let Ok(permit) = self.permits.0.clone().try_acquire_owned() else {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{MAX_DUMPS} journal dumps or stats are being answered already; try again in \
                     a few seconds\n"
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
            return Err(Box::new(r));
        };
        match self.slot.get() {
            Some(j) => Ok((j, permit)),
            None => Err(Box::new(unavailable(&self.metrics))),
        }
    }
}

/// Every route of one listener.
pub fn router(
    metrics: Arc<Metrics>,
    slot: JournalSlot,
    access: RecordAccess,
    permits: RecordPermits,
) -> Router {
    let (m, s) = (metrics.clone(), slot.clone());
    let h = metrics.clone();
    let records = Records {
        slot,
        metrics,
        access,
        permits,
    };
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    m.render(s.get().as_deref()),
                )
            }),
        )
        .route(
            "/healthz",
            get(move || async move {
                match h.health() {
                    Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                    Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                }
            }),
        )
        .merge(
            Router::new()
                .route("/journal/stats", get(stats))
                .route("/journal/dump", get(dump))
                .with_state(records),
        )
}

/// `/journal/stats`: the running service answers what `harvester journal` cannot read itself
/// while this process holds the file.
async fn stats(State(rec): State<Records>, headers: HeaderMap) -> Response<Body> {
    let (j, permit) = match rec.admit(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("journal-stats".into())
        .spawn(move || {
            let _permit = permit;
            let _ = tx.send(crate::journal::inspect::stats(&j).map_err(|e| e.to_string()));
        });
    if spawned.is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no thread for the answer\n".into(),
        );
    }
    match rx.await {
        Ok(Ok(s)) => {
            let mut r = Response::new(Body::from(serde_json::to_string(&s).unwrap_or_default()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("valid"),
            );
            r
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stats were not counted\n".into(),
        ),
    }
}

/// `/journal/dump`: streams the records a dump query asks for.
async fn dump(
    State(rec): State<Records>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response<Body> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", q.unwrap_or_default()));
    let pairs: Vec<(String, String)> = url
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(r) = rec.access.refusal(&headers) {
        return r;
    }
    let req = match crate::app::journal::DumpRequest::from_pairs(&pairs) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let (j, permit) = match rec.admit(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let failed = Arc::new(AtomicBool::new(false));
    let w = ChannelWriter {
        tx,
        buf: Vec::with_capacity(1 << 16),
        slot: rec.slot.clone(),
        journal: Arc::as_ptr(&j) as usize,
        failed: failed.clone(),
    };
    if spawn_dump(j, req, permit, w).is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no thread for the dump\n".into(),
        );
    }
    let mut r = Response::new(dump_body(rx, failed));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-ndjson".parse().expect("valid"),
    );
    r
}

/// Writes the dump on a thread of its own, which holds `permit` until the dump ends.
fn spawn_dump(
    j: Arc<Journal>,
    req: crate::app::journal::DumpRequest,
    permit: OwnedSemaphorePermit,
    mut w: ChannelWriter,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("journal-dump".into())
        .spawn(move || {
            let _permit = permit;
            match crate::app::journal::write_dump(&j, &req, &mut w) {
                Ok(bad) => {
                    for b in bad {
                        tracing::error!(first_seq = b.first_seq, error = %b.error, "dump skipped an unreadable block");
                    }
                    if std::io::Write::flush(&mut w).is_err() {
                        w.failed.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "journal dump ended early");
                    w.failed.store(true, Ordering::Relaxed);
                }
            }
        })
        .map(drop)
}

/// The response body of a dump: the chunks as they come; a dump that ended early ends its body
/// with an error, so the client never takes a cut dump for a whole one.
fn dump_body(
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    failed: Arc<AtomicBool>,
) -> Body {
    Body::from_stream(futures::stream::unfold(
        (rx, failed),
        |(mut rx, failed)| async move {
            match rx.recv().await {
                Some(i) => Some((i, (rx, failed))),
                None if failed.swap(false, Ordering::Relaxed) => Some((
                    Err(std::io::Error::other("the dump ended early")),
                    (rx, failed),
                )),
                None => None,
            }
        },
    ))
}

/// 503 while the journal is being reopened.
fn unavailable(metrics: &Metrics) -> Response<Body> {
    let why = metrics
        .health()
        .err()
        .unwrap_or_else(|| "journal unavailable".into());
    text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
}

/// Streams a dump to an HTTP response in 64 KiB chunks. A gone client, a client that takes
/// nothing for [`WRITE_TIMEOUT`], or a journal about to be closed stops the dump.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
    slot: JournalSlot,
    /// The journal dumped, by address: the dump goes on while the slot holds it.
    journal: usize,
    failed: Arc<AtomicBool>,
}

impl ChannelWriter {
    fn journal_still_open(&self) -> bool {
        self.slot
            .get()
            .is_some_and(|j| Arc::as_ptr(&j) as usize == self.journal)
    }
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
        use tokio::sync::mpsc::error::TrySendError;
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut chunk = Ok(bytes::Bytes::from(std::mem::take(&mut self.buf)));
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            if !self.journal_still_open() {
                self.failed.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("the journal is being closed"));
            }
            match self.tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                }
                Err(TrySendError::Full(c)) => {
                    if Instant::now() >= deadline {
                        self.failed.store(true, Ordering::Relaxed);
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the client took nothing for 30 s",
                        ));
                    }
                    chunk = c;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
