//! `harvester check`: reads the settings exactly as `harvest` (or `run`) would, then checks every
//! service they name, without harvesting or writing anything (the one object written, an S3
//! probe beside the checkpoint, is deleted at once; the checkpoint itself is never touched).
//!
//! Each check is one line, `✓` or `✗` with the remedy (`-` when a check could not be made
//! because an earlier one failed); `--json` prints the same as one object. Exit status: 0 when
//! every check passes, 1 when one fails, 2 when a setting is wrong (as `harvest` would exit).
//!
//! No credential is ever shown: the Opencast URL cannot hold one (refused as a setting), the
//! Elasticsearch URL is shown without its user information, and as a last guard every line is
//! scrubbed of the secret values the settings hold before it is printed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Serialize;

use super::harvest_cmd::{span_verdict, SpanVerdict};
use super::{check_sink_formats, owner, parse_outputs, start_of, AppError, Output, StartFrom};
use crate::cli::{CheckArgs, CheckFor, Cli};
use crate::config::{self, ConfigError};
use crate::es::{templates, EsClient, EsError};
use crate::journal::{inspect, Checkpoint, Journal, JournalError};
use crate::opencast::client::Probe;
use crate::opencast::{ActionsPage, Opencast, OpencastError};
use crate::{aws, timefmt};

/// How long one call to S3 or SQS may take, retries included, before the check fails.
const AWS_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An address to look up in the GeoIP database: in MaxMind's test databases and in GeoLite2.
const GEOIP_PROBE: &str = "81.2.69.160";

/// A user agent to parse with the rules.
const UA_PROBE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not made: what it needs failed first.
    Skip,
    /// Works, with a limit the operator should know of (does not fail the check).
    Warn,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

/// The checks so far; in text mode each is printed as it is made.
struct Report {
    checks: Vec<Check>,
    json: bool,
    /// Values that must never be printed (passwords, tokens), longest first.
    secrets: Vec<String>,
}

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: String, remedy: Option<String>) {
        let c = Check {
            name,
            status,
            // Details quote what others sent (an Opencast body, an S3 object): escaped, they
            // cannot drive the terminal.
            detail: crate::escape::text(&self.scrub(detail)).into_owned(),
            remedy: remedy.map(|r| crate::escape::text(&self.scrub(r)).into_owned()),
        };
        if !self.json {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Fail => "✗",
                Status::Skip => "-",
                Status::Warn => "!",
            };
            let mut line = format!("{mark} {:<15} {}", c.name, c.detail);
            if let Some(r) = &c.remedy {
                line.push_str(" → ");
                line.push_str(r);
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        self.checks.push(c);
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail.into(), None);
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) {
        self.add(name, Status::Fail, detail.into(), Some(remedy.into()));
    }

    fn warn(&mut self, name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) {
        self.add(name, Status::Warn, detail.into(), Some(remedy.into()));
    }

    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Skip, detail.into(), None);
    }

    fn scrub(&self, mut s: String) -> String {
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    }

    fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// The secret values of the settings (a last guard: no message is meant to hold them).
fn secrets(args: &CheckArgs, cli: &Cli) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if let Some(p) = &args.harvest.opencast.conn.password {
        v.push(p.expose().to_string());
    }
    if let Some(t) = &cli.loggly_token {
        v.push(t.expose().to_string());
    }
    if let Ok((_, Some(elasticsearch::auth::Credentials::Basic(_, pass)))) =
        crate::es::parse_host(&args.harvest.sink.es_host)
    {
        v.push(pass);
    }
    for var in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        super::run::TOKEN_VAR,
        "MATTERHORN_REST_PASS",
    ] {
        if let Ok(s) = std::env::var(var) {
            v.push(s);
        }
    }
    // Short values would blank ordinary words; they are not in any message either.
    v.retain(|s| s.len() >= 6);
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v.dedup();
    v
}

/// The settings, checked as `harvest`/`run` check them; every error, not only the first.
struct Settings {
    tz: Tz,
    outputs: Vec<Output>,
    opencast: Opencast,
    start: Option<i64>,
    end: Option<i64>,
}

fn settings(args: &CheckArgs) -> Result<Settings, Vec<String>> {
    let a = &args.harvest;
    let mut errors = Vec::new();
    let mut keep = |r: Result<(), ConfigError>| {
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    };
    let tz = config::parse_tz(&a.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE");
    let outputs = parse_outputs(&a.output, &a.sink);
    keep(check_sink_formats(&a.sink));
    if !(a.wait.is_finite() && a.wait >= 0.0) {
        keep(Err(ConfigError::new(
            "--wait takes a number of seconds, 0 or more",
        )));
    }
    if a.interval == 0 {
        keep(Err(ConfigError::new(
            "DEFAULT_INTERVAL/--interval must be at least 1 minute",
        )));
    }
    let opencast = config::opencast(&a.opencast.settings(), None);
    if args.for_command == CheckFor::Run {
        for e in run_settings(args) {
            keep(Err(e));
        }
    }
    let times = match &tz {
        Ok(tz) => window_times(args, *tz, &mut errors),
        Err(_) => (None, None),
    };
    let tz = tz.map_err(|e| errors.push(e.to_string())).ok();
    let outputs = outputs.map_err(|e| errors.push(e.to_string())).ok();
    let opencast = opencast.map_err(|e| errors.push(e.to_string())).ok();
    match (tz, outputs, opencast) {
        (Some(tz), Some(outputs), Some(opencast)) if errors.is_empty() => Ok(Settings {
            tz,
            outputs,
            opencast,
            start: times.0,
            end: times.1,
        }),
        _ => Err(errors),
    }
}

/// The settings only `run` reads, checked as `run` parses them (`check` takes them as text).
fn run_settings(args: &CheckArgs) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(every) = &args.every {
        if let Err(e) = crate::cli::secs_in(0.1, 86_400.0, "HARVEST_EVERY")(every) {
            errors.push(ConfigError::new(format!("HARVEST_EVERY/--every: {e}")));
        }
    }
    if let Some(size) = &args.journal_warn_size {
        if let Err(e) = crate::cli::int_in(1u64 << 20, 1 << 50, "bytes", "JOURNAL_WARN_SIZE")(size)
        {
            errors.push(ConfigError::new(format!(
                "JOURNAL_WARN_SIZE/--journal-warn-size: {e}"
            )));
        }
    }
    if args.metrics_addr.parse::<SocketAddr>().is_err() {
        errors.push(ConfigError::new(format!(
            "METRICS_ADDR '{}' is not an address like 127.0.0.1:9898",
            args.metrics_addr
        )));
    }
    if let Err(e) = super::run::ApiToken::from_env() {
        errors.push(e);
    }
    errors
}

/// `--start` and `--end` in `tz`; what does not parse, or ends before it starts, is added to
/// `errors`.
fn window_times(args: &CheckArgs, tz: Tz, errors: &mut Vec<String>) -> (Option<i64>, Option<i64>) {
    let a = &args.harvest;
    let mut parse = |v: &Option<String>, flag: &str| -> Option<i64> {
        let s = v.as_deref()?;
        let parsed = if flag == "--end" {
            timefmt::parse_compact_end(s, tz)
        } else {
            timefmt::parse_compact(s, tz)
        };
        match parsed {
            Ok(us) => Some(us),
            Err(e) => {
                errors.push(format!("{flag}: {e}"));
                None
            }
        }
    };
    let times = (parse(&a.start, "--start"), parse(&a.end, "--end"));
    if let (Some(st), Some(en)) = times {
        if en < st {
            errors.push(format!(
                "--end {} is before --start {}; check --start/--end",
                a.end.as_deref().unwrap_or(""),
                a.start.as_deref().unwrap_or("")
            ));
        }
    }
    times
}

/// `harvester check`.
pub async fn check(cli: &Cli, args: &CheckArgs) -> Result<(), AppError> {
    let mut r = Report {
        checks: Vec::new(),
        json: args.json,
        secrets: secrets(args, cli),
    };
    let result = checks(cli, args, &mut r).await;
    if args.json {
        #[derive(Serialize)]
        struct Json<'a> {
            ok: bool,
            #[serde(rename = "for")]
            for_command: &'static str,
            failed: usize,
            checks: &'a [Check],
        }
        let v = Json {
            ok: result.is_ok(),
            for_command: match args.for_command {
                CheckFor::Harvest => "harvest",
                CheckFor::Run => "run",
            },
            failed: r.failures(),
            checks: &r.checks,
        };
        say!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into())
        )?;
    }
    result
}

async fn checks(cli: &Cli, args: &CheckArgs, r: &mut Report) -> Result<(), AppError> {
    let s = match settings(args) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                r.fail(
                    "settings",
                    e.clone(),
                    "fix the setting named (a flag, the environment or .env, read as `harvest` reads them)",
                );
            }
            return Err(ConfigError::new(format!(
                "{} setting(s) wrong; nothing else was checked",
                errors.len()
            ))
            .into());
        }
    };
    let names: Vec<&str> = s
        .outputs
        .iter()
        .map(|o| match o {
            Output::Stdout => "stdout",
            Output::Sqs => "sqs",
            Output::Es => "es",
            Output::Xapi => "xapi",
        })
        .collect();
    r.pass(
        "settings",
        format!(
            "read as `{}` reads them (flags, environment, .env): every range and format holds; outputs: {}",
            match args.for_command {
                CheckFor::Harvest => "harvest",
                CheckFor::Run => "run",
            },
            if names.is_empty() { "none (journal only)".to_string() } else { names.join(", ") }
        ),
    );

    let journal_cp = check_journal(cli, args, &s, r);
    let s3_cp = check_s3(args, s.tz, r).await;
    let window = check_window(args, &s, journal_cp, s3_cp, r);
    check_opencast(args, &s, window, r).await;
    check_api(args, &s, r).await;
    if s.outputs.contains(&Output::Sqs) {
        check_sqs(args, r).await;
    }
    if s.outputs.contains(&Output::Es) {
        check_es(args, r).await;
    }
    if s.outputs.contains(&Output::Xapi) {
        check_xapi(args, r).await;
    }
    check_enrichment(args, r);
    match r.failures() {
        0 => Ok(()),
        n => Err(AppError::Failed(format!(
            "{n} of {} checks failed (marked ✗, each with its remedy)",
            r.checks.len()
        ))),
    }
}

/// What the journal says about the next harvest: `Ok(checkpoint)` when it could be read
/// (`Ok(None)`: no journal yet, or no checkpoint in it), `Err(())` when it could not.
type JournalCheckpoint = Result<Option<i64>, ()>;

fn check_journal(cli: &Cli, args: &CheckArgs, s: &Settings, r: &mut Report) -> JournalCheckpoint {
    let path = cli.journal.as_path();
    let Some(j) = open_journal(path, r)? else {
        return Ok(None);
    };
    let st = match inspect::stats(&j) {
        Ok(st) => st,
        Err(e) => {
            r.fail(
                "journal",
                format!("{} opens but cannot be read: {e}", path.display()),
                "run `harvester journal verify`, then `harvester journal salvage`",
            );
            return Err(());
        }
    };
    report_stats(path, &st, r);
    let cp = j.checkpoint().ok().flatten();
    report_checkpoint(args, cp.as_ref(), s.tz, r);
    report_lag(args, &s.outputs, &st, r);
    report_dead_letters(&j, st.dead_letters, r);
    Ok(cp.map(|c| c.last_action_us))
}

/// Opens the journal read-only; `Ok(None)` (reported) when there is none yet, `Err(())`
/// (reported) when it cannot be opened.
fn open_journal(path: &Path, r: &mut Report) -> Result<Option<Journal>, ()> {
    match Journal::open_read_only(path) {
        Ok(j) => Ok(Some(j)),
        Err(JournalError::Missing { .. }) => {
            match writable_dir(path) {
                Ok(dir) => r.pass(
                    "journal",
                    format!(
                        "no journal at {} yet: the first harvest creates it (mode 0600) in {}",
                        path.display(),
                        dir
                    ),
                ),
                Err(e) => r.fail(
                    "journal",
                    format!(
                        "no journal at {} yet, and it cannot be created: {e}",
                        path.display()
                    ),
                    "point JOURNAL_PATH (--journal) at a directory this user may write",
                ),
            }
            Ok(None)
        }
        Err(e @ JournalError::InUse { .. }) => {
            let held = owner::read(path)
                .map(|o| format!(" (held by {})", owner::describe(&o)))
                .unwrap_or_default();
            r.fail(
                "journal",
                format!("{e}{held}"),
                "a harvest now would exit 1 with the same message; let the holder finish, or stop `harvester run` before checking (`harvester journal stats` asks a running service)",
            );
            Err(())
        }
        Err(e) => {
            r.fail(
                "journal",
                e.to_string(),
                "see the message: the file was not changed",
            );
            Err(())
        }
    }
}

/// The journal's format and size, and whether every block header reads.
fn report_stats(path: &Path, st: &inspect::Stats, r: &mut Report) {
    let known = crate::journal::codec::FORMAT_VERSION;
    let format = if st.format_version < known {
        format!(
            "format {} (the next harvest upgrades it to {known}; older builds then refuse it)",
            st.format_version
        )
    } else {
        format!("format {}", st.format_version)
    };
    let detail = format!(
        "{} opens read-only: {format}, {} actions in {} blocks, {} bytes",
        path.display(),
        st.actions,
        st.blocks,
        st.size_on_disk_bytes
    );
    if st.unreadable_headers > 0 {
        r.fail(
            "journal",
            format!("{detail}; {} blocks have unreadable headers", st.unreadable_headers),
            "stop harvests, run `harvester journal verify`, then `harvester journal salvage` and the harvest it prints",
        );
    } else {
        r.pass("journal", detail);
    }
}

/// The journal's checkpoint, and whether S3 has it too.
fn report_checkpoint(args: &CheckArgs, cp: Option<&Checkpoint>, tz: Tz, r: &mut Report) {
    match cp {
        Some(c) => r.pass(
            "checkpoint",
            format!(
                "{} ({} in OPENCAST_TIMEZONE){}",
                timefmt::format_rfc3339(c.last_action_us),
                timefmt::format_compact(c.last_action_us, tz),
                if c.synced_to_s3 {
                    ", in S3 too"
                } else if args.harvest.s3.s3_bucket.as_deref().is_some_and(|b| !b.trim().is_empty()) {
                    ", not yet in S3 (the next harvest writes it)"
                } else {
                    ""
                }
            ),
        ),
        None => r.pass(
            "checkpoint",
            "none in the journal (the next harvest starts from the S3 checkpoint, else now - DEFAULT_INTERVAL)",
        ),
    }
}

/// How far each output's cursor is behind the journal.
fn report_lag(args: &CheckArgs, outputs: &[Output], st: &inspect::Stats, r: &mut Report) {
    let next = st.next_seq;
    for o in outputs {
        let cursor = match o {
            Output::Stdout => "stdout".to_string(),
            Output::Sqs => format!(
                "sqs:{}",
                args.harvest.sink.queue_name.as_deref().unwrap_or("")
            ),
            Output::Es => format!("es:{}", args.harvest.sink.es_action_index),
            Output::Xapi => match args.harvest.sink.xapi.config() {
                Ok(c) => c.cursor(),
                Err(_) => "xapi".to_string(),
            },
        };
        let found = st.cursors.iter().find(|c| c.sink == cursor);
        let detail = match found {
            Some(c) => format!(
                "sink {cursor}: cursor {} of {next}, lag {} record(s)",
                c.cursor, c.lag
            ),
            None => format!(
                "sink {cursor}: no cursor yet; its first forward sends all {next} record(s) the journal holds"
            ),
        };
        r.pass("lag", detail);
    }
}

/// The dead letters kept, and those a sink refused that wait for a replay.
fn report_dead_letters(j: &Journal, kept: u64, r: &mut Report) {
    let waiting: Vec<(String, usize)> = match j.sink_refusals() {
        Ok(m) => {
            let mut by: std::collections::BTreeMap<String, usize> = Default::default();
            for f in m.values().filter(|f| f.delivered_at_us.is_none()) {
                *by.entry(format!("{}:{}", f.sink, f.target)).or_default() += 1;
            }
            by.into_iter().collect()
        }
        Err(_) => Vec::new(),
    };
    let refused: usize = waiting.iter().map(|(_, n)| n).sum();
    r.pass(
        "dead letters",
        if refused > 0 {
            format!(
                "{kept} kept; {refused} refused by a sink and waiting ({}): fix the cause, then `harvester journal replay --dead-letters -o sqs|es` (xapi: `journal replay --from ... --to ... -o xapi` over their time)",
                waiting
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "{kept} kept (inputs Opencast sent in a wrong shape; `harvester journal dump --dead-letters`), none waiting for a sink"
            )
        },
    );
}

/// The directory a new journal would be created in, when this user may create it there.
fn writable_dir(path: &Path) -> Result<String, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // `harvest` creates missing directories: the first existing ancestor must be writable.
    let mut d = dir;
    loop {
        if d.exists() {
            break;
        }
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => {
                d = Path::new(".");
                break;
            }
        }
    }
    if !d.is_dir() {
        return Err(format!("{} is not a directory", d.display()));
    }
    let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} is not a usable path", d.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    let ok = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if ok {
        Ok(dir.display().to_string())
    } else {
        Err(format!("{} is not writable by this user", d.display()))
    }
}

/// What `check_s3` tells when a bucket cannot be reached.
const S3_REMEDY: &str =
    "check S3_HARVEST_TS_BUCKET, the AWS credentials and region, and AWS_ENDPOINT_URL(_S3)";

/// The detail of an S3 call that ran out of time.
fn s3_timeout(what: &str) -> String {
    format!(
        "{what} took more than {} s; is S3 reachable?",
        AWS_CALL_TIMEOUT.as_secs()
    )
}

/// Checks the S3 checkpoint when `S3_HARVEST_TS_BUCKET` is set; returns the checkpoint it
/// holds (`None` when unset, missing or unreadable).
async fn check_s3(args: &CheckArgs, tz: Tz, r: &mut Report) -> Option<i64> {
    let s3 = &args.harvest.s3;
    let Some(bucket) = s3
        .s3_bucket
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    else {
        r.pass(
            "s3",
            "S3_HARVEST_TS_BUCKET is not set: the checkpoint lives in the journal alone",
        );
        return None;
    };
    let key = s3.s3_key.as_str();
    let client = aws::s3_client(&aws::sdk_config().await);
    if !bucket_found(&client, bucket, r).await {
        return None;
    }
    let found = read_s3_checkpoint(&client, bucket, key, tz, r).await?;
    let ProbeOutcome {
        key: probe,
        written,
        deleted,
    } = write_probe(&client, bucket, key).await;
    let held = match found {
        Some(us) => format!(
            "holds {} (OPENCAST_TIMEZONE)",
            timefmt::format_compact(us, tz)
        ),
        None => "has no checkpoint object yet (the first harvest writes it)".into(),
    };
    match (written, deleted) {
        (true, Ok(())) => r.pass(
            "s3",
            format!("s3://{bucket}/{key} {held}; readable, and writable (a probe object beside it was written and deleted)"),
        ),
        (false, Err(e)) => r.fail(
            "s3",
            format!("s3://{bucket}/{key} {held}, but cannot be written: {e}"),
            "allow s3:PutObject on the bucket for these credentials (the checkpoint is written after every harvest)",
        ),
        (true, Err(e)) => r.fail(
            "s3",
            format!("s3://{bucket}/{key} {held}; a probe object {probe} was written but cannot be deleted: {e}"),
            format!("delete s3://{bucket}/{probe} by hand, and allow s3:DeleteObject and, in a versioned bucket, s3:DeleteObjectVersion (`harvester checkpoint --clear` needs the first)"),
        ),
        (false, Ok(())) => unreachable!("nothing is deleted when nothing was written"),
    }
    found
}

/// HeadBucket: false (reported) when the bucket is missing or cannot be reached.
async fn bucket_found(client: &aws_sdk_s3::Client, bucket: &str, r: &mut Report) -> bool {
    match tokio::time::timeout(AWS_CALL_TIMEOUT, client.head_bucket().bucket(bucket).send()).await {
        Err(_) => {
            r.fail(
                "s3",
                format!("bucket {bucket}: {}", s3_timeout("HeadBucket")),
                S3_REMEDY,
            );
            false
        }
        Ok(Err(e)) => {
            let missing = matches!(aws::error_code(&e), Some("NotFound" | "NoSuchBucket"))
                || e.raw_response().map(|x| x.status().as_u16()) == Some(404);
            if missing {
                r.fail(
                    "s3",
                    format!("bucket {bucket} does not exist (a harvest would try to create it, and any checkpoint another host wrote is not there)"),
                    format!("check S3_HARVEST_TS_BUCKET is the deployment's bucket, or create it: aws s3 mb s3://{bucket}"),
                );
            } else {
                r.fail(
                    "s3",
                    format!("bucket {bucket} cannot be reached: {}", aws::describe(&e)),
                    S3_REMEDY,
                );
            }
            false
        }
        Ok(Ok(_)) => true,
    }
}

/// Reads the checkpoint object: `Some(found)` when it could be read (`found` is `None` when
/// there is none yet), `None` (reported) when it could not.
async fn read_s3_checkpoint(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    tz: Tz,
    r: &mut Report,
) -> Option<Option<i64>> {
    let cp = crate::checkpoint::S3Checkpoint::new(client.clone(), bucket, key);
    match tokio::time::timeout(AWS_CALL_TIMEOUT, cp.read(tz)).await {
        Err(_) => {
            r.fail(
                "s3",
                format!("s3://{bucket}/{key}: {}", s3_timeout("GetObject")),
                S3_REMEDY,
            );
            None
        }
        Ok(Err(e)) => {
            r.fail(
                "s3",
                e.to_string(),
                "fix or remove the object (`harvester checkpoint --set YYYYMMDDHHmmss` writes a good one)",
            );
            None
        }
        Ok(Ok(found)) => Some(found),
    }
}

/// What became of the probe object written beside the checkpoint.
struct ProbeOutcome {
    key: String,
    written: bool,
    /// `Err` also when it was not written (then with the reason it was not).
    deleted: Result<(), String>,
}

/// Writable: a probe object next to the checkpoint, deleted at once.
async fn write_probe(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> ProbeOutcome {
    let probe = format!(
        "{key}.harvester-check-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let put = client
        .put_object()
        .bucket(bucket)
        .key(&probe)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"harvester check probe; safe to delete\n",
        ))
        .content_type("text/plain")
        .send();
    let written = match tokio::time::timeout(AWS_CALL_TIMEOUT, put).await {
        Err(_) => Err(s3_timeout("PutObject")),
        Ok(Err(e)) => Err(aws::describe(&e)),
        Ok(Ok(out)) => Ok(out.version_id().map(str::to_string)),
    };
    let was_written = written.is_ok();
    let deleted = match written {
        Ok(version) => {
            // In a versioned bucket a plain delete leaves the probe as an old version under a
            // delete marker, one pair per check; deleting the version written removes it whole.
            let del = client
                .delete_object()
                .bucket(bucket)
                .key(&probe)
                .set_version_id(version)
                .send();
            match tokio::time::timeout(AWS_CALL_TIMEOUT, del).await {
                Err(_) => Err(s3_timeout("DeleteObject")),
                Ok(Err(e)) => Err(aws::describe(&e)),
                Ok(Ok(_)) => Ok(()),
            }
        }
        Err(e) => Err(e),
    };
    ProbeOutcome {
        key: probe,
        written: was_written,
        deleted,
    }
}

/// The window the next harvest would take, and the span check's verdict on it.
fn check_window(
    args: &CheckArgs,
    s: &Settings,
    journal_cp: JournalCheckpoint,
    s3_cp: Option<i64>,
    r: &mut Report,
) -> Option<(i64, i64)> {
    let a = &args.harvest;
    let tz = s.tz;
    let now = timefmt::floor_second(timefmt::now_us());
    let (start, from) = match (s.start, journal_cp) {
        (Some(st), _) => (st, "--start".to_string()),
        (None, Err(())) => {
            r.skip(
                "window",
                "not computed: the journal (which holds the checkpoint) could not be read",
            );
            r.skip("span", "not checked: no window");
            return None;
        }
        (None, Ok(jcp)) => {
            let (st, from) = start_of(jcp, s3_cp, now, a.interval, a.pace.overlap);
            (st, describe_start(args, from, tz))
        }
    };
    let end = s.end.unwrap_or(now);
    let (fs, fe) = (
        timefmt::format_compact(start, tz),
        timefmt::format_compact(end, tz),
    );
    if end < start {
        r.fail(
            "window",
            format!("{fs}..{fe} ends before it starts (start from {from})"),
            "check --start/--end (a harvest would exit 2)",
        );
        r.skip("span", "not checked: no window");
        return None;
    }
    r.pass(
        "window",
        format!(
            "the next harvest takes {fs}..{fe} ({}, both ends inclusive); start from {from}, end {}",
            a.opencast.conn.opencast_timezone.trim(),
            if s.end.is_some() { "from --end" } else { "now" }
        ),
    );
    report_span(args, start, end, r);
    Some((start, end))
}

/// Where the next harvest starts from, in words.
fn describe_start(args: &CheckArgs, from: StartFrom, tz: Tz) -> String {
    let a = &args.harvest;
    match from {
        StartFrom::Journal { checkpoint_us } => format!(
            "the journal's checkpoint {} less HARVEST_OVERLAP {} s",
            timefmt::format_compact(checkpoint_us, tz),
            a.pace.overlap
        ),
        StartFrom::S3 { checkpoint_us } => format!(
            "the S3 checkpoint {}",
            timefmt::format_compact(checkpoint_us, tz)
        ),
        StartFrom::Interval => {
            format!("no checkpoint: now - DEFAULT_INTERVAL {} min", a.interval)
        }
    }
}

/// The span check's verdict on the window, as `harvest` (or `run`) would decide it.
fn report_span(args: &CheckArgs, start: i64, end: i64, r: &mut Report) {
    let a = &args.harvest;
    let verdict = span_verdict(
        start,
        end,
        a.max_start_end_span,
        a.disable_start_end_span_check,
        a.catch_up,
    );
    let windows = |max: i64| crate::harvest::windows(start, end, Some(max)).len();
    match verdict {
        SpanVerdict::NoLimit { span } => r.pass(
            "span",
            format!("{span} s; MAX_START_END_SPAN is not set (no limit)"),
        ),
        SpanVerdict::Within { span, max } => r.pass(
            "span",
            format!("{span} s, within MAX_START_END_SPAN={max} s"),
        ),
        SpanVerdict::Disabled { span, max } => r.pass(
            "span",
            format!("{span} s, more than MAX_START_END_SPAN={max} s, harvested in one window (--disable-start-end-span-check)"),
        ),
        SpanVerdict::CatchUp { span, max } => r.pass(
            "span",
            format!("{span} s, more than MAX_START_END_SPAN={max} s: --catch-up harvests it in {} windows", windows(max)),
        ),
        SpanVerdict::TooLarge { span, max } if args.for_command == CheckFor::Run => r.pass(
            "span",
            format!("{span} s, more than MAX_START_END_SPAN={max} s: `run` harvests it in {} windows of {max} s", windows(max)),
        ),
        SpanVerdict::TooLarge { span, max } => r.fail(
            "span",
            format!("{span} s, more than MAX_START_END_SPAN={max} s: the harvest would exit 1 (it has fallen behind)"),
            "run it once by hand with --catch-up (windows of MAX_START_END_SPAN) or --disable-start-end-span-check while no other harvester runs; or `harvester checkpoint --clear`, then harvest the gap in --start/--end pieces with --no-update-last-ts",
        ),
    }
}

/// Who Opencast runs our requests as (`/info/me.json`: stock Opencast serves the actions
/// anonymously, so only this proves the credentials), then one `limit=1` request for the
/// window: reachable, answered; and the clock.
async fn check_opencast(
    args: &CheckArgs,
    s: &Settings,
    window: Option<(i64, i64)>,
    r: &mut Report,
) {
    let a = &args.harvest;
    let tz = s.tz;
    let (start, end) = window.unwrap_or_else(|| {
        let now = timefmt::floor_second(timefmt::now_us());
        (now - a.interval as i64 * 60_000_000, now)
    });
    let url = s.opencast.actions_url(
        &timefmt::format_compact(start, tz),
        &timefmt::format_compact(end, tz),
        1,
        0,
    );
    let user = s.opencast.client().user().to_string();
    let scheme = s.opencast.client().scheme();
    let identity = match s.opencast.verify_identity().await {
        Ok(id) => Ok(id),
        Err(e @ OpencastError::Exhausted { .. })
        | Err(e @ OpencastError::Status { .. })
        | Err(e @ OpencastError::Unexpected { .. }) => Err(e),
        Err(e) => {
            r.fail("opencast", e.to_string(), opencast_remedy(&e));
            r.skip("clock", "not compared: Opencast did not answer");
            return;
        }
    };
    let sent_us = timefmt::now_us();
    let probe = match s.opencast.client().probe(&url).await {
        Ok(p) => p,
        Err(e) => {
            r.fail("opencast", e.to_string(), opencast_remedy(&e));
            r.skip("clock", "not compared: Opencast did not answer");
            return;
        }
    };
    let ms = probe.elapsed.as_millis();
    let how = match &identity {
        Ok(_) => format!(
            "{} credentials of user '{user}' accepted (Opencast ran the request as '{user}')",
            scheme.name()
        ),
        Err(_) => format!("{} credentials of user '{user}' sent", scheme.name()),
    };
    match ActionsPage::parse(&probe.body) {
        Ok(page) => r.pass(
            "opencast",
            format!(
                "{} answered in {ms} ms; {how}; {} action(s) in the window",
                url.as_str().split('?').next().unwrap_or(""),
                page.total.max(0)
            ),
        ),
        Err(e) => r.fail(
            "opencast",
            format!(
                "{} answered in {ms} ms, but not with a list of user actions: {e}",
                url.as_str().split('?').next().unwrap_or("")
            ),
            "point MATTERHORN_ENGAGE_HOST at an Opencast engage node (with its path prefix, if any)",
        ),
    }
    match identity {
        Ok(id) if !id.reads_every_episode() => r.warn(
            "opencast role",
            format!(
                "user '{user}' lacks {}: Opencast's search hides the episodes its roles may not \
                 read, and their actions are journaled with \"episode\": {{}}",
                crate::opencast::identity::ADMIN_ROLE
            ),
            format!(
                "give the user {} (or the organization's admin role)",
                crate::opencast::identity::ADMIN_ROLE
            ),
        ),
        Ok(_) => {}
        Err(e) => r.warn(
            "opencast user",
            format!("who Opencast runs the requests as is not confirmed: {e}"),
            "Opencast answers /info/me.json on every release from Matterhorn 1.4: check that the engage node serves it",
        ),
    }
    report_clock(&probe, sent_us, a.pace.overlap, r);
}

/// Which dialect of `/usertracking/actions.json` a harvest would speak (`OPENCAST_API`), by the
/// same probe `auto` uses, and what the `day` bug means for a stock server.
async fn check_api(args: &CheckArgs, s: &Settings, r: &mut Report) {
    use crate::config::ApiChoice;
    use crate::opencast::Api;
    let choice = args.harvest.opencast.settings().api;
    let now = timefmt::format_compact(timefmt::now_us() + 86_400_000_000, s.tz);
    let probe = match s.opencast.probe_api(&now, false).await {
        Ok(p) => p,
        Err(OpencastError::Status { status: 404, .. }) => {
            r.fail(
                "opencast api",
                "Opencast has no /usertracking endpoint (404)",
 "from Opencast 13 usertracking is a plugin, off by default: set `opencast-plugin-usertracking = on` in etc/org.opencastproject.plugin.impl.PluginManagerImpl.cfg on the engage node and restart it; else check MATTERHORN_ENGAGE_HOST",
            );
            return;
        }
        Err(e) => {
            r.skip("opencast api", format!("not probed: {e}"));
            return;
        }
    };
    let used = match choice {
        ApiChoice::Auto => probe.api,
        ApiChoice::Windowed => Api::Windowed,
        ApiChoice::Stock => Api::Stock,
    };
    if used == Api::Windowed && probe.api == Api::Stock && probe.proven {
        r.fail(
            "opencast api",
            format!("OPENCAST_API=windowed, but this server does not read start/end ({})", probe.evidence),
            "set OPENCAST_API=auto (or stock): every harvest would page the whole user-action table",
        );
        return;
    }
    let how = match used {
        Api::Windowed => "windowed: start/end, as the original harvester asked".to_string(),
 Api::Stock => "stock: day=YYYYMMDD, each day proven complete against Opencast's count; the first and last minute of a day are read at the server clock's second 0 and 59 (the day bug), and actions created at exactly 00:00:00 (server time) cannot be read by any day query (README: \"The day bug\")"
            .to_string(),
    };
    r.pass(
        "opencast api",
        format!(
            "{how} (OPENCAST_API={}; probe: {})",
            match choice {
                ApiChoice::Auto => "auto",
                ApiChoice::Windowed => "windowed",
                ApiChoice::Stock => "stock",
            },
            probe.evidence
        ),
    );
}

/// What to do when Opencast refused or failed the probe.
fn opencast_remedy(e: &OpencastError) -> &'static str {
    match e {
        OpencastError::CredentialsRejected { .. } => {
            "set the REST user's password in MATTERHORN_REST_PASS (and the user in MATTERHORN_REST_USER); OPENCAST_AUTH=digest works for the digest system user, basic (Opencast 3.0+) for any user"
        }
        OpencastError::NotAuthenticated { .. } => {
            "Opencast ignored the credentials: with OPENCAST_AUTH=basic before Opencast 3.0, use OPENCAST_AUTH=digest and the digest system user"
        }
        OpencastError::UnsupportedChallenge { .. } => {
            "let Opencast (or the proxy in front of it) offer Digest with qop=auth and MD5 or SHA-256, or use OPENCAST_AUTH=basic over https"
        }
        OpencastError::Redirected { .. } | OpencastError::NoChallenge { .. } => {
            "point MATTERHORN_ENGAGE_HOST at the engage node's REST address (with its path prefix, if any)"
        }
        OpencastError::Status { status: 404, .. } => {
            "the node has no /usertracking/actions.json: check MATTERHORN_ENGAGE_HOST (an engage node, its path prefix) and that the usertracking service runs"
        }
        OpencastError::Certificate { .. } => {
            "set OPENCAST_CA_FILE to the CA that signs Opencast's certificate, and give a host name the certificate names"
        }
        _ => "check that Opencast is up and MATTERHORN_ENGAGE_HOST (host, port, http/https) is right; OPENCAST_TIMEOUT bounds the wait",
    }
}

/// The server's clock, from the probe's Date header (whole seconds), against ours at
/// mid-request (`sent_us`: when the probe was sent); more skew than the overlap (at least 5 s)
/// fails.
fn report_clock(probe: &Probe, sent_us: i64, overlap: u64, r: &mut Report) {
    let Some(date) = probe.date.as_deref() else {
        r.skip("clock", "not compared: Opencast sent no Date header");
        return;
    };
    let Ok(theirs) = chrono::DateTime::parse_from_rfc2822(date) else {
        r.skip(
            "clock",
            format!(
                "not compared: Opencast's Date header '{}' does not parse",
                date.chars().take(64).collect::<String>()
            ),
        );
        return;
    };
    // The header is the server's time cut to the second: half a second is the best guess of
    // what was cut.
    let ours_us = sent_us + probe.elapsed.as_micros() as i64 / 2;
    let skew_s = (theirs.timestamp_micros() + 500_000 - ours_us) as f64 / 1e6;
    let tolerance = overlap.max(5) as f64;
    let how = if skew_s >= 0.0 { "ahead of" } else { "behind" };
    if skew_s.abs() <= tolerance {
        r.pass(
            "clock",
            format!(
                "Opencast's clock is {:.0} s {how} ours (within {tolerance:.0} s; its Date header counts whole seconds)",
                skew_s.abs()
            ),
        );
    } else {
        r.fail(
            "clock",
            format!(
                "Opencast's clock is {:.0} s {how} ours, more than {tolerance:.0} s: windows end at our now, and actions Opencast stamps with its own time may fall outside them or behind the checkpoint",
                skew_s.abs()
            ),
            format!(
                "synchronise both clocks (NTP, chrony); until then set HARVEST_OVERLAP above {:.0} s",
                skew_s.abs().ceil()
            ),
        );
    }
}

/// What `check_sqs` tells when SQS cannot be reached.
const SQS_REMEDY: &str =
    "check that SQS is reachable: AWS_ENDPOINT_URL(_SQS), the AWS credentials and region";

/// The SQS queue: found (and its maximum message size, as the sink reads it) or to be created.
async fn check_sqs(args: &CheckArgs, r: &mut Report) {
    let sink = &args.harvest.sink;
    let name = sink.queue_name.as_deref().unwrap_or("").trim().to_string();
    let client = aws::sqs_client(&aws::sdk_config().await);
    let remedy = SQS_REMEDY;
    let lookup = client.get_queue_url().queue_name(&name).send();
    let url = match tokio::time::timeout(AWS_CALL_TIMEOUT, lookup).await {
        Err(_) => {
            r.fail(
                "sqs",
                format!(
                    "queue '{name}': GetQueueUrl took more than {} s",
                    AWS_CALL_TIMEOUT.as_secs()
                ),
                remedy,
            );
            return;
        }
        Ok(Ok(out)) => out.queue_url().unwrap_or_default().to_string(),
        Ok(Err(e))
            if matches!(
                aws::error_code(&e),
                Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
            ) =>
        {
            r.pass(
                "sqs",
                format!(
                    "queue '{name}' does not exist yet: the first forward creates it ({}; check creates nothing, so the permission to create it is not tested); records over SQS's default MaximumMessageSize of {} bytes will become dead letters",
                    if name.ends_with(".fifo") { "FIFO" } else { "standard" },
                    crate::forward::sqs::DEFAULT_MAX_MESSAGE_BYTES
                ),
            );
            return;
        }
        Ok(Err(e)) => {
            r.fail(
                "sqs",
                format!("queue '{name}' cannot be looked up: {}", aws::describe(&e)),
                remedy,
            );
            return;
        }
    };
    report_max_message_size(&client, &name, &url, sink.sqs_max_batch_bytes, r).await;
}

/// The queue's MaximumMessageSize, read as the sink reads it.
async fn report_max_message_size(
    client: &aws_sdk_sqs::Client,
    name: &str,
    url: &str,
    max_batch_bytes: usize,
    r: &mut Report,
) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let remedy = SQS_REMEDY;
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send();
    match tokio::time::timeout(AWS_CALL_TIMEOUT, attrs).await {
        Err(_) => r.fail(
            "sqs",
            format!("queue '{name}': GetQueueAttributes took more than {} s", AWS_CALL_TIMEOUT.as_secs()),
            remedy,
        ),
        Ok(Err(e)) => r.fail(
            "sqs",
            format!("queue '{name}' found, but its attributes cannot be read: {}", aws::describe(&e)),
            "allow sqs:GetQueueAttributes for these credentials (the sink reads MaximumMessageSize)",
        ),
        Ok(Ok(out)) => {
            let given = out
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0);
            // As the sink reads it (`SqsSink::connect`).
            let max = given.unwrap_or(crate::forward::sqs::DEFAULT_MAX_MESSAGE_BYTES);
            r.pass(
                "sqs",
                format!(
                    "queue '{name}' found ({url}); MaximumMessageSize {max} bytes{}: a larger record becomes a dead letter; batches of up to 10 records and SQS_MAX_BATCH_BYTES={} bytes",
                    if given.is_none() { " (not given; SQS's default)" } else { "" },
                    max_batch_bytes
                ),
            );
        }
    }
}

/// The Elasticsearch node (version, credentials) and the actions template.
/// The LRS of `-o xapi`: its settings, and one authenticated read.
async fn check_xapi(args: &CheckArgs, r: &mut Report) {
    let sink = &args.harvest.sink;
    let made = sink
        .xapi
        .config()
        .and_then(|c| sink.xapi.shape().map(|_| c));
    let cfg = match made {
        Ok(x) => x,
        Err(e) => {
            r.fail("xapi", e.to_string(), "fix the XAPI_ settings named");
            return;
        }
    };
    match crate::forward::XapiSink::probe(cfg).await {
        Ok(detail) => r.pass("xapi", detail),
        Err(e) => {
            let fix = match e {
                crate::forward::xapi::XapiError::Credentials { .. } => {
                    "fix XAPI_USERNAME / XAPI_PASSWORD"
                }
                _ => "check that the LRS is up and XAPI_ENDPOINT is its base URL (statements at XAPI_ENDPOINT/statements)",
            };
            r.fail("xapi", e.to_string(), fix);
        }
    }
}

async fn check_es(args: &CheckArgs, r: &mut Report) {
    let sink = &args.harvest.sink;
    let trust = match sink.es_tls.trust() {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                "elasticsearch",
                e.to_string(),
                "fix ES_CA_FILE / ES_CA_FINGERPRINT",
            );
            return;
        }
    };
    let timeout = Duration::from_secs(sink.es_timeout.max(1));
    let client = match EsClient::new(&sink.es_host, timeout, &trust).await {
        Ok(c) => c,
        Err(e) => {
            let fix = match e {
                crate::es::EsError::BadHost(_) => "fix ELASTICSEARCH_HOST",
                crate::es::EsError::NoPinnedCa { .. } => "fix ES_CA_FINGERPRINT",
                _ => "check that Elasticsearch is up and ELASTICSEARCH_HOST is right",
            };
            r.fail("elasticsearch", e.to_string(), fix);
            return;
        }
    };
    let with_credentials = matches!(crate::es::parse_host(&sink.es_host), Ok((_, Some(_))));
    match client.info().await {
        Ok((version, cluster)) => {
            let major = version
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            let detail = format!(
                "{}: Elasticsearch {version}, cluster '{cluster}'; {}",
                client.describe(),
                if with_credentials {
                    "credentials accepted"
                } else {
                    "no credentials given, none asked for"
                }
            );
            if major.is_some_and(|m| m < 8) {
                r.fail(
                    "elasticsearch",
                    detail,
                    "the client speaks Elasticsearch 8 and 9: upgrade the cluster or point ELASTICSEARCH_HOST at a newer one",
                );
                return;
            }
            r.pass("elasticsearch", detail);
        }
        Err(e) => {
            r.fail("elasticsearch", e.to_string(), es_remedy(&e));
            r.skip("es template", "not checked: the node did not answer");
            return;
        }
    }
    check_es_template(&client, &sink.es_action_index, r).await;
}

/// What to do when the node refused or failed `GET /`.
fn es_remedy(e: &EsError) -> &'static str {
    match e {
        EsError::Status { status: 401, .. } => {
            "give the right user and password in ELASTICSEARCH_HOST (https://user:password@host:port)"
        }
        EsError::Status { status: 403, .. } => {
            "grant this user the `monitor` cluster privilege (and write access to the action indices)"
        }
        EsError::Certificate { .. } => {
            "set ES_CA_FILE (or ES_CA_FINGERPRINT) to the CA that signs the node's certificate, and give a host name the certificate names"
        }
        _ => "start the node, or point ELASTICSEARCH_HOST at a reachable one (host:port or URL); ES_TIMEOUT bounds the wait",
    }
}

/// The actions template: installed or not, and whether this build's version would install.
async fn check_es_template(client: &EsClient, action_index: &str, r: &mut Report) {
    let glob = templates::glob_of(action_index);
    let name = templates::name_for("actions", &glob);
    let installed = match client.template_exists(&name).await {
        Ok(b) => b,
        Err(e) => {
            r.fail(
                "es template",
                e.to_string(),
                "grant this user the `manage_index_templates` cluster privilege",
            );
            return;
        }
    };
    match client.simulate_template(&name, templates::actions(&glob)).await {
        Ok(()) => r.pass(
            "es template",
            format!(
                "{name} (for {glob}) {}; this build's version validates, and each forward installs it on connecting",
                if installed { "is installed" } else { "is not installed yet" }
            ),
        ),
        Err(e) => {
            let remedy = match &e {
                EsError::Status { status: 401 | 403, .. } => {
                    "grant this user the `manage_index_templates` cluster privilege (the sink installs the template on connecting)"
                }
                _ => "see Elasticsearch's answer: another template of the same priority over these indices, or a cluster setting, refuses it",
            };
            r.fail(
                "es template",
                format!(
                    "{name} ({}) cannot be installed: {e}",
                    if installed { "installed now" } else { "not installed" }
                ),
                remedy,
            );
        }
    }
}

/// The GeoIP database and the user-agent rules, when the settings ask for them.
fn check_enrichment(args: &CheckArgs, r: &mut Report) {
    let e = &args.harvest.sink.enrich;
    let scope = if e.enrich_sinks.trim().eq_ignore_ascii_case("all") {
        "every sink's records"
    } else {
        "Elasticsearch documents"
    };
    if let Some(path) = &e.geoip_database {
        match crate::enrich::GeoIpDb::open(path) {
            Err(err) => r.fail(
                "geoip",
                err.to_string(),
                "point GEOIP_DATABASE (--geoip-database) at a readable MaxMind City or Country .mmdb file (geoipupdate keeps one current), or unset it",
            ),
            Ok(db) => {
                let ip: std::net::IpAddr = GEOIP_PROBE.parse().expect("a literal address");
                match db.probe(ip) {
                    Ok(found) => r.pass(
                        "geoip",
                        format!(
                            "{}; {GEOIP_PROBE} {}; enriches {scope}",
                            db.describe(),
                            match found {
                                Some(cc) => format!("located (country {cc})"),
                                None => "not in it (the look-up works)".into(),
                            }
                        ),
                    ),
                    Err(err) => r.fail(
                        "geoip",
                        format!("{} opens, but looking up {GEOIP_PROBE} fails: {err}", db.describe()),
                        "the file is damaged: download it again (geoipupdate)",
                    ),
                }
            }
        }
    }
    if e.parse_useragent {
        let p = crate::enrich::UaParser::new();
        let got = p.parse_with(UA_PROBE, |f| {
            format!("{} {} on {}", f.name, f.major.unwrap_or("-"), f.os)
        });
        if got.starts_with("Other") {
            r.fail(
                "useragent",
                format!(
                    "the built-in uap-core rules did not recognise a Chrome user agent (got {got})"
                ),
                "this build's rules are broken: report it",
            );
        } else {
            r.pass(
                "useragent",
                format!(
                    "the built-in uap-core rules parse a test string ({got}); enriches {scope}"
                ),
            );
        }
    }
}
