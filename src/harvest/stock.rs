//! Stock Opencast: a window harvested through `day=YYYYMMDD` queries, each day proven complete
//! before the checkpoint may pass it.
//!
//! A stock release has no query for a time window, only for a day, and pages have no
//! `ORDER BY`. So each day the window touches is read and then **proven**: the journal's count
//! of that day's actions ([`crate::journal::days`]: those it holds, and those a query returned
//! outside a window, each once) must equal the `total` Opencast answered. Three reads, each tried
//! when the one before does not add up:
//!
//! 1. *quick*: from where the journal's rows of the day probably end (rows usually come in
//!    `created` order, an index scan): a cron run over two minutes costs a page or two, not a
//!    re-read of the day;
//! 2. *whole day*: from the first row (any order that stays the same between queries);
//! 3. *one request*: the whole day in one page (a server whose order changes with every query).
//!
//! **The `day` bug.** Opencast builds the day's bounds from its clock and keeps the clock's
//! seconds: a query answered at second SS.mmm covers `[D 00:00:SS.mmm, D 23:59:SS.mmm]`. The
//! first minute of a day is therefore read with a query timed at the server clock's second 0,
//! the last minute with one at second 59. What lies before `00:00:00.mmm` of a day (on
//! MySQL/MariaDB, which keeps whole seconds: the actions of exactly `00:00:00`) is reached by
//! no `day` query at all, and by no other query at a sane cost (the whole table): a window
//! holding that instant is counted and logged as such ([`HarvestSummary::unreachable_windows`]).

use std::time::Duration;

use super::{HarvestError, HarvestSummary, Harvester, Window, WindowSeen};
use crate::journal::days::{DayRange, DayStats};
use crate::journal::Checkpoint;
use crate::opencast::ActionsQuery;
use crate::progress::Progress;
use crate::timefmt;

const SECOND_US: i64 = 1_000_000;
const MINUTE_US: i64 = 60 * SECOND_US;
/// Rows re-read before where the journal's rows of the day probably end.
const QUICK_MARGIN: u64 = 50;
/// The most rows the one-request read asks for.
const MAX_SINGLE_PAGE: u64 = 2_000_000;

/// Which read of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Quick,
    WholeDay,
    OneRequest,
}

/// What a day's proof found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The journal holds (or saw) exactly what Opencast counts.
    Complete,
    /// Opencast counts more: rows were missed.
    Short { missing: u64 },
    /// The journal holds more than Opencast counts (rows arrived after the count; on a closed
    /// day, rows deleted in Opencast, or a zone other than the server's).
    Over { extra: u64 },
}

/// The server's clock as this run knows it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerClock {
    /// Server time minus local time.
    pub offset_us: i64,
    /// How far that may be off.
    pub slack_us: i64,
}

impl Default for ServerClock {
    fn default() -> Self {
        // An NTP-synchronised server, until a `Date` header says otherwise.
        ServerClock {
            offset_us: 0,
            slack_us: 300_000,
        }
    }
}

impl ServerClock {
    /// From a `Date` header read between `sent_us` and `received_us` (local clock).
    pub fn from_date(date: &str, sent_us: i64, received_us: i64) -> Option<ServerClock> {
        let d = chrono::DateTime::parse_from_rfc2822(date)
            .ok()?
            .timestamp_micros();
        // The header is the answer's second, floored: the server's time was in [d, d + 1 s).
        let mid = sent_us + (received_us - sent_us) / 2;
        let est = d + SECOND_US / 2 - mid;
        if est.abs() < SECOND_US {
            return Some(ServerClock::default());
        }
        Some(ServerClock {
            offset_us: est,
            slack_us: SECOND_US / 2 + (received_us - sent_us) / 2 + 100_000,
        })
    }

    /// The clock from answers' `Date` headers (each the server's second, floored) and the local
    /// times each request was sent and received: each answer bounds the offset to
    /// `[date - received, date + 1 s - sent)`, and samples on both sides of a tick of the
    /// server's second bound it to a few milliseconds. `None` when the samples disagree (a
    /// clock that jumped) or there are none.
    pub fn from_samples(samples: &[(i64, i64, i64)]) -> Option<ServerClock> {
        let mut lo = i64::MIN;
        let mut hi = i64::MAX;
        for &(date, sent, received) in samples {
            lo = lo.max(date - received);
            hi = hi.min(date + SECOND_US - sent);
        }
        if samples.is_empty() || lo > hi {
            return None;
        }
        Some(ServerClock {
            offset_us: lo + (hi - lo) / 2,
            // Half the interval, and a margin for the server's own time to its header.
            slack_us: (hi - lo) / 2 + 30_000,
        })
    }

    /// The clock seconds (of the minute) the server may have read while answering a request
    /// sent at `sent_us` and answered at `received_us` (local clock).
    fn seconds_between(&self, sent_us: i64, received_us: i64) -> Vec<u32> {
        let lo = (sent_us + self.offset_us - self.slack_us).div_euclid(SECOND_US);
        let hi = (received_us + self.offset_us + self.slack_us).div_euclid(SECOND_US);
        let hi = hi.min(lo + 59);
        (lo..=hi).map(|s| s.rem_euclid(60) as u32).collect()
    }
}

/// The verdict on a day's counts: `stats` (what the journal knows) against Opencast's `total`,
/// for a query answered at one of the clock seconds `ss`.
fn judge(stats: &DayStats, total: u64, ss: &[u32]) -> Verdict {
    let mut short = None;
    let mut over = None;
    for &s in ss {
        let (lo, hi) = stats.in_bounds(s as usize);
        if (lo..=hi).contains(&total) {
            return Verdict::Complete;
        }
        if total > hi {
            short = Some(short.map_or(total - hi, |m: u64| m.min(total - hi)));
        } else {
            over = Some(over.map_or(lo - total, |m: u64| m.min(lo - total)));
        }
    }
    match (short, over) {
        (Some(missing), _) => Verdict::Short { missing },
        (None, Some(extra)) => Verdict::Over { extra },
        (None, None) => Verdict::Complete,
    }
}

impl Harvester {
    /// Harvests `[start_us, end_us]` (end second inclusive) day by day with `day` queries; the
    /// checkpoint moves once every day of the window is proven.
    pub(super) async fn harvest_days(
        &self,
        start_us: i64,
        end_us: i64,
        sum: &mut HarvestSummary,
        progress: &Progress,
        known_before: u64,
    ) -> Result<(), HarvestError> {
        // Every proof depends on the second of the server's clock a query was answered at
        // (a `day` query's bounds move with it): read the clock to its tick first.
        self.read_clock_precisely(sum).await;
        let tz = self.opts.tz;
        let end_incl = end_us.saturating_add(SECOND_US - 1);
        let old_checkpoint = self.journal.checkpoint()?.map(|c| c.last_action_us);
        let mut newest: Option<i64> = None;
        let mut day = DayRange::of(start_us, tz);
        let mut known = known_before;
        loop {
            let part = (start_us.max(day.start_us), end_incl.min(day.end_us - 1));
            if part.0 <= part.1 {
                let got = self.harvest_day(day, part, sum, progress, known).await?;
                newest = newest.max(got);
                known = progress.total();
            }
            if day.end_us > end_incl || self.shutdown.is_shutdown() {
                break;
            }
            day = day.next(tz);
        }
        if self.shutdown.is_shutdown() {
            return Err(HarvestError::Interrupted);
        }
        if let Some(m) = newest {
            sum.last_action_us = Some(sum.last_action_us.map_or(m, |c| c.max(m)));
        }
        if self.opts.update_checkpoint {
            if let Some(n) = newest.filter(|n| old_checkpoint.is_none_or(|c| *n > c)) {
                let journal = self.journal.clone();
                tokio::task::spawn_blocking(move || {
                    journal.set_checkpoint(Checkpoint {
                        last_action_us: n,
                        synced_to_s3: false,
                        updated_at_us: timefmt::now_us(),
                    })
                })
                .await
                .map_err(|e| HarvestError::Task(e.to_string()))??;
            }
        }
        tracing::info!(
            start = %timefmt::format_compact(start_us, tz),
            end = %timefmt::format_compact(end_us, tz),
            "window harvested (day queries, every day proven complete)"
        );
        Ok(())
    }

    /// Reads the part `[a, b]` of `day` and proves it complete, the first and last minute
    /// included; returns the newest `created` of the window's rows.
    async fn harvest_day(
        &self,
        day: DayRange,
        (a, b): (i64, i64),
        sum: &mut HarvestSummary,
        progress: &Progress,
        known: u64,
    ) -> Result<Option<i64>, HarvestError> {
        let w = Window {
            query: ActionsQuery::Day(day.param()),
            bounds: (a, b),
            keep_only: true,
            day: Some(day),
            limit: None,
            sets_checkpoint: false,
        };
        let mut newest = None;
        let main = self.read_and_prove(&w, sum, progress, known).await?;
        newest = newest.max(main.max_created);
        let clock = self.clock();
        let (_, sent, received) = main.last_answer.unwrap_or_default();
        let ss = clock.seconds_between(sent, received);
        // The first minute: rows before the query's second were outside its bounds.
        if a < day.start_us + MINUTE_US {
            let need = ((a - day.start_us) / SECOND_US) as u32;
            if ss.iter().any(|s| *s > need) {
                let head = self
                    .timed(&w, 0, 0, Some(day.start_us + MINUTE_US), sum, progress)
                    .await?;
                newest = newest.max(head.max_created);
            }
            if a == day.start_us {
                sum.unreachable_windows += 1;
                tracing::warn!(
                    day = %day.param(),
                    "actions created at exactly 00:00:00 of this day (server time; to the clock's \
                     milliseconds where Opencast keeps them) cannot be read through stock \
                     Opencast's `day` query, which starts a day at the second it is asked; none \
                     is lost from any other second. See README, \"The day bug\""
                );
            }
        }
        // The last minute: rows after the query's second were outside its bounds.
        if b >= day.last_minute_us {
            let need = ((b.min(day.last_minute_us + MINUTE_US - 1) - day.last_minute_us)
                / SECOND_US) as u32;
            if ss.iter().any(|s| *s < need) {
                let offset = main.total.saturating_sub(self.opts.batch_size / 2);
                let tail = self.timed(&w, 59, offset, None, sum, progress).await?;
                newest = newest.max(tail.max_created);
            }
        }
        Ok(newest)
    }

    /// The quick read, then the whole day, then one request, until the day adds up.
    async fn read_and_prove(
        &self,
        w: &Window,
        sum: &mut HarvestSummary,
        progress: &Progress,
        known: u64,
    ) -> Result<WindowSeen, HarvestError> {
        let day = w.day.expect("a day query");
        let stats = self.journal.day_stats(day.key)?;
        // Where the window's first row is, when rows come in `created` order: after the rows
        // known of the minutes before it (a query at another second of the clock sees up to
        // the first minute's rows fewer before them: start that much earlier).
        let quick_from = stats
            .before_minute_of(&day, w.bounds.0)
            .saturating_sub(stats.head_total() + QUICK_MARGIN);
        let mut last_short = 0;
        let mut last_over: Option<u64> = None;
        for read in [Read::Quick, Read::WholeDay, Read::OneRequest] {
            if read == Read::Quick && (quick_from == 0 || self.order_unstable()) {
                continue;
            }
            if read == Read::WholeDay && self.order_unstable() {
                continue;
            }
            let seen = match read {
                Read::Quick => {
                    self.read_pages(w, quick_from, None, sum, progress, known)
                        .await?
                }
                Read::WholeDay => self.read_pages(w, 0, None, sum, progress, known).await?,
                Read::OneRequest => {
                    let Some(one) = self.one_request(w, last_short.max(1)) else {
                        break;
                    };
                    self.read_pages(&one, 0, None, sum, progress, known).await?
                }
            };
            if read != Read::Quick {
                sum.day_rereads += 1;
            }
            match self.prove(w, &seen).await? {
                Verdict::Complete => return Ok(seen),
                Verdict::Over { extra } if self.over_explained(w, &seen, extra).await? => {
                    return Ok(seen);
                }
                Verdict::Over { extra } => {
                    tracing::info!(
                        day = %day.param(),
                        read = ?read,
                        extra,
                        total = seen.total,
                        "the journal holds more actions of this day than Opencast counts: reading it again"
                    );
                    last_over = Some(extra);
                }
                Verdict::Short { missing } => {
                    last_over = None;
                    tracing::info!(
                        day = %day.param(),
                        read = ?read,
                        missing,
                        total = seen.total,
                        "the day does not add up yet: reading it again"
                    );
                    last_short = seen.total;
                    if read == Read::WholeDay {
                        // Paging the whole day in one order missed rows: the order changes
                        // between queries. Later days of this run go straight to one request.
                        self.set_order_unstable();
                    }
                }
            }
        }
        if let Some(extra) = last_over {
            return Err(HarvestError::Unproven(format!(
                "the actions of day {} could not be proven complete: the journal holds {extra} \
                 more of them than Opencast counts, read after read (rows deleted in Opencast, \
                 Opencast's clock far from this machine's, or OPENCAST_TIMEZONE not the zone of \
                 Opencast's JVM). Every action read is journaled; the checkpoint stays before this \
                 day. If Opencast did delete them, move past the day with `harvester checkpoint \
                 --set`",
                day.param()
            )));
        }
        Err(HarvestError::Unproven(format!(
            "the actions of day {} could not be proven complete: Opencast counts more than \
             every read found (rows in no stable order and more than {MAX_SINGLE_PAGE} in one \
             request, or OPENCAST_TIMEZONE is not the zone of Opencast's JVM). Every action read \
             is journaled; the checkpoint stays before this day, and the next run tries again",
            day.param()
        )))
    }

    /// The window asking for the whole day in one page, or `None` when that is too big.
    fn one_request(&self, w: &Window, total: u64) -> Option<Window> {
        let limit = total + total / 10 + 100;
        (limit <= MAX_SINGLE_PAGE).then(|| Window {
            query: w.query.clone(),
            bounds: w.bounds,
            keep_only: true,
            day: w.day,
            limit: Some(limit),
            sets_checkpoint: false,
        })
    }

    /// A read of the first minute (from the first row, `second` = 0) or of the last (from
    /// `offset`, `second` = 59), sent when the server clock is at that second, then proven at it.
    async fn timed(
        &self,
        w: &Window,
        second: u32,
        offset: u64,
        stop_after_us: Option<i64>,
        sum: &mut HarvestSummary,
        progress: &Progress,
    ) -> Result<WindowSeen, HarvestError> {
        let day = w.day.expect("a day query");
        let mut retry = false;
        for _ in 0..3 {
            if retry {
                // Read the clock again, and ask at that second of a later minute, not now.
                self.clock_precise
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            self.wait_for_second(second, retry, sum).await?;
            let known = progress.total();
            let seen = self
                .read_pages(w, offset, stop_after_us, sum, progress, known)
                .await?;
            let (_, sent, received) = seen.last_answer.unwrap_or_default();
            let ss = self.clock().seconds_between(sent, received);
            if ss.iter().any(|s| *s != second) {
                tracing::info!(day = %day.param(), second, seen = ?ss, "the query was not answered within the second it needs; asking again next minute");
                retry = true;
                continue;
            }
            match self.prove(w, &seen).await? {
                Verdict::Complete => return Ok(seen),
                Verdict::Over { extra } if self.over_explained(w, &seen, extra).await? => {
                    return Ok(seen);
                }
                Verdict::Over { extra } => {
                    tracing::info!(day = %day.param(), second, extra, "the journal holds more actions of this day than Opencast counts at this second: asking again next minute");
                    retry = true;
                    continue;
                }
                Verdict::Short { missing } => {
                    // Not in `created` order: the minute's rows may be anywhere. One request
                    // for the whole day at that second.
                    let one = self.one_request(w, seen.total.max(1)).ok_or_else(|| {
                        HarvestError::Unproven(format!(
                            "day {}: {missing} actions of its first or last minute could not be \
                             read (more than {MAX_SINGLE_PAGE} rows in no stable order)",
                            day.param()
                        ))
                    })?;
                    self.wait_for_second(second, false, sum).await?;
                    let seen = self
                        .read_pages(&one, 0, None, sum, progress, progress.total())
                        .await?;
                    sum.day_rereads += 1;
                    match self.prove(w, &seen).await? {
                        Verdict::Complete => return Ok(seen),
                        Verdict::Over { extra } if self.over_explained(w, &seen, extra).await? => {
                            return Ok(seen)
                        }
                        _ => {}
                    }
                }
            }
        }
        Err(HarvestError::Unproven(format!(
            "day {}: its {} minute could not be proven complete (the query must be answered while \
             Opencast's clock is at second {second}; is the server's clock far from this one's? \
             `harvester check` shows the offset). The checkpoint stays before it",
            day.param(),
            if second == 0 { "first" } else { "last" }
        )))
    }

    /// Reads the server's clock to the tick of its second, once a run (before the first timed
    /// read): `Date` headers of answers to a request Opencast's security filter answers at once
    /// (no credentials, nothing read), a few dozen milliseconds apart, until one tick of the
    /// server's second is seen between two of them. A header gives only the whole second, so a
    /// single one leaves the clock ±0.5 s open: too loose to tell second 59 from second 0.
    /// Its time counts as clock wait (`clock_wait_s`): a fixed cost of a run, not of its actions.
    async fn read_clock_precisely(&self, sum: &mut HarvestSummary) {
        use std::sync::atomic::Ordering;
        if self.clock_precise.swap(true, Ordering::Relaxed) {
            return;
        }
        let started = std::time::Instant::now();
        self.sample_clock().await;
        sum.clock_wait_seconds += started.elapsed().as_secs_f64();
    }

    async fn sample_clock(&self) {
        let url = self
            .opencast
            .actions_query_url(&ActionsQuery::Day("19700101".into()), 1, 0);
        let mut samples: Vec<(i64, i64, i64)> = Vec::new();
        let began = timefmt::now_us();
        while timefmt::now_us() - began < 1_600_000 {
            let Some((date, sent, received)) = self.opencast.client().server_date(&url).await
            else {
                break;
            };
            let Some(d) = chrono::DateTime::parse_from_rfc2822(&date)
                .ok()
                .map(|d| d.timestamp_micros())
            else {
                break;
            };
            samples.push((d, sent, received));
            let ticked = samples.first().is_some_and(|f| f.0 != d);
            if let Some(c) = ServerClock::from_samples(&samples) {
                if ticked && c.slack_us < 100_000 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        match ServerClock::from_samples(&samples) {
            Some(c) => {
                if c.offset_us.abs() >= SECOND_US {
                    tracing::warn!(
                        offset_s = format!("{:+.2}", c.offset_us as f64 / 1e6),
                        "Opencast's clock is off from this machine's; the first and last minute \
                         of a day are read at the server's second 0 and 59 (synchronise both \
                         clocks with NTP)"
                    );
                }
                tracing::debug!(
                    offset_us = c.offset_us,
                    slack_us = c.slack_us,
                    samples = samples.len(),
                    "server clock"
                );
                *self.clock.lock().expect("clock lock") = c;
            }
            None if samples.len() > 1 => {
                tracing::warn!(
                    "Opencast's Date headers disagree with each other (its clock jumped?): the \
                     first and last minute of a day may not be provable this run"
                );
            }
            None => {}
        }
    }

    /// Sleeps until the server's clock is a little into `second` of a minute.
    /// `later`: not in the minute in hand (after a miss), at least a few seconds from now.
    async fn wait_for_second(
        &self,
        second: u32,
        later: bool,
        sum: &mut HarvestSummary,
    ) -> Result<(), HarvestError> {
        self.read_clock_precisely(sum).await;
        let clock = self.clock();
        // Early in second 0 (the rows of 00:00:00.xxx from the clock's millis on are in);
        // mid-way through 59, clear of the next minute.
        let target = i64::from(second) * SECOND_US + if second == 0 { 300_000 } else { 500_000 };
        let server_now = timefmt::now_us() + clock.offset_us;
        let into = server_now.rem_euclid(MINUTE_US);
        let mut wait = (target - into).rem_euclid(MINUTE_US);
        if later {
            if wait < 5 * SECOND_US {
                wait += MINUTE_US;
            }
        } else if wait > MINUTE_US - 50_000 {
            wait = 0;
        }
        if wait > 0 {
            tracing::info!(
                second,
                wait_s = format!("{:.1}", wait as f64 / 1e6),
                "waiting for the server clock's second a `day` query needs (the day bug)"
            );
            self.shutdown
                .sleep(Duration::from_micros(wait as u64))
                .await;
            if self.shutdown.is_shutdown() {
                return Err(HarvestError::Interrupted);
            }
            sum.clock_wait_seconds += wait as f64 / 1e6;
        }
        Ok(())
    }

    /// Proves `w`'s day against what the read `seen` answered last: the journal's count of the
    /// day (every action it holds or saw outside a window) against Opencast's `total`.
    async fn prove(&self, w: &Window, seen: &WindowSeen) -> Result<Verdict, HarvestError> {
        let day = w.day.expect("a day query");
        let (total, sent, received) = seen.last_answer.unwrap_or_default();
        let ss = self.clock().seconds_between(sent, received);
        let journal = self.journal.clone();
        let stats = tokio::task::spawn_blocking(move || journal.day_stats(day.key))
            .await
            .map_err(|e| HarvestError::Task(e.to_string()))??;
        let verdict = judge(&stats, total, &ss);
        tracing::debug!(day = %day.param(), total, known = stats.count, ?ss, ?verdict, "day proof");
        Ok(verdict)
    }

    /// Whether more held than counted is explained: on a day still being written, rows created
    /// after the count was taken (from the minute before the answer's request, on the server's
    /// clock less its slack) may be more than it saw. On a closed day nothing explains it:
    /// a `total` lower than what the journal holds is never taken as proof (it once let a
    /// glitch, or a query answered at the wrong second of the clock, pass a day as complete).
    async fn over_explained(
        &self,
        w: &Window,
        seen: &WindowSeen,
        extra: u64,
    ) -> Result<bool, HarvestError> {
        let day = w.day.expect("a day query");
        let clock = self.clock();
        let (_, sent, _) = seen.last_answer.unwrap_or_default();
        let counted_from = sent + clock.offset_us - clock.slack_us - MINUTE_US;
        if counted_from >= day.end_us {
            return Ok(false);
        }
        let journal = self.journal.clone();
        let stats = tokio::task::spawn_blocking(move || journal.day_stats(day.key))
            .await
            .map_err(|e| HarvestError::Task(e.to_string()))??;
        let timed: u64 = stats.minutes.iter().map(|n| u64::from(*n)).sum();
        let recent = timed.saturating_sub(stats.before_minute_of(&day, counted_from));
        Ok(extra <= recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    #[test]
    fn a_day_adds_up_or_says_by_how_much() {
        let day = DayRange::of(
            timefmt::parse_compact("20240307120000", Tz::UTC).unwrap(),
            Tz::UTC,
        );
        let mut s = DayStats::default();
        for sec in 0..10 {
            s.add(&day, Some(day.start_us + sec * SECOND_US));
        }
        for _ in 0..90 {
            s.add(&day, Some(day.start_us + 3_600 * SECOND_US));
        }
        // At second 0: 99 or 100 (the action of 00:00:00 is out once the clock has millis).
        assert_eq!(judge(&s, 100, &[0]), Verdict::Complete);
        assert_eq!(judge(&s, 99, &[0]), Verdict::Complete);
        assert_eq!(judge(&s, 105, &[0]), Verdict::Short { missing: 5 });
        // At second 5: 00:00:00..04 out, 05 in or out.
        assert_eq!(judge(&s, 95, &[5]), Verdict::Complete);
        assert_eq!(judge(&s, 90, &[5]), Verdict::Over { extra: 4 });
        // Unsure whether second 4 or 5: either will do.
        assert_eq!(judge(&s, 96, &[4, 5]), Verdict::Complete);
    }

    #[test]
    fn the_seconds_a_request_may_have_read() {
        let c = ServerClock {
            offset_us: 0,
            slack_us: 300_000,
        };
        let t = 1_700_000_000 * SECOND_US; // :20 of a minute
        assert_eq!(t.rem_euclid(MINUTE_US) / SECOND_US, 20);
        assert_eq!(c.seconds_between(t + 500_000, t + 510_000), vec![20]);
        assert_eq!(c.seconds_between(t + 100_000, t + 110_000), vec![19, 20]);
        let late = ServerClock::from_date("Tue, 14 Nov 2023 22:13:30 GMT", t, t).unwrap();
        assert!((late.offset_us - 10_500_000).abs() < 10, "{late:?}");
        let ok = ServerClock::from_date("Tue, 14 Nov 2023 22:13:20 GMT", t + 200_000, t + 210_000)
            .unwrap();
        assert_eq!(ok.offset_us, 0);
    }
}
