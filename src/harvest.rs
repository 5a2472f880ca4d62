//! Time window → pages → journal, the checkpoint in the same transaction as the last page.
//!
//! Pages are fetched a few ahead of the one being processed (the bare fetch is the floor of the
//! harvest's time). Each page is judged action by action: a good action becomes a record, a bad
//! one a dead letter with its raw text. The page is committed as one durable transaction; only
//! the transaction of a window's last page moves the checkpoint, so a crash never leaves the
//! checkpoint past data the journal does not hold.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::episodes::{EpisodeCache, Lookup};
use crate::journal::{
    codec, DeadLetter, HarvestPosition, Journal, JournalError, PageCommit, PageOutcome,
};
use crate::opencast::{ActionsPage, JudgedPage, Opencast, OpencastError};
use crate::progress::Progress;
use crate::record::{EpisodeBlock, RecordRef};
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
    SpanTooLarge {
        start: String,
        end: String,
        span: i64,
        max: i64,
    },
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("harvest interrupted by shutdown (every committed page is kept; the checkpoint did not move past them)")]
    Interrupted,
}

/// How to harvest one or more windows.
#[derive(Debug, Clone)]
pub struct HarvestOptions {
    pub batch_size: u64,
    /// Pause between pages (the original's `--wait`); disables prefetching when set.
    pub wait: Duration,
    pub tz: Tz,
    pub update_checkpoint: bool,
    /// Page requests kept in flight (the server always has this many to work on).
    pub prefetch: usize,
    /// Pages fetched or being prepared ahead of the one being committed: a page held up (by an
    /// episode look-up, a retry) does not stop the requests behind it. With 20 ms of server
    /// latency a page spends two round trips in the pipeline (its fetch, then its episodes),
    /// so 24 pages ahead capped the harvest below what 12 requests in flight can fetch; 48 do
    /// not (each page waiting holds its ~370 KB body).
    pub ahead: usize,
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
            prefetch: 12,
            ahead: 48,
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

impl HarvestSummary {
    /// The end-of-run line, with the original's figures (actions, batches, failures) first.
    pub fn log(&self, forwarded: u64, tz: Tz) {
        tracing::info!(
            actions = self.actions,
            batches = self.batches,
            failures = self.request_retries,
            dead_letters = self.dead_letters,
            duplicates_skipped = self.duplicates,
            episodes_fetched = self.episodes_fetched,
            forwarded,
            last_action = %self
                .last_action_us
                .map(|u| timefmt::format_compact(u, tz))
                .unwrap_or_else(|| "-".into()),
            seconds = format!("{:.3}", self.seconds),
            "harvest summary"
        );
    }
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
    /// When it turns true, the page in hand is committed and the harvest stops.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// At most this many pages are committed in one transaction.
const MAX_GROUP_PAGES: usize = 16;

type PageFetch = tokio::task::JoinHandle<Result<Prepared, HarvestError>>;
type PendingCommit = tokio::task::JoinHandle<Result<PageOutcome, JournalError>>;

impl Harvester {
    pub fn new(
        opencast: Opencast,
        episodes: EpisodeCache,
        journal: Arc<Journal>,
        opts: HarvestOptions,
    ) -> Harvester {
        Harvester {
            opencast,
            episodes,
            journal,
            opts,
            shutdown: None,
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|rx| *rx.borrow())
    }
    /// Harvests the windows in order; each completed window moves the checkpoint (if enabled).
    pub async fn harvest(&self, windows: &[(i64, i64)]) -> Result<HarvestSummary, HarvestError> {
        let started = Instant::now();
        let retries_before = self
            .opencast
            .client()
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed);
        let fetched_before = self.episodes.fetched();
        let mut sum = HarvestSummary::default();
        let progress = Progress::new("harvest", "actions", 0);
        let mut known = 0u64;
        for (n, (s, e)) in windows.iter().enumerate() {
            if self.stopping() {
                return Err(HarvestError::Interrupted);
            }
            if windows.len() > 1 {
                tracing::info!(
                    window = n + 1,
                    of = windows.len(),
                    start = %timefmt::format_compact(*s, self.opts.tz),
                    end = %timefmt::format_compact(*e, self.opts.tz),
                    "harvesting window"
                );
            }
            let res = self
                .harvest_window(*s, *e, &mut sum, &progress, known)
                .await;
            known = progress.total();
            if res.is_err() {
                progress.finish();
            }
            res?;
            sum.windows += 1;
        }
        progress.finish();
        sum.request_retries = self
            .opencast
            .client()
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            - retries_before;
        sum.episodes_fetched = self.episodes.fetched() - fetched_before;
        sum.seconds = started.elapsed().as_secs_f64();
        Ok(sum)
    }

    /// Fetches, decodes, judges, enriches and encodes one page in its own task, so that several
    /// pages are prepared in parallel while commits go one at a time, in order.
    fn spawn_fetch(
        &self,
        start: &str,
        end: &str,
        offset: u64,
        permits: &Arc<Semaphore>,
    ) -> PageFetch {
        let oc = self.opencast.clone();
        let permits = permits.clone();
        let url = oc.actions_url(start, end, self.opts.batch_size, offset);
        let episodes = self.episodes.clone();
        let (tz, concurrency) = (self.opts.tz, self.opts.episode_concurrency.max(1));
        let source = format!("usertracking/actions.json?start={start}&end={end}&offset={offset}");
        tokio::spawn(async move {
            // A body that does not decode as a page (truncated, an HTML error page) is retried
            // like a 5xx, within the client's retry budget.
            let mut attempt = 0;
            loop {
                // A permit per request in flight, handed back as soon as the body is in: pages
                // are requested in order, and the next request never waits for this page's
                // processing.
                let body = {
                    let _permit = permits
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    oc.actions_body(&url).await?
                };
                match ActionsPage::parse(&body) {
                    Ok(page) => {
                        let judged = JudgedPage::judge(page, tz);
                        return prepare_page(judged, &episodes, concurrency, &source).await;
                    }
                    Err(e) if attempt < oc.client().retries() => {
                        attempt += 1;
                        let why = format!("unreadable body ({} bytes): {e}", body.len());
                        oc.client().pause_before_retry(&url, attempt, &why).await;
                    }
                    Err(e) => {
                        return Err(HarvestError::Opencast(OpencastError::Exhausted {
                            url: url.to_string(),
                            attempts: attempt + 1,
                            last: format!("unreadable body ({} bytes): {e}", body.len()),
                        }))
                    }
                }
            }
        })
    }

    async fn harvest_window(
        &self,
        start_us: i64,
        end_us: i64,
        sum: &mut HarvestSummary,
        progress: &Progress,
        known_before: u64,
    ) -> Result<(), HarvestError> {
        let tz = self.opts.tz;
        let (start, end) = (
            timefmt::format_compact(start_us, tz),
            timefmt::format_compact(end_us, tz),
        );
        let batch = self.opts.batch_size;
        let (prefetch, ahead) = if self.opts.wait.is_zero() {
            let p = self.opts.prefetch.max(1);
            // `ahead` is meant for pages of 1,000 actions: larger pages get fewer pages ahead
            // (never fewer than the requests in flight), so that `-b 10000` does not hold 48
            // bodies of 3.7 MB waiting for their episodes (~400 MB peak; now ~170 MB).
            let scaled = self.opts.ahead.saturating_mul(1000) / (batch.max(1) as usize);
            (p, scaled.min(self.opts.ahead).max(p))
        } else {
            (1, 1)
        };
        let permits = Arc::new(Semaphore::new(prefetch));
        let mut inflight: VecDeque<(u64, PageFetch)> = VecDeque::new();
        inflight.push_back((0, self.spawn_fetch(&start, &end, 0, &permits)));
        let mut next_offset = batch;
        let mut total = 0u64;
        let mut max_created: Option<i64> = None;
        let mut pages = 0u64;
        // One commit runs while the next pages are prepared; commits stay in page order, so the
        // one carrying the checkpoint is always the last. Pages that are prepared together
        // join one group, committed in one transaction: one durable write for several pages
        // when the harvest is ahead of the disk.
        let mut pending: Option<PendingCommit> = None;
        let mut group: Vec<PageCommit> = Vec::new();
        while let Some((offset, fetch)) = inflight.pop_front() {
            if self.stopping() {
                // Finish what is being committed and what is prepared, drop what is only
                // fetched.
                fetch.abort();
                for (_, f) in inflight.drain(..) {
                    f.abort();
                }
                self.keep_prepared(pending, group, sum).await?;
                return Err(HarvestError::Interrupted);
            }
            let Prepared {
                total: page_total,
                mut commit,
                newest: page_max,
            } = match fetch
                .await
                .map_err(|e| HarvestError::Task(e.to_string()))
                .and_then(|r| r)
            {
                Ok(p) => p,
                Err(e) => {
                    // Opencast gave up on this page: keep what is prepared before it (the
                    // position stops there), then report.
                    for (_, f) in inflight.drain(..) {
                        f.abort();
                    }
                    self.keep_prepared(pending, group, sum).await?;
                    return Err(e);
                }
            };
            pages += 1;
            sum.batches += 1;
            total = page_total.max(0) as u64;
            progress.set_total(known_before + total);
            progress.inc(commit.ids.len() as u64 + commit.dead_letters.len() as u64);
            if self.opts.wait.is_zero() {
                while inflight.len() < ahead && next_offset < total {
                    inflight.push_back((
                        next_offset,
                        self.spawn_fetch(&start, &end, next_offset, &permits),
                    ));
                    next_offset += batch;
                }
            }
            if let Some(m) = page_max {
                max_created = Some(max_created.map_or(m, |c| c.max(m)));
            }
            if !self.opts.wait.is_zero() && next_offset < total {
                tokio::time::sleep(self.opts.wait).await;
                inflight.push_back((
                    next_offset,
                    self.spawn_fetch(&start, &end, next_offset, &permits),
                ));
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
            group.push(commit);
            tracing::debug!(offset, total, "page prepared");
            // The next page joins this group only if it is prepared already: a prepared page
            // never waits for a fetch to be committed.
            let next_ready = inflight.front().is_some_and(|(_, f)| f.is_finished());
            if group.len() < MAX_GROUP_PAGES && !last && next_ready {
                continue;
            }
            if let Some(p) = pending.take() {
                account(sum, settle(p).await?);
            }
            pending = Some(self.spawn_commit(std::mem::take(&mut group)));
        }
        // The group is empty here (the last page flushes it); kept so that no prepared page can
        // ever be left uncommitted.
        self.keep_prepared(pending, group, sum).await?;
        if let Some(m) = max_created {
            sum.last_action_us = Some(sum.last_action_us.map_or(m, |c| c.max(m)));
        }
        tracing::info!(%start, %end, total, pages, "window harvested");
        Ok(())
    }

    /// Waits for the commit in flight, then commits the pages prepared after it.
    async fn keep_prepared(
        &self,
        pending: Option<PendingCommit>,
        group: Vec<PageCommit>,
        sum: &mut HarvestSummary,
    ) -> Result<(), HarvestError> {
        if let Some(p) = pending {
            account(sum, settle(p).await?);
        }
        if !group.is_empty() {
            account(sum, settle(self.spawn_commit(group)).await?);
        }
        Ok(())
    }

    /// Commits a group of pages on a blocking thread.
    fn spawn_commit(&self, pages: Vec<PageCommit>) -> PendingCommit {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.commit_pages(pages))
    }

    /// Fetches a window's pages as [`Harvester::harvest`] does (same client, page size and
    /// prefetch depth) and does nothing with them: the floor a harvest's time is compared with
    /// in the benchmarks. Only the first page is parsed, for the total. Returns (pages, bytes).
    pub async fn fetch_only(
        &self,
        start_us: i64,
        end_us: i64,
        decode: FetchDecode,
    ) -> Result<(u64, u64), HarvestError> {
        let tz = self.opts.tz;
        let (start, end) = (
            timefmt::format_compact(start_us, tz),
            timefmt::format_compact(end_us, tz),
        );
        let batch = self.opts.batch_size;
        let first = self.opencast.actions_url(&start, &end, batch, 0);
        let body = self.opencast.client().get_bytes(&first).await?;
        let total = ActionsPage::parse(&body)
            .map(|p| p.total.max(0) as u64)
            .unwrap_or(0);
        let offsets: Vec<u64> = (1..total.div_ceil(batch)).map(|p| p * batch).collect();
        let mut pages = 1;
        let mut bytes = body.len() as u64;
        let mut fetches = futures::stream::iter(offsets)
            .map(|o| {
                let oc = self.opencast.clone();
                let url = oc.actions_url(&start, &end, batch, o);
                tokio::spawn(async move {
                    let body = oc.client().get_bytes(&url).await?;
                    match decode {
                        FetchDecode::None => {}
                        FetchDecode::Skim => {
                            let _ = serde_json::from_slice::<serde::de::IgnoredAny>(&body);
                        }
                        FetchDecode::Full => {
                            if let Ok(page) = ActionsPage::parse(&body) {
                                std::hint::black_box(JudgedPage::judge(page, tz));
                            }
                        }
                    }
                    Ok::<_, OpencastError>(body.len())
                })
            })
            .buffered(self.opts.prefetch.max(1));
        while let Some(r) = fetches.next().await {
            let len = r.map_err(|e| HarvestError::Task(e.to_string()))??;
            pages += 1;
            bytes += len as u64;
        }
        Ok((pages, bytes))
    }
}

/// What [`Harvester::fetch_only`] does with each page: the floors a harvest is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FetchDecode {
    /// Nothing: the bare fetch.
    None,
    /// Reads the JSON through without building anything (serde's `IgnoredAny`).
    Skim,
    /// Decodes and judges the page as the harvest does, and drops it.
    Full,
}

/// A page ready to commit.
struct Prepared {
    total: i64,
    commit: PageCommit,
    newest: Option<i64>,
}

/// Looks up a judged page's episodes and builds (and encodes) its commit.
/// Returns the commit and the newest `created` on the page.
async fn prepare_page(
    page: JudgedPage<'_>,
    episodes: &EpisodeCache,
    concurrency: usize,
    source: &str,
) -> Result<Prepared, HarvestError> {
    let now = timefmt::now_us();
    let dead: Vec<(String, DeadLetter)> = page
        .rejected
        .into_iter()
        .map(|(raw, reason)| {
            tracing::warn!(%reason, "action quarantined in the dead-letter table");
            let key = dead_letter_key(&raw);
            (
                key,
                DeadLetter {
                    source: source.to_string(),
                    raw,
                    reason,
                    at_us: now,
                },
            )
        })
        .collect();
    // Records, interned strings and compact rows are made now, while the page's text is in
    // the CPU's cache; only the episodes are filled in after their look-ups.
    let total = page.total;
    let records: Vec<RecordRef> = page
        .actions
        .into_iter()
        .map(|a| RecordRef::new(a, None))
        .collect();
    let mut ids: Vec<i64> = Vec::with_capacity(records.len());
    let mut newest = None;
    let mut builder = codec::BlockBuilder::with_capacity(records.len());
    for r in &records {
        ids.push(r.action_id);
        newest = newest.max(Some(r.created_us));
        builder.push(r);
    }
    // Look up each distinct episode once (the cache coalesces across pages too).
    // Only the distinct ids are copied, not one per action.
    let mpids: Vec<String> = builder
        .media_packages()
        .iter()
        .map(|m| m.to_string())
        .collect();
    type Looked = (String, Result<Arc<Lookup>, Arc<OpencastError>>);
    let lookups: Vec<Looked> = futures::stream::iter(mpids)
        .map(|m: String| {
            let episodes = episodes.clone();
            async move {
                let r = episodes.get(&m).await;
                (m, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut blocks: HashMap<String, Option<Arc<EpisodeBlock>>> =
        HashMap::with_capacity(lookups.len());
    let mut new_episodes = Vec::new();
    for (mpid, res) in lookups {
        let l = res.map_err(HarvestError::Episode)?;
        if l.take_unjournaled() {
            new_episodes.push((mpid.clone(), l.entry.clone()));
        }
        blocks.insert(mpid, l.block.clone());
    }
    let block =
        (!builder.is_empty()).then(|| builder.finish(|mpid| blocks.get(mpid).cloned().flatten()));
    let commit = PageCommit {
        ids,
        block,
        dead_letters: dead,
        episodes: new_episodes,
        position: None,
        checkpoint: None,
    };
    Ok(Prepared {
        total,
        commit,
        newest,
    })
}

/// Waits for a commit to be durable.
async fn settle(commit: PendingCommit) -> Result<PageOutcome, HarvestError> {
    Ok(commit
        .await
        .map_err(|e| HarvestError::Task(e.to_string()))??)
}

fn account(sum: &mut HarvestSummary, out: PageOutcome) {
    sum.actions += out.appended;
    sum.duplicates += out.duplicates;
    sum.dead_letters += out.dead_letters;
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
        assert_eq!(
            w,
            vec![
                (0, 4_000_000),
                (4_000_000, 8_000_000),
                (8_000_000, 10_000_000)
            ]
        );
    }

    #[test]
    fn dead_letter_keys() {
        assert_eq!(dead_letter_key(r#"{"id":"12","x":1}"#), "id:12");
        assert!(dead_letter_key("{not json").starts_with("md5:"));
    }
}
