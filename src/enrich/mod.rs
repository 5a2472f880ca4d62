//! Enrichment at forward time: the `geoip` and `ua` objects the deployed Logstash pipeline added
//! (shared/reference/deployed-pipeline.md), so `-o es` replaces that pipeline.
//!
//! Guarantees:
//! - Enrichment shapes what a sink sends; it is never stored in the journal. A replay with a
//!   newer database re-enriches history, and `journal dump --enrich` shows what a document would
//!   hold.
//! - It never fails or drops a record: an address or user agent that cannot be enriched just
//!   gives no `geoip` / `ua` object. Only a database that cannot be opened is an error, at start.
//! - By default only Elasticsearch documents are enriched (as the pipeline did); SQS and stdout
//!   records stay byte-identical to the original's unless `ENRICH_SINKS=all`.
//! - Parses and look-ups are cached per distinct address and user agent, bounded like
//!   Logstash's 100,000-entry LRU caches: a viewing session sends the same pair hundreds of
//!   times, so the forward rate stays close to the plain one.

pub mod geoip;
pub mod useragent;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::record::Record;

pub use geoip::{GeoIpDb, GeoIpOpenError};
pub use useragent::UaParser;

/// Entries of each shared cache (Logstash's geoip and useragent filters keep 100,000).
pub const CACHE_ENTRIES: u64 = 100_000;
/// Entries of a sink's own front cache before it is emptied (it sits before the shared cache
/// so that the usual case, the address and agent of a session in progress, costs one hash
/// look-up without synchronisation).
const FRONT_ENTRIES: usize = 4096;
/// User agents longer than this are parsed each time rather than cached (a hostile 100 KB
/// string must not pin 100 KB per cache entry).
const MAX_CACHED_UA: usize = 1024;
/// Records between two additions of a sink's counts to the shared figures.
const FLUSH_EVERY: u32 = 512;

/// Which sinks' records are enriched (`ENRICH_SINKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Elasticsearch documents only, as the Logstash pipeline did.
    #[default]
    Es,
    /// Every sink: SQS and stdout records gain `geoip` / `ua` too.
    All,
}

impl Scope {
    /// Parses `ENRICH_SINKS`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "es" | "elasticsearch" | "" => Ok(Scope::Es),
            "all" => Ok(Scope::All),
            other => Err(format!(
                "ENRICH_SINKS='{other}' is not a choice; use es (Elasticsearch documents only, the default) or all (SQS and stdout records too)"
            )),
        }
    }
}

/// What to enrich with, from the settings.
#[derive(Debug, Clone, Default)]
pub struct EnrichSettings {
    pub geoip_database: Option<PathBuf>,
    pub parse_useragent: bool,
    pub scope: Scope,
    /// Leave the raw `useragent` out of Elasticsearch documents (the pipeline removed it).
    pub es_drop_useragent: bool,
}

impl EnrichSettings {
    pub fn is_on(&self) -> bool {
        self.geoip_database.is_some() || self.parse_useragent
    }
}

/// The shared enrichment state of one process: the database, the parser, the bounded caches
/// and the figures. Cheap to share (`Arc`); each sink looks up through its own [`SinkEnricher`].
pub struct Enricher {
    geoip: Option<GeoIpDb>,
    ua: Option<UaParser>,
    ip_cache: moka::sync::Cache<Box<str>, Option<Arc<RawValue>>>,
    ua_cache: moka::sync::Cache<Box<str>, Option<Arc<RawValue>>>,
    pub scope: Scope,
    pub es_drop_useragent: bool,
    stats: EnrichStats,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("geoip", &self.geoip)
            .field("ua", &self.ua.is_some())
            .field("scope", &self.scope)
            .finish()
    }
}

/// Enrichment figures of a process (records, not distinct values).
#[derive(Debug, Default)]
pub struct EnrichStats {
    /// Records given a `geoip` object.
    pub located: AtomicU64,
    /// Records whose address gave none (private, `-omitted-`, unknown to the database).
    pub not_located: AtomicU64,
    /// Records given a `ua` object.
    pub ua_parsed: AtomicU64,
    /// Records with no or an empty user agent.
    pub ua_missing: AtomicU64,
    pub ip_cache_hits: AtomicU64,
    pub ip_cache_misses: AtomicU64,
    pub ua_cache_hits: AtomicU64,
    pub ua_cache_misses: AtomicU64,
}

/// A copy of [`EnrichStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EnrichFigures {
    pub located: u64,
    pub not_located: u64,
    pub ua_parsed: u64,
    pub ua_missing: u64,
    pub ip_cache_hits: u64,
    pub ip_cache_misses: u64,
    pub ua_cache_hits: u64,
    pub ua_cache_misses: u64,
}

impl EnrichFigures {
    /// Hit rate of a cache (0 when it was never asked).
    pub fn rate(hits: u64, misses: u64) -> f64 {
        if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        }
    }
}

impl EnrichStats {
    pub fn figures(&self) -> EnrichFigures {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EnrichFigures {
            located: g(&self.located),
            not_located: g(&self.not_located),
            ua_parsed: g(&self.ua_parsed),
            ua_missing: g(&self.ua_missing),
            ip_cache_hits: g(&self.ip_cache_hits),
            ip_cache_misses: g(&self.ip_cache_misses),
            ua_cache_hits: g(&self.ua_cache_hits),
            ua_cache_misses: g(&self.ua_cache_misses),
        }
    }

    fn add(&self, f: &EnrichFigures) {
        let a = |c: &AtomicU64, v: u64| {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        };
        a(&self.located, f.located);
        a(&self.not_located, f.not_located);
        a(&self.ua_parsed, f.ua_parsed);
        a(&self.ua_missing, f.ua_missing);
        a(&self.ip_cache_hits, f.ip_cache_hits);
        a(&self.ip_cache_misses, f.ip_cache_misses);
        a(&self.ua_cache_hits, f.ua_cache_hits);
        a(&self.ua_cache_misses, f.ua_cache_misses);
    }
}

impl Enricher {
    /// Opens the database and compiles the parser the settings ask for; `None` when they ask
    /// for neither. A database that cannot be opened is an error here, never per record.
    pub fn from_settings(s: &EnrichSettings) -> Result<Option<Arc<Enricher>>, GeoIpOpenError> {
        if !s.is_on() {
            return Ok(None);
        }
        let geoip = s.geoip_database.as_deref().map(GeoIpDb::open).transpose()?;
        if let Some(db) = &geoip {
            tracing::info!(database = %db.describe(), "GeoIP enrichment on");
        }
        let ua = s.parse_useragent.then(UaParser::new);
        let cache = || {
            moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .build()
        };
        Ok(Some(Arc::new(Enricher {
            geoip,
            ua,
            ip_cache: cache(),
            ua_cache: cache(),
            scope: s.scope,
            es_drop_useragent: s.es_drop_useragent,
            stats: EnrichStats::default(),
        })))
    }

    /// The figures so far.
    pub fn stats(&self) -> &EnrichStats {
        &self.stats
    }

    /// A look-up handle for one sink.
    pub fn for_sink(self: &Arc<Enricher>) -> SinkEnricher {
        SinkEnricher {
            shared: self.clone(),
            ips: HashMap::default(),
            uas: HashMap::default(),
            counts: EnrichFigures::default(),
            pending: 0,
        }
    }
}

/// What one record gains: the JSON of its `geoip` and `ua` objects, and whether its raw
/// `useragent` is left out.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub geoip: Option<Arc<RawValue>>,
    pub ua: Option<Arc<RawValue>>,
    pub drop_useragent: bool,
}

type Front = HashMap<Box<str>, Option<Arc<RawValue>>, foldhash::fast::RandomState>;

/// One sink's look-ups: a small unsynchronised front cache before the shared bounded one,
/// and local counts added to the shared figures once per batch ([`SinkEnricher::flush`]).
pub struct SinkEnricher {
    shared: Arc<Enricher>,
    ips: Front,
    uas: Front,
    counts: EnrichFigures,
    pending: u32,
}

impl SinkEnricher {
    pub fn enricher(&self) -> &Arc<Enricher> {
        &self.shared
    }

    /// The additions of one record, whose address is `ip` (the first of its chain) and whose
    /// user agent is `ua`.
    pub fn extra(&mut self, ip: Option<&str>, ua: Option<&str>) -> Extra {
        let mut x = Extra::default();
        if let Some(db) = &self.shared.geoip {
            x.geoip = match ip {
                Some(ip) => cached(
                    &mut self.ips,
                    &self.shared.ip_cache,
                    ip,
                    usize::MAX,
                    (
                        &mut self.counts.ip_cache_hits,
                        &mut self.counts.ip_cache_misses,
                    ),
                    |ip| db.locate(ip),
                ),
                None => None,
            };
            if x.geoip.is_some() {
                self.counts.located += 1;
            } else {
                self.counts.not_located += 1;
            }
        }
        if let Some(p) = &self.shared.ua {
            x.ua = match ua {
                Some(ua) if !ua.is_empty() => cached(
                    &mut self.uas,
                    &self.shared.ua_cache,
                    ua,
                    MAX_CACHED_UA,
                    (
                        &mut self.counts.ua_cache_hits,
                        &mut self.counts.ua_cache_misses,
                    ),
                    |ua| p.parse(ua),
                ),
                _ => None,
            };
            if x.ua.is_some() {
                self.counts.ua_parsed += 1;
            } else {
                self.counts.ua_missing += 1;
            }
        }
        x
    }

    /// Adds this sink's counts to the shared figures (also done every few hundred records and
    /// when the sink is dropped).
    pub fn flush(&mut self) {
        self.shared.stats.add(&self.counts);
        self.counts = EnrichFigures::default();
        self.pending = 0;
    }
}

impl Drop for SinkEnricher {
    fn drop(&mut self) {
        self.flush();
    }
}

impl std::fmt::Debug for SinkEnricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkEnricher")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// What a sink does to a record before it sends it: enrichment from the journaled fields,
/// then the privacy settings (pseudonymized ids, shortened addresses) over the personal ones.
/// A sink without either writes the plain record (its fast path: no `Shaper` at all).
#[derive(Debug)]
pub struct Shaper {
    enrich: Option<SinkEnricher>,
    privacy: Option<crate::privacy::SinkPrivacy>,
}

impl Shaper {
    /// `None` when there is nothing to do.
    pub fn new(
        enrich: Option<SinkEnricher>,
        privacy: Option<crate::privacy::SinkPrivacy>,
    ) -> Option<Shaper> {
        (enrich.is_some() || privacy.is_some()).then_some(Shaper { enrich, privacy })
    }

    /// The enrichment part, if any.
    pub fn enricher(&mut self) -> Option<&mut SinkEnricher> {
        self.enrich.as_mut()
    }

    /// The privacy part, if any.
    pub fn privacy(&mut self) -> Option<&mut crate::privacy::SinkPrivacy> {
        self.privacy.as_mut()
    }

    /// Appends the JSON of `r` as this sink sends it (`es`: its Elasticsearch document). The
    /// GeoIP look-up reads the journaled address, before `IP_PRIVACY` shortens it.
    pub fn write_record(&mut self, r: &Record, out: &mut Vec<u8>, es: bool) {
        let shown = self.privacy.as_mut().map(|p| p.show(r));
        match &mut self.enrich {
            Some(e) => {
                let ip = first_ip(r.ip_chain.as_deref());
                let mut x = e.extra(ip, r.useragent.as_deref());
                x.drop_useragent = es && e.shared.es_drop_useragent;
                if let (Some(p), Some(g), Some(ip)) = (&mut self.privacy, &x.geoip, ip) {
                    x.geoip = p.geoip(g, ip);
                }
                r.write_shaped_json(out, Some(&x), shown.as_ref(), es);
                e.pending += 1;
                if e.pending >= FLUSH_EVERY {
                    e.flush();
                }
            }
            None => r.write_shaped_json(out, None, shown.as_ref(), es),
        }
    }
}

/// Looks `key` up in the front cache, then the shared one, then computes it.
fn cached(
    front: &mut Front,
    shared: &moka::sync::Cache<Box<str>, Option<Arc<RawValue>>>,
    key: &str,
    max_len: usize,
    (hits, misses): (&mut u64, &mut u64),
    compute: impl FnOnce(&str) -> Option<Arc<RawValue>>,
) -> Option<Arc<RawValue>> {
    if let Some(v) = front.get(key) {
        *hits += 1;
        return v.clone();
    }
    if key.len() > max_len {
        *misses += 1;
        return compute(key);
    }
    let v = match shared.get(key) {
        Some(v) => {
            *hits += 1;
            v
        }
        None => {
            *misses += 1;
            let v = compute(key);
            shared.insert(key.into(), v.clone());
            v
        }
    };
    if front.len() >= FRONT_ENTRIES {
        front.clear();
    }
    front.insert(key.into(), v.clone());
    v
}

/// The first address of a record's `userIp` chain (what its `ip` field holds).
pub fn first_ip(chain: Option<&str>) -> Option<&str> {
    chain.and_then(|c| c.split(',').next()).map(str::trim)
}

/// Holds the process's [`Enricher`] once the settings are checked; clones share it. Lives in
/// the command-line arguments (`cli::EnrichArgs`) so that every sink made from them gets the
/// same database, parser and caches without a global.
#[derive(Clone, Default)]
pub struct EnricherSlot(Arc<std::sync::OnceLock<Option<Arc<Enricher>>>>);

impl std::fmt::Debug for EnricherSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnricherSlot({:?})", self.get())
    }
}

impl EnricherSlot {
    /// Makes the enricher of `settings` unless already made; fails when the database cannot be
    /// opened.
    pub fn init(&self, settings: &EnrichSettings) -> Result<(), GeoIpOpenError> {
        if self.0.get().is_none() {
            let e = Enricher::from_settings(settings)?;
            let _ = self.0.set(e);
        }
        Ok(())
    }

    /// The enricher, when the settings asked for enrichment (and `init` ran).
    pub fn get(&self) -> Option<&Arc<Enricher>> {
        self.0.get().and_then(Option::as_ref)
    }

    /// The enricher of a sink: Elasticsearch sinks always get it, the others only with
    /// `ENRICH_SINKS=all`.
    pub fn for_sink(&self, es: bool) -> Option<SinkEnricher> {
        let e = self.get()?;
        (es || e.scope == Scope::All).then(|| e.for_sink())
    }
}
