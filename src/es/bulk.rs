//! The bulk retry engine: NDJSON lines of many documents, cut into requests by count and bytes,
//! several in flight; items failing for a passing reason are sent again, those rejected for
//! their content reported.

use std::ops::Range;
use std::time::Duration;

use elasticsearch::BulkParts;
use futures::StreamExt;
use serde_json::Value;

use super::{EsClient, EsError};

/// Why a run of bulk requests gave up; the items before the failed one are resolved.
#[derive(Debug, thiserror::Error)]
pub enum BulkFailure {
    /// The request failed as a whole (the node unreachable, an error status).
    #[error(transparent)]
    Request(#[from] EsError),
    /// Some items failed for a passing reason (429, 5xx, a write block).
    #[error("{failed} of {sent} items failed: {first}")]
    Items {
        failed: usize,
        sent: usize,
        /// The first failed item's status and reason.
        first: String,
    },
    #[error("Elasticsearch at {host} answered {answered} items to a bulk request of {sent}")]
    Miscounted {
        host: String,
        answered: usize,
        sent: usize,
    },
    /// Still failing after every attempt the policy allows.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<BulkFailure>,
    },
}

/// The outcome of one item of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    pub status: u16,
    /// `(type, reason)` of a failed item.
    pub error: Option<(String, String)>,
}

impl BulkItem {
    /// Done: indexed, or (for a `create`) already there.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status) || self.status == 409
    }

    /// Rejected for its content (a mapping or parsing error): resending it cannot help.
    pub fn rejected_for_content(&self) -> bool {
        self.status == 400
    }

    pub fn describe(&self) -> String {
        match &self.error {
            Some((t, r)) => format!("status {}: {t}: {r}", self.status),
            None => format!("status {}", self.status),
        }
    }
}

/// NDJSON bulk lines of many documents in one buffer: item `k` is `buf[spans[k]]` (its action
/// line and its document line, each ending in `\n`).
#[derive(Debug, Default)]
pub struct BulkLines {
    pub buf: Vec<u8>,
    pub spans: Vec<Range<usize>>,
}

impl BulkLines {
    pub fn with_capacity(items: usize, bytes: usize) -> BulkLines {
        BulkLines {
            buf: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(items),
        }
    }

    /// Adds an `index` item (creates or replaces the document); `doc` writes the document (one
    /// line of JSON) into the buffer.
    pub fn push_index(&mut self, index: &str, id: &str, doc: impl FnOnce(&mut Vec<u8>)) {
        self.push("index", index, id, doc)
    }

    /// Adds a `create` item: a document that already exists under `id` is left as it is (the
    /// answer is 409, counted as done), so resending changes nothing, not even its version.
    pub fn push_create(&mut self, index: &str, id: &str, doc: impl FnOnce(&mut Vec<u8>)) {
        self.push("create", index, id, doc)
    }

    fn push(&mut self, op: &str, index: &str, id: &str, doc: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b"{\"");
        self.buf.extend_from_slice(op.as_bytes());
        self.buf.extend_from_slice(b"\":{\"_index\":");
        serde_json::to_writer(&mut self.buf, index).expect("a string serialises");
        self.buf.extend_from_slice(b",\"_id\":");
        serde_json::to_writer(&mut self.buf, id).expect("a string serialises");
        self.buf.extend_from_slice(b"}}\n");
        doc(&mut self.buf);
        self.buf.push(b'\n');
        self.spans.push(start..self.buf.len());
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The document line of item `k` (without its newline).
    pub fn document(&self, k: usize) -> &[u8] {
        let item = &self.buf[self.spans[k].clone()];
        match item.iter().position(|b| *b == b'\n') {
            Some(p) => &item[p + 1..item.len() - 1],
            None => item,
        }
    }
}

/// How a run of bulk requests retries.
#[derive(Debug, Clone, Copy)]
pub struct BulkPolicy {
    pub max_docs: usize,
    pub max_bytes: usize,
    /// Attempts of a failing item (or request) before giving up.
    pub attempts: u32,
    pub backoff: Duration,
    /// Bulk requests in flight at once (at least 1). Elasticsearch indexes one bulk request of
    /// a one-shard index on one thread: a second request in flight keeps a second core busy.
    pub concurrency: usize,
}

impl Default for BulkPolicy {
    fn default() -> BulkPolicy {
        BulkPolicy {
            max_docs: 1000,
            max_bytes: 5 * 1024 * 1024,
            attempts: 5,
            backoff: Duration::from_millis(250),
            concurrency: 1,
        }
    }
}

/// What a run of bulk requests did.
#[derive(Debug, Default)]
pub struct BulkReport {
    /// Items rejected for their content: `(item, reason)`. Resending them cannot help.
    pub rejected: Vec<(usize, String)>,
    /// `(first item still unresolved, why)` when the run gave up; items before it are resolved.
    pub failed: Option<(usize, BulkFailure)>,
    pub requests: u64,
    pub retried_items: u64,
}

impl EsClient {
    /// Sends one bulk request (NDJSON, each line ending in `\n`) and returns each item's outcome,
    /// in request order.
    pub async fn bulk(&self, body: bytes::Bytes) -> Result<Vec<BulkItem>, EsError> {
        let resp = self
            .es
            .bulk(BulkParts::None)
            .filter_path(&[
                "errors",
                "items.*.status",
                "items.*.error.type",
                "items.*.error.reason",
                "items.*.error.caused_by.reason",
            ])
            .body(vec![body])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let v = self.json(resp, "a bulk request").await?;
        let items = v["items"].as_array().ok_or_else(|| EsError::Decode {
            host: self.shown.clone(),
            what: "a bulk request".into(),
            reason: "no items in the answer".into(),
        })?;
        Ok(items
            .iter()
            .map(|it| {
                // Each item is {"<op>": {...}}.
                let inner = it
                    .as_object()
                    .and_then(|o| o.values().next())
                    .unwrap_or(&Value::Null);
                let status = inner["status"].as_u64().unwrap_or(0) as u16;
                let error = inner.get("error").map(|e| {
                    let mut reason = e["reason"].as_str().unwrap_or("").to_string();
                    if let Some(c) = e["caused_by"]["reason"].as_str() {
                        reason = format!("{reason}: {c}");
                    }
                    (e["type"].as_str().unwrap_or("error").to_string(), reason)
                });
                BulkItem { status, error }
            })
            .collect())
    }

    /// Indexes every item of `lines`, in batches cut by count and bytes. Items that fail for a
    /// passing reason (429, 5xx, a write block, the node unreachable) are sent again, alone, with
    /// backoff; items rejected for their content (400) are reported, not retried. Stops at the
    /// first batch that still fails after `policy.attempts`.
    pub async fn bulk_index(&self, lines: &BulkLines, policy: &BulkPolicy) -> BulkReport {
        let mut batches = Vec::new();
        let mut i = 0;
        let n = lines.len();
        while i < n {
            let mut j = i + 1;
            while j < n
                && j - i < policy.max_docs
                && lines.spans[j].end - lines.spans[i].start <= policy.max_bytes
            {
                j += 1;
            }
            batches.push(i..j);
            i = j;
        }
        // Up to `concurrency` batches in flight, their outcomes taken in order: the report
        // covers the batches before the first that failed (items from the failed one on are
        // unresolved, even those of later batches that arrived: they are sent again, and
        // `create` answers 409 for those already indexed).
        let mut outcomes = futures::stream::iter(batches.into_iter().map(|batch| async move {
            let mut part = BulkReport::default();
            let result = self.bulk_batch(lines, batch, policy, &mut part).await;
            (part, result)
        }))
        .buffered(policy.concurrency.max(1));
        let mut report = BulkReport::default();
        while let Some((part, result)) = outcomes.next().await {
            report.requests += part.requests;
            report.retried_items += part.retried_items;
            report.rejected.extend(part.rejected);
            if let Err(f) = result {
                report.failed = Some(f);
                break;
            }
        }
        report
    }

    async fn bulk_batch(
        &self,
        lines: &BulkLines,
        batch: Range<usize>,
        policy: &BulkPolicy,
        report: &mut BulkReport,
    ) -> Result<(), (usize, BulkFailure)> {
        let mut pending: Vec<usize> = batch.clone().collect();
        let mut attempt = 0u32;
        loop {
            let body = request_body(lines, &batch, &pending);
            report.requests += 1;
            let last_error = match self.bulk(body).await {
                Ok(items) if items.len() == pending.len() => {
                    let (still, first_failure) = sort_items(&pending, &items, report);
                    pending = still;
                    if pending.is_empty() {
                        return Ok(());
                    }
                    BulkFailure::Items {
                        failed: pending.len(),
                        sent: items.len(),
                        first: first_failure.unwrap_or_default(),
                    }
                }
                Ok(items) => {
                    return Err((
                        pending[0],
                        BulkFailure::Miscounted {
                            host: self.shown.clone(),
                            answered: items.len(),
                            sent: pending.len(),
                        },
                    ))
                }
                Err(e) if e.transient() => BulkFailure::Request(e),
                Err(e) => return Err((pending[0], BulkFailure::Request(e))),
            };
            attempt += 1;
            if attempt >= policy.attempts {
                return Err((
                    pending[0],
                    BulkFailure::GaveUp {
                        attempts: attempt,
                        last: Box::new(last_error),
                    },
                ));
            }
            tracing::warn!(attempt, retrying = pending.len(), error = %last_error, "Elasticsearch bulk request incomplete; retrying the failed items");
            report.retried_items += pending.len() as u64;
            let backoff = crate::retry::ES_BULK.with_first(policy.backoff);
            tokio::time::sleep(backoff.delay(attempt - 1)).await;
        }
    }
}

/// The body of one request: the whole batch as one slice of the buffer, or the items still
/// pending copied together.
fn request_body(lines: &BulkLines, batch: &Range<usize>, pending: &[usize]) -> bytes::Bytes {
    if pending.len() == batch.len() {
        let whole = lines.spans[batch.start].start..lines.spans[batch.end - 1].end;
        bytes::Bytes::copy_from_slice(&lines.buf[whole])
    } else {
        let mut b = Vec::new();
        for &k in pending {
            b.extend_from_slice(&lines.buf[lines.spans[k].clone()]);
        }
        bytes::Bytes::from(b)
    }
}

/// Sorts the answer to `pending`'s items: done ones go, those rejected for their content go to
/// `report`, the rest are returned to send again, with the first one's reason.
fn sort_items(
    pending: &[usize],
    items: &[BulkItem],
    report: &mut BulkReport,
) -> (Vec<usize>, Option<String>) {
    let mut still = Vec::new();
    let mut first_failure = None;
    for (&k, item) in pending.iter().zip(items) {
        if item.ok() {
            continue;
        }
        if item.rejected_for_content() {
            report.rejected.push((k, item.describe()));
        } else {
            first_failure.get_or_insert_with(|| item.describe());
            still.push(k);
        }
    }
    (still, first_failure)
}
