//! The journal's byte format, behind one module so the serialisation crate can be swapped.
//!
//! Every stored value starts with a format-version byte. Records are stored in *blocks* (one per
//! harvested page): compressing a page of records as one zstd frame shrinks them to a few percent
//! of their JSON size, where compressing record by record leaves ~80% and costs ten times the CPU.
//!
//! Block layout: `[version u8][count: u32 LE][min created_us: i64 LE][max created_us: i64 LE]
//! [raw length: u32 LE][zstd(bincode(payload))]`. The small uncompressed header lets readers skip
//! blocks by time or sequence without inflating.
//!
//! - Version 2 (written now): the payload is a [`BlockV2`]: the block's distinct strings once
//!   (media package ids, sessions, user agents, address chains...), its distinct episode blocks
//!   once, and each record as numbers referring to them. A page repeats the same few episodes and
//!   sessions hundreds of times; storing them once halves the bytes to encode and compress, which
//!   is most of the harvest's encoding time.
//! - Version 1 (read, never written again): the payload is `bincode(Vec<Record>)`. Journals
//!   written by earlier builds keep their version 1 blocks and read exactly as before.
//!
//! Value layout (version 1): `[1u8][bincode(T)]` for small metadata values.
//!
//! Reading trusts nothing: a stored value may be damaged in any way (a flipped bit on disk, a
//! truncated copy). Decoding returns an error for such bytes, never panics and never allocates
//! more than the decoder's limit. Blocks are written with zstd's content checksum (since this
//! build; older blocks have none and read as before), so damage to the compressed records is
//! detected rather than read back as different records, and a block's header must agree with
//! the records it holds.

use std::collections::HashMap;
use std::sync::Arc;

use bincode::{Decode, Encode};

use crate::record::{ActionBlock, EpisodeBlock, Record, RecordRef};

mod visit;
pub use visit::{visit_block, BlockReader, BlockRecord, EpisodeRef};

/// The journal format this build writes (the newest block version); it reads every version up
/// to this one.
pub const FORMAT_VERSION: u8 = 2;
/// The version of small metadata values ([`encode_value`]); unchanged since the first format.
const VALUE_VERSION: u8 = 1;
const BLOCK_HEADER: usize = 1 + 4 + 8 + 8;
/// Level 1: a page block still shrinks to ~3% of its JSON, at half the CPU of level 3.
const ZSTD_LEVEL: i32 = 1;
/// The most a decoder may claim or read for one value (bincode allocates a container's claimed
/// length up front, so a damaged length must not be trusted past this). A page of records is
/// far below it.
const DECODE_LIMIT: usize = 1 << 30;

/// A stored value could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error(
        "written by a newer harvester (format version {0}, this build reads up to {FORMAT_VERSION}); \
         upgrade harvester to read this journal"
    )]
    NewerVersion(u8),
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("truncated block header")]
    ShortHeader,
    #[error("decompression failed: {0}")]
    Zstd(std::io::Error),
    #[error("decoding failed: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("block says {expected} records but holds {found}")]
    CountMismatch { expected: u32, found: usize },
    #[error("a record refers to {what} #{index}, which the block does not hold")]
    BadReference { what: &'static str, index: u32 },
    #[error("the block's header does not match its records ({0})")]
    HeaderMismatch(&'static str),
    #[error("decoding failed: {0}")]
    Malformed(&'static str),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decoding: the same layout, with a bound on what damaged bytes can make it allocate.
fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    config().with_limit::<DECODE_LIMIT>()
}

fn check_value_version(bytes: &[u8]) -> Result<(), CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&VALUE_VERSION) => Ok(()),
        Some(&v) if v > FORMAT_VERSION => Err(CodecError::NewerVersion(v)),
        Some(&v) => Err(CodecError::UnknownVersion(v)),
    }
}

fn check_block_version(bytes: &[u8]) -> Result<u8, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&v @ (1 | 2)) => Ok(v),
        Some(&v) if v > FORMAT_VERSION => Err(CodecError::NewerVersion(v)),
        Some(&v) => Err(CodecError::UnknownVersion(v)),
    }
}

/// What a block's uncompressed header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub count: u32,
    pub min_created_us: i64,
    pub max_created_us: i64,
    /// Size of the records before compression (bincode).
    pub raw_len: u32,
}

/// The payload of a version 2 block, as written.
#[derive(Encode)]
struct BlockV2Ref<'a> {
    strings: Vec<&'a str>,
    episodes: Vec<&'a EpisodeBlock>,
    records: Vec<CompactRecord>,
}

/// The payload of a version 2 block, as read.
#[derive(Decode)]
struct BlockV2 {
    strings: Vec<String>,
    episodes: Vec<EpisodeBlock>,
    records: Vec<CompactRecord>,
}

/// A record of a version 2 block: string fields are 1-based indices into the block's strings
/// (0 = absent), `episode` a 1-based index into its episodes (0 = unknown episode).
#[derive(Encode, Decode)]
struct CompactRecord {
    action_id: i64,
    created_us: i64,
    mpid: u32,
    session_id: u32,
    huid: u32,
    useragent: u32,
    kind: u32,
    ip_chain: u32,
    inpoint: Option<i64>,
    outpoint: Option<i64>,
    length: Option<i64>,
    is_playing: bool,
    is_live: bool,
    episode: u32,
}

/// Encodes a page of records as one block.
pub fn encode_block(records: &[Record]) -> Vec<u8> {
    let refs: Vec<RecordRef> = records.iter().map(RecordRef::from).collect();
    encode_block_refs(&refs)
}

/// Encodes borrowed records ([`RecordRef`], the harvest's zero-copy path) as a block that reads
/// back as [`Record`]s.
pub fn encode_block_refs(records: &[RecordRef<'_>]) -> Vec<u8> {
    let mut b = BlockBuilder::with_capacity(records.len());
    for r in records {
        b.push(r);
    }
    b.finish(|_| None)
}

type Index<'r> = HashMap<&'r str, u32, foldhash::fast::FixedState>;

/// Builds a version 2 block record by record: the strings are interned and the records made
/// compact as they are pushed, while the page's text is still in the CPU's cache; the episodes
/// may be given later, to [`BlockBuilder::finish`], once they are looked up.
pub struct BlockBuilder<'a> {
    index: Index<'a>,
    strings: Vec<&'a str>,
    records: Vec<CompactRecord>,
    /// The episode each record was pushed with (`None`: ask `finish`'s resolver).
    given: Vec<Option<Arc<EpisodeBlock>>>,
    /// The distinct media package ids, in order of first appearance, and their string indices.
    mpids: Vec<&'a str>,
    mpid_indices: std::collections::HashSet<u32, foldhash::fast::FixedState>,
    min: i64,
    max: i64,
}

impl<'a> BlockBuilder<'a> {
    pub fn with_capacity(n: usize) -> BlockBuilder<'a> {
        BlockBuilder {
            index: HashMap::with_capacity_and_hasher(n, Default::default()),
            strings: Vec::with_capacity(n),
            records: Vec::with_capacity(n),
            given: Vec::with_capacity(n),
            mpids: Vec::new(),
            mpid_indices: Default::default(),
            min: i64::MAX,
            max: i64::MIN,
        }
    }

    /// The distinct media package ids pushed so far (the episodes to look up).
    pub fn media_packages(&self) -> &[&'a str] {
        &self.mpids
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn intern(&mut self, s: Option<&'a str>) -> u32 {
        let Some(s) = s else { return 0 };
        let next = self.strings.len() as u32 + 1;
        let strings = &mut self.strings;
        *self.index.entry(s).or_insert_with(|| {
            strings.push(s);
            next
        })
    }

    pub fn push(&mut self, r: &'a RecordRef<'a>) {
        self.min = self.min.min(r.created_us);
        self.max = self.max.max(r.created_us);
        let mpid = self.intern(Some(&r.mpid));
        // Consecutive records mostly share a media package: compare with the last one first.
        if self.records.last().is_none_or(|c| c.mpid != mpid) && self.mpid_indices.insert(mpid) {
            self.mpids.push(&r.mpid);
        }
        let c = CompactRecord {
            action_id: r.action_id,
            created_us: r.created_us,
            mpid,
            session_id: self.intern(Some(&r.session_id)),
            huid: self.intern(r.huid.as_deref()),
            useragent: self.intern(r.useragent.as_deref()),
            kind: self.intern(r.action.kind.as_deref()),
            ip_chain: self.intern(r.ip_chain.as_deref()),
            inpoint: r.action.inpoint,
            outpoint: r.action.outpoint,
            length: r.action.length,
            is_playing: r.action.is_playing,
            is_live: r.is_live,
            episode: 0,
        };
        self.records.push(c);
        self.given.push(r.episode.clone());
    }

    /// The block. A record pushed without an episode gets `resolve(its mpid)`, asked once per
    /// media package.
    pub fn finish(mut self, mut resolve: impl FnMut(&str) -> Option<Arc<EpisodeBlock>>) -> Vec<u8> {
        // By media package (its string index): the resolver's answer.
        let mut resolved: HashMap<u32, Option<Arc<EpisodeBlock>>, foldhash::fast::FixedState> =
            HashMap::default();
        let mut held: Vec<Arc<EpisodeBlock>> = Vec::new();
        let mut episode_ids: HashMap<*const EpisodeBlock, u32, foldhash::fast::FixedState> =
            HashMap::default();
        // Consecutive records mostly share an episode: remember the last one.
        let mut last_episode: Option<(*const EpisodeBlock, u32)> = None;
        for (c, given) in self.records.iter_mut().zip(self.given.drain(..)) {
            let e = match given {
                Some(e) => Some(e),
                None => resolved
                    .entry(c.mpid)
                    .or_insert_with(|| resolve(self.strings[c.mpid as usize - 1]))
                    .clone(),
            };
            c.episode = match e {
                None => 0,
                Some(e) => {
                    let p = Arc::as_ptr(&e);
                    match last_episode {
                        Some((q, i)) if q == p => i,
                        _ => {
                            let i = *episode_ids.entry(p).or_insert_with(|| {
                                held.push(e.clone());
                                held.len() as u32
                            });
                            last_episode = Some((p, i));
                            i
                        }
                    }
                }
            };
        }
        let count = self.records.len();
        let (min, max) = if count == 0 {
            (0, 0)
        } else {
            (self.min, self.max)
        };
        let payload = BlockV2Ref {
            strings: self.strings,
            episodes: held.iter().map(|e| &**e).collect(),
            records: self.records,
        };
        let raw = bincode::encode_to_vec(&payload, config()).expect("records always encode");
        frame(FORMAT_VERSION, count, min, max, &raw)
    }
}

/// A block: the uncompressed header, then the zstd frame of its payload.
fn frame(version: u8, count: usize, min: i64, max: i64, raw: &[u8]) -> Vec<u8> {
    thread_local! {
        // One compression context per thread, reused: creating one costs more than
        // compressing a small page.
        static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
            std::cell::RefCell::new({
                let mut c =
                    zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd compression context");
                // 4 bytes a block: damage to the records is detected, not read back as others.
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .expect("zstd accepts its checksum flag");
                c
            });
    }
    let head = BLOCK_HEADER + 4;
    let mut out = Vec::with_capacity(head + zstd::zstd_safe::compress_bound(raw.len()));
    out.push(version);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&min.to_le_bytes());
    out.extend_from_slice(&max.to_le_bytes());
    // The raw length lets the reader allocate once.
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.resize(out.capacity(), 0);
    let packed = COMPRESSOR
        .with_borrow_mut(|c| c.compress_to_buffer(raw, &mut out[head..]))
        .expect("zstd compression of memory into a buffer of its bound");
    out.truncate(head + packed);
    out
}

/// Encodes records in the version 1 layout, as builds before version 2 wrote them: kept for the
/// tests that prove old journals still read.
#[cfg(test)]
pub(crate) fn encode_block_v1(records: &[Record]) -> Vec<u8> {
    let min = records.iter().map(|r| r.created_us).min().unwrap_or(0);
    let max = records.iter().map(|r| r.created_us).max().unwrap_or(0);
    let raw = bincode::encode_to_vec(records, config()).expect("records always encode");
    frame(1, records.len(), min, max, &raw)
}

/// Reads only the header of a block.
pub fn block_header(bytes: &[u8]) -> Result<BlockHeader, CodecError> {
    check_block_version(bytes)?;
    if bytes.len() < BLOCK_HEADER + 4 {
        return Err(CodecError::ShortHeader);
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let i64_at = |i: usize| i64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    Ok(BlockHeader {
        count: u32_at(1),
        min_created_us: i64_at(5),
        max_created_us: i64_at(13),
        raw_len: u32_at(BLOCK_HEADER),
    })
}

/// Decodes a whole block, of any version this build reads.
pub fn decode_block(bytes: &[u8]) -> Result<Vec<Record>, CodecError> {
    let (header, raw) = inflate(bytes)?;
    let records = match bytes[0] {
        1 => bincode::decode_from_slice::<Vec<Record>, _>(&raw, decode_config())?.0,
        _ => from_v2(bincode::decode_from_slice::<BlockV2, _>(&raw, decode_config())?.0)?,
    };
    check_records(&header, records.len(), records.iter().map(|r| r.created_us))?;
    Ok(records)
}

/// The block's header and its records' bytes, decompressed, with the sizes checked.
fn inflate(bytes: &[u8]) -> Result<(BlockHeader, Vec<u8>), CodecError> {
    let (header, packed) = packed_frame(bytes)?;
    let raw = zstd::bulk::decompress(packed, header.raw_len as usize).map_err(CodecError::Zstd)?;
    if raw.len() != header.raw_len as usize {
        return Err(CodecError::HeaderMismatch("raw length"));
    }
    Ok((header, raw))
}

/// The block's header and its zstd frame, whose stated size must be the header's (checked
/// before anything is allocated for it).
fn packed_frame(bytes: &[u8]) -> Result<(BlockHeader, &[u8]), CodecError> {
    let header = block_header(bytes)?;
    let packed = &bytes[BLOCK_HEADER + 4..];
    // The frame states its size: a damaged length in our header must not size the buffer.
    match zstd::zstd_safe::get_frame_content_size(packed) {
        Ok(Some(n)) if n == header.raw_len as u64 => {}
        _ => return Err(CodecError::HeaderMismatch("raw length")),
    }
    if header.raw_len as usize > DECODE_LIMIT {
        return Err(CodecError::HeaderMismatch("raw length"));
    }
    Ok((header, packed))
}

/// The header agrees with the records: their number and their time range.
fn check_records(
    header: &BlockHeader,
    count: usize,
    created: impl Iterator<Item = i64>,
) -> Result<(), CodecError> {
    if count != header.count as usize {
        return Err(CodecError::CountMismatch {
            expected: header.count,
            found: count,
        });
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for c in created {
        min = min.min(c);
        max = max.max(c);
    }
    if count > 0 && (min, max) != (header.min_created_us, header.max_created_us) {
        return Err(CodecError::HeaderMismatch("time range"));
    }
    Ok(())
}

fn from_v2(block: BlockV2) -> Result<Vec<Record>, CodecError> {
    let BlockV2 {
        strings,
        episodes,
        records,
    } = block;
    let episodes: Vec<Arc<EpisodeBlock>> = episodes.into_iter().map(Arc::new).collect();
    let opt = |i: u32, what: &'static str| -> Result<Option<String>, CodecError> {
        match i {
            0 => Ok(None),
            _ => strings
                .get(i as usize - 1)
                .cloned()
                .map(Some)
                .ok_or(CodecError::BadReference { what, index: i }),
        }
    };
    let req = |i: u32, what: &'static str| -> Result<String, CodecError> {
        opt(i, what)?.ok_or(CodecError::BadReference { what, index: i })
    };
    records
        .into_iter()
        .map(|c| {
            Ok(Record {
                action_id: c.action_id,
                created_us: c.created_us,
                mpid: req(c.mpid, "string")?,
                session_id: req(c.session_id, "string")?,
                huid: opt(c.huid, "string")?,
                useragent: opt(c.useragent, "string")?,
                action: ActionBlock {
                    kind: opt(c.kind, "string")?,
                    inpoint: c.inpoint,
                    outpoint: c.outpoint,
                    length: c.length,
                    is_playing: c.is_playing,
                },
                ip_chain: opt(c.ip_chain, "string")?,
                is_live: c.is_live,
                episode: match c.episode {
                    0 => None,
                    i => Some(episodes.get(i as usize - 1).cloned().ok_or(
                        CodecError::BadReference {
                            what: "episode",
                            index: i,
                        },
                    )?),
                },
            })
        })
        .collect()
}

/// Encodes a small metadata value (checkpoint, episode, dead letter...).
pub fn encode_value<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    bincode::encode_into_std_write(v, &mut out, config()).expect("values always encode");
    out
}

/// Decodes a value written by [`encode_value`].
pub fn decode_value<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    check_value_version(bytes)?;
    let (v, _) = bincode::decode_from_slice(&bytes[1..], decode_config())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ActionBlock, Record};

    fn rec(id: i64) -> Record {
        Record {
            action_id: id,
            created_us: 1_456_000_000_000_000 + id,
            mpid: "mp".into(),
            session_id: "s".into(),
            huid: None,
            useragent: Some("ua".into()),
            action: ActionBlock {
                kind: Some("HEARTBEAT".into()),
                inpoint: Some(1),
                outpoint: None,
                length: Some(10),
                is_playing: true,
            },
            ip_chain: Some("10.0.0.1".into()),
            is_live: false,
            episode: None,
        }
    }

    #[test]
    fn block_round_trip_and_header() {
        let recs: Vec<Record> = (1..=50).map(rec).collect();
        let bytes = encode_block(&recs);
        let h = block_header(&bytes).unwrap();
        assert_eq!(h.count, 50);
        assert_eq!(h.min_created_us, recs[0].created_us);
        assert_eq!(decode_block(&bytes).unwrap(), recs);
    }

    #[test]
    fn episodes_given_to_finish_are_the_ones_pushed_records_would_have_carried() {
        let ep = |t: &str| {
            Arc::new(EpisodeBlock {
                title: Some(t.into()),
                duration: Some(1),
                start: None,
                series: None,
                kind: None,
                description: None,
            })
        };
        let (a, b) = (ep("A"), ep("B"));
        let mut owned: Vec<Record> = (1..=30).map(rec).collect();
        for (i, r) in owned.iter_mut().enumerate() {
            // Episodes alternate in runs, and one media package is unknown.
            r.mpid = ["mp-a", "mp-b", "mp-x"][i / 4 % 3].into();
            r.episode = match i / 4 % 3 {
                0 => Some(a.clone()),
                1 => Some(b.clone()),
                _ => None,
            };
        }
        let with_episodes: Vec<RecordRef> = owned.iter().map(RecordRef::from).collect();
        let without: Vec<RecordRef> = owned
            .iter()
            .map(|r| RecordRef {
                episode: None,
                ..RecordRef::from(r)
            })
            .collect();
        let mut builder = BlockBuilder::with_capacity(without.len());
        for r in &without {
            builder.push(r);
        }
        let mut asked = Vec::new();
        let bytes = builder.finish(|mpid| {
            asked.push(mpid.to_string());
            match mpid {
                "mp-a" => Some(a.clone()),
                "mp-b" => Some(b.clone()),
                _ => None,
            }
        });
        assert_eq!(asked, ["mp-a", "mp-b", "mp-x"], "once per media package");
        assert_eq!(bytes, encode_block_refs(&with_episodes));
        assert_eq!(decode_block(&bytes).unwrap(), owned);
    }

    #[test]
    fn borrowed_records_encode_exactly_like_owned_ones() {
        let mut owned: Vec<Record> = (1..=20).map(rec).collect();
        owned[3].huid = Some("u\"1".into());
        owned[5].episode = Some(std::sync::Arc::new(crate::record::EpisodeBlock {
            title: Some("T".into()),
            duration: Some(5),
            start: None,
            series: Some(("c".into(), "2015".into())),
            kind: None,
            description: Some("d".into()),
        }));
        let refs: Vec<RecordRef> = owned.iter().map(RecordRef::from).collect();
        assert_eq!(encode_block_refs(&refs), encode_block(&owned));
        assert_eq!(decode_block(&encode_block(&owned)).unwrap(), owned);
        assert_eq!(decode_block(&encode_block_refs(&refs)).unwrap(), owned);
    }

    #[test]
    fn version_1_blocks_still_read() {
        let mut recs: Vec<Record> = (1..=30).map(rec).collect();
        recs[2].episode = Some(Arc::new(EpisodeBlock {
            title: Some("T".into()),
            duration: None,
            start: None,
            series: None,
            kind: None,
            description: None,
        }));
        let old = encode_block_v1(&recs);
        assert_eq!(old[0], 1);
        assert_eq!(block_header(&old).unwrap().count, 30);
        assert_eq!(decode_block(&old).unwrap(), recs);
        // The same records written now: version 2, same records back, smaller.
        let new = encode_block(&recs);
        assert_eq!(new[0], 2);
        assert_eq!(decode_block(&new).unwrap(), recs);
        assert!(block_header(&new).unwrap().raw_len < block_header(&old).unwrap().raw_len);
    }

    #[test]
    fn version_2_stores_shared_values_once() {
        let ep = Arc::new(EpisodeBlock {
            title: Some("Lecture".into()),
            duration: Some(1),
            start: Some("2016-02-28T21:00:00Z".into()),
            series: Some(("Course".into(), "2015".into())),
            kind: Some("L1".into()),
            description: Some("about it".into()),
        });
        let mut recs: Vec<Record> = (1..=500).map(rec).collect();
        for (i, r) in recs.iter_mut().enumerate() {
            r.episode = (i % 3 != 0).then(|| ep.clone());
            r.session_id = format!("session-{}", i % 7);
        }
        let bytes = encode_block(&recs);
        let back = decode_block(&bytes).unwrap();
        assert_eq!(back, recs);
        // Read back, every record of the episode points at one shared block.
        let shared: Vec<_> = back.iter().filter_map(|r| r.episode.clone()).collect();
        assert!(shared.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
        // 500 records of 7 sessions and one episode: the payload is far smaller than the strings
        // it stands for.
        assert!(block_header(&bytes).unwrap().raw_len < 500 * 40);
    }

    #[test]
    fn a_reference_outside_the_block_is_an_error() {
        let payload = BlockV2Ref {
            strings: vec!["mp"],
            episodes: vec![],
            records: vec![CompactRecord {
                action_id: 1,
                created_us: 0,
                mpid: 1,
                session_id: 9,
                huid: 0,
                useragent: 0,
                kind: 0,
                ip_chain: 0,
                inpoint: None,
                outpoint: None,
                length: None,
                is_playing: false,
                is_live: false,
                episode: 0,
            }],
        };
        let raw = bincode::encode_to_vec(&payload, config()).unwrap();
        let err = decode_block(&frame(2, 1, 0, 0, &raw)).unwrap_err();
        assert!(
            matches!(err, CodecError::BadReference { index: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn newer_version_is_refused_not_misread() {
        let mut bytes = encode_block(&[rec(1)]);
        bytes[0] = FORMAT_VERSION + 1;
        let err = decode_block(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::NewerVersion(_)), "{err}");
        assert!(err.to_string().contains("upgrade harvester"));
    }

    #[test]
    fn corrupted_payload_is_an_error() {
        let mut bytes = encode_block(&[rec(1), rec(2)]);
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        assert!(decode_block(&bytes).is_err());
    }

    mod properties {
        use super::super::*;
        use crate::record::{ActionBlock, EpisodeBlock, Record};
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // Any unicode, empty strings and the strings records repeat (interning).
            prop_oneof![
                any::<String>(),
                Just(String::new()),
                Just("mp-1".to_string())
            ]
        }

        fn number() -> impl Strategy<Value = i64> {
            prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)]
        }

        fn episode() -> impl Strategy<Value = Option<Arc<EpisodeBlock>>> {
            proptest::option::of(
                (
                    proptest::option::of(text()),
                    proptest::option::of(number()),
                    proptest::option::of(text()),
                    proptest::option::of((text(), text())),
                    proptest::option::of(text()),
                    proptest::option::of(text()),
                )
                    .prop_map(
                        |(title, duration, start, series, kind, description)| {
                            Arc::new(EpisodeBlock {
                                title,
                                duration,
                                start,
                                series,
                                kind,
                                description,
                            })
                        },
                    ),
            )
        }

        fn record() -> impl Strategy<Value = Record> {
            (
                (number(), number(), text(), text()),
                (proptest::option::of(text()), proptest::option::of(text())),
                (
                    proptest::option::of(text()),
                    proptest::option::of(number()),
                    proptest::option::of(number()),
                    proptest::option::of(number()),
                    any::<bool>(),
                ),
                (proptest::option::of(text()), any::<bool>(), episode()),
            )
                .prop_map(
                    |(
                        (action_id, created_us, mpid, session_id),
                        (huid, useragent),
                        (kind, inpoint, outpoint, length, is_playing),
                        (ip_chain, is_live, episode),
                    )| Record {
                        action_id,
                        created_us,
                        mpid,
                        session_id,
                        huid,
                        useragent,
                        action: ActionBlock {
                            kind,
                            inpoint,
                            outpoint,
                            length,
                            is_playing,
                        },
                        ip_chain,
                        is_live,
                        episode,
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn blocks_read_back_exactly(records in proptest::collection::vec(record(), 0..40)) {
                let bytes = encode_block(&records);
                prop_assert_eq!(decode_block(&bytes).unwrap(), records.clone());
                prop_assert_eq!(decode_block(&encode_block_v1(&records)).unwrap(), records);
            }

            /// The borrowed walk of `harvester report` sees exactly the records
            /// `decode_block` gives, in both block versions, and a damaged block visits nothing.
            #[test]
            fn visited_records_are_the_decoded_ones(
                records in proptest::collection::vec(record(), 0..40),
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
            ) {
                for bytes in [encode_block(&records), encode_block_v1(&records)] {
                    let mut seen = Vec::new();
                    let mut reader = BlockReader::default();
                    let n = visit_block(&bytes, &mut reader, |i, r| seen.push((i, r.to_record()))).unwrap();
                    prop_assert_eq!(n, records.len());
                    let want: Vec<(usize, Record)> = records.iter().cloned().enumerate().collect();
                    prop_assert_eq!(seen, want);
                    let mut flipped = bytes.clone();
                    let i = at.index(flipped.len());
                    flipped[i] ^= flip;
                    let mut after = Vec::new();
                    match visit_block(&flipped, &mut reader, |_, r| after.push(r.to_record())) {
                        Ok(_) => prop_assert_eq!(after, records.clone()),
                        Err(_) => prop_assert!(after.is_empty()),
                    }
                }
            }

            /// The borrowed walk reads a block's payload by hand: on a payload damaged
            /// before compression (so zstd's checksum holds), it must fail exactly where
            /// bincode fails and read the same records where bincode reads.
            #[test]
            fn hand_read_payloads_agree_with_bincode(
                records in proptest::collection::vec(record(), 1..20),
                at in any::<prop::sample::Index>(),
                to in any::<u8>(),
            ) {
                let refs: Vec<RecordRef> = records.iter().map(RecordRef::from).collect();
                let mut b = BlockBuilder::with_capacity(refs.len());
                for r in &refs {
                    b.push(r);
                }
                let good = b.finish(|_| None);
                let (h, raw) = inflate(&good).unwrap();
                let mut raw = raw.clone();
                let i = at.index(raw.len());
                raw[i] = to;
                let bytes = frame(2, h.count as usize, h.min_created_us, h.max_created_us, &raw);
                let mut seen = Vec::new();
                let visited = visit_block(&bytes, &mut BlockReader::default(), |_, r| seen.push(r.to_record()));
                match decode_block(&bytes) {
                    Ok(want) => {
                        prop_assert_eq!(visited.ok(), Some(want.len()));
                        prop_assert_eq!(seen, want);
                    }
                    Err(_) => {
                        prop_assert!(visited.is_err());
                        prop_assert!(seen.is_empty());
                    }
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = decode_block(&bytes);
                let _ = block_header(&bytes);
                let _ = decode_value::<crate::journal::DeadLetter>(&bytes);
                let _ = decode_value::<Vec<u64>>(&bytes);
            }

            #[test]
            fn arbitrary_bytes_behind_a_valid_header_never_panic(
                version in 1u8..=2,
                count in any::<u32>(),
                raw_len in any::<u32>(),
                payload in proptest::collection::vec(any::<u8>(), 0..400),
            ) {
                let mut bytes = vec![version];
                bytes.extend_from_slice(&count.to_le_bytes());
                bytes.extend_from_slice(&[0; 16]);
                bytes.extend_from_slice(&raw_len.to_le_bytes());
                bytes.extend_from_slice(&payload);
                prop_assert!(decode_block(&bytes).is_err());
                let visited = visit_block(&bytes, &mut BlockReader::default(), |_, _| ());
                prop_assert!(visited.is_err());
            }

            #[test]
            fn damaged_blocks_are_errors_not_panics_nor_other_records(
                records in proptest::collection::vec(record(), 1..20),
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                cut in any::<prop::sample::Index>(),
            ) {
                let bytes = encode_block(&records);
                // A bit-flipped block never reads back as different records.
                let mut flipped = bytes.clone();
                let i = at.index(flipped.len());
                flipped[i] ^= flip;
                if let Ok(back) = decode_block(&flipped) {
                    prop_assert_eq!(back, records.clone());
                }
                // A truncated block is an error.
                let n = cut.index(bytes.len());
                prop_assert!(decode_block(&bytes[..n]).is_err());
            }
        }
    }
}
