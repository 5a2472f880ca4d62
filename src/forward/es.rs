//! The Elasticsearch sink: action records into daily indices with the bulk API.
//!
//! Each record is created with `_id` = action id; a resend (after a crash, a retry or a replay)
//! finds it there (409) and changes nothing, not even its version. Bulk requests are cut by count and by
//! bytes. A bulk answer is read item by item: items that failed for a passing reason (429, 5xx,
//! a write block) are sent again, alone, with backoff; items rejected for their content (400: a
//! mapping or parsing error) go to the journal's dead-letter table with the reason, so one bad
//! record never blocks the sink. The sink acknowledges the leading records that are either indexed
//! or dead-lettered; the forwarder moves its cursor over exactly those.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::SinkError;
use crate::enrich::SinkEnricher;
use crate::es::{templates, BulkLines, BulkPolicy, EsClient, EsError};
use crate::journal::{DeadLetter, Journal};
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
}

impl EsConfig {
    pub fn new(index_pattern: &str) -> EsConfig {
        EsConfig {
            index_pattern: index_pattern.to_string(),
            max_docs: 1000,
            max_bytes: 5 * 1024 * 1024,
            attempts: 5,
            backoff: Duration::from_millis(250),
        }
    }
}

/// Checks an index pattern: valid strftime fields and a valid (lowercase) index name.
pub fn check_index_pattern(pattern: &str) -> Result<(), String> {
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

pub fn format_index(pattern: &str, us: i64) -> Option<String> {
    let mut s = String::new();
    write!(s, "{}", timefmt::utc(us).format(pattern)).ok()?;
    Some(s)
}

/// Indexes records into Elasticsearch.
pub struct EsSink {
    client: EsClient,
    cfg: EsConfig,
    journal: Arc<Journal>,
    /// (UTC day, index name) of the last record, to format the name once a day.
    day: Option<(i64, Arc<str>)>,
    requests: u64,
    retried_items: u64,
    dead_letters: u64,
    /// GeoIP / user-agent enrichment of the documents (`GEOIP_DATABASE`, `PARSE_USERAGENT`).
    enrich: Option<SinkEnricher>,
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
            cfg,
            journal,
            day: None,
            requests: 0,
            retried_items: 0,
            dead_letters: 0,
            enrich: None,
        })
    }

    /// Enriches the documents with `geoip` / `ua` objects.
    pub fn with_enrichment(mut self, enrich: Option<SinkEnricher>) -> EsSink {
        self.enrich = enrich;
        self
    }

    pub fn client(&self) -> &EsClient {
        &self.client
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

    fn index_of(&mut self, created_us: i64) -> Arc<str> {
        let day = created_us.div_euclid(86_400_000_000);
        match &self.day {
            Some((d, name)) if *d == day => name.clone(),
            _ => {
                let name: Arc<str> = format_index(&self.cfg.index_pattern, created_us)
                    .unwrap_or_else(|| self.cfg.index_pattern.clone())
                    .into();
                self.day = Some((day, name.clone()));
                name
            }
        }
    }

    /// Sends `records`; `Ok` when every one is indexed or dead-lettered.
    pub async fn send(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let mut lines = BulkLines::with_capacity(records.len(), records.len() * 700);
        let mut indices: Vec<Arc<str>> = Vec::with_capacity(records.len());
        let mut id = String::new();
        for r in records {
            let index = self.index_of(r.created_us);
            id.clear();
            let _ = write!(id, "{}", r.action_id);
            match &mut self.enrich {
                None => lines.push_create(&index, &id, |out| r.write_es_json(out)),
                Some(e) => lines.push_create(&index, &id, |out| e.write_record(r, out, true)),
            }
            indices.push(index);
        }
        let policy = BulkPolicy {
            max_docs: self.cfg.max_docs,
            max_bytes: self.cfg.max_bytes,
            attempts: self.cfg.attempts,
            backoff: self.cfg.backoff,
        };
        let report = self.client.bulk_index(&lines, &policy).await;
        self.requests += report.requests;
        self.retried_items += report.retried_items;
        if !report.rejected.is_empty() {
            let n = report.rejected.len();
            let dead: Vec<(String, DeadLetter)> = report
                .rejected
                .iter()
                .map(|(k, why)| dead_letter(&records[*k], &indices[*k], why, lines.document(*k)))
                .collect();
            let j = self.journal.clone();
            let stored = tokio::task::spawn_blocking(move || j.add_dead_letters(dead))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match stored {
                Ok(added) => {
                    self.dead_letters += added;
                    tracing::warn!(
                        sink = "es",
                        rejected = n,
                        "Elasticsearch rejected records for their content; they are in the dead-letter table (harvester journal dump --dead-letters)"
                    );
                }
                Err(e) => {
                    // Not stored: acknowledge nothing, so they are sent (and rejected) again.
                    return Err(SinkError {
                        acked: 0,
                        message: format!("cannot store rejected records as dead letters: {e}"),
                    });
                }
            }
        }
        match report.failed {
            None => Ok(()),
            Some((acked, message)) => Err(SinkError { acked, message }),
        }
    }
}

fn dead_letter(r: &Record, index: &str, why: &str, doc: &[u8]) -> (String, DeadLetter) {
    (
        format!("es:{index}:{}", r.action_id),
        DeadLetter {
            source: format!("elasticsearch index {index}"),
            raw: String::from_utf8_lossy(doc).into_owned(),
            reason: format!("Elasticsearch rejected action {} ({why})", r.action_id),
            at_us: timefmt::now_us(),
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
}
