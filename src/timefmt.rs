//! The time formats the harvester speaks, in one place.
//!
//! Opencast reads `start`/`end` as `YYYYMMDDHHmmss` in its own local zone, sends `created` as an
//! XSD dateTime with its offset, and downstream consumers expect Python's `isoformat()` in UTC.
//! Inside the program an instant is always UTC microseconds since the epoch (`i64`).

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// `YYYYMMDDHHmmss`, the window and checkpoint format of the original harvester.
pub const COMPACT: &str = "%Y%m%d%H%M%S";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("'{0}' is not a time in the form YYYYMMDDHHmmss (e.g. 20240131235900)")]
    BadCompact(String),
    #[error("'{0}' is not a time in the form YYYYMMDDHHmmss or RFC 3339 (2024-01-31T23:59:00Z)")]
    BadTime(String),
    #[error("'{0}' is not an XSD dateTime (e.g. 2016-03-01T12:00:00-05:00)")]
    BadDateTime(String),
}

/// Reads `YYYYMMDDHHmmss` as a wall-clock time in `tz`; an ambiguous time (DST fall-back) takes
/// the earlier instant, a skipped one (spring-forward) the first valid instant after it.
pub fn parse_compact(s: &str, tz: Tz) -> Result<i64, TimeError> {
    parse_compact_as(s, tz, Ambiguity::Earlier)
}

/// [`parse_compact`] for the end of a window: a wall time that happens twice (the hour repeated
/// when DST ends) is read as the later of the two, so that the window holds both (read as the
/// earlier, an `--end` in that hour left the second one out).
pub fn parse_compact_end(s: &str, tz: Tz) -> Result<i64, TimeError> {
    parse_compact_as(s, tz, Ambiguity::Later)
}

/// Which instant a wall time that happens twice means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ambiguity {
    Earlier,
    Later,
}

fn parse_compact_as(s: &str, tz: Tz, which: Ambiguity) -> Result<i64, TimeError> {
    let t = s.trim();
    // chrono's %S takes 60 (a leap second) and moves it to the next minute: a typo in a
    // window bound would silently become another time.
    if t.len() != 14 || !t.bytes().all(|b| b.is_ascii_digit()) || &t[12..14] > "59" {
        return Err(TimeError::BadCompact(s.to_string()));
    }
    let naive = NaiveDateTime::parse_from_str(t, COMPACT)
        .map_err(|_| TimeError::BadCompact(s.to_string()))?;
    let d = match (which, tz.from_local_datetime(&naive)) {
        (Ambiguity::Later, LocalResult::Ambiguous(_, later)) => later,
        _ => localize(naive, tz),
    };
    Ok(d.timestamp_micros())
}

/// Reads a command-line time: `YYYYMMDDHHmmss` in `tz`, or RFC 3339 with its own offset.
pub fn parse_user_time(s: &str, tz: Tz) -> Result<i64, TimeError> {
    parse_user_time_as(s, tz, Ambiguity::Earlier)
}

/// [`parse_user_time`] for the end of a range (a repeated wall time is the later instant).
pub fn parse_user_end_time(s: &str, tz: Tz) -> Result<i64, TimeError> {
    parse_user_time_as(s, tz, Ambiguity::Later)
}

fn parse_user_time_as(s: &str, tz: Tz, which: Ambiguity) -> Result<i64, TimeError> {
    if let Ok(us) = parse_compact_as(s, tz, which) {
        return Ok(us);
    }
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        // A seconds field of 60 (chrono's leap second) is refused here too.
        .filter(|d| d.nanosecond() < 1_000_000_000)
        .map(|d| d.timestamp_micros())
        .ok_or_else(|| TimeError::BadTime(s.to_string()))
}

fn localize(naive: NaiveDateTime, tz: Tz) -> DateTime<Tz> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(d) => d,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => {
            // Inside a DST gap: walk forward a minute at a time to the first wall time that exists.
            let mut n = naive;
            loop {
                n += chrono::Duration::minutes(1);
                if let LocalResult::Single(d) | LocalResult::Ambiguous(d, _) =
                    tz.from_local_datetime(&n)
                {
                    return d;
                }
            }
        }
    }
}

/// Renders an instant as `YYYYMMDDHHmmss` in `tz` (seconds are floored).
pub fn format_compact(us: i64, tz: Tz) -> String {
    utc(us).with_timezone(&tz).format(COMPACT).to_string()
}

/// Parses an XSD dateTime (`created`); a value without an offset is read in `tz`.
pub fn parse_xsd(s: &str, tz: Tz) -> Result<i64, TimeError> {
    let t = s.trim();
    if let Some(us) = fast_rfc3339(t.as_bytes()) {
        return Ok(us);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_micros());
    }
    // Offsets without a colon (`-0500`), as some Java formatters write them.
    if let Ok(d) = DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(d.timestamp_micros());
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(localize(n, tz).timestamp_micros());
    }
    Err(TimeError::BadDateTime(s.to_string()))
}

/// The common shape of `created`, read without chrono's general parser (this runs once per
/// harvested action): `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then `Z` or `±HH:MM`.
/// Anything else (leap seconds, odd separators, no offset) returns `None` for the general path;
/// a test pins it to chrono's result.
fn fast_rfc3339(b: &[u8]) -> Option<i64> {
    let [y, mo, d, h, mi, sec] = fast_date_time(b)?;
    let (micros, rest) = fast_fraction(&b[19..])?;
    let offset_s = fast_offset(rest)?;
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// The digits of `b` as a number, if all are digits.
#[inline]
fn fast_num(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

/// Year, month, day, hour, minute and second of `YYYY-MM-DDTHH:MM:SS…` (at least 20 bytes),
/// each in its range (the day in its month, leap years included).
#[inline]
fn fast_date_time(b: &[u8]) -> Option<[i64; 6]> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (
        fast_num(&b[0..4])?,
        fast_num(&b[5..7])?,
        fast_num(&b[8..10])?,
    );
    let (h, mi, sec) = (
        fast_num(&b[11..13])?,
        fast_num(&b[14..16])?,
        fast_num(&b[17..19])?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    Some([y, mo, d, h, mi, sec])
}

/// An optional `.fraction` (1 to 9 digits) at the start of `b`, truncated to microseconds as
/// chrono's `timestamp_micros` does, and what follows it.
#[inline]
fn fast_fraction(b: &[u8]) -> Option<(i64, &[u8])> {
    if b.first() != Some(&b'.') {
        return Some((0, b));
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let mut micros = 0i64;
    for k in 0..6 {
        micros = micros * 10
            + if k < digits {
                i64::from(b[1 + k] - b'0')
            } else {
                0
            };
    }
    Some((micros, &b[1 + digits..]))
}

/// The offset `Z` or `±HH:MM`, in seconds east of UTC; nothing may follow it.
#[inline]
fn fast_offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), oh @ .., b':', m1, m2] if oh.len() == 2 => {
            let (oh, om) = (fast_num(oh)?, fast_num(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            Some(if *sign == b'-' { -o } else { o })
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a count of days since 1970-01-01: the inverse of `days_from_civil`
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Python's `datetime.isoformat()` of the UTC instant: `2016-03-12T12:00:01.898000+00:00`, the
/// fraction only when there are sub-second digits, exactly as the original harvester wrote it.
pub fn python_isoformat_utc(us: i64) -> String {
    // Written digit by digit: this runs once per record on every dump and forward, and chrono's
    // pattern formatting costs several times more.
    let d = utc(us);
    let micros = d.nanosecond() / 1000;
    let mut out = String::with_capacity(32);
    push_digits(&mut out, d.year().clamp(0, 9999) as u32, 4);
    for (sep, v) in [
        ('-', d.month()),
        ('-', d.day()),
        ('T', d.hour()),
        (':', d.minute()),
        (':', d.second()),
    ] {
        out.push(sep);
        push_digits(&mut out, v, 2);
    }
    if micros != 0 {
        out.push('.');
        push_digits(&mut out, micros, 6);
    }
    out.push_str("+00:00");
    out
}

/// Appends `v` zero-padded to `width` digits.
fn push_digits(out: &mut String, v: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (v / 10u32.pow(i) % 10) as u8));
    }
}

/// `YYYY-MM-DDTHH:mm:ssZ` in UTC (the episode `start` fallback format).
pub fn format_utc_z(us: i64) -> String {
    utc(us).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 in UTC with milliseconds only when present, for logs and `journal stats`.
pub fn format_rfc3339(us: i64) -> String {
    utc(us).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

pub fn utc(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
}

pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Floors an instant to its whole second.
pub fn floor_second(us: i64) -> i64 {
    us.div_euclid(1_000_000) * 1_000_000
}

#[cfg(test)]
mod tests {
    /// The hour DST repeats (Berlin, 2016-10-30 02:00-03:00 happens at +02:00 and at +01:00): a
    /// start is the first of the two instants, an end the second, so a window of that hour
    /// holds both.
    #[test]
    fn a_repeated_wall_time_starts_early_and_ends_late() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let start = super::parse_compact("20161030023000", tz).unwrap();
        let end = super::parse_compact_end("20161030023000", tz).unwrap();
        assert_eq!(end - start, 3_600 * 1_000_000);
        assert_eq!(super::format_rfc3339(start), "2016-10-30T00:30:00Z");
        assert_eq!(super::format_rfc3339(end), "2016-10-30T01:30:00Z");
        assert_eq!(
            super::parse_user_end_time("20161030023000", tz).unwrap(),
            end
        );
        // An unambiguous time is the same either way.
        assert_eq!(
            super::parse_compact("20161030120000", tz).unwrap(),
            super::parse_compact_end("20161030120000", tz).unwrap()
        );
    }

    use super::*;

    #[test]
    fn civil_from_days_inverts_days_from_civil() {
        for days in (-1_000_000..1_000_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(16_860), (2016, 2, 29));
    }

    #[test]
    fn fast_created_parser_agrees_with_chrono() {
        // A small deterministic generator: dates across eras, leap days, fractions of every
        // length, offsets of both signs, and malformed variants that must fall through.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut fast = 0;
        for _ in 0..200_000 {
            let y = 1600 + next(900);
            let mo = 1 + next(13);
            let d = 1 + next(31);
            let (h, mi, s) = (next(25), next(61), next(61));
            let frac = match next(4) {
                0 => String::new(),
                _ => format!(
                    ".{}",
                    &format!("{:012}", next(1_000_000_000_000))[..1 + next(11) as usize]
                ),
            };
            let off = match next(5) {
                0 => "Z".to_string(),
                1 => format!("+{:02}:{:02}", next(25), next(61)),
                2 => format!("-{:02}:{:02}", next(25), next(61)),
                3 => format!("-{:02}{:02}", next(24), next(60)),
                _ => String::new(),
            };
            let t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}");
            let want = DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|d| d.timestamp_micros());
            match fast_rfc3339(t.as_bytes()) {
                Some(us) => {
                    fast += 1;
                    assert_eq!(Some(us), want, "{t}");
                }
                // Falling through is always safe; it must not happen for the plain shapes.
                None => assert!(
                    want.is_none() || s == 60 || frac.len() > 10,
                    "fast path refused {t}"
                ),
            }
        }
        assert!(fast > 50_000, "{fast}");
        for t in [
            "2016-03-01T01:07:12+01:00",
            "2016-02-29T19:07:12.086-05:00",
            "1969-12-31T23:59:59.5Z",
        ] {
            assert_eq!(
                fast_rfc3339(t.as_bytes()),
                Some(DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros()),
                "{t}"
            );
        }
    }

    #[test]
    fn isoformat_matches_python() {
        let us = parse_xsd("2016-03-12T07:00:00-05:00", Tz::UTC).unwrap();
        assert_eq!(python_isoformat_utc(us), "2016-03-12T12:00:00+00:00");
        let us = parse_xsd("2016-03-12T12:00:01.898Z", Tz::UTC).unwrap();
        assert_eq!(python_isoformat_utc(us), "2016-03-12T12:00:01.898000+00:00");
        // Python drops an all-zero fraction.
        let us = parse_xsd("2016-03-12T12:00:01.000+00:00", Tz::UTC).unwrap();
        assert_eq!(python_isoformat_utc(us), "2016-03-12T12:00:01+00:00");
    }

    #[test]
    fn a_seconds_field_of_60_is_refused() {
        assert!(parse_compact("20240131235960", Tz::UTC).is_err());
        assert!(parse_compact("20240131235999", Tz::UTC).is_err());
        assert!(parse_user_time("20240131235960", Tz::UTC).is_err());
        assert!(parse_user_time("2024-01-31T23:59:60Z", Tz::UTC).is_err());
        assert!(parse_compact("20240131235959", Tz::UTC).is_ok());
        assert!(parse_user_time("2024-01-31T23:59:59Z", Tz::UTC).is_ok());
    }

    #[test]
    fn compact_round_trip_in_zone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let us = parse_compact("20160301120000", tz).unwrap();
        assert_eq!(format_compact(us, Tz::UTC), "20160301170000");
        assert_eq!(format_compact(us, tz), "20160301120000");
        assert!(parse_compact("2016-03-01", tz).is_err());
        assert!(parse_compact("20161301120000", tz).is_err());
    }

    #[test]
    fn xsd_without_colon_or_offset() {
        let a = parse_xsd("2016-03-01T12:00:00-0500", Tz::UTC).unwrap();
        let b = parse_xsd("2016-03-01T17:00:00", Tz::UTC).unwrap();
        assert_eq!(a, b);
        assert!(parse_xsd("yesterday", Tz::UTC).is_err());
    }
}
