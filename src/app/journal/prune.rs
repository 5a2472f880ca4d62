//! `journal prune`: the policy of what may go (what every sink has and is old enough).

use std::sync::Arc;

use super::parse_duration;
use crate::app::{failed, open_journal, AppError};
use crate::cli::{Cli, PruneArgs};
use crate::config::ConfigError;
use crate::timefmt;

pub(super) fn prune(cli: &Cli, a: &PruneArgs) -> Result<(), AppError> {
    let secs = parse_duration(&a.older_than)
        .map_err(|e| ConfigError::new(format!("--older-than: {e}")))?;
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
    let compacted = j.compact();
    spin.finish();
    compacted?;
    let size = std::fs::metadata(&cli.journal)
        .map(|m| m.len())
        .unwrap_or(0);
    say!(
        "pruned {records} records ({blocks} blocks) older than {}; journal now {size} bytes",
        timefmt::format_rfc3339(cutoff)
    )?;
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
