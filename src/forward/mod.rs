//! The forwarder: drains the journal to a sink from that sink's own cursor.
//!
//! A cursor only moves over records the sink acknowledged, in a durable journal transaction, so
//! a crash or an outage resends at most the records in flight (at-least-once; SQS FIFO queues
//! dedupe them by action id) and never skips one.

pub mod es;
pub mod sqs;
pub mod stdout;
pub mod xapi;

use std::ops::Range;
use std::sync::Arc;

use crate::journal::{Journal, JournalError};
use crate::record::Record;
pub use es::{EsConfig, EsSink};
pub use sqs::{SqsConfig, SqsSink};
pub use stdout::StdoutSink;
pub use xapi::{XapiConfig, XapiSink};

/// A sink failed; `acked` leading records of the batch did arrive.
#[derive(Debug)]
pub struct SinkError {
    acked: usize,
    /// Records (by position in the batch, at or past `acked`) that arrived all the same: they
    /// were in flight beside the request that failed.
    ahead: Vec<Range<usize>>,
    /// Boxed: an error travels through every `Result` of the forward path, the cause is big.
    cause: Box<SinkFailure>,
}

impl SinkError {
    pub fn new(acked: usize, cause: impl Into<SinkFailure>) -> SinkError {
        SinkError {
            acked,
            ahead: Vec::new(),
            cause: Box::new(cause.into()),
        }
    }

    /// Says which records past `acked` arrived all the same (ascending, disjoint ranges).
    pub fn with_ahead(mut self, ahead: Vec<Range<usize>>) -> SinkError {
        self.ahead = ahead;
        self
    }

    /// Records past the acknowledged ones that arrived all the same.
    pub fn ahead(&self) -> &[Range<usize>] {
        &self.ahead
    }

    /// Leading records of the batch the sink did take (the cursor moves over them).
    pub fn acked(&self) -> usize {
        self.acked
    }

    /// Why the sink did not take the rest.
    pub fn cause(&self) -> &SinkFailure {
        &self.cause
    }
}

/// Shown as its cause, whose source it passes on (the cause is what went wrong; `acked` is
/// what the forwarder needs to know).
impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.cause)
    }
}

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkFailure {
    #[error("writing to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error(transparent)]
    Sqs(#[from] sqs::SqsError),
    #[error(transparent)]
    Es(#[from] crate::es::BulkFailure),
    #[error(transparent)]
    Xapi(xapi::XapiError),
    /// Records the sink will never take could not be kept in the dead-letter table (so they
    /// are not acknowledged either); `what`: "records SQS refused", "rejected records".
    #[error("cannot store {what} as dead letters: {source}")]
    DeadLetterStore {
        what: &'static str,
        source: StoreError,
    },
}

/// Why records could not be stored in the dead-letter table.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Where records go.
pub enum Sink {
    Stdout(StdoutSink),
    Sqs(SqsSink),
    Es(EsSink),
    Xapi(Box<XapiSink>),
}

impl Sink {
    /// Requests made to the sink's service so far (SendMessageBatch calls for SQS, bulk
    /// requests for Elasticsearch).
    pub fn requests(&self) -> u64 {
        match self {
            Sink::Stdout(_) => 0,
            Sink::Sqs(s) => s.calls(),
            Sink::Es(s) => s.calls(),
            Sink::Xapi(s) => s.calls(),
        }
    }

    /// Records read from the journal per round: Elasticsearch takes a round as several bulk
    /// requests in flight at once, so it reads one request's worth per request in flight.
    pub fn chunk(&self) -> usize {
        match self {
            Sink::Es(s) => CHUNK.max(s.chunk()),
            Sink::Xapi(s) => s.chunk(),
            _ => CHUNK,
        }
    }

    /// Sends `records`, the journal's records from sequence `first` on, in order.
    pub async fn send(&mut self, first: u64, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Sink::Stdout(s) => s.send(records),
            Sink::Sqs(s) => s.send(first, records).await,
            Sink::Es(s) => s.send(first, records).await,
            Sink::Xapi(s) => s.send(first, records).await,
        }
    }

    /// Records this sink put in the dead-letter table so far.
    pub fn dead_letters(&self) -> u64 {
        match self {
            Sink::Stdout(_) => 0,
            Sink::Sqs(s) => s.dead_letters(),
            Sink::Es(s) => s.dead_letters(),
            Sink::Xapi(s) => s.dead_letters(),
        }
    }
}

/// Stores records a sink will never take in the dead-letter table (off the async threads);
/// returns how many were new, or why they could not be stored (then the sink must not
/// acknowledge them).
pub(crate) async fn store_refusals(
    journal: &Arc<Journal>,
    letters: Vec<(crate::journal::DeadLetter, crate::journal::SinkRefusal)>,
) -> Result<u64, StoreError> {
    let j = journal.clone();
    Ok(tokio::task::spawn_blocking(move || j.add_sink_dead_letters(letters)).await??)
}

/// What stopped a forward.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("sink {sink}: {source} ({forwarded} records were forwarded before; the rest stay in the journal and go out next run)")]
    Sink {
        sink: String,
        forwarded: u64,
        source: SinkError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("internal task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Figures of one forward.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardSummary {
    pub forwarded: u64,
    pub cursor: u64,
}

/// Records read from the journal per round (about one harvested page).
pub const CHUNK: usize = 1000;

/// Sends everything after the cursor named `cursor` to `sink`, moving the cursor as it goes.
pub async fn forward(
    journal: &Arc<Journal>,
    sink: &mut Sink,
    cursor: &str,
) -> Result<ForwardSummary, ForwardError> {
    forward_until(journal, sink, cursor, None).await
}

/// [`forward`], stopping between chunks once `stop` turns true (service shutdown).
pub async fn forward_until(
    journal: &Arc<Journal>,
    sink: &mut Sink,
    cursor: &str,
    stop: Option<&crate::shutdown::Shutdown>,
) -> Result<ForwardSummary, ForwardError> {
    forward_observed(journal, sink, cursor, stop, None).await
}

/// [`forward_until`], observing in `send_time` how long the sink took to take each batch
/// (`harvester run`'s `/metrics`): one clock read per batch of up to [`CHUNK`] records.
///
/// Records an earlier forward delivered beyond its cursor (in flight beside a request that
/// failed; see [`crate::journal::Journal::sent_ahead`]) are skipped, not sent again as new.
pub async fn forward_observed(
    journal: &Arc<Journal>,
    sink: &mut Sink,
    cursor: &str,
    stop: Option<&crate::shutdown::Shutdown>,
    send_time: Option<&crate::metrics::Histogram>,
) -> Result<ForwardSummary, ForwardError> {
    let mut pos = journal.cursor(cursor)?;
    let mut ahead = Ahead::load(journal, cursor, pos).await?;
    let mut sum = ForwardSummary {
        forwarded: 0,
        cursor: pos,
    };
    loop {
        if stop.is_some_and(|s| s.is_shutdown()) {
            break;
        }
        let j = journal.clone();
        let chunk = sink.chunk();
        let (first, records) = tokio::task::spawn_blocking(move || j.read_from(pos, chunk))
            .await
            .map_err(ForwardError::Task)??;
        if records.is_empty() {
            break;
        }
        let started = std::time::Instant::now();
        let result = send_skipping(sink, first, &records, &ahead.ranges).await;
        if let Some(h) = send_time {
            h.observe(started.elapsed());
        }
        let acked = match &result {
            Ok(()) => records.len(),
            Err((acked, _)) => *acked,
        };
        let to = first + acked as u64;
        if to > pos {
            let j = journal.clone();
            let name = cursor.to_string();
            tokio::task::spawn_blocking(move || j.advance_cursor(&name, to))
                .await
                .map_err(ForwardError::Task)??;
            sum.forwarded += to - first;
            pos = to;
            sum.cursor = pos;
        }
        if let Err((_, source)) = result {
            let delivered = source
                .ahead()
                .iter()
                .map(|r| (first + r.start as u64, first + r.end as u64));
            ahead.note(journal, cursor, pos, delivered).await?;
            return Err(ForwardError::Sink {
                sink: cursor.to_string(),
                forwarded: sum.forwarded,
                source,
            });
        }
        ahead.note(journal, cursor, pos, std::iter::empty()).await?;
    }
    Ok(sum)
}

/// Sends `records` (from sequence `first`) but those in `skip` (sequence ranges delivered
/// earlier); `Err((acked, why))` says how many leading records are done, skipped ones
/// included, and the sink's error with its `ahead` positions relative to `first`.
async fn send_skipping(
    sink: &mut Sink,
    first: u64,
    records: &[Record],
    skip: &[(u64, u64)],
) -> Result<(), (usize, SinkError)> {
    let end = first + records.len() as u64;
    let mut at = first;
    while at < end {
        if let Some(&(_, to)) = skip.iter().find(|(from, to)| *from <= at && at < *to) {
            at = to.min(end);
            continue;
        }
        let upto = skip
            .iter()
            .map(|(from, _)| *from)
            .filter(|from| *from > at)
            .min()
            .unwrap_or(end)
            .min(end);
        let (a, b) = ((at - first) as usize, (upto - first) as usize);
        if let Err(e) = sink.send(at, &records[a..b]).await {
            let acked = a + e.acked();
            let ahead = e.ahead().iter().map(|r| r.start + a..r.end + a).collect();
            return Err((acked, e.with_ahead(ahead)));
        }
        at = upto;
    }
    Ok(())
}

/// The sequence ranges a cursor's sink delivered beyond it, as noted in the journal.
struct Ahead {
    ranges: Vec<(u64, u64)>,
}

impl Ahead {
    async fn load(journal: &Arc<Journal>, cursor: &str, pos: u64) -> Result<Ahead, ForwardError> {
        let j = journal.clone();
        let name = cursor.to_string();
        let mut ranges = tokio::task::spawn_blocking(move || j.sent_ahead(&name))
            .await
            .map_err(ForwardError::Task)??;
        ranges.retain(|(_, to)| *to > pos);
        Ok(Ahead { ranges })
    }

    /// Drops the ranges the cursor (at `pos`) has passed, adds `delivered`, and writes the note
    /// when it changed.
    async fn note(
        &mut self,
        journal: &Arc<Journal>,
        cursor: &str,
        pos: u64,
        delivered: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(), ForwardError> {
        let before = self.ranges.clone();
        self.ranges.extend(delivered.filter(|(from, to)| to > from));
        self.ranges.retain(|(_, to)| *to > pos);
        self.ranges.sort_unstable();
        if self.ranges == before {
            return Ok(());
        }
        let j = journal.clone();
        let name = cursor.to_string();
        let ranges = self.ranges.clone();
        tokio::task::spawn_blocking(move || j.set_sent_ahead(&name, &ranges))
            .await
            .map_err(ForwardError::Task)??;
        Ok(())
    }
}
