//! Time window → pages → journal, the checkpoint in the same transaction as the last page.
//!
//! Pages are fetched a few ahead of the one being processed (the bare fetch is the floor of the
//! harvest's time). Each page is judged action by action: a good action becomes a record, a bad
//! one a dead letter with its raw text. The page is committed as one durable transaction; only
//! the transaction of a window's last page moves the checkpoint, so a crash never leaves the
//! checkpoint past data the journal does not hold.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use futures::StreamExt;

use crate::episodes::{EpisodeCache, Lookup};
use crate::journal::{DeadLetter, HarvestPosition, Journal, JournalError, PageCommit};
use crate::opencast::{Action, ActionsPage, Opencast, OpencastError};
use crate::record::Record;
use crate::timefmt;

/// What can stop a harvest.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error(transparent)]
    Opencast(#[from] OpencastError),
    #[error("episode look-up failed: {0}")]
    Episode(Arc<OpencastError>),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "the harvest window {start}..{end} spans {span} s, more than MAX_START_END_SPAN={max} s.\n\
         The harvester has fallen behind. Either:\n  \
         1. run it once by hand with --disable-start-end-span-check (or --catch-up, to harvest the \
         gap in windows of MAX_START_END_SPAN), making sure no other harvester runs meanwhile \
         (pause cron, or use run-one); or\n  \
         2. reset the start with `harvester checkpoint --clear` (it also deletes \
         s3://<S3_HARVEST_TS_BUCKET>/<S3_LAST_ACTION_TS_KEY>), then harvest the gap by hand in \
         --start/--end pieces."
    )]
    SpanTooLarge { start: String, end: String, span: i64, max: i64 },
    #[error("internal task failed: {0}")]
    Task(String),
}

/// How to harvest one or more windows.
#[derive(Debug, Clone)]
pub struct HarvestOptions {
    pub batch_size: u64,
    /// Pause between pages (the original's `--wait`); disables prefetching when set.
    pub wait: Duration,
    pub tz: Tz,
    pub update_checkpoint: bool,
    /// Pages fetched ahead of the one being processed.
    pub prefetch: usize,
    /// Concurrent episode look-ups per page.
    pub episode_concurrency: usize,
}

impl Default for HarvestOptions {
    fn default() -> Self {
        HarvestOptions {
            batch_size: 1000,
            wait: Duration::ZERO,
            tz: Tz::UTC,
            update_checkpoint: true,
            prefetch: 3,
            episode_concurrency: 8,
        }
    }
}

/// Figures of a harvest, for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct HarvestSummary {
    pub windows: u64,
    pub actions: u64,
    pub batches: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub episodes_fetched: u64,
    pub request_retries: u64,
    pub last_action_us: Option<i64>,
    pub seconds: f64,
}

/// Splits `[start, end]` into windows of at most `max_span` seconds (`None`: one window).
pub fn windows(start_us: i64, end_us: i64, max_span_s: Option<i64>) -> Vec<(i64, i64)> {
    let Some(span) = max_span_s.filter(|s| *s > 0).map(|s| s * 1_000_000) else {
        return vec![(start_us, end_us)];
    };
    let mut out = Vec::new();
    let mut s = start_us;
    while s < end_us {
        let e = (s + span).min(end_us);
        out.push((s, e));
        s = e;
    }
    if out.is_empty() {
        out.push((start_us, end_us));
    }
    out
}

/// The harvester: Opencast, the episode cache and the journal, wired together.
pub struct Harvester {
    pub opencast: Opencast,
    pub episodes: EpisodeCache,
    pub journal: Arc<Journal>,
    pub opts: HarvestOptions,
}

type PageFetch = tokio::task::JoinHandle<Result<ActionsPage, OpencastError>>;

impl Harvester {
    /// Harvests the windows in order; each completed window moves the checkpoint (if enabled).
    pub async fn harvest(&self, windows: &[(i64, i64)]) -> Result<HarvestSummary, HarvestError> {
        let started = Instant::now();
        let retries_before = self.opencast.client().stats().retries.load(std::sync::atomic::Ordering::Relaxed);
        let fetched_before = self.episodes.fetched();
        let mut sum = HarvestSummary::default();
        for (n, (s, e)) in windows.iter().enumerate() {
            if windows.len() > 1 {
                tracing::info!(
                    window = n + 1,
                    of = windows.len(),
                    start = %timefmt::format_compact(*s, self.opts.tz),
                    end = %timefmt::format_compact(*e, self.opts.tz),
                    "harvesting window"
                );
            }
            self.harvest_window(*s, *e, &mut sum).await?;
            sum.windows += 1;
        }
        sum.request_retries = self.opencast.client().stats().retries.load(std::sync::atomic::Ordering::Relaxed) - retries_before;
        sum.episodes_fetched = self.episodes.fetched() - fetched_before;
        sum.seconds = started.elapsed().as_secs_f64();
        Ok(sum)
    }

    fn spawn_fetch(&self, start: &str, end: &str, offset: u64) -> PageFetch {
        let oc = self.opencast.clone();
        let url = oc.actions_url(start, end, self.opts.batch_size, offset);
        tokio::spawn(async move { oc.actions_page(&url).await })
    }

    async fn harvest_window(
        &self,
        start_us: i64,
        end_us: i64,
        sum: &mut HarvestSummary,
    ) -> Result<(), HarvestError> {
        let tz = self.opts.tz;
        let (start, end) = (timefmt::format_compact(start_us, tz), timefmt::format_compact(end_us, tz));
        let batch = self.opts.batch_size;
        let prefetch = if self.opts.wait.is_zero() { self.opts.prefetch.max(1) } else { 1 };
        let mut inflight: VecDeque<(u64, PageFetch)> = VecDeque::new();
        inflight.push_back((0, self.spawn_fetch(&start, &end, 0)));
        let mut next_offset = batch;
        let mut total = 0u64;
        let mut max_created: Option<i64> = None;
        let mut pages = 0u64;
        while let Some((offset, fetch)) = inflight.pop_front() {
            let page = fetch.await.map_err(|e| HarvestError::Task(e.to_string()))??;
            pages += 1;
            sum.batches += 1;
            total = page.total.max(0) as u64;
            if self.opts.wait.is_zero() {
                while inflight.len() < prefetch && next_offset < total {
                    inflight.push_back((next_offset, self.spawn_fetch(&start, &end, next_offset)));
                    next_offset += batch;
                }
            }
            let source = format!("usertracking/actions.json?start={start}&end={end}&offset={offset}");
            let mut commit = self.build_page(page, &source).await?;
            if let Some(m) = commit.records.iter().map(|r| r.created_us).max() {
                max_created = Some(max_created.map_or(m, |c| c.max(m)));
            }
            if !self.opts.wait.is_zero() && next_offset < total {
                tokio::time::sleep(self.opts.wait).await;
                inflight.push_back((next_offset, self.spawn_fetch(&start, &end, next_offset)));
                next_offset += batch;
            }
            let last = inflight.is_empty() && next_offset >= total;
            commit.position = Some(HarvestPosition {
                window_start_us: start_us,
                window_end_us: end_us,
                next_offset: offset + batch,
                pages,
                max_created_us: max_created,
                complete: last,
                updated_at_us: timefmt::now_us(),
            });
            if last && self.opts.update_checkpoint {
                commit.checkpoint = max_created;
            }
            let journal = self.journal.clone();
            let out = tokio::task::spawn_blocking(move || journal.commit_page(commit))
                .await
                .map_err(|e| HarvestError::Task(e.to_string()))??;
            sum.actions += out.appended;
            sum.duplicates += out.duplicates;
            sum.dead_letters += out.dead_letters;
            tracing::debug!(offset, total, appended = out.appended, duplicates = out.duplicates, "page journaled");
        }
        if let Some(m) = max_created {
            sum.last_action_us = Some(sum.last_action_us.map_or(m, |c| c.max(m)));
        }
        tracing::info!(%start, %end, total, pages, "window harvested");
        Ok(())
    }

    /// Judges each action of a page, looks up its episodes, and builds the page's commit.
    async fn build_page(&self, page: ActionsPage, source: &str) -> Result<PageCommit, HarvestError> {
        let tz = self.opts.tz;
        let mut good: Vec<Action> = Vec::with_capacity(page.actions.len());
        let mut dead = Vec::new();
        for raw in page.actions {
            match Action::from_raw(raw.get(), tz) {
                Ok(a) => good.push(a),
                Err(reason) => {
                    tracing::warn!(%reason, "action quarantined in the dead-letter table");
                    let key = dead_letter_key(raw.get());
                    dead.push((
                        key,
                        DeadLetter {
                            source: source.to_string(),
                            raw: raw.get().to_string(),
                            reason,
                            at_us: timefmt::now_us(),
                        },
                    ));
                }
            }
        }
        // Look up each distinct episode once (the cache coalesces across pages too).
        let mpids: HashSet<&str> = good.iter().map(|a| a.mpid.as_str()).collect();
        let lookups: Vec<(String, Result<Arc<Lookup>, Arc<OpencastError>>)> =
            futures::stream::iter(mpids)
                .map(|m| async move { (m.to_string(), self.episodes.get(m).await) })
                .buffer_unordered(self.opts.episode_concurrency.max(1))
                .collect()
                .await;
        let mut episodes: HashMap<String, Arc<Lookup>> = HashMap::with_capacity(lookups.len());
        let mut new_episodes = Vec::new();
        for (mpid, res) in lookups {
            let l = res.map_err(HarvestError::Episode)?;
            if l.take_unjournaled() {
                new_episodes.push((mpid.clone(), l.entry.clone()));
            }
            episodes.insert(mpid, l);
        }
        let records: Vec<Record> = good
            .into_iter()
            .map(|a| {
                let meta = episodes.get(&a.mpid).and_then(|l| l.entry.meta.as_ref());
                Record::build(a, meta, tz)
            })
            .collect();
        Ok(PageCommit { records, dead_letters: dead, episodes: new_episodes, position: None, checkpoint: None })
    }
}

/// Dead letters are stored once: by action id when one can be read, else by the text's hash.
fn dead_letter_key(raw: &str) -> String {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<crate::opencast::wire::LenientI64>,
    }
    match serde_json::from_str::<IdOnly>(raw) {
        Ok(IdOnly { id: Some(id) }) => format!("id:{}", id.0),
        _ => format!("md5:{}", crate::opencast::digest::md5_hex(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_span() {
        assert_eq!(windows(0, 10_000_000, None), vec![(0, 10_000_000)]);
        let w = windows(0, 10_000_000, Some(4));
        assert_eq!(w, vec![(0, 4_000_000), (4_000_000, 8_000_000), (8_000_000, 10_000_000)]);
    }

    #[test]
    fn dead_letter_keys() {
        assert_eq!(dead_letter_key(r#"{"id":"12","x":1}"#), "id:12");
        assert!(dead_letter_key("{not json").starts_with("md5:"));
    }
}
