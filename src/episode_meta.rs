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

/// Year, term and course reference number of a DCE series id (`YYYYTTCCCCC`, eleven digits:
/// `20150221144` is 2015, term 02, course 21144). Any other series id (stock Opencast gives
/// UUIDs) carries none of them: cutting `e3b9` out of a UUID would be a made-up year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseCode<'a> {
    pub year: &'a str,
    pub term: &'a str,
    pub crn: &'a str,
}

impl<'a> CourseCode<'a> {
    pub fn of(series: &'a str) -> Option<CourseCode<'a>> {
        (series.len() == 11 && series.bytes().all(|b| b.is_ascii_digit())).then(|| CourseCode {
            year: &series[0..4],
            term: &series[4..6],
            crn: &series[6..11],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dce_series_ids_give_a_course_code() {
        assert_eq!(
            CourseCode::of("20150221144"),
            Some(CourseCode {
                year: "2015",
                term: "02",
                crn: "21144"
            })
        );
        for other in [
            "e3b9d1e2-7a4f-4c0e-9d51-0c1e2f3a4b5c",
            "2015022114",
            "201502211440",
            "2015O221144",
            "",
            "٢٠١٥٠٢٢١١٤٤",
        ] {
            assert_eq!(CourseCode::of(other), None, "{other}");
        }
    }
}
