//! The SQS sink: `SendMessageBatch` of up to 10 records under the batch payload limit.
//!
//! An HTTP 200 can still carry per-entry failures: every answer's `Failed` list is read and only
//! those entries are sent again (bounded, with backoff). A record counts as acknowledged only when
//! SQS listed it as successful; the cursor then moves over the leading acknowledged records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use futures::StreamExt;

use super::SinkError;
use crate::aws::describe;
use crate::enrich::SinkEnricher;
use crate::record::Record;

/// SQS's own limits.
pub const MAX_ENTRIES: usize = 10;
pub const DEFAULT_BATCH_BYTES: usize = 256 * 1024;
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

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
    calls: Arc<AtomicU64>,
    /// `ENRICH_SINKS=all`: message bodies gain `geoip` / `ua`.
    enrich: Option<std::sync::Mutex<SinkEnricher>>,
}

struct Entry {
    body: String,
    action_id: i64,
}

impl SqsSink {
    /// Finds the queue, creating it (FIFO when the name ends in `.fifo`) when missing.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        cfg: SqsConfig,
    ) -> Result<SqsSink, SinkError> {
        let name = cfg.queue_name.clone();
        let fifo = name.ends_with(".fifo");
        let fail = |what: &str, e: String| {
            SinkError {
            acked: 0,
            message: format!("SQS queue '{name}': {what}: {e}; check SQS_QUEUE_NAME, AWS credentials/region and AWS_ENDPOINT_URL"),
        }
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
                    .map_err(|e| fail("cannot create it", describe(&e)))?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string()
            }
            Err(e) => return Err(fail("cannot look it up", describe(&e))),
        };
        Ok(SqsSink {
            client,
            queue_url: url,
            fifo,
            cfg,
            calls: Arc::new(AtomicU64::new(0)),
            enrich: None,
        })
    }

    /// Enriches the message bodies (`ENRICH_SINKS=all`).
    pub fn with_enrichment(mut self, enrich: Option<SinkEnricher>) -> SqsSink {
        self.enrich = enrich.map(std::sync::Mutex::new);
        self
    }

    /// The message body of `r`: its record, enriched with `ENRICH_SINKS=all`.
    fn body_of(&self, r: &Record) -> String {
        let Some(e) = &self.enrich else {
            return r.to_json();
        };
        let mut out = Vec::with_capacity(1024);
        e.lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_record(r, &mut out, false);
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// `SendMessageBatch` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Sends `records` in order-preserving batches; on failure reports how many leading records
    /// were acknowledged.
    pub async fn send(&self, records: &[Record]) -> Result<(), SinkError> {
        let mut batches: Vec<Vec<Entry>> = Vec::new();
        let mut cur: Vec<Entry> = Vec::new();
        let mut cur_bytes = 0usize;
        for r in records {
            let body = self.body_of(r);
            if body.len() > self.cfg.max_batch_bytes {
                return Err(SinkError {
                    acked: batches.iter().map(Vec::len).sum(),
                    message: format!(
                        "record of action {} is {} bytes, over the SQS batch limit of {} (SQS_MAX_BATCH_BYTES)",
                        r.action_id,
                        body.len(),
                        self.cfg.max_batch_bytes
                    ),
                });
            }
            if cur.len() == MAX_ENTRIES || cur_bytes + body.len() > self.cfg.max_batch_bytes {
                batches.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            cur_bytes += body.len();
            cur.push(Entry {
                body,
                action_id: r.action_id,
            });
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let results: Vec<Result<(), String>> = futures::stream::iter(batches)
            .map(|b| self.send_batch(b))
            .buffered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let mut acked = 0;
        for (res, n) in results.into_iter().zip(sizes) {
            match res {
                Ok(()) => acked += n,
                Err(message) => return Err(SinkError { acked, message }),
            }
        }
        Ok(())
    }

    async fn send_batch(&self, entries: Vec<Entry>) -> Result<(), String> {
        let mut pending: Vec<(usize, Entry)> = entries.into_iter().enumerate().collect();
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                let ms = (100u64 << (attempt - 1).min(6)).min(5_000);
                tokio::time::sleep(Duration::from_millis(
                    ms / 2 + rand::random::<u64>() % (ms / 2 + 1),
                ))
                .await;
            }
            let mut req = self.client.send_message_batch().queue_url(&self.queue_url);
            for (i, e) in &pending {
                let mut b = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&e.body);
                if self.fifo {
                    b = b
                        .message_deduplication_id(e.action_id.to_string())
                        .message_group_id(&self.cfg.group_id);
                }
                req = req.entries(b.build().map_err(|e| e.to_string())?);
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            match req.send().await {
                Ok(out) => {
                    let failed = out.failed();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    last = failed
                        .iter()
                        .map(|f| format!("{} ({})", f.code(), f.message().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if failed.iter().all(|f| f.sender_fault()) {
                        return Err(format!("SQS refused {} message(s): {last}", failed.len()));
                    }
                    let ids: std::collections::HashSet<&str> =
                        failed.iter().map(|f| f.id()).collect();
                    pending.retain(|(i, _)| ids.contains(i.to_string().as_str()));
                    tracing::warn!(
                        failed = pending.len(),
                        attempt,
                        "SQS batch partly failed; resending those entries"
                    );
                }
                Err(e) => {
                    last = describe(&e);
                    tracing::warn!(attempt, error = %last, "SQS SendMessageBatch failed");
                }
            }
        }
        Err(format!(
            "SQS SendMessageBatch kept failing after {} attempts: {last}",
            self.cfg.retries + 1
        ))
    }
}
