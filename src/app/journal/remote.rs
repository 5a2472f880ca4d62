//! The remote client: a journal held by `harvester run` is read through its HTTP API.

use std::io::Write;
use std::sync::Arc;

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
        source: reqwest::Error,
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
}

/// The journal, or the running service that holds it.
pub(super) enum Access {
    Local(Arc<Journal>),
    Remote(String),
}

pub(super) fn access(cli: &Cli) -> Result<Access, AppError> {
    match crate::app::open_journal_read(&cli.journal) {
        Ok(j) => Ok(Access::Local(j)),
        Err(e) => match crate::app::owner::read(&cli.journal).and_then(|o| o.metrics_addr) {
            Some(addr) => {
                tracing::info!(%addr, "the journal is held by `harvester run`; asking it");
                Ok(Access::Remote(addr))
            }
            None => Err(e),
        },
    }
}

/// A GET to the running service, with the bearer token of `HARVESTER_API_TOKEN` when it is set
/// (the service needs it when it listens on a non-loopback address).
pub(super) fn api_get(url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
    let req = reqwest::Client::new().get(url);
    match std::env::var(crate::app::run::TOKEN_VAR) {
        Ok(t) if !t.is_empty() => req.bearer_auth(t),
        _ => req,
    }
}

/// GETs `path` from a running service: the response, once it says success.
pub(super) async fn remote_get(
    addr: &str,
    path: &str,
    pairs: &[(String, String)],
) -> Result<reqwest::Response, AppError> {
    let mut url = reqwest::Url::parse(&format!("http://{addr}{path}"))
        .map_err(|e| RemoteError::BadAddress(e.into()))?;
    url.query_pairs_mut().extend_pairs(pairs);
    let resp = api_get(url)
        .send()
        .await
        .map_err(|source| RemoteError::NoAnswer {
            addr: addr.to_string(),
            source,
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(RemoteError::Status {
            status,
            text: text.trim().to_string(),
        }
        .into());
    }
    Ok(resp)
}

/// GETs `path` from a running service and copies the body to stdout as it arrives.
pub(super) async fn remote(
    addr: &str,
    path: &str,
    pairs: &[(String, String)],
) -> Result<(), AppError> {
    let mut resp = remote_get(addr, path, pairs).await?;
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
pub(super) async fn remote_csv(addr: &str, pairs: &[(String, String)]) -> Result<(), AppError> {
    let mut resp = remote_get(addr, "/journal/dump", pairs).await?;
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
