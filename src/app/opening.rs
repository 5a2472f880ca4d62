//! Opening the journal for a command: the owner record, the damage check, and the error a user
//! sees when another process holds the file.

use std::path::Path;
use std::sync::Arc;

use super::{owner, AppError};
use crate::journal::{Journal, JournalError};

pub(crate) fn open_journal(path: &Path) -> Result<Arc<Journal>, AppError> {
    open_journal_as(path, &command_name(), None)
}

/// The subcommand this process runs, for the journal's owner record.
fn command_name() -> String {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default()
}

/// Opens the journal and records this process as its holder; a journal held by another process
/// is an error that names that process.
pub(crate) fn open_journal_as(
    path: &Path,
    command: &str,
    metrics_addr: Option<&str>,
) -> Result<Arc<Journal>, AppError> {
    match Journal::open(path) {
        Ok(j) => {
            owner::claim(path, command, metrics_addr);
            if matches!(command, "harvest" | "run") {
                refuse_damage(&j)?;
            }
            Ok(Arc::new(j))
        }
        Err(e) => Err(journal_error(path, e)),
    }
}

/// Opens the journal for a command that only reads it: the file is never written (no owner
/// record, no upgrade, no repair), a missing one is an error, not a new journal.
pub(crate) fn open_journal_read(path: &Path) -> Result<Arc<Journal>, AppError> {
    Journal::open_read_only(path)
        .map(Arc::new)
        .map_err(|e| journal_error(path, e))
}

/// A journal error for the user; a journal held by another process names that process.
pub(crate) fn journal_error(path: &Path, e: crate::journal::JournalError) -> AppError {
    match e {
        e @ JournalError::InUse { .. } => match owner::read(path) {
            Some(o) => AppError::JournalHeld {
                source: e,
                holder: owner::describe(&o),
            },
            None => e.into(),
        },
        e => e.into(),
    }
}

/// A harvest into a journal with unreadable blocks would take their records for duplicates
/// forever: each harvest decodes a slice of the journal (a full pass over a few runs) and stops
/// with the remedy when a block cannot be read.
pub(crate) fn refuse_damage(j: &Journal) -> Result<(), AppError> {
    let bad = j.scrub(crate::journal::salvage::SCRUB_RECORDS)?;
    if bad.is_empty() {
        return Ok(());
    }
    let at: Vec<String> = bad.iter().take(5).map(u64::to_string).collect();
    Err(super::failed(format!(
        "journal {} has {} unreadable block(s) (at sequence {}{}): their records are lost from \
         the journal while their action ids still count as harvested, so no harvest would bring \
         them back. Stop harvests, run `harvester journal salvage` (it sets the blocks aside and \
         prints the harvest that brings their records back), then harvest again",
        j.path().display(),
        bad.len(),
        at.join(", "),
        if bad.len() > 5 { ", …" } else { "" }
    )))
}
