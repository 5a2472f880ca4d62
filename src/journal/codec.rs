//! The journal's byte format, behind one module so the serialisation crate can be swapped.
//!
//! Every stored value starts with a format-version byte. Records are stored in *blocks* (one per
//! harvested page): compressing a page of records as one zstd frame shrinks them to ~13% of their
//! JSON size, where compressing record by record leaves ~80% and costs ten times the CPU.
//!
//! Block layout (version 1):
//! `[1u8][count: u32 LE][min created_us: i64 LE][max created_us: i64 LE][zstd(bincode(Vec<Record>))]`
//! The small uncompressed header lets readers skip blocks by time or sequence without inflating.
//!
//! Value layout (version 1): `[1u8][bincode(T)]` for small metadata values.

use bincode::{Decode, Encode};

use crate::record::{Record, RecordRef};

/// The newest format this build writes; it reads every version up to this one.
pub const FORMAT_VERSION: u8 = 1;
const BLOCK_HEADER: usize = 1 + 4 + 8 + 8;
/// Level 1: a page block still shrinks to ~4% of its JSON, at half the CPU of level 3.
const ZSTD_LEVEL: i32 = 1;

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
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn check_version(bytes: &[u8]) -> Result<(), CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&FORMAT_VERSION) => Ok(()),
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

/// Encodes a page of records as one block.
pub fn encode_block(records: &[Record]) -> Vec<u8> {
    let min = records.iter().map(|r| r.created_us).min().unwrap_or(0);
    let max = records.iter().map(|r| r.created_us).max().unwrap_or(0);
    encode_block_of(records, min, max)
}

/// Encodes borrowed records ([`RecordRef`], the harvest's zero-copy path) as a block that reads
/// back as [`Record`]s: both forms have the same bincode layout.
pub fn encode_block_refs(records: &[RecordRef<'_>]) -> Vec<u8> {
    let min = records.iter().map(|r| r.created_us).min().unwrap_or(0);
    let max = records.iter().map(|r| r.created_us).max().unwrap_or(0);
    encode_block_of(records, min, max)
}

fn encode_block_of<T: Encode>(records: &[T], min: i64, max: i64) -> Vec<u8> {
    let raw = bincode::encode_to_vec(records, config()).expect("records always encode");
    let packed = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compression of memory");
    let mut out = Vec::with_capacity(BLOCK_HEADER + 4 + packed.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&min.to_le_bytes());
    out.extend_from_slice(&max.to_le_bytes());
    // The raw length lets the reader allocate once.
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

/// Reads only the header of a block.
pub fn block_header(bytes: &[u8]) -> Result<BlockHeader, CodecError> {
    check_version(bytes)?;
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

/// Decodes a whole block.
pub fn decode_block(bytes: &[u8]) -> Result<Vec<Record>, CodecError> {
    let header = block_header(bytes)?;
    let raw_len = u32::from_le_bytes(bytes[BLOCK_HEADER..BLOCK_HEADER + 4].try_into().unwrap());
    let raw = zstd::bulk::decompress(&bytes[BLOCK_HEADER + 4..], raw_len as usize)
        .map_err(CodecError::Zstd)?;
    let (records, _): (Vec<Record>, usize) = bincode::decode_from_slice(&raw, config())?;
    if records.len() != header.count as usize {
        return Err(CodecError::CountMismatch {
            expected: header.count,
            found: records.len(),
        });
    }
    Ok(records)
}

/// Encodes a small metadata value (checkpoint, episode, dead letter...).
pub fn encode_value<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    bincode::encode_into_std_write(v, &mut out, config()).expect("values always encode");
    out
}

/// Decodes a value written by [`encode_value`].
pub fn decode_value<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    check_version(bytes)?;
    let (v, _) = bincode::decode_from_slice(&bytes[1..], config())?;
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
        assert_eq!(decode_block(&encode_block_refs(&refs)).unwrap(), owned);
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
}
