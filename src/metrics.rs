//! Figures of a running harvester, rendered in Prometheus' text format for `/metrics`.
//!
//! Counters are plain atomics bumped by the harvest and forward loops; sink lag and journal size
//! are read from the journal when scraped, so they are always current (and left out while the
//! journal is closed for a reopen). Nothing here holds personal data or a credential: error
//! texts shown on `/healthz` lose any user info of a URL they quote.

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
    opencast: Arc<ClientStats>,
    pub actions_harvested: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub dead_letters: AtomicU64,
    pub harvest_runs: AtomicU64,
    pub harvest_errors: AtomicU64,
    pub s3_errors: AtomicU64,
    last_harvest_ok: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Why the journal is closed (`None` while it is open and usable).
    journal_down: Mutex<Option<String>>,
    pub journal_faults: AtomicU64,
    pub journal_reopens: AtomicU64,
    sinks: Mutex<BTreeMap<String, SinkCounters>>,
    /// GeoIP / user-agent enrichment, when on (its figures are rendered below).
    pub enrichment: std::sync::OnceLock<Arc<crate::enrich::Enricher>>,
}

impl Metrics {
    pub fn new(opencast: Arc<ClientStats>) -> Metrics {
        Metrics {
            opencast,
            actions_harvested: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            harvest_runs: AtomicU64::new(0),
            harvest_errors: AtomicU64::new(0),
            s3_errors: AtomicU64::new(0),
            last_harvest_ok: AtomicBool::new(true),
            last_error: Mutex::new(None),
            journal_down: Mutex::new(None),
            journal_faults: AtomicU64::new(0),
            journal_reopens: AtomicU64::new(0),
            sinks: Mutex::new(BTreeMap::new()),
            enrichment: std::sync::OnceLock::new(),
        }
    }

    /// Adds up what one harvest cycle did.
    pub fn count_harvest(&self, s: &crate::harvest::HarvestSummary) {
        self.actions_harvested
            .fetch_add(s.actions, Ordering::Relaxed);
        self.duplicates_skipped
            .fetch_add(s.duplicates, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(s.dead_letters, Ordering::Relaxed);
    }

    pub fn harvest_ok(&self) {
        self.harvest_runs.fetch_add(1, Ordering::Relaxed);
        self.last_harvest_ok.store(true, Ordering::Relaxed);
    }

    pub fn harvest_failed(&self, e: &str) {
        self.harvest_runs.fetch_add(1, Ordering::Relaxed);
        self.harvest_errors.fetch_add(1, Ordering::Relaxed);
        self.last_harvest_ok.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap() = Some(public_text(e));
    }

    /// The journal is closed (after an I/O error, or while it cannot be opened): why.
    pub fn journal_down(&self, why: &str) {
        *self.journal_down.lock().unwrap() = Some(public_text(why));
    }

    /// The journal is open again.
    pub fn journal_up(&self) {
        *self.journal_down.lock().unwrap() = None;
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

    /// `/healthz`: healthy unless the journal is closed or the last harvest failed (then why).
    pub fn health(&self) -> Result<(), String> {
        if let Some(why) = self.journal_down.lock().unwrap().clone() {
            return Err(format!("journal unavailable: {why}"));
        }
        if self.last_harvest_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(format!(
                "last harvest failed: {}",
                self.last_error.lock().unwrap().clone().unwrap_or_default()
            ))
        }
    }

    /// The Prometheus text exposition; `journal` is `None` while it is closed for a reopen.
    pub fn render(&self, journal: Option<&Journal>) -> String {
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
            "harvester_journal_faults_total",
            "I/O errors that closed the journal (a full disk, say).",
            get(&self.journal_faults),
        );
        counter(
            "harvester_journal_reopen_attempts_total",
            "Attempts to open the journal again after an I/O error.",
            get(&self.journal_reopens),
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
        let healthy = self.journal_down.lock().unwrap().is_none() && journal.is_some();
        let _ = writeln!(
            o,
            "# HELP harvester_journal_healthy 1 while the journal is open and writable, 0 while it is being reopened.\n\
             # TYPE harvester_journal_healthy gauge\nharvester_journal_healthy {}",
            healthy as u8
        );
        let next = journal.and_then(|j| j.next_seq().ok()).unwrap_or(0);
        let cursors: BTreeMap<String, u64> = journal
            .and_then(|j| j.cursors().ok())
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
        let Some(journal) = journal else {
            return o;
        };
        o.push_str("# HELP harvester_sink_lag Journaled records a sink has not acknowledged.\n# TYPE harvester_sink_lag gauge\n");
        for (s, c) in cursors.iter().filter(|(s, _)| !s.starts_with("replay:")) {
            let _ = writeln!(
                o,
                "harvester_sink_lag{{sink=\"{s}\"}} {}",
                next.saturating_sub(*c)
            );
        }
        let size = std::fs::metadata(journal.path())
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
        m.journal_down("I/O error on journal /d/j.redb: No space left on device");
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
}
