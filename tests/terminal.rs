//! What a person at a terminal sees (issue 13, §3): a harvest long enough to show the progress
//! bar, run under a pseudo-terminal (util-linux `script`) with logs at `info`: every log line
//! starts at the start of a line (never glued to the bar), rates are whole numbers, `--quiet`
//! shows neither bar nor info lines, and without a terminal there is no bar at all.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use harvester::sim::{SimConfig, SimHandle};

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

/// A slow, somewhat flaky simulator: 48 one-hour windows (an info line each) and retried
/// requests (a warning each) while the bar is on screen.
async fn slow_sim() -> SimHandle {
    let mut cfg = SimConfig::new(data(30_000, 48 * 3600));
    cfg.faults.delay = Duration::from_millis(15);
    cfg.faults.fail_every = 23;
    start_sim(cfg).await
}

/// `harvester ARGS` under a pseudo-terminal, with the environment of `harvester_for`; returns
/// what the terminal received (stdout and stderr, as a person would see them).
fn in_terminal(dir: &std::path::Path, sim: &SimHandle, args: &[&str]) -> Command {
    let c = harvester_for(dir, sim);
    let mut line = shell_quote(env!("CARGO_BIN_EXE_harvester"));
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let mut s = Command::new("script");
    s.env_clear()
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .args(["-qfec", &line, "/dev/null"]);
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    s.env("MAX_START_END_SPAN", "3600");
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn harvest_args(end_hours: i64) -> Vec<String> {
    [
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + end_hours * 3_600_000_000 - 1_000_000),
        "-o",
        "none",
        "--catch-up",
        "-b",
        "200",
        "--max-in-flight",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// Removes colour codes (the log's level colours, the bar's styling).
fn strip_sgr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            let mut seq = String::new();
            it.next();
            for d in it.by_ref() {
                seq.push(d);
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            if !seq.ends_with('m') {
                // Cursor and erase commands stay, as a marker the checks below understand.
                out.push('\x1b');
                out.push('[');
                out.push_str(&seq);
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Erase and cursor commands removed.
fn strip_csi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn is_log_line(s: &str) -> bool {
    [" INFO ", " WARN ", " ERROR ", " DEBUG "]
        .iter()
        .any(|l| s.contains(l))
}

/// A log line as the text format writes it: an RFC 3339 UTC time, then the level.
fn starts_like_a_log_line(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 27
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && s.contains('Z')
}

/// The checks of the issue on what a terminal received; returns the log lines.
fn assert_no_torn_lines(raw: &str) -> Vec<String> {
    let text = strip_sgr(raw);
    let mut logs = Vec::new();
    for segment in text.split('\n') {
        // A carriage return starts the line over: what was before it was wiped (a bar) or is
        // overwritten. A log line must be what is left, whole, from the start of the line.
        let parts: Vec<String> = segment.split('\r').map(strip_csi).collect();
        let last = parts.iter().rposition(|p| !p.is_empty());
        for (i, p) in parts.iter().enumerate() {
            if !is_log_line(p) {
                continue;
            }
            assert_eq!(
                Some(i),
                last,
                "a log line was overwritten on the terminal: {segment:?}"
            );
            assert!(
                starts_like_a_log_line(p),
                "a log line does not start at the start of a line: {p:?} (in {segment:?})"
            );
            assert!(
                !p.contains("harvest ["),
                "a log line is glued to the bar: {p:?}"
            );
            logs.push(p.clone());
        }
    }
    logs
}

/// Every rate shown is a whole number: `9,802/s`, never `9,801.9765/s`.
fn assert_whole_rates(raw: &str) {
    let text = strip_csi(&strip_sgr(raw));
    let mut shown = 0;
    for (at, _) in text.match_indices("/s") {
        let before: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
            .collect();
        if before.is_empty() {
            continue;
        }
        shown += 1;
        assert!(
            !before.contains('.'),
            "a rate with decimals: {}/s",
            before.chars().rev().collect::<String>()
        );
    }
    assert!(shown > 0, "no rate was shown at all:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_and_the_bar_share_the_terminal_without_tearing() {
    let sim = slow_sim().await;
    let dir = scratch();
    let args = harvest_args(48);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_async(in_terminal(dir.path(), &sim, &args)).await;
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "harvest failed:\n{raw}");
    // The bar was there (redrawn in place), so the checks below mean something.
    assert!(
        raw.matches("harvest [").count() >= 10,
        "the bar was hardly drawn:\n{raw}"
    );
    let logs = assert_no_torn_lines(&raw);
    // Every window's info line arrived whole, and the retries' warnings too.
    for w in 1..=48 {
        assert!(
            logs.iter()
                .any(|l| l.contains("harvesting window") && l.contains(&format!("window={w} "))),
            "the line of window {w} is missing:\n{raw}"
        );
    }
    assert!(
        logs.iter().any(|l| l.contains(" WARN ")),
        "no warning:\n{raw}"
    );
    assert!(
        logs.iter().any(|l| l.contains("actions=30000")),
        "no summary:\n{raw}"
    );
    assert_whole_rates(&raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_shows_no_bar_and_only_warnings() {
    let sim = slow_sim().await;
    let dir = scratch();
    let mut args = harvest_args(12);
    args.insert(0, "--quiet".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_async(in_terminal(dir.path(), &sim, &argv)).await;
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "harvest failed:\n{raw}");
    assert!(!raw.contains("harvest ["), "a bar under --quiet:\n{raw}");
    let logs = assert_no_torn_lines(&raw);
    assert!(
        logs.iter().all(|l| !l.contains(" INFO ")),
        "info lines under --quiet:\n{raw}"
    );
    assert!(
        logs.iter().any(|l| l.contains(" WARN ")),
        "warnings still show under --quiet:\n{raw}"
    );
    // LOG_LEVEL from the environment gives way to --quiet; --log-level on the command line wins.
    let mut args = harvest_args(12);
    args.splice(0..0, ["--quiet", "--log-level", "info"].map(String::from));
    args.push("--no-update-last-ts".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_async(in_terminal(dir.path(), &sim, &argv)).await;
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "harvest failed:\n{raw}");
    assert!(!raw.contains("harvest ["), "a bar under --quiet:\n{raw}");
    let logs = assert_no_torn_lines(&raw);
    assert!(
        logs.iter()
            .any(|l| l.contains(" INFO ") && l.contains("actions=")),
        "--log-level info given with --quiet shows info lines:\n{raw}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("harvest: ")),
        "no progress lines under --quiet:\n{raw}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_bar_when_stderr_is_not_a_terminal() {
    let sim = slow_sim().await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MAX_START_END_SPAN", "3600").args(harvest_args(12));
    let out = run_async(c).await;
    assert_ok(&out);
    let err = stderr(&out);
    assert!(!err.contains('\r') && !err.contains("harvest ["), "{err}");
    assert!(!err.contains('\x1b'), "no colours in a pipe: {err}");
    for line in err.lines() {
        assert!(starts_like_a_log_line(line), "{line:?}");
    }
}
