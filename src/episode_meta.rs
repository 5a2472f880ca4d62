//! What the harvester keeps of an episode: the metadata Opencast's search endpoint gives, as the
//! journal stores it and records and documents are built from it.
//!
//! Neutral ground: the Opencast client makes it (`EpisodeMeta::from_wire`), the journal stores
//! it (bincode: the field order and types are the stored layout, so they do not change), and
//! neither has to know the other.

/// An attachment of a media package (player previews, segment previews with slide times).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode, serde::Serialize)]
pub struct Attachment {
    pub kind: String,
    pub url: Option<String>,
    pub reference: Option<String>,
}

/// Episode metadata from the search endpoint, as the harvester keeps it.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode, serde::Serialize)]
pub struct EpisodeMeta {
    pub mpid: String,
    pub title: Option<String>,
    pub duration_ms: Option<i64>,
    /// The media package `start` exactly as Opencast gave it.
    pub start: Option<String>,
    pub dc_created: Option<String>,
    pub series: Option<String>,
    pub series_title: Option<String>,
    pub dc_type: Option<String>,
    pub dc_description: Option<String>,
    pub attachments: Vec<Attachment>,
}
