//! Elasticsearch: the client the action sink and `load-episodes` share, and the index templates.
//!
//! Built on the official `elasticsearch` crate (major 9, like the node the tests run). The host
//! setting is the original's `ELASTICSEARCH_HOST`: `host`, `host:port` or a full URL, with
//! `user:password@` for a secured cluster. The credentials are sent as Basic auth and never shown:
//! [`EsClient::describe`] is the URL without them.

pub mod templates;

use std::ops::Range;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Url;
use elasticsearch::indices::{
    IndicesExistsIndexTemplateParts, IndicesPutIndexTemplateParts, IndicesRefreshParts,
    IndicesSimulateTemplateParts,
};
use elasticsearch::{BulkParts, Elasticsearch, SearchParts};
use futures::StreamExt;
use serde_json::Value;

/// Something went wrong talking to Elasticsearch.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("ELASTICSEARCH_HOST '{0}' is not a host, host:port or URL")]
    BadHost(String),
    #[error("Elasticsearch at {host} is unreachable: {reason} (is the node up? check ELASTICSEARCH_HOST)")]
    Unreachable { host: String, reason: String },
    #[error("Elasticsearch at {host} answered {status} to {what}: {body}")]
    Status {
        host: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("Elasticsearch at {host}: unexpected answer to {what}: {reason}")]
    Decode {
        host: String,
        what: String,
        reason: String,
    },
}

impl EsError {
    /// Worth trying again: the node is unreachable, overloaded or failing (429, 5xx).
    pub fn transient(&self) -> bool {
        match self {
            EsError::Unreachable { .. } => true,
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

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

/// A connection to one Elasticsearch node (or a cluster behind one URL).
#[derive(Clone)]
pub struct EsClient {
    es: Elasticsearch,
    shown: String,
}

impl EsClient {
    /// Parses `ELASTICSEARCH_HOST` and builds the client (nothing is sent yet).
    pub fn new(host: &str, timeout: Duration) -> Result<EsClient, EsError> {
        let (url, credentials) = parse_host(host)?;
        let shown = url.as_str().trim_end_matches('/').to_string();
        let mut b = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(timeout)
            .disable_proxy();
        if let Some(c) = credentials {
            b = b.auth(c);
        }
        let transport = b.build().map_err(|e| EsError::BadHost(e.to_string()))?;
        Ok(EsClient {
            es: Elasticsearch::new(transport),
            shown,
        })
    }

    /// The node's URL without credentials (for messages).
    pub fn describe(&self) -> &str {
        &self.shown
    }

    fn unreachable(&self, e: elasticsearch::Error) -> EsError {
        EsError::Unreachable {
            host: self.shown.clone(),
            reason: error_chain(&e),
        }
    }

    async fn check(&self, resp: Response, what: &str) -> Result<Response, EsError> {
        let status = resp.status_code().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(EsError::Status {
            host: self.shown.clone(),
            what: what.to_string(),
            status,
            body: body.chars().take(600).collect(),
        })
    }

    async fn json(&self, resp: Response, what: &str) -> Result<Value, EsError> {
        let resp = self.check(resp, what).await?;
        resp.json::<Value>().await.map_err(|e| EsError::Decode {
            host: self.shown.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Cluster health: fails fast, with a clear message, when the node is down.
    pub async fn health(&self) -> Result<String, EsError> {
        let resp = self
            .es
            .cluster()
            .health(elasticsearch::cluster::ClusterHealthParts::None)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let v = self.json(resp, "a health check").await?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// The version of the node answering and its cluster's name (`GET _nodes/_local`: the
    /// root endpoint `GET /` is a module a node may lack). A node that wants credentials it was
    /// not given, or refuses them, answers 401.
    pub async fn info(&self) -> Result<(String, String), EsError> {
        let resp = self
            .es
            .nodes()
            .info(elasticsearch::nodes::NodesInfoParts::NodeId(&["_local"]))
            .filter_path(&["cluster_name", "nodes.*.version"])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let v = self.json(resp, "GET _nodes/_local").await?;
        let version = v["nodes"]
            .as_object()
            .and_then(|n| n.values().next())
            .and_then(|n| n["version"].as_str())
            .unwrap_or("unknown")
            .to_string();
        Ok((
            version,
            v["cluster_name"].as_str().unwrap_or("unknown").to_string(),
        ))
    }

    /// Whether the composable index template `name` exists.
    pub async fn template_exists(&self, name: &str) -> Result<bool, EsError> {
        let resp = self
            .es
            .indices()
            .exists_index_template(IndicesExistsIndexTemplateParts::Name(name))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match resp.status_code().as_u16() {
            404 => Ok(false),
            _ => self
                .check(resp, &format!("looking up index template {name}"))
                .await
                .map(|_| true),
        }
    }

    /// Validates template `name` with `body` as [`EsClient::put_template`] would install it,
    /// without installing it (`POST _index_template/_simulate/NAME`; it needs the same
    /// `manage_index_templates` privilege).
    pub async fn simulate_template(&self, name: &str, body: Value) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .simulate_template(IndicesSimulateTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("simulating index template {name}"))
            .await?;
        Ok(())
    }

    /// Installs (or updates) a composable index template.
    pub async fn put_template(&self, name: &str, body: Value) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("installing index template {name}"))
            .await?;
        Ok(())
    }

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
            let body = if pending.len() == batch.len() {
                let whole = lines.spans[batch.start].start..lines.spans[batch.end - 1].end;
                bytes::Bytes::copy_from_slice(&lines.buf[whole])
            } else {
                let mut b = Vec::new();
                for &k in &pending {
                    b.extend_from_slice(&lines.buf[lines.spans[k].clone()]);
                }
                bytes::Bytes::from(b)
            };
            report.requests += 1;
            let last_error = match self.bulk(body).await {
                Ok(items) if items.len() == pending.len() => {
                    let mut still = Vec::new();
                    let mut first_failure = None;
                    for (&k, item) in pending.iter().zip(&items) {
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
            let jitter = rand::random_range(0.8..1.2);
            tokio::time::sleep(
                policy
                    .backoff
                    .mul_f64(2f64.powi(attempt as i32 - 1) * jitter),
            )
            .await;
        }
    }

    /// Every distinct value of `field` in the indices matching `pattern`, paging through a
    /// composite aggregation (no top-N cap). A pattern that matches no index gives none.
    pub async fn distinct_values(
        &self,
        pattern: &str,
        field: &str,
        page: usize,
    ) -> Result<Vec<String>, EsError> {
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut comp = serde_json::json!({
                "size": page,
                "sources": [{ "v": { "terms": { "field": field } } }]
            });
            if let Some(a) = &after {
                comp["after"] = a.clone();
            }
            let resp = self
                .es
                .search(SearchParts::Index(&[pattern]))
                .allow_no_indices(true)
                .ignore_unavailable(true)
                .body(serde_json::json!({
                    "size": 0,
                    "aggs": { "ids": { "composite": comp } }
                }))
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let v = self.json(resp, &format!("a search of {pattern}")).await?;
            let agg = &v["aggregations"]["ids"];
            let buckets = agg["buckets"].as_array().cloned().unwrap_or_default();
            for b in &buckets {
                if let Some(s) = b["key"]["v"].as_str() {
                    out.push(s.to_string());
                }
            }
            match agg.get("after_key") {
                Some(a) if !buckets.is_empty() => after = Some(a.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Makes recent writes to `index` searchable (tests and benchmarks).
    pub async fn refresh(&self, index: &str) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .refresh(IndicesRefreshParts::Index(&[index]))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("refreshing {index}")).await?;
        Ok(())
    }
}

/// `host`, `host:port`, or a URL (optionally with `user:password@`) → base URL + credentials.
pub fn parse_host(host: &str) -> Result<(Url, Option<Credentials>), EsError> {
    let h = host.trim();
    if h.is_empty() {
        return Err(EsError::BadHost(String::new()));
    }
    let with_scheme = if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|_| EsError::BadHost(redact(h)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(EsError::BadHost(redact(h)));
    }
    if url.port().is_none() && !h.contains("://") {
        // The original's ELASTICSEARCH_HOST is "host:port"; a bare host means the default port.
        let _ = url.set_port(Some(9200));
    }
    let credentials = if url.username().is_empty() {
        None
    } else {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        Some(Credentials::Basic(user, pass))
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok((url, credentials))
}

/// The host setting with any password replaced, for messages.
pub fn redact(host: &str) -> String {
    crate::secret::redact_userinfo(host)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let (u, c) = parse_host("localhost:9200").unwrap();
        assert_eq!(u.as_str(), "http://localhost:9200/");
        assert!(c.is_none());
        let (u, _) = parse_host("es.example.edu").unwrap();
        assert_eq!(u.as_str(), "http://es.example.edu:9200/");
        let (u, c) = parse_host("https://elastic:p%40ss@es.example.edu:9243/prefix").unwrap();
        assert_eq!(u.as_str(), "https://es.example.edu:9243/prefix/");
        match c {
            Some(Credentials::Basic(user, pass)) => {
                assert_eq!(user, "elastic");
                assert_eq!(pass, "p@ss");
            }
            _ => panic!("expected basic credentials"),
        }
        assert!(parse_host("ftp://x").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact("https://elastic:secret@es:9243"),
            "https://***@es:9243"
        );
        assert_eq!(redact("elastic:secret@es:9200"), "***@es:9200");
        assert_eq!(redact("es:9200"), "es:9200");
        let e = parse_host("https://u:secret@").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
