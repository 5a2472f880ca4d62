//! `harvester journal …`: read and reuse the journal offline (no Opencast, no `.env` needed).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono_tz::Tz;

use super::{check_sink_settings, failed, make_sink, open_journal, parse_outputs, AppError};
use crate::cli::{
    Cli, DumpArgs, DumpFormat, JournalArgs, JournalCommand, PruneArgs, RangeArgs, ReplayArgs,
    SalvageArgs, StatsArgs,
};
use crate::config::{self, ConfigError};
use crate::forward::{self, SinkFailure};
use crate::journal::inspect::{self, Filter};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::record_csv::CsvDump;
use crate::timefmt;

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
    // At most 100 years: the cutoff is computed in microseconds, where more would overflow.
    n.checked_mul(mult)
        .filter(|secs| *secs <= 3_155_760_000)
        .ok_or_else(|| ConfigError(format!("'{s}' is out of range: at most 36500d (100 years)")))
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
    if a.enrich {
        put("enrich", "1");
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
            enrich: get("enrich").is_some(),
            enricher: None,
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
    if req.enrich {
        // The Elasticsearch document `-o es` would send, enriched as the settings say.
        let mut e = req.enricher.as_ref().map(|e| e.for_sink());
        let write = |r: &crate::record::Record, line: &mut Vec<u8>| match &mut e {
            Some(e) => e.write_record(r, line, true),
            None => r.write_es_json(line),
        };
        return Ok(inspect::dump_with(j, &req.filter, req.limit, out, write)?.bad_blocks);
    }
    Ok(inspect::dump(j, &req.filter, req.limit, out)?.bad_blocks)
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

/// A GET to the running service, with the bearer token of `HARVESTER_API_TOKEN` when it is set
/// (the service needs it when it listens on a non-loopback address).
fn api_get(url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
    let req = reqwest::Client::new().get(url);
    match std::env::var(super::run::TOKEN_VAR) {
        Ok(t) if !t.is_empty() => req.bearer_auth(t),
        _ => req,
    }
}

/// GETs `path` from a running service: the response, once it says success.
async fn remote_get(
    addr: &str,
    path: &str,
    pairs: &[(String, String)],
) -> Result<reqwest::Response, AppError> {
    let mut url = reqwest::Url::parse(&format!("http://{addr}{path}")).map_err(failed)?;
    url.query_pairs_mut().extend_pairs(pairs);
    let resp = api_get(url).send().await.map_err(|e| {
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
    Ok(resp)
}

/// GETs `path` from a running service and copies the body to stdout as it arrives.
async fn remote(addr: &str, path: &str, pairs: &[(String, String)]) -> Result<(), AppError> {
    let mut resp = remote_get(addr, path, pairs).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await? {
        if out.write_all(&chunk).is_err() {
            break;
        }
    }
    out.flush().ok();
    Ok(())
}

/// The running service's JSON-lines dump, turned into CSV as it arrives (the service speaks
/// JSON lines only, so a service of any version answers a CSV dump).
async fn remote_csv(addr: &str, pairs: &[(String, String)]) -> Result<(), AppError> {
    let mut resp = remote_get(addr, "/journal/dump", pairs).await?;
    let stdout = std::io::stdout();
    let mut csv = match CsvDump::new(std::io::BufWriter::with_capacity(1 << 16, stdout.lock())) {
        Ok(c) => c,
        Err(e) => return write_error(e),
    };
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(n) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + n];
            start += n + 1;
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                failed(format!(
                    "the running harvester sent a line that is not a record ({e})"
                ))
            })?;
            if let Err(e) = csv.value(&v) {
                return write_error(e);
            }
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        return Err(failed(
            "the running harvester's answer ended in the middle of a record",
        ));
    }
    csv.finish().map(drop).or_else(write_error)
}

/// A write to stdout that failed: a closed pipe (`| head`) ends the dump normally.
fn write_error(e: std::io::Error) -> Result<(), AppError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(failed(format!("writing the dump: {e}")))
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
    let sum = inspect::for_each(j, &req.filter, req.limit, |r| csv.record(r))?;
    csv.finish().map(drop).or_else(write_error)?;
    Ok(sum.bad_blocks)
}

/// `--format csv` writes records; the other dumps have shapes of their own and stay JSON.
fn check_csv(a: &DumpArgs) -> Result<(), ConfigError> {
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
        Some(what) => Err(ConfigError(format!(
            "--format csv writes the records only; {what} is dumped as JSON lines: leave out --format csv"
        ))),
        None => Ok(()),
    }
}

async fn dump(cli: &Cli, a: &DumpArgs) -> Result<(), AppError> {
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
    let j = match access(cli)? {
        Access::Local(j) => j,
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
    if a.enrich {
        a.enrich_args.check()?;
    }
    let s = match access(cli)? {
        Access::Local(j) if a.enrich => {
            let s = inspect::stats(&j)?;
            let f = enrich_figures(&j, a.enrich_args.enricher.get())?;
            if a.json {
                let mut v = serde_json::to_value(&s)?;
                v["enrichment"] = serde_json::to_value(f)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{s}");
                let rate = crate::enrich::EnrichFigures::rate;
                println!(
                    "enrichment: {} located, {} not located, {} user agents parsed, {} without; cache hit rates: addresses {:.1}%, user agents {:.1}%",
                    f.located,
                    f.not_located,
                    f.ua_parsed,
                    f.ua_missing,
                    100.0 * rate(f.ip_cache_hits, f.ip_cache_misses),
                    100.0 * rate(f.ua_cache_hits, f.ua_cache_misses)
                );
            }
            return Ok(());
        }
        Access::Remote(_) if a.enrich => {
            return Err(failed(
                "journal stats --enrich reads the journal itself, and `harvester run` holds it now; its /metrics has the enrichment figures of what it forwarded",
            ))
        }
        Access::Local(j) => inspect::stats(&j)?,
        Access::Remote(addr) => {
            let url = format!("http://{addr}/journal/stats");
            let resp = api_get(&url).send().await.map_err(|e| {
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
            resp.json::<inspect::Stats>().await?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{s}");
    }
    Ok(())
}

/// The enrichment figures of every journaled record, as a forward with `e` would count them.
fn enrich_figures(
    j: &Journal,
    e: Option<&Arc<crate::enrich::Enricher>>,
) -> Result<crate::enrich::EnrichFigures, AppError> {
    let Some(e) = e else {
        return Err(ConfigError(
            "journal stats --enrich needs GEOIP_DATABASE and/or PARSE_USERAGENT=1".into(),
        )
        .into());
    };
    let mut s = e.for_sink();
    let mut pos = 0;
    loop {
        let (first, records) = j.read_from(pos, forward::CHUNK)?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            s.extra(
                crate::enrich::first_ip(r.ip_chain.as_deref()),
                r.useragent.as_deref(),
            );
        }
        pos = first + records.len() as u64;
    }
    drop(s);
    Ok(e.stats().figures())
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
    let rep = inspect::verify(&j)?;
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
    if a.dead_letters || !a.dead_letter.is_empty() {
        return replay_dead_letters(cli, a).await;
    }
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
        j.set_cursor(&name, start)?;
    }
    let mut pos = j.cursor(&name)?.max(start);
    let end = j
        .next_seq()?
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
            tokio::task::spawn_blocking(move || jj.read_from(pos, forward::CHUNK)).await??;
        if records.is_empty() {
            break;
        }
        let upto = records.len().min((end.saturating_sub(first)) as usize);
        // Runs of consecutive selected records, each sent with its first sequence number.
        let mut k = 0;
        while k < upto {
            if !f.selects(first + k as u64, &records[k]) {
                k += 1;
                continue;
            }
            let run_start = k;
            while k < upto && f.selects(first + k as u64, &records[k]) {
                k += 1;
            }
            let run = &records[run_start..k];
            if let Err(e) = sink.send(first + run_start as u64, run).await {
                progress.finish();
                return Err(failed(format!(
                    "replay {name}: {e}; {sent} records were sent, run the same command again to resume"
                )));
            }
            sent += run.len() as u64;
        }
        let next = first + upto as u64;
        progress.inc(next - pos);
        pos = next;
        j.set_cursor(&name, pos)?;
    }
    progress.finish();
    drop(sink); // adds its last enrichment counts to the figures
    super::log_enrichment(&sink_args);
    tracing::info!(replay = %name, sent, seconds = format!("{:.3}", began.elapsed().as_secs_f64()), "replay complete");
    Ok(())
}

/// `journal replay --dead-letters`: sends the records a sink refused again, each once, to the
/// same kind of sink (`-o sqs` for SQS's, `-o es` for Elasticsearch's, into the index that
/// refused it). A delivered dead letter is marked so no replay sends it again; one refused again
/// stays as it is, and the command exits 1 saying why.
async fn replay_dead_letters(cli: &Cli, a: &ReplayArgs) -> Result<(), AppError> {
    if a.range.from.is_some() || a.range.to.is_some() || a.range.seq.is_some() {
        return Err(ConfigError(
            "journal replay --dead-letters takes no --from/--to/--seq (choose with --dead-letter N)"
                .into(),
        )
        .into());
    }
    let outputs = parse_outputs(&a.output, &a.sink)?;
    check_sink_settings(&a.sink)?;
    let kind = match outputs.as_slice() {
        [super::Output::Sqs] => "sqs",
        [super::Output::Es] => "es",
        _ => return Err(ConfigError(
            "journal replay --dead-letters sends to the sink that refused them: -o sqs or -o es"
                .into(),
        )
        .into()),
    };
    let j = open_journal(&cli.journal)?;
    let letters = j.dead_letters()?;
    let refusals = j.sink_refusals()?;
    for n in &a.dead_letter {
        match refusals.get(n) {
            Some(r) if r.sink == kind => {}
            Some(r) => {
                return Err(ConfigError(format!(
                    "dead letter {n} was refused by {}, not {kind}: use -o {}",
                    r.sink, r.sink
                ))
                .into())
            }
            None => {
                return Err(ConfigError(format!(
                "dead letter {n} is not a record a sink refused (see journal dump --dead-letters)"
            ))
                .into())
            }
        }
    }
    let todo: Vec<_> = letters
        .into_iter()
        .filter_map(|(n, d)| refusals.get(&n).map(|r| (n, d, r.clone())))
        .filter(|(n, _, r)| {
            r.sink == kind
                && r.delivered_at_us.is_none()
                && (a.dead_letter.is_empty() || a.dead_letter.contains(n))
        })
        .collect();
    if todo.is_empty() {
        tracing::info!(
            sink = kind,
            "no undelivered dead letters of this sink to replay"
        );
        return Ok(());
    }
    let (mut sink, target) = make_sink(&outputs[0], &a.sink, &j).await?;
    let (mut delivered, mut still) = (0u64, Vec::new());
    for (n, d, r) in todo {
        let outcome = match &mut sink {
            forward::Sink::Sqs(s) => {
                let entry = forward::sqs::Entry {
                    body: d.raw.clone(),
                    action_id: r.action_id,
                };
                let out = s.send_entries(vec![entry]).await;
                match (out.failed, out.refused.into_iter().next()) {
                    (Some(e), _) => Err(SinkFailure::from(e)),
                    (None, Some((_, why))) => Ok(Some(why)),
                    (None, None) => Ok(None),
                }
            }
            forward::Sink::Es(s) => s
                .resend_document(&r.target, r.action_id, &d.raw)
                .await
                .map_err(SinkFailure::from),
            // `kind` above is sqs or es: stdout takes no dead letters.
            forward::Sink::Stdout(_) => unreachable!("dead letters replay to sqs or es only"),
        };
        match outcome {
            Ok(None) => {
                j.mark_dead_letter_delivered(n, timefmt::now_us())?;
                tracing::info!(dead_letter = n, action_id = r.action_id, sink = %target, "dead letter delivered");
                delivered += 1;
            }
            Ok(Some(why)) => {
                tracing::warn!(dead_letter = n, action_id = r.action_id, reason = %why, "dead letter refused again; it stays");
                still.push((n, why));
            }
            Err(source) => {
                return Err(AppError::Replay {
                    target,
                    delivered,
                    source: Box::new(source),
                })
            }
        }
    }
    tracing::info!(sink = %target, delivered, refused_again = still.len(), "dead letter replay complete");
    match still.first() {
        None => Ok(()),
        Some((n, why)) => Err(failed(format!(
            "{} dead letter(s) were refused again by {target} and stay undelivered (dead letter {n}: {why})",
            still.len()
        ))),
    }
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<(), AppError> {
    let secs =
        parse_duration(&a.older_than).map_err(|e| ConfigError(format!("--older-than: {}", e.0)))?;
    let cutoff = timefmt::now_us() - secs * 1_000_000;
    let j = open_journal(&cli.journal)?;
    let cursors: Vec<(String, u64)> = j
        .cursors()?
        .into_iter()
        .filter(|(n, _)| !n.starts_with("replay:"))
        .collect();
    let acked = cursors.iter().map(|(_, c)| *c).min().unwrap_or(0);
    let mut held_back = 0u64;
    let (blocks, records) = j.remove_blocks(|first, h| {
        if h.max_created_us >= cutoff {
            return false;
        }
        let forwarded = first + h.count as u64 <= acked;
        if !forwarded && !a.force {
            held_back += h.count as u64;
            return false;
        }
        true
    })?;
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
    let done = j.salvage()?;
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
