//! `journal dump`: the request (the same words locally and over a running service's
//! endpoint) and its JSON-lines and CSV writers.

use std::io::Write;
use std::sync::Arc;

use super::remote::{access, remote, remote_csv, Access};
use crate::app::{failed, AppError};
use crate::cli::{Cli, DumpArgs, DumpFormat, RangeArgs};
use crate::config::ConfigError;
use crate::journal::inspect::{self, Filter};
use crate::journal::Journal;
use crate::record_csv::CsvDump;
use crate::timefmt;

/// A dump request, as query pairs: the same words locally and over a running service's endpoint.
pub fn dump_pairs(a: &DumpArgs) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let mut put = |k: &str, v: &str| p.push((k.to_string(), v.to_string()));
    if let Some(v) = &a.range.from {
        put("from", v);
    }
    if let Some(v) = &a.range.to {
        put("to", v);
    }
    if let Some(v) = &a.range.seq {
        put("seq", v);
    }
    put("tz", &a.range.opencast_timezone);
    for m in &a.mpid {
        put("mpid", m);
    }
    for t in &a.kind {
        put("type", t);
    }
    if let Some(l) = a.limit {
        put("limit", &l.to_string());
    }
    if a.episodes {
        put("episodes", "1");
    }
    if a.episode_docs {
        put("episode_docs", "1");
    }
    if a.dead_letters {
        put("dead_letters", "1");
    }
    if a.enrich {
        put("enrich", "1");
    }
    if a.pseudonymize {
        put("pseudonymize", "1");
    }
    p
}

/// What to dump.
pub struct DumpRequest {
    filter: Filter,
    limit: Option<u64>,
    episodes: bool,
    episode_docs: bool,
    dead_letters: bool,
    /// `--enrich`: records as enriched Elasticsearch documents (local dumps only).
    enrich: bool,
    enricher: Option<Arc<crate::enrich::Enricher>>,
    /// `--pseudonymize`: the privacy settings the records are shown under (local dumps only).
    privacy: Option<crate::privacy::Privacy>,
}

impl DumpRequest {
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<DumpRequest, ConfigError> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let all = |k: &str| {
            pairs
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        let range = RangeArgs {
            from: get("from"),
            to: get("to"),
            seq: get("seq"),
            opencast_timezone: get("tz").unwrap_or_else(|| "UTC".into()),
        };
        let (mut filter, _) = super::filter(&range)?;
        filter.mpids = all("mpid");
        filter.types = all("type");
        let limit = get("limit")
            .map(|l| {
                l.parse::<u64>()
                    .map_err(|_| ConfigError::new(format!("--limit '{l}' is not a number")))
            })
            .transpose()?;
        Ok(DumpRequest {
            filter,
            limit,
            episodes: get("episodes").is_some(),
            episode_docs: get("episode_docs").is_some(),
            dead_letters: get("dead_letters").is_some(),
            enrich: get("enrich").is_some(),
            enricher: None,
            privacy: None,
        })
    }
}

/// One JSON line per media package: `{"mpid": ..., <fields of the entry>}`, or the reason an
/// entry cannot be read.
pub(super) fn write_by_mpid<T, E: std::fmt::Display>(
    out: &mut impl Write,
    rows: Vec<(String, Result<T, E>)>,
    fields: impl Fn(T) -> serde_json::Value,
) -> Result<(), AppError> {
    for (mpid, e) in rows {
        let line = match e {
            Ok(e) => {
                let mut v = serde_json::json!({ "mpid": mpid });
                if let serde_json::Value::Object(f) = fields(e) {
                    v.as_object_mut().expect("an object").extend(f);
                }
                v
            }
            Err(err) => serde_json::json!({"mpid": mpid, "error": err.to_string()}),
        };
        writeln!(out, "{line}").map_err(AppError::Output)?;
    }
    Ok(())
}

/// Writes a dump as JSON lines; unreadable blocks are skipped and returned.
pub fn write_dump(
    j: &Journal,
    req: &DumpRequest,
    out: &mut impl Write,
) -> Result<Vec<inspect::BadBlock>, AppError> {
    if req.episodes {
        let rows = j.episodes()?;
        write_by_mpid(out, rows, |e| {
            serde_json::json!({
                "fetched_at": timefmt::format_rfc3339(e.fetched_at_us),
                "known": e.meta.is_some(),
                "episode": e.meta,
            })
        })?;
        return Ok(Vec::new());
    }
    if req.episode_docs {
        let rows = j.episode_docs()?;
        write_by_mpid(out, rows, |e| {
            serde_json::json!({
                "built_at": timefmt::format_rfc3339(e.built_at_us),
                "document": e.doc,
            })
        })?;
        return Ok(Vec::new());
    }
    if req.dead_letters {
        let refusals = j.sink_refusals()?;
        for (n, d) in j.dead_letters()? {
            let mut line = serde_json::json!({
                "dead_letter": n,
                "at": timefmt::format_rfc3339(d.at_us),
                "source": d.source,
                "reason": d.reason,
                "raw": d.raw,
            });
            // Records a sink refused: which sink, which record, and whether a replay delivered it.
            if let Some(r) = refusals.get(&n) {
                line["sink"] = r.sink.clone().into();
                line["target"] = r.target.clone().into();
                line["action_id"] = r.action_id.into();
                line["seq"] = r.seq.into();
                line["delivered_at"] = r
                    .delivered_at_us
                    .map(timefmt::format_rfc3339)
                    .map_or(serde_json::Value::Null, Into::into);
            }
            writeln!(out, "{line}").map_err(AppError::Output)?;
        }
        return Ok(Vec::new());
    }
    let privacy = req.privacy.as_ref().map(crate::privacy::Privacy::for_sink);
    if req.enrich || privacy.is_some() {
        // What a sink would send: the Elasticsearch document of `-o es` (`--enrich`, enriched
        // as the settings say), or the record; with `--pseudonymize`, ids and addresses as the
        // privacy settings show them.
        let es = req.enrich;
        let enrich = req.enricher.as_ref().filter(|_| es).map(|e| e.for_sink());
        let mut shaper = crate::enrich::Shaper::new(enrich, privacy);
        let write = |r: &crate::record::Record, line: &mut Vec<u8>| match &mut shaper {
            Some(s) => s.write_record(r, line, es),
            None => r.write_es_json(line),
        };
        return Ok(inspect::dump_with(j, &req.filter, req.limit, out, write)?.bad_blocks);
    }
    Ok(inspect::dump(j, &req.filter, req.limit, out)?.bad_blocks)
}

/// The blocks a dump skipped, each named on stderr; an error when there were any.
fn unreadable(bad: &[inspect::BadBlock]) -> Result<(), AppError> {
    for b in bad {
        eprintln!(
            "error: the block at sequence {} cannot be read ({}); its records were skipped",
            b.first_seq, b.error
        );
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(failed(format!(
        "{} block(s) could not be read; run `harvester journal verify` for a full report",
        bad.len()
    )))
}

/// A write to stdout that failed: a closed pipe (`| head`) ends the dump normally.
pub(super) fn write_error(e: std::io::Error) -> Result<(), AppError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(AppError::io("writing the dump", e))
    }
}

/// Writes the selected records as CSV (see [`crate::record_csv`]); unreadable blocks are
/// skipped and returned.
pub fn write_csv_dump(
    j: &Journal,
    req: &DumpRequest,
    out: impl Write,
) -> Result<Vec<inspect::BadBlock>, AppError> {
    let mut csv = match CsvDump::new(out) {
        Ok(c) => c,
        Err(e) => return write_error(e).map(|()| Vec::new()),
    };
    let mut privacy = req.privacy.as_ref().map(crate::privacy::Privacy::for_sink);
    let sum = inspect::for_each(j, &req.filter, req.limit, |r| match &mut privacy {
        Some(p) => csv.record(&p.apply(r)),
        None => csv.record(r),
    })?;
    csv.finish().map(drop).or_else(write_error)?;
    Ok(sum.bad_blocks)
}

/// `journal dump --format xapi`: the statements `-o xapi` would post for the selected records
/// (every record before them feeds the sessions), as JSON lines; the figures on stderr.
fn dump_xapi(cli: &Cli, a: &DumpArgs) -> Result<(), AppError> {
    let other = if a.dead_letters {
        Some("--dead-letters")
    } else if a.episodes {
        Some("--episodes")
    } else if a.episode_docs {
        Some("--episode-docs")
    } else if a.enrich {
        Some("--enrich")
    } else if a.range.seq.is_some() {
        Some("--seq (statements follow sessions through the whole journal: select by --from/--to, --mpid, --type)")
    } else if a.limit.is_some() {
        Some("--limit (a record can make several statements: select by --from/--to)")
    } else {
        None
    };
    if let Some(what) = other {
        return Err(ConfigError::new(format!(
            "--format xapi writes the statements of the records; it does not take {what}"
        ))
        .into());
    }
    let shape = std::sync::Arc::new(a.xapi.shape()?);
    let privacy = a.enrich_args.privacy_settings()?;
    let privacy = privacy.is_on().then(|| privacy.for_sink());
    let (mut filter, _) = super::filter(&a.range)?;
    filter.mpids = a.mpid.clone();
    filter.types = a.kind.clone();
    let j = match access(cli)? {
        Access::Local(j) => j,
        Access::Remote(_) => {
            return Err(failed(
                "journal dump --format xapi reads the whole journal itself, and `harvester run` holds it now; run it while the service is stopped",
            ))
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let (figures, bad) = match crate::xapi::dump(&j, shape, privacy, &filter, &mut out) {
        Ok(x) => x,
        Err(crate::journal::JournalError::Dump(e)) => return write_error(e),
        Err(e) => return Err(e.into()),
    };
    out.flush().or_else(write_error)?;
    drop(out);
    tracing::info!(
        actions = figures.actions,
        initialized = figures.initialized,
        played = figures.played,
        paused = figures.paused,
        seeked = figures.seeked,
        completed = figures.completed,
        terminated = figures.terminated,
        heartbeats = figures.heartbeats,
        other_actions = figures.other_actions,
        positions_corrected = figures.positions_corrected,
        unattributed = figures.unattributed,
        implausible_heartbeats = figures.implausible_heartbeats,
        "xapi statements"
    );
    unreadable(&bad)
}

/// `--format csv` writes records; the other dumps have shapes of their own and stay JSON.
pub(super) fn check_csv(a: &DumpArgs) -> Result<(), ConfigError> {
    let other = if a.dead_letters {
        Some("--dead-letters (each holds the raw JSON of its input)")
    } else if a.episodes {
        Some("--episodes")
    } else if a.episode_docs {
        Some("--episode-docs (documents hold a list of slides)")
    } else if a.enrich {
        Some("--enrich (the geoip and ua fields depend on the database and the agent)")
    } else {
        None
    };
    match other {
        Some(what) => Err(ConfigError::new(format!(
            "--format csv writes the records only; {what} is dumped as JSON lines: leave out --format csv"
        ))),
        None => Ok(()),
    }
}

pub(super) async fn dump(cli: &Cli, a: &DumpArgs) -> Result<(), AppError> {
    if a.format == DumpFormat::Xapi {
        return dump_xapi(cli, a);
    }
    let csv = a.format == DumpFormat::Csv;
    if csv {
        check_csv(a)?;
    }
    let pairs = dump_pairs(a);
    let mut req = DumpRequest::from_pairs(&pairs)?;
    if a.enrich {
        a.enrich_args.check()?;
        req.enricher = a.enrich_args.enricher.get().cloned();
    }
    if a.pseudonymize {
        let p = a.enrich_args.privacy_settings()?;
        if !p.is_on() {
            return Err(ConfigError::new(
                "journal dump --pseudonymize shows records as the sinks get them under PSEUDONYMIZE_KEY and IP_PRIVACY, and neither is set: set PSEUDONYMIZE_KEY (at least 32 bytes, environment or .env) and/or IP_PRIVACY=truncate|drop",
            )
            .into());
        }
        req.privacy = Some(p.clone());
    }
    let j = match access(cli)? {
        Access::Local(j) => j,
        Access::Remote(_) if a.pseudonymize => {
            return Err(failed(
                "journal dump --pseudonymize reads the journal itself, and `harvester run` holds it now; run it while the service is stopped",
            ))
        }
        Access::Remote(_) if a.enrich => {
            return Err(failed(
                "journal dump --enrich reads the journal itself, and `harvester run` holds it now; dump without --enrich (the service answers that), or run it while the service is stopped",
            ))
        }
        Access::Remote(addr) if csv => return remote_csv(&addr, &pairs).await,
        Access::Remote(addr) => return remote(&addr, "/journal/dump", &pairs).await,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let bad = if csv {
        write_csv_dump(&j, &req, &mut out)?
    } else {
        write_dump(&j, &req, &mut out)?
    };
    drop(out);
    unreadable(&bad)
}
