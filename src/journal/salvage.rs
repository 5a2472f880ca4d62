//! Damage: finding unreadable blocks, and setting them aside so their records can be harvested
//! again.
//!
//! A block that cannot be decoded is worse than a lost block: its action ids are still in the
//! dedupe memory, so every later harvest takes its records for duplicates. Hence:
//! - a *scrub* decodes a bounded slice of the journal at each harvest (continuing where the last
//!   one stopped), and remembers the unreadable blocks it met, so that `harvest` and `run` can
//!   refuse to go on silently (one metadata read);
//! - *salvage* moves every unreadable block to the quarantine table (never deleted), forgets the
//!   ids it may have held, and says which time window to harvest again.
//!
//! The ids of an unreadable block are unknown. Opencast's ids are dense auto-increment numbers
//! and blocks are journaled in harvest order, so the block's ids lie between the ids of its
//! readable neighbours: salvage forgets every id from the lowest id of the previous readable
//! block to the highest id of the next one that no readable block holds. Forgetting an id that
//! was not in the block costs nothing: a harvest of the window finds it journaled nowhere and
//! journals it again only if Opencast still has it.

use std::collections::HashMap;

use redb::ReadableTable;

use super::{
    codec, decode_meta, read_table, BlockHeader, Journal, QuarantinedBlock, Result, ACTION_IDS,
    BLOCKS, CURSORS, META, QUARANTINE,
};

const META_SCRUB_NEXT: &str = "scrub_next";
const META_DAMAGED: &str = "damaged_blocks";

/// How many records a scrub decodes at each harvest (about 0.2 s): a journal of millions of
/// records is covered over several runs, one of thousands at each.
pub const SCRUB_RECORDS: u64 = 200_000;

/// What salvage did with one unreadable block.
#[derive(Debug, Clone)]
pub struct Salvaged {
    pub first_seq: u64,
    pub end_seq: u64,
    pub reason: String,
    /// The `created` range (UTC microseconds) its records had: from its header when that reads
    /// and is plausible, else between its readable neighbours; `None` when unknown.
    pub window: Option<(i64, i64)>,
    /// Action ids forgotten by the dedupe memory for it.
    pub forgotten_ids: u64,
    /// Sinks whose cursor had passed the block (they will receive its records again).
    pub acknowledged_by: Vec<String>,
}

/// A readable block, as salvage needs to know it.
struct Readable {
    min_id: i64,
    max_id: i64,
    min_created_us: i64,
    max_created_us: i64,
}

enum Found {
    Readable(Readable),
    Unreadable {
        bytes: Vec<u8>,
        reason: String,
        header: Option<BlockHeader>,
    },
}

impl Journal {
    /// Decodes blocks from where the last scrub stopped until about `budget` records were read
    /// (starting over at the end), remembers the unreadable ones, and returns the first
    /// sequence of every block known to be unreadable. A read-only journal is scrubbed whole
    /// and nothing is remembered.
    pub fn scrub(&self, budget: u64) -> Result<Vec<u64>> {
        let writable = self.is_writable();
        let (from, known) = self.scrub_state()?;
        let from = if writable { from } else { 0 };
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        let (mut read, mut last, mut stopped) = (0u64, None, false);
        self.scan(
            from,
            |_, _| true,
            |first, block| {
                // Where the block ends: the next scrub starts at the block after it.
                last = Some(match block {
                    Ok(r) => {
                        read += r.len() as u64;
                        good.push(first);
                        first + r.len() as u64
                    }
                    Err(_) => {
                        read += 1;
                        bad.push(first);
                        first + 1
                    }
                });
                stopped = writable && read >= budget;
                !stopped
            },
        )?;
        let mut damaged: Vec<u64> = known
            .iter()
            .copied()
            .filter(|k| !good.contains(k))
            .chain(bad)
            .collect();
        damaged.sort_unstable();
        damaged.dedup();
        let next = match (stopped, last) {
            (true, Some(end)) => end,
            _ => 0,
        };
        if writable && (next != from || damaged != known) {
            let tx = self.db.begin_write()?;
            {
                let mut meta = tx.open_table(META)?;
                meta.insert(META_SCRUB_NEXT, codec::encode_value(&next).as_slice())?;
                meta.insert(META_DAMAGED, codec::encode_value(&damaged).as_slice())?;
            }
            tx.commit()?;
        }
        Ok(damaged)
    }

    /// Where the next scrub starts, and the blocks found unreadable so far.
    fn scrub_state(&self) -> Result<(u64, Vec<u64>)> {
        let tx = self.db.begin_read()?;
        let Some(meta) = read_table(&tx, META)? else {
            return Ok((0, Vec::new()));
        };
        Ok((
            decode_meta::<u64>(&meta, META_SCRUB_NEXT)?.unwrap_or(0),
            decode_meta::<Vec<u64>>(&meta, META_DAMAGED)?.unwrap_or_default(),
        ))
    }

    /// Moves every unreadable block to the quarantine table and forgets the action ids it may
    /// have held (see the module's documentation), in one transaction.
    pub fn salvage(&self) -> Result<Vec<Salvaged>> {
        let next_seq = self.next_seq()?;
        let tx = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let mut blocks = tx.open_table(BLOCKS)?;
            let (found, held) = survey(&blocks)?;
            let cursors = read_cursors(&tx)?;
            let mut ids = tx.open_table(ACTION_IDS)?;
            let mut quarantine = tx.open_table(QUARANTINE)?;
            for i in 0..found.len() {
                let (first_seq, Found::Unreadable { .. }) = &found[i] else {
                    continue;
                };
                let first_seq = *first_seq;
                let prev = found[..i].iter().rev().find_map(readable);
                let next = found[i + 1..].iter().find_map(readable);
                let end_seq = found.get(i + 1).map(|(k, _)| *k).unwrap_or(next_seq);
                let lo = prev.map(|r| r.min_id).unwrap_or(i64::MIN);
                let hi = next.map(|r| r.max_id).unwrap_or(i64::MAX);
                let forgotten_ids = forget_ids(&mut ids, &held, lo, hi)?;
                let Found::Unreadable {
                    bytes,
                    reason,
                    header,
                } = &found[i].1
                else {
                    continue;
                };
                let window = time_window(header.as_ref(), prev, next);
                let q = QuarantinedBlock {
                    end_seq,
                    reason: reason.clone(),
                    at_us: crate::timefmt::now_us(),
                    bytes: bytes.clone(),
                };
                quarantine.insert(first_seq, codec::encode_value(&q).as_slice())?;
                blocks.remove(first_seq)?;
                out.push(Salvaged {
                    first_seq,
                    end_seq,
                    reason: reason.clone(),
                    window,
                    forgotten_ids,
                    acknowledged_by: cursors
                        .iter()
                        .filter(|(n, c)| !n.starts_with("replay:") && *c >= end_seq)
                        .map(|(n, _)| n.clone())
                        .collect(),
                });
            }
            let mut meta = tx.open_table(META)?;
            meta.remove(META_DAMAGED)?;
            meta.remove(META_SCRUB_NEXT)?;
        }
        tx.commit()?;
        Ok(out)
    }
}

/// Every non-empty block by first sequence, readable (its id and time ranges) or not (its
/// bytes, why, its header); and per 64-id chunk the ids the readable blocks hold.
#[allow(clippy::type_complexity)]
fn survey(
    blocks: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<(Vec<(u64, Found)>, HashMap<i64, u64>)> {
    let mut found: Vec<(u64, Found)> = Vec::new();
    let mut held: HashMap<i64, u64> = HashMap::new();
    for row in blocks.iter()? {
        let (k, v) = row?;
        let bytes = v.value();
        let f = match codec::decode_block(bytes) {
            Ok(records) if !records.is_empty() => {
                for r in &records {
                    *held.entry(r.action_id.div_euclid(64)).or_default() |=
                        1u64 << r.action_id.rem_euclid(64);
                }
                let ids = records.iter().map(|r| r.action_id);
                let created = records.iter().map(|r| r.created_us);
                Found::Readable(Readable {
                    min_id: ids.clone().min().unwrap_or(0),
                    max_id: ids.max().unwrap_or(0),
                    min_created_us: created.clone().min().unwrap_or(0),
                    max_created_us: created.max().unwrap_or(0),
                })
            }
            Ok(_) => continue,
            Err(e) => Found::Unreadable {
                bytes: bytes.to_vec(),
                reason: e.to_string(),
                header: codec::block_header(bytes).ok(),
            },
        };
        found.push((k.value(), f));
    }
    Ok((found, held))
}

/// The times an unreadable block's records were created in: its header's when plausible, else
/// between its readable neighbours'.
fn time_window(
    header: Option<&BlockHeader>,
    prev: Option<&Readable>,
    next: Option<&Readable>,
) -> Option<(i64, i64)> {
    match header {
        Some(h) if plausible(h) => Some((h.min_created_us, h.max_created_us)),
        _ => match (prev, next) {
            (Some(p), Some(n)) => Some((
                p.max_created_us.min(n.min_created_us),
                p.max_created_us.max(n.min_created_us),
            )),
            _ => None,
        },
    }
}

fn readable((_, f): &(u64, Found)) -> Option<&Readable> {
    match f {
        Found::Readable(r) => Some(r),
        Found::Unreadable { .. } => None,
    }
}

/// A header whose times could be an action's: not reversed, between 2000 and tomorrow.
fn plausible(h: &BlockHeader) -> bool {
    const Y2000_US: i64 = 946_684_800_000_000;
    let tomorrow = crate::timefmt::now_us() + 86_400_000_000;
    h.min_created_us <= h.max_created_us
        && h.min_created_us >= Y2000_US
        && h.max_created_us <= tomorrow
}

fn read_cursors(tx: &redb::WriteTransaction) -> Result<Vec<(String, u64)>> {
    let t = tx.open_table(CURSORS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_string(), v.value()));
    }
    Ok(out)
}

/// Clears the dedupe bits of ids in `lo..=hi` that no readable block holds; returns how many.
fn forget_ids(
    ids: &mut redb::Table<i64, u64>,
    held: &HashMap<i64, u64>,
    lo: i64,
    hi: i64,
) -> Result<u64> {
    let mut changed = Vec::new();
    for row in ids.range(lo.div_euclid(64)..=hi.div_euclid(64))? {
        let (k, v) = row?;
        let (chunk, bits) = (k.value(), v.value());
        // The ids of this chunk inside lo..=hi.
        let base = chunk.saturating_mul(64);
        let mut mask = u64::MAX;
        if lo > base {
            mask &= u64::MAX << (lo - base);
        }
        if hi < base + 63 {
            mask &= u64::MAX >> (63 - (hi - base));
        }
        let keep = bits & (held.get(&chunk).copied().unwrap_or(0) | !mask);
        if keep != bits {
            changed.push((chunk, bits, keep));
        }
    }
    let mut n = 0;
    for (chunk, bits, keep) in changed {
        n += (bits.count_ones() - keep.count_ones()) as u64;
        if keep == 0 {
            ids.remove(chunk)?;
        } else {
            ids.insert(chunk, keep)?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{HarvestPosition, PageCommit};
    use crate::record::{ActionBlock, Record};

    fn rec(id: i64) -> Record {
        Record {
            action_id: id,
            created_us: 1_456_790_400_000_000 + id * 1_000_000,
            mpid: "mp-1".into(),
            session_id: "s".into(),
            huid: None,
            useragent: Some("ua".into()),
            action: ActionBlock {
                kind: Some("HEARTBEAT".into()),
                inpoint: Some(id),
                outpoint: None,
                length: Some(10),
                is_playing: true,
            },
            ip_chain: None,
            is_live: false,
            episode: None,
        }
    }

    fn page(ids: std::ops::RangeInclusive<i64>) -> PageCommit {
        let recs: Vec<Record> = ids.clone().map(rec).collect();
        PageCommit {
            ids: ids.collect(),
            block: Some(codec::encode_block(&recs)),
            position: Some(HarvestPosition::default()),
            ..PageCommit::default()
        }
    }

    /// Replaces the stored block at `seq` with damaged bytes.
    fn damage(j: &Journal, seq: u64) {
        let tx = j.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(BLOCKS).unwrap();
            let mut bytes = t.get(seq).unwrap().unwrap().value().to_vec();
            let n = bytes.len();
            for b in &mut bytes[n / 2..n / 2 + 8] {
                *b ^= 0x5a;
            }
            t.insert(seq, bytes.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn forgetting_clears_only_the_range_and_never_a_held_id() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        j.commit_page(page(1..=200)).unwrap();
        let tx = j.db.begin_write().unwrap();
        let n = {
            let mut ids = tx.open_table(ACTION_IDS).unwrap();
            // 70 and 100..=130 are held by readable blocks.
            let mut held = HashMap::new();
            held.insert(1i64, 1u64 << (70 - 64));
            for id in 100..=130i64 {
                *held.entry(id.div_euclid(64)).or_insert(0) |= 1 << id.rem_euclid(64);
            }
            forget_ids(&mut ids, &held, 60, 150).unwrap()
        };
        tx.commit().unwrap();
        assert_eq!(n, 91 - 1 - 31);
        assert_eq!(j.known_action_ids().unwrap(), 200 - n);
    }

    #[test]
    fn salvage_quarantines_the_bad_block_and_forgets_its_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        j.commit_page(page(1..=100)).unwrap();
        j.commit_page(page(101..=200)).unwrap();
        j.commit_page(page(201..=300)).unwrap();
        assert!(j.scrub(SCRUB_RECORDS).unwrap().is_empty());
        damage(&j, 100);
        assert_eq!(j.scrub(SCRUB_RECORDS).unwrap(), vec![100]);
        let done = j.salvage().unwrap();
        assert_eq!(done.len(), 1);
        let s = &done[0];
        assert_eq!((s.first_seq, s.end_seq), (100, 200));
        assert_eq!(s.forgotten_ids, 100);
        assert_eq!(s.window, Some((rec(101).created_us, rec(200).created_us)));
        assert_eq!(j.known_action_ids().unwrap(), 200);
        assert!(j.scrub(SCRUB_RECORDS).unwrap().is_empty());
        // The block is kept, as it was.
        let tx = j.db.begin_read().unwrap();
        let q = tx.open_table(QUARANTINE).unwrap();
        let kept: QuarantinedBlock =
            codec::decode_value(q.get(100).unwrap().unwrap().value()).unwrap();
        assert_eq!(kept.end_seq, 200);
        assert!(codec::decode_block(&kept.bytes).is_err());
        // Harvesting the ids again brings them back as new records.
        let out = j.commit_page(page(101..=200)).unwrap();
        assert_eq!((out.appended, out.duplicates), (100, 0));
    }

    #[test]
    fn a_large_journal_is_scrubbed_over_several_calls() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        for p in 0..5 {
            j.commit_page(page(p * 100 + 1..=p * 100 + 100)).unwrap();
        }
        damage(&j, 400);
        // 150 records a call: the damage at the end is found on the third call.
        assert!(j.scrub(150).unwrap().is_empty());
        assert!(j.scrub(150).unwrap().is_empty());
        assert_eq!(j.scrub(150).unwrap(), vec![400]);
        // Remembered: the next calls, wherever they scan, still report it.
        assert_eq!(j.scrub(150).unwrap(), vec![400]);
    }
}
