//! What the journal knows of each day (the actions it holds, and those a `day` query returned
//! outside the window harvested), counted in the Opencast server's zone: the figures a stock
//! `day=YYYYMMDD` query's `total` is checked against, so that a harvest can prove a day complete
//! without reading it again.
//!
//! Stock Opencast's `day` query covers `[D 00:00:SS.mmm, D 23:59:SS.mmm]`, SS.mmm being the
//! server clock's second when it answers. So besides the day's count, the actions of the first and
//! of the last minute are counted per second: the journal can then say how many of its actions
//! any such query should see ([`DayStats::in_bounds`]).
//!
//! The counts move in the transaction that journals the actions (a new action counts once,
//! whatever the overlap), in the zone the journal was told ([`DayZone`]); a journal whose counts
//! are behind (written by an older build, or in another zone) is brought up to date by
//! [`crate::journal::Journal::ensure_day_stats`].

use bincode::{Decode, Encode};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

/// Held actions of one day.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DayStats {
    pub count: u64,
    /// Actions per second of the day's first minute (`00:00:ss`).
    pub head: Vec<u32>,
    /// Actions per second of the day's last minute (`23:59:ss`).
    pub tail: Vec<u32>,
    /// Actions per minute of the day (local minutes from 00:00; a day of 25 hours has more):
    /// where in a day's rows, in `created` order, a window starts.
    pub minutes: Vec<u32>,
}

impl Default for DayStats {
    fn default() -> Self {
        DayStats {
            count: 0,
            head: vec![0; 60],
            tail: vec![0; 60],
            minutes: Vec::new(),
        }
    }
}

impl DayStats {
    /// Counts one action of `day` created at `created_us` (`None`: a dead letter whose time could
    /// not be read; it counts for the day, in neither minute).
    pub fn add(&mut self, day: &DayRange, created_us: Option<i64>) {
        self.count += 1;
        let Some(t) = created_us else { return };
        let m = ((t - day.start_us).max(0) / 60_000_000) as usize;
        if m < 1_500 {
            if self.minutes.len() <= m {
                self.minutes.resize(m + 1, 0);
            }
            self.minutes[m] = self.minutes[m].saturating_add(1);
        }
        if let Some(s) = day.head_second(t) {
            self.head[s] = self.head[s].saturating_add(1);
        } else if let Some(s) = day.tail_second(t) {
            self.tail[s] = self.tail[s].saturating_add(1);
        }
    }

    /// How many of these actions a `day` query answered at clock second `ss` sees: a range,
    /// since an action of second `ss` of the first minute is in it or not depending on the
    /// clock's milliseconds (`00:00:SS.000` is before `00:00:SS.mmm` once mmm > 0). Times are
    /// whole seconds, as MySQL/MariaDB keep them: `23:59:SS.000` is always in.
    pub fn in_bounds(&self, ss: usize) -> (u64, u64) {
        let ss = ss.min(59);
        let before: u64 = self.head[..ss].iter().map(|n| u64::from(*n)).sum();
        let after: u64 = self.tail[ss + 1..].iter().map(|n| u64::from(*n)).sum();
        let hi = self.count.saturating_sub(before + after);
        let lo = hi.saturating_sub(u64::from(self.head[ss]));
        (lo, hi)
    }

    /// Actions created before the minute that holds `us` (those without a time not counted).
    pub fn before_minute_of(&self, day: &DayRange, us: i64) -> u64 {
        let m = ((us - day.start_us).max(0) / 60_000_000) as usize;
        self.minutes.iter().take(m).map(|n| u64::from(*n)).sum()
    }

    /// Actions of the first minute.
    pub fn head_total(&self) -> u64 {
        self.head.iter().map(|n| u64::from(*n)).sum()
    }
}

/// One calendar day in the server's zone, as Opencast's `day` query builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// `YYYYMMDD`.
    pub key: u32,
    /// Local `00:00:00`, UTC microseconds.
    pub start_us: i64,
    /// Local `23:59:00`, UTC microseconds.
    pub last_minute_us: i64,
    /// The next day's `00:00:00`.
    pub end_us: i64,
}

const MINUTE_US: i64 = 60_000_000;

impl DayRange {
    /// The day holding instant `us` in `tz`.
    pub fn of(us: i64, tz: Tz) -> DayRange {
        let local = crate::timefmt::utc(us).with_timezone(&tz).date_naive();
        DayRange::on(local, tz)
    }

    /// The day `date` in `tz`.
    pub fn on(date: NaiveDate, tz: Tz) -> DayRange {
        let at = |d: NaiveDate, h: u32, m: u32| -> i64 {
            let naive = d.and_hms_opt(h, m, 0).expect("valid time");
            // A local time that does not exist (a DST jump at midnight) is read as Java's lenient
            // calendar does: moved forward by the gap.
            match tz.from_local_datetime(&naive) {
                chrono::LocalResult::Single(t) => t.timestamp_micros(),
                chrono::LocalResult::Ambiguous(t, _) => t.timestamp_micros(),
                chrono::LocalResult::None => tz
                    .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
                    .map(|t| t.timestamp_micros() - 3_600_000_000)
                    .unwrap_or_else(|| naive.and_utc().timestamp_micros()),
            }
        };
        let next = date.succ_opt().unwrap_or(date);
        DayRange {
            key: day_key(date),
            start_us: at(date, 0, 0),
            last_minute_us: at(date, 23, 59),
            end_us: at(next, 0, 0),
        }
    }

    /// The day after this one.
    pub fn next(&self, tz: Tz) -> DayRange {
        DayRange::of(self.end_us, tz)
    }

    pub fn contains(&self, us: i64) -> bool {
        (self.start_us..self.end_us).contains(&us)
    }

    /// The second of the first minute `us` falls in.
    pub fn head_second(&self, us: i64) -> Option<usize> {
        (self.start_us..self.start_us + MINUTE_US)
            .contains(&us)
            .then(|| ((us - self.start_us) / 1_000_000) as usize)
    }

    /// The second of the last minute `us` falls in.
    pub fn tail_second(&self, us: i64) -> Option<usize> {
        (self.last_minute_us..self.last_minute_us + MINUTE_US)
            .contains(&us)
            .then(|| ((us - self.last_minute_us) / 1_000_000) as usize)
    }

    /// `YYYYMMDD` as Opencast's `day` parameter takes it.
    pub fn param(&self) -> String {
        format!("{:08}", self.key)
    }

    /// The instants a `day` query answered at clock `ss.mmm` covers: both ends inclusive.
    pub fn query_bounds(&self, ss: u32, millis: u32) -> (i64, i64) {
        let off = i64::from(ss) * 1_000_000 + i64::from(millis) * 1_000;
        (self.start_us + off, self.last_minute_us + off)
    }
}

/// `YYYYMMDD` of a date.
pub fn day_key(d: NaiveDate) -> u32 {
    use chrono::Datelike;
    (d.year().clamp(0, 9999) as u32) * 10_000 + d.month() * 100 + d.day()
}

/// Finds the day of each instant in a zone, remembering the last day found: a page of actions
/// falls on one day or two, so the zone's rules are looked up once per page, not per action.
#[derive(Debug, Clone)]
pub struct DayZone {
    tz: Tz,
    last: Option<DayRange>,
}

impl DayZone {
    pub fn new(tz: Tz) -> DayZone {
        DayZone { tz, last: None }
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn day(&mut self, us: i64) -> DayRange {
        match self.last {
            Some(d) if d.contains(us) => d,
            _ => {
                let d = DayRange::of(us, self.tz);
                self.last = Some(d);
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        crate::timefmt::parse_compact(s, Tz::UTC).unwrap()
    }

    #[test]
    fn a_day_and_its_minutes() {
        let d = DayRange::of(t("20240307120000"), Tz::UTC);
        assert_eq!(d.key, 20240307);
        assert_eq!(d.param(), "20240307");
        assert_eq!(d.start_us, t("20240307000000"));
        assert_eq!(d.last_minute_us, t("20240307235900"));
        assert_eq!(d.end_us, t("20240308000000"));
        assert_eq!(d.head_second(t("20240307000005")), Some(5));
        assert_eq!(d.tail_second(t("20240307235959")), Some(59));
        assert_eq!(d.head_second(t("20240307000100")), None);
        assert_eq!(d.next(Tz::UTC).key, 20240308);
        // In New York the day starts at 05:00 UTC.
        let ny: Tz = "America/New_York".parse().unwrap();
        let d = DayRange::of(t("20240307040000"), ny);
        assert_eq!(d.key, 20240306);
    }

    #[test]
    fn in_bounds_leaves_out_the_seconds_a_query_misses() {
        let d = DayRange::of(t("20240307120000"), Tz::UTC);
        let mut s = DayStats::default();
        for x in [
            "20240307000000",
            "20240307000001",
            "20240307000030",
            "20240307120000",
            "20240307235930",
            "20240307235959",
        ] {
            s.add(&d, Some(t(x)));
        }
        s.add(&d, None);
        assert_eq!(s.count, 7);
        // A query at second 0: not the last minute's 23:59:30 and :59; 00:00:00 only when the
        // clock's millis are 0.
        assert_eq!(s.in_bounds(0), (4, 5));
        // At second 30: 00:00:00 and :01 out, :30 in or out; 23:59:59 out, 23:59:30 in.
        assert_eq!(s.in_bounds(30), (3, 4));
        // At second 59: 23:59:59 in, the first three out.
        assert_eq!(s.in_bounds(59), (4, 4));
        assert_eq!(s.before_minute_of(&d, t("20240307120030")), 3);
        assert_eq!(s.before_minute_of(&d, t("20240307000030")), 0);
    }
}
