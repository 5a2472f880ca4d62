//! Who may read records from the running service. Records are personal data, so they are
//! reachable only by whoever may read the journal file itself:
//!
//! - on the Unix socket beside the journal (`<journal>.sock`), whose owner and mode follow the
//!   journal's (as Docker's and PostgreSQL's sockets do): the file system is the gate, no token;
//! - over TCP only with the bearer token `HARVESTER_API_TOKEN`, and only to requests whose
//!   `Host` names this machine (a page that rebinds its own DNS name to 127.0.0.1 is refused).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Response, StatusCode};

use crate::config::ConfigError;

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

    /// Whether an `Authorization` header value is `Bearer <this token>` (the scheme in any
    /// case, as RFC 9110 says). The time taken depends on the length of our token only, not on
    /// how much of it the caller guessed right.
    fn admits(&self, authorization: &[u8]) -> bool {
        let Some(space) = authorization.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, rest) = authorization.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let given = rest.trim_ascii();
        let want = self.0.as_bytes();
        let mut diff = (given.len() != want.len()) as u8;
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

/// Who may read records on one listener.
#[derive(Debug, Clone)]
pub enum RecordAccess {
    /// The Unix socket beside the journal: its owner and mode admit whoever may read the
    /// journal, and nobody else reaches it.
    Socket,
    /// TCP: callers must send `Authorization: Bearer <token>` and a `Host` of this machine.
    Token(ApiToken),
    /// TCP without a token: the record endpoints are off there (`socket` says where they are).
    Off { socket: Option<PathBuf> },
}

impl RecordAccess {
    /// The policy of the TCP listener on `addr`; warns when a non-loopback address has no token.
    pub fn for_tcp(
        addr: &SocketAddr,
        token: Option<ApiToken>,
        socket: Option<PathBuf>,
    ) -> RecordAccess {
        match token {
            Some(t) => RecordAccess::Token(t),
            None => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(
                        %addr,
                        "METRICS_ADDR is not a loopback address and {TOKEN_VAR} is not set: \
                         /journal/dump and /journal/stats are off on it (they serve personal \
                         data); /metrics and /healthz stay on. `harvester journal` reaches them \
                         on the Unix socket beside the journal; set {TOKEN_VAR} to serve them \
                         over TCP to callers with that bearer token"
                    );
                }
                RecordAccess::Off { socket }
            }
        }
    }

    /// `None` when the request may read records, else the answer to give.
    pub(super) fn refusal(&self, headers: &HeaderMap) -> Option<Response<Body>> {
        match self {
            RecordAccess::Socket => None,
            RecordAccess::Off { socket } => Some(text(
                StatusCode::FORBIDDEN,
                format!(
                    "the record endpoints are off over TCP without {TOKEN_VAR} (any local user \
                     reaches a TCP port); they answer on the Unix socket {}, which \
                     `harvester journal dump` and `stats` use by themselves\n",
                    socket
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "beside the journal".into())
                ),
            )),
            RecordAccess::Token(t) => {
                if !host_is_ours(headers) {
                    return Some(text(
                        StatusCode::MISDIRECTED_REQUEST,
                        "the Host header names another site: the record endpoints answer to an \
                         IP address, localhost or this machine's host name only\n"
                            .into(),
                    ));
                }
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

/// Whether the request's `Host` is an IP address, `localhost` or this machine's name: a web
/// page whose DNS name was rebound to this machine sends its own name, and is refused.
fn host_is_ours(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        // HTTP/1.0 has no Host; a browser always sends one.
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]:9898`.
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || machine_names().contains(&name)
}

/// This machine's host name (short and as the kernel holds it), lowercase.
fn machine_names() -> Vec<String> {
    let Ok(n) = std::fs::read_to_string("/proc/sys/kernel/hostname") else {
        return Vec::new();
    };
    let full = n.trim().to_ascii_lowercase();
    let short = full.split('.').next().unwrap_or_default().to_string();
    vec![full, short]
}

pub(super) fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_only_itself_and_never_prints() {
        let t = ApiToken::parse("0123456789abcdef-secret").unwrap();
        assert!(t.admits(b"Bearer 0123456789abcdef-secret"));
        // The scheme is case-insensitive (RFC 9110 11.1); the token is not.
        assert!(t.admits(b"bearer 0123456789abcdef-secret"));
        assert!(t.admits(b"BEARER 0123456789abcdef-secret"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secreT"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secret2"));
        assert!(!t.admits(b"Bearer 0123456789abcdef-secre"));
        assert!(!t.admits(b"Bearer "));
        assert!(!t.admits(b"Bearer"));
        assert!(!t.admits(b"Basic 0123456789abcdef-secret"));
        assert!(!t.admits(b"Bearerx 0123456789abcdef-secret"));
        assert!(!format!("{t:?}").contains("secret"));
        let e = ApiToken::parse("short-secret").unwrap_err().to_string();
        assert!(e.contains(TOKEN_VAR) && e.contains("16 to 4096"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        assert!(ApiToken::parse("with a space in it 0123").is_err());
    }

    #[test]
    fn over_tcp_records_need_the_token_and_a_host_of_ours() {
        let public: SocketAddr = "0.0.0.0:9898".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9898".parse().unwrap();
        let none = HeaderMap::new();
        assert!(RecordAccess::for_tcp(&public, None, None)
            .refusal(&none)
            .is_some());
        // A loopback port is reached by every local user: no records there without a token.
        assert_eq!(
            RecordAccess::for_tcp(&local, None, None)
                .refusal(&none)
                .unwrap()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert!(RecordAccess::Socket.refusal(&none).is_none());
        let t = ApiToken::parse("0123456789abcdef").unwrap();
        let tok = RecordAccess::for_tcp(&public, Some(t), None);
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
        for ok in [
            "127.0.0.1:9898",
            "localhost:9898",
            "[::1]:9898",
            "10.1.2.3",
            "LocalHost",
        ] {
            h.insert(header::HOST, ok.parse().unwrap());
            assert!(tok.refusal(&h).is_none(), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:9898",
            "127.0.0.1.nip.io:9898",
        ] {
            h.insert(header::HOST, bad.parse().unwrap());
            assert_eq!(
                tok.refusal(&h).unwrap().status(),
                StatusCode::MISDIRECTED_REQUEST,
                "{bad}"
            );
        }
    }
}
