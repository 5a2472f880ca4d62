//! The SQS sink: `SendMessageBatch` of up to 10 records under the batch payload limit.
//!
//! An HTTP 200 can still carry per-entry failures: every answer's `Failed` list is read and only
//! those entries are sent again (bounded, with backoff). A record counts as acknowledged only when
//! SQS listed it as successful, or when SQS will never take it: larger than the queue's
//! `MaximumMessageSize`, or refused with `SenderFault` (its content is wrong, a retry cannot
//! help). Those go to the journal's dead-letter table with SQS's reason before they count, so one
//! bad record never jams the queue; `journal replay --dead-letters` sends them again later. The
//! forwarder moves the cursor over the leading acknowledged records only.
//!
//! SQS can also refuse a whole `SendMessageBatch` for one entry's content (`InvalidMessageContents`
//! as the request's error, not an entry's): the batch is then split in halves, again and again,
//! until the entry is alone, and that entry is a dead letter with SQS's reason; the others go
//! out once. A queue that no longer exists (deleted under a running service) fails the batch at
//! once, so the caller can reconnect, which creates the queue again.
//!
//! Several batches are in flight at once (`concurrency`, eight by default: one batch takes a round
//! trip, and one at a time would cap a forward at a few hundred records a second). That is why
//! batches behind a batch that fails for good were sent at all: they were already on the wire when
//! the failure became known. The cursor can only cover the leading acknowledged records, so the
//! sink reports the later deliveries ([`Delivery::ahead`]) and the forwarder notes them in the
//! journal; the next run skips them instead of sending them again as new. Once one batch has
//! failed for good, batches not yet started are not sent.
//!
//! SQS refuses bodies with characters outside `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
//! #x10000-#x10FFFF`. serde_json escapes every control character below U+0020 and Rust strings
//! hold no surrogates, so only U+FFFE and U+FFFF can reach a body raw: they are written as
//! `\ufffe`/`\uffff` escapes (the JSON parses to the same value), other bodies stay byte for
//! byte what the stdout sink writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_sqs::operation::send_message_batch::builders::SendMessageBatchFluentBuilder;
use aws_sdk_sqs::types::{BatchResultErrorEntry, QueueAttributeName, SendMessageBatchRequestEntry};
use futures::StreamExt;

use super::{SinkError, SinkFailure};
use crate::aws::describe;
use crate::enrich::Shaper;
use crate::journal::{DeadLetter, Journal, SinkRefusal};
use crate::record::Record;
use crate::timefmt;

/// SQS's own limits.
pub const MAX_ENTRIES: usize = 10;
pub const DEFAULT_BATCH_BYTES: usize = 256 * 1024;
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// A queue's `MaximumMessageSize` when it does not say (SQS's default).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 262_144;

/// How to reach and fill the queue.
#[derive(Debug, Clone)]
pub struct SqsConfig {
    pub queue_name: String,
    /// Payload limit of one `SendMessageBatch` (all bodies together).
    pub max_batch_bytes: usize,
    /// `MessageGroupId` for FIFO queues.
    pub group_id: String,
    /// Batches in flight at once.
    pub concurrency: usize,
    pub retries: u32,
}

impl SqsConfig {
    pub fn new(queue_name: &str) -> SqsConfig {
        SqsConfig {
            queue_name: queue_name.to_string(),
            max_batch_bytes: DEFAULT_BATCH_BYTES,
            group_id: "harvester".into(),
            concurrency: 8,
            retries: 5,
        }
    }
}

/// A connected SQS queue.
pub struct SqsSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
    cfg: SqsConfig,
    /// The queue's `MaximumMessageSize`: a larger body is never accepted.
    max_message_bytes: usize,
    journal: Arc<Journal>,
    calls: Arc<AtomicU64>,
    dead_letters: u64,
    /// `ENRICH_SINKS=all`: message bodies gain `geoip` / `ua`.
    enrich: Option<std::sync::Mutex<Shaper>>,
}

/// One message to send: its body and the action it carries.
#[derive(Debug, Clone)]
pub struct Entry {
    pub body: String,
    pub action_id: i64,
}

/// What became of a run of entries sent in order.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Leading entries SQS took or will never take (those are in `refused`).
    pub acked: usize,
    /// Entries (by position) SQS will never take, with its reason; all below `acked`.
    pub refused: Vec<(usize, String)>,
    /// Entries (by position, ascending) at or past `acked` that SQS took all the same: they were
    /// in flight beside the batch that failed.
    pub ahead: Vec<usize>,
    /// Why the entries from `acked` on were not delivered.
    pub failed: Option<SqsError>,
}

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Taken,
    /// SQS will never take it: its reason.
    Refused(String),
    /// Not delivered (its batch failed, or was not sent after another failed).
    Failed,
}

/// The fates of a batch's entries by position, and why the failed ones failed.
type BatchOutcome = (Vec<(usize, Fate)>, Option<SqsError>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with the queue.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// Finding, creating or reading the queue failed (`what`: "cannot look it up"…).
    #[error(
        "SQS queue '{queue}': {what}: {detail}; check SQS_QUEUE_NAME, AWS credentials/region \
         and AWS_ENDPOINT_URL"
    )]
    Queue {
        queue: String,
        what: &'static str,
        /// The SDK error in brief ([`crate::aws::describe`]).
        detail: String,
        source: BoxError,
    },
    /// A batch still failed after every retry: `last` is the SDK error in brief, or the
    /// entries SQS failed (with `source` `None`).
    #[error("SQS SendMessageBatch kept failing after {attempts} attempts: {last}")]
    Exhausted {
        attempts: u32,
        last: String,
        source: Option<BoxError>,
    },
    #[error(transparent)]
    Entry(#[from] aws_sdk_sqs::error::BuildError),
}

impl SqsError {
    /// The queue itself is gone or unusable (not a passing fault): reconnecting, which
    /// creates a missing queue, is the remedy.
    pub fn about_the_queue(&self) -> bool {
        matches!(self, SqsError::Queue { .. })
    }
}

/// How one `SendMessageBatch` request ended.
enum Sent {
    /// SQS answered: the entries it failed (the others were taken).
    Answered(Vec<BatchResultErrorEntry>),
    /// SQS refused the whole request for an entry's content: its code and message.
    RefusedWhole(String),
    /// The queue does not exist (any more).
    NoQueue(SqsError),
    /// A passing fault (the SDK error in brief, and the error).
    Failed(String, BoxError),
}

/// Error codes with which SQS refuses a whole batch for the content of its entries (the
/// query-compatible codes may carry the `AWS.SimpleQueueService.` prefix): splitting the batch
/// finds the entry.
fn refused_for_content(code: &str) -> bool {
    matches!(
        code.trim_start_matches("AWS.SimpleQueueService."),
        "InvalidMessageContents" | "MessageTooLong" | "BatchRequestTooLong"
    )
}

fn no_such_queue(code: &str) -> bool {
    matches!(
        code,
        "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue"
    )
}

/// A batch to send, or an entry refused before sending.
enum Unit {
    Batch(Vec<(usize, Entry)>),
    TooLarge(usize, String),
}

impl SqsSink {
    /// Finds the queue, creating it (FIFO when the name ends in `.fifo`) when missing, and reads
    /// its maximum message size. Refused records go to `journal`'s dead-letter table.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        cfg: SqsConfig,
        journal: Arc<Journal>,
    ) -> Result<SqsSink, SqsError> {
        let name = cfg.queue_name.clone();
        let fifo = name.ends_with(".fifo");
        let fail = |what: &'static str, detail: String, source: BoxError| SqsError::Queue {
            queue: name.clone(),
            what,
            detail,
            source,
        };
        let url = match client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url().unwrap_or_default().to_string(),
            Err(e)
                if matches!(
                    crate::aws::error_code(&e),
                    Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
                ) =>
            {
                tracing::info!(queue = %name, "creating missing SQS queue");
                let mut req = client.create_queue().queue_name(&name);
                if fifo {
                    req = req.attributes(QueueAttributeName::FifoQueue, "true");
                }
                req.send()
                    .await
                    .map_err(|e| fail("cannot create it", describe(&e), e.into()))?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string()
            }
            Err(e) => return Err(fail("cannot look it up", describe(&e), e.into())),
        };
        let attrs = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .map_err(|e| fail("cannot read its attributes", describe(&e), e.into()))?;
        let max_message_bytes = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        Ok(SqsSink {
            client,
            queue_url: url,
            fifo,
            cfg,
            max_message_bytes,
            journal,
            calls: Arc::new(AtomicU64::new(0)),
            dead_letters: 0,
            enrich: None,
        })
    }

    /// Enriches the message bodies (`ENRICH_SINKS=all`).
    pub fn with_enrichment(mut self, enrich: Option<Shaper>) -> SqsSink {
        self.enrich = enrich.map(std::sync::Mutex::new);
        self
    }

    /// The message body of `r`: its record (enriched with `ENRICH_SINKS=all`), with the
    /// characters SQS refuses escaped.
    fn body(&self, r: &Record) -> String {
        let Some(e) = &self.enrich else {
            return body_of(r);
        };
        let mut out = Vec::with_capacity(1024);
        e.lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_record(r, &mut out, false);
        sqs_safe(String::from_utf8(out).expect("serde_json writes UTF-8"))
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn queue_name(&self) -> &str {
        &self.cfg.queue_name
    }

    /// The queue's maximum message size in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// `SendMessageBatch` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Records this sink put in the dead-letter table.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// Sends the records of journal sequences `first..` in order-preserving batches; records SQS
    /// will never take are stored as dead letters. On failure reports how many leading records
    /// were acknowledged (delivered or dead-lettered), and which later ones were delivered all
    /// the same.
    pub async fn send(&mut self, first: u64, records: &[Record]) -> Result<(), SinkError> {
        let entries = records
            .iter()
            .map(|r| Entry {
                body: self.body(r),
                action_id: r.action_id,
            })
            .collect::<Vec<_>>();
        let d = self.send_entries(entries).await;
        let mut acked = d.acked;
        if !d.refused.is_empty() {
            let queue = self.cfg.queue_name.clone();
            let letters: Vec<(DeadLetter, SinkRefusal)> = d
                .refused
                .iter()
                .map(|(i, why)| {
                    let r = &records[*i];
                    (
                        DeadLetter {
                            source: format!("sqs queue {queue}"),
                            raw: self.body(r),
                            reason: format!("SQS refused action {}: {why}", r.action_id),
                            at_us: timefmt::now_us(),
                        },
                        SinkRefusal {
                            sink: "sqs".into(),
                            target: queue.clone(),
                            action_id: r.action_id,
                            seq: first + *i as u64,
                            key: format!("sqs:{queue}:{}", r.action_id),
                            delivered_at_us: None,
                        },
                    )
                })
                .collect();
            let n = letters.len();
            let ids = d
                .refused
                .iter()
                .map(|(i, _)| records[*i].action_id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let stored = super::store_refusals(&self.journal, letters).await;
            match stored {
                Ok(added) => {
                    self.dead_letters += added;
                    tracing::warn!(
                        sink = "sqs",
                        queue = %queue,
                        refused = n,
                        action_ids = %ids,
                        "SQS will never take some records; they are in the dead-letter table (harvester journal dump --dead-letters)"
                    );
                }
                Err(source) => {
                    // Not stored: acknowledge only what precedes the first of them, so they are
                    // sent (and refused) again next time.
                    acked = acked.min(d.refused[0].0);
                    return Err(SinkError::new(
                        acked,
                        SinkFailure::DeadLetterStore {
                            what: "records SQS refused",
                            source,
                        },
                    )
                    .with_ahead(ranges_of(d.ahead.iter().copied().filter(|i| *i >= acked))));
                }
            }
        }
        match d.failed {
            None => Ok(()),
            Some(failure) => Err(SinkError::new(acked, failure).with_ahead(ranges_of(d.ahead))),
        }
    }

    /// Sends `entries` in order-preserving batches, several in flight; says which leading
    /// entries were acknowledged, which of them SQS will never take, which later ones were
    /// delivered all the same, and why the rest failed.
    pub async fn send_entries(&self, entries: Vec<Entry>) -> Delivery {
        let n = entries.len();
        let mut units: Vec<Unit> = Vec::new();
        let mut cur: Vec<(usize, Entry)> = Vec::new();
        let mut cur_bytes = 0usize;
        for (i, e) in entries.into_iter().enumerate() {
            let len = e.body.len();
            if len > self.max_message_bytes {
                if !cur.is_empty() {
                    units.push(Unit::Batch(std::mem::take(&mut cur)));
                    cur_bytes = 0;
                }
                units.push(Unit::TooLarge(
                    i,
                    format!(
                        "MessageTooLong (the record is {len} bytes; the queue's MaximumMessageSize is {})",
                        self.max_message_bytes
                    ),
                ));
                continue;
            }
            // A record over the batch limit (but within the queue's limit) goes alone.
            if !cur.is_empty()
                && (cur.len() == MAX_ENTRIES || cur_bytes + len > self.cfg.max_batch_bytes)
            {
                units.push(Unit::Batch(std::mem::take(&mut cur)));
                cur_bytes = 0;
            }
            cur_bytes += len;
            cur.push((i, e));
        }
        if !cur.is_empty() {
            units.push(Unit::Batch(cur));
        }
        // Once a batch has failed for good, batches not yet started are not sent: their records
        // could not be acknowledged anyway.
        let gave_up = AtomicBool::new(false);
        let gave_up = &gave_up;
        let results: Vec<BatchOutcome> = futures::stream::iter(units)
            .map(|u| async move {
                match u {
                    Unit::Batch(b) if gave_up.load(Ordering::Relaxed) => (
                        b.into_iter().map(|(i, _)| (i, Fate::Failed)).collect(),
                        None,
                    ),
                    Unit::Batch(b) => {
                        let out = self.send_batch(b).await;
                        if out.1.is_some() {
                            gave_up.store(true, Ordering::Relaxed);
                        }
                        out
                    }
                    Unit::TooLarge(i, why) => (vec![(i, Fate::Refused(why))], None),
                }
            })
            .buffered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let mut fates = vec![Fate::Failed; n];
        let mut d = Delivery::default();
        for (unit_fates, failure) in results {
            for (i, f) in unit_fates {
                fates[i] = f;
            }
            if d.failed.is_none() {
                d.failed = failure;
            }
        }
        d.acked = fates.iter().position(|f| *f == Fate::Failed).unwrap_or(n);
        for (i, f) in fates.into_iter().enumerate() {
            match f {
                Fate::Refused(why) if i < d.acked => d.refused.push((i, why)),
                Fate::Taken if i >= d.acked => d.ahead.push(i),
                _ => {}
            }
        }
        if d.acked < n && d.failed.is_none() {
            // Cannot happen (a failed entry comes with its batch's error); said all the same.
            d.failed = Some(SqsError::Exhausted {
                attempts: 0,
                last: "a batch was not sent".into(),
                source: None,
            });
        }
        d
    }

    /// The `SendMessageBatch` request of `pending` (ids are their positions).
    fn batch_request(
        &self,
        pending: &[(usize, Entry)],
    ) -> Result<SendMessageBatchFluentBuilder, SqsError> {
        let mut req = self.client.send_message_batch().queue_url(&self.queue_url);
        for (i, e) in pending {
            let mut b = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&e.body);
            if self.fifo {
                b = b
                    .message_deduplication_id(e.action_id.to_string())
                    .message_group_id(&self.cfg.group_id);
            }
            req = req.entries(b.build()?);
        }
        Ok(req)
    }

    /// Sends one request of `pending`'s entries.
    async fn send_once(&self, pending: &[(usize, Entry)]) -> Result<Sent, SqsError> {
        let req = self.batch_request(pending)?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(match req.send().await {
            Ok(out) => Sent::Answered(out.failed().to_vec()),
            Err(e) => match crate::aws::error_code(&e) {
                Some(code) if refused_for_content(code) => Sent::RefusedWhole(describe(&e)),
                Some(code) if no_such_queue(code) => Sent::NoQueue(SqsError::Queue {
                    queue: self.cfg.queue_name.clone(),
                    what: "it no longer exists (deleted?); it is created again on reconnecting",
                    detail: describe(&e),
                    source: e.into(),
                }),
                _ => Sent::Failed(describe(&e), e.into()),
            },
        })
    }

    /// Sends one batch until every entry is taken or refused for good, or it still fails after
    /// every retry. A batch SQS refuses as a whole for an entry's content is split in halves
    /// until that entry is alone (then it is refused with SQS's reason).
    fn send_batch(
        &self,
        entries: Vec<(usize, Entry)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = BatchOutcome> + Send + '_>> {
        Box::pin(async move {
            let mut fates: Vec<(usize, Fate)> = Vec::with_capacity(entries.len());
            let mut pending = entries;
            let mut last = String::new();
            let mut last_error: Option<BoxError> = None;
            for attempt in 0..=self.cfg.retries {
                if attempt > 0 {
                    tokio::time::sleep(crate::retry::SQS_BATCH.delay(attempt - 1)).await;
                }
                let sent = match self.send_once(&pending).await {
                    Ok(s) => s,
                    Err(e) => {
                        fates.extend(pending.iter().map(|(i, _)| (*i, Fate::Failed)));
                        return (fates, Some(e));
                    }
                };
                match sent {
                    Sent::Answered(failed) => {
                        if failed.is_empty() {
                            fates.extend(pending.iter().map(|(i, _)| (*i, Fate::Taken)));
                            return (fates, None);
                        }
                        last = failed.iter().map(why).collect::<Vec<_>>().join(", ");
                        last_error = None;
                        pending = sort_failed(&failed, pending, &mut fates);
                        if pending.is_empty() {
                            return (fates, None);
                        }
                        tracing::warn!(
                            failed = pending.len(),
                            attempt,
                            "SQS batch partly failed; resending those entries"
                        );
                    }
                    Sent::RefusedWhole(reason) if pending.len() == 1 => {
                        fates.push((pending[0].0, Fate::Refused(reason)));
                        return (fates, None);
                    }
                    Sent::RefusedWhole(reason) => {
                        tracing::warn!(
                            entries = pending.len(),
                            reason = %reason,
                            "SQS refused a whole batch for an entry's content; splitting it to find the entry"
                        );
                        let second = pending.split_off(pending.len() / 2);
                        let (a, fa) = self.send_batch(pending).await;
                        fates.extend(a);
                        let (b, fb) = self.send_batch(second).await;
                        fates.extend(b);
                        return (fates, fa.or(fb));
                    }
                    Sent::NoQueue(e) => {
                        fates.extend(pending.iter().map(|(i, _)| (*i, Fate::Failed)));
                        return (fates, Some(e));
                    }
                    Sent::Failed(brief, e) => {
                        tracing::warn!(attempt, error = %brief, "SQS SendMessageBatch failed");
                        last = brief;
                        last_error = Some(e);
                    }
                }
            }
            fates.extend(pending.iter().map(|(i, _)| (*i, Fate::Failed)));
            (
                fates,
                Some(SqsError::Exhausted {
                    attempts: self.cfg.retries + 1,
                    last,
                    source: last_error,
                }),
            )
        })
    }
}

/// Ascending positions as ranges `[from, to)` of consecutive ones.
fn ranges_of(positions: impl IntoIterator<Item = usize>) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for i in positions {
        match out.last_mut() {
            Some(r) if r.end == i => r.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// A failed entry in brief: its code and message.
fn why(f: &BatchResultErrorEntry) -> String {
    format!("{} ({})", f.code(), f.message().unwrap_or(""))
}

/// Sorts the entries of a partly failed batch: those SQS refused for themselves (a sender
/// fault: sending again cannot help) get that fate with the reason; the others that failed are
/// returned to send again; those not named were taken.
fn sort_failed(
    failed: &[BatchResultErrorEntry],
    pending: Vec<(usize, Entry)>,
    fates: &mut Vec<(usize, Fate)>,
) -> Vec<(usize, Entry)> {
    let faults: std::collections::HashMap<&str, String> = failed
        .iter()
        .filter(|f| f.sender_fault())
        .map(|f| (f.id(), why(f)))
        .collect();
    let retry: std::collections::HashSet<&str> = failed
        .iter()
        .filter(|f| !f.sender_fault())
        .map(|f| f.id())
        .collect();
    let mut keep = Vec::new();
    for (i, e) in pending {
        let id = i.to_string();
        if let Some(reason) = faults.get(id.as_str()) {
            fates.push((i, Fate::Refused(reason.clone())));
        } else if retry.contains(id.as_str()) {
            keep.push((i, e));
        } else {
            fates.push((i, Fate::Taken));
        }
    }
    keep
}

/// The SQS body of a record: its JSON line, with the characters SQS refuses escaped.
pub fn body_of(r: &Record) -> String {
    sqs_safe(r.to_json())
}

/// Writes U+FFFE and U+FFFF (the only characters SQS refuses that serde_json leaves raw) as
/// `\ufffe`/`\uffff` escapes. They can only stand inside JSON strings, where the escape parses
/// to the same character. Bodies without them (nearly all) are returned as they are, after one
/// fast scan for their lead byte 0xEF.
pub fn sqs_safe(json: String) -> String {
    let b = json.as_bytes();
    let mut scan = 0;
    let mut hit = None;
    while let Some(p) = b[scan..].iter().position(|&c| c == 0xEF) {
        let p = scan + p;
        if b.get(p + 1) == Some(&0xBF) && matches!(b.get(p + 2), Some(0xBE | 0xBF)) {
            hit = Some(p);
            break;
        }
        scan = p + 1;
    }
    let Some(first) = hit else { return json };
    let mut out = String::with_capacity(json.len() + 16);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        match c {
            '\u{FFFE}' => out.push_str("\\ufffe"),
            '\u{FFFF}' => out.push_str("\\uffff"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_safe_escapes_only_what_sqs_refuses() {
        let plain = serde_json::to_string(
            &serde_json::json!({"a": "caf\u{e9} \u{10348} \u{fffd} \u{fdd0} \u{1fffe} \u{7f} ok"}),
        )
        .unwrap();
        assert_eq!(
            sqs_safe(plain.clone()),
            plain,
            "allowed characters stay raw"
        );
        let v = serde_json::json!({"ua": "a\u{FFFE}b\u{FFFF}c\u{EFBF}"});
        let raw = serde_json::to_string(&v).unwrap();
        let safe = sqs_safe(raw);
        assert!(!safe.contains('\u{FFFE}') && !safe.contains('\u{FFFF}'));
        assert!(safe.contains("\\ufffe") && safe.contains("\\uffff"));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
    }
}
