//! Elasticsearch: the client the action sink and `load-episodes` share, and the index templates.
//!
//! Built on the official `elasticsearch` crate (major 9, like the node the tests run). The host
//! setting is the original's `ELASTICSEARCH_HOST`: `host`, `host:port` or a full URL, with
//! `user:password@` for a secured cluster. The credentials are sent as Basic auth and never shown:
//! [`EsClient::describe`] is the URL without them.

mod bulk;
mod client;
pub mod templates;
mod url;

pub use bulk::{BulkFailure, BulkLines, BulkPolicy, Rejection};
pub use client::EsClient;
pub use url::parse_host;

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
