//! The local, durable journal (one redb file): the harvester's memory.
//!
//! Guarantees:
//! - a page of records, its dead letters, the episodes it needed and the harvest position are
//!   committed in **one** durable transaction, before anything is forwarded;
//! - an action id is stored once, whatever the overlap or retry (the `action_ids` table);
//! - the checkpoint only ever moves in the transaction that holds the data it points at;
//! - every sink has its own cursor (the next sequence number it has not acknowledged).
//!
//! Records get consecutive sequence numbers; a block is keyed by the sequence of its first record.

pub mod codec;
pub mod days;
pub mod inspect;
mod open;
pub mod salvage;
mod sink_state;
mod types;

pub use types::{
    Checkpoint, DeadLetter, EpisodeDocEntry, EpisodeEntry, HarvestPosition, PageCommit,
    PageOutcome, QuarantinedBlock, SinkRefusal,
};

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bincode::Decode;
use redb::{
    Database, ReadOnlyDatabase, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};

use crate::record::Record;

/// The rows of a table keyed by media package id, each decoded or with the reason it is not.
pub type ByMpid<T> = Vec<(String, std::result::Result<T, CodecError>)>;
pub use codec::{BlockHeader, CodecError};

pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Seen action ids as bitmaps: key `id div 64`, bit `id mod 64`. Opencast's ids are dense
/// auto-increment numbers, so a page of 1,000 actions touches about 16 entries, not 1,000.
pub(crate) const ACTION_IDS: TableDefinition<i64, u64> = TableDefinition::new("action_id_bits");
pub(crate) const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const DEAD_KEYS: TableDefinition<&str, ()> = TableDefinition::new("dead_letter_keys");
/// [`SinkRefusal`]s by dead letter number: which sink refused the record, for replays.
pub(crate) const SINK_REFUSALS: TableDefinition<u64, &[u8]> = TableDefinition::new("sink_refusals");
pub(crate) const EPISODES: TableDefinition<&str, &[u8]> = TableDefinition::new("episodes");
/// Episode documents built by `load-episodes` (by media package id), journaled before indexing.
pub(crate) const EPISODE_DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("episode_docs");
pub(crate) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Action ids a stock `day` query returned outside the window harvested (seen, not journaled),
/// as bitmaps like [`ACTION_IDS`]: they count in the day counts once, and not again when a
/// later window journals them.
pub(crate) const SEEN_IDS: TableDefinition<i64, u64> = TableDefinition::new("seen_id_bits");
/// [`days::DayStats`] by `YYYYMMDD` in the zone named by `META_DAY_ZONE`.
pub(crate) const DAY_STATS: TableDefinition<u32, &[u8]> = TableDefinition::new("day_stats");
/// Blocks `journal salvage` found unreadable, moved here (never deleted), by first sequence.
pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

const META_FORMAT: &str = "format_version";
const META_NEXT_SEQ: &str = "next_seq";
const META_NEXT_DEAD: &str = "next_dead_letter";
const META_CHECKPOINT: &str = "checkpoint";
const META_POSITION: &str = "harvest_position";
/// The zone the day counts are kept in (an IANA name).
const META_DAY_ZONE: &str = "day_stats_zone";
/// Records with a sequence below this one are in the day counts.
const META_DAY_SEQ: &str = "day_stats_seq";
/// How Opencast's user actions were last found to be asked for (`windowed`/`stock`).
const META_API: &str = "opencast_api";

/// What can go wrong with the journal, each naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "journal {path} is in use by another harvester process; wait for it to finish \
         (or stop `harvester run`), or point JOURNAL_PATH at another file"
    )]
    InUse { path: PathBuf },
    #[error("cannot open journal {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("journal {path} was written by a newer harvester (format {found}, this build knows up to {known}); upgrade harvester")]
    NewerFormat { path: PathBuf, found: u8, known: u8 },
    /// The file system failed under the journal (a full disk, a failing device). Nothing of the
    /// failed transaction is kept; redb refuses every later write until the file is reopened.
    /// `path` is filled in by whoever knows the file ([`JournalError::at`]).
    #[error("{}", io_message(path.as_deref(), source))]
    Io {
        path: Option<PathBuf>,
        source: std::io::Error,
    },
    /// An earlier I/O error poisoned this handle: only closing and reopening the file helps.
    #[error(
        "journal{} had an I/O error earlier and must be closed and opened again",
        path.as_deref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    NeedsReopen { path: Option<PathBuf> },
    /// redb refused an operation for a reason other than I/O (a full table, a damaged page…).
    #[error("journal storage error: {0}")]
    Storage(#[source] redb::Error),
    #[error("journal storage error: compaction: {0}")]
    Compaction(#[source] redb::CompactionError),
    /// A stored value (`what`: "dead letter 7", "meta checkpoint"…) does not decode.
    #[error("journal storage error: {what}: {source}")]
    Decode { what: String, source: CodecError },
    /// A file operation around the journal (`what`: "cannot create directory"…) failed.
    #[error("journal storage error: {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "journal storage error: cannot copy journal {} to {} for reading: {source} (set TMPDIR \
         to a directory with room)",
        path.display(),
        target.display()
    )]
    CopyForReading {
        path: PathBuf,
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("journal storage error: writing the dump: {0}")]
    Dump(#[source] std::io::Error),
    #[error(
        "journal record at sequence {seq} cannot be read: {source}; run `harvester journal \
         salvage` to set the damaged block aside and learn how to harvest its records again"
    )]
    Corrupt { seq: u64, source: CodecError },
    #[error("no journal at {path} (check JOURNAL_PATH or --journal)")]
    Missing { path: PathBuf },
    #[error(
        "{path} is an empty file, not a journal; it was left as it is (remove it, and a new \
         journal continues from the checkpoint in S3, or point JOURNAL_PATH at the right file)"
    )]
    Empty { path: PathBuf },
    #[error(
        "journal {path} cannot be opened: {reason}. It was not changed. Move it aside \
         (mv {path} {path}.damaged) and run again: a new journal continues from the checkpoint \
         in S3 (S3_HARVEST_TS_BUCKET), and harvesting the days it held again with \
         `harvest -s … -e … --no-update-last-ts` brings their records back", path = path.display()
    )]
    Unopenable { path: PathBuf, reason: String },
    #[error("the journal was opened for reading only")]
    ReadOnly,
}

impl JournalError {
    /// True when the handle is no use any more after this error and the file must be closed
    /// and opened again (which succeeds once the cause, say a full disk, is gone).
    pub fn needs_reopen(&self) -> bool {
        match self {
            JournalError::Io { .. } | JournalError::NeedsReopen { .. } => true,
            JournalError::Open {
                source: redb::DatabaseError::Storage(s),
                ..
            } => matches!(
                s,
                redb::StorageError::Io(_)
                    | redb::StorageError::PreviousIo
                    | redb::StorageError::DatabaseClosed
            ),
            _ => false,
        }
    }

    /// Names the journal file in an I/O error that does not name it yet (redb's errors do not
    /// know the file they are about).
    pub fn at(self, journal: &Path) -> JournalError {
        match self {
            JournalError::Io { path: None, source } => JournalError::Io {
                path: Some(journal.to_path_buf()),
                source,
            },
            JournalError::NeedsReopen { path: None } => JournalError::NeedsReopen {
                path: Some(journal.to_path_buf()),
            },
            other => other,
        }
    }
}

/// "I/O error on journal PATH: No space left on device (os error 28); free space ...".
fn io_message(path: Option<&Path>, e: &std::io::Error) -> String {
    let mut s = match path {
        Some(p) => format!("I/O error on journal {}: {e}", p.display()),
        None => format!("I/O error on the journal: {e}"),
    };
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        s.push_str(
            "; free space on the journal's file system (nothing of the failed write was kept; \
             `harvester run` reopens the journal by itself once there is room)",
        );
    }
    s
}

/// Sorts redb's errors: I/O failures (which poison the handle) apart from the rest.
fn classify(e: redb::Error) -> JournalError {
    match e {
        redb::Error::Io(source) => JournalError::Io { path: None, source },
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
            JournalError::NeedsReopen { path: None }
        }
        other => JournalError::Storage(other),
    }
}

/// A stored value that does not decode, with what it is.
fn decode_error(what: String, source: CodecError) -> JournalError {
    JournalError::Decode { what, source }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self {
                classify(e.into())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_an_io_error_that_names_the_file_and_asks_for_a_reopen() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let e: JournalError = redb::StorageError::Io(enospc).into();
        assert!(e.needs_reopen());
        let msg = e.at(Path::new("/data/j.redb")).to_string();
        assert!(msg.contains("/data/j.redb"), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        let again: JournalError = redb::StorageError::PreviousIo.into();
        assert!(again.needs_reopen());
        assert!(again
            .at(Path::new("/data/j.redb"))
            .to_string()
            .contains("/data/j.redb"));
        let corrupt: JournalError = redb::StorageError::Corrupted("x".into()).into();
        assert!(!corrupt.needs_reopen());
    }
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// The redb database behind a journal: writable, or opened by a reading command that must
/// never change the file.
pub(crate) enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

impl Db {
    pub(crate) fn begin_read(
        &self,
    ) -> std::result::Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Write(d) => d.begin_read(),
            Db::Read(d) => d.begin_read(),
        }
    }

    pub(crate) fn begin_write(&self) -> Result<WriteTransaction> {
        match self {
            Db::Write(d) => Ok(d.begin_write()?),
            Db::Read(_) => Err(JournalError::ReadOnly),
        }
    }
}

/// A handle on the open journal file. Cheap to share behind an `Arc`.
pub struct Journal {
    db: Db,
    path: PathBuf,
    /// The repaired private copy a reading open reads (dropped after `db`, which removes it).
    _copy: Option<open::PrivateFile>,
    /// The zone the day counts are kept in, once a harvest has said it
    /// ([`Journal::ensure_day_stats`]); without it commits leave the counts behind.
    day_zone: std::sync::Mutex<Option<days::DayZone>>,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for writing, refusing a file another process
    /// holds, an empty file, and a file that is not a journal (which is left unchanged).
    /// A new journal is created with mode 0600.
    pub fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::File {
                what: "cannot create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = match open::open_existing(path)? {
            Some(db) => db,
            None => {
                open::create_new(path, |db| Journal::writable(db, path).map(drop))?;
                open::open_existing(path)?.ok_or_else(|| JournalError::Missing {
                    path: path.to_path_buf(),
                })?
            }
        };
        Journal::writable(db, path)
    }

    fn writable(db: Database, path: &Path) -> Result<Journal> {
        let j = Journal {
            db: Db::Write(db),
            path: path.to_path_buf(),
            _copy: None,
            day_zone: std::sync::Mutex::new(None),
        };
        j.init()?;
        Ok(j)
    }

    /// Opens an existing journal for reading only: the file is never written (no format
    /// upgrade, no repair: a journal not closed cleanly is read through a private repaired
    /// copy). Older formats read as they are; a newer one is refused.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        let ro = open::open_read_only(path)?;
        let j = Journal {
            db: Db::Read(ro.db),
            path: path.to_path_buf(),
            _copy: ro.copy,
            day_zone: std::sync::Mutex::new(None),
        };
        let found = j.format_version()?;
        if found > codec::FORMAT_VERSION {
            return Err(JournalError::NewerFormat {
                path: path.to_path_buf(),
                found,
                known: codec::FORMAT_VERSION,
            });
        }
        Ok(j)
    }

    /// Whether this handle may write (reading commands open the journal read-only).
    pub fn is_writable(&self) -> bool {
        matches!(self.db, Db::Write(_))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = declared_format(&meta)?;
            match found {
                Some(v) if v > codec::FORMAT_VERSION => {
                    return Err(JournalError::NewerFormat {
                        path: self.path.clone(),
                        found: v,
                        known: codec::FORMAT_VERSION,
                    })
                }
                Some(v) if v < codec::FORMAT_VERSION => {
                    // Blocks already written keep their format and read as before; new blocks
                    // are written in the current one, so builds that only know the older
                    // format must refuse the file from now on.
                    meta.insert(META_FORMAT, [codec::FORMAT_VERSION].as_slice())?;
                    tracing::info!(
                        path = %self.path.display(),
                        from = v,
                        to = codec::FORMAT_VERSION,
                        "journal format upgraded (existing blocks are kept as they are)"
                    );
                }
                Some(_) => {}
                None => {
                    meta.insert(META_FORMAT, [codec::FORMAT_VERSION].as_slice())?;
                }
            }
            // Create every table so readers never meet a missing one.
            tx.open_table(BLOCKS)?;
            tx.open_table(ACTION_IDS)?;
            tx.open_table(DEAD_LETTERS)?;
            tx.open_table(DEAD_KEYS)?;
            tx.open_table(SINK_REFUSALS)?;
            tx.open_table(EPISODES)?;
            tx.open_table(EPISODE_DOCS)?;
            tx.open_table(CURSORS)?;
            tx.open_table(QUARANTINE)?;
            tx.open_table(DAY_STATS)?;
            tx.open_table(SEEN_IDS)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Commits one harvested page: dedupes by action id, appends the new records as one block,
    /// stores dead letters, episodes, position and (optionally) the checkpoint, all or nothing.
    pub fn commit_page(&self, page: PageCommit) -> Result<PageOutcome> {
        self.commit_pages(vec![page])
    }

    /// Commits consecutive pages in one transaction (a group commit: one durable write where
    /// the harvest has several pages ready), each page applied as [`Journal::commit_page`]
    /// would, in order, so the last page's position and checkpoint are the ones that stay.
    /// All or nothing: a crash leaves either every page of the group or none of it.
    pub fn commit_pages(&self, pages: Vec<PageCommit>) -> Result<PageOutcome> {
        // An I/O error (a full disk) names this file: redb's own errors do not know it.
        self.write_pages(pages).map_err(|e| e.at(&self.path))
    }

    fn write_pages(&self, pages: Vec<PageCommit>) -> Result<PageOutcome> {
        let mut out = PageOutcome::default();
        let mut zone = self.day_zone.lock().expect("day zone lock");
        let tx = self.db.begin_write()?;
        for page in pages {
            out += Self::apply_page(&tx, page, zone.as_mut())?;
        }
        tx.commit()?;
        Ok(out)
    }

    fn apply_page(
        tx: &WriteTransaction,
        page: PageCommit,
        zone: Option<&mut days::DayZone>,
    ) -> Result<PageOutcome> {
        let mut out = PageOutcome::default();
        let mut counted = DayCounter::new(tx, zone)?;
        {
            let mut meta = tx.open_table(META)?;
            let mut ids = tx.open_table(ACTION_IDS)?;
            let mut chunks: HashMap<i64, (u64, bool)> = HashMap::new();
            let mut fresh_flags = Vec::with_capacity(page.ids.len());
            for &id in &page.ids {
                let (chunk, bit) = (id.div_euclid(64), 1u64 << id.rem_euclid(64));
                let entry = match chunks.entry(chunk) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        v.insert((ids.get(chunk)?.map(|g| g.value()).unwrap_or(0), false))
                    }
                };
                let fresh = entry.0 & bit == 0;
                if fresh {
                    entry.0 |= bit;
                    entry.1 = true;
                } else {
                    out.duplicates += 1;
                }
                fresh_flags.push(fresh);
            }
            if let Some(c) = counted.as_mut() {
                let seen = tx.open_table(SEEN_IDS)?;
                for (i, _) in fresh_flags.iter().enumerate().filter(|(_, f)| **f) {
                    // An action seen outside an earlier window is counted already.
                    if !has_bit(&seen, page.ids[i])? {
                        c.add(page.created.get(i).copied(), page.query_day.as_ref());
                    }
                }
            }
            if !page.seen_only.is_empty() {
                let mut seen = tx.open_table(SEEN_IDS)?;
                for &(id, created) in &page.seen_only {
                    let (chunk, bit) = (id.div_euclid(64), 1u64 << id.rem_euclid(64));
                    let held = match chunks.get(&chunk) {
                        Some((bits, _)) => bits & bit != 0,
                        None => ids.get(chunk)?.is_some_and(|g| g.value() & bit != 0),
                    };
                    let known = seen.get(chunk)?.map(|g| g.value()).unwrap_or(0);
                    if held || known & bit != 0 {
                        continue;
                    }
                    seen.insert(chunk, known | bit)?;
                    if let Some(c) = counted.as_mut() {
                        c.add(Some(created), page.query_day.as_ref());
                    }
                }
            }
            for (chunk, (bits, dirty)) in chunks {
                if dirty {
                    ids.insert(chunk, bits)?;
                }
            }
            let n_fresh = fresh_flags.iter().filter(|f| **f).count();
            if n_fresh > 0 {
                let head_n = page.head.as_ref().map_or(0, |h| h.0).min(page.ids.len());
                let segments = [
                    (0..head_n, page.head.map(|h| h.1)),
                    (head_n..page.ids.len(), page.block),
                ];
                let mut seq = get_u64(&meta, META_NEXT_SEQ)?;
                let mut blocks = tx.open_table(BLOCKS)?;
                for (range, encoded) in segments {
                    let flags = &fresh_flags[range.clone()];
                    let fresh_in = flags.iter().filter(|f| **f).count();
                    if fresh_in == 0 {
                        continue;
                    }
                    let encoded = encoded.unwrap_or_default();
                    // Some are duplicates (rare outside a stock page's head): the fresh ones
                    // are encoded again.
                    let block = if fresh_in == range.len() {
                        encoded
                    } else {
                        let all = codec::decode_block(&encoded)
                            .map_err(|source| JournalError::Corrupt { seq: 0, source })?;
                        let fresh: Vec<Record> = all
                            .into_iter()
                            .zip(flags)
                            .filter(|(_, f)| **f)
                            .map(|(r, _)| r)
                            .collect();
                        codec::encode_block(&fresh)
                    };
                    blocks.insert(seq, block.as_slice())?;
                    seq += fresh_in as u64;
                }
                put_u64(&mut meta, META_NEXT_SEQ, seq)?;
                out.appended = n_fresh as u64;
            }
            if !page.dead_letters.is_empty() {
                let created = page.dead_created;
                let fresh = insert_dead_letters(tx, &mut meta, page.dead_letters)?;
                for (i, new) in fresh.into_iter().enumerate() {
                    if !new {
                        out.duplicates += 1;
                        continue;
                    }
                    out.dead_letters += 1;
                    if let Some(c) = counted.as_mut() {
                        // A dead letter a `day` query returned counts for that day, in the
                        // minute its time says when it can be read.
                        c.add(created.get(i).copied().flatten(), page.query_day.as_ref());
                    }
                }
            }
            if !page.episodes.is_empty() {
                let mut eps = tx.open_table(EPISODES)?;
                for (mpid, e) in &page.episodes {
                    eps.insert(mpid.as_str(), codec::encode_value(e).as_slice())?;
                }
            }
            if let Some(p) = page.position {
                meta.insert(META_POSITION, codec::encode_value(&p).as_slice())?;
            }
            if let Some(last) = page.checkpoint {
                let cp = Checkpoint {
                    last_action_us: last,
                    synced_to_s3: false,
                    updated_at_us: crate::timefmt::now_us(),
                };
                meta.insert(META_CHECKPOINT, codec::encode_value(&cp).as_slice())?;
            }
        }
        if let Some(c) = counted {
            c.finish(tx)?;
        }
        Ok(out)
    }

    /// Stores dead letters found after the harvest (records a sink rejected for their content),
    /// each once per key; returns how many were new.
    pub fn add_dead_letters(&self, letters: Vec<(String, DeadLetter)>) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let added = {
            let mut meta = tx.open_table(META)?;
            insert_dead_letters(&tx, &mut meta, letters)?
                .into_iter()
                .filter(|f| *f)
                .count() as u64
        };
        tx.commit()?;
        Ok(added)
    }

    /// Stores records a sink will never take (each once per key) with the sink that refused them;
    /// returns how many were new.
    pub fn add_sink_dead_letters(&self, letters: Vec<(DeadLetter, SinkRefusal)>) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let added = {
            let mut meta = tx.open_table(META)?;
            let mut refusals = tx.open_table(SINK_REFUSALS)?;
            let mut added = 0;
            for (d, r) in letters {
                let n = get_u64(&meta, META_NEXT_DEAD)?;
                if insert_dead_letters(&tx, &mut meta, vec![(r.key.clone(), d)])?[0] {
                    refusals.insert(n, codec::encode_value(&r).as_slice())?;
                    added += 1;
                }
            }
            added
        };
        tx.commit()?;
        Ok(added)
    }

    /// The sink refusals by dead letter number (empty for journals written before they existed).
    pub fn sink_refusals(&self) -> Result<std::collections::BTreeMap<u64, SinkRefusal>> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(SINK_REFUSALS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        let mut out = std::collections::BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let r = codec::decode_value(v.value())
                .map_err(|e| decode_error(format!("sink refusal {}", k.value()), e))?;
            out.insert(k.value(), r);
        }
        Ok(out)
    }

    /// Marks dead letter `n` as delivered by a replay, so no replay sends it again; its key is
    /// freed, so a later refusal of the same record is recorded anew.
    pub fn mark_dead_letter_delivered(&self, n: u64, at_us: i64) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SINK_REFUSALS)?;
            let found = t
                .get(n)?
                .map(|v| codec::decode_value::<SinkRefusal>(v.value()));
            if let Some(r) = found {
                let mut r = r.map_err(|e| decode_error(format!("sink refusal {n}"), e))?;
                tx.open_table(DEAD_KEYS)?.remove(r.key.as_str())?;
                r.delivered_at_us = Some(at_us);
                t.insert(n, codec::encode_value(&r).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes whole blocks for which `drop` says yes; returns (blocks, records) removed.
    /// The dedupe bitmap is left alone, so a pruned action can never come back as new.
    pub fn remove_blocks(
        &self,
        mut drop: impl FnMut(u64, &BlockHeader) -> bool,
    ) -> Result<(u64, u64)> {
        let tx = self.db.begin_write()?;
        let (mut nb, mut nr) = (0, 0);
        {
            let mut blocks = tx.open_table(BLOCKS)?;
            let mut doomed = Vec::new();
            for row in blocks.iter()? {
                let (k, v) = row?;
                let h = header_at(k.value(), v.value())?;
                if drop(k.value(), &h) {
                    doomed.push(k.value());
                    nr += h.count as u64;
                }
            }
            for k in doomed {
                blocks.remove(k)?;
                nb += 1;
            }
        }
        tx.commit()?;
        Ok((nb, nr))
    }

    /// Gives the space of removed data back to the file system.
    pub fn compact(&mut self) -> Result<bool> {
        match &mut self.db {
            Db::Write(db) => db.compact().map_err(JournalError::Compaction),
            Db::Read(_) => Err(JournalError::ReadOnly),
        }
    }

    /// Sets a cursor outright (replays restart from here).
    pub fn set_cursor(&self, name: &str, to: u64) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(CURSORS)?.insert(name, to)?;
        tx.commit()?;
        Ok(())
    }

    /// Stores episode metadata looked up outside a page (unknown ids included, as tombstones).
    pub fn put_episode(&self, mpid: &str, entry: &EpisodeEntry) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(EPISODES)?
            .insert(mpid, codec::encode_value(entry).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Stores what `load-episodes` fetched, in one transaction: each episode's metadata (for the
    /// harvest's cache too; `meta: None` marks an id Opencast does not know) and its document.
    pub fn put_episode_docs(
        &self,
        items: &[(String, EpisodeEntry, Option<EpisodeDocEntry>)],
    ) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut eps = tx.open_table(EPISODES)?;
            let mut docs = tx.open_table(EPISODE_DOCS)?;
            for (mpid, entry, doc) in items {
                eps.insert(mpid.as_str(), codec::encode_value(entry).as_slice())?;
                if let Some(d) = doc {
                    docs.insert(mpid.as_str(), codec::encode_value(d).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every journaled episode document, in media package id order.
    pub fn episode_docs(&self) -> Result<ByMpid<EpisodeDocEntry>> {
        self.all_by_mpid(EPISODE_DOCS)
    }

    /// Every value of a table keyed by media package id, each decoded on its own (one that
    /// cannot be read does not hide the others).
    fn all_by_mpid<T: Decode<()>>(&self, table: TableDefinition<&str, &[u8]>) -> Result<ByMpid<T>> {
        let tx = self.db.begin_read()?;
        let mut out = Vec::new();
        let Some(t) = read_table(&tx, table)? else {
            return Ok(out);
        };
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), codec::decode_value(v.value())));
        }
        Ok(out)
    }

    /// The format the journal declares (raised to the current one when it is opened for
    /// writing).
    pub fn format_version(&self) -> Result<u8> {
        let tx = self.db.begin_read()?;
        match read_table(&tx, META)? {
            Some(meta) => Ok(declared_format(&meta)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// The journaled metadata of one episode, if any.
    pub fn episode(&self, mpid: &str) -> Result<Option<EpisodeEntry>> {
        let tx = self.db.begin_read()?;
        let Some(t) = read_table(&tx, EPISODES)? else {
            return Ok(None);
        };
        let Some(v) = t.get(mpid)? else {
            return Ok(None);
        };
        codec::decode_value(v.value())
            .map(Some)
            .map_err(|e| decode_error(format!("episode {mpid}"), e))
    }

    /// Every journaled episode, in media package id order.
    pub fn episodes(&self) -> Result<ByMpid<EpisodeEntry>> {
        self.all_by_mpid(EPISODES)
    }

    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.get_meta(META_CHECKPOINT)
    }

    /// Records that S3 now holds `cp` (only if it is still the current checkpoint).
    pub fn mark_checkpoint_synced(&self, cp: &Checkpoint) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let current: Option<Checkpoint> = decode_meta(&meta, META_CHECKPOINT)?;
            if current.map(|c| c.last_action_us) == Some(cp.last_action_us) {
                let synced = Checkpoint {
                    synced_to_s3: true,
                    ..*cp
                };
                meta.insert(META_CHECKPOINT, codec::encode_value(&synced).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets the checkpoint outright (a checkpoint adopted from S3 is already synced).
    pub fn set_checkpoint(&self, cp: Checkpoint) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?
            .insert(META_CHECKPOINT, codec::encode_value(&cp).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the checkpoint (the next harvest starts from its defaults).
    pub fn clear_checkpoint(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.remove(META_CHECKPOINT)?;
        tx.commit()?;
        Ok(())
    }

    pub fn harvest_position(&self) -> Result<Option<HarvestPosition>> {
        self.get_meta(META_POSITION)
    }

    /// Marks the harvest position as not complete: its window was read to the end but not
    /// proven (a stock day whose count never added up), so `journal stats` must not call it
    /// complete.
    pub fn mark_position_unproven(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let p: Option<HarvestPosition> = decode_meta(&meta, META_POSITION)?;
            if let Some(mut p) = p.filter(|p| p.complete) {
                p.complete = false;
                p.updated_at_us = crate::timefmt::now_us();
                meta.insert(META_POSITION, codec::encode_value(&p).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get_meta<T: Decode<()>>(&self, key: &str) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        match read_table(&tx, META)? {
            Some(meta) => decode_meta(&meta, key),
            None => Ok(None),
        }
    }

    /// The sequence number the next record will get (= records ever appended).
    pub fn next_seq(&self) -> Result<u64> {
        Ok(self.get_meta::<u64>(META_NEXT_SEQ)?.unwrap_or(0))
    }

    /// A sink's cursor: the first sequence it has not acknowledged (0 for a new sink).
    pub fn cursor(&self, sink: &str) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let Some(t) = read_table(&tx, CURSORS)? else {
            return Ok(0);
        };
        Ok(t.get(sink)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Every sink cursor by name.
    pub fn cursors(&self) -> Result<Vec<(String, u64)>> {
        let tx = self.db.begin_read()?;
        let mut out = Vec::new();
        let Some(t) = read_table(&tx, CURSORS)? else {
            return Ok(out);
        };
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// Moves a sink's cursor forward (never backward) after the sink acknowledged.
    pub fn advance_cursor(&self, sink: &str, to: u64) -> Result<()> {
        self.write_cursor(sink, to).map_err(|e| e.at(&self.path))
    }

    fn write_cursor(&self, sink: &str, to: u64) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(CURSORS)?;
            let cur = t.get(sink)?.map(|v| v.value()).unwrap_or(0);
            if to > cur {
                t.insert(sink, to)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records from `from` on, whole blocks at a time, until at least `want` are gathered or the
    /// journal ends. Returns `(first_seq, records)`; `first_seq` may be above `from` when earlier
    /// records were pruned.
    pub fn read_from(&self, from: u64, want: usize) -> Result<(u64, Vec<Record>)> {
        let tx = self.db.begin_read()?;
        let mut out: Vec<Record> = Vec::new();
        let Some(blocks) = read_table(&tx, BLOCKS)? else {
            return Ok((from, out));
        };
        let mut first = None;
        // The block holding `from` starts at or before it.
        let start_key = match blocks.range(..=from)?.next_back() {
            Some(row) => row?.0.value(),
            None => from,
        };
        for row in blocks.range((Bound::Included(start_key), Bound::Unbounded))? {
            let (k, v) = row?;
            let key = k.value();
            let recs = codec::decode_block(v.value())
                .map_err(|source| JournalError::Corrupt { seq: key, source })?;
            let end = key + recs.len() as u64;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(key) as usize;
            first.get_or_insert(key + skip as u64);
            out.extend(recs.into_iter().skip(skip));
            if out.len() >= want {
                break;
            }
        }
        Ok((first.unwrap_or(from), out))
    }

    /// Walks the blocks from the one holding `from_seq` on, one at a time (constant memory).
    /// `want` sees each header first and says whether to decode the block; `visit` gets the
    /// block's first sequence and its records (or why they cannot be read) and returns `false`
    /// to stop.
    pub fn scan(
        &self,
        from_seq: u64,
        want: impl FnMut(u64, &BlockHeader) -> bool,
        mut visit: impl FnMut(u64, std::result::Result<Vec<Record>, CodecError>) -> bool,
    ) -> Result<()> {
        self.scan_blocks(from_seq, want, |key, bytes| match bytes {
            Ok(b) => visit(key, codec::decode_block(b)),
            Err(e) => visit(key, Err(e)),
        })
    }

    /// [`Journal::scan`], each wanted block handed over still encoded (for
    /// [`codec::visit_block`]), or the error of its unreadable header.
    pub fn scan_blocks(
        &self,
        from_seq: u64,
        mut want: impl FnMut(u64, &BlockHeader) -> bool,
        mut visit: impl FnMut(u64, std::result::Result<&[u8], CodecError>) -> bool,
    ) -> Result<()> {
        let tx = self.db.begin_read()?;
        let Some(blocks) = read_table(&tx, BLOCKS)? else {
            return Ok(());
        };
        let start_key = match blocks.range(..=from_seq)?.next_back() {
            Some(row) => row?.0.value(),
            None => from_seq,
        };
        for row in blocks.range((Bound::Included(start_key), Bound::Unbounded))? {
            let (k, v) = row?;
            let key = k.value();
            let bytes = v.value();
            let block = match codec::block_header(bytes) {
                Ok(h) if !want(key, &h) => continue,
                Ok(_) => Ok(bytes),
                Err(e) => Err(e),
            };
            if !visit(key, block) {
                break;
            }
        }
        Ok(())
    }

    /// All dead letters in arrival order.
    pub fn dead_letters(&self) -> Result<Vec<(u64, DeadLetter)>> {
        let tx = self.db.begin_read()?;
        let mut out = Vec::new();
        let Some(t) = read_table(&tx, DEAD_LETTERS)? else {
            return Ok(out);
        };
        for row in t.iter()? {
            let (k, v) = row?;
            let d = codec::decode_value(v.value())
                .map_err(|e| decode_error(format!("dead letter {}", k.value()), e))?;
            out.push((k.value(), d));
        }
        Ok(out)
    }

    /// Keeps the day counts in `tz` from now on, and brings them up to date first: a journal
    /// written by an older build, or whose counts are in another zone, has its records counted
    /// (dead letters written before cannot be placed; a stock harvest then reads their day
    /// whole once). Returns how many records were counted now.
    pub fn ensure_day_stats(&self, tz: chrono_tz::Tz) -> Result<u64> {
        let (zone, from) = {
            let tx = self.db.begin_read()?;
            match read_table(&tx, META)? {
                Some(meta) => (
                    decode_meta::<String>(&meta, META_DAY_ZONE)?,
                    get_u64(&meta, META_DAY_SEQ)?,
                ),
                None => (None, 0),
            }
        };
        let same_zone = zone.as_deref() == Some(tz.name());
        let from = if same_zone { from } else { 0 };
        let next = self.next_seq()?;
        let mut counted = 0u64;
        if !same_zone || from < next {
            let mut dz = days::DayZone::new(tz);
            let mut stats: HashMap<u32, (days::DayRange, days::DayStats)> = HashMap::new();
            self.scan(
                from,
                |_, _| true,
                |first, recs| {
                    if let Ok(recs) = recs {
                        for (i, r) in recs.iter().enumerate() {
                            if first + (i as u64) < from {
                                continue;
                            }
                            let d = dz.day(r.created_us);
                            stats
                                .entry(d.key)
                                .or_insert_with(|| (d, days::DayStats::default()))
                                .1
                                .add(&d, Some(r.created_us));
                            counted += 1;
                        }
                    }
                    true
                },
            )?;
            let tx = self.db.begin_write()?;
            {
                let mut t = tx.open_table(DAY_STATS)?;
                if !same_zone {
                    // Counted in another zone: the days are other days. What was seen outside
                    // windows cannot be placed again (its times are not kept): forgotten.
                    t.retain(|_, _| false)?;
                    tx.open_table(SEEN_IDS)?.retain(|_, _| false)?;
                }
                for (key, (_, add)) in stats {
                    let mut s: days::DayStats = match t.get(key)? {
                        Some(v) => codec::decode_value(v.value())
                            .map_err(|e| decode_error(format!("day count {key}"), e))?,
                        None => days::DayStats::default(),
                    };
                    merge_day(&mut s, &add);
                    t.insert(key, codec::encode_value(&s).as_slice())?;
                }
                let mut meta = tx.open_table(META)?;
                meta.insert(
                    META_DAY_ZONE,
                    codec::encode_value(&tz.name().to_string()).as_slice(),
                )?;
                put_u64(&mut meta, META_DAY_SEQ, next)?;
            }
            tx.commit()
                .map_err(|e| JournalError::from(e).at(&self.path))?;
        }
        *self.day_zone.lock().expect("day zone lock") = Some(days::DayZone::new(tz));
        Ok(counted)
    }

    /// The actions held of day `key` (`YYYYMMDD` in the zone of [`Journal::ensure_day_stats`]).
    pub fn day_stats(&self, key: u32) -> Result<days::DayStats> {
        let tx = self.db.begin_read()?;
        let Some(t) = read_table(&tx, DAY_STATS)? else {
            return Ok(days::DayStats::default());
        };
        match t.get(key)? {
            Some(v) => codec::decode_value(v.value())
                .map_err(|e| decode_error(format!("day count {key}"), e)),
            None => Ok(days::DayStats::default()),
        }
    }

    /// How Opencast's actions were last found to be asked for (`windowed` or `stock`).
    pub fn opencast_api(&self) -> Result<Option<String>> {
        self.get_meta::<String>(META_API)
    }

    /// Remembers how Opencast's actions are asked for.
    pub fn set_opencast_api(&self, api: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?
            .insert(META_API, codec::encode_value(&api.to_string()).as_slice())?;
        tx.commit()
            .map_err(|e| JournalError::from(e).at(&self.path))
    }

    /// Number of distinct action ids ever journaled.
    pub fn known_action_ids(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let mut n = 0u64;
        let Some(t) = read_table(&tx, ACTION_IDS)? else {
            return Ok(0);
        };
        for row in t.iter()? {
            n += row?.1.value().count_ones() as u64;
        }
        Ok(n)
    }
}

/// A table for reading, `None` when the journal does not have it: a journal opened read-only is
/// read as it is, and one from an older build may lack tables added since.
pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>> {
    match tx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The header of the block stored at `seq`, an unreadable one reported with its sequence.
pub(crate) fn header_at(seq: u64, bytes: &[u8]) -> Result<BlockHeader> {
    codec::block_header(bytes).map_err(|source| JournalError::Corrupt { seq, source })
}

fn decode_meta<T: Decode<()>>(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    match meta.get(key)? {
        None => Ok(None),
        Some(v) => codec::decode_value(v.value())
            .map(Some)
            .map_err(|e| decode_error(format!("meta {key}"), e)),
    }
}

/// Inserts dead letters not yet stored under their key; returns (added, duplicates).
/// Whether `id`'s bit is set in a bitmap table.
fn has_bit(t: &impl ReadableTable<i64, u64>, id: i64) -> Result<bool> {
    let (chunk, bit) = (id.div_euclid(64), 1u64 << id.rem_euclid(64));
    Ok(t.get(chunk)?.is_some_and(|g| g.value() & bit != 0))
}

/// Stores each letter once per key; says for each whether it was new.
fn insert_dead_letters(
    tx: &redb::WriteTransaction,
    meta: &mut redb::Table<&'static str, &'static [u8]>,
    letters: Vec<(String, DeadLetter)>,
) -> Result<Vec<bool>> {
    let mut keys = tx.open_table(DEAD_KEYS)?;
    let mut dead = tx.open_table(DEAD_LETTERS)?;
    let mut next = get_u64(meta, META_NEXT_DEAD)?;
    let mut fresh = Vec::with_capacity(letters.len());
    for (key, d) in letters {
        if keys.insert(key.as_str(), ())?.is_some() {
            fresh.push(false);
            continue;
        }
        dead.insert(next, codec::encode_value(&d).as_slice())?;
        next += 1;
        fresh.push(true);
    }
    put_u64(meta, META_NEXT_DEAD, next)?;
    Ok(fresh)
}

/// Counts a commit's new actions per day ([`days::DayStats`]), when the journal knows its zone
/// and its counts are up to date (else [`Journal::ensure_day_stats`] brings them up later).
struct DayCounter<'z> {
    zone: &'z mut days::DayZone,
    stats: HashMap<u32, (days::DayRange, days::DayStats)>,
}

impl<'z> DayCounter<'z> {
    fn new(tx: &WriteTransaction, zone: Option<&'z mut days::DayZone>) -> Result<Option<Self>> {
        let Some(zone) = zone else { return Ok(None) };
        let meta = tx.open_table(META)?;
        let up_to_date = get_u64(&meta, META_DAY_SEQ)? == get_u64(&meta, META_NEXT_SEQ)?
            && decode_meta::<String>(&meta, META_DAY_ZONE)?.as_deref() == Some(zone.tz().name());
        Ok(up_to_date.then(|| DayCounter {
            zone,
            stats: HashMap::new(),
        }))
    }

    /// One new action created at `created_us`; without a time, it counts for `query_day`.
    fn add(&mut self, created_us: Option<i64>, query_day: Option<&days::DayRange>) {
        let day = match (created_us, query_day) {
            (Some(t), _) => self.zone.day(t),
            (None, Some(d)) => *d,
            (None, None) => return,
        };
        self.stats
            .entry(day.key)
            .or_insert_with(|| (day, days::DayStats::default()))
            .1
            .add(&day, created_us);
    }

    /// Adds the counts to the table and marks them current.
    fn finish(self, tx: &WriteTransaction) -> Result<()> {
        let mut t = tx.open_table(DAY_STATS)?;
        for (key, (_, add)) in self.stats {
            let mut s: days::DayStats = match t.get(key)? {
                Some(v) => codec::decode_value(v.value())
                    .map_err(|e| decode_error(format!("day count {key}"), e))?,
                None => days::DayStats::default(),
            };
            merge_day(&mut s, &add);
            t.insert(key, codec::encode_value(&s).as_slice())?;
        }
        let mut meta = tx.open_table(META)?;
        let next = get_u64(&meta, META_NEXT_SEQ)?;
        put_u64(&mut meta, META_DAY_SEQ, next)?;
        Ok(())
    }
}

fn merge_day(into: &mut days::DayStats, add: &days::DayStats) {
    into.count += add.count;
    if into.minutes.len() < add.minutes.len() {
        into.minutes.resize(add.minutes.len(), 0);
    }
    for (a, b) in into.minutes.iter_mut().zip(&add.minutes) {
        *a = a.saturating_add(*b);
    }
    for (a, b) in into.head.iter_mut().zip(&add.head) {
        *a = a.saturating_add(*b);
    }
    for (a, b) in into.tail.iter_mut().zip(&add.tail) {
        *a = a.saturating_add(*b);
    }
}

fn get_u64(meta: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<u64> {
    Ok(decode_meta::<u64>(meta, key)?.unwrap_or(0))
}

fn put_u64(meta: &mut redb::Table<&'static str, &'static [u8]>, key: &str, v: u64) -> Result<()> {
    meta.insert(key, codec::encode_value(&v).as_slice())?;
    Ok(())
}

/// The format a journal's META table declares (`None` for a new journal).
fn declared_format(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> std::result::Result<Option<u8>, redb::StorageError> {
    Ok(meta
        .get(META_FORMAT)?
        .map(|v| v.value().first().copied().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ActionBlock;

    fn rec(id: i64) -> Record {
        Record {
            action_id: id,
            created_us: 1_456_790_400_000_000 + id,
            mpid: "mp-1".into(),
            session_id: format!("s{}", id % 2),
            huid: (id % 3 == 0).then(|| "u".to_string()),
            useragent: Some("ua".into()),
            action: ActionBlock {
                kind: Some("HEARTBEAT".into()),
                inpoint: Some(id),
                outpoint: None,
                length: Some(10),
                is_playing: true,
            },
            ip_chain: Some("10.0.0.1, 128.103.1.1".into()),
            is_live: false,
            episode: None,
        }
    }

    /// A page whose first records are encoded apart (a stock `day` page's repeated head): a
    /// head of duplicates is dropped, a head partly fresh keeps its fresh records, and the body
    /// follows in order either way.
    #[test]
    fn a_page_head_read_twice_is_dropped_and_a_partly_fresh_head_keeps_its_fresh_records() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        let enc =
            |ids: &[i64]| codec::encode_block(&ids.iter().copied().map(rec).collect::<Vec<_>>());
        let page = |head: &[i64], body: &[i64]| PageCommit {
            ids: head.iter().chain(body).copied().collect(),
            head: Some((head.len(), enc(head))),
            block: Some(enc(body)),
            ..PageCommit::default()
        };
        j.commit_page(page(&[], &[1, 2, 3, 4])).unwrap();
        let out = j.commit_page(page(&[3, 4], &[5, 6])).unwrap();
        assert_eq!((out.appended, out.duplicates), (2, 2));
        let out = j.commit_page(page(&[6, 7], &[8])).unwrap();
        assert_eq!((out.appended, out.duplicates), (2, 1));
        let out = j.commit_page(page(&[9], &[8, 10])).unwrap();
        assert_eq!((out.appended, out.duplicates), (2, 1));
        let (_, recs) = j.read_from(0, usize::MAX).unwrap();
        let ids: Vec<i64> = recs.iter().map(|r| r.action_id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(recs, (1..=10).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn a_group_commit_applies_its_pages_in_order_as_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        let page = |ids: Vec<i64>, offset: u64, checkpoint: Option<i64>| PageCommit {
            block: Some(codec::encode_block(
                &ids.iter().copied().map(rec).collect::<Vec<_>>(),
            )),
            ids,
            position: Some(HarvestPosition {
                next_offset: offset,
                ..HarvestPosition::default()
            }),
            checkpoint,
            ..PageCommit::default()
        };
        // The second page overlaps the first (a checkpoint inside a second, a shifted page):
        // its repeat is a duplicate even though the first page is not committed yet.
        let out = j
            .commit_pages(vec![
                page(vec![1, 2, 3], 3, None),
                page(vec![3, 4], 5, None),
                page(vec![5, 6], 7, Some(42)),
            ])
            .unwrap();
        assert_eq!((out.appended, out.duplicates), (6, 1));
        assert_eq!(j.harvest_position().unwrap().unwrap().next_offset, 7);
        assert_eq!(j.checkpoint().unwrap().unwrap().last_action_us, 42);
        let (_, all) = j.read_from(0, 100).unwrap();
        assert_eq!(all, (1..=6).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn a_format_1_journal_is_upgraded_and_its_old_blocks_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        let old: Vec<Record> = (1..=3).map(rec).collect();
        {
            // A journal as builds of format 1 left it: version 1 blocks, format 1 in META.
            let j = Journal::open(&path).unwrap();
            j.commit_page(PageCommit {
                ids: vec![1, 2, 3],
                block: Some(codec::encode_block_v1(&old)),
                ..PageCommit::default()
            })
            .unwrap();
            let tx = j.db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(META_FORMAT, [1u8].as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.format_version().unwrap(), codec::FORMAT_VERSION);
        let new: Vec<Record> = (3..=5).map(rec).collect();
        let out = j
            .commit_page(PageCommit {
                ids: vec![3, 4, 5],
                block: Some(codec::encode_block(&new)),
                ..PageCommit::default()
            })
            .unwrap();
        // Id 3 was journaled by the old build: still known, not stored twice.
        assert_eq!((out.appended, out.duplicates), (2, 1));
        let (first, all) = j.read_from(0, 100).unwrap();
        assert_eq!(first, 0);
        let want: Vec<Record> = (1..=5).map(rec).collect();
        assert_eq!(all, want);
    }
}
