//! Figures of a running harvester, rendered in Prometheus' text format for `/metrics`.
//!
//! Counters are plain atomics bumped by the harvest and forward loops; sink lag and journal size
//! are read from the journal when scraped, so they are always current.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::journal::Journal;
use crate::opencast::client::ClientStats;

/// Per-sink counters.
#[derive(Debug, Default, Clone, Copy)]
struct SinkCounters {
    forwarded: u64,
    errors: u64,
}

/// The counters of one `harvester run` process.
pub struct Metrics {
    journal: Arc<Journal>,
    opencast: Arc<ClientStats>,
    pub actions_harvested: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub dead_letters: AtomicU64,
    pub harvest_runs: AtomicU64,
    pub harvest_errors: AtomicU64,
    pub s3_errors: AtomicU64,
    last_harvest_ok: AtomicBool,
    last_error: Mutex<Option<String>>,
    sinks: Mutex<BTreeMap<String, SinkCounters>>,
    /// GeoIP / user-agent enrichment, when on (its figures are rendered below).
    pub enrichment: std::sync::OnceLock<Arc<crate::enrich::Enricher>>,
}

impl Metrics {
    pub fn new(journal: Arc<Journal>, opencast: Arc<ClientStats>) -> Metrics {
        Metrics {
            journal,
            opencast,
            actions_harvested: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            harvest_runs: AtomicU64::new(0),
            harvest_errors: AtomicU64::new(0),
            s3_errors: AtomicU64::new(0),
            last_harvest_ok: AtomicBool::new(true),
            last_error: Mutex::new(None),
            sinks: Mutex::new(BTreeMap::new()),
            enrichment: std::sync::OnceLock::new(),
        }
    }

    pub fn harvest_ok(&self) {
        self.harvest_runs.fetch_add(1, Ordering::Relaxed);
        self.last_harvest_ok.store(true, Ordering::Relaxed);
    }

    pub fn harvest_failed(&self, e: &str) {
        self.harvest_runs.fetch_add(1, Ordering::Relaxed);
        self.harvest_errors.fetch_add(1, Ordering::Relaxed);
        self.last_harvest_ok.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap() = Some(e.to_string());
    }

    pub fn forwarded(&self, sink: &str, n: u64) {
        self.sinks
            .lock()
            .unwrap()
            .entry(sink.to_string())
            .or_default()
            .forwarded += n;
    }

    pub fn sink_error(&self, sink: &str) {
        self.sinks
            .lock()
            .unwrap()
            .entry(sink.to_string())
            .or_default()
            .errors += 1;
    }

    /// `/healthz`: healthy unless the last harvest failed (then the error).
    pub fn health(&self) -> Result<(), String> {
        if self.last_harvest_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self.last_error.lock().unwrap().clone().unwrap_or_default())
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "harvester_actions_harvested_total",
            "New actions journaled.",
            get(&self.actions_harvested),
        );
        counter(
            "harvester_duplicates_skipped_total",
            "Actions seen again and skipped.",
            get(&self.duplicates_skipped),
        );
        counter(
            "harvester_dead_letters_total",
            "Actions quarantined as dead letters.",
            get(&self.dead_letters),
        );
        counter(
            "harvester_harvest_runs_total",
            "Harvest cycles.",
            get(&self.harvest_runs),
        );
        counter(
            "harvester_errors_total",
            "Harvest cycles that failed.",
            get(&self.harvest_errors),
        );
        counter(
            "harvester_s3_errors_total",
            "Failed checkpoint writes to S3.",
            get(&self.s3_errors),
        );
        counter(
            "harvester_opencast_requests_total",
            "Opencast requests answered.",
            get(&self.opencast.requests),
        );
        counter(
            "harvester_opencast_retries_total",
            "Opencast requests retried.",
            get(&self.opencast.retries),
        );
        let _ = writeln!(
            o,
            "# HELP harvester_opencast_request_seconds Time of answered Opencast requests.\n\
             # TYPE harvester_opencast_request_seconds summary\n\
             harvester_opencast_request_seconds_sum {:.6}\nharvester_opencast_request_seconds_count {}",
            get(&self.opencast.latency_us_total) as f64 / 1e6,
            get(&self.opencast.requests)
        );
        let next = self.journal.next_seq().unwrap_or(0);
        let cursors: BTreeMap<String, u64> = self
            .journal
            .cursors()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let sinks = self.sinks.lock().unwrap().clone();
        o.push_str("# HELP harvester_forwarded_total Records a sink acknowledged.\n# TYPE harvester_forwarded_total counter\n");
        for (s, c) in &sinks {
            let _ = writeln!(
                o,
                "harvester_forwarded_total{{sink=\"{s}\"}} {}",
                c.forwarded
            );
        }
        o.push_str("# HELP harvester_sink_errors_total Failed forwarding rounds.\n# TYPE harvester_sink_errors_total counter\n");
        for (s, c) in &sinks {
            let _ = writeln!(
                o,
                "harvester_sink_errors_total{{sink=\"{s}\"}} {}",
                c.errors
            );
        }
        o.push_str("# HELP harvester_sink_lag Journaled records a sink has not acknowledged.\n# TYPE harvester_sink_lag gauge\n");
        for (s, c) in cursors.iter().filter(|(s, _)| !s.starts_with("replay:")) {
            let _ = writeln!(
                o,
                "harvester_sink_lag{{sink=\"{s}\"}} {}",
                next.saturating_sub(*c)
            );
        }
        let size = std::fs::metadata(self.journal.path())
            .map(|m| m.len())
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "# HELP harvester_journal_bytes Size of the journal file.\n# TYPE harvester_journal_bytes gauge\nharvester_journal_bytes {size}\n\
             # HELP harvester_journal_records_total Records ever journaled.\n# TYPE harvester_journal_records_total counter\nharvester_journal_records_total {next}"
        );
        // Enrichment (issue 11): records located / parsed, and the caches' hits and misses.
        if let Some(e) = self.enrichment.get() {
            let f = e.stats().figures();
            for (name, help, v) in [
                (
                    "harvester_geoip_located_total",
                    "Records given a geoip object.",
                    f.located,
                ),
                (
                    "harvester_geoip_not_located_total",
                    "Records whose address was private, not an address or unknown to the database.",
                    f.not_located,
                ),
                (
                    "harvester_useragent_parsed_total",
                    "Records given a ua object.",
                    f.ua_parsed,
                ),
                (
                    "harvester_useragent_missing_total",
                    "Records without a user agent to parse.",
                    f.ua_missing,
                ),
                (
                    "harvester_geoip_cache_hits_total",
                    "Address look-ups answered by a cache.",
                    f.ip_cache_hits,
                ),
                (
                    "harvester_geoip_cache_misses_total",
                    "Address look-ups that read the database.",
                    f.ip_cache_misses,
                ),
                (
                    "harvester_useragent_cache_hits_total",
                    "User agents answered by a cache.",
                    f.ua_cache_hits,
                ),
                (
                    "harvester_useragent_cache_misses_total",
                    "User agents parsed.",
                    f.ua_cache_misses,
                ),
            ] {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
            }
        }
        o
    }
}
