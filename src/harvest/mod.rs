//! Time window → pages → journal, the checkpoint in the same transaction as the last page.
//!
//! Pages are fetched a few ahead of the one being processed (the bare fetch is the floor of the
//! harvest's time). Each page is judged action by action: a good action becomes a record, a bad
//! one a dead letter with its raw text. The page is committed as one durable transaction; only
//! the transaction of a window's last page moves the checkpoint, so a crash never leaves the
//! checkpoint past data the journal does not hold.
//!
//! Two dialects ask for the pages ([`crate::opencast::Api`]): a window (`start`/`end`, the DCE
//! build), paged here, or days (`day=YYYYMMDD`, every stock release), read and proven complete
//! day by day in [`stock`] with the same page pipeline.

mod api;
mod stock;

pub use api::ApiChoice;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::episodes::{EpisodeCache, Lookup};
use crate::journal::days::DayRange;
use crate::journal::{
    codec, DeadLetter, EpisodeEntry, HarvestPosition, Journal, JournalError, PageCommit,
    PageOutcome,
};
use crate::opencast::{ActionsPage, ActionsQuery, Api, JudgedPage, Opencast, OpencastError};
use crate::progress::Progress;
use crate::record::{EpisodeBlock, RecordRef};
use crate::shutdown::Shutdown;
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
    #[error(
        "Opencast has no /usertracking endpoint at {url} (404). From Opencast 13 usertracking is \
         a plugin, off by default: set `opencast-plugin-usertracking = on` in \
         etc/org.opencastproject.plugin.impl.PluginManagerImpl.cfg on the engage node and restart \
         it (and enable the player's tracking plugin to record anything), or check \
         MATTERHORN_ENGAGE_HOST"
    )]
    UsertrackingMissing { url: String },
    /// A stock day could not be proven complete: the checkpoint stays before it.
    #[error("{0}")]
    Unproven(String),
    #[error("harvest interrupted by shutdown (every committed page is kept; the checkpoint did not move past them)")]
    Interrupted,
}

/// Requests to Opencast in flight at once by default (`--max-in-flight`,
/// `OPENCAST_MAX_IN_FLIGHT`).
///
/// Each page request is a query with a deep `OFFSET` on Opencast's database, and Opencast serves
/// its viewers from the same database. The original harvester sent one request at a time with
/// a second between pages; 12 in flight (the benchmarked figure) is 12 such queries at once. Four
/// keep a catch-up of a large backlog well ahead of Opencast's own page time (a page of 1,000
/// rows takes tens of milliseconds to produce, and four overlap the network round trips and
/// our decoding), while a production database sees at most four of our queries; a cron run of
/// two minutes of actions is one or two pages and does not notice the difference.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// The range `--max-in-flight` accepts.
pub const MAX_IN_FLIGHT_RANGE: std::ops::RangeInclusive<usize> = 1..=64;

/// How to harvest one or more windows.
#[derive(Debug, Clone)]
pub struct HarvestOptions {
    pub batch_size: u64,
    /// Pause between pages (the original's `--wait`); disables prefetching when set.
    pub wait: Duration,
    pub tz: Tz,
    pub update_checkpoint: bool,
    /// Page requests to Opencast in flight at most (`--max-in-flight`). With a `wait`, one.
    pub prefetch: usize,
    /// Pages fetched or being prepared ahead of the one being committed: a page held up (by an
    /// episode look-up, a retry) does not stop the requests behind it. With 20 ms of server
    /// latency a page spends two round trips in the pipeline (its fetch, then its episodes),
    /// so 24 pages ahead capped the harvest below what 12 requests in flight can fetch; 48 do
    /// not (each page waiting holds its ~370 KB body).
    pub ahead: usize,
    /// Concurrent episode look-ups per page.
    pub episode_concurrency: usize,
    /// How user actions are asked for (`OPENCAST_API`).
    pub api: ApiChoice,
}

impl Default for HarvestOptions {
    fn default() -> Self {
        HarvestOptions {
            batch_size: 1000,
            wait: Duration::ZERO,
            tz: Tz::UTC,
            update_checkpoint: true,
            prefetch: DEFAULT_MAX_IN_FLIGHT,
            ahead: 48,
            episode_concurrency: 8,
            api: ApiChoice::Auto,
        }
    }
}

/// Figures of a harvest, for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct HarvestSummary {
    pub windows: u64,
    pub actions: u64,
    pub batches: u64,
    /// Actions already journaled, read again: the overlap before the checkpoint
    /// (`HARVEST_OVERLAP`), overlapping pages, the checkpoint's own second.
    pub duplicates: u64,
    pub dead_letters: u64,
    /// Actions whose `created` lies outside the window asked for: kept, but they never move
    /// the checkpoint.
    pub outside_window: u64,
    pub episodes_fetched: u64,
    pub request_retries: u64,
    pub last_action_us: Option<i64>,
    pub seconds: f64,
    /// The dialect used: `windowed` or `stock`.
    pub api: Option<Api>,
    /// Stock: days read again from their first row because the quick read did not add up.
    pub day_rereads: u64,
    /// Stock: windows holding an instant no `day` query reaches (a day's first second).
    pub unreachable_windows: u64,
    /// Stock: seconds spent waiting for the server clock's second a query needed.
    pub clock_wait_seconds: f64,
    /// Actions whose user, address or session Opencast sent as `-omitted-`.
    pub omitted: u64,
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
            outside_window = self.outside_window,
            episodes_fetched = self.episodes_fetched,
            api = self.api.map(Api::name).unwrap_or("-"),
            day_rereads = self.day_rereads,
            unreachable_windows = self.unreachable_windows,
            clock_wait_s = format!("{:.1}", self.clock_wait_seconds),
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
    opencast: Opencast,
    episodes: EpisodeCache,
    journal: Arc<Journal>,
    opts: HarvestOptions,
    /// Once it fires, the page in hand is committed and the harvest stops.
    shutdown: Shutdown,
    /// A permit per page request to Opencast in flight: `--max-in-flight`.
    requests: Arc<Semaphore>,
    /// The server's clock, as its `Date` headers show it (stock: the `day` bug).
    clock: std::sync::Mutex<stock::ServerClock>,
    /// Stock: paging a whole day missed rows, so the order changes between queries.
    order_unstable: std::sync::atomic::AtomicBool,
    /// The server's clock was read to the tick of its second this run (before timed reads).
    clock_precise: std::sync::atomic::AtomicBool,
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
        let in_flight = if opts.wait.is_zero() {
            opts.prefetch.max(1)
        } else {
            1
        };
        let requests = Arc::new(Semaphore::new(in_flight));
        Harvester {
            opencast,
            // Episode look-ups keep their own bound (MAX_EPISODE_REQUESTS): sharing these
            // permits queued a page's look-ups behind every page fetch planned ahead, which
            // stalled the pipeline and a shutdown's "finish the page in hand".
            episodes,
            journal,
            opts,
            shutdown: Shutdown::never(),
            requests,
            clock: std::sync::Mutex::new(stock::ServerClock::default()),
            order_unstable: std::sync::atomic::AtomicBool::new(false),
            clock_precise: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn clock(&self) -> stock::ServerClock {
        *self.clock.lock().expect("clock lock")
    }

    /// Learns the server's clock from a `Date` header read between `sent_us` and `received_us`.
    fn learn_clock(&self, date: Option<&str>, sent_us: i64, received_us: i64) {
        if let Some(c) = date.and_then(|d| stock::ServerClock::from_date(d, sent_us, received_us)) {
            if c.offset_us != 0 {
                tracing::warn!(
                    offset_s = format!("{:+.1}", c.offset_us as f64 / 1e6),
                    "Opencast's clock is off from this machine's; the first and last minute of a \
                     day are read at the server's second 0 and 59, which works best when both \
                     clocks are synchronised (NTP)"
                );
            }
            *self.clock.lock().expect("clock lock") = c;
        }
    }

    fn order_unstable(&self) -> bool {
        self.order_unstable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_order_unstable(&self) {
        self.order_unstable
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The same harvester, stopping at the page in hand once `shutdown` fires (`run`); without
    /// one, a harvest runs to its end.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Harvester {
        self.shutdown = shutdown;
        self
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_shutdown()
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
        let api = self.resolve_api().await?;
        sum.api = Some(api);
        {
            // The day counts a `day` query's total is checked against, in the server's zone
            // (kept in both dialects, so that a switch to `stock` finds them current).
            let journal = self.journal.clone();
            let tz = self.opts.tz;
            let counted = tokio::task::spawn_blocking(move || journal.ensure_day_stats(tz))
                .await
                .map_err(|e| HarvestError::Task(e.to_string()))??;
            if counted > 0 {
                tracing::info!(records = counted, "journal's day counts brought up to date");
            }
        }
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
            let res = match api {
                Api::Windowed => {
                    self.harvest_window(*s, *e, &mut sum, &progress, known)
                        .await
                }
                Api::Stock => self.harvest_days(*s, *e, &mut sum, &progress, known).await,
            };
            known = progress.total();
            if res.is_err() {
                progress.finish();
            }
            if matches!(res, Err(HarvestError::Unproven(_))) {
                // Its pages were all read, but the window is not complete: `journal stats`
                // must not say it is.
                let j = self.journal.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || j.mark_position_unproven()).await
                {
                    tracing::warn!(error = %e, "cannot mark the harvest position unproven");
                }
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
        if sum.omitted > 0 {
            tracing::warn!(
                actions = sum.omitted,
                "Opencast sent `-omitted-` for the user, address or session of some actions: its \
                 privacy settings (log.user, log.ip, log.session in \
                 etc/org.opencastproject.usertracking.impl.UserTrackingServiceImpl.cfg, false by \
                 default from Opencast 6.0) keep them back. Records keep what Opencast sent; set \
                 those to true on the engage node to harvest them"
            );
        }
        Ok(sum)
    }

    /// Fetches, decodes, judges, enriches and encodes one page in its own task, so that several
    /// pages are prepared in parallel while commits go one at a time, in order.
    fn spawn_fetch(&self, w: &Window, offset: u64) -> PageFetch {
        let oc = self.opencast.clone();
        let permits = self.requests.clone();
        let limit = w.limit.unwrap_or(self.opts.batch_size);
        let url = oc.actions_query_url(&w.query, limit, offset);
        let episodes = self.episodes.clone();
        let (tz, concurrency) = (self.opts.tz, self.opts.episode_concurrency.max(1));
        let scope = PageScope {
            tz,
            bounds: w.bounds,
            keep_only: w.keep_only,
            day: w.day,
            source: w.query.source(offset),
            head: match w.day {
                Some(_) if offset > 0 => day_overlap(limit) as usize,
                _ => 0,
            },
        };
        tokio::spawn(async move {
            // A body that does not decode as a page (truncated, an HTML error page) is retried
            // like a 5xx, within the client's retry budget.
            let mut attempt = 0;
            loop {
                // A permit per request in flight, handed back as soon as the body is in: pages
                // are requested in order, and the next request never waits for this page's
                // processing.
                let (body, sent_us, received_us) = {
                    let _permit = permits
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    let sent_us = timefmt::now_us();
                    let body = oc.actions_body(&url).await.map_err(api::actions_error)?;
                    (body, sent_us, timefmt::now_us())
                };
                match ActionsPage::parse(&body) {
                    Ok(page) => {
                        let judged = JudgedPage::judge(page, tz);
                        let mut p = prepare_page(judged, &episodes, concurrency, &scope).await?;
                        p.asked = (sent_us, received_us);
                        return Ok(p);
                    }
                    // A complete body of the wrong shape says the same next time: final.
                    Err(e) if !e.is_truncation() => {
                        return Err(HarvestError::Opencast(OpencastError::Unexpected {
                            url: url.to_string(),
                            why: format!("not a user-actions page ({} bytes): {e}", body.len()),
                        }))
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

    /// Harvests one window with `start`/`end` (the windowed dialect).
    async fn harvest_window(
        &self,
        start_us: i64,
        end_us: i64,
        sum: &mut HarvestSummary,
        progress: &Progress,
        known_before: u64,
    ) -> Result<(), HarvestError> {
        let tz = self.opts.tz;
        let w = Window {
            query: ActionsQuery::Window {
                start: timefmt::format_compact(start_us, tz),
                end: timefmt::format_compact(end_us, tz),
            },
            // Opencast's `end` is a whole second, inclusive.
            bounds: (start_us, end_us.saturating_add(999_999)),
            keep_only: false,
            day: None,
            limit: None,
            sets_checkpoint: self.opts.update_checkpoint,
        };
        let seen = self
            .read_pages(&w, 0, None, sum, progress, known_before)
            .await?;
        seen.report(&w, tz, sum);
        Ok(())
    }

    /// Reads the pages of `w` from `first_offset` to the end (or, with `stop_after_us`, until a
    /// page reaches that `created`: rows in `created` order), committing each; returns what
    /// the pages showed.
    async fn read_pages(
        &self,
        w: &Window,
        first_offset: u64,
        stop_after_us: Option<i64>,
        sum: &mut HarvestSummary,
        progress: &Progress,
        known_before: u64,
    ) -> Result<WindowSeen, HarvestError> {
        let (start_us, end_us) = w.bounds;
        let ahead = if w.limit.is_some() {
            1
        } else {
            self.pages_ahead()
        };
        // The checkpoint never moves backwards, whatever window is harvested.
        let old_checkpoint = self.journal.checkpoint()?.map(|c| c.last_action_us);
        let mut inflight: VecDeque<(u64, PageFetch)> = VecDeque::new();
        inflight.push_back((first_offset, self.spawn_fetch(w, first_offset)));
        let batch = w.limit.unwrap_or(self.opts.batch_size);
        let mut paging = Paging::starting_at(batch, first_offset);
        if w.day.is_some() {
            // A `day` query's bounds move with the server clock's second: each second that
            // passes drops the first minute's rows of the second gone by, and every later row
            // moves up by as many. Pages that repeat the end of the one before lose none of them
            // (what is read twice is skipped by id); what still slips through, the day's proof
            // finds.
            paging.overlap = day_overlap(batch);
            paging.next_offset = first_offset.saturating_add(batch - paging.overlap);
        }
        let mut seen = WindowSeen::new();
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
                self.abandon(&mut inflight, pending, group, sum).await?;
                return Err(HarvestError::Interrupted);
            }
            let page = match fetch
                .await
                .map_err(|e| HarvestError::Task(e.to_string()))
                .and_then(|r| r)
            {
                Ok(p) => p,
                Err(e) => {
                    // Opencast gave up on this page: keep what is prepared before it (the
                    // position stops there), then report.
                    self.abandon(&mut inflight, pending, group, sum).await?;
                    return Err(e);
                }
            };
            seen.add(&page);
            if let Some(day) = w.day.filter(|_| seen.total > MAX_DAY_ACTIONS) {
                // No day of user actions is that large: paging it would never end.
                self.abandon(&mut inflight, pending, group, sum).await?;
                return Err(HarvestError::Unproven(format!(
                    "Opencast counts {} actions on day {}, more than any real day holds \
                     ({MAX_DAY_ACTIONS} at most are read): its answers are not to be trusted; \
                     the checkpoint stays before this day",
                    seen.total,
                    day.param()
                )));
            }
            sum.batches += 1;
            sum.omitted += page.omitted;
            progress.set_total(known_before + seen.total);
            progress.inc(page.rows);
            self.follow_paging(w, &mut paging, &mut inflight, offset, &page, seen.total);
            if w.limit.is_some() || stop_after_us.is_some_and(|t| page.last_created >= Some(t)) {
                // One page was asked for, or the rows wanted are in (in `created` order).
                paging.ended = true;
                for (_, f) in inflight.drain(..) {
                    f.abort();
                }
            }
            self.plan_ahead(w, &mut paging, &mut inflight, seen.total, ahead)
                .await;
            let (rows, mut commit) = (page.rows, page.commit);
            let last = inflight.is_empty();
            commit.position = Some(seen.position((start_us, end_us), offset, rows, last));
            if last && w.sets_checkpoint {
                commit.checkpoint = seen.checkpoint_past(old_checkpoint);
            }
            group.push(commit);
            tracing::debug!(offset, rows, total = seen.total, "page prepared");
            // The next page joins this group only if it is prepared already: a prepared page
            // never waits for a fetch to be committed.
            let next_ready = inflight.front().is_some_and(|(_, f)| f.is_finished());
            if group.len() < MAX_GROUP_PAGES && !last && next_ready {
                continue;
            }
            pending = Some(self.commit_next(pending.take(), &mut group, sum).await?);
        }
        // The group is empty here (the last page flushes it); kept so that no prepared page can
        // ever be left uncommitted.
        self.keep_prepared(pending, group, sum).await?;
        Ok(seen)
    }

    /// Pages fetched or prepared ahead of the one being committed.
    fn pages_ahead(&self) -> usize {
        if !self.opts.wait.is_zero() {
            return 1;
        }
        let p = self.opts.prefetch.max(1);
        // `ahead` is meant for pages of 1,000 actions: larger pages get fewer pages ahead
        // (never fewer than the requests in flight), so that `-b 10000` does not hold 48
        // bodies of 3.7 MB waiting for their episodes (~400 MB peak; now ~170 MB).
        let scaled = self.opts.ahead.saturating_mul(1000) / (self.opts.batch_size.max(1) as usize);
        scaled.min(self.opts.ahead).max(p)
    }

    /// Judges the page just taken against the plan ([`Paging::after_page`]) and acts on it.
    fn follow_paging(
        &self,
        w: &Window,
        paging: &mut Paging,
        inflight: &mut VecDeque<(u64, PageFetch)>,
        offset: u64,
        page: &Prepared,
        total: u64,
    ) {
        let next_planned = inflight.front().map(|(o, _)| *o);
        let ids = page.commit.ids.first().zip(page.commit.ids.last());
        let ids = ids.map(|(a, b)| (*a, *b));
        match paging.after_page(offset, page.rows, ids, total, next_planned) {
            Step::Go => {}
            Step::End => {
                // Whatever `total` claims, nothing comes after an empty page.
                for (_, f) in inflight.drain(..) {
                    f.abort();
                }
            }
            Step::Fill(at) => {
                // A short page that is not the last: the rows between what it held and
                // the next planned page are asked for first.
                inflight.push_front((at, self.spawn_fetch(w, at)));
            }
        }
    }

    /// Asks for the next pages: up to `ahead` in flight, or one after `--wait` once the last is
    /// in.
    async fn plan_ahead(
        &self,
        w: &Window,
        paging: &mut Paging,
        inflight: &mut VecDeque<(u64, PageFetch)>,
        total: u64,
        ahead: usize,
    ) {
        if self.opts.wait.is_zero() {
            while inflight.len() < ahead && paging.next_offset < total && !paging.ended {
                let o = paging.plan();
                inflight.push_back((o, self.spawn_fetch(w, o)));
            }
        } else if inflight.is_empty() && paging.next_offset < total && !paging.ended {
            tokio::time::sleep(self.opts.wait).await;
            let o = paging.plan();
            inflight.push_back((o, self.spawn_fetch(w, o)));
        }
    }

    /// Stops a window part way: drops the fetches in flight and commits what is prepared.
    async fn abandon(
        &self,
        inflight: &mut VecDeque<(u64, PageFetch)>,
        pending: Option<PendingCommit>,
        group: Vec<PageCommit>,
        sum: &mut HarvestSummary,
    ) -> Result<(), HarvestError> {
        for (_, f) in inflight.drain(..) {
            f.abort();
        }
        self.keep_prepared(pending, group, sum).await
    }

    /// Waits for the commit in flight, then starts committing `group` (emptied).
    async fn commit_next(
        &self,
        pending: Option<PendingCommit>,
        group: &mut Vec<PageCommit>,
        sum: &mut HarvestSummary,
    ) -> Result<PendingCommit, HarvestError> {
        if let Some(p) = pending {
            account(sum, settle(p).await?);
        }
        Ok(self.spawn_commit(std::mem::take(group)))
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
        let query = ActionsQuery::Window { start, end };
        let first = self.opencast.actions_query_url(&query, batch, 0);
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
                let url = oc.actions_query_url(&query, batch, o);
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchDecode {
    /// Nothing: the bare fetch.
    None,
    /// Reads the JSON through without building anything (serde's `IgnoredAny`).
    Skim,
    /// Decodes and judges the page as the harvest does, and drops it.
    Full,
}

/// One query being paged, and what to do with its rows.
struct Window {
    query: ActionsQuery,
    /// The `created` times the window asks for, both inclusive (µs).
    bounds: (i64, i64),
    /// Rows outside `bounds` are not journaled (a `day` query answers a whole day for a window
    /// that is part of it); they still count as seen.
    keep_only: bool,
    /// The day a `day` query asks for.
    day: Option<DayRange>,
    /// One page of this many rows, instead of paging by the batch size.
    limit: Option<u64>,
    /// The last page's commit moves the checkpoint (a stock day moves it once proven).
    sets_checkpoint: bool,
}

/// The most actions one `day` query may count before its answers are refused: 1,000 a second
/// for a whole day, far beyond any lecture-capture site (a day of 2 million is a big one).
const MAX_DAY_ACTIONS: u64 = 86_400_000;

/// How many rows a `day` page repeats of the page before it (2%, 1 to 100).
fn day_overlap(batch: u64) -> u64 {
    (batch / 50).clamp(1, 100).min(batch.saturating_sub(1))
}

/// What a page task needs to know of its window.
struct PageScope {
    tz: Tz,
    bounds: (i64, i64),
    keep_only: bool,
    day: Option<DayRange>,
    source: String,
    /// The page's first rows that repeat the page before (a `day` page after the first).
    head: usize,
}

/// What a window's pages showed so far.
#[derive(Debug, Default)]
struct WindowSeen {
    /// The window's total as the last page gave it.
    total: u64,
    pages: u64,
    /// The newest `created` within the window's bounds.
    max_created: Option<i64>,
    /// Actions created outside the window's bounds.
    outside: u64,
    /// The total of the page answered last, and when it was asked and answered (local µs).
    last_answer: Option<(u64, i64, i64)>,
}

impl WindowSeen {
    fn new() -> WindowSeen {
        WindowSeen::default()
    }

    fn add(&mut self, page: &Prepared) {
        self.pages += 1;
        self.total = page.total.max(0) as u64;
        self.outside += page.outside;
        if let Some(m) = page.newest {
            self.max_created = Some(self.max_created.map_or(m, |c| c.max(m)));
        }
        let (sent, received) = page.asked;
        if self.last_answer.is_none_or(|(_, _, r)| received >= r) {
            self.last_answer = Some((self.total, sent, received));
        }
    }

    /// Where the harvest of `window` stands once the page at `offset` with `rows` is committed.
    fn position(&self, window: (i64, i64), offset: u64, rows: u64, last: bool) -> HarvestPosition {
        HarvestPosition {
            window_start_us: window.0,
            window_end_us: window.1,
            next_offset: offset.saturating_add(rows),
            pages: self.pages,
            max_created_us: self.max_created,
            complete: last,
            updated_at_us: timefmt::now_us(),
        }
    }

    /// The checkpoint the window's last page moves to: its newest `created`, if past `old`
    /// (the checkpoint never moves backwards).
    fn checkpoint_past(&self, old: Option<i64>) -> Option<i64> {
        self.max_created.filter(|m| old.is_none_or(|c| *m > c))
    }

    /// Adds the window to the summary and logs it.
    fn report(&self, w: &Window, tz: Tz, sum: &mut HarvestSummary) {
        if let Some(m) = self.max_created {
            sum.last_action_us = Some(sum.last_action_us.map_or(m, |c| c.max(m)));
        }
        let (outside, total, pages) = (self.outside, self.total, self.pages);
        let start = timefmt::format_compact(w.bounds.0, tz);
        let end = timefmt::format_compact(w.bounds.1, tz);
        if outside > 0 && !w.keep_only {
            sum.outside_window += outside;
            tracing::warn!(
                outside,
                start = %start,
                end = %end,
                "Opencast sent actions created outside the window asked for: they are journaled, \
                 but the checkpoint does not move past the window's end"
            );
        }
        tracing::info!(start = %start, end = %end, total, pages, "window harvested");
    }
}

/// Where the pages of a window start. Offsets advance by the rows Opencast sent, never by the
/// page size asked for: a server that caps its pages below `-b` would otherwise have the rows
/// past its cap skipped on every page. Pages are planned ahead at the expected stride (the
/// page size, or the cap once one is seen), so the normal case keeps its requests in flight;
/// a page that comes back short of the next planned offset has the gap asked for at once.
#[derive(Debug)]
struct Paging {
    batch: u64,
    /// Rows a page is expected to hold: the page size asked for, or the server's cap.
    stride: u64,
    /// The offset the next planned page starts at.
    next_offset: u64,
    /// An empty page (or one repeating the last) was seen: nothing more is planned.
    ended: bool,
    warned_short: bool,
    /// First id, last id and rows of the last page with ids: a server that ignores `offset`
    /// sends the same page again, and would otherwise be paged through until its `total`.
    last_page: Option<(i64, i64, u64)>,
    /// Rows each planned page repeats of the one before (stock `day` queries, whose rows move
    /// with the server clock's second).
    overlap: u64,
}

/// What comes after a page.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Carry on with the plan.
    Go,
    /// The window ends here: drop what is planned.
    End,
    /// Ask for the rows from this offset first.
    Fill(u64),
}

impl Paging {
    #[cfg(test)]
    fn new(batch: u64) -> Paging {
        Paging::starting_at(batch, 0)
    }

    /// Paging whose first page is the one at `first` (already asked for).
    fn starting_at(batch: u64, first: u64) -> Paging {
        let batch = batch.max(1);
        Paging {
            batch,
            stride: batch,
            next_offset: first.saturating_add(batch),
            overlap: 0,
            ended: false,
            warned_short: false,
            last_page: None,
        }
    }

    /// Plans the next page: its offset.
    fn plan(&mut self) -> u64 {
        let o = self.next_offset;
        let step = self.stride.saturating_sub(self.overlap).max(1);
        self.next_offset = o.saturating_add(step);
        o
    }

    /// Judges the page at `offset` that held `rows` (accepted and rejected actions) and whose
    /// first and last ids were `ids`, given the server's `total` and the offset of the next
    /// page already asked for.
    fn after_page(
        &mut self,
        offset: u64,
        rows: u64,
        ids: Option<(i64, i64)>,
        total: u64,
        next_planned: Option<u64>,
    ) -> Step {
        if self.ended {
            return Step::End;
        }
        if rows == 0 {
            if offset < total {
                tracing::warn!(
                    offset,
                    total,
                    "Opencast sent an empty page although its total says there are more rows; \
                     the window ends here"
                );
            }
            self.ended = true;
            return Step::End;
        }
        if let Some((first, last)) = ids {
            let this = (first, last, rows);
            if self.last_page == Some(this) {
                tracing::warn!(
                    offset,
                    total,
                    "Opencast sent the same page for another offset (it ignores the offset?); \
                     the window ends here"
                );
                self.ended = true;
                return Step::End;
            }
            self.last_page = Some(this);
        }
        if rows > self.stride {
            // The server is not capped where we thought: plan full pages again.
            self.stride = rows.min(self.batch);
        }
        let covered = offset.saturating_add(rows);
        let next = next_planned.unwrap_or(self.next_offset);
        if covered >= next || covered >= total {
            return Step::Go;
        }
        if !self.warned_short {
            self.warned_short = true;
            tracing::warn!(
                offset,
                rows,
                asked = self.batch,
                total,
                "Opencast sent fewer rows than asked for on a page that is not the last (a \
                 server page cap?); paging on by the rows received"
            );
        }
        self.stride = rows;
        match next_planned {
            Some(_) => Step::Fill(covered),
            None => {
                self.next_offset = covered;
                Step::Go
            }
        }
    }
}

/// A page ready to commit.
struct Prepared {
    total: i64,
    /// Actions on the page, accepted and rejected.
    rows: u64,
    commit: PageCommit,
    /// The newest `created` on the page within the window's bounds.
    newest: Option<i64>,
    /// Actions on the page created outside the window's bounds.
    outside: u64,
    /// The newest `created` on the page, inside the bounds or not.
    last_created: Option<i64>,
    /// When the page was asked for and answered (local µs).
    asked: (i64, i64),
    /// Actions whose user, address or session is Opencast's `-omitted-` (privacy settings).
    omitted: u64,
}

/// Looks up a judged page's episodes and builds (and encodes) its commit.
/// Returns the commit and the newest `created` on the page.
async fn prepare_page(
    page: JudgedPage<'_>,
    episodes: &EpisodeCache,
    concurrency: usize,
    scope: &PageScope,
) -> Result<Prepared, HarvestError> {
    let (from_us, to_us) = scope.bounds;
    let rows = (page.actions.len() + page.rejected.len()) as u64;
    let omitted = page.omitted;
    let dead_created: Vec<Option<i64>> = page
        .rejected
        .iter()
        .map(|(raw, _)| scope.day.and_then(|_| lenient_created(raw, scope.tz)))
        .collect();
    let dead = quarantine(page.rejected, &scope.source);
    // Records, interned strings and compact rows are made now, while the page's text is in
    // the CPU's cache; only the episodes are filled in after their look-ups.
    let total = page.total;
    let mut seen_only = Vec::new();
    let mut last_created = None;
    let records: Vec<RecordRef> = page
        .actions
        .into_iter()
        .filter(|a| {
            last_created = last_created.max(Some(a.created_us));
            let inside = (from_us..=to_us).contains(&a.created_us);
            if !inside && scope.keep_only {
                seen_only.push((a.id, a.created_us));
            }
            inside || !scope.keep_only
        })
        .map(|a| RecordRef::new(a, None))
        .collect();
    let mut ids: Vec<i64> = Vec::with_capacity(records.len());
    let mut created: Vec<i64> = Vec::with_capacity(records.len());
    let mut newest = None;
    let mut outside = seen_only.len() as u64;
    // A stock page's first rows repeat the end of the page before: encoded apart (see
    // `PageCommit::head`).
    let head_n = scope.head.min(records.len());
    let mut head = codec::BlockBuilder::with_capacity(head_n);
    let mut builder = codec::BlockBuilder::with_capacity(records.len() - head_n);
    for (i, r) in records.iter().enumerate() {
        ids.push(r.action_id);
        created.push(r.created_us);
        // An action outside the window (a server's bad clock, `9999-12-31`) is kept, but
        // only those inside it can move the checkpoint.
        if (from_us..=to_us).contains(&r.created_us) {
            newest = newest.max(Some(r.created_us));
        } else {
            outside += 1;
        }
        if i < head_n {
            head.push(r);
        } else {
            builder.push(r);
        }
    }
    let mut mpids: Vec<&str> = head.media_packages().to_vec();
    for m in builder.media_packages() {
        if !head.media_packages().contains(m) {
            mpids.push(m);
        }
    }
    let (blocks, new_episodes) = look_up_episodes(&mpids, episodes, concurrency).await?;
    let block =
        (!builder.is_empty()).then(|| builder.finish(|mpid| blocks.get(mpid).cloned().flatten()));
    let head = (!head.is_empty()).then(|| {
        (
            head_n,
            head.finish(|mpid| blocks.get(mpid).cloned().flatten()),
        )
    });
    let commit = PageCommit {
        ids,
        block,
        head,
        dead_letters: dead,
        episodes: new_episodes,
        position: None,
        checkpoint: None,
        created,
        dead_created,
        seen_only,
        query_day: scope.day,
    };
    Ok(Prepared {
        total,
        rows,
        commit,
        newest,
        outside,
        last_created,
        asked: (0, 0),
        omitted,
    })
}

/// The `created` of a raw action that did not become a record, when it can be read: the day
/// counts place it.
fn lenient_created(raw: &str, tz: Tz) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct CreatedOnly {
        created: Option<String>,
    }
    let c = serde_json::from_str::<CreatedOnly>(raw).ok()?.created?;
    timefmt::parse_xsd(&c, tz).ok()
}

/// A page's rejected actions as dead letters, each under its key.
fn quarantine(rejected: Vec<(String, String)>, source: &str) -> Vec<(String, DeadLetter)> {
    let now = timefmt::now_us();
    rejected
        .into_iter()
        .map(|(raw, reason)| {
            let key = dead_letter_key(&raw);
            // The reason may quote the offending value (a user id, an address): it is kept with
            // the raw text in the journal, and the log names only the action.
            tracing::warn!(
                action = %key,
                "action quarantined in the dead-letter table (its reason: harvester journal dump --dead-letters)"
            );
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
        .collect()
}

/// Each episode's block by media package id, and the episodes the journal does not hold yet.
type PageEpisodes = (
    HashMap<String, Option<Arc<EpisodeBlock>>>,
    Vec<(String, EpisodeEntry)>,
);

/// Looks up each distinct episode of a page once (the cache coalesces across pages too).
async fn look_up_episodes(
    media_packages: &[&str],
    episodes: &EpisodeCache,
    concurrency: usize,
) -> Result<PageEpisodes, HarvestError> {
    // Only the distinct ids are copied, not one per action.
    let mpids: Vec<String> = media_packages.iter().map(|m| m.to_string()).collect();
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
    Ok((blocks, new_episodes))
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

    /// Plays a server holding `rows` rows, capped at `cap` per page, through [`Paging`] as
    /// `harvest_window` does with up to `ahead` pages planned; returns the rows read (each
    /// once) and the requests made.
    fn page_through(rows: u64, cap: u64, batch: u64, ahead: usize, total: u64) -> (Vec<u64>, u64) {
        let mut p = Paging::new(batch);
        let mut queue: VecDeque<u64> = VecDeque::from([0]);
        let mut seen = std::collections::BTreeSet::new();
        let mut requests = 0;
        while let Some(offset) = queue.pop_front() {
            requests += 1;
            assert!(requests < 10_000, "paging never ends");
            let got: Vec<u64> = (offset..rows.min(offset + cap.min(batch))).collect();
            seen.extend(got.iter().copied());
            let ids = got
                .first()
                .zip(got.last())
                .map(|(a, b)| (*a as i64, *b as i64));
            match p.after_page(offset, got.len() as u64, ids, total, queue.front().copied()) {
                Step::Go => {}
                Step::End => queue.clear(),
                Step::Fill(at) => queue.push_front(at),
            }
            while queue.len() < ahead && p.next_offset < total && !p.ended {
                queue.push_back(p.plan());
            }
        }
        (seen.into_iter().collect(), requests)
    }

    #[test]
    fn paging_reads_every_row_whatever_the_server_cap() {
        for (rows, cap, batch, ahead) in [
            (50, 7, 10, 1),
            (50, 7, 10, 5),
            (50, 7, 10, 48),
            (1000, 1000, 100, 12),
            (1001, 3, 100, 12),
            (999, 100, 100, 4),
        ] {
            let (seen, requests) = page_through(rows, cap, batch, ahead, rows);
            assert_eq!(
                seen,
                (0..rows).collect::<Vec<_>>(),
                "{rows} rows, cap {cap}"
            );
            let pages = rows.div_ceil(cap.min(batch));
            assert!(requests <= pages + ahead as u64 + 1, "{requests} requests");
        }
    }

    #[test]
    fn an_empty_page_ends_the_window_whatever_the_total() {
        let (seen, requests) = page_through(0, 10, 10, 12, u64::MAX / 2);
        assert!(seen.is_empty());
        assert_eq!(requests, 1);
        let (seen, requests) = page_through(25, 10, 10, 12, 1_000_000_000_000_000);
        assert_eq!(seen.len(), 25);
        assert!(requests <= 13, "{requests}");
    }

    #[test]
    fn a_server_that_ignores_the_offset_is_not_paged_forever() {
        let mut p = Paging::new(10);
        assert_eq!(p.after_page(0, 10, Some((1, 10)), u64::MAX, None), Step::Go);
        assert_eq!(
            p.after_page(10, 10, Some((1, 10)), u64::MAX, None),
            Step::End
        );
    }

    #[test]
    fn dead_letter_keys() {
        assert_eq!(dead_letter_key(r#"{"id":"12","x":1}"#), "id:12");
        assert!(dead_letter_key("{not json").starts_with("md5:"));
    }
}
