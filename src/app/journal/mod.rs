//! `harvester journal …`: read and reuse the journal offline (no Opencast, no `.env` needed).

mod dump;
mod prune;
mod remote;
mod replay;
mod stats;

use dump::dump;
pub use dump::{dump_pairs, write_csv_dump, write_dump, DumpRequest};
use prune::prune;
pub use remote::RemoteError;
// `harvester report` reads the same journal the same two ways.
pub(crate) use remote::{access, remote_get, Access};
use replay::replay;
use stats::stats;

use chrono_tz::Tz;

use super::{failed, open_journal, AppError};
use crate::cli::{Cli, JournalArgs, JournalCommand, RangeArgs, SalvageArgs};
use crate::config::{self, ConfigError};
use crate::journal::inspect::{self, Filter};
use crate::journal::Journal;
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
        ConfigError::new(format!(
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
        ConfigError::new(format!(
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
        .ok_or_else(|| {
            ConfigError::new(format!("'{s}' is out of range: at most 36500d (100 years)"))
        })
}

pub(super) fn filter(r: &RangeArgs) -> Result<(Filter, Tz), ConfigError> {
    let tz = config::parse_tz(&r.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let t = |v: &Option<String>, flag: &str| -> Result<Option<i64>, ConfigError> {
        v.as_deref()
            .map(|s| {
                let parsed = if flag == "--to" {
                    timefmt::parse_user_end_time(s, tz)
                } else {
                    timefmt::parse_user_time(s, tz)
                };
                parsed.map_err(|e| ConfigError::caused(flag.to_string(), e))
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
            return Err(ConfigError::new("--to is before --from"));
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
        say!(
            "ok: {} records in {} blocks, every one readable, tables consistent{q}",
            rep.records,
            rep.blocks
        )?;
        return Ok(());
    }
    for p in &rep.problems {
        say!("problem: {p}")?;
    }
    Err(failed(format!(
        "journal {} has {} problem(s) (listed above); `journal dump` skips unreadable blocks and goes on",
        cli.journal.display(),
        rep.problems.len()
    )))
}

fn salvage(cli: &Cli, a: &SalvageArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&a.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let j = open_journal(&cli.journal)?;
    let done = j.salvage()?;
    if done.is_empty() {
        say!("no unreadable blocks: nothing to salvage")?;
        return Ok(());
    }
    let mut windows: Vec<(i64, i64)> = Vec::new();
    let mut unknown = false;
    for s in &done {
        say!(
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
        )?;
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
    say!("to bring their records back, harvest again (OPENCAST_TIMEZONE={tz}):")?;
    for (a, b) in &merged {
        say!(
            "  harvester harvest -s {} -e {} --no-update-last-ts",
            timefmt::format_compact(*a, tz),
            timefmt::format_compact(*b, tz)
        )?;
    }
    if unknown {
        say!(
            "  (a block's time range could not be read: harvest again from before the first \
             record you miss, with -s/-e and --no-update-last-ts)"
        )?;
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
