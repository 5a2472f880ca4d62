//! Strict domain types made from the lenient wire shapes, and the one place that judges them.
//!
//! An action either becomes an [`Action`] or yields the reason it cannot (that reason goes to the
//! dead-letter table with the raw JSON). Episodes and workflows never fail as a whole: a missing
//! part leaves a field empty.

use std::borrow::Cow;

use chrono_tz::Tz;

use super::wire::{
    ActionsPage, IsPlaying, LenientI64, LenientStr, PageActions, WireAction, WireEpisode,
    WireWorkflow,
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
        let session = w.session_id.ok_or("missing sessionId object")?;
        let session_id = session
            .session_id
            .map(|s| s.0)
            .ok_or("missing sessionId.sessionId")?;
        let created = w.created.ok_or("missing created time")?.0;
        let created_us = timefmt::parse_xsd(&created, tz).map_err(|e| e.to_string())?;
        Ok(Action {
            id,
            mpid,
            session_id,
            user_id: session.user_id.map(|s| s.0),
            user_ip: session.user_ip.map(|s| s.0),
            user_agent: session.user_agent.map(|s| s.0),
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
            "mediapackageId" | "type" | "created" => check::<LenientStr>(v),
            "isPlaying" => check::<IsPlaying>(v),
            "sessionId" => match v {
                Value::Object(session) => session
                    .iter()
                    .filter(|(k, _)| {
                        matches!(k.as_str(), "sessionId" | "userId" | "userIp" | "userAgent")
                    })
                    .find_map(|(sk, sv)| check::<LenientStr>(sv).map(|e| format!("{sk}: {e}"))),
                Value::Null => None,
                _ => Some("expected the session object".to_string()),
            },
            _ => None,
        };
        if let Some(err) = err {
            return format!("wrong shape of field {k}: {err}");
        }
    }
    format!("not a user-action object: {e}")
}

/// A page judged action by action: the good ones, and the rest as `(raw JSON, reason)`.
#[derive(Debug, Default)]
pub struct JudgedPage<'a> {
    pub total: i64,
    pub actions: Vec<Action<'a>>,
    pub rejected: Vec<(String, String)>,
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
        out
    }
}

impl EpisodeMeta {
    /// The metadata of a search result; `None` when it has no media package id.
    pub fn from_wire(w: WireEpisode) -> Option<EpisodeMeta> {
        let mp = w.mediapackage.0;
        let mpid = mp
            .as_ref()
            .and_then(|m| m.id.clone())
            .or(w.id)
            .map(|s| s.0)
            .filter(|s| !s.is_empty())?;
        let non_empty =
            |s: Option<super::wire::LenientString>| s.map(|s| s.0).filter(|s| !s.is_empty());
        let (title, duration_ms, start, series, series_title, attachments) = match mp {
            Some(m) => (
                non_empty(m.title),
                m.duration.map(|d| d.0),
                non_empty(m.start),
                non_empty(m.series),
                non_empty(m.seriestitle),
                m.attachments
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
            ),
            None => (None, None, None, None, None, Vec::new()),
        };
        Some(EpisodeMeta {
            mpid,
            title: title.or_else(|| non_empty(w.dc_title)),
            duration_ms,
            start,
            dc_created: non_empty(w.dc_created),
            series: series.or_else(|| non_empty(w.dc_is_part_of)),
            series_title,
            dc_type: non_empty(w.dc_type),
            dc_description: non_empty(w.dc_description),
            attachments,
        })
    }
}

/// One operation of a workflow instance, times in epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
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
    pub operations: Vec<Operation>,
}

impl Workflow {
    pub fn from_wire(w: WireWorkflow) -> Option<Workflow> {
        Some(Workflow {
            id: w.id?.0,
            state: w.state.map(|s| s.0),
            operations: w
                .operations
                .0
                .map(|o| o.operation.0)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| {
                    Some(Operation {
                        id: o.id?.0,
                        state: o.state.map(|s| s.0),
                        started_ms: o.started.map(|n| n.0),
                        completed_ms: o.completed.map(|n| n.0),
                    })
                })
                .collect(),
        })
    }
}
