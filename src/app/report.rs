//! `harvester report viewers|episodes|series|attendance`: the tables of [`crate::report`] from
//! one pass over the journal: read directly (read-only), or, while `harvester run` holds it,
//! from the running service's record stream (`/journal/dump`, JSON lines, the same words as
//! `journal dump`), so a service of any version answers and nothing new listens.

use std::io::Write;

use super::journal::{access, remote_get, Access};
use super::{failed, AppError};
use crate::cli::{
    AttendanceArgs, Cli, RangeArgs, ReportArgs, ReportCommand, ReportFilterArgs, ReportFormat,
    ReportOpts,
};
use crate::config::ConfigError;
use crate::journal::inspect::{self, Filter};
use crate::report::attendance::Attendance;
use crate::report::write::{self, Format};
use crate::report::{self, Action, Aggregator, JsonAction, Settings, Tables};

pub async fn run(cli: &Cli, args: &ReportArgs) -> Result<(), AppError> {
    match &args.command {
        ReportCommand::Viewers(o) => {
            let f = format(o, "viewers")?;
            let t = tables(cli, o).await?;
            emit(|out| write::viewers(t.viewers(), f, out))?;
            eprintln!("{}", report::summary(&t));
        }
        ReportCommand::Episodes(a) => {
            let f = match a.opts.format {
                ReportFormat::Svg => None,
                _ => Some(format(&a.opts, "episodes")?),
            };
            let t = tables(cli, &a.opts).await?;
            match f {
                None => {
                    emit(|out| report::svg::write(t.episodes(a.bucket), t.episode_count(), out))?
                }
                Some(f) => emit(|out| write::episodes(t.episodes(a.bucket), f, out))?,
            }
            eprintln!("{}", report::summary(&t));
        }
        ReportCommand::Series(a) => {
            if !(0.0..=100.0).contains(&a.threshold) {
                return Err(ConfigError::new(format!(
                    "--threshold (REPORT_WATCHED_THRESHOLD) {} is out of range: a percent from 0 to 100",
                    a.threshold
                ))
                .into());
            }
            let f = format(&a.opts, "series")?;
            let t = tables(cli, &a.opts).await?;
            let rows = t.series(a.threshold);
            emit(|out| write::series(&rows, f, out))?;
            eprintln!("{}", report::summary(&t));
        }
        ReportCommand::Attendance(a) => attendance(cli, a).await?,
    }
    Ok(())
}

/// The table format; SVG is the episodes' picture only.
fn format(o: &ReportOpts, what: &str) -> Result<Format, ConfigError> {
    match o.format {
        ReportFormat::Csv => Ok(Format::Csv),
        ReportFormat::Json => Ok(Format::Json),
        ReportFormat::Svg => Err(ConfigError::new(format!(
            "--format svg draws the retention curves of `report episodes`; `report {what}` writes csv or json"
        ))),
    }
}

/// The journal filter and the same request for a running service.
fn selection(f: &ReportFilterArgs) -> Result<(Filter, Vec<(String, String)>), ConfigError> {
    let range = RangeArgs {
        from: f.from.clone(),
        to: f.to.clone(),
        seq: None,
        opencast_timezone: f.opencast_timezone.clone(),
    };
    let (mut filter, _) = super::journal::filter(&range)?;
    filter.mpids = f.mpid.clone();
    let mut pairs = Vec::new();
    if let Some(v) = &f.from {
        pairs.push(("from".to_string(), v.clone()));
    }
    if let Some(v) = &f.to {
        pairs.push(("to".to_string(), v.clone()));
    }
    pairs.push(("tz".to_string(), f.opencast_timezone.clone()));
    for m in &f.mpid {
        pairs.push(("mpid".to_string(), m.clone()));
    }
    Ok((filter, pairs))
}

async fn tables(cli: &Cli, o: &ReportOpts) -> Result<Tables, AppError> {
    let settings = Settings {
        gap_us: i64::from(o.session_gap) * 1_000_000,
        series: o.filter.series.clone(),
        live: match (o.live, o.vod) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    let mut agg = Aggregator::new(settings);
    each_action(cli, &o.filter, |a| agg.add(a)).await?;
    Ok(Tables::new(agg.finish()))
}

/// Hands every selected action to `f`, in journal order, from the journal or the service.
async fn each_action(
    cli: &Cli,
    f: &ReportFilterArgs,
    mut visit: impl FnMut(&Action<'_>),
) -> Result<(), AppError> {
    let (filter, pairs) = selection(f)?;
    let j = match access(cli)? {
        Access::Local(j) => j,
        Access::Remote(service) => {
            let mut answer = remote_get(&service, "/journal/dump", &pairs).await?;
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = answer.chunk().await? {
                pending.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(n) = pending[start..].iter().position(|b| *b == b'\n') {
                    let line = &pending[start..start + n];
                    start += n + 1;
                    let v: serde_json::Value = serde_json::from_slice(line)
                        .map_err(super::journal::RemoteError::NotARecord)?;
                    visit(&JsonAction::parse(v)?.action());
                }
                pending.drain(..start);
            }
            if !pending.is_empty() {
                return Err(super::journal::RemoteError::Truncated.into());
            }
            return Ok(());
        }
    };
    let sum = inspect::for_each_ref(&j, &filter, |r| visit(&Action::of_block(r)))?;
    for b in &sum.bad_blocks {
        eprintln!(
            "error: the block at sequence {} cannot be read ({}); its actions are not in the report",
            b.first_seq,
            crate::escape::text(&b.error)
        );
    }
    if !sum.bad_blocks.is_empty() {
        return Err(failed(format!(
            "{} block(s) could not be read, so the report would be short; run `harvester journal verify`, then `harvester journal salvage`",
            sum.bad_blocks.len()
        )));
    }
    Ok(())
}

/// Runs `w` on a buffered stdout; a reader that went away (`| head`) ends it quietly.
fn emit(w: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), AppError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match w(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::io("writing the report", e))
        }
        _ => Ok(()),
    }
}

async fn attendance(cli: &Cli, a: &AttendanceArgs) -> Result<(), AppError> {
    let mut att = Attendance::new(a.chunk_interval, a.live);
    let series = &a.filter.series;
    each_action(cli, &a.filter, |x| {
        if series.is_empty()
            || x.episode
                .and_then(|e| e.series_id)
                .is_some_and(|s| series.iter().any(|t| t == s))
        {
            att.add(x)
        }
    })
    .await?;
    let (negative, beyond) = (att.negative_inpoints, att.beyond_intervals);
    let t = att.finish();
    for (mpid, why) in &t.skipped {
        tracing::warn!(
            "attendance: episode {} skipped ({why}), as Harvard's export did",
            crate::escape::text(mpid)
        );
    }
    emit(|out| write::attendance(&t, a.live, out))?;
    eprintln!(
        "report: {} attendance rows; {} episodes skipped (no duration or zero intervals); \
         hostile input: {negative} heartbeats with a negative inpoint (bucket -1, as \
         Elasticsearch's histogram put them), {beyond} heartbeats past a viewer's 100% left out, \
         {} rows over 100% written as 100",
        t.rows.len(),
        t.skipped.len(),
        t.capped
    );
    Ok(())
}
