//! A simulated Opencast engage + admin node that follows `shared/reference/opencast-api.md`.
//!
//! It serves `/usertracking/actions.json`, `/search/episode.json`, `/workflow/instances.json`
//! (12.0+: `/workflow/mediaPackage/{id}/instances.json`) and (4.0+) the scheduler's
//! `/recordings/{id}/technical.json`, each in the shapes of the release it plays, behind the
//! authentication of the Opencast it plays (`auth`: Digest on every request for the DCE build;
//! for a stock release anonymous reads of search and usertracking, Digest and Basic answered
//! anywhere, a login path, `/info/me.json`), with the JSON quirks of the real thing and
//! injectable faults. It powers the tests, the demo
//! and the benchmarks, so it renders pages straight from the deterministic generator in `data`.

mod auth;
pub mod data;
mod digest;
pub mod family;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use chrono_tz::Tz;

use crate::timefmt;
pub use auth::{Caller, DigestAnswer};
pub use data::{Data, DataConfig, SimAction};
pub use digest::SimAlgorithm;
pub use family::{Release, RowOrder, FAMILIES};

/// Faults to inject, each off at 0.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer 503 to every Nth data request.
    pub fail_every: u64,
    /// Cut the body of every Nth data request in half (valid HTTP, invalid JSON).
    pub truncate_every: u64,
    /// Sleep this long before each data response.
    pub delay: Duration,
    /// Start each actions page this many rows before the asked offset (pages overlap).
    pub overlap: u64,
    /// A nonce is good for this many requests, then answered with `stale=true`.
    pub nonce_uses: u64,
    /// Shuffle rows within a page (the server promises no order).
    pub shuffle: bool,
    /// Add this to every `total` (a count that disagrees with the rows served; negative: fewer
    /// than served, as after rows deleted mid-read, never below 0).
    pub total_extra: i64,
}

/// Everything the simulator needs to run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub data: DataConfig,
    pub user: String,
    pub password: crate::secret::Secret,
    pub realm: String,
    /// The server's zone: how it reads `start`/`end`.
    pub tz: Tz,
    pub faults: Faults,
    /// The Opencast played: the DCE build (the default) or a stock release.
    pub release: Release,
    /// The order of the rows of a stock server's actions queries.
    pub order: RowOrder,
    /// Usertracking's plugin is enabled (13+; off there by default in Opencast itself).
    pub usertracking_enabled: bool,
    /// The server's clock runs this many seconds ahead of this machine's (negative: behind).
    pub clock_offset_s: i64,
    /// Every Nth episode is private: only callers with `ROLE_ADMIN` find it (0: none).
    pub private_every: u64,
    /// The roles of the simulator's user (`ROLE_ADMIN` reads every episode and passes every
    /// URL rule).
    pub roles: Vec<String>,
    /// The `algorithm` the Digest challenges name (Opencast names none: MD5).
    pub algorithm: SimAlgorithm,
    /// The `qop` the Digest challenges offer (Opencast: `auth`).
    pub qop: String,
    /// `log.ip`, `log.user` and `log.session` turned on in `UserTrackingServiceImpl.cfg`, as a
    /// site may: 6.0+ otherwise writes `-omitted-` for all three (its defaults).
    pub log_all: bool,
}

impl SimConfig {
    pub fn new(data: DataConfig) -> SimConfig {
        SimConfig {
            data,
            user: "opencast_system_account".into(),
            password: "CHANGE_ME".into(),
            realm: "Opencast".into(),
            tz: Tz::UTC,
            faults: Faults::default(),
            release: Release::Dce,
            order: RowOrder::Created,
            usertracking_enabled: true,
            clock_offset_s: 0,
            private_every: 0,
            roles: vec![auth::ADMIN_ROLE.to_string(), "ROLE_USER".to_string()],
            algorithm: SimAlgorithm::default(),
            qop: "auth".into(),
            log_all: false,
        }
    }
}

/// Request counters, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct SimStats {
    pub actions_requests: AtomicU64,
    pub search_requests: AtomicU64,
    pub workflow_requests: AtomicU64,
    pub challenges: AtomicU64,
    pub redirects: AtomicU64,
    pub faults: AtomicU64,
    /// Requests served as the simulator's user, and as an anonymous caller.
    pub authenticated: AtomicU64,
    pub anonymous: AtomicU64,
    /// `/info/me.json` requests served.
    pub info_requests: AtomicU64,
    /// Every Digest answer accepted, in order.
    pub digest_answers: Mutex<Vec<DigestAnswer>>,
    /// The query string of every `/search/episode.json` request, in order.
    pub search_queries: Mutex<Vec<String>>,
    data_requests: AtomicU64,
}

struct SimState {
    cfg: SimConfig,
    data: Data,
    stats: Arc<SimStats>,
    nonces: auth::Nonces,
    episode_index: HashMap<String, u64>,
    /// Queries answered in a shuffled order so far (each gets an order of its own).
    shuffles: AtomicU64,
}

/// A running simulator; stops when dropped or on [`SimHandle::stop`].
pub struct SimHandle {
    pub addr: SocketAddr,
    pub stats: Arc<SimStats>,
    pub data: Data,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, to use as the engage and admin host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the simulator on `addr` (port 0 picks a free one).
pub async fn spawn(mut cfg: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    // A stock release on MySQL/MariaDB keeps `created` in whole seconds.
    cfg.data.whole_seconds |= cfg.release.is_stock();
    let data = Data::for_release(cfg.data.clone(), cfg.release, cfg.log_all);
    let episode_index = (0..cfg.data.episodes)
        .map(|k| (data.episode(k).mpid, k))
        .collect::<HashMap<_, _>>();
    let stats = Arc::new(SimStats::default());
    let state = Arc::new(SimState {
        cfg,
        data: data.clone(),
        stats: stats.clone(),
        nonces: auth::Nonces::default(),
        episode_index,
        shuffles: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/usertracking/actions.json", get(actions))
        .route("/search/episode.json", get(search))
        .route("/workflow/instances.json", get(workflows))
        .route(
            "/workflow/mediaPackage/{id}/instances.json",
            get(workflows_of_media_package),
        )
        .route("/recordings/{id}/technical.json", get(technical))
        .route(
            "/login.html",
            get(|| async { "<html>Opencast login</html>" }),
        )
        .route("/info/me.json", get(me))
        .route("/services/services.json", get(services))
        .fallback(unrouted)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            date_header,
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(SimHandle {
        addr,
        stats,
        data,
        stop: Some(tx),
        task: Some(task),
    })
}

type Resp = Response<Body>;
/// A refusal the handlers send instead of data (boxed: responses are large).
type Refusal = Box<Resp>;

fn plain(status: StatusCode, body: &str) -> Resp {
    Response::builder()
        .status(status)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn json(body: String) -> Resp {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// Every answer's `Date` header from the server's own clock (offset included), as Jetty sends
/// it: the whole second, floored. (hyper would otherwise send this machine's clock.)
async fn date_header(State(st): State<Arc<SimState>>, mut resp: Resp) -> Resp {
    let now = st.now_us().div_euclid(1_000_000) * 1_000_000;
    if let Some(t) = chrono::DateTime::from_timestamp_micros(now) {
        let v = t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(axum::http::header::DATE, v);
        }
    }
    resp
}

impl SimState {
    /// The server's clock: this machine's, moved by the configured offset.
    fn now_us(&self) -> i64 {
        timefmt::now_us() + self.cfg.clock_offset_s * 1_000_000
    }

    /// Applies delay / 503 / truncation faults around a data response.
    async fn faulty(&self, body: String) -> Resp {
        let f = &self.cfg.faults;
        let n = self.stats.data_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if !f.delay.is_zero() {
            tokio::time::sleep(f.delay).await;
        }
        if f.fail_every > 0 && n % f.fail_every == 0 {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        if f.truncate_every > 0 && n % f.truncate_every == 0 {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            let mut cut = body.len() / 2;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            return json(body[..cut].to_string());
        }
        json(body)
    }
}

fn param_i64(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, Refusal> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Box::new(plain(StatusCode::BAD_REQUEST, &format!("bad {k}")))),
    }
}

async fn actions(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let release = st.cfg.release;
    if release.usertracking_plugin() && !st.cfg.usertracking_enabled {
        // Opencast 13+ with `opencast-plugin-usertracking = off`: no such endpoint.
        return plain(StatusCode::NOT_FOUND, "<html><body>Not Found</body></html>");
    }
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    st.stats.actions_requests.fetch_add(1, Ordering::Relaxed);
    let (limit, offset) = match (param_i64(&q, "limit"), param_i64(&q, "offset")) {
        (Ok(l), Ok(o)) => (l.unwrap_or(0), o.unwrap_or(0)),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    if limit < 0 || offset < 0 {
        return plain(
            StatusCode::BAD_REQUEST,
            "limit and offset must not be negative",
        );
    }
    let limit = if limit == 0 { 10 } else { limit as u64 };
    let rows = if release.reads_window() {
        match window_rows(&st, &q) {
            Ok(r) => r,
            Err(r) => return *r,
        }
    } else {
        match stock_rows(&st, &q) {
            Ok(r) => r,
            Err(r) => return *r,
        }
    };
    let total = rows.len();
    let counted = (total as i64)
        .saturating_add(st.cfg.faults.total_extra)
        .max(0);
    // The overlap fault repeats rows of the previous page in front of this one.
    let from = (offset as u64)
        .saturating_sub(st.cfg.faults.overlap)
        .min(total);
    let to = (offset as u64).saturating_add(limit).min(total);
    let mut idx: Vec<u64> = (from..to).map(|k| rows.at(k)).collect();
    if st.cfg.faults.shuffle {
        idx.sort_by_key(|i| data::mix(offset as u64, *i));
    }
    let mut body = String::with_capacity(64 + idx.len() * 420);
    if release.string_attributes() {
        body.push_str(&format!(
            "{{\"actions\":{{\"total\":\"{counted}\",\"offset\":\"{offset}\",\"limit\":\"{limit}\""
        ));
    } else {
        body.push_str(&format!(
            "{{\"actions\":{{\"total\":{counted},\"offset\":{offset},\"limit\":{limit}"
        ));
    }
    // Jettison: no key for an empty list, a bare object for a single element.
    match idx.len() {
        0 => {}
        1 => {
            body.push_str(",\"action\":");
            st.data.write_action(&mut body, &st.data.action(idx[0]));
        }
        _ => {
            body.push_str(",\"action\":[");
            st.data.write_actions(&mut body, &idx);
            body.push(']');
        }
    }
    body.push_str("}}");
    st.faulty(body).await
}

/// The rows an actions query matches, in the order the server returns them.
enum Rows {
    /// A range of action indices, in index (= `created`, = id) order.
    Range(std::ops::Range<u64>),
    /// A range of action indices in a permuted order: `start + (a*k + b) mod len`.
    Permuted {
        range: std::ops::Range<u64>,
        a: u64,
        b: u64,
    },
    /// Chosen indices (a `type` filter).
    Listed(Vec<u64>),
}

impl Rows {
    fn len(&self) -> u64 {
        match self {
            Rows::Range(r) | Rows::Permuted { range: r, .. } => r.end - r.start,
            Rows::Listed(v) => v.len() as u64,
        }
    }

    /// The index of the `k`th row returned.
    fn at(&self, k: u64) -> u64 {
        match self {
            Rows::Range(r) => r.start + k,
            Rows::Permuted { range, a, b } => {
                let n = range.end - range.start;
                range.start + ((*a as u128 * k as u128 + *b as u128) % n as u128) as u64
            }
            Rows::Listed(v) => v[k as usize],
        }
    }
}

/// The DCE build: `start`/`end` in the server's zone (whole seconds, both inclusive).
fn window_rows(st: &SimState, q: &HashMap<String, String>) -> Result<Rows, Refusal> {
    let tz = st.cfg.tz;
    let parse = |k: &str| q.get(k).map(|v| timefmt::parse_compact(v, tz));
    match (parse("start"), parse("end")) {
        (Some(Ok(s)), Some(Ok(e))) => Ok(Rows::Range(st.data.window(s, e))),
        (None, None) => Ok(Rows::Range(0..st.cfg.data.actions)),
        _ => Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "start/end must be YYYYMMDDHHmmss",
        ))),
    }
}

/// A stock release, as `UserTrackingRestService.getUserActionsAsXml` reads the query: `id` with
/// `type`, `type` with `day`, `type`, `day`, or nothing (the whole table); `start`/`end` ignored.
fn stock_rows(st: &SimState, q: &HashMap<String, String>) -> Result<Rows, Refusal> {
    let nonempty = |k: &str| q.get(k).filter(|v| !v.is_empty());
    // A row exists once its `created` has come (the generated data may reach into the future).
    let now = st.now_us();
    let range = match nonempty("day") {
        Some(day) if nonempty("id").is_none() || nonempty("type").is_none() => {
            let (lo, hi) = day_bounds(st, day)?;
            st.data.between(lo, hi.min(now))
        }
        _ => st.data.between(i64::MIN, now),
    };
    let of_type = |i: &u64| nonempty("type").is_none_or(|t| st.data.action(*i).kind == t.as_str());
    let of_episode = |i: &u64| {
        nonempty("id").is_none_or(|id| nonempty("type").is_none() || st.data.action(*i).mpid == *id)
    };
    if nonempty("type").is_some() {
        return Ok(Rows::Listed(
            range.filter(|i| of_type(i) && of_episode(i)).collect(),
        ));
    }
    let n = range.end - range.start;
    match st.cfg.order {
        RowOrder::Created | RowOrder::Id => Ok(Rows::Range(range)),
        RowOrder::Shuffled if n > 1 => {
            // A new order for every query, as a planner that promises none may give.
            let k = st.shuffles.fetch_add(1, Ordering::Relaxed);
            let h = data::mix(st.cfg.data.seed ^ 0x5eed, k);
            let mut a = (h % n).max(1);
            while gcd(a, n) != 1 {
                a = a % n + 1;
            }
            Ok(Rows::Permuted {
                range,
                a,
                b: (h >> 20) % n,
            })
        }
        RowOrder::Shuffled => Ok(Rows::Range(range)),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What `getUserActionsByDay` asks the database for: `new GregorianCalendar()` (now, in the
/// server's zone) set to `year, month, date, 0, 0` and `…, 23, 59`, which keeps the clock's
/// seconds and milliseconds: `[D 00:00:SS.mmm, D 23:59:SS.mmm]`. A `day` Java's
/// `Integer.parseInt(day.substring(…))` cannot read is a server error, as in Opencast.
fn day_bounds(st: &SimState, day: &str) -> Result<(i64, i64), Refusal> {
    let bad = || {
        Box::new(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "java.lang.NumberFormatException",
        ))
    };
    let part = |a: usize, b: usize| -> Result<i64, Refusal> {
        day.get(a..b)
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (part(0, 4)?, part(4, 6)?, part(6, 8)?);
    // Java's calendar is lenient: month 13 is January of the next year, day 0 the last of the
    // month before.
    let first = chrono::NaiveDate::from_ymd_opt(
        (y + (m - 1).div_euclid(12)) as i32,
        ((m - 1).rem_euclid(12) + 1) as u32,
        1,
    )
    .ok_or_else(bad)?;
    let date = first
        .checked_add_signed(chrono::Duration::days(d - 1))
        .ok_or_else(bad)?;
    let day = crate::journal::days::DayRange::on(date, st.cfg.tz);
    let now = st.now_us();
    let frac = now.rem_euclid(60_000_000);
    let ss = (frac / 1_000_000) as u32;
    let ms = ((frac % 1_000_000) / 1_000) as u32;
    Ok(day.query_bounds(ss, ms))
}

fn one_or_many(mut items: Vec<serde_json::Value>) -> Option<serde_json::Value> {
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(serde_json::Value::Array(items)),
    }
}

async fn search(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let caller = match st.authorize(&headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    st.stats.search_requests.fetch_add(1, Ordering::Relaxed);
    st.stats
        .search_queries
        .lock()
        .unwrap()
        .push(uri.query().unwrap_or("").to_string());
    if st.cfg.release.search_v16() {
        return search16(&st, &q).await;
    }
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(20);
    let offset = q
        .get("offset")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let matching: Vec<u64> = if let Some(id) = q.get("id") {
        st.episode_index.get(id).copied().into_iter().collect()
    } else {
        // `createdFrom` is the DCE build's: no stock release reads it.
        let from = q
            .get("createdFrom")
            .filter(|_| !st.cfg.release.is_stock())
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.timestamp_micros())
            .unwrap_or(i64::MIN);
        let mut ks: Vec<u64> = (0..st.cfg.data.episodes)
            .filter(|k| st.data.episode(*k).created_us >= from)
            .collect();
        ks.sort_by_key(|k| st.data.episode(*k).created_us);
        // Up to 15.x: newest first unless asked otherwise (`withSort(DATE_CREATED, false)`),
        // an unknown sort ignored; the DCE build kept oldest first.
        let sort = q.get("sort").map(String::as_str).unwrap_or("");
        let newest_first = match sort {
            "DATE_CREATED_DESC" => true,
            "DATE_CREATED" => false,
            _ => st.cfg.release.is_stock(),
        };
        if newest_first {
            ks.reverse();
        }
        ks
    };
    // Results are filtered by the caller's roles (private episodes: ROLE_ADMIN only).
    let matching: Vec<u64> = matching
        .into_iter()
        .filter(|k| st.may_read(*k, caller))
        .collect();
    let total = matching.len();
    let page: Vec<serde_json::Value> = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|k| st.data.episode_json(*k))
        .collect();
    let mut res = if st.cfg.release.string_attributes() {
        serde_json::json!({
            "searchTime": "3", "total": total.to_string(), "limit": limit.to_string(),
            "offset": offset.to_string(), "query": "*:*"
        })
    } else {
        serde_json::json!({
            "searchTime": 3, "total": total, "limit": limit, "offset": offset, "query": "*:*"
        })
    };
    if let Some(r) = one_or_many(page) {
        res["result"] = r;
    }
    st.faulty(serde_json::json!({ "search-results": res }).to_string())
        .await
}

/// `/search/episode.json` of 16.0+ (`SearchRestService.getEpisodes`): `sort` only by title,
/// contributor, creator or modified (` asc`/` desc`), anything else a 400; `limit` at most 250
/// (for a caller that is not an admin), negative numbers a 400; no `createdFrom`.
async fn search16(st: &SimState, q: &HashMap<String, String>) -> Resp {
    let num = |k: &str| q.get(k).map_or(Some(0), |v| v.trim().parse::<i64>().ok());
    // NumberUtils.toInt: a value that is not a number is the default.
    let size = q
        .get("limit")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(20);
    let from = num("offset").unwrap_or(0);
    if size < 0 || from < 0 {
        return plain(
            StatusCode::BAD_REQUEST,
            "Limit and offset may not be negative.",
        );
    }
    if size > 250 {
        return plain(
            StatusCode::BAD_REQUEST,
            "Only admins are allowed to request more than 250 items.",
        );
    }
    let mut ks: Vec<u64> = match q.get("id").filter(|v| !v.is_empty()) {
        Some(id) => st.episode_index.get(id).copied().into_iter().collect(),
        None => (0..st.cfg.data.episodes).collect(),
    };
    if let Some(sort) = q.get("sort").filter(|v| !v.is_empty()) {
        let parts: Vec<&str> = sort.split_whitespace().collect();
        let valid = !parts.is_empty()
            && parts.len() <= 2
            && ["title", "contributor", "creator", "modified"].contains(&parts[0])
            && (parts.len() < 2 || ["asc", "desc"].contains(&parts[1]));
        if !valid {
            return plain(StatusCode::BAD_REQUEST, "Invalid sort parameter");
        }
        if parts[0] == "modified" {
            let modified = |k: u64| {
                if (k as usize) < data::REAL_EPISODES.len() {
                    st.data.episode(k).created_us
                } else {
                    st.data.episode_modified_us(k)
                }
            };
            ks.sort_by_key(|k| (modified(*k), *k));
            if parts.get(1) == Some(&"desc") {
                ks.reverse();
            }
        }
    }
    let total = ks.len();
    let result: Vec<serde_json::Value> = ks
        .iter()
        .skip(from as usize)
        .take(size as usize)
        .map(|k| st.data.episode_json16(*k))
        .collect();
    // Gson of `Map.of("offset", from, "total", total, "result", result, "limit", size)`.
    st.faulty(
        serde_json::json!({"offset": from, "total": total, "result": result, "limit": size})
            .to_string(),
    )
    .await
}

async fn workflows(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    // 12.0 removed this endpoint (commit 4cf50103f5, "Remove Solr from WorkflowService").
    if st.cfg.release.workflow_by_media_package() {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    st.stats.workflow_requests.fetch_add(1, Ordering::Relaxed);
    let wfs = q
        .get("mp")
        .and_then(|mp| st.episode_index.get(mp))
        .map(|k| st.data.workflows_json(*k))
        .unwrap_or_default();
    let mut body = if st.cfg.release.string_attributes() {
        serde_json::json!({
            "totalCount": wfs.len().to_string(), "startPage": "0", "count": wfs.len().to_string()
        })
    } else {
        serde_json::json!({"totalCount": wfs.len(), "startPage": 0, "count": wfs.len()})
    };
    if let Some(w) = one_or_many(wfs) {
        body["workflow"] = w;
    }
    st.faulty(serde_json::json!({ "workflows": body }).to_string())
        .await
}

/// `/info/me.json`: who the request ran as.
async fn me(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Resp {
    let caller = match st.authorize(&headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    st.stats.info_requests.fetch_add(1, Ordering::Relaxed);
    json(st.me_json(caller))
}

/// The service registry's list, the path the harvester asks its Digest challenge from: only
/// its access rule matters here.
async fn services(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Resp {
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    json(r#"{"services":{}}"#.to_string())
}

/// Any other path: Opencast's security filter runs before it finds there is nothing there.
async fn unrouted(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Resp {
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    plain(StatusCode::NOT_FOUND, "Not Found")
}

/// `/workflow/mediaPackage/{id}/instances.json` (12.0+): every workflow of the media package,
/// no filter, no total (`WorkflowSetImpl`).
async fn workflows_of_media_package(
    State(st): State<Arc<SimState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Resp {
    if !st.cfg.release.workflow_by_media_package() {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    st.stats.workflow_requests.fetch_add(1, Ordering::Relaxed);
    let wfs = st
        .episode_index
        .get(&id)
        .map(|k| st.data.workflows_json(*k))
        .unwrap_or_default();
    let mut body = serde_json::json!({});
    if let Some(w) = one_or_many(wfs) {
        body["workflow"] = w;
    }
    st.faulty(serde_json::json!({ "workflows": body }).to_string())
        .await
}

/// `/recordings/{id}/technical.json` (4.0+): the scheduler's times of a scheduled event, a
/// 404 for any other (and on releases that do not have the endpoint).
async fn technical(
    State(st): State<Arc<SimState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Resp {
    let has_endpoint = st.cfg.release.is_stock() && !st.cfg.release.capture_operation();
    if !has_endpoint {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Err(r) = st.authorize(&headers, &uri) {
        return *r;
    }
    match st
        .episode_index
        .get(&id)
        .and_then(|k| st.data.technical_json(*k))
    {
        Some(t) => st.faulty(t.to_string()).await,
        None => plain(StatusCode::NOT_FOUND, "Not Found"),
    }
}
