//! The remote client: a journal held by `harvester run` is read through the service: on the
//! Unix socket beside the journal (the file system decides who may), or over TCP with the
//! bearer token. A proxy is never used: the token and the records go to the service alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::dump::write_error;
use crate::app::AppError;
use crate::cli::Cli;
use crate::journal::Journal;
use crate::record_csv::CsvDump;

/// What went wrong asking the running service.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The address in the owner record does not make a URL.
    #[error("{0}")]
    BadAddress(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the running harvester at {addr} did not answer: {source}")]
    NoAnswer {
        addr: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the running harvester answered {status}: {text}")]
    Status {
        status: reqwest::StatusCode,
        text: String,
    },
    #[error("the running harvester sent a line that is not a record ({0})")]
    NotARecord(#[source] serde_json::Error),
    #[error("the running harvester's answer ended in the middle of a record")]
    Truncated,
    #[error("the running harvester's answer broke off: {0}")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the running service that holds the journal answers.
pub(crate) enum Service {
    /// Its Unix socket.
    Socket(PathBuf),
    /// Its TCP address (the record endpoints need `HARVESTER_API_TOKEN` there).
    Tcp(String),
}

impl Service {
    fn name(&self) -> String {
        match self {
            Service::Socket(p) => p.display().to_string(),
            Service::Tcp(a) => a.clone(),
        }
    }
}

/// The journal, or the running service that holds it.
pub(crate) enum Access {
    Local(Arc<Journal>),
    Remote(Service),
}

pub(crate) fn access(cli: &Cli) -> Result<Access, AppError> {
    match crate::app::open_journal_read(&cli.journal) {
        Ok(j) => Ok(Access::Local(j)),
        Err(e) => {
            let Some(o) = crate::app::owner::read(&cli.journal) else {
                return Err(e);
            };
            let has_token = std::env::var(crate::app::run::TOKEN_VAR).is_ok_and(|t| !t.is_empty());
            let service = match (o.socket, o.metrics_addr) {
                // With the token the caller chose TCP; else the socket, where the file
                // system decides.
                (_, Some(addr)) if has_token => Service::Tcp(addr),
                (Some(p), _) => Service::Socket(p),
                (None, Some(addr)) => Service::Tcp(addr),
                (None, None) => return Err(e),
            };
            tracing::info!(at = %service.name(), "the journal is held by `harvester run`; asking it");
            Ok(Access::Remote(service))
        }
    }
}

/// An answer of the running service, whichever way it came.
pub(crate) enum Answer {
    Tcp(reqwest::Response),
    Socket(hyper::body::Incoming),
}

impl Answer {
    /// The next piece of the body, `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, RemoteError> {
        match self {
            Answer::Tcp(r) => r.chunk().await.map_err(|e| RemoteError::Broken(e.into())),
            Answer::Socket(b) => loop {
                match b.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(RemoteError::Broken(e.into())),
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            return Ok(Some(d));
                        }
                    }
                }
            },
        }
    }

    /// The whole body.
    pub(super) async fn bytes(mut self) -> Result<Vec<u8>, RemoteError> {
        let mut all = Vec::new();
        while let Some(c) = self.chunk().await? {
            all.extend_from_slice(&c);
        }
        Ok(all)
    }
}

/// The TCP client: never through a proxy (`HTTP_PROXY`, `ALL_PROXY` and the like would get the
/// bearer token and the records), with the token of `HARVESTER_API_TOKEN` when it is set.
fn tcp_client() -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| RemoteError::BadAddress(e.into()))
}

/// GETs `path` with `pairs` from the running service: the answer, once it says success.
pub(crate) async fn remote_get(
    service: &Service,
    path: &str,
    pairs: &[(String, String)],
) -> Result<Answer, AppError> {
    let mut url = reqwest::Url::parse(&format!(
        "http://{}{path}",
        match service {
            Service::Tcp(a) => a.as_str(),
            Service::Socket(_) => "localhost",
        }
    ))
    .map_err(|e| RemoteError::BadAddress(e.into()))?;
    url.query_pairs_mut().extend_pairs(pairs);
    let no_answer = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::NoAnswer {
        addr: service.name(),
        source,
    };
    let (status, mut answer) = match service {
        Service::Tcp(_) => {
            let mut req = tcp_client()?.get(url);
            if let Ok(t) = std::env::var(crate::app::run::TOKEN_VAR) {
                if !t.is_empty() {
                    req = req.bearer_auth(t);
                }
            }
            let resp = req.send().await.map_err(|e| no_answer(e.into()))?;
            (resp.status(), Answer::Tcp(resp))
        }
        Service::Socket(p) => {
            let resp = socket_get(p, &url).await.map_err(no_answer)?;
            (resp.status(), Answer::Socket(resp.into_body()))
        }
    };
    if !status.is_success() {
        let text = answer.chunk().await.ok().flatten().unwrap_or_default();
        return Err(RemoteError::Status {
            status,
            text: crate::escape::quoted_short(&String::from_utf8_lossy(&text), 500),
        }
        .into());
    }
    Ok(answer)
}

/// One GET over the Unix socket at `socket`.
async fn socket_get(
    socket: &Path,
    url: &reqwest::Url,
) -> Result<hyper::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let req = hyper::Request::get(target)
        .header(hyper::header::HOST, "localhost")
        .body(http_body_util::Empty::<Bytes>::new())?;
    Ok(send.send_request(req).await?)
}

/// GETs `path` from a running service and copies the body to stdout as it arrives.
pub(super) async fn remote(
    service: &Service,
    path: &str,
    pairs: &[(String, String)],
) -> Result<(), AppError> {
    let mut resp = remote_get(service, path, pairs).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await? {
        if out.write_all(&chunk).is_err() {
            break;
        }
    }
    out.flush().ok();
    Ok(())
}

/// The running service's JSON-lines dump, turned into CSV as it arrives (the service speaks
/// JSON lines only, so a service of any version answers a CSV dump).
pub(super) async fn remote_csv(
    service: &Service,
    pairs: &[(String, String)],
) -> Result<(), AppError> {
    let mut resp = remote_get(service, "/journal/dump", pairs).await?;
    let stdout = std::io::stdout();
    let mut csv = match CsvDump::new(std::io::BufWriter::with_capacity(1 << 16, stdout.lock())) {
        Ok(c) => c,
        Err(e) => return write_error(e),
    };
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(n) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + n];
            start += n + 1;
            let v: serde_json::Value =
                serde_json::from_slice(line).map_err(RemoteError::NotARecord)?;
            if let Err(e) = csv.value(&v) {
                return write_error(e);
            }
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        return Err(RemoteError::Truncated.into());
    }
    csv.finish().map(drop).or_else(write_error)
}
