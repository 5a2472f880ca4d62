//! The borrowed walk over a block: every record's text borrowed from the block's decompressed
//! bytes, nothing allocated per record or per block (`harvester report` reads millions of
//! records this way, where [`super::decode_block`]'s owned strings were half its time).
//!
//! A [`BlockReader`] keeps one zstd context and one buffer for a whole walk: creating a
//! context per block was 1.5% of a report, and each block's buffer an allocation. Episodes are
//! handed out as they are stored ([`EpisodeRef`]), borrowed too: making an owned episode block
//! (or finding one made before) for each of the hundreds a block names was 5% of a report.
//! The strings, episodes and records are read by [`Payload`], by hand: bincode's generic decoder (a call
//! per field, a UTF-8 check per string) was a fifth of a report.

use super::{
    block_header, check_records, decode_block, packed_frame, BlockHeader, CodecError, CompactRecord,
};

mod payload;
use crate::record::{EpisodeBlock, Record};
use payload::Payload;

/// An [`EpisodeBlock`] as stored (the same fields in the same order), its text borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeRef<'a> {
    pub title: Option<&'a str>,
    /// Milliseconds, as Opencast gives it.
    pub duration: Option<i64>,
    pub start: Option<&'a str>,
    /// `(series title, series id)`.
    pub series: Option<(&'a str, &'a str)>,
    pub kind: Option<&'a str>,
    pub description: Option<&'a str>,
}

impl<'a> EpisodeRef<'a> {
    /// The view of an owned episode block (a version 1 block's).
    pub fn of(e: &'a EpisodeBlock) -> EpisodeRef<'a> {
        EpisodeRef {
            title: e.title.as_deref(),
            duration: e.duration,
            start: e.start.as_deref(),
            series: e.series.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            kind: e.kind.as_deref(),
            description: e.description.as_deref(),
        }
    }

    pub fn to_block(&self) -> EpisodeBlock {
        let s = |v: Option<&str>| v.map(str::to_string);
        EpisodeBlock {
            title: s(self.title),
            duration: self.duration,
            start: s(self.start),
            series: self.series.map(|(a, b)| (a.to_string(), b.to_string())),
            kind: s(self.kind),
            description: s(self.description),
        }
    }
}

/// A journaled record as its block holds it, borrowed: the fields of a [`Record`].
#[derive(Debug, Clone, Copy)]
pub struct BlockRecord<'a> {
    pub action_id: i64,
    pub created_us: i64,
    pub mpid: &'a str,
    pub session_id: &'a str,
    pub huid: Option<&'a str>,
    pub useragent: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub inpoint: Option<i64>,
    pub outpoint: Option<i64>,
    pub length: Option<i64>,
    pub is_playing: bool,
    pub ip_chain: Option<&'a str>,
    pub is_live: bool,
    pub episode: Option<EpisodeRef<'a>>,
}

impl<'a> BlockRecord<'a> {
    /// The view of an owned record (a version 1 block's).
    pub fn of(r: &'a Record) -> BlockRecord<'a> {
        BlockRecord {
            action_id: r.action_id,
            created_us: r.created_us,
            mpid: &r.mpid,
            session_id: &r.session_id,
            huid: r.huid.as_deref(),
            useragent: r.useragent.as_deref(),
            kind: r.action.kind.as_deref(),
            inpoint: r.action.inpoint,
            outpoint: r.action.outpoint,
            length: r.action.length,
            is_playing: r.action.is_playing,
            ip_chain: r.ip_chain.as_deref(),
            is_live: r.is_live,
            episode: r.episode.as_deref().map(EpisodeRef::of),
        }
    }

    /// The owned record (tests compare the walk with [`super::decode_block`]).
    pub fn to_record(&self) -> Record {
        let s = |v: Option<&str>| v.map(str::to_string);
        Record {
            action_id: self.action_id,
            created_us: self.created_us,
            mpid: self.mpid.to_string(),
            session_id: self.session_id.to_string(),
            huid: s(self.huid),
            useragent: s(self.useragent),
            action: crate::record::ActionBlock {
                kind: s(self.kind),
                inpoint: self.inpoint,
                outpoint: self.outpoint,
                length: self.length,
                is_playing: self.is_playing,
            },
            ip_chain: s(self.ip_chain),
            is_live: self.is_live,
            episode: self.episode.map(|e| std::sync::Arc::new(e.to_block())),
        }
    }
}

/// What a walk over many blocks reuses: a zstd context and the buffer blocks inflate into
/// (as large as the largest block read, which [`super::DECODE_LIMIT`] bounds).
#[derive(Default)]
pub struct BlockReader {
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    raw: Vec<u8>,
}

impl BlockReader {
    /// The block's header and its records' bytes, decompressed into the reused buffer, with
    /// the sizes (and zstd's checksum, when the block has one) checked.
    fn inflate(&mut self, bytes: &[u8]) -> Result<(BlockHeader, &[u8]), CodecError> {
        let (header, packed) = packed_frame(bytes)?;
        let dctx = match &mut self.dctx {
            Some(d) => d,
            None => self
                .dctx
                .insert(zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?),
        };
        self.raw.clear();
        self.raw.reserve(header.raw_len as usize);
        dctx.decompress_to_buffer(packed, &mut self.raw)
            .map_err(CodecError::Zstd)?;
        if self.raw.len() != header.raw_len as usize {
            return Err(CodecError::HeaderMismatch("raw length"));
        }
        Ok((header, &self.raw))
    }
}

/// Decodes a block and hands each record to `visit`, borrowed. The same checks as
/// [`super::decode_block`], all made before the first record is visited: a damaged block
/// visits nothing.
pub fn visit_block(
    bytes: &[u8],
    reader: &mut BlockReader,
    mut visit: impl FnMut(usize, &BlockRecord<'_>),
) -> Result<usize, CodecError> {
    block_header(bytes)?;
    if bytes[0] == 1 {
        let records = decode_block(bytes)?;
        for (i, r) in records.iter().enumerate() {
            visit(i, &BlockRecord::of(r));
        }
        return Ok(records.len());
    }
    let (header, raw) = reader.inflate(bytes)?;
    // The payload's layout: the block's strings, its episodes, its records (`BlockV2`).
    let mut payload = Payload::new(raw);
    let strings = payload.strings()?;
    let episodes = payload.episodes()?;
    let records = payload.records()?;
    check_records(&header, records.len(), records.iter().map(|c| c.created_us))?;
    let bad = |what: &'static str, index: u32| CodecError::BadReference { what, index };
    // Every reference checked first, so that a damaged block visits nothing, and so that the
    // records below index without a check that could fail.
    let (ns, ne) = (strings.len() as u32, episodes.len() as u32);
    for c in &records {
        for i in [c.mpid, c.session_id] {
            if i == 0 || i > ns {
                return Err(bad("string", i));
            }
        }
        for i in [c.huid, c.useragent, c.kind, c.ip_chain] {
            if i > ns {
                return Err(bad("string", i));
            }
        }
        if c.episode > ne {
            return Err(bad("episode", c.episode));
        }
    }
    let opt = |i: u32| i.checked_sub(1).map(|i| strings[i as usize]);
    for (i, c) in records.iter().enumerate() {
        visit(
            i,
            &BlockRecord {
                action_id: c.action_id,
                created_us: c.created_us,
                mpid: strings[c.mpid as usize - 1],
                session_id: strings[c.session_id as usize - 1],
                huid: opt(c.huid),
                useragent: opt(c.useragent),
                kind: opt(c.kind),
                inpoint: c.inpoint,
                outpoint: c.outpoint,
                length: c.length,
                is_playing: c.is_playing,
                ip_chain: opt(c.ip_chain),
                is_live: c.is_live,
                episode: c.episode.checked_sub(1).map(|e| episodes[e as usize]),
            },
        );
    }
    Ok(records.len())
}
