//! The values the journal stores besides records, and what a page commit carries.

use bincode::{Decode, Encode};

use crate::episode_doc::EpisodeDoc;
use crate::episode_meta::EpisodeMeta;

/// The last harvested action's time, and whether S3 has been told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Checkpoint {
    /// `created` of the newest harvested action, UTC microseconds.
    pub last_action_us: i64,
    pub synced_to_s3: bool,
    pub updated_at_us: i64,
}

/// Where an unfinished harvest window stands (for `journal stats` and crash forensics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct HarvestPosition {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub next_offset: u64,
    pub pages: u64,
    pub max_created_us: Option<i64>,
    pub complete: bool,
    pub updated_at_us: i64,
}

/// An input that could not become a record: kept with its raw text and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeadLetter {
    pub source: String,
    pub raw: String,
    pub reason: String,
    pub at_us: i64,
}

/// Episode metadata as fetched at a time; `meta: None` means Opencast did not know the id.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EpisodeEntry {
    pub fetched_at_us: i64,
    pub meta: Option<EpisodeMeta>,
}

/// The document `load-episodes` built for an episode, as journaled before it is indexed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EpisodeDocEntry {
    pub built_at_us: i64,
    pub doc: EpisodeDoc,
}

/// Everything one harvested page changes, committed atomically by [`Journal::commit_page`].
#[derive(Debug, Default)]
pub struct PageCommit {
    /// The action ids of the page's records, in block order.
    pub ids: Vec<i64>,
    /// Those records encoded as one block (done off the commit path). When some turn out to be
    /// duplicates, the block is decoded and the fresh ones encoded again (rare).
    pub block: Option<Vec<u8>>,
    /// The page's first records, encoded apart from `block` (how many, and the block): a stock
    /// `day` page repeats the end of the page before, and those rows, read twice, are dropped
    /// (or the few fresh ones encoded again) without decoding the page's main block. `ids` and
    /// `created` list the head's records first.
    pub head: Option<(usize, Vec<u8>)>,
    /// Dead letters with their dedupe key (the action id when known, else a hash of the text).
    pub dead_letters: Vec<(String, DeadLetter)>,
    /// Newly fetched episodes by media package id (`meta: None` records an unknown id).
    pub episodes: Vec<(String, EpisodeEntry)>,
    pub position: Option<HarvestPosition>,
    /// New checkpoint (the newest `created` held), set only with the last page of a window.
    pub checkpoint: Option<i64>,
    /// `created` of each record, parallel to `ids`: the day counts ([`super::days`]).
    pub created: Vec<i64>,
    /// `created` of each dead letter when it could be read, parallel to `dead_letters`.
    pub dead_created: Vec<Option<i64>>,
    /// Actions a stock `day` query returned outside the window (id, `created`): not journaled,
    /// but counted as seen in the day counts.
    pub seen_only: Vec<(i64, i64)>,
    /// The day of the stock `day` query the page answered, if it answered one.
    pub query_day: Option<super::days::DayRange>,
}

/// What a page commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageOutcome {
    pub appended: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
}

impl std::ops::AddAssign for PageOutcome {
    fn add_assign(&mut self, o: PageOutcome) {
        self.appended += o.appended;
        self.duplicates += o.duplicates;
        self.dead_letters += o.dead_letters;
    }
}

/// Which sink refused a dead letter, kept beside it (table `sink_refusals`, keyed by the dead
/// letter's number) so that `journal replay --dead-letters` can send it again once the cause is
/// fixed. A separate table: [`DeadLetter`]'s stored layout stays as older builds wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SinkRefusal {
    /// The sink's kind: `sqs` or `es`.
    pub sink: String,
    /// The queue name or the index the record was meant for.
    pub target: String,
    pub action_id: i64,
    /// The record's sequence number in the journal.
    pub seq: u64,
    /// The dedupe key the dead letter was stored under (freed when a replay delivers it).
    pub key: String,
    /// When a replay delivered it; `None` while it is still undelivered.
    pub delivered_at_us: Option<i64>,
}

/// A block `journal salvage` could not read, kept as it was found (never deleted).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct QuarantinedBlock {
    /// The sequence after the block's last record (the next block's first).
    pub end_seq: u64,
    /// Why it could not be read.
    pub reason: String,
    pub at_us: i64,
    /// The block's bytes as stored.
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode_meta::Attachment;
    use crate::journal::codec::{decode_value, encode_value};

    /// The stored bytes of an episode, pinned: journals written by earlier builds must keep
    /// reading, whatever module the metadata type lives in.
    #[test]
    fn an_episode_entry_is_stored_as_it_always_was() {
        let entry = EpisodeEntry {
            fetched_at_us: 1_700_000_000_000_000,
            meta: Some(EpisodeMeta {
                mpid: "mp-1".into(),
                title: Some("T".into()),
                duration_ms: Some(-1),
                start: None,
                dc_created: Some("c".into()),
                series: None,
                series_title: None,
                dc_type: Some("d".into()),
                dc_description: None,
                attachments: vec![Attachment {
                    kind: "k".into(),
                    url: Some("u".into()),
                    reference: None,
                }],
            }),
        };
        let expected: &[u8] = &[
            0x01, // value format version
            0xfd, 0x00, 0x80, 0x3c, 0x30, 0x48, 0x14, 0x0c,
            0x00, // fetched_at_us (zigzag u64)
            0x01, // meta: Some
            0x04, b'm', b'p', b'-', b'1', // mpid
            0x01, 0x01, b'T', // title
            0x01, 0x01, // duration_ms: Some(-1), zigzag
            0x00, // start
            0x01, 0x01, b'c', // dc_created
            0x00, 0x00, // series, series_title
            0x01, 0x01, b'd', // dc_type
            0x00, // dc_description
            0x01, 0x01, b'k', 0x01, 0x01, b'u', 0x00, // one attachment: kind, url, reference
        ];
        assert_eq!(encode_value(&entry), expected);
        assert_eq!(decode_value::<EpisodeEntry>(expected).unwrap(), entry);
        let unknown = EpisodeEntry {
            fetched_at_us: 2,
            meta: None,
        };
        assert_eq!(encode_value(&unknown), [0x01, 0x04, 0x00]);
    }
}
