//! The xAPI sink (`-o xapi`): statements of the video profile posted to a learning record store
//! (`{XAPI_ENDPOINT}/statements`, Basic auth, `X-Experience-API-Version: 1.0.3`), in batches.
//!
//! - A record is acknowledged when every statement made of it is: the LRS answered 200 or 204
//!   to a batch holding it, or it already holds that statement (a replay; the ids are
//!   deterministic, see [`crate::xapi::translate`]).
//! - A batch the LRS refuses for its content (400, 409, 413) is split in halves until the
//!   statements it refuses are found alone; each such statement goes to the dead-letter table
//!   with the LRS's own reason, and the sink goes on.
//! - 429, 5xx and network errors are retried with the policy of [`crate::retry::XAPI`]; when
//!   the attempts run out the forward stops there (the cursor stays on the first record not
//!   acknowledged). 401 and 403 are final at once: no retry fixes credentials.
//! - The statements of a record come from its session's earlier actions, so the sink keeps a
//!   [`Translator`] fed with every record before its cursor; a new sink (or one whose last
//!   batch failed) feeds it from the journal's first record again.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::{store_refusals, SinkError, SinkFailure};
use crate::config::Secret;
use crate::journal::{DeadLetter, Journal, SinkRefusal};
use crate::privacy::Privacy;
use crate::record::Record;
use crate::retry;
use crate::timefmt;
use crate::xapi::{self, Statement, Translator, XapiShape};

/// Where and how statements go.
#[derive(Debug, Clone)]
pub struct XapiConfig {
    /// The LRS's base URL (`XAPI_ENDPOINT`); statements are posted to `{base}/statements`.
    pub endpoint: Url,
    pub username: String,
    pub password: Secret,
    /// Statements per POST.
    pub batch: usize,
    /// Bytes per POST (`XAPI_BATCH_BYTES`); a statement alone over it is a dead letter.
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Attempts of a batch that meets 429, 5xx or a network error.
    pub attempts: u32,
}

impl XapiConfig {
    /// The name of the sink's cursor: `xapi:` and the endpoint (no credentials: they are
    /// refused in the URL anyway).
    pub fn cursor(&self) -> String {
        format!(
            "xapi:{}",
            crate::secret::redact_userinfo(self.endpoint.as_str()).trim_end_matches('/')
        )
    }
}

/// Why the LRS did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum XapiError {
    #[error("the LRS at {url} refused our credentials ({status}): check XAPI_USERNAME and XAPI_PASSWORD")]
    Credentials { url: String, status: u16 },
    #[error("the LRS at {url} answered {status} after {attempts} attempts: {body}")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("cannot reach the LRS at {url} after {attempts} attempts: {reason}")]
    Unreachable {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("the LRS at {url} did not store the batch: {why}")]
    NotStored { url: String, why: String },
    #[error("reading the journal to rebuild the sessions: {0}")]
    Journal(String),
}

/// Posts statements to an LRS.
pub struct XapiSink {
    http: reqwest::Client,
    cfg: XapiConfig,
    statements_url: Url,
    shape: Arc<XapiShape>,
    privacy: Option<Privacy>,
    /// `None` only for [`XapiSink::probe`], which sends nothing.
    journal: Option<Arc<Journal>>,
    /// The translator and the sequence it has been fed up to.
    state: Option<(u64, Translator)>,
    requests: u64,
    dead_letters: u64,
    statements: u64,
    already_stored: u64,
}

impl std::fmt::Debug for XapiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XapiSink")
            .field(
                "endpoint",
                &crate::secret::redact_userinfo(self.cfg.endpoint.as_str()),
            )
            .field("username", &self.cfg.username)
            .finish_non_exhaustive()
    }
}

/// What a POST of some statements came to.
enum Posted {
    /// All stored (or already held).
    Taken,
    /// Refused for their content: the LRS's reason.
    Refused(String),
}

impl XapiSink {
    pub fn new(
        cfg: XapiConfig,
        shape: Arc<XapiShape>,
        privacy: Option<Privacy>,
        journal: Option<Arc<Journal>>,
    ) -> Result<XapiSink, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            // A redirect is not the LRS storing anything (an SSO proxy's login page, say).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("harvester/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut statements_url = cfg.endpoint.clone();
        if let Ok(mut p) = statements_url.path_segments_mut() {
            p.pop_if_empty().push("statements");
        }
        Ok(XapiSink {
            http,
            cfg,
            statements_url,
            shape,
            privacy: privacy.filter(Privacy::is_on),
            journal,
            state: None,
            requests: 0,
            dead_letters: 0,
            statements: 0,
            already_stored: 0,
        })
    }

    /// What `check` says of the LRS: one GET of a statement, which proves the address and the
    /// credentials (a 403 means they are valid but may not read: enough to post).
    pub async fn probe(cfg: XapiConfig) -> Result<String, XapiError> {
        let this = XapiSink::new(cfg, Arc::new(XapiShape::probe()), None, None).map_err(|e| {
            XapiError::Unreachable {
                url: String::new(),
                attempts: 0,
                reason: e.to_string(),
            }
        })?;
        this.probe_once().await
    }

    async fn probe_once(&self) -> Result<String, XapiError> {
        let sent = self
            .http
            .get(self.statements_url.clone())
            .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
            .header("X-Experience-API-Version", "1.0.3")
            .query(&[("limit", "1")])
            .send()
            .await;
        let resp = sent.map_err(|e| XapiError::Unreachable {
            url: self.url(),
            attempts: 1,
            reason: crate::tls::error_chain(&e),
        })?;
        match resp.status() {
            s if s.is_success() => Ok(format!(
                "{}: the LRS answers, credentials accepted",
                self.url()
            )),
            StatusCode::FORBIDDEN => Ok(format!(
                "{}: the LRS answers, credentials accepted (they may not read statements: enough to post them)",
                self.url()
            )),
            StatusCode::UNAUTHORIZED => Err(XapiError::Credentials {
                url: self.url(),
                status: 401,
            }),
            s => Err(XapiError::Status {
                url: self.url(),
                status: s.as_u16(),
                attempts: 1,
                body: crate::escape::quoted_short(&resp.text().await.unwrap_or_default(), 300),
            }),
        }
    }

    /// POST requests made so far.
    pub fn calls(&self) -> u64 {
        self.requests
    }

    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// Statements the LRS took (or already held) so far.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Records per round: a few batches' worth (most actions are heartbeats, which make no
    /// statement).
    pub fn chunk(&self) -> usize {
        self.cfg.batch.saturating_mul(4).max(super::CHUNK)
    }

    /// The URL statements go to, for messages (no credentials: they travel in a header).
    fn url(&self) -> String {
        crate::secret::redact_userinfo(self.statements_url.as_str())
    }

    /// A translator fed with every record before `first`.
    async fn translator_at(&mut self, first: u64) -> Result<Translator, SinkError> {
        if let Some((at, t)) = self.state.take() {
            if at == first {
                return Ok(t);
            }
        }
        let mut t = Translator::new(
            self.shape.clone(),
            self.privacy.as_ref().map(Privacy::for_sink),
        );
        let Some(j) = self.journal.clone() else {
            return Err(SinkError::new(0, XapiError::Journal("no journal".into())));
        };
        let t = tokio::task::spawn_blocking(move || xapi::catch_up(&j, &mut t, first).map(|()| t))
            .await
            .map_err(|e| SinkError::new(0, XapiError::Journal(e.to_string())))?
            .map_err(|e| SinkError::new(0, XapiError::Journal(e.to_string())))?;
        Ok(t)
    }

    /// Sends the statements of `records` (the journal's from sequence `first` on).
    pub async fn send(&mut self, first: u64, records: &[Record]) -> Result<(), SinkError> {
        let mut t = self.translator_at(first).await?;
        // (index of the record, statement), in record order.
        let mut made: Vec<(usize, Statement)> = Vec::new();
        let mut buf = Vec::new();
        for (i, r) in records.iter().enumerate() {
            t.feed(r, &mut buf);
            made.extend(buf.drain(..).map(|s| (i, s)));
        }
        let mut done = 0;
        while done < made.len() {
            // Up to `batch` statements and `max_bytes` bytes (the JSON array's brackets and
            // commas counted); a statement alone over the bytes is never sent.
            let mut end = done;
            let mut bytes = 2;
            while end < made.len()
                && end - done < self.cfg.batch
                && (end == done || bytes + made[end].1.json.len() < self.cfg.max_bytes)
            {
                bytes += made[end].1.json.len() + 1;
                end += 1;
            }
            let part = &made[done..end];
            let sent = if part.len() == 1 && part[0].1.json.len() + 2 > self.cfg.max_bytes {
                let why = format!(
                    "the statement is {} bytes, more than XAPI_BATCH_BYTES ({}) allows in one request",
                    part[0].1.json.len(),
                    self.cfg.max_bytes
                );
                self.dead_letter(first, records, vec![(&part[0], why)])
                    .await
            } else {
                self.send_batch(first, records, part).await
            };
            if let Err(e) = sent {
                // The records before this batch's first statement are whole; the translator has
                // run ahead of the cursor and is rebuilt next time.
                return Err(SinkError::new(made[done].0, e));
            }
            done = end;
        }
        self.state = Some((first + records.len() as u64, t));
        Ok(())
    }

    /// One batch: posted whole, split when the LRS refuses it, refused statements dead-lettered.
    async fn send_batch(
        &mut self,
        first: u64,
        records: &[Record],
        batch: &[(usize, Statement)],
    ) -> Result<(), SinkFailure> {
        // Depth-first over halves, in order.
        let mut todo: Vec<&[(usize, Statement)]> = vec![batch];
        let mut refused: Vec<(&(usize, Statement), String)> = Vec::new();
        while let Some(part) = todo.pop() {
            match self.post(part).await? {
                Posted::Taken => self.statements += part.len() as u64,
                Posted::Refused(why) if part.len() == 1 => refused.push((&part[0], why)),
                Posted::Refused(_) => {
                    let (a, b) = part.split_at(part.len() / 2);
                    todo.push(b);
                    todo.push(a);
                }
            }
        }
        self.dead_letter(first, records, refused).await
    }

    /// Keeps statements the LRS will never take in the dead-letter table, with the reason.
    async fn dead_letter(
        &mut self,
        first: u64,
        records: &[Record],
        refused: Vec<(&(usize, Statement), String)>,
    ) -> Result<(), SinkFailure> {
        if refused.is_empty() {
            return Ok(());
        }
        let target = self.url();
        let letters: Vec<(DeadLetter, SinkRefusal)> = refused
            .iter()
            .map(|((i, s), why)| {
                let r = &records[*i];
                (
                    DeadLetter {
                        source: format!("xapi {target}"),
                        raw: s.json.clone(),
                        reason: format!(
                            "the LRS refused the {} statement {} of action {} ({why})",
                            s.verb.word(),
                            s.id,
                            r.action_id
                        ),
                        at_us: timefmt::now_us(),
                    },
                    SinkRefusal {
                        sink: "xapi".into(),
                        target: target.clone(),
                        action_id: r.action_id,
                        seq: first + *i as u64,
                        key: format!("xapi:{}", s.id),
                        delivered_at_us: None,
                    },
                )
            })
            .collect();
        let Some(journal) = &self.journal else {
            return Err(XapiError::Journal("no journal".into()).into());
        };
        let n = store_refusals(journal, letters).await.map_err(|source| {
            SinkFailure::DeadLetterStore {
                what: "statements the LRS refused",
                source,
            }
        })?;
        self.dead_letters += n;
        for ((_, s), why) in &refused {
            tracing::warn!(statement = %s.id, verb = s.verb.word(), reason = %crate::escape::quoted_short(why, 300), "the LRS refused a statement; it is in the dead-letter table");
        }
        Ok(())
    }

    /// POSTs `part` as one JSON array, retrying what may pass.
    async fn post(&mut self, part: &[(usize, Statement)]) -> Result<Posted, XapiError> {
        let mut body =
            Vec::with_capacity(part.iter().map(|(_, s)| s.json.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (n, (_, s)) in part.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(s.json.as_bytes());
        }
        body.push(b']');
        let body = bytes::Bytes::from(body);
        let attempts = self.cfg.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(retry::XAPI.delay(attempt - 2)).await;
            }
            self.requests += 1;
            let sent = self
                .http
                .post(self.statements_url.clone())
                .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
                .header("X-Experience-API-Version", "1.0.3")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = crate::tls::error_chain(&e);
                    continue;
                }
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            match status {
                StatusCode::NO_CONTENT => return Ok(Posted::Taken),
                StatusCode::OK => return self.check_stored(part, &text).await,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(XapiError::Credentials {
                        url: self.url(),
                        status: status.as_u16(),
                    })
                }
                StatusCode::CONFLICT => {
                    // The LRS holds a statement of the same id. Ours are deterministic, so a
                    // replay's statement is the one stored: ask for each and compare.
                    if part.len() > 1 {
                        return Ok(Posted::Refused(reason(status, &text)));
                    }
                    return self.compare_stored(&part[0].1, status, &text).await;
                }
                StatusCode::BAD_REQUEST
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNPROCESSABLE_ENTITY => {
                    return Ok(Posted::Refused(reason(status, &text)))
                }
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    last = reason(status, &text);
                    continue;
                }
                _ => {
                    return Err(XapiError::Status {
                        url: self.url(),
                        status: status.as_u16(),
                        attempts: attempt,
                        body: crate::escape::quoted_short(&text, 300),
                    })
                }
            }
        }
        Err(XapiError::Unreachable {
            url: self.url(),
            attempts,
            reason: last,
        })
    }

    /// A 200 is the ids the LRS stored (xAPI 1.0.3, 2.1.2): anything else (a proxy's page, `[]`)
    /// is not an acknowledgement. An LRS may leave out ids it already held (Ralph does): those
    /// are asked for and compared, so no statement counts as stored that is not.
    async fn check_stored(
        &mut self,
        part: &[(usize, Statement)],
        text: &str,
    ) -> Result<Posted, XapiError> {
        let url = self.url();
        let not_stored = |why: String| XapiError::NotStored {
            url: url.clone(),
            why,
        };
        let Ok(ids) = serde_json::from_str::<Vec<String>>(text) else {
            return Err(not_stored(format!(
                "it answered 200 with something that is not the list of stored statement ids ({}): a proxy or a login page in front of the LRS?",
                crate::escape::quoted_short(text.trim(), 120)
            )));
        };
        let ours: std::collections::HashSet<String> =
            part.iter().map(|(_, s)| s.id.to_string()).collect();
        let listed: std::collections::HashSet<String> =
            ids.iter().map(|i| i.trim().to_ascii_lowercase()).collect();
        if let Some(stranger) = listed.iter().find(|i| !ours.contains(*i)) {
            return Err(not_stored(format!(
                "it answered 200 with the id {} that was not in the batch",
                crate::escape::quoted_short(stranger, 60)
            )));
        }
        for (_, s) in part
            .iter()
            .filter(|(_, s)| !listed.contains(&s.id.to_string()))
        {
            match self.stored_copy(s).await {
                Some(v)
                    if same_statement(&v, &serde_json::from_str(&s.json).unwrap_or_default()) =>
                {
                    self.already_stored += 1;
                }
                _ => {
                    return Err(not_stored(format!(
                        "it answered 200 but holds no statement {} of those sent",
                        s.id
                    )))
                }
            }
        }
        Ok(Posted::Taken)
    }

    /// The LRS's copy of statement `s`, if it has one.
    async fn stored_copy(&mut self, s: &Statement) -> Option<serde_json::Value> {
        self.requests += 1;
        let got = self
            .http
            .get(self.statements_url.clone())
            .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
            .header("X-Experience-API-Version", "1.0.3")
            .query(&[("statementId", s.id.to_string())])
            .send()
            .await;
        let v: serde_json::Value = match got {
            Ok(r) if r.status().is_success() => r.json().await.ok()?,
            _ => return None,
        };
        // The statement itself, as xAPI says, or a statement result holding it (Ralph 5).
        match v.get("statements") {
            Some(serde_json::Value::Array(a)) => a.first().cloned(),
            _ => Some(v),
        }
    }

    /// A 409 for one statement: taken when the LRS's copy is ours (a replay), refused when it
    /// holds another statement under that id.
    async fn compare_stored(
        &mut self,
        s: &Statement,
        status: StatusCode,
        text: &str,
    ) -> Result<Posted, XapiError> {
        let ours: serde_json::Value = serde_json::from_str(&s.json).unwrap_or_default();
        match self.stored_copy(s).await {
            Some(v) if same_statement(&v, &ours) => {
                self.already_stored += 1;
                Ok(Posted::Taken)
            }
            _ => Ok(Posted::Refused(reason(status, text))),
        }
    }
}

/// Whether the LRS's copy `stored` is `ours`: the fields we sent, compared (the LRS adds
/// `stored`, `authority` and may rewrite `version` or `timestamp`'s spelling).
fn same_statement(stored: &serde_json::Value, ours: &serde_json::Value) -> bool {
    ["id", "actor", "verb", "object", "result", "context"]
        .iter()
        .all(|k| stored.get(k) == ours.get(k))
}

/// The LRS's reason: the status and what it said (its `detail` when it answers JSON).
fn reason(status: StatusCode, text: &str) -> String {
    let said = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("detail").map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .unwrap_or_else(|| text.to_string());
    format!(
        "{status}: {}",
        crate::escape::quoted_short(said.trim(), 500)
    )
}

impl From<XapiError> for SinkFailure {
    fn from(e: XapiError) -> SinkFailure {
        SinkFailure::Xapi(e)
    }
}
