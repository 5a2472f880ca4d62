//! The endpoints of `harvester run`: `/metrics` and `/healthz` (public: figures and health
//! only, no personal data, no credentials) and the record endpoints `/journal/stats` and
//! `/journal/dump`, which carry personal data and therefore answer only on a loopback address or
//! to a caller holding the bearer token `HARVESTER_API_TOKEN`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::Router;

use super::JournalSlot;
use crate::config::ConfigError;
use crate::metrics::Metrics;

/// The environment variable holding the bearer token of the record endpoints.
pub const TOKEN_VAR: &str = "HARVESTER_API_TOKEN";

/// A bearer token; it never prints itself (its `Debug` is redacted) and is compared in
/// constant time.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// `HARVESTER_API_TOKEN` from the environment (or `.env`): unset or empty is no token.
    pub fn from_env() -> Result<Option<ApiToken>, ConfigError> {
        match std::env::var(TOKEN_VAR) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => ApiToken::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(format!(
                "{TOKEN_VAR} must be 16 to 4096 printable ASCII characters without spaces"
            ))),
        }
    }

    /// Checks the token's shape; the message names its length, never its value.
    pub fn parse(v: &str) -> Result<ApiToken, ConfigError> {
        let ok_chars = v.bytes().all(|b| b.is_ascii_graphic());
        if !(16..=4096).contains(&v.len()) || !ok_chars {
            return Err(ConfigError::new(format!(
                "{TOKEN_VAR} must be 16 to 4096 printable ASCII characters without spaces \
                 (the one given has {} characters{})",
                v.chars().count(),
                if ok_chars { "" } else { ", some not allowed" }
            )));
        }
        Ok(ApiToken(v.into()))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`. The time taken depends
    /// on the length of our token only, not on how much of it the caller guessed right.
    fn admits(&self, authorization: &[u8]) -> bool {
        let Some(given) = authorization.strip_prefix(b"Bearer ") else {
            return false;
        };
        let want = self.0.as_bytes();
        let mut diff = (given.len() != want.len()) as u8;
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

/// Who may read records from the running service.
#[derive(Debug, Clone)]
pub enum RecordAccess {
    /// Bound to a loopback address without a token: only local users reach the port.
    Loopback,
    /// Callers must send `Authorization: Bearer <token>`.
    Token(ApiToken),
    /// Bound to a non-loopback address without a token: the record endpoints are off.
    Off,
}

impl RecordAccess {
    /// The policy for the address the service listens on, warning when records are off.
    pub fn for_addr(addr: &SocketAddr, token: Option<ApiToken>) -> RecordAccess {
        match token {
            Some(t) => RecordAccess::Token(t),
            None if addr.ip().is_loopback() => RecordAccess::Loopback,
            None => {
                tracing::warn!(
                    %addr,
                    "METRICS_ADDR is not a loopback address and {TOKEN_VAR} is not set: \
                     /journal/dump and /journal/stats are off (they serve personal data); \
                     /metrics and /healthz stay on. Set {TOKEN_VAR} to serve them to callers \
                     with that bearer token"
                );
                RecordAccess::Off
            }
        }
    }

    /// `None` when the request may read records, else the answer to give.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response<Body>> {
        match self {
            RecordAccess::Loopback => None,
            RecordAccess::Off => Some(text(
                StatusCode::FORBIDDEN,
                format!(
                    "the record endpoints are off: this harvester listens on a non-loopback \
                     address without {TOKEN_VAR}\n"
                ),
            )),
            RecordAccess::Token(t) => {
                let ok = headers
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| t.admits(v.as_bytes()));
                if ok {
                    None
                } else {
                    let mut r = text(
                        StatusCode::UNAUTHORIZED,
                        format!("a bearer token is needed: set {TOKEN_VAR} for the client too\n"),
                    );
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
                    Some(r)
                }
            }
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r
}

/// Every route of the service.
pub fn router(metrics: Arc<Metrics>, slot: JournalSlot, access: RecordAccess) -> Router {
    let (m, s) = (metrics.clone(), slot.clone());
    let h = metrics.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    m.render(s.get().as_deref()),
                )
            }),
        )
        .route(
            "/healthz",
            get(move || async move {
                match h.health() {
                    Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                    Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                }
            }),
        )
        .merge(journal_routes(slot, metrics, access))
}

/// `/journal/stats` and `/journal/dump`: the running service answers what `harvester journal`
/// cannot read itself while this process holds the file.
fn journal_routes(slot: JournalSlot, metrics: Arc<Metrics>, access: RecordAccess) -> Router {
    let (s1, m1, a1) = (slot.clone(), metrics.clone(), access.clone());
    Router::new()
        .route(
            "/journal/stats",
            get(move |headers: HeaderMap| {
                let (slot, metrics, access) = (s1.clone(), m1.clone(), a1.clone());
                async move {
                    if let Some(r) = access.refusal(&headers) {
                        return r;
                    }
                    let Some(j) = slot.get() else {
                        return unavailable(&metrics);
                    };
                    let res =
                        tokio::task::spawn_blocking(move || crate::journal::inspect::stats(&j))
                            .await;
                    match res
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                    {
                        Ok(s) => {
                            let mut r = Response::new(Body::from(
                                serde_json::to_string(&s).unwrap_or_default(),
                            ));
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                "application/json".parse().expect("valid"),
                            );
                            r
                        }
                        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
                    }
                }
            }),
        )
        .route(
            "/journal/dump",
            get(
                move |headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery| {
                    let (slot, metrics, access) = (slot.clone(), metrics.clone(), access.clone());
                    async move {
                        if let Some(r) = access.refusal(&headers) {
                            return r;
                        }
                        let Some(j) = slot.get() else {
                            return unavailable(&metrics);
                        };
                        dump(j, q)
                    }
                },
            ),
        )
}

/// 503 while the journal is being reopened.
fn unavailable(metrics: &Metrics) -> Response<Body> {
    let why = metrics
        .health()
        .err()
        .unwrap_or_else(|| "journal unavailable".into());
    text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
}

/// Streams the records a dump query asks for.
fn dump(j: Arc<crate::journal::Journal>, q: Option<String>) -> Response<Body> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", q.unwrap_or_default()));
    let pairs: Vec<(String, String)> = url
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let req = match crate::app::journal::DumpRequest::from_pairs(&pairs) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(1 << 16),
        };
        if let Ok(bad) = crate::app::journal::write_dump(&j, &req, &mut w) {
            for b in bad {
                tracing::error!(first_seq = b.first_seq, error = %b.error, "dump skipped an unreadable block");
            }
        }
        let _ = std::io::Write::flush(&mut w);
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-ndjson".parse().expect("valid"),
    );
    r
}

/// Streams a dump to an HTTP response in 64 KiB chunks; a gone client stops the dump.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_only_itself_and_never_prints() {
        let t = ApiToken::parse("0123456789abcdef-secret").unwrap();
        assert!(t.admits(b"Bearer 0123456789abcdef-secret"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secreT"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secret2"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secre"));
        assert!(!t.admits(b"Bearer "));
        assert!(!t.admits(b"Basic 0123456789abcdef-secret"));
        assert!(!format!("{t:?}").contains("secret"));
        let e = ApiToken::parse("short-secret").unwrap_err().to_string();
        assert!(e.contains(TOKEN_VAR) && e.contains("16 to 4096"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        assert!(ApiToken::parse("with a space in it 0123").is_err());
    }

    #[test]
    fn records_are_off_on_a_public_address_without_a_token() {
        let public: SocketAddr = "0.0.0.0:9898".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9898".parse().unwrap();
        let none = HeaderMap::new();
        assert!(RecordAccess::for_addr(&public, None)
            .refusal(&none)
            .is_some());
        assert!(RecordAccess::for_addr(&local, None)
            .refusal(&none)
            .is_none());
        let t = ApiToken::parse("0123456789abcdef").unwrap();
        let tok = RecordAccess::for_addr(&public, Some(t));
        assert_eq!(
            tok.refusal(&none).unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(tok.refusal(&h).is_none());
    }
}
