//! Reading the journal offline: a streaming dump with filters, figures, and a consistency check.
//!
//! Everything here walks the journal one block at a time, so memory stays flat whatever its size,
//! and a block that cannot be read is reported (with its sequence range) without stopping the walk.

use std::collections::HashMap;
use std::io::Write;

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::{
    codec, read_table, Journal, JournalError, Result, ACTION_IDS, BLOCKS, CURSORS, DEAD_LETTERS,
    EPISODES, QUARANTINE,
};
use crate::record::Record;
use crate::timefmt;

/// Which records `dump` and `replay` select. Every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `created` at or after (UTC microseconds).
    pub from_us: Option<i64>,
    /// `created` at or before.
    pub to_us: Option<i64>,
    /// Sequence numbers, inclusive.
    pub seq: Option<(u64, u64)>,
    pub mpids: Vec<String>,
    pub types: Vec<String>,
}

impl Filter {
    /// Whether a block with this header can hold a selected record.
    pub fn may_hold(&self, first_seq: u64, h: &codec::BlockHeader) -> bool {
        let last_seq = first_seq + h.count as u64 - 1;
        !(self.from_us.is_some_and(|f| h.max_created_us < f)
            || self.to_us.is_some_and(|t| h.min_created_us > t)
            || self.seq.is_some_and(|(a, b)| last_seq < a || first_seq > b))
    }

    pub fn selects(&self, seq: u64, r: &Record) -> bool {
        self.selects_parts(seq, r.created_us, &r.mpid, r.action.kind.as_deref())
    }

    /// [`Filter::selects`] of a record borrowed from its block.
    pub fn selects_borrowed(&self, seq: u64, r: &codec::BlockRecord<'_>) -> bool {
        self.selects_parts(seq, r.created_us, r.mpid, r.kind)
    }

    fn selects_parts(&self, seq: u64, created_us: i64, mpid: &str, kind: Option<&str>) -> bool {
        self.from_us.is_none_or(|f| created_us >= f)
            && self.to_us.is_none_or(|t| created_us <= t)
            && self.seq.is_none_or(|(a, b)| seq >= a && seq <= b)
            && (self.mpids.is_empty() || self.mpids.iter().any(|m| m == mpid))
            && (self.types.is_empty()
                || kind.is_some_and(|k| self.types.iter().any(|t| t.eq_ignore_ascii_case(k))))
    }

    /// The first sequence worth starting a walk at.
    pub fn start_seq(&self) -> u64 {
        self.seq.map(|(a, _)| a).unwrap_or(0)
    }
}

/// A block that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct BadBlock {
    pub first_seq: u64,
    pub error: String,
}

/// What a dump did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DumpSummary {
    pub written: u64,
    pub bad_blocks: Vec<BadBlock>,
}

/// Writes the selected records as JSON lines (the exact record format), block by block.
pub fn dump(
    j: &Journal,
    filter: &Filter,
    limit: Option<u64>,
    out: &mut impl Write,
) -> Result<DumpSummary> {
    dump_with(j, filter, limit, out, |r, line| r.write_json(line))
}

/// [`dump`], each record written by `write` (the enriched Elasticsearch document, say).
pub fn dump_with(
    j: &Journal,
    filter: &Filter,
    limit: Option<u64>,
    out: &mut impl Write,
    mut write: impl FnMut(&crate::record::Record, &mut Vec<u8>),
) -> Result<DumpSummary> {
    let mut line = Vec::with_capacity(1024);
    let sum = for_each(j, filter, limit, |r| {
        line.clear();
        write(r, &mut line);
        line.push(b'\n');
        out.write_all(&line)
    })?;
    out.flush().ok();
    Ok(sum)
}

/// Hands each selected record to `emit`, block by block, in sequence order (the walk of every
/// dump, whatever it writes). An error from `emit` stops the walk: a closed pipe (`| head`) as
/// a normal end, any other as the dump's error.
pub fn for_each(
    j: &Journal,
    filter: &Filter,
    limit: Option<u64>,
    mut emit: impl FnMut(&crate::record::Record) -> std::io::Result<()>,
) -> Result<DumpSummary> {
    let mut sum = DumpSummary::default();
    let mut io_err = None;
    j.scan(
        filter.start_seq(),
        |seq, h| filter.may_hold(seq, h),
        |first, block| {
            let records = match block {
                Ok(r) => r,
                Err(e) => {
                    sum.bad_blocks.push(BadBlock {
                        first_seq: first,
                        error: e.to_string(),
                    });
                    return true;
                }
            };
            for (i, r) in records.iter().enumerate() {
                if limit.is_some_and(|l| sum.written >= l) {
                    return false;
                }
                if !filter.selects(first + i as u64, r) {
                    continue;
                }
                if let Err(e) = emit(r) {
                    io_err = Some(e);
                    return false;
                }
                sum.written += 1;
            }
            if filter
                .seq
                .is_some_and(|(_, b)| first + records.len() as u64 > b)
            {
                return false;
            }
            true
        },
    )?;
    if let Some(e) = io_err {
        // A closed pipe (`| head`) is a normal way to stop reading.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(JournalError::Dump(e));
        }
    }
    Ok(sum)
}

/// [`for_each`] without a limit, each selected record borrowed from its block (no allocation
/// per record: the walk of `harvester report`, millions of records at a time). A block that
/// cannot be read is skipped whole and reported.
pub fn for_each_ref(
    j: &Journal,
    filter: &Filter,
    mut emit: impl FnMut(&codec::BlockRecord<'_>),
) -> Result<DumpSummary> {
    let mut sum = DumpSummary::default();
    let mut reader = codec::BlockReader::default();
    j.scan_blocks(
        filter.start_seq(),
        |seq, h| filter.may_hold(seq, h),
        |first, block| {
            let visited = block.and_then(|b| {
                codec::visit_block(b, &mut reader, |i, r| {
                    if filter.selects_borrowed(first + i as u64, r) {
                        emit(r);
                        sum.written += 1;
                    }
                })
            });
            match visited {
                Ok(n) => filter.seq.is_none_or(|(_, b)| first + n as u64 <= b),
                Err(e) => {
                    sum.bad_blocks.push(BadBlock {
                        first_seq: first,
                        error: e.to_string(),
                    });
                    true
                }
            }
        },
    )?;
    Ok(sum)
}

/// A sink cursor and how far it trails the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CursorStat {
    pub sink: String,
    pub cursor: u64,
    pub lag: u64,
}

/// The figures of `journal stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub path: String,
    /// The journal's format (see `codec`); blocks of every earlier format still read.
    #[serde(default)]
    pub format_version: u8,
    pub actions: u64,
    pub blocks: u64,
    pub first_seq: Option<u64>,
    pub next_seq: u64,
    pub episodes: u64,
    pub dead_letters: u64,
    pub known_action_ids: u64,
    pub oldest_action: Option<String>,
    pub newest_action: Option<String>,
    pub size_on_disk_bytes: u64,
    pub bytes_per_action: Option<f64>,
    pub records_uncompressed_bytes: u64,
    pub records_stored_bytes: u64,
    pub compression_ratio: Option<f64>,
    /// Blocks whose header cannot be read (`journal verify` decodes every block).
    #[serde(default)]
    pub unreadable_headers: u64,
    /// Blocks `journal salvage` set aside as unreadable.
    #[serde(default)]
    pub quarantined_blocks: u64,
    pub checkpoint: Option<String>,
    pub checkpoint_synced_to_s3: Option<bool>,
    pub harvest_position: Option<String>,
    pub cursors: Vec<CursorStat>,
}

/// Counts and sizes, from block headers and table sizes (no record is decoded).
pub fn stats(j: &Journal) -> Result<Stats> {
    let tx = j.db.begin_read()?;
    let (mut actions, mut nblocks, mut raw, mut stored) = (0u64, 0u64, 0u64, 0u64);
    let (mut oldest, mut newest): (Option<i64>, Option<i64>) = (None, None);
    let mut first_seq = None;
    let mut unreadable = 0u64;
    if let Some(blocks) = read_table(&tx, BLOCKS)? {
        for row in blocks.iter()? {
            let (k, v) = row?;
            first_seq.get_or_insert(k.value());
            nblocks += 1;
            stored += v.value().len() as u64;
            // A damaged header is counted, not fatal: stats is how one looks at a sick journal.
            let Ok(h) = codec::block_header(v.value()) else {
                unreadable += 1;
                continue;
            };
            actions += h.count as u64;
            raw += h.raw_len as u64;
            oldest = Some(oldest.map_or(h.min_created_us, |o| o.min(h.min_created_us)));
            newest = Some(newest.map_or(h.max_created_us, |n| n.max(h.max_created_us)));
        }
    }
    let episodes = count(read_table(&tx, EPISODES)?)?;
    let dead_letters = count(read_table(&tx, DEAD_LETTERS)?)?;
    let quarantined_blocks = count(read_table(&tx, QUARANTINE)?)?;
    drop(tx);
    let next_seq = j.next_seq()?;
    let size = std::fs::metadata(j.path()).map(|m| m.len()).unwrap_or(0);
    let cp = j.checkpoint()?;
    let pos = j.harvest_position()?;
    let cursors = j
        .cursors()?
        .into_iter()
        .map(|(sink, cursor)| CursorStat {
            sink,
            cursor,
            lag: next_seq.saturating_sub(cursor),
        })
        .collect();
    Ok(Stats {
        path: j.path().display().to_string(),
        format_version: j.format_version()?,
        actions,
        blocks: nblocks,
        first_seq,
        next_seq,
        episodes,
        dead_letters,
        known_action_ids: j.known_action_ids()?,
        oldest_action: oldest.map(timefmt::format_rfc3339),
        newest_action: newest.map(timefmt::format_rfc3339),
        size_on_disk_bytes: size,
        bytes_per_action: (actions > 0).then(|| size as f64 / actions as f64),
        records_uncompressed_bytes: raw,
        records_stored_bytes: stored,
        compression_ratio: (stored > 0).then(|| raw as f64 / stored as f64),
        unreadable_headers: unreadable,
        quarantined_blocks,
        checkpoint: cp.map(|c| timefmt::format_rfc3339(c.last_action_us)),
        checkpoint_synced_to_s3: cp.map(|c| c.synced_to_s3),
        harvest_position: pos.map(|p| {
            format!(
                "window {}..{}, {} pages{}",
                timefmt::format_rfc3339(p.window_start_us),
                timefmt::format_rfc3339(p.window_end_us),
                p.pages,
                if p.complete {
                    ", complete"
                } else {
                    ", not complete (interrupted, or a day not proven: see the run's error)"
                }
            )
        }),
        cursors,
    })
}

/// Rows in a table (none when the journal does not have it).
fn count(t: Option<impl ReadableTableMetadata>) -> Result<u64> {
    Ok(match t {
        Some(t) => t.len()?,
        None => 0,
    })
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "journal          {}", self.path)?;
        writeln!(f, "format           {}", self.format_version)?;
        writeln!(
            f,
            "actions          {} in {} blocks (sequence {}..{})",
            self.actions,
            self.blocks,
            self.first_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            self.next_seq
        )?;
        writeln!(f, "oldest action    {}", opt(&self.oldest_action))?;
        writeln!(f, "newest action    {}", opt(&self.newest_action))?;
        writeln!(f, "episodes         {}", self.episodes)?;
        writeln!(f, "dead letters     {}", self.dead_letters)?;
        if self.unreadable_headers > 0 {
            writeln!(
                f,
                "DAMAGED          {} blocks with unreadable headers: run `harvester journal verify`, then `harvester journal salvage`",
                self.unreadable_headers
            )?;
        }
        if self.quarantined_blocks > 0 {
            writeln!(
                f,
                "quarantined      {} unreadable blocks set aside by `journal salvage`",
                self.quarantined_blocks
            )?;
        }
        writeln!(
            f,
            "action ids seen  {} (kept after pruning, for dedupe)",
            self.known_action_ids
        )?;
        writeln!(
            f,
            "size on disk     {} bytes ({} per action)",
            self.size_on_disk_bytes,
            self.bytes_per_action
                .map(|b| format!("{b:.1}"))
                .unwrap_or_else(|| "-".into())
        )?;
        writeln!(
            f,
            "compression      {} -> {} bytes ({})",
            self.records_uncompressed_bytes,
            self.records_stored_bytes,
            self.compression_ratio
                .map(|r| format!("{r:.1}x"))
                .unwrap_or_else(|| "-".into())
        )?;
        writeln!(
            f,
            "checkpoint       {}{}",
            opt(&self.checkpoint),
            match self.checkpoint_synced_to_s3 {
                Some(true) => " (in S3 too)",
                Some(false) => " (not yet in S3)",
                None => "",
            }
        )?;
        writeln!(f, "harvest          {}", opt(&self.harvest_position))?;
        if self.cursors.is_empty() {
            writeln!(f, "sinks            none yet")?;
        }
        for c in &self.cursors {
            writeln!(f, "sink {:<12} cursor {} (lag {})", c.sink, c.cursor, c.lag)?;
        }
        Ok(())
    }
}

/// What `journal verify` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub blocks: u64,
    pub records: u64,
    /// Blocks set aside by `journal salvage` (not problems: their gaps are accounted for).
    pub quarantined: u64,
    /// First sequences of the blocks that cannot be read.
    pub bad_blocks: Vec<u64>,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Decodes every record, dead letter and episode, and checks that the tables agree.
pub fn verify(j: &Journal) -> Result<VerifyReport> {
    let mut rep = VerifyReport::default();
    let mut expected_next: Option<u64> = None;
    let mut ids: Vec<i64> = Vec::new();
    let tx = j.db.begin_read()?;
    let quarantine = read_table(&tx, QUARANTINE)?;
    // A gap is accounted for when salvage quarantined a block that began in it.
    let quarantined_in = |from: u64, to: u64| -> Result<bool> {
        Ok(match &quarantine {
            Some(q) if from < to => q.range(from..to)?.next().is_some(),
            _ => false,
        })
    };
    let mut gaps = Vec::new();
    j.scan(
        0,
        |_, _| true,
        |first, block| {
            rep.blocks += 1;
            if let Some(e) = expected_next {
                if e != first {
                    gaps.push((e, first));
                }
            }
            match block {
                Ok(records) => {
                    expected_next = Some(first + records.len() as u64);
                    rep.records += records.len() as u64;
                    ids.extend(records.iter().map(|r| r.action_id));
                }
                Err(e) => {
                    rep.bad_blocks.push(first);
                    rep.problems
                        .push(format!("block at sequence {first} cannot be read: {e}"));
                    expected_next = None;
                }
            }
            true
        },
    )?;
    for (e, first) in gaps {
        if !quarantined_in(e, first)? {
            rep.problems.push(format!("block at sequence {first} follows a block ending at {e}: records are missing or overlap"));
        }
    }
    if let Some(q) = &quarantine {
        rep.quarantined = q.len()?;
    }
    let next_seq = j.next_seq()?;
    if let Some(e) = expected_next {
        if e != next_seq && !quarantined_in(e, next_seq)? {
            rep.problems.push(format!(
                "the last block ends at sequence {e} but the journal's next sequence is {next_seq}"
            ));
        }
    }
    if !rep.bad_blocks.is_empty() {
        rep.problems.push(format!(
            "{} unreadable block(s): `harvester journal salvage` sets them aside, forgets their action ids and prints the harvest that brings their records back",
            rep.bad_blocks.len()
        ));
    }
    verify_tables(&tx, next_seq, ids, &mut rep)?;
    Ok(rep)
}

/// The dedupe bitmap holds every record's id once; dead letters, episodes and cursors read.
fn verify_tables(
    tx: &redb::ReadTransaction,
    next_seq: u64,
    mut ids: Vec<i64>,
    rep: &mut VerifyReport,
) -> Result<()> {
    let mut bits: HashMap<i64, u64> = HashMap::new();
    ids.sort_unstable();
    for w in ids.windows(2) {
        if w[0] == w[1] {
            rep.problems
                .push(format!("action {} is journaled more than once", w[0]));
        }
    }
    let bits_table = read_table(tx, ACTION_IDS)?;
    for id in &ids {
        let chunk = id.div_euclid(64);
        let b = match bits.get(&chunk) {
            Some(b) => *b,
            None => {
                let b = match &bits_table {
                    Some(t) => t.get(chunk)?.map(|g| g.value()).unwrap_or(0),
                    None => 0,
                };
                bits.insert(chunk, b);
                b
            }
        };
        if b & (1u64 << id.rem_euclid(64)) == 0 {
            rep.problems.push(format!(
                "action {id} is journaled but missing from the dedupe table"
            ));
        }
    }
    if let Some(t) = read_table(tx, DEAD_LETTERS)? {
        for row in t.iter()? {
            let (k, v) = row?;
            if let Err(e) = codec::decode_value::<super::DeadLetter>(v.value()) {
                rep.problems
                    .push(format!("dead letter {} cannot be read: {e}", k.value()));
            }
        }
    }
    if let Some(t) = read_table(tx, EPISODES)? {
        for row in t.iter()? {
            let (k, v) = row?;
            if let Err(e) = codec::decode_value::<super::EpisodeEntry>(v.value()) {
                rep.problems
                    .push(format!("episode {} cannot be read: {e}", k.value()));
            }
        }
    }
    if let Some(t) = read_table(tx, CURSORS)? {
        for row in t.iter()? {
            let (k, v) = row?;
            if v.value() > next_seq {
                rep.problems.push(format!(
                    "cursor {} is at {} past the journal's end {next_seq}",
                    k.value(),
                    v.value()
                ));
            }
        }
    }
    Ok(())
}
