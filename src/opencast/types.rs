//! Strict domain types made from the lenient wire shapes, and the one place that judges them.
//!
//! An action either becomes an [`Action`] or yields the reason it cannot (that reason goes to the
//! dead-letter table with the raw JSON). Episodes and workflows never fail as a whole: a missing
//! part leaves a field empty.

use std::borrow::Cow;

use chrono_tz::Tz;

use super::wire::{
    ActionsPage, IsPlaying, LenientI64, LenientStr, LenientString, PageActions, WireAction,
    WireEpisode, WireEpisode16, WireSessionField, WireTechnical, WireWorkflow,
};
pub use crate::episode_meta::{Attachment, EpisodeMeta};
use crate::timefmt;

/// A user action, validated: everything a record needs, in strict types. Its strings borrow
/// from the page body where they can (no escapes), so judging a page copies almost nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Action<'a> {
    pub id: i64,
    pub mpid: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub user_id: Option<Cow<'a, str>>,
    pub user_ip: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub kind: Option<Cow<'a, str>>,
    pub inpoint: Option<i64>,
    pub outpoint: Option<i64>,
    pub length: Option<i64>,
    pub is_playing: i64,
    pub created_us: i64,
}

impl<'a> Action<'a> {
    /// Parses one raw action. `Err` carries a reason a person can read next to the raw JSON.
    pub fn from_raw(raw: &'a str, tz: Tz) -> Result<Action<'a>, String> {
        let w: WireAction<'a> = serde_json::from_str(raw).map_err(|e| wrong_shape(raw, &e))?;
        Action::from_wire(w, tz)
    }

    /// Judges a decoded action. Only the quirks of the API reference are accepted (numbers as
    /// strings and strings as numbers, `"$"` texts, `""` for an empty element); a value that
    /// would have to be changed to fit is a reason, never a silently altered record.
    pub fn from_wire(w: WireAction<'a>, tz: Tz) -> Result<Action<'a>, String> {
        let id = w.id.ok_or("missing action id")?.0;
        if id <= 0 {
            return Err(format!("action id {id} is not a positive integer"));
        }
        let mpid = w
            .mediapackage_id
            .map(|s| s.0)
            .filter(|s| !s.trim().is_empty())
            .ok_or("missing mediapackageId")?;
        let (session_id, user_id, user_ip, user_agent) = match w.session_id {
            None => return Err("missing sessionId object".into()),
            // 2.0+: everything in the session object; a flat user or address beside it would
            // be a shape no release writes, and choosing one of the two would alter the record.
            Some(WireSessionField::Object(session)) => {
                if w.user_id.is_some() || w.user_ip.is_some() {
                    return Err(
                        "both a sessionId object and a flat userId/userIp: no release writes that"
                            .into(),
                    );
                }
                let session_id = session
                    .session_id
                    .map(|s| s.0)
                    .ok_or("missing sessionId.sessionId")?;
                (
                    session_id,
                    session.user_id.map(|s| s.0),
                    session.user_ip.map(|s| s.0),
                    session.user_agent.map(|s| s.0),
                )
            }
            // Matterhorn 1.4–1.6: flat strings, no user agent.
            Some(WireSessionField::Flat(session_id)) => (
                session_id,
                w.user_id.map(|s| s.0),
                w.user_ip.map(|s| s.0),
                None,
            ),
        };
        let created = w.created.ok_or("missing created time")?.0;
        let created_us = timefmt::parse_xsd(&created, tz).map_err(|e| e.to_string())?;
        Ok(Action {
            id,
            mpid,
            session_id,
            user_id,
            user_ip,
            user_agent,
            kind: w.kind.map(|s| s.0),
            inpoint: w.inpoint.map(|n| n.0),
            outpoint: w.outpoint.map(|n| n.0),
            length: w.length.map(|n| n.0),
            is_playing: w.is_playing.map(|p| p.0).unwrap_or(0),
            created_us,
        })
    }
}

/// Why an action did not decode, naming the field to blame when there is one. Only for the
/// rare action that failed: it is decoded again, field by field.
fn wrong_shape(raw: &str, e: &serde_json::Error) -> String {
    use serde::Deserialize;
    use serde_json::Value;
    fn check<'v, T: Deserialize<'v>>(v: &'v Value) -> Option<String> {
        if v.is_null() {
            return None;
        }
        T::deserialize(v).err().map(|e| e.to_string())
    }
    let Ok(fields) = serde_json::from_str::<serde_json::Map<String, Value>>(raw) else {
        return format!("not a user-action object: {e}");
    };
    for (k, v) in &fields {
        let err = match k.as_str() {
            "id" | "inpoint" | "outpoint" | "length" => check::<LenientI64>(v),
            "mediapackageId" | "type" | "created" | "userId" | "userIp" => check::<LenientStr>(v),
            "isPlaying" => check::<IsPlaying>(v),
            "sessionId" => match v {
                Value::Object(session) => session
                    .iter()
                    .filter(|(k, _)| {
                        matches!(k.as_str(), "sessionId" | "userId" | "userIp" | "userAgent")
                    })
                    .find_map(|(sk, sv)| check::<LenientStr>(sv).map(|e| format!("{sk}: {e}"))),
                // Matterhorn 1.4–1.6: the session id itself.
                Value::Null | Value::String(_) | Value::Number(_) => None,
                _ => Some("expected the session object or a session id".to_string()),
            },
            _ => None,
        };
        if let Some(err) = err {
            return format!("wrong shape of field {k}: {err}");
        }
    }
    format!("not a user-action object: {e}")
}

/// The literal Opencast writes for a value its privacy settings keep back (6.0+ defaults:
/// `log.ip`, `log.user`, `log.session` false in `UserTrackingServiceImpl.cfg`).
pub const OMITTED: &str = "-omitted-";

/// A page judged action by action: the good ones, and the rest as `(raw JSON, reason)`.
#[derive(Debug, Default)]
pub struct JudgedPage<'a> {
    pub total: i64,
    pub actions: Vec<Action<'a>>,
    pub rejected: Vec<(String, String)>,
    /// Accepted actions whose user, address or session is [`OMITTED`]: they are records as
    /// Opencast sent them, but a site may not know its Opencast keeps these back.
    pub omitted: u64,
}

impl Action<'_> {
    /// The user, the address or the session is the literal [`OMITTED`].
    pub fn has_omitted(&self) -> bool {
        self.session_id == OMITTED
            || self.user_id.as_deref() == Some(OMITTED)
            || self.user_ip.as_deref() == Some(OMITTED)
    }
}

impl<'a> JudgedPage<'a> {
    pub fn judge(page: ActionsPage<'a>, tz: Tz) -> JudgedPage<'a> {
        let mut out = JudgedPage {
            total: page.total,
            ..JudgedPage::default()
        };
        out.actions.reserve(page.len());
        let ActionsPage { actions, body, .. } = page;
        match actions {
            PageActions::Decoded(wire) => {
                let mut bad = Vec::new();
                for (i, w) in wire.into_iter().enumerate() {
                    match Action::from_wire(w, tz) {
                        Ok(a) => out.actions.push(a),
                        Err(reason) => bad.push((i, reason)),
                    }
                }
                if !bad.is_empty() {
                    // Rare: find the exact text of each rejected action.
                    let raws = ActionsPage::raw_actions_of(body);
                    for (i, reason) in bad {
                        let raw = raws.get(i).map(|r| r.get().to_string()).unwrap_or_default();
                        out.rejected.push((raw, reason));
                    }
                }
            }
            PageActions::Raw(raw) => {
                for r in raw {
                    match Action::from_raw(r.get(), tz) {
                        Ok(a) => out.actions.push(a),
                        Err(reason) => out.rejected.push((r.get().to_string(), reason)),
                    }
                }
            }
        }
        out.omitted = out.actions.iter().filter(|a| a.has_omitted()).count() as u64;
        out
    }
}

fn non_empty(s: Option<LenientString>) -> Option<String> {
    s.map(|s| s.0).filter(|s| !s.is_empty())
}

/// What both search generations carry in the media package.
struct MediaPackagePart {
    mpid: Option<String>,
    title: Option<String>,
    duration_ms: Option<i64>,
    start: Option<String>,
    series: Option<String>,
    series_title: Option<String>,
    attachments: Vec<Attachment>,
}

impl MediaPackagePart {
    fn from_wire(mp: Option<super::wire::WireMediapackage>) -> MediaPackagePart {
        let Some(m) = mp else {
            return MediaPackagePart {
                mpid: None,
                title: None,
                duration_ms: None,
                start: None,
                series: None,
                series_title: None,
                attachments: Vec::new(),
            };
        };
        MediaPackagePart {
            mpid: non_empty(m.id),
            title: non_empty(m.title),
            duration_ms: m.duration.map(|d| d.0),
            start: non_empty(m.start),
            series: non_empty(m.series),
            series_title: non_empty(m.seriestitle),
            attachments: m
                .attachments
                .0
                .map(|a| a.attachment.0)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| {
                    Some(Attachment {
                        kind: a.kind?.0,
                        url: a.url.map(|u| u.0),
                        reference: a.reference.map(|r| r.0),
                    })
                })
                .collect(),
        }
    }
}

impl EpisodeMeta {
    /// The metadata of a search result (up to 15.x); `None` when it has no media package id.
    pub fn from_wire(w: WireEpisode) -> Option<EpisodeMeta> {
        let mp = MediaPackagePart::from_wire(w.mediapackage.0);
        let mpid = mp.mpid.or_else(|| non_empty(w.id))?;
        Some(EpisodeMeta {
            mpid,
            title: mp.title.or_else(|| non_empty(w.dc_title)),
            duration_ms: mp.duration_ms,
            start: mp.start,
            dc_created: non_empty(w.dc_created),
            series: mp.series.or_else(|| non_empty(w.dc_is_part_of)),
            series_title: mp.series_title,
            dc_type: non_empty(w.dc_type),
            dc_description: non_empty(w.dc_description),
            attachments: mp.attachments,
        })
    }

    /// The metadata of a 16.0+ search result, the same fields from the Dublin Core lists; a
    /// `created` of W3C-DTF minute or day precision (`2024-05-07T16:24Z`) is written with
    /// seconds, so that it reads as the same instant the older releases wrote in full.
    pub fn from_wire16(w: WireEpisode16) -> Option<EpisodeMeta> {
        let mp = MediaPackagePart::from_wire(w.mediapackage.0);
        let dc = w.dc.0.unwrap_or_default();
        let mpid = mp.mpid.or_else(|| dc.identifier.first())?;
        Some(EpisodeMeta {
            mpid,
            title: mp.title.or_else(|| dc.title.first()),
            duration_ms: mp.duration_ms,
            start: mp.start,
            dc_created: dc.created.first().map(|c| w3cdtf_in_seconds(&c)),
            series: mp.series.or_else(|| dc.is_part_of.first()),
            series_title: mp.series_title,
            dc_type: dc.kind.first(),
            dc_description: dc.description.first(),
            attachments: mp.attachments,
        })
    }
}

/// `YYYY-MM-DDTHH:MM` + zone → `YYYY-MM-DDTHH:MM:00` + zone; `YYYY-MM-DD` → midnight UTC.
/// Anything else is returned as it is (a full dateTime, or text the caller will report).
pub fn w3cdtf_in_seconds(s: &str) -> String {
    let t = s.trim();
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date = b.len() >= 10 && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-';
    if b.len() == 10 && date && digits(8..10) {
        return format!("{t}T00:00:00Z");
    }
    let minute = b.len() > 16
        && date
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && matches!(b[16], b'Z' | b'+' | b'-');
    if minute {
        format!("{}:00{}", &t[..16], &t[16..])
    } else {
        t.to_string()
    }
}

/// A scheduled event's planned times (the scheduler's technical metadata, 4.0+), epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Scheduled {
    /// Both times, or `None` (an event without them says nothing about a live window).
    pub fn from_wire(w: WireTechnical, tz: Tz) -> Option<Scheduled> {
        let t = |v: Option<LenientString>| {
            timefmt::parse_xsd(&non_empty(v)?, tz)
                .ok()
                .map(|us| us.div_euclid(1000))
        };
        Some(Scheduled {
            start_ms: t(w.start)?,
            end_ms: t(w.end)?,
        })
    }
}

/// One operation of a workflow instance, times in epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The operation's name (`capture`): its `id` up to 11.x, its `template` from 12.0.
    pub id: String,
    pub state: Option<String>,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
}

/// A workflow instance of the admin node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub id: i64,
    pub state: Option<String>,
    /// The workflow definition it ran (`template`), when Opencast says.
    pub template: Option<String>,
    pub operations: Vec<Operation>,
}

impl Workflow {
    pub fn from_wire(w: WireWorkflow) -> Option<Workflow> {
        Some(Workflow {
            id: w.id?.0,
            state: w.state.map(|s| s.0),
            template: non_empty(w.template),
            operations: w
                .operations
                .0
                .map(|o| o.operation.0)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| {
                    Some(Operation {
                        id: non_empty(o.template).or(o.id.map(|i| i.0))?,
                        state: o.state.map(|s| s.0),
                        started_ms: o.started.map(|n| n.0),
                        completed_ms: o.completed.map(|n| n.0),
                    })
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3cdtf_of_every_precision_reads_as_a_full_datetime() {
        for (given, want) in [
            ("2024-05-07T16:24Z", "2024-05-07T16:24:00Z"),
            ("2024-05-07T16:24+02:00", "2024-05-07T16:24:00+02:00"),
            ("2024-05-07", "2024-05-07T00:00:00Z"),
            ("2024-05-07T16:24:05Z", "2024-05-07T16:24:05Z"),
            ("last tuesday", "last tuesday"),
            ("2024-05-07T16:2Z", "2024-05-07T16:2Z"),
        ] {
            assert_eq!(w3cdtf_in_seconds(given), want, "{given}");
        }
    }

    #[test]
    fn omitted_values_are_noticed_in_any_of_the_three() {
        let raw = |s: &str| {
            format!(
                r#"{{"id":1,"mediapackageId":"m","sessionId":{s},"created":"2020-01-01T00:00:00Z"}}"#
            )
        };
        for (s, omitted) in [
            (
                r#"{"sessionId":"-omitted-","userId":"u","userIp":"1.2.3.4"}"#,
                true,
            ),
            (r#"{"sessionId":"s","userId":"-omitted-"}"#, true),
            (r#"{"sessionId":"s","userIp":"-omitted-"}"#, true),
            (
                r#"{"sessionId":"s","userId":"u","userIp":"1.2.3.4"}"#,
                false,
            ),
        ] {
            let r = raw(s);
            assert_eq!(
                Action::from_raw(&r, Tz::UTC).unwrap().has_omitted(),
                omitted,
                "{s}"
            );
        }
    }
}
