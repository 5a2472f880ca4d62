//! Who may ask the simulated Opencast what, as `etc/security/mh_default_org.xml` says.
//!
//! **The DCE build** (the default) challenges every request, as the harvester's original
//! server did: without `X-Requested-Auth: Digest` a redirect to the login page, with it and
//! without a valid answer a 401 challenge.
//!
//! **A stock release** runs Spring Security's filters: the Digest filter (every release) and
//! the Basic filter (3.0+) authenticate any request that carries credentials, wherever it goes,
//! and refuse a wrong answer with a 401 challenge of their own scheme; then the URL rules
//! apply. `GET /search/**`, `/usertracking/**`, `/info/**` and `/login.html` are open to
//! anonymous callers (served without a challenge, private episodes hidden); everything else
//! needs `ROLE_ADMIN` (`/services/**`, `/workflow/**`, `/**`), and an anonymous caller gets the
//! entry point of its `X-Requested-Auth`: a Digest challenge for `Digest`, a Basic one for
//! `Basic` (3.0+), a 302 to the login page otherwise (`DelegatingAuthenticationEntryPoint`,
//! which compares the header exactly). Nonces expire after the release's validity (10 s in
//! 1.x, 300 s later) and are then answered with `stale="true"`; the realm is the release's.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode, Uri};

use super::digest::{basic_credentials, Credentials};
use super::{data, Refusal, SimState};

/// The role that passes every URL rule and reads every episode.
pub const ADMIN_ROLE: &str = "ROLE_ADMIN";

/// Who a request ran as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    /// The simulator's user (`SimConfig.user`), with `SimConfig.roles`.
    User,
}

/// One Digest answer the simulator accepted: the nonce and the `nc` it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAnswer {
    pub nonce: String,
    /// The `nc` as sent, read as hex (0 when absent).
    pub nc: u64,
}

struct Nonce {
    uses: u64,
    issued: Instant,
}

/// The nonces the simulator gave out. Expired ones stay (answered `stale`, as Spring's
/// self-validating nonces are), so a late request with one is never taken for a stranger's.
/// Each simulator salts its nonces with a random number: two simulators (an engage and an admin
/// node) never give out the same nonce, so one sent to the wrong host is seen as a stranger's.
pub(super) struct Nonces {
    issued: Mutex<HashMap<String, Nonce>>,
    counter: std::sync::atomic::AtomicU64,
    salt: u64,
}

impl Default for Nonces {
    fn default() -> Nonces {
        Nonces {
            issued: Mutex::default(),
            counter: Default::default(),
            salt: rand::random(),
        }
    }
}

enum NonceVerdict {
    Good,
    Stale,
    Unknown,
}

impl SimState {
    /// The realm of the challenges: the release's for a stock one, the configured one for DCE.
    fn realm(&self) -> &str {
        if self.cfg.release.is_stock() {
            self.cfg.release.realm()
        } else {
            &self.cfg.realm
        }
    }

    fn is_admin(&self, caller: Caller) -> bool {
        caller == Caller::User && self.cfg.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    /// Whether `caller` sees episode `k` (private ones only with `ROLE_ADMIN`).
    pub(super) fn may_read(&self, k: u64, caller: Caller) -> bool {
        let n = self.cfg.private_every;
        n == 0 || (k + 1) % n != 0 || self.is_admin(caller)
    }

    /// A 401 with a fresh Digest challenge.
    fn challenge(&self, stale: bool) -> Refusal {
        self.stats.challenges.fetch_add(1, Ordering::Relaxed);
        let n = self.nonces.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let nonce = format!("{:016x}{:08x}", data::mix(self.nonces.salt, n), n);
        self.nonces.issued.lock().unwrap().insert(
            nonce.clone(),
            Nonce {
                uses: 0,
                issued: Instant::now(),
            },
        );
        let mut h = format!(
            "Digest realm=\"{}\", qop=\"{}\", nonce=\"{nonce}\"",
            self.realm(),
            self.cfg.qop
        );
        if !self.cfg.release.is_stock() {
            h.push_str(&format!(
                ", opaque=\"{:x}\"",
                data::mix(7, self.cfg.data.seed)
            ));
        }
        if let Some(a) = self.cfg.algorithm.token() {
            h.push_str(&format!(", algorithm={a}"));
        }
        if stale {
            h.push_str(", stale=\"true\"");
        }
        unauthorized(h)
    }

    /// A 401 asking for Basic credentials (Spring's `BasicAuthenticationEntryPoint`).
    fn basic_challenge(&self) -> Refusal {
        self.stats.challenges.fetch_add(1, Ordering::Relaxed);
        unauthorized(format!("Basic realm=\"{}\"", self.realm()))
    }

    fn redirect_to_login(&self) -> Refusal {
        self.stats.redirects.fetch_add(1, Ordering::Relaxed);
        Box::new(
            Response::builder()
                .status(StatusCode::FOUND)
                .header("Location", "/login.html")
                .body(Body::empty())
                .unwrap(),
        )
    }

    /// Checks a request's credentials and the URL rules; `Ok` says who it runs as, `Err` is
    /// the response to send instead.
    pub(super) fn authorize(&self, headers: &HeaderMap, uri: &Uri) -> Result<Caller, Refusal> {
        let caller = if self.cfg.release.is_stock() {
            self.authorize_stock(headers, uri)
        } else {
            self.authorize_dce(headers, uri)
        }?;
        let served = match caller {
            Caller::User => &self.stats.authenticated,
            Caller::Anonymous => &self.stats.anonymous,
        };
        served.fetch_add(1, Ordering::Relaxed);
        Ok(caller)
    }

    /// The DCE build: a Digest answer on every request.
    fn authorize_dce(&self, headers: &HeaderMap, uri: &Uri) -> Result<Caller, Refusal> {
        let wants_digest = headers
            .get("X-Requested-Auth")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("digest"))
            .unwrap_or(false);
        if !wants_digest {
            // A browser-style client: send it to the login page.
            return Err(self.redirect_to_login());
        }
        let Some(creds) = headers
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(Credentials::parse)
        else {
            return Err(self.challenge(false));
        };
        self.check_digest(&creds, uri)?;
        Ok(Caller::User)
    }

    /// A stock release: the filters, then the URL rules.
    fn authorize_stock(&self, headers: &HeaderMap, uri: &Uri) -> Result<Caller, Refusal> {
        let release = self.cfg.release;
        let authz = headers.get("Authorization").and_then(|v| v.to_str().ok());
        let caller = match authz {
            Some(h) => {
                if let Some(creds) = Credentials::parse(h) {
                    self.check_digest(&creds, uri)?;
                    Caller::User
                } else if release.basic_auth()
                    && h.trim_start().len() > 5
                    && h.trim_start()[..5].eq_ignore_ascii_case("basic")
                {
                    match basic_credentials(h) {
                        Some((u, p)) if u == self.cfg.user && p == self.cfg.password.expose() => {
                            Caller::User
                        }
                        _ => return Err(self.basic_challenge()),
                    }
                } else {
                    // No filter reads it (Basic before 3.0): the request goes on anonymously.
                    Caller::Anonymous
                }
            }
            None => Caller::Anonymous,
        };
        let path = uri.path();
        let open = ["/search/", "/usertracking/", "/info/"]
            .iter()
            .any(|p| path.starts_with(p))
            || path == "/login.html";
        if open {
            return Ok(caller);
        }
        match caller {
            Caller::Anonymous => {
                let requested = headers
                    .get("X-Requested-Auth")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                Err(match requested {
                    "Digest" => self.challenge(false),
                    "Basic" if release.basic_auth() => self.basic_challenge(),
                    _ => self.redirect_to_login(),
                })
            }
            Caller::User if !self.is_admin(caller) => {
                Err(plain_status(StatusCode::FORBIDDEN, "Forbidden"))
            }
            Caller::User => Ok(caller),
        }
    }

    /// Checks a Digest answer: user, realm, uri, response (under the configured algorithm),
    /// then the nonce (Spring's order: a wrong password gets a new challenge, not `stale`).
    fn check_digest(&self, creds: &Credentials, uri: &Uri) -> Result<(), Refusal> {
        let path_q = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        if creds.uri != path_q
            || creds.username != self.cfg.user
            || creds.realm != self.realm()
            || !creds.verify_with(self.cfg.algorithm, self.cfg.password.expose(), "GET")
        {
            return Err(self.challenge(false));
        }
        match self.nonce_verdict(&creds.nonce) {
            NonceVerdict::Good => {}
            NonceVerdict::Stale => return Err(self.challenge(true)),
            // The DCE build's server answered an unknown nonce as stale; Spring cannot tell a
            // stranger's nonce from a forged one and asks anew.
            NonceVerdict::Unknown => return Err(self.challenge(!self.cfg.release.is_stock())),
        }
        let nc = creds
            .nc
            .as_deref()
            .and_then(|n| u64::from_str_radix(n, 16).ok())
            .unwrap_or(0);
        self.stats
            .digest_answers
            .lock()
            .unwrap()
            .push(DigestAnswer {
                nonce: creds.nonce.clone(),
                nc,
            });
        Ok(())
    }

    fn nonce_verdict(&self, nonce: &str) -> NonceVerdict {
        let mut issued = self.nonces.issued.lock().unwrap();
        let Some(n) = issued.get_mut(nonce) else {
            return NonceVerdict::Unknown;
        };
        n.uses += 1;
        let limit = self.cfg.faults.nonce_uses;
        let worn = limit > 0 && n.uses > limit;
        let old = self.cfg.release.is_stock()
            && n.issued.elapsed().as_secs() >= self.cfg.release.nonce_validity_s();
        if worn || old {
            NonceVerdict::Stale
        } else {
            NonceVerdict::Good
        }
    }

    /// `/info/me.json`: the caller and its roles, in the release's shape (flat up to 1.x and
    /// at DCE, a `user` object from 2.0).
    pub(super) fn me_json(&self, caller: Caller) -> String {
        let (name, roles) = match caller {
            Caller::User => (self.cfg.user.clone(), self.cfg.roles.clone()),
            Caller::Anonymous => ("anonymous".to_string(), vec!["ROLE_ANONYMOUS".to_string()]),
        };
        let org = serde_json::json!({
            "id": "mh_default_org", "name": "Opencast Project", "adminRole": ADMIN_ROLE,
            "anonymousRole": "ROLE_ANONYMOUS", "properties": {}
        });
        let flat = !self.cfg.release.is_stock() || self.cfg.release.flat_session();
        let v = if flat {
            serde_json::json!({ "username": name, "roles": roles, "org": org })
        } else {
            serde_json::json!({
                "user": { "username": name, "name": name, "provider": "system" },
                "userRole": format!("ROLE_USER_{}", name.to_ascii_uppercase()),
                "roles": roles, "org": org
            })
        };
        v.to_string()
    }
}

fn unauthorized(www_authenticate: String) -> Refusal {
    Box::new(
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", www_authenticate)
            .body(Body::from("Unauthorized"))
            .unwrap(),
    )
}

fn plain_status(status: StatusCode, body: &'static str) -> Refusal {
    Box::new(
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap(),
    )
}
