//! The Elasticsearch sink: action records into daily indices with the bulk API.
//!
//! Each record is created with `_id` = action id; a resend (after a crash, a retry or a replay)
//! finds it there (409) and changes nothing, not even its version. Bulk requests are cut by count and by
//! bytes. A bulk answer is read item by item: items that failed for a passing reason (429, 5xx,
//! a write block) are sent again, alone, with backoff; items rejected for their content (400: a
//! mapping or parsing error) go to the journal's dead-letter table with the reason, so one bad
//! record never blocks the sink. Errors about the index or the cluster (a closed index, an alias
//! without a write index, the shard limit) are not the records' fault: they are retried, then
//! stop the sink with the index named and the cursor kept. The sink acknowledges the leading
//! records that are either indexed or dead-lettered; the forwarder moves its cursor over exactly
//! those.
//!
//! Elasticsearch's reasons quote the refused values ("Preview of field's value: 'student0'"):
//! the full reason goes to the dead-letter table only; logs say the reason's type and the action
//! ids. A request refused as too large (413, a proxy's body limit) is split, and the sink keeps
//! later requests under the size refused.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::{SinkError, SinkFailure};
use crate::enrich::Shaper;
use crate::es::BulkFailure;
use crate::es::{templates, BulkLines, BulkPolicy, EsClient, EsError, Rejection};
use crate::journal::{DeadLetter, Journal, SinkRefusal};
use crate::record::Record;
use crate::timefmt;

/// Default index pattern: one index per UTC day of the action.
pub const DEFAULT_INDEX_PATTERN: &str = "useractions-%Y.%m.%d";

/// How the sink batches and retries.
#[derive(Debug, Clone)]
pub struct EsConfig {
    /// chrono strftime pattern of the index name, applied to the action's UTC time.
    pub index_pattern: String,
    pub max_docs: usize,
    pub max_bytes: usize,
    /// Attempts of a failing item (or request) before the sink gives up for this run.
    pub attempts: u32,
    pub backoff: Duration,
    /// Bulk requests in flight at once.
    pub concurrency: usize,
}

/// Bulk requests in flight by default: a single-shard index takes a bulk request on one
/// thread, so two keep two cores of the node busy (BENCHMARKS.md, issue 11).
pub const DEFAULT_CONCURRENCY: usize = 2;

impl EsConfig {
    pub fn new(index_pattern: &str) -> EsConfig {
        EsConfig {
            index_pattern: index_pattern.to_string(),
            max_docs: 1000,
            max_bytes: 5 * 1024 * 1024,
            attempts: 5,
            backoff: Duration::from_millis(250),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Checks an index pattern: valid strftime fields, none finer than a second, and a valid
/// (lowercase) index name.
pub fn check_index_pattern(pattern: &str) -> Result<(), String> {
    if index_period_us(pattern).is_none() {
        return Err(format!(
            "'{pattern}' uses a field finer than a second (%f, %.f, %+ ...): that would make an index per record; use fields down to %S at most"
        ));
    }
    let sample = format_index(pattern, 1_700_000_000_000_000).ok_or_else(|| {
        format!("'{pattern}' has an invalid %-field (use chrono strftime fields such as %Y.%m.%d)")
    })?;
    let bad = |c: char| {
        c.is_ascii_uppercase()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
            )
    };
    if sample.is_empty()
        || sample.starts_with(['-', '_', '+'])
        || sample == "."
        || sample == ".."
        || sample.chars().any(bad)
    {
        return Err(format!(
            "'{pattern}' does not make a valid index name ('{sample}'): lowercase, no \\ / * ? \" < > | , # : or spaces, not starting with - _ +"
        ));
    }
    Ok(())
}

/// The index name of an action at `us` (UTC microseconds); `None` for an invalid pattern.
pub fn format_index(pattern: &str, us: i64) -> Option<String> {
    let mut s = String::new();
    write!(s, "{}", timefmt::utc(us).format(pattern)).ok()?;
    Some(s)
}

const SECOND_US: i64 = 1_000_000;
const DAY_US: i64 = 86_400 * SECOND_US;

/// How long one index name of `pattern` lasts, in microseconds: the span of the finest time
/// field it uses (a day for %Y, %m, %d, %j, %a, %V..., an hour for %H, a minute for %M, a second
/// for %S or %s), `i64::MAX` when it uses none. Every field is a function of the UTC time
/// truncated to that span, and UTC days, hours and minutes are whole multiples of it from the
/// epoch, so records in one span share one name. `None` for a field finer than a second or one
/// chrono does not know.
pub fn index_period_us(pattern: &str) -> Option<i64> {
    use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
    let mut period = i64::MAX;
    for item in StrftimeItems::new(pattern) {
        let span = match item {
            Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => {
                continue
            }
            Item::Numeric(n, _) => match n {
                Numeric::Hour | Numeric::Hour12 => 3_600 * SECOND_US,
                Numeric::Minute => 60 * SECOND_US,
                Numeric::Second | Numeric::Timestamp => SECOND_US,
                Numeric::Nanosecond => return None,
                Numeric::Internal(_) => return None,
                // Years, quarters, months, weeks, weekdays and days of the year.
                _ => DAY_US,
            },
            Item::Fixed(f) => match f {
                Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName => DAY_US,
                Fixed::LowerAmPm | Fixed::UpperAmPm => 3_600 * SECOND_US,
                // The time is UTC: its zone fields are constant.
                Fixed::TimezoneName
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetZ => continue,
                Fixed::RFC2822 => SECOND_US,
                _ => return None,
            },
            Item::Error => return None,
        };
        period = period.min(span);
    }
    Some(period)
}

/// Names the index of each record, formatting a name once per span of the pattern's finest
/// field (formatting per record would cost more than the rest of the bulk line).
#[derive(Debug)]
pub struct IndexNamer {
    pattern: String,
    period_us: i64,
    /// (span number, index name) of the last record.
    last: Option<(i64, Arc<str>)>,
}

impl IndexNamer {
    pub fn new(pattern: &str) -> IndexNamer {
        IndexNamer {
            pattern: pattern.to_string(),
            // An unchecked pattern gets a name per record, which is right whatever it holds.
            period_us: index_period_us(pattern).unwrap_or(1),
            last: None,
        }
    }

    /// The index of a record created at `us` (UTC microseconds).
    pub fn name(&mut self, us: i64) -> Arc<str> {
        let span = us.div_euclid(self.period_us);
        match &self.last {
            Some((s, name)) if *s == span => name.clone(),
            _ => {
                let name: Arc<str> = format_index(&self.pattern, us)
                    .unwrap_or_else(|| self.pattern.clone())
                    .into();
                self.last = Some((span, name.clone()));
                name
            }
        }
    }
}

/// Indexes records into Elasticsearch.
pub struct EsSink {
    client: EsClient,
    cfg: EsConfig,
    journal: Arc<Journal>,
    index: IndexNamer,
    requests: u64,
    retried_items: u64,
    dead_letters: u64,
    /// GeoIP / user-agent enrichment of the documents (`GEOIP_DATABASE`, `PARSE_USERAGENT`).
    enrich: Option<Shaper>,
}

impl EsSink {
    /// Installs the index template of the pattern (once per process start) and returns the sink.
    /// Fails clearly when the node cannot be reached.
    pub async fn connect(
        client: EsClient,
        cfg: EsConfig,
        journal: Arc<Journal>,
    ) -> Result<EsSink, EsError> {
        let glob = templates::glob_of(&cfg.index_pattern);
        client
            .put_template(
                &templates::name_for("actions", &glob),
                templates::actions(&glob),
            )
            .await?;
        Ok(EsSink {
            client,
            index: IndexNamer::new(&cfg.index_pattern),
            cfg,
            journal,
            requests: 0,
            retried_items: 0,
            dead_letters: 0,
            enrich: None,
        })
    }

    /// Enriches the documents with `geoip` / `ua` objects.
    pub fn with_enrichment(mut self, enrich: Option<Shaper>) -> EsSink {
        self.enrich = enrich;
        self
    }

    pub fn client(&self) -> &EsClient {
        &self.client
    }

    /// Records per round of bulk requests: one full request per request in flight.
    pub fn chunk(&self) -> usize {
        self.cfg
            .max_docs
            .saturating_mul(self.cfg.concurrency.max(1))
    }

    /// Bulk requests sent so far.
    pub fn calls(&self) -> u64 {
        self.requests
    }

    /// Items sent again after a passing failure.
    pub fn retried_items(&self) -> u64 {
        self.retried_items
    }

    /// Records this sink put in the dead-letter table.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// Sends `records` (the journal's from sequence `first` on); `Ok` when every one is indexed
    /// or dead-lettered.
    pub async fn send(&mut self, first: u64, records: &[Record]) -> Result<(), SinkError> {
        let mut lines = BulkLines::with_capacity(records.len(), records.len() * 700);
        let mut indices: Vec<Arc<str>> = Vec::with_capacity(records.len());
        let mut id = String::new();
        for r in records {
            let index = self.index.name(r.created_us);
            id.clear();
            let _ = write!(id, "{}", r.action_id);
            match &mut self.enrich {
                None => lines.push_create(&index, &id, |out| r.write_es_json(out)),
                Some(e) => lines.push_create(&index, &id, |out| e.write_record(r, out, true)),
            }
            indices.push(index);
        }
        let report = self
            .client
            .bulk_index(&lines, &self.policy(self.cfg.max_bytes))
            .await;
        self.requests += report.requests;
        self.retried_items += report.retried_items;
        self.learn_size(report.too_large);
        if !report.rejected.is_empty() {
            let n = report.rejected.len();
            let dead: Vec<(DeadLetter, SinkRefusal)> = report
                .rejected
                .iter()
                .map(|(k, why)| {
                    let seq = first + *k as u64;
                    dead_letter(&records[*k], seq, &indices[*k], why, lines.document(*k))
                })
                .collect();
            let stored = super::store_refusals(&self.journal, dead).await;
            match stored {
                Ok(added) => {
                    self.dead_letters += added;
                    let (kinds, ids) = summary(&report.rejected, |k| records[k].action_id);
                    tracing::warn!(
                        sink = "es",
                        rejected = n,
                        reason_type = %kinds,
                        action_ids = %ids,
                        "Elasticsearch rejected records for their content; they are in the dead-letter table with Elasticsearch's full reason (harvester journal dump --dead-letters)"
                    );
                }
                Err(source) => {
                    // Not stored: acknowledge nothing, so they are sent (and rejected) again.
                    return Err(SinkError::new(
                        0,
                        SinkFailure::DeadLetterStore {
                            what: "rejected records",
                            source,
                        },
                    ));
                }
            }
        }
        match report.failed {
            None => Ok(()),
            Some((acked, failure)) => Err(SinkError::new(acked, failure)),
        }
    }
}

impl EsSink {
    /// The bulk policy of this sink, requests cut at `max_bytes`.
    fn policy(&self, max_bytes: usize) -> BulkPolicy {
        BulkPolicy {
            max_docs: self.cfg.max_docs,
            max_bytes,
            attempts: self.cfg.attempts,
            backoff: self.cfg.backoff,
            concurrency: self.cfg.concurrency,
        }
    }

    /// After a request of `too_large` bytes was refused (413), keeps later requests at half
    /// that size, so the split is paid once, not on every request.
    fn learn_size(&mut self, too_large: Option<usize>) {
        let Some(refused) = too_large else { return };
        let under = (refused / 2).max(1024);
        if under < self.cfg.max_bytes {
            tracing::warn!(
                refused_bytes = refused,
                now_bytes = under,
                "bulk requests of this size are refused as too large (413); sending at most {under} bytes from now on: set ES_BULK_BYTES={under} (or lower) to start there"
            );
            self.cfg.max_bytes = under;
        }
    }

    /// Indexes stored documents again (a dead letters' replay), each `(index, action id,
    /// document)` with `_id` = action id, in bulk. Returns for each document resolved whether it
    /// was rejected again for its content (`Some`), and, when the run stopped, the first
    /// unresolved document and why.
    pub async fn resend_documents(
        &mut self,
        docs: &[(String, i64, String)],
    ) -> (Vec<Option<Rejection>>, Option<(usize, BulkFailure)>) {
        let bytes = docs.iter().map(|(_, _, d)| d.len() + 128).sum();
        let mut lines = BulkLines::with_capacity(docs.len(), bytes);
        for (index, action_id, doc) in docs {
            lines.push_create(index, &action_id.to_string(), |out| {
                out.extend_from_slice(doc.as_bytes())
            });
        }
        let report = self
            .client
            .bulk_index(&lines, &self.policy(self.cfg.max_bytes))
            .await;
        self.requests += report.requests;
        self.learn_size(report.too_large);
        let resolved = report.failed.as_ref().map_or(docs.len(), |(k, _)| *k);
        let mut out = vec![None; resolved];
        for (k, why) in report.rejected {
            if k < resolved {
                out[k] = Some(why);
            }
        }
        (out, report.failed)
    }
}

/// The distinct reason types of `rejected` and its action ids (the first 20), for a log line.
fn summary(rejected: &[(usize, Rejection)], action_id: impl Fn(usize) -> i64) -> (String, String) {
    let mut kinds: Vec<&str> = rejected.iter().map(|(_, r)| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut ids: Vec<String> = rejected
        .iter()
        .take(20)
        .map(|(k, _)| action_id(*k).to_string())
        .collect();
    if rejected.len() > 20 {
        ids.push(format!("… ({} more)", rejected.len() - 20));
    }
    (kinds.join(","), ids.join(","))
}

fn dead_letter(
    r: &Record,
    seq: u64,
    index: &str,
    why: &Rejection,
    doc: &[u8],
) -> (DeadLetter, SinkRefusal) {
    (
        DeadLetter {
            source: format!("elasticsearch index {index}"),
            raw: String::from_utf8_lossy(doc).into_owned(),
            reason: format!("Elasticsearch rejected action {} ({why})", r.action_id),
            at_us: timefmt::now_us(),
        },
        SinkRefusal {
            sink: "es".into(),
            target: index.to_string(),
            action_id: r.action_id,
            seq,
            key: format!("es:{index}:{}", r.action_id),
            delivered_at_us: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_patterns() {
        assert!(check_index_pattern(DEFAULT_INDEX_PATTERN).is_ok());
        assert!(check_index_pattern("replayed").is_ok());
        assert!(check_index_pattern("UserActions-%Y").is_err());
        assert!(check_index_pattern("useractions-%Q").is_err());
        assert!(check_index_pattern("-x").is_err());
        assert_eq!(
            format_index(DEFAULT_INDEX_PATTERN, 1_458_000_000_000_000).unwrap(),
            "useractions-2016.03.15"
        );
    }

    #[test]
    fn every_accepted_pattern_names_each_record_by_its_own_time() {
        let patterns = [
            DEFAULT_INDEX_PATTERN,
            "useractions-%Y.%m.%d-%H",
            "ua-%Y%m%d%H%M",
            "ua-%s",
            "ua-%y-%j",
            "ua-%g-w%v-%u",
            "ua-%Y-%m-%d-%l%p",
            "ua-%Y-%m-%d-%H-%M-%S",
            "ua-%Y-%m-%d-%T",
            "fixed",
            "ua-%Y-%z",
        ];
        for p in patterns {
            if check_index_pattern(p).is_err() {
                // Refused patterns never reach the sink (%T, %p make ':' or uppercase).
                continue;
            }
            let mut namer = IndexNamer::new(p);
            // Forward and backward steps of 7m13.5s over 3 days, across hours and days.
            let t0 = 1_458_000_000_000_000i64;
            let mut us = t0;
            for k in 0..1800 {
                us += if k % 3 == 2 { -95_000_000 } else { 433_500_000 };
                assert_eq!(
                    &*namer.name(us),
                    format_index(p, us).unwrap(),
                    "pattern {p} at {us}"
                );
            }
        }
    }

    #[test]
    fn periods_follow_the_finest_field() {
        assert_eq!(index_period_us("a-%Y.%m.%d"), Some(DAY_US));
        assert_eq!(index_period_us("a-%Y.%m.%d-%H"), Some(3_600_000_000));
        assert_eq!(index_period_us("a-%M-%Y"), Some(60_000_000));
        assert_eq!(index_period_us("a-%s"), Some(1_000_000));
        assert_eq!(index_period_us("a"), Some(i64::MAX));
        assert_eq!(index_period_us("a-%f"), None);
        assert!(check_index_pattern("a-%Y-%3f").is_err());
        assert!(check_index_pattern("a-%Y.%m.%d-%H").is_ok());
    }
}
