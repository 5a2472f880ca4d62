//! The HTTP client for Opencast's engage and admin nodes: authentication, timeouts, bounded
//! retries.
//!
//! Every request is authenticated, before Opencast asks: stock Opencast serves `/search` and
//! `/usertracking` to anonymous callers and so never challenges them, and a client that waits for
//! a 401 is served anonymously (private episodes hidden, a wrong password unnoticed). With
//! Digest (the default), the first request to a host fetches a challenge from a path that needs
//! a login ([`CHALLENGE_PATH`]), and every request then carries an answer to it, the nonce reused
//! with a counting `nc`. Each host (engage, admin) keeps its own nonce. With Basic
//! (`OPENCAST_AUTH=basic`), every request carries the user and password.
//!
//! Transient faults (connection errors, timeouts, 5xx, a truncated body) are retried
//! with exponential backoff and full jitter; a definite answer (wrong credentials, 4xx, a redirect
//! to the login page, a whole body of the wrong shape) is not, and comes back as an error that says what to fix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::digest::{Challenge, Unsupported};
use super::wire::DecodeError;
use crate::retry::{self, Backoff};
use crate::secret::{redact_userinfo, Secret};

/// How the client reaches Opencast and how hard it tries (`Debug` shows no password).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub user: String,
    pub password: Secret,
    pub timeout: Duration,
    /// Retries after the first attempt for a transient fault.
    pub retries: u32,
    /// First backoff; doubles each retry, capped at `max_backoff`, full jitter
    /// ([`crate::retry::OPENCAST`] by default).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How every request is authenticated (`OPENCAST_AUTH`).
    pub auth: AuthScheme,
    /// The site's own CA, trusted besides the system's store (`OPENCAST_CA_FILE`).
    pub ca: Option<crate::tls::CaFile>,
}

/// How the client proves who it is (`OPENCAST_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthScheme {
    /// HTTP Digest, answered before Opencast asks. Works for the digest system user only: the
    /// other users' passwords are stored hashed, and Digest needs the clear one.
    #[default]
    Digest,
    /// HTTP Basic with `X-Requested-Auth: Basic` (Opencast 3.0+): any user; the password crosses
    /// the wire, so only over https unless allowed.
    Basic,
}

impl AuthScheme {
    /// The setting's value for this scheme.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Digest => "digest",
            AuthScheme::Basic => "basic",
        }
    }
}

/// Where a Digest challenge is asked for, below an installation's base URL.
///
/// It needs a login on every release from Matterhorn 1.4 to Opencast 17 and is open to nobody
/// else (`etc/security/mh_default_org.xml`: `/services/*` is `ROLE_ADMIN` from 1.4 to 5.x,
/// `/services/**` is `ROLE_ADMIN` from 6.0 on; only `/services/available.*` and POSTs to
/// `/services/maintenance` and `/services/sanitize` have other rules), so an anonymous GET of it
/// with `X-Requested-Auth: Digest` gets the digest entry point's 401 challenge
/// (`DelegatingAuthenticationEntryPoint`). The request carries no credentials and never reaches
/// the service registry: the security filter answers it.
pub const CHALLENGE_PATH: &str = "services/services.json";

impl ClientConfig {
    pub fn new(user: &str, password: &str) -> ClientConfig {
        ClientConfig {
            user: user.to_string(),
            password: Secret::new(password),
            timeout: Duration::from_secs(30),
            retries: 5,
            backoff: retry::OPENCAST.first,
            max_backoff: retry::OPENCAST.cap,
            auth: AuthScheme::Digest,
            ca: None,
        }
    }
}

/// A failed Opencast request, after any retries it deserved.
#[derive(Debug, thiserror::Error)]
pub enum OpencastError {
    #[error(
        "Opencast rejected the credentials of user '{user}' at {url}; check MATTERHORN_REST_USER \
         and MATTERHORN_REST_PASS (or --user/--password){}",
        scheme_hint(*.scheme)
    )]
    CredentialsRejected {
        url: String,
        user: String,
        scheme: AuthScheme,
    },
    #[error(
        "Opencast did not send a Digest challenge at {url} ({got}); point the host at an Opencast \
         node (with its path prefix, if any), or set OPENCAST_AUTH=basic"
    )]
    NoChallenge { url: String, got: String },
    #[error(
        "Opencast asks for Digest authentication the harvester does not support at {url}: \
         {what}; set OPENCAST_AUTH=basic (over https), or let Opencast offer qop=auth with MD5 \
         or SHA-256"
    )]
    UnsupportedChallenge { url: String, what: Unsupported },
    #[error(
        "Opencast ran {url} as user '{ran_as}', not as '{user}': the credentials were not used \
         (OPENCAST_AUTH={}; Basic needs Opencast 3.0+)",
        .scheme.name()
    )]
    NotAuthenticated {
        url: String,
        user: String,
        ran_as: String,
        scheme: AuthScheme,
    },
    #[error("Opencast's answer to {url} is not what the harvester expected: {why}")]
    Unexpected { url: String, why: String },
    #[error(
        "Opencast redirected {url} to {location} instead of asking for digest auth; the node may \
         not accept REST (digest) logins, or the host is wrong"
    )]
    Redirected { url: String, location: String },
    #[error("Opencast answered {status} for {url}: {snippet}")]
    Status {
        url: String,
        status: u16,
        snippet: String,
    },
    #[error("Opencast request {url} failed {attempts} times, last: {last}; is the node up and reachable?")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "Opencast answered {url} with a complete body that is not what that endpoint returns \
         ({message}); it was not retried, since it would come back the same: check the host \
         settings (engage vs admin node, path prefix) and that the Opencast release is one the \
         harvester reads"
    )]
    Undecodable { url: String, message: String },
    #[error(
        "Opencast at {url} presented a certificate the harvester does not trust ({reason}); \
         it was not retried. If the site signs with its own CA, set OPENCAST_CA_FILE to the CA's \
         certificate (PEM), or add the CA to the system trust store (or SSL_CERT_FILE){}",
        .ca.as_ref().map(|p| format!(" (OPENCAST_CA_FILE={p} is set: it does not sign this certificate, or the certificate does not name this host)")).unwrap_or_default()
    )]
    Certificate {
        url: String,
        reason: String,
        ca: Option<String>,
    },
    #[error("bad Opencast address '{0}': give a host, host:port or a full http(s) URL")]
    BadHost(String),
    #[error(
        "Opencast address '{0}' holds a user or password; give the host alone and the \
         credentials in MATTERHORN_REST_USER and MATTERHORN_REST_PASS (or --user/--password), \
         which are sent only as a digest answer"
    )]
    CredentialsInUrl(String),
}

/// What to try when Opencast refused the credentials, by scheme.
fn scheme_hint(scheme: AuthScheme) -> &'static str {
    match scheme {
        AuthScheme::Digest => {
            "; Digest works only for the digest system user (org.opencastproject.security.digest.user \
             in custom.properties), whose password Opencast keeps in clear: for any other user \
             set OPENCAST_AUTH=basic"
        }
        AuthScheme::Basic => "",
    }
}

/// Counters a benchmark or the metrics endpoint can read.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Digest challenges fetched from [`CHALLENGE_PATH`] (one per host, unless a nonce is lost).
    pub challenges: AtomicU64,
    /// Time of each answered request (any status), from sending to the whole body.
    pub latency: crate::metrics::Histogram,
}

/// One host's Digest state: the challenge its answers are computed from, and how many requests
/// used its nonce. Locked across a challenge fetch, so that the first requests to a host wait
/// for one challenge instead of each fetching its own.
#[derive(Default)]
struct DigestState {
    challenge: Option<Challenge>,
    nc: u32,
    /// The client nonce of a `-sess` challenge (A1 holds it, so it stays the same per nonce).
    cnonce: String,
    /// Bumped at each new challenge: a request refused under an older one does not replace a
    /// newer one another request already installed.
    generation: u64,
}

impl DigestState {
    fn install(&mut self, c: Challenge) {
        self.challenge = Some(c);
        self.nc = 0;
        self.cnonce = new_cnonce();
        self.generation += 1;
    }
}

fn new_cnonce() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

type HostSlot = Arc<tokio::sync::Mutex<DigestState>>;

/// A shareable Opencast client (cheap to clone: the connection pool and auth state are shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: Arc<ClientConfig>,
    /// Digest state per origin (`scheme://host:port`): a nonce is never sent to another host.
    hosts: Arc<Mutex<HashMap<String, HostSlot>>>,
    /// The installations' base URLs, to find the [`CHALLENGE_PATH`] below a path prefix.
    bases: Arc<Mutex<Vec<Url>>>,
    stats: Arc<ClientStats>,
}

/// What [`Client::probe`] saw.
#[derive(Debug)]
pub struct Probe {
    pub body: bytes::Bytes,
    /// The `Date` header, as sent.
    pub date: Option<String>,
    pub elapsed: Duration,
}

enum Attempt {
    Transient(String),
    Fatal(OpencastError),
}

/// Turns `host`, `host:port` or a full URL into a base URL whose path ends in `/`, so that an
/// installation under a prefix (`https://host/opencast/`) keeps it when endpoint paths are
/// joined to it.
///
/// A URL with `user:password@` is refused: the HTTP client would send it as Basic auth, in the
/// clear on http, on every request; the credentials belong in the digest settings. Messages
/// show the address with its user information replaced by `***`.
pub fn base_url(host: &str) -> Result<Url, OpencastError> {
    let h = host.trim();
    let bad = || OpencastError::BadHost(redact_userinfo(h));
    if h.is_empty() {
        return Err(bad());
    }
    let full = if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    };
    let mut url = Url::parse(&full).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OpencastError::CredentialsInUrl(redact_userinfo(h)));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad());
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        let mut b = reqwest::Client::builder();
        for c in cfg.ca.iter().flat_map(|ca| ca.certs.iter()) {
            b = b.add_root_certificate(c.clone());
        }
        let http = b
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            // Page requests, episode look-ups and retries together stay under this many
            // connections: none is closed only to be opened again a moment later.
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client builds");
        Client {
            http,
            cfg: Arc::new(cfg),
            hosts: Arc::new(Mutex::new(HashMap::new())),
            bases: Arc::new(Mutex::new(Vec::new())),
            stats: Arc::new(ClientStats::default()),
        }
    }

    /// Names a node's base URL (from [`base_url`]): its Digest challenge is asked below it.
    pub fn register_base(&self, base: &Url) {
        let mut b = self.bases.lock().expect("bases lock");
        if !b.contains(base) {
            b.push(base.clone());
        }
    }

    /// The user requests are made as.
    pub fn user(&self) -> &str {
        &self.cfg.user
    }

    /// How requests are authenticated.
    pub fn scheme(&self) -> AuthScheme {
        self.cfg.auth
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The shared counters, for a metrics endpoint that outlives this handle.
    pub fn stats_handle(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// GETs `url` and parses the body with `parse`, retrying transient faults.
    pub async fn get_parsed<T>(
        &self,
        url: &Url,
        parse: impl Fn(&bytes::Bytes) -> Result<T, DecodeError>,
    ) -> Result<T, OpencastError> {
        let attempts = self.cfg.retries.saturating_add(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                self.pause_before_retry(url, attempt, &last).await;
            }
            match self.attempt(url).await {
                Ok(body) => match parse(&body) {
                    Ok(v) => return Ok(v),
                    // A body cut short is transient; a whole body of the wrong shape is final.
                    Err(e) if e.is_truncation() => {
                        last = format!("unreadable body ({} bytes): {e}", body.len())
                    }
                    Err(e) => {
                        return Err(OpencastError::Undecodable {
                            url: url.to_string(),
                            message: e.to_string(),
                        })
                    }
                },
                Err(Attempt::Transient(e)) => last = e,
                Err(Attempt::Fatal(e)) => return Err(e),
            }
        }
        Err(OpencastError::Exhausted {
            url: url.to_string(),
            attempts,
            last,
        })
    }

    /// Retries allowed after the first attempt.
    pub fn retries(&self) -> u32 {
        self.cfg.retries
    }

    /// A request that got no answer: transient (the node may come back), except a certificate
    /// the harvester does not trust, which comes back the same until a setting changes.
    fn transport_fault(&self, url: &Url, e: &reqwest::Error) -> Attempt {
        match crate::tls::certificate_problem(e) {
            Some(reason) => Attempt::Fatal(OpencastError::Certificate {
                url: url.to_string(),
                reason,
                ca: self
                    .cfg
                    .ca
                    .as_ref()
                    .map(|c| crate::escape::text(&c.path.display().to_string()).into_owned()),
            }),
            None => Attempt::Transient(describe(e)),
        }
    }

    /// Counts a retry, logs it and sleeps the backoff of retry number `attempt` (from 1):
    /// exponential, capped, with full jitter ([`crate::retry`]).
    pub async fn pause_before_retry(&self, url: &Url, attempt: u32, why: &str) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let sleep = self.backoff().delay(attempt.saturating_sub(1));
        tracing::warn!(url = %url, attempt, error = %why, "retrying Opencast request in {:?}", sleep);
        tokio::time::sleep(sleep).await;
    }

    /// The retry policy of this client's settings.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.cfg.backoff, self.cfg.max_backoff)
    }

    /// One GET of `url` with digest auth and no retry (for `harvester check`): the body, the
    /// server's `Date` header and the time the request took. A transport fault or a 5xx is
    /// [`OpencastError::Exhausted`] after this one attempt.
    pub async fn probe(&self, url: &Url) -> Result<Probe, OpencastError> {
        let started = Instant::now();
        let once = async {
            let resp = self.send_authed(url).await?;
            let date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // Not a success: the same classification as a harvest request.
            let body = self.read_answer(url, resp, None).await?;
            Ok((body, date))
        };
        match once.await {
            Ok((body, date)) => Ok(Probe {
                body,
                date,
                elapsed: started.elapsed(),
            }),
            Err(Attempt::Fatal(e)) => Err(e),
            Err(Attempt::Transient(last)) => Err(OpencastError::Exhausted {
                url: url.to_string(),
                attempts: 1,
                last,
            }),
        }
    }

    /// GETs `url` and returns the raw body (the benchmark's "bare fetch").
    pub async fn get_bytes(&self, url: &Url) -> Result<bytes::Bytes, OpencastError> {
        // `Bytes` clones share the buffer: the body is not copied again.
        self.get_parsed(url, |b| Ok(b.clone())).await
    }

    async fn attempt(&self, url: &Url) -> Result<bytes::Bytes, Attempt> {
        let started = Instant::now();
        let resp = self.send_authed(url).await?;
        self.read_answer(url, resp, Some(started)).await
    }

    /// A success's whole body, or what another answer means ([`Client::classify`]). With
    /// `started`, an answered request is counted and its time observed (a success once its
    /// whole body is in).
    async fn read_answer(
        &self,
        url: &Url,
        resp: reqwest::Response,
        started: Option<Instant>,
    ) -> Result<bytes::Bytes, Attempt> {
        let count = || {
            if let Some(t) = started {
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.latency.observe(t.elapsed());
            }
        };
        if resp.status().is_success() {
            let body = resp
                .bytes()
                .await
                .map_err(|e| Attempt::Transient(format!("reading body: {e}")))?;
            count();
            return Ok(body);
        }
        count();
        Err(self.classify(url, resp).await)
    }

    /// What an answer other than 2xx means: worth a retry (5xx, 429) or final.
    async fn classify(&self, url: &Url, resp: reqwest::Response) -> Attempt {
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Transient(format!("HTTP {status}"));
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            return Attempt::Fatal(OpencastError::Redirected {
                url: url.to_string(),
                location,
            });
        }
        let snippet: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Attempt::Fatal(OpencastError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            snippet,
        })
    }

    /// Sends a GET with the credentials of the configured scheme (never without them).
    async fn send_authed(&self, url: &Url) -> Result<reqwest::Response, Attempt> {
        match self.cfg.auth {
            AuthScheme::Digest => self.send_digest(url).await,
            AuthScheme::Basic => self.send_basic(url).await,
        }
    }

    /// Basic: user and password on every request; a 401 is a refusal (no challenge to answer).
    async fn send_basic(&self, url: &Url) -> Result<reqwest::Response, Attempt> {
        let resp = self
            .http
            .get(url.clone())
            .header("X-Requested-Auth", "Basic")
            .basic_auth(&self.cfg.user, Some(self.cfg.password.expose()))
            .send()
            .await
            .map_err(|e| self.transport_fault(url, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Attempt::Fatal(self.rejected(url)));
        }
        Ok(resp)
    }

    /// Digest, preemptively: an answer to the host's current challenge (fetched first when
    /// there is none). A 401 with a new challenge is answered once, a `stale` one once more
    /// (twice in all, in case another request renewed the nonce meanwhile); a second refusal
    /// means the credentials are wrong.
    async fn send_digest(&self, url: &Url) -> Result<reqwest::Response, Attempt> {
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let slot = self.slot(url);
        let (mut renewed, mut stale) = (0, 0);
        loop {
            let (header, generation) = {
                let mut st = slot.lock().await;
                if st.challenge.is_none() {
                    let c = self.fetch_challenge(url).await?;
                    st.install(c);
                }
                st.nc += 1;
                let c = st.challenge.as_ref().expect("installed above");
                let cnonce = if c.algorithm.is_sess() {
                    st.cnonce.clone()
                } else {
                    new_cnonce()
                };
                let h = c.authorization(
                    &self.cfg.user,
                    self.cfg.password.expose(),
                    "GET",
                    &uri,
                    st.nc,
                    &cnonce,
                );
                (h, st.generation)
            };
            let mut v = HeaderValue::from_str(&header)
                .map_err(|_| Attempt::Fatal(OpencastError::BadHost(url.to_string())))?;
            v.set_sensitive(true);
            let resp = self
                .http
                .get(url.clone())
                .header("X-Requested-Auth", "Digest")
                .header("X-Opencast-Matterhorn-Authorization", "true")
                .header(AUTHORIZATION, v)
                .send()
                .await
                .map_err(|e| self.transport_fault(url, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = digest_challenge(url, &resp)?;
            if challenge.stale {
                stale += 1;
                if stale > 2 {
                    return Err(Attempt::Transient(
                        "Opencast called the nonce stale again".into(),
                    ));
                }
            } else {
                renewed += 1;
                if renewed > 1 {
                    return Err(Attempt::Fatal(self.rejected(url)));
                }
            }
            let mut st = slot.lock().await;
            if st.generation == generation {
                st.install(challenge);
            }
        }
    }

    fn rejected(&self, url: &Url) -> OpencastError {
        OpencastError::CredentialsRejected {
            url: url.to_string(),
            user: self.cfg.user.clone(),
            scheme: self.cfg.auth,
        }
    }

    /// The Digest state of `url`'s host.
    fn slot(&self, url: &Url) -> HostSlot {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        self.hosts
            .lock()
            .expect("hosts lock")
            .entry(key)
            .or_default()
            .clone()
    }

    /// [`CHALLENGE_PATH`] below the registered base `url` lies under (the host's root if none).
    /// The server's `Date` header on an answer to a request that carries no credentials (a path
    /// below `url`'s installation that needs a login, asked as a browser would: the security
    /// filter redirects it to the login page at once; no challenge, nothing read), with the
    /// local times it was sent and received. For reading the server's clock; `None` when there
    /// is no answer or no header.
    pub async fn server_date(&self, url: &Url) -> Option<(String, i64, i64)> {
        let login = self.challenge_url(url);
        let sent = crate::timefmt::now_us();
        let resp = self.http.get(login).send().await.ok()?;
        let received = crate::timefmt::now_us();
        let date = resp
            .headers()
            .get(reqwest::header::DATE)?
            .to_str()
            .ok()?
            .to_string();
        Some((date, sent, received))
    }

    fn challenge_url(&self, url: &Url) -> Url {
        let bases = self.bases.lock().expect("bases lock");
        let base = bases
            .iter()
            .filter(|b| b.origin() == url.origin() && url.path().starts_with(b.path()))
            .max_by_key(|b| b.path().len())
            .cloned()
            .unwrap_or_else(|| {
                let mut u = url.clone();
                u.set_path("/");
                u.set_query(None);
                u
            });
        base.join(CHALLENGE_PATH).expect("static path")
    }

    /// Asks the host of `url` for a Digest challenge: a GET of [`CHALLENGE_PATH`] without
    /// credentials, with `X-Requested-Auth: Digest` (without it, Opencast redirects to its
    /// login page).
    async fn fetch_challenge(&self, url: &Url) -> Result<Challenge, Attempt> {
        let login = self.challenge_url(url);
        let resp = self
            .http
            .get(login.clone())
            .header("X-Requested-Auth", "Digest")
            .header("X-Opencast-Matterhorn-Authorization", "true")
            .send()
            .await
            .map_err(|e| self.transport_fault(url, &e))?;
        self.stats.challenges.fetch_add(1, Ordering::Relaxed);
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return digest_challenge(&login, &resp);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Transient(format!("HTTP {status} for {login}")));
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .chars()
                .take(200)
                .collect();
            return Err(Attempt::Fatal(OpencastError::Redirected {
                url: login.to_string(),
                location,
            }));
        }
        Err(Attempt::Fatal(OpencastError::NoChallenge {
            url: login.to_string(),
            got: format!(
                "it answered HTTP {} to a request without credentials",
                status.as_u16()
            ),
        }))
    }
}

/// The first Digest challenge of a 401 the harvester can answer; else what it cannot answer,
/// or that there was none.
fn digest_challenge(url: &Url, resp: &reqwest::Response) -> Result<Challenge, Attempt> {
    let mut unsupported = None;
    for v in resp.headers().get_all(WWW_AUTHENTICATE) {
        match v.to_str().ok().and_then(Challenge::parse) {
            Some(Ok(c)) => return Ok(c),
            Some(Err(e)) => {
                unsupported.get_or_insert(e);
            }
            None => {}
        }
    }
    Err(Attempt::Fatal(match unsupported {
        Some(what) => OpencastError::UnsupportedChallenge {
            url: url.to_string(),
            what,
        },
        None => OpencastError::NoChallenge {
            url: url.to_string(),
            got: "a 401 without a Digest challenge".into(),
        },
    }))
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_urls() {
        assert_eq!(
            base_url("oc.example.edu").unwrap().as_str(),
            "http://oc.example.edu/"
        );
        assert_eq!(base_url("oc:8080").unwrap().as_str(), "http://oc:8080/");
        assert_eq!(
            base_url("https://oc.example.edu/").unwrap().as_str(),
            "https://oc.example.edu/"
        );
        assert!(base_url("").is_err());
        assert!(base_url("ftp://x").is_err());
    }

    #[test]
    fn a_path_prefix_is_kept() {
        for (host, want) in [
            (
                "https://h/opencast/",
                "https://h/opencast/usertracking/actions.json",
            ),
            (
                "https://h/opencast",
                "https://h/opencast/usertracking/actions.json",
            ),
            ("h:8080/a/b/", "http://h:8080/a/b/usertracking/actions.json"),
            ("http://h", "http://h/usertracking/actions.json"),
        ] {
            let u = base_url(host).unwrap();
            assert_eq!(u.join("usertracking/actions.json").unwrap().as_str(), want);
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_shown() {
        for host in [
            "http://admin:SECRETx@h:8080",
            "admin:SECRETx@h",
            "https://admin:SECRETx@h/oc/",
            "http://admin:SECRETx@",
            "http://admin:SECR/ETx@h",
            "http://:SECRETx@h",
        ] {
            let e = base_url(host).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{host}: {e}");
        }
        let e = base_url("http://admin@h").unwrap_err();
        assert!(matches!(e, OpencastError::CredentialsInUrl(_)), "{e}");
    }

    #[test]
    fn the_config_never_prints_the_password() {
        let c = ClientConfig::new("u", "SECRETpw");
        assert!(!format!("{c:?}").contains("SECRETpw"));
    }
}
