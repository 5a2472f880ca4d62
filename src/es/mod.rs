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

/// Whom to trust for an https node besides the system's store (`ES_CA_FILE`,
/// `ES_CA_FINGERPRINT`).
#[derive(Debug, Clone, Default)]
pub struct EsTrust {
    pub ca: Option<crate::tls::CaFile>,
    pub pin: Option<crate::tls::Fingerprint>,
}

impl EsTrust {
    fn configured(&self) -> bool {
        self.ca.is_some() || self.pin.is_some()
    }
}

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
    #[error(
        "Elasticsearch at {host} presented a certificate the harvester does not trust \
         ({reason}); it was not retried. Set ES_CA_FILE to the CA's certificate (PEM; for a node \
         Elasticsearch set up itself, config/certs/http_ca.crt) or ES_CA_FINGERPRINT to the CA's \
         SHA-256 fingerprint it printed at first start, or add the CA to the system trust store \
         (or SSL_CERT_FILE){}",
        if *.configured { " (a CA is configured: it does not sign this certificate, or the certificate does not name this host)" } else { "" }
    )]
    Certificate {
        host: String,
        reason: String,
        configured: bool,
    },
    #[error(
        "Elasticsearch at {host} presented no certificate with ES_CA_FINGERPRINT {pin} (it \
         presented {presented}); check the fingerprint (Elasticsearch prints it at first start; \
         `openssl x509 -noout -fingerprint -sha256 -in config/certs/http_ca.crt` shows it)"
    )]
    NoPinnedCa {
        host: String,
        pin: crate::tls::Fingerprint,
        presented: String,
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
