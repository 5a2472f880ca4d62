//! The bulk retry engine: NDJSON lines of many documents, cut into requests by count and bytes,
//! several in flight; items failing for a passing reason are sent again, those rejected for
//! their content reported.
//!
//! Two kinds of 400 look alike in a bulk answer: a document Elasticsearch refuses (a mapping or
//! parsing error: sending it again cannot help, it becomes a dead letter) and an index or cluster
//! that refuses every write (closed, an alias without a write index, the shard limit). The second
//! is not the documents' fault: those items are retried like a passing failure and then stop the
//! run with the index named, the records kept in the journal.
//!
//! A request refused as too large (413, usually a proxy's body limit: nginx's is 1 MB while
//! `ES_BULK_BYTES` defaults to 5 MiB) is sent again in halves until the parts pass; the report
//! says the size refused so the sink keeps its requests under it.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
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
    /// Some items failed for a passing reason (429, 5xx, a write block), or because their
    /// index or cluster refuses writes (`index_level`).
    #[error("{failed} of {sent} items failed: {first}{}", if *index_level { INDEX_LEVEL_HINT } else { "" })]
    Items {
        failed: usize,
        sent: usize,
        /// The first failed item's status, type, reason and index.
        first: String,
        index_level: bool,
    },
    /// One document alone is larger than what the node (or a proxy in front of it) takes.
    #[error(
        "Elasticsearch at {host} (or a proxy in front of it) refused a single document of {bytes} \
         bytes as too large (413); raise the proxy's body limit (nginx: client_max_body_size) or \
         http.max_content_length"
    )]
    DocumentTooLarge { host: String, bytes: usize },
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

const INDEX_LEVEL_HINT: &str = "; the index or cluster refuses these writes, not the \
    documents: fix it (open the index, give the alias a write index, raise \
    cluster.max_shards_per_node) and run again, the records wait in the journal";

/// The outcome of one item of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    pub status: u16,
    /// `(type, reason)` of a failed item.
    pub error: Option<(String, String)>,
    /// The index (or alias) the item went to, as the answer names it.
    pub index: Option<String>,
}

impl BulkItem {
    /// Done: indexed, or (for a `create`) already there.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status) || self.status == 409
    }

    /// Rejected for its content (a mapping or parsing error): resending it cannot help.
    pub fn rejected_for_content(&self) -> bool {
        self.status == 400 && !self.about_the_index()
    }

    /// Failed because of its index or the cluster, whatever the document: the index is
    /// closed, missing, an alias without a write index, or the cluster at its shard limit.
    pub fn about_the_index(&self) -> bool {
        let Some((kind, reason)) = &self.error else {
            return false;
        };
        match kind.as_str() {
            "index_closed_exception"
            | "index_not_found_exception"
            | "invalid_index_name_exception"
            | "cluster_block_exception"
            | "validation_exception"
            | "resource_already_exists_exception" => true,
            "illegal_argument_exception" => {
                let r = reason.to_ascii_lowercase();
                r.contains("write index") || r.starts_with("alias [")
            }
            _ => false,
        }
    }

    /// The error's type (`document_parsing_exception`…), or the status.
    pub fn kind(&self) -> String {
        match &self.error {
            Some((t, _)) => t.clone(),
            None => format!("status {}", self.status),
        }
    }

    /// Everything Elasticsearch said: for the dead-letter table only, since the reason of a
    /// content rejection quotes the document's values ("Preview of field's value: …").
    pub fn describe(&self) -> String {
        match &self.error {
            Some((t, r)) => format!("status {}: {t}: {r}", self.status),
            None => format!("status {}", self.status),
        }
    }

    /// For logs and errors: the status, the type and the index, and the reason only when it
    /// is about the index or the node (a passing failure), never a document's.
    pub fn brief(&self) -> String {
        let index = self
            .index
            .as_deref()
            .map(|i| format!(" (index {i})"))
            .unwrap_or_default();
        match &self.error {
            Some((t, _)) if self.rejected_for_content() => {
                format!("status {}: {t}{index}", self.status)
            }
            Some((t, r)) => format!("status {}: {t}: {r}{index}", self.status),
            None => format!("status {}{index}", self.status),
        }
    }
}

/// A document Elasticsearch refused for its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The error's type, safe for logs (`document_parsing_exception`).
    pub kind: String,
    /// Status, type and reason: it quotes the refused values, so it goes to the dead-letter
    /// table and nowhere else.
    pub detail: String,
}

/// Shown as its full detail (for the dead-letter table).
impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
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
    /// Items rejected for their content. Resending them cannot help.
    pub rejected: Vec<(usize, Rejection)>,
    /// The smallest request body refused as too large (413), in bytes.
    pub too_large: Option<usize>,
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
                "items.*._index",
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
                let index = inner["_index"].as_str().map(str::to_string);
                BulkItem {
                    status,
                    error,
                    index,
                }
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
            let result = self
                .bulk_batch(lines, batch.collect(), policy, &mut part)
                .await;
            (part, result)
        }))
        .buffered(policy.concurrency.max(1));
        let mut report = BulkReport::default();
        while let Some((part, result)) = outcomes.next().await {
            report.requests += part.requests;
            report.retried_items += part.retried_items;
            report.rejected.extend(part.rejected);
            report.too_large = match (report.too_large, part.too_large) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Err(f) = result {
                report.failed = Some(f);
                break;
            }
        }
        report
    }

    /// Sends the items `pending` (in order) until each is done, rejected for its content, or
    /// still failing after `policy.attempts`; a request refused as too large goes again in
    /// halves.
    fn bulk_batch<'a>(
        &'a self,
        lines: &'a BulkLines,
        pending: Vec<usize>,
        policy: &'a BulkPolicy,
        report: &'a mut BulkReport,
    ) -> BatchFuture<'a> {
        Box::pin(async move {
            let mut pending = pending;
            let mut attempt = 0u32;
            loop {
                let body = request_body(lines, &pending);
                let bytes = body.len();
                report.requests += 1;
                let last_error = match self.bulk(body).await {
                    Ok(items) if items.len() == pending.len() => {
                        let (still, first_failure) = sort_items(&pending, &items, report);
                        pending = still;
                        if pending.is_empty() {
                            return Ok(());
                        }
                        let (first, index_level) = first_failure.unwrap_or_default();
                        BulkFailure::Items {
                            failed: pending.len(),
                            sent: items.len(),
                            first,
                            index_level,
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
                    Err(EsError::Status { status: 413, .. }) if pending.len() > 1 => {
                        report.too_large = Some(report.too_large.map_or(bytes, |b| b.min(bytes)));
                        tracing::warn!(
                            bytes,
                            documents = pending.len(),
                            "Elasticsearch (or a proxy in front of it) refused a bulk request as too large (413); sending it in halves. Set ES_BULK_BYTES below the limit (nginx's client_max_body_size is 1 MB by default) to spare the extra requests"
                        );
                        let second = pending.split_off(pending.len() / 2);
                        self.bulk_batch(lines, pending, policy, report).await?;
                        return self.bulk_batch(lines, second, policy, report).await;
                    }
                    Err(EsError::Status { status: 413, .. }) => {
                        return Err((
                            pending[0],
                            BulkFailure::DocumentTooLarge {
                                host: self.shown.clone(),
                                bytes,
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
        })
    }
}

/// A batch sent (boxed: a batch refused as too large sends its halves, recursively): `Err`
/// names the first item still unresolved and why.
type BatchFuture<'a> = Pin<Box<dyn Future<Output = Result<(), (usize, BulkFailure)>> + Send + 'a>>;

/// The body of one request: the items of `pending`, one slice of the buffer when they are
/// consecutive (a whole batch), else copied together.
fn request_body(lines: &BulkLines, pending: &[usize]) -> bytes::Bytes {
    let (Some(&a), Some(&b)) = (pending.first(), pending.last()) else {
        return bytes::Bytes::new();
    };
    if b - a + 1 == pending.len() {
        let whole = lines.spans[a].start..lines.spans[b].end;
        bytes::Bytes::copy_from_slice(&lines.buf[whole])
    } else {
        let mut out = Vec::new();
        for &k in pending {
            out.extend_from_slice(&lines.buf[lines.spans[k].clone()]);
        }
        bytes::Bytes::from(out)
    }
}

/// Sorts the answer to `pending`'s items: done ones go, those rejected for their content go to
/// `report`, the rest are returned to send again, with the first one's brief and whether it
/// was about its index.
fn sort_items(
    pending: &[usize],
    items: &[BulkItem],
    report: &mut BulkReport,
) -> (Vec<usize>, Option<(String, bool)>) {
    let mut still = Vec::new();
    let mut first_failure = None;
    for (&k, item) in pending.iter().zip(items) {
        if item.ok() {
            continue;
        }
        if item.rejected_for_content() {
            report.rejected.push((
                k,
                Rejection {
                    kind: item.kind(),
                    detail: item.describe(),
                },
            ));
        } else {
            first_failure.get_or_insert_with(|| (item.brief(), item.about_the_index()));
            still.push(k);
        }
    }
    (still, first_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: u16, kind: &str, reason: &str) -> BulkItem {
        BulkItem {
            status,
            error: Some((kind.into(), reason.into())),
            index: Some("ua-2016.03.01".into()),
        }
    }

    /// The answers Elasticsearch 9 gives (seen on the test node, and the shard limit's from
    /// its source): the document's faults are rejections, the index's are not.
    #[test]
    fn index_and_cluster_errors_are_not_the_documents_fault() {
        let content = [
            item(400, "document_parsing_exception", "[1:9] failed to parse field [huid] of type [long] in document with id '1'. Preview of field's value: 'student0'"),
            item(400, "mapper_parsing_exception", "failed to parse"),
            item(400, "strict_dynamic_mapping_exception", "mapping set to strict"),
            item(400, "illegal_argument_exception", "Limit of total fields [1000] has been exceeded"),
        ];
        for i in &content {
            assert!(i.rejected_for_content(), "{i:?}");
            assert!(!i.brief().contains("student0"), "{}", i.brief());
            assert!(i.describe().contains("student0") || !i.describe().contains("Preview"));
        }
        let index = [
            item(400, "index_closed_exception", "closed"),
            item(400, "illegal_argument_exception", "no write index is defined for alias [ua]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"),
            item(400, "illegal_argument_exception", "Alias [ua] has more than one indices associated with it [[a, b]], can't execute a single index op"),
            item(400, "validation_exception", "Validation Failed: 1: this action would add [2] shards, but this cluster currently has [1000]/[1000] maximum normal shards open;"),
            item(403, "cluster_block_exception", "index [ua] blocked by: [FORBIDDEN/8/index write (api)];"),
        ];
        for i in &index {
            assert!(!i.rejected_for_content() && !i.ok(), "{i:?}");
            assert!(i.brief().contains("ua-2016.03.01"), "{}", i.brief());
        }
        assert!(index[..4].iter().all(BulkItem::about_the_index));
    }
}
