//! `harvester journal …`: read and reuse the journal offline (no Opencast, no `.env` needed).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono_tz::Tz;

use super::{check_sink_settings, failed, make_sink, open_journal, parse_outputs, AppError};
use crate::cli::{
    Cli, DumpArgs, JournalArgs, JournalCommand, PruneArgs, RangeArgs, ReplayArgs, SalvageArgs,
    StatsArgs,
};
use crate::config::{self, ConfigError};
use crate::journal::inspect::{self, Filter};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::{forward, timefmt};

pub async fn run(cli: &Cli, args: &JournalArgs) -> Result<(), AppError> {
    match &args.command {
        JournalCommand::Dump(a) => dump(cli, a).await,
        JournalCommand::Stats(a) => stats(cli, a).await,
        JournalCommand::Verify => verify(cli),
        JournalCommand::Replay(a) => replay(cli, a).await,
        JournalCommand::Prune(a) => prune(cli, a),
        JournalCommand::Salvage(a) => salvage(cli, a),
    }
}

/// Parses `A..B`, `A..`, `..B` or `A` (inclusive).
pub fn parse_seq(s: &str) -> Result<(u64, u64), ConfigError> {
    let bad = || {
        ConfigError(format!(
            "--seq '{s}' is not a range like 1000..1999, 1000.. or ..1999"
        ))
    };
    let num = |t: &str, default: u64| -> Result<u64, ConfigError> {
        if t.trim().is_empty() {
            Ok(default)
        } else {
            t.trim().parse::<u64>().map_err(|_| bad())
        }
    };
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (num(a, 0)?, num(b, u64::MAX)?),
        None => {
            let n = num(s, 0)?;
            (n, n)
        }
    };
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses `90d`, `12h`, `30m`, `3600s`, `2w` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, ConfigError> {
    let t = s.trim();
    let bad = || {
        ConfigError(format!(
            "'{s}' is not a duration like 90d, 12h, 30m, 3600s or 2w"
        ))
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

fn filter(r: &RangeArgs) -> Result<(Filter, Tz), ConfigError> {
    let tz = config::parse_tz(&r.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let t = |v: &Option<String>, flag: &str| -> Result<Option<i64>, ConfigError> {
        v.as_deref()
            .map(|s| {
                timefmt::parse_user_time(s, tz).map_err(|e| ConfigError(format!("{flag}: {e}")))
            })
            .transpose()
    };
    let from_us = t(&r.from, "--from")?;
    // A YYYYMMDDHHmmss end covers its whole second.
    let to_us = t(&r.to, "--to")?.map(|us| {
        if r.to.as_deref().is_some_and(|s| s.trim().len() == 14) {
            us + 999_999
        } else {
            us
        }
    });
    if let (Some(f), Some(t)) = (from_us, to_us) {
        if t < f {
            return Err(ConfigError("--to is before --from".into()));
        }
    }
    let seq = r.seq.as_deref().map(parse_seq).transpose()?;
    Ok((
        Filter {
            from_us,
            to_us,
            seq,
            ..Filter::default()
        },
        tz,
    ))
}

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
    p
}

/// What to dump.
pub struct DumpRequest {
    filter: Filter,
    limit: Option<u64>,
    episodes: bool,
    episode_docs: bool,
    dead_letters: bool,
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
        let (mut filter, _) = self::filter(&range)?;
        filter.mpids = all("mpid");
        filter.types = all("type");
        let limit = get("limit")
            .map(|l| {
                l.parse::<u64>()
                    .map_err(|_| ConfigError(format!("--limit '{l}' is not a number")))
            })
            .transpose()?;
        Ok(DumpRequest {
            filter,
            limit,
            episodes: get("episodes").is_some(),
            episode_docs: get("episode_docs").is_some(),
            dead_letters: get("dead_letters").is_some(),
        })
    }
}

/// One JSON line per media package: `{"mpid": ..., <fields of the entry>}`, or the reason an
/// entry cannot be read.
fn write_by_mpid<T, E: std::fmt::Display>(
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
        writeln!(out, "{line}").map_err(failed)?;
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
        let rows = j.episodes().map_err(failed)?;
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
        let rows = j.episode_docs().map_err(failed)?;
        write_by_mpid(out, rows, |e| {
            serde_json::json!({
                "built_at": timefmt::format_rfc3339(e.built_at_us),
                "document": e.doc,
            })
        })?;
        return Ok(Vec::new());
    }
    if req.dead_letters {
        for (n, d) in j.dead_letters().map_err(failed)? {
            let line = serde_json::json!({
                "dead_letter": n,
                "at": timefmt::format_rfc3339(d.at_us),
                "source": d.source,
                "reason": d.reason,
                "raw": d.raw,
            });
            writeln!(out, "{line}").map_err(failed)?;
        }
        return Ok(Vec::new());
    }
    Ok(inspect::dump(j, &req.filter, req.limit, out)
        .map_err(failed)?
        .bad_blocks)
}

/// The journal, or the running service that holds it.
enum Access {
    Local(Arc<Journal>),
    Remote(String),
}

fn access(cli: &Cli) -> Result<Access, AppError> {
    match super::open_journal_read(&cli.journal) {
        Ok(j) => Ok(Access::Local(j)),
        Err(e) => match super::owner::read(&cli.journal).and_then(|o| o.metrics_addr) {
            Some(addr) => {
                tracing::info!(%addr, "the journal is held by `harvester run`; asking it");
                Ok(Access::Remote(addr))
            }
            None => Err(e),
        },
    }
}

/// GETs `path` from a running service and copies the body to stdout as it arrives.
async fn remote(addr: &str, path: &str, pairs: &[(String, String)]) -> Result<(), AppError> {
    let mut url = reqwest::Url::parse(&format!("http://{addr}{path}")).map_err(failed)?;
    url.query_pairs_mut().extend_pairs(pairs);
    let mut resp = reqwest::get(url).await.map_err(|e| {
        failed(format!(
            "the running harvester at {addr} did not answer: {e}"
        ))
    })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(failed(format!(
            "the running harvester answered {status}: {}",
            text.trim()
        )));
    }
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if out.write_all(&chunk).is_err() {
            break;
        }
    }
    out.flush().ok();
    Ok(())
}

async fn dump(cli: &Cli, a: &DumpArgs) -> Result<(), AppError> {
    let pairs = dump_pairs(a);
    let req = DumpRequest::from_pairs(&pairs)?;
    let j = match access(cli)? {
        Access::Local(j) => j,
        Access::Remote(addr) => return remote(&addr, "/journal/dump", &pairs).await,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let bad = write_dump(&j, &req, &mut out)?;
    drop(out);
    for b in &bad {
        eprintln!(
            "error: the block at sequence {} cannot be read ({}); its records were skipped",
            b.first_seq, b.error
        );
    }
    if !bad.is_empty() {
        return Err(failed(format!(
            "{} block(s) could not be read; run `harvester journal verify` for a full report",
            bad.len()
        )));
    }
    Ok(())
}

async fn stats(cli: &Cli, a: &StatsArgs) -> Result<(), AppError> {
    let s = match access(cli)? {
        Access::Local(j) => inspect::stats(&j).map_err(failed)?,
        Access::Remote(addr) => {
            let url = format!("http://{addr}/journal/stats");
            let resp = reqwest::get(&url).await.map_err(|e| {
                failed(format!(
                    "the running harvester at {addr} did not answer: {e}"
                ))
            })?;
            resp.json::<inspect::Stats>().await.map_err(failed)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(failed)?);
    } else {
        print!("{s}");
    }
    Ok(())
}

fn verify(cli: &Cli) -> Result<(), AppError> {
    let j = Journal::open_read_only(&cli.journal).map_err(|e| {
        let held = matches!(e, crate::journal::JournalError::InUse { .. });
        let err = super::journal_error(&cli.journal, e);
        if !held {
            return err;
        }
        failed(format!(
            "{err}; verify reads every block, so it does not ask the running process: stop it, \
             or verify a copy (cp {p} /tmp/copy.redb && harvester --journal /tmp/copy.redb journal verify)",
            p = cli.journal.display()
        ))
    })?;
    let rep = inspect::verify(&j).map_err(failed)?;
    if rep.ok() {
        let q = if rep.quarantined > 0 {
            format!(
                " ({} unreadable blocks set aside by salvage)",
                rep.quarantined
            )
        } else {
            String::new()
        };
        println!(
            "ok: {} records in {} blocks, every one readable, tables consistent{q}",
            rep.records, rep.blocks
        );
        return Ok(());
    }
    for p in &rep.problems {
        println!("problem: {p}");
    }
    Err(failed(format!(
        "journal {} has {} problem(s) (listed above); `journal dump` skips unreadable blocks and goes on",
        cli.journal.display(),
        rep.problems.len()
    )))
}

async fn replay(cli: &Cli, a: &ReplayArgs) -> Result<(), AppError> {
    let (f, _) = filter(&a.range)?;
    if f.from_us.is_none() && f.to_us.is_none() && f.seq.is_none() {
        return Err(
            ConfigError("journal replay needs a range: --from/--to or --seq".into()).into(),
        );
    }
    let mut sink_args = a.sink.clone();
    if let Some(ix) = &a.es_index {
        sink_args.es_action_index = ix.clone();
    }
    let outputs = parse_outputs(&a.output, &sink_args)?;
    check_sink_settings(&sink_args)?;
    let [output] = outputs.as_slice() else {
        return Err(
            ConfigError("journal replay sends to one sink: -o sqs, -o - or -o es".into()).into(),
        );
    };
    if a.es_index.is_some() && *output != super::Output::Es {
        return Err(ConfigError("--es-index goes with -o es".into()).into());
    }
    let j = open_journal(&cli.journal)?;
    let (mut sink, target) = make_sink(output, &sink_args, &j).await?;
    let name = format!(
        "replay:{}",
        a.name.clone().unwrap_or_else(|| format!(
            "{target}:{}:{}:{}",
            a.range.from.as_deref().unwrap_or(""),
            a.range.to.as_deref().unwrap_or(""),
            a.range.seq.as_deref().unwrap_or("")
        ))
    );
    let start = f.start_seq();
    if a.restart {
        j.set_cursor(&name, start).map_err(failed)?;
    }
    let mut pos = j.cursor(&name).map_err(failed)?.max(start);
    let end = j
        .next_seq()
        .map_err(failed)?
        .min(f.seq.map(|(_, b)| b.saturating_add(1)).unwrap_or(u64::MAX));
    if pos > start {
        tracing::info!(replay = %name, resume_at = pos, "resuming replay");
    }
    let began = Instant::now();
    let mut sent = 0u64;
    // Progress in journal sequence numbers walked (records outside the range are walked too).
    let progress = Progress::new("replay", "records walked", end.saturating_sub(pos));
    while pos < end {
        let jj: Arc<Journal> = j.clone();
        let (first, records) =
            tokio::task::spawn_blocking(move || jj.read_from(pos, forward::CHUNK))
                .await
                .map_err(failed)?
                .map_err(failed)?;
        if records.is_empty() {
            break;
        }
        let upto = records.len().min((end.saturating_sub(first)) as usize);
        let selected: Vec<_> = records[..upto]
            .iter()
            .enumerate()
            .filter(|(i, r)| f.selects(first + *i as u64, r))
            .map(|(_, r)| r.clone())
            .collect();
        if !selected.is_empty() {
            if let Err(e) = sink.send(&selected).await {
                progress.finish();
                return Err(failed(format!(
                    "replay {name}: {e}; {sent} records were sent, run the same command again to resume"
                )));
            }
        }
        sent += selected.len() as u64;
        let next = first + upto as u64;
        progress.inc(next - pos);
        pos = next;
        j.set_cursor(&name, pos).map_err(failed)?;
    }
    progress.finish();
    tracing::info!(replay = %name, sent, seconds = format!("{:.3}", began.elapsed().as_secs_f64()), "replay complete");
    Ok(())
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<(), AppError> {
    let secs =
        parse_duration(&a.older_than).map_err(|e| ConfigError(format!("--older-than: {}", e.0)))?;
    let cutoff = timefmt::now_us() - secs * 1_000_000;
    let j = open_journal(&cli.journal)?;
    let cursors: Vec<(String, u64)> = j
        .cursors()
        .map_err(failed)?
        .into_iter()
        .filter(|(n, _)| !n.starts_with("replay:"))
        .collect();
    let acked = cursors.iter().map(|(_, c)| *c).min().unwrap_or(0);
    let mut held_back = 0u64;
    let (blocks, records) = j
        .remove_blocks(|first, h| {
            if h.max_created_us >= cutoff {
                return false;
            }
            let forwarded = first + h.count as u64 <= acked;
            if !forwarded && !a.force {
                held_back += h.count as u64;
                return false;
            }
            true
        })
        .map_err(failed)?;
    let mut j = Arc::try_unwrap(j).map_err(|_| failed("journal still shared"))?;
    let spin = crate::progress::Spinner::start("compacting the journal");
    let compacted = j.compact().map_err(failed);
    spin.finish();
    compacted?;
    let size = std::fs::metadata(&cli.journal)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "pruned {records} records ({blocks} blocks) older than {}; journal now {size} bytes",
        timefmt::format_rfc3339(cutoff)
    );
    if held_back > 0 {
        let who = if cursors.is_empty() {
            "no sink has forwarded anything yet".to_string()
        } else {
            cursors
                .iter()
                .map(|(n, c)| format!("{n} at {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(failed(format!(
            "kept {held_back} older records that not every sink has acknowledged ({who}); forward them first, or use --force to drop them"
        )));
    }
    Ok(())
}

fn salvage(cli: &Cli, a: &SalvageArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&a.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let j = open_journal(&cli.journal)?;
    let done = j.salvage().map_err(failed)?;
    if done.is_empty() {
        println!("no unreadable blocks: nothing to salvage");
        return Ok(());
    }
    let mut windows: Vec<(i64, i64)> = Vec::new();
    let mut unknown = false;
    for s in &done {
        println!(
            "quarantined the block at sequence {}..{} ({}); forgot {} action ids{}",
            s.first_seq,
            s.end_seq,
            s.reason,
            s.forgotten_ids,
            if s.acknowledged_by.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} had acknowledged it and will receive its records again",
                    s.acknowledged_by.join(", ")
                )
            }
        );
        match s.window {
            Some(w) => windows.push(w),
            None => unknown = true,
        }
    }
    // Whole seconds (the harvest's unit, both ends inclusive), overlapping windows merged.
    windows.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (a, b) in windows {
        let (a, b) = (timefmt::floor_second(a), timefmt::floor_second(b));
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1_000_000 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    println!("to bring their records back, harvest again (OPENCAST_TIMEZONE={tz}):");
    for (a, b) in &merged {
        println!(
            "  harvester harvest -s {} -e {} --no-update-last-ts",
            timefmt::format_compact(*a, tz),
            timefmt::format_compact(*b, tz)
        );
    }
    if unknown {
        println!(
            "  (a block's time range could not be read: harvest again from before the first \
             record you miss, with -s/-e and --no-update-last-ts)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges() {
        assert_eq!(parse_seq("10..20").unwrap(), (10, 20));
        assert_eq!(parse_seq("10..").unwrap(), (10, u64::MAX));
        assert_eq!(parse_seq("..20").unwrap(), (0, 20));
        assert_eq!(parse_seq("7").unwrap(), (7, 7));
        assert!(parse_seq("20..10").is_err() && parse_seq("a..b").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400);
        assert!(
            parse_duration("d").is_err()
                && parse_duration("5y").is_err()
                && parse_duration("").is_err()
        );
    }
}
