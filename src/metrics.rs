//! Figures of a running harvester, rendered for `/metrics` in Prometheus' text format (0.0.4)
//! by `prometheus-client`, the Prometheus project's Rust client (names, label escaping,
//! histograms).
//!
//! Counters are atomics bumped by the harvest and forward loops; latencies go into
//! [`Histogram`]s whose observation is two relaxed atomic adds (the Opencast client observes
//! each request, a sink each batch it is handed; never one per action). Sink lag, journal size,
//! disk space and checkpoint lag are read when scraped, so they are always current (sink lag
//! and the record count are left out while the journal is closed for a reopen; the file and
//! disk figures are not, since a full disk is when they matter). Nothing here holds personal
//! data or a credential: error texts shown on `/healthz` lose any user info of a URL they
//! quote, and label values are sink and cursor names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::journal::Journal;
use crate::opencast::client::ClientStats;

/// The `Content-Type` of the `/metrics` answer.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the latency histograms' buckets (then `+Inf`): from a 5 ms
/// answer on the same network to the two minutes past which something is surely wrong.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`]. Observing is two relaxed atomic adds, never a
/// lock (prometheus-client's own histogram takes a mutex per observation); clones share the
/// figures. `_count` is the sum of the buckets, so it always equals the `+Inf` bucket.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram(Arc::new(HistogramInner {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }))
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observed times, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The label of a per-sink series: `sink="…"`.
type SinkLabel = [(&'static str, String); 1];

fn sink_label(sink: &str) -> SinkLabel {
    [("sink", sink.to_string())]
}

/// No checkpoint known (yet).
const NO_CHECKPOINT: i64 = i64::MIN;

/// The figures of one `harvester run` process.
pub struct Metrics {
    opencast: Arc<ClientStats>,
    /// The live figures, registered once; the ones read when scraped are added per answer.
    registry: Registry,
    actions_harvested: Counter,
    duplicates_skipped: Counter,
    dead_letters: Counter,
    harvest_runs: Counter,
    harvest_errors: Counter,
    s3_errors: Counter,
    journal_faults: Counter,
    journal_reopens: Counter,
    /// Stock Opencast: windows holding a day's first instant, which no `day` query reaches.
    unreachable_windows: Counter,
    /// Stock Opencast: days read again because the quick read did not add up.
    day_rereads: Counter,
    /// Per cursor (`stdout`, `sqs:QUEUE`, `es:PATTERN`); connection failures per kind.
    forwarded: Family<SinkLabel, Counter>,
    sink_errors: Family<SinkLabel, Counter>,
    /// Per kind of sink (`stdout`, `sqs`, `es`).
    sink_dead_letters: Family<SinkLabel, Counter>,
    sink_send: Family<SinkLabel, Histogram>,
    last_harvest_ok: AtomicBool,
    /// When a harvest cycle last succeeded, UTC microseconds (0: not yet).
    last_success_us: AtomicI64,
    /// The journal's checkpoint as last read, UTC microseconds ([`NO_CHECKPOINT`]: none).
    checkpoint_us: AtomicI64,
    /// The journal file, for its size and its file system's free space (known even while the
    /// journal is closed).
    journal_path: OnceLock<PathBuf>,
    last_error: Mutex<Option<String>>,
    /// Why the journal is closed (`None` while it is open and usable).
    journal_down: Mutex<Option<String>>,
    /// The first cause of the journal's trouble (a full disk), kept until a harvest succeeds
    /// again: the errors that follow it ("must be closed and opened again") never replace it.
    journal_cause: Mutex<Option<String>>,
    /// Whether a harvest cycle is running, and the Opencast answers counted and the time when
    /// it last made progress (a cycle began, Opencast answered): a harvest that stops making
    /// progress for [`Metrics::set_stall_after`] shows on /healthz.
    cycle_running: AtomicBool,
    progress: Mutex<(u64, std::time::Instant)>,
    stall_after: OnceLock<std::time::Duration>,
    /// GeoIP / user-agent enrichment, when on (its figures are rendered below).
    enrichment: OnceLock<Arc<crate::enrich::Enricher>>,
}

impl Metrics {
    pub fn new(opencast: Arc<ClientStats>) -> Metrics {
        let mut m = Metrics {
            opencast,
            registry: Registry::default(),
            actions_harvested: Counter::default(),
            duplicates_skipped: Counter::default(),
            dead_letters: Counter::default(),
            harvest_runs: Counter::default(),
            harvest_errors: Counter::default(),
            s3_errors: Counter::default(),
            journal_faults: Counter::default(),
            journal_reopens: Counter::default(),
            unreachable_windows: Counter::default(),
            day_rereads: Counter::default(),
            forwarded: Family::default(),
            sink_errors: Family::default(),
            sink_dead_letters: Family::default(),
            sink_send: Family::default(),
            last_harvest_ok: AtomicBool::new(true),
            last_success_us: AtomicI64::new(0),
            checkpoint_us: AtomicI64::new(NO_CHECKPOINT),
            journal_path: OnceLock::new(),
            last_error: Mutex::new(None),
            journal_down: Mutex::new(None),
            journal_cause: Mutex::new(None),
            cycle_running: AtomicBool::new(false),
            progress: Mutex::new((0, std::time::Instant::now())),
            stall_after: OnceLock::new(),
            enrichment: OnceLock::new(),
        };
        m.register_live();
        m
    }

    /// Registers the live figures (counters and histograms bumped as work is done) once.
    fn register_live(&mut self) {
        // prometheus-client adds `_total` to a counter's name and a full stop to its help.
        let r = &mut self.registry;
        for (name, help, c) in [
            (
                "harvester_actions_harvested",
                "New actions journaled",
                &self.actions_harvested,
            ),
            (
                "harvester_duplicates_skipped",
                "Actions seen again and skipped",
                &self.duplicates_skipped,
            ),
            (
                "harvester_dead_letters",
                "Actions quarantined as dead letters",
                &self.dead_letters,
            ),
            (
                "harvester_harvest_runs",
                "Harvest cycles",
                &self.harvest_runs,
            ),
            (
                "harvester_errors",
                "Harvest cycles that failed",
                &self.harvest_errors,
            ),
            (
                "harvester_s3_errors",
                "Failed checkpoint writes to S3",
                &self.s3_errors,
            ),
            (
                "harvester_journal_faults",
                "I/O errors that closed the journal (a full disk, say)",
                &self.journal_faults,
            ),
            (
                "harvester_journal_reopen_attempts",
                "Attempts to open the journal again after an I/O error",
                &self.journal_reopens,
            ),
            (
                "harvester_stock_unreachable_windows",
                "Windows holding a day's first instant (00:00:00 server time), which stock \
                 Opencast's day query cannot read",
                &self.unreachable_windows,
            ),
            (
                "harvester_stock_day_rereads",
                "Stock Opencast: days read again from the first row because a read did not add up",
                &self.day_rereads,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "harvester_opencast_request_seconds",
            "Time of answered Opencast requests (page fetches and episode look-ups, each attempt)",
            self.opencast.latency.clone(),
        );
        r.register(
            "harvester_forwarded",
            "Records a sink acknowledged",
            self.forwarded.clone(),
        );
        r.register(
            "harvester_sink_errors",
            "Failed forwarding rounds",
            self.sink_errors.clone(),
        );
        r.register(
            "harvester_sink_dead_letters",
            "Records a sink refused for good, kept in the journal's dead-letter table",
            self.sink_dead_letters.clone(),
        );
        r.register(
            "harvester_sink_send_seconds",
            "Time a sink took to take one batch of up to 1,000 journaled records, retries \
             included (one bulk request for Elasticsearch, up to 100 SendMessageBatch calls for \
             SQS, one write for stdout)",
            self.sink_send.clone(),
        );
    }

    /// The enrichment in use (its figures are shown from now on); a second call is ignored.
    pub fn set_enrichment(&self, e: Arc<crate::enrich::Enricher>) {
        let _ = self.enrichment.set(e);
    }

    /// A failed checkpoint write to S3.
    pub fn s3_error(&self) {
        self.s3_errors.inc();
    }

    /// An I/O error closed the journal.
    pub fn journal_fault(&self) {
        self.journal_faults.inc();
    }

    /// An attempt to open the journal again.
    pub fn journal_reopen_attempt(&self) {
        self.journal_reopens.inc();
    }

    /// Where the journal lives (its size and free space are shown even while it is closed).
    pub fn set_journal_path(&self, path: &Path) {
        let _ = self.journal_path.set(path.to_path_buf());
    }

    /// Adds up what one harvest cycle did.
    pub fn count_harvest(&self, s: &crate::harvest::HarvestSummary) {
        self.actions_harvested.inc_by(s.actions);
        self.duplicates_skipped.inc_by(s.duplicates);
        self.dead_letters.inc_by(s.dead_letters);
        self.unreachable_windows.inc_by(s.unreachable_windows);
        self.day_rereads.inc_by(s.day_rereads);
    }

    pub fn harvest_ok(&self) {
        *lock(&self.journal_cause) = None;
        self.harvest_runs.inc();
        self.last_harvest_ok.store(true, Ordering::Relaxed);
        self.last_success_us
            .store(crate::timefmt::now_us(), Ordering::Relaxed);
    }

    pub fn harvest_failed(&self, e: &str) {
        self.harvest_runs.inc();
        self.harvest_errors.inc();
        self.last_harvest_ok.store(false, Ordering::Relaxed);
        *lock(&self.last_error) = Some(public_text(e));
    }

    /// The checkpoint the journal holds now (`last_action_us`), or `None`.
    pub fn checkpoint(&self, last_action_us: Option<i64>) {
        self.checkpoint_us
            .store(last_action_us.unwrap_or(NO_CHECKPOINT), Ordering::Relaxed);
    }

    /// A harvest cycle met a journal I/O error; `follow_up` when the error only says an earlier
    /// one poisoned the handle (the first cause, when known, is shown instead).
    pub fn harvest_failed_journal(&self, why: &str, follow_up: bool) {
        let shown = self.with_cause(why, follow_up);
        self.harvest_failed(&shown);
    }

    /// The journal is closed (after an I/O error, or while it cannot be opened): why. While it
    /// stays down, the first cause is named first whatever the later attempts say.
    pub fn journal_down(&self, why: &str, follow_up: bool) {
        let shown = self.with_cause(why, follow_up);
        *lock(&self.journal_down) = Some(shown);
    }

    /// `why`, after the first cause of the journal's trouble (remembered from now on if this is
    /// it).
    fn with_cause(&self, why: &str, follow_up: bool) -> String {
        let why = public_text(why);
        let mut cause = lock(&self.journal_cause);
        if cause.is_none() && !follow_up {
            *cause = Some(why.clone());
        }
        match cause.as_deref() {
            Some(c) if c == why => why,
            Some(c) if follow_up => c.to_string(),
            Some(c) => format!("{c} (and since then: {why})"),
            None => why,
        }
    }

    /// How long a harvest cycle may go without progress before /healthz says it is stuck.
    pub fn set_stall_after(&self, d: std::time::Duration) {
        let _ = self.stall_after.set(d);
    }

    /// A harvest cycle begins (`true`) or ends (`false`).
    pub fn cycle_running(&self, running: bool) {
        if running {
            let answers = self.opencast.requests.load(Ordering::Relaxed);
            *lock(&self.progress) = (answers, std::time::Instant::now());
        }
        self.cycle_running.store(running, Ordering::Relaxed);
    }

    /// How long the running harvest cycle has gone without progress, when past the limit.
    fn stalled_for(&self) -> Option<std::time::Duration> {
        let limit = *self.stall_after.get()?;
        if !self.cycle_running.load(Ordering::Relaxed) {
            return None;
        }
        let answers = self.opencast.requests.load(Ordering::Relaxed);
        let mut p = lock(&self.progress);
        if answers != p.0 {
            *p = (answers, std::time::Instant::now());
        }
        let idle = p.1.elapsed();
        (idle > limit).then_some(idle)
    }

    /// The journal is open again.
    pub fn journal_up(&self) {
        *lock(&self.journal_down) = None;
    }

    /// `n` records acknowledged by the sink of `cursor`.
    pub fn forwarded(&self, cursor: &str, n: u64) {
        self.forwarded.get_or_create(&sink_label(cursor)).inc_by(n);
    }

    pub fn sink_error(&self, sink: &str) {
        self.sink_errors.get_or_create(&sink_label(sink)).inc();
    }

    /// `n` records the sink of kind `sink` (`sqs`, `es`, `stdout`) stored as dead letters; with
    /// 0 the series is shown from the start.
    pub fn sink_dead_letters(&self, sink: &str, n: u64) {
        self.sink_dead_letters
            .get_or_create(&sink_label(sink))
            .inc_by(n);
    }

    /// The send-time histogram of the sink of kind `sink`, to observe without a look-up.
    pub fn sink_send_histogram(&self, sink: &str) -> Histogram {
        self.sink_send.get_or_create_owned(&sink_label(sink))
    }

    /// `/healthz`: healthy unless the journal is closed or the last harvest failed (then why).
    pub fn health(&self) -> Result<(), String> {
        if let Some(why) = lock(&self.journal_down).clone() {
            return Err(format!("journal unavailable: {why}"));
        }
        if let Some(idle) = self.stalled_for() {
            return Err(format!(
                "the harvest is stuck: its cycle has made no progress (no answer from Opencast, \
                 no cycle finished) for {} s, more than HARVEST_STALL_AFTER",
                idle.as_secs()
            ));
        }
        if self.last_harvest_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(format!(
                "last harvest failed: {}",
                lock(&self.last_error).clone().unwrap_or_default()
            ))
        }
    }

    /// The Prometheus text exposition; `journal` is `None` while it is closed for a reopen.
    pub fn render(&self, journal: Option<&Journal>) -> String {
        // The figures read now go into a registry of their own, made for this answer.
        let mut now = Registry::default();
        self.render_opencast(&mut now);
        self.render_health(&mut now, journal);
        self.render_checkpoint(&mut now, journal);
        self.render_disk(&mut now);
        if let Some(j) = journal {
            render_journal(&mut now, j);
        }
        if let Some(e) = self.enrichment.get() {
            render_enrichment(&mut now, e);
        }
        let mut o = String::new();
        let enc = prometheus_client::encoding::prometheus_text::encode;
        // Writing to a String cannot fail.
        let _ = enc(&mut o, &self.registry);
        let _ = enc(&mut o, &now);
        o
    }

    /// Requests answered and retried, from the Opencast client's own counters.
    fn render_opencast(&self, r: &mut Registry) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            r,
            "harvester_opencast_requests",
            "Opencast requests answered",
            get(&self.opencast.requests),
        );
        counter(
            r,
            "harvester_opencast_retries",
            "Opencast requests retried",
            get(&self.opencast.retries),
        );
    }

    /// Whether the journal is usable and when a harvest last succeeded.
    fn render_health(&self, r: &mut Registry, journal: Option<&Journal>) {
        let healthy = lock(&self.journal_down).is_none() && journal.is_some();
        gauge(
            r,
            "harvester_journal_healthy",
            "1 while the journal is open and writable, 0 while it is being reopened",
            healthy as u64,
        );
        gauge(
            r,
            "harvester_last_success_timestamp_seconds",
            "When a harvest cycle last succeeded, in seconds since the epoch (0: not yet)",
            self.last_success_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
    }

    /// The checkpoint and how far behind now it is (read from the journal when it is open,
    /// else the last value read).
    fn render_checkpoint(&self, r: &mut Registry, journal: Option<&Journal>) {
        if let Some(j) = journal {
            if let Ok(cp) = j.checkpoint() {
                self.checkpoint(cp.map(|c| c.last_action_us));
            }
        }
        let cp = self.checkpoint_us.load(Ordering::Relaxed);
        if cp == NO_CHECKPOINT {
            return;
        }
        gauge(
            r,
            "harvester_checkpoint_timestamp_seconds",
            "The checkpoint: creation time of the newest harvested action, in seconds since \
             the epoch",
            cp as f64 / 1e6,
        );
        gauge(
            r,
            "harvester_checkpoint_lag_seconds",
            "Now minus the checkpoint (it also grows while Opencast has no new actions)",
            crate::timefmt::now_us().saturating_sub(cp) as f64 / 1e6,
        );
    }

    /// The journal file's size and its file system's space, also while the journal is closed.
    fn render_disk(&self, r: &mut Registry) {
        let Some(path) = self.journal_path.get() else {
            return;
        };
        if let Ok(m) = std::fs::metadata(path) {
            gauge(
                r,
                "harvester_journal_bytes",
                "Size of the journal file",
                m.len(),
            );
        }
        if let Some(d) = disk_space(path) {
            gauge(
                r,
                "harvester_journal_disk_free_bytes",
                "Space the journal may still take on its file system (statvfs f_bavail)",
                d.free,
            );
            gauge(
                r,
                "harvester_journal_disk_total_bytes",
                "Size of the journal's file system",
                d.total,
            );
        }
    }
}

/// A counter read when scraped (prometheus-client adds `_total` to its name).
fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    r.register(name, help, ConstCounter::new(v));
}

/// A gauge read when scraped.
fn gauge<N>(r: &mut Registry, name: &str, help: &str, v: N)
where
    ConstGauge<N>: EncodeMetric + std::fmt::Debug + Send + Sync + 'static,
{
    r.register(name, help, ConstGauge::new(v));
}

/// Each sink's lag (replays left out) and the records ever journaled.
fn render_journal(r: &mut Registry, j: &Journal) {
    let next = j.next_seq().unwrap_or(0);
    let lag: Family<SinkLabel, Gauge> = Family::default();
    for (s, c) in j.cursors().unwrap_or_default() {
        if !s.starts_with("replay:") {
            let v = i64::try_from(next.saturating_sub(c)).unwrap_or(i64::MAX);
            lag.get_or_create(&sink_label(&s)).set(v);
        }
    }
    r.register(
        "harvester_sink_lag",
        "Journaled records a sink has not acknowledged",
        lag,
    );
    counter(
        r,
        "harvester_journal_records",
        "Records ever journaled",
        next,
    );
}

/// Enrichment (issue 11): records located / parsed, and the caches' hits and misses.
fn render_enrichment(r: &mut Registry, e: &crate::enrich::Enricher) {
    let f = e.stats().figures();
    for (name, help, v) in [
        (
            "harvester_geoip_located",
            "Records given a geoip object",
            f.located,
        ),
        (
            "harvester_geoip_not_located",
            "Records whose address was private, not an address or unknown to the database",
            f.not_located,
        ),
        (
            "harvester_useragent_parsed",
            "Records given a ua object",
            f.ua_parsed,
        ),
        (
            "harvester_useragent_missing",
            "Records without a user agent to parse",
            f.ua_missing,
        ),
        (
            "harvester_geoip_cache_hits",
            "Address look-ups answered by a cache",
            f.ip_cache_hits,
        ),
        (
            "harvester_geoip_cache_misses",
            "Address look-ups that read the database",
            f.ip_cache_misses,
        ),
        (
            "harvester_useragent_cache_hits",
            "User agents answered by a cache",
            f.ua_cache_hits,
        ),
        (
            "harvester_useragent_cache_misses",
            "User agents parsed",
            f.ua_cache_misses,
        ),
    ] {
        counter(r, name, help, v);
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the figures stay usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Free and total bytes of a file system.
struct DiskSpace {
    free: u64,
    total: u64,
}

/// The space of the file system holding `path` (its directory, so that it works before the
/// file exists), through statvfs(3): `free` is what an unprivileged writer may still take
/// (`f_bavail`, as `df` shows it).
// The statvfs fields are u64 here but narrower on other targets.
#[allow(clippy::unnecessary_cast)]
fn disk_space(path: &Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by statvfs before it is read,
    // which happens only when the call succeeded.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    let frsize = st.f_frsize as u64;
    Some(DiskSpace {
        free: (st.f_bavail as u64).saturating_mul(frsize),
        total: (st.f_blocks as u64).saturating_mul(frsize),
    })
}

/// An error text fit for the public `/healthz`: no URL user info, no quoted value (a decoding
/// error may quote a field of a record), at most 500 characters.
pub fn public_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in redact_userinfo(text).chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…");
            }
            quoted = !quoted;
            if !quoted {
                out.push('"');
            }
        } else if !quoted {
            out.push(c);
        }
    }
    if quoted {
        out.push('"');
    }
    if let Some((i, _)) = out.char_indices().nth(500) {
        out.truncate(i);
        out.push('…');
    }
    out
}

/// `text` with the user info of every URL in it (`scheme://user:pass@host`) replaced by `***`:
/// an error that quotes a URL must not carry its credentials to a log or an endpoint.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == '"'
                    || c == '\''
                    || c == '>'
                    || c == ')'
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19 point 16: a fault's follow-up error ("had an I/O error earlier and must be
    /// closed and opened again") replaced its cause on /healthz, depending on which task
    /// raised first. The first cause stays named while the journal is down and until a harvest
    /// succeeds again.
    #[test]
    fn the_first_cause_of_a_journal_fault_stays_named() {
        let m = Metrics::new(Arc::new(ClientStats::default()));
        let full = "I/O error on journal /d/j.redb: No space left on device";
        let again =
            "journal /d/j.redb had an I/O error earlier and must be closed and opened again";
        // The follow-up first (another task raised it first), then the cause.
        m.journal_down(again, true);
        m.journal_down(full, false);
        m.journal_down(again, true);
        let h = m.health().unwrap_err();
        assert!(h.contains("No space left on device"), "{h}");
        // A later attempt failing otherwise is told after the first cause.
        m.journal_down("cannot open journal /d/j.redb: Permission denied", false);
        let h = m.health().unwrap_err();
        assert!(
            h.contains("No space left on device") && h.contains("Permission denied"),
            "{h}"
        );
        // Up again, but the harvest failed on the same handle: still the cause.
        m.journal_up();
        m.harvest_failed_journal(again, true);
        let h = m.health().unwrap_err();
        assert!(h.contains("No space left on device"), "{h}");
        // A harvest succeeds: forgotten.
        m.harvest_ok();
        assert!(m.health().is_ok());
        m.journal_down(again, true);
        assert!(!m.health().unwrap_err().contains("No space"));
    }

    #[test]
    fn a_cycle_without_progress_shows_as_stuck() {
        let stats = Arc::new(ClientStats::default());
        let m = Metrics::new(stats.clone());
        m.set_stall_after(std::time::Duration::from_millis(50));
        m.cycle_running(true);
        assert!(m.health().is_ok());
        std::thread::sleep(std::time::Duration::from_millis(80));
        let h = m.health().unwrap_err();
        assert!(
            h.contains("stuck") && h.contains("HARVEST_STALL_AFTER"),
            "{h}"
        );
        // An answer from Opencast is progress.
        stats.requests.fetch_add(1, Ordering::Relaxed);
        assert!(m.health().is_ok());
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert!(m.health().is_err());
        // Between cycles nothing is stuck.
        m.cycle_running(false);
        assert!(m.health().is_ok());
    }

    #[test]
    fn health_texts_lose_url_credentials() {
        assert_eq!(
            redact_userinfo("GET http://admin:PASS@host:8080/x failed; see https://h/y"),
            "GET http://***@host:8080/x failed; see https://h/y"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
        assert_eq!(
            public_text(r#"invalid type: string "10.1.2.3 student42", expected i64"#),
            r#"invalid type: string "…", expected i64"#
        );
        let m = Metrics::new(Arc::new(ClientStats::default()));
        m.harvest_failed("error sending request for url (http://u:S3CRET@h/)");
        let e = m.health().unwrap_err();
        assert!(
            !e.contains("S3CRET") && e.contains("last harvest failed"),
            "{e}"
        );
        m.journal_down(
            "I/O error on journal /d/j.redb: No space left on device",
            false,
        );
        assert!(m
            .health()
            .unwrap_err()
            .starts_with("journal unavailable: I/O error on journal /d/j.redb"));
        assert!(m.render(None).contains("harvester_journal_healthy 0"));
        m.journal_up();
        assert!(m.health().unwrap_err().starts_with("last harvest failed"));
        m.harvest_ok();
        assert!(m.health().is_ok());
    }

    #[test]
    fn exposition_keeps_the_names_and_adds_the_alerting_figures() {
        let stats = Arc::new(ClientStats::default());
        stats.requests.fetch_add(2, Ordering::Relaxed);
        stats.latency.observe(Duration::from_millis(30));
        stats.latency.observe(Duration::from_secs(200));
        let m = Metrics::new(stats);
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = dir.path().join("j.redb");
        std::fs::write(&journal, [0u8; 1234]).expect("written");
        m.set_journal_path(&journal);
        m.harvest_ok();
        m.checkpoint(Some(crate::timefmt::now_us() - 90_000_000));
        m.forwarded("sqs:q\"x", 5);
        m.sink_error("es");
        m.sink_dead_letters("sqs", 2);
        m.sink_dead_letters("stdout", 0);
        m.sink_send_histogram("stdout")
            .observe(Duration::from_millis(1));
        let t = m.render(None);
        for want in [
            "# TYPE harvester_actions_harvested_total counter\nharvester_actions_harvested_total 0\n",
            "harvester_harvest_runs_total 1\n",
            "harvester_errors_total 0\n",
            "harvester_opencast_requests_total 2\n",
            "# TYPE harvester_opencast_request_seconds histogram\n",
            "harvester_opencast_request_seconds_bucket{le=\"0.025\"} 0\n",
            "harvester_opencast_request_seconds_bucket{le=\"0.05\"} 1\n",
            "harvester_opencast_request_seconds_bucket{le=\"120\"} 1\n",
            "harvester_opencast_request_seconds_bucket{le=\"+Inf\"} 2\n",
            "harvester_opencast_request_seconds_sum 200.03\n",
            "harvester_opencast_request_seconds_count 2\n",
            // Label values are escaped.
            "harvester_forwarded_total{sink=\"sqs:q\\\"x\"} 5\n",
            "harvester_sink_errors_total{sink=\"es\"} 1\n",
            "harvester_sink_dead_letters_total{sink=\"sqs\"} 2\n",
            "harvester_sink_dead_letters_total{sink=\"stdout\"} 0\n",
            "harvester_sink_send_seconds_bucket{sink=\"stdout\",le=\"0.005\"} 1\n",
            "harvester_sink_send_seconds_count{sink=\"stdout\"} 1\n",
            "harvester_journal_healthy 0\n",
            "harvester_journal_bytes 1234\n",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
        assert!(!t.contains("_total_total"), "{t}");
        let value = |name: &str| -> f64 {
            t.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from:\n{t}"))
        };
        let lag = value("harvester_checkpoint_lag_seconds");
        assert!((90.0..120.0).contains(&lag), "{lag}");
        let success = value("harvester_last_success_timestamp_seconds");
        assert!((crate::timefmt::now_us() as f64 / 1e6 - success).abs() < 60.0);
        let (free, total) = (
            value("harvester_journal_disk_free_bytes"),
            value("harvester_journal_disk_total_bytes"),
        );
        assert!(total > 0.0 && free <= total, "{free} {total}");
        // Without a journal, the figures read from it are left out.
        assert!(!t.contains("harvester_sink_lag"), "{t}");
    }
}
