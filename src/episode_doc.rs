//! Episode metadata + its newest publishing workflow → the document `load-episodes` indexes.
//!
//! The fields are those of `opencast-api.md` (`title`, `mpid`, `duration`, `start`, `course`,
//! `series`, `year`, `term`, `crn`, `type`, `description`, `presenter_still`,
//! `presentation_still`, `slides`, `live_stream`, `live_start`, `live_end`, `live_duration`,
//! `available`). A missing part leaves its fields out; it never fails the document. Times are UTC in
//! Python's `isoformat()`, exactly as the original `load_episodes` wrote them
//! (`2016-02-15T10:37:26+00:00`, and `2016-03-13T02:39:00.964000+00:00` when the workflow's epoch
//! milliseconds have any); `live_stream` is a boolean, as the episode index template maps it.

use chrono_tz::Tz;
use serde::Serialize;

use crate::episode_meta::CourseCode;
use crate::opencast::{EpisodeMeta, Scheduled, Workflow};
use crate::timefmt;

/// One slide: its preview image and its time in the recording (`T00:02:33:0F1000`).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode, Serialize)]
pub struct Slide {
    pub img: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The episode document (its `_id` is `mpid`).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode, Serialize)]
pub struct EpisodeDoc {
    pub mpid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crn: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presenter_still: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presentation_still: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slides: Vec<Slide>,
    /// `None` when no workflow was found (nothing is known about live streaming).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
}

/// The workflow whose operations describe the episode: the SUCCEEDED one with the highest id
/// (Opencast's sort parameter is not to be trusted).
pub fn newest_succeeded(workflows: &[Workflow]) -> Option<&Workflow> {
    workflows
        .iter()
        .filter(|w| {
            w.state
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("SUCCEEDED"))
        })
        .max_by_key(|w| w.id)
}

/// Things left out of a document, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gaps(pub Vec<String>);

impl EpisodeDoc {
    /// Builds the document; `tz` reads start times without an offset. Returns what was missing.
    ///
    /// The live window comes from the workflow's `capture` operation (the DCE build and stock
    /// releases up to 3.x); `scheduled` is the scheduler's planned window (4.0+, which has no
    /// `capture` operation), used only when the workflow has none.
    pub fn build(
        meta: &EpisodeMeta,
        workflow: Option<&Workflow>,
        scheduled: Option<Scheduled>,
        tz: Tz,
    ) -> (EpisodeDoc, Gaps) {
        let mut gaps = Gaps::default();
        let start = start_time(meta, tz, &mut gaps);
        let series = meta.series.clone();
        if series.is_none() {
            gaps.0.push("no series".into());
        }
        // A DCE series id reads YYYYTTCCCCC: year, term, course reference number.
        let code = series.as_deref().and_then(CourseCode::of);
        let mut doc = EpisodeDoc {
            mpid: meta.mpid.clone(),
            title: meta.title.clone(),
            duration: meta.duration_ms,
            start,
            course: meta.series_title.clone(),
            year: code.as_ref().map(|c| c.year.to_string()),
            term: code.as_ref().map(|c| c.term.to_string()),
            crn: code.as_ref().map(|c| c.crn.to_string()),
            series,
            kind: meta.dc_type.clone(),
            description: meta.dc_description.clone(),
            presenter_still: still(meta, "presenter/player+preview"),
            presentation_still: still(meta, "presentation/player+preview"),
            slides: slides(meta, &mut gaps),
            live_stream: None,
            live_start: None,
            live_end: None,
            live_duration: None,
            available: None,
        };
        match workflow {
            None => gaps.0.push("no SUCCEEDED workflow".into()),
            Some(w) => doc.add_workflow(w, scheduled, &mut gaps),
        }
        (doc, gaps)
    }

    /// The live capture (its `capture` operation, else the scheduler's window) and when the
    /// episode became available (its `retract-element` operation completed: DCE's).
    fn add_workflow(&mut self, w: &Workflow, scheduled: Option<Scheduled>, gaps: &mut Gaps) {
        let op = |id: &str| w.operations.iter().find(|o| o.id == id);
        let window = match op("capture") {
            Some(c) => Some((c.started_ms, c.completed_ms)),
            None => scheduled.map(|s| (Some(s.start_ms), Some(s.end_ms))),
        };
        self.live_stream = Some(window.is_some());
        if let Some((started_ms, completed_ms)) = window {
            self.live_start = started_ms.map(|ms| timefmt::python_isoformat_utc(ms * 1000));
            self.live_end = completed_ms.map(|ms| timefmt::python_isoformat_utc(ms * 1000));
            self.live_duration = match (started_ms, completed_ms) {
                (Some(a), Some(b)) if b >= a => Some(b - a),
                _ => None,
            };
        }
        match op("retract-element").and_then(|r| r.completed_ms) {
            Some(ms) => self.available = Some(timefmt::python_isoformat_utc(ms * 1000)),
            None => gaps.0.push("no completed retract-element operation".into()),
        }
    }
}

/// The episode's start (or, without one, its `dcCreated`) in UTC.
fn start_time(meta: &EpisodeMeta, tz: Tz, gaps: &mut Gaps) -> Option<String> {
    match meta.start.as_deref().or(meta.dc_created.as_deref()) {
        Some(s) => match timefmt::parse_xsd(s, tz) {
            Ok(us) => Some(timefmt::python_isoformat_utc(us)),
            Err(_) => {
                gaps.0.push(format!("start '{s}' is not a time"));
                None
            }
        },
        None => {
            gaps.0.push("no start or dcCreated".into());
            None
        }
    }
}

/// The URL of the first attachment of `kind`.
fn still(meta: &EpisodeMeta, kind: &str) -> Option<String> {
    meta.attachments
        .iter()
        .find(|a| a.kind == kind)
        .and_then(|a| a.url.clone())
}

/// The segment previews, each with the time its `ref` carries (`…;time=T`).
fn slides(meta: &EpisodeMeta, gaps: &mut Gaps) -> Vec<Slide> {
    let mut slides = Vec::new();
    for a in meta
        .attachments
        .iter()
        .filter(|a| a.kind == "presentation/segment+preview")
    {
        let Some(img) = a.url.clone() else {
            gaps.0.push("a segment preview without url".into());
            continue;
        };
        let time = a
            .reference
            .as_deref()
            .and_then(|r| r.split_once(";time="))
            .map(|(_, t)| t.to_string())
            .filter(|t| !t.is_empty());
        if time.is_none() {
            gaps.0.push(format!(
                "segment preview ref {:?} carries no time",
                a.reference.as_deref().unwrap_or("")
            ));
        }
        slides.push(Slide { img, time });
    }
    slides
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencast::{Attachment, Operation};

    fn meta() -> EpisodeMeta {
        EpisodeMeta {
            mpid: "mp1".into(),
            title: Some("Lecture".into()),
            duration_ms: Some(3_000_000),
            start: Some("2015-05-05T19:39:00-04:00".into()),
            dc_created: None,
            series: Some("20150221144".into()),
            series_title: Some("CSCI E-1".into()),
            dc_type: Some("L01".into()),
            dc_description: None,
            attachments: vec![
                Attachment {
                    kind: "presenter/player+preview".into(),
                    url: Some("http://x/presenter.jpg".into()),
                    reference: Some("track:t".into()),
                },
                Attachment {
                    kind: "presentation/segment+preview".into(),
                    url: Some("http://x/s0.jpg".into()),
                    reference: Some("track:t;time=T00:02:33:0F1000".into()),
                },
                Attachment {
                    kind: "presentation/segment+preview".into(),
                    url: Some("http://x/s1.jpg".into()),
                    reference: Some("track:t".into()),
                },
            ],
        }
    }

    fn op(id: &str, a: i64, b: i64) -> Operation {
        Operation {
            id: id.into(),
            state: Some("SUCCEEDED".into()),
            started_ms: Some(a),
            completed_ms: Some(b),
        }
    }

    #[test]
    fn full_document() {
        let wfs = vec![
            Workflow {
                id: 9,
                state: Some("SUCCEEDED".into()),
                template: None,
                operations: vec![
                    op("capture", 1_430_870_340_000, 1_430_873_940_000),
                    op("retract-element", 1_430_880_000_000, 1_430_880_100_000),
                ],
            },
            Workflow {
                id: 3,
                state: Some("SUCCEEDED".into()),
                template: None,
                operations: vec![op("retract-element", 1, 2)],
            },
        ];
        let (d, gaps) = EpisodeDoc::build(&meta(), newest_succeeded(&wfs), None, Tz::UTC);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "mpid": "mp1", "title": "Lecture", "duration": 3_000_000,
                "start": "2015-05-05T23:39:00+00:00", "course": "CSCI E-1", "series": "20150221144",
                "year": "2015", "term": "02", "crn": "21144", "type": "L01",
                "presenter_still": "http://x/presenter.jpg",
                "slides": [{"img": "http://x/s0.jpg", "time": "T00:02:33:0F1000"}, {"img": "http://x/s1.jpg"}],
                "live_stream": true, "live_start": "2015-05-05T23:59:00+00:00",
                "live_end": "2015-05-06T00:59:00+00:00", "live_duration": 3_600_000,
                "available": "2015-05-06T02:41:40+00:00"
            })
        );
        assert_eq!(gaps.0.len(), 1, "{gaps:?}"); // the slide without a time
    }

    /// The exact strings the original `load_episodes` wrote for these instants (Python's
    /// `datetime.isoformat()` in UTC): seconds only when whole, else six fraction digits.
    #[test]
    fn dates_are_pythons_isoformat_with_the_milliseconds() {
        let mut m = meta();
        m.start = Some("2016-02-15T05:37:26-05:00".into());
        let wf = Workflow {
            id: 1,
            state: Some("SUCCEEDED".into()),
            template: None,
            operations: vec![
                op("capture", 1_457_833_140_000, 1_457_836_740_964),
                op("retract-element", 1_454_707_700_000, 1_454_707_721_282),
            ],
        };
        let (d, _) = EpisodeDoc::build(&m, Some(&wf), None, Tz::UTC);
        assert_eq!(d.start.as_deref(), Some("2016-02-15T10:37:26+00:00"));
        assert_eq!(d.live_start.as_deref(), Some("2016-03-13T01:39:00+00:00"));
        assert_eq!(
            d.live_end.as_deref(),
            Some("2016-03-13T02:39:00.964000+00:00")
        );
        assert_eq!(
            d.available.as_deref(),
            Some("2016-02-05T21:28:41.282000+00:00")
        );
        assert_eq!(d.live_stream, Some(true));
    }

    /// A stock series id (a UUID) gives no year, term or course number (they were cut out of
    /// it: `e3b9`, `d1`, `e2-7a`).
    #[test]
    fn a_uuid_series_gives_no_year_term_or_crn() {
        let mut m = meta();
        m.series = Some("e3b9d1e2-7a4f-4c0e-9d51-0c1e2f3a4b5c".into());
        let (d, _) = EpisodeDoc::build(&m, None, None, Tz::UTC);
        assert_eq!(d.series, m.series);
        assert_eq!(d.course.as_deref(), Some("CSCI E-1"));
        assert_eq!((d.year, d.term, d.crn), (None, None, None));
    }

    /// 4.0+ has no `capture` operation: the scheduler's window is the live window; a
    /// `capture` operation, where there is one, wins.
    #[test]
    fn the_schedulers_window_is_the_live_window_without_a_capture_operation() {
        let wf = Workflow {
            id: 1,
            state: Some("SUCCEEDED".into()),
            template: Some("schedule-and-upload".into()),
            operations: vec![op("publish-engage", 1, 2)],
        };
        let s = Scheduled {
            start_ms: 1_457_833_140_000,
            end_ms: 1_457_836_740_000,
        };
        let (d, gaps) = EpisodeDoc::build(&meta(), Some(&wf), Some(s), Tz::UTC);
        assert_eq!(d.live_stream, Some(true));
        assert_eq!(d.live_start.as_deref(), Some("2016-03-13T01:39:00+00:00"));
        assert_eq!(d.live_end.as_deref(), Some("2016-03-13T02:39:00+00:00"));
        assert_eq!(d.live_duration, Some(3_600_000));
        assert_eq!(d.available, None);
        assert!(gaps.0.iter().any(|g| g.contains("retract-element")));
        let (d, _) = EpisodeDoc::build(&meta(), Some(&wf), None, Tz::UTC);
        assert_eq!((d.live_stream, d.live_start), (Some(false), None));
        let mut with_capture = wf.clone();
        with_capture.operations.push(op("capture", 10_000, 20_000));
        let (d, _) = EpisodeDoc::build(&meta(), Some(&with_capture), Some(s), Tz::UTC);
        assert_eq!(d.live_duration, Some(10_000));
    }

    #[test]
    fn missing_parts_leave_fields_out() {
        let mut m = meta();
        m.series = None;
        m.series_title = None;
        m.start = None;
        m.attachments.clear();
        let (d, gaps) = EpisodeDoc::build(&m, None, None, Tz::UTC);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"mpid": "mp1", "title": "Lecture", "duration": 3_000_000, "type": "L01"})
        );
        assert_eq!(gaps.0.len(), 3, "{gaps:?}");
    }
}
