//! The report tables as CSV (the conventions of `journal dump --format csv`: a header, RFC 4180
//! quoting by the `csv` crate, an empty cell for a missing value, a list as a JSON array in one
//! cell, times as the records write them) or as JSON lines; Harvard's attendance CSV as
//! Python's `csv.DictWriter` wrote it (`\r\n` line ends).

use std::io::{self, Write};

use super::attendance::AttendanceTable;
use super::tables::{EpisodeRow, SeriesRow, ViewerRow};
use crate::timefmt::python_isoformat_utc;

/// Output format of a report table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

fn io_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .buffer_capacity(1 << 16)
        .from_writer(out)
}

fn json_line<W: Write>(out: &mut W, v: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Writes `v` as one CSV field, the text `to_string` gives, through `buf`.
fn display_field<W: Write>(
    w: &mut csv::Writer<W>,
    buf: &mut String,
    v: impl std::fmt::Display,
) -> io::Result<()> {
    use std::fmt::Write as _;
    buf.clear();
    write!(buf, "{v}").map_err(io::Error::other)?;
    w.write_field(buf.as_bytes()).map_err(io_error)
}

/// `viewers`: one row per (episode, viewer).
pub fn viewers<W: Write>(
    rows: impl Iterator<Item = ViewerRow>,
    format: Format,
    mut out: W,
) -> io::Result<()> {
    if format == Format::Json {
        for r in rows {
            json_line(
                &mut out,
                &serde_json::json!({
                    "mpid": r.mpid,
                    "huid": r.huid,
                    "logged_in": r.logged_in,
                    "seconds_watched": r.seconds_watched,
                    "percent_watched": r.percent_watched,
                    "sessions": r.sessions,
                    "first_seen": python_isoformat_utc(r.first_seen_us),
                    "last_seen": python_isoformat_utc(r.last_seen_us),
                    "segments": r.segments,
                }),
            )?;
        }
        return out.flush();
    }
    let mut w = writer(out);
    w.write_record([
        "mpid",
        "huid",
        "logged_in",
        "seconds_watched",
        "percent_watched",
        "sessions",
        "first_seen",
        "last_seen",
        "segments",
    ])
    .map_err(io_error)?;
    // One field at a time, numbers through one reused buffer: a row's nine `String`s were
    // a fifth of a Paella 7 `report viewers` (348,000 rows). The same text, so the same bytes.
    let mut text = String::new();
    let mut segments = Vec::new();
    for r in rows {
        w.write_field(&r.mpid).map_err(io_error)?;
        w.write_field(r.huid.as_deref().unwrap_or_default())
            .map_err(io_error)?;
        w.write_field(if r.logged_in { "true" } else { "false" })
            .map_err(io_error)?;
        display_field(&mut w, &mut text, r.seconds_watched)?;
        match r.percent_watched {
            Some(p) => display_field(&mut w, &mut text, p)?,
            None => w.write_field("").map_err(io_error)?,
        }
        display_field(&mut w, &mut text, r.sessions)?;
        w.write_field(python_isoformat_utc(r.first_seen_us))
            .map_err(io_error)?;
        w.write_field(python_isoformat_utc(r.last_seen_us))
            .map_err(io_error)?;
        segments.clear();
        serde_json::to_writer(&mut segments, &r.segments).map_err(io::Error::other)?;
        w.write_field(&segments).map_err(io_error)?;
        w.write_record(None::<&[u8]>).map_err(io_error)?;
    }
    w.flush()
}

/// `episodes`: one row per episode, the retention curve as a list.
pub fn episodes<W: Write>(
    rows: impl Iterator<Item = EpisodeRow>,
    format: Format,
    mut out: W,
) -> io::Result<()> {
    if format == Format::Json {
        for r in rows {
            json_line(
                &mut out,
                &serde_json::to_value(&r).map_err(io::Error::other)?,
            )?;
        }
        return out.flush();
    }
    let mut w = writer(out);
    w.write_record([
        "mpid",
        "title",
        "series",
        "series_title",
        "duration_s",
        "views",
        "unique_viewers",
        "not_logged_in",
        "hours_watched",
        "avg_percent_watched",
        "bucket_s",
        "retention",
    ])
    .map_err(io_error)?;
    for r in rows {
        w.write_record([
            r.mpid,
            opt(&r.title),
            opt(&r.series),
            opt(&r.series_title),
            opt(&r.duration_s),
            r.views.to_string(),
            r.unique_viewers.to_string(),
            r.not_logged_in.to_string(),
            r.hours_watched.to_string(),
            opt(&r.avg_percent_watched),
            r.bucket_s.to_string(),
            serde_json::to_string(&r.retention).map_err(io::Error::other)?,
        ])
        .map_err(io_error)?;
    }
    w.flush()
}

/// `series`: the roll call.
pub fn series<W: Write>(rows: &[SeriesRow], format: Format, mut out: W) -> io::Result<()> {
    if format == Format::Json {
        for r in rows {
            json_line(
                &mut out,
                &serde_json::to_value(r).map_err(io::Error::other)?,
            )?;
        }
        return out.flush();
    }
    let mut w = writer(out);
    w.write_record([
        "series",
        "series_title",
        "huid",
        "lectures_watched",
        "lectures_published",
        "threshold_percent",
    ])
    .map_err(io_error)?;
    for r in rows {
        w.write_record([
            r.series.clone(),
            opt(&r.series_title),
            r.huid.clone(),
            r.lectures_watched.to_string(),
            r.lectures_published.to_string(),
            r.threshold_percent.to_string(),
        ])
        .map_err(io_error)?;
    }
    w.flush()
}

/// Harvard's attendance CSV: `mpid,huid,vod_attendance` (or `live_attendance`).
pub fn attendance<W: Write>(t: &AttendanceTable, live: bool, out: W) -> io::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let column = if live {
        "live_attendance"
    } else {
        "vod_attendance"
    };
    w.write_record(["mpid", "huid", column]).map_err(io_error)?;
    for r in &t.rows {
        w.write_record([r.mpid.as_str(), r.huid.as_str(), &r.percent.to_string()])
            .map_err(io_error)?;
    }
    w.flush()
}
