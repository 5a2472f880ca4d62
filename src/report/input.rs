//! What a report reads of an action: the few fields the rules need, borrowed from a journaled
//! [`Record`] (offline) or from a record's JSON line (through a running `harvester run`).

use crate::journal::codec::BlockRecord;
use crate::record::{EpisodeBlock, Record};

/// One action as the report rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub mpid: &'a str,
    pub session_id: &'a str,
    /// `None` when Opencast sent no user (the record's `"None"`).
    pub huid: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub inpoint: Option<i64>,
    pub outpoint: Option<i64>,
    pub is_playing: bool,
    /// UTC microseconds.
    pub created_us: i64,
    pub is_live: bool,
    /// The episode as journaled with the action (`None`: unknown to Opencast).
    pub episode: Option<EpisodeFields<'a>>,
}

/// The episode fields a report shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpisodeFields<'a> {
    pub title: Option<&'a str>,
    /// Milliseconds, as Opencast gives it.
    pub duration_ms: Option<i64>,
    pub series_id: Option<&'a str>,
    pub series_title: Option<&'a str>,
}

impl<'a> Action<'a> {
    /// The view of a journaled record.
    pub fn of(r: &'a Record) -> Action<'a> {
        Action {
            mpid: &r.mpid,
            session_id: &r.session_id,
            huid: r.huid.as_deref(),
            kind: r.action.kind.as_deref(),
            inpoint: r.action.inpoint,
            outpoint: r.action.outpoint,
            is_playing: r.action.is_playing,
            created_us: r.created_us,
            is_live: r.is_live,
            episode: r.episode.as_deref().map(EpisodeFields::of),
        }
    }
}

impl<'a> Action<'a> {
    /// The view of a record borrowed from its block.
    pub fn of_block(r: &BlockRecord<'a>) -> Action<'a> {
        Action {
            mpid: r.mpid,
            session_id: r.session_id,
            huid: r.huid,
            kind: r.kind,
            inpoint: r.inpoint,
            outpoint: r.outpoint,
            is_playing: r.is_playing,
            created_us: r.created_us,
            is_live: r.is_live,
            episode: r.episode.map(|e| EpisodeFields {
                title: e.title,
                duration_ms: e.duration,
                series_id: e.series.map(|s| s.1),
                series_title: e.series.map(|s| s.0),
            }),
        }
    }
}

impl<'a> EpisodeFields<'a> {
    fn of(e: &'a EpisodeBlock) -> EpisodeFields<'a> {
        EpisodeFields {
            title: e.title.as_deref(),
            duration_ms: e.duration,
            series_id: e.series.as_ref().map(|s| s.1.as_str()),
            series_title: e.series.as_ref().map(|s| s.0.as_str()),
        }
    }
}

/// Why a record's JSON line (from a running service) gives no action.
#[derive(Debug, thiserror::Error)]
#[error("a record from the running harvester lacks {0}, or it has the wrong type")]
pub struct NotAnAction(&'static str);

/// An action read from a record's JSON form (`journal dump`'s line), owning its text.
#[derive(Debug, Clone)]
pub struct JsonAction {
    v: serde_json::Value,
    created_us: i64,
}

impl JsonAction {
    /// Reads the fields the rules need from one record line.
    pub fn parse(v: serde_json::Value) -> Result<JsonAction, NotAnAction> {
        let ts = v["timestamp"].as_str().ok_or(NotAnAction("timestamp"))?;
        let created_us = chrono::DateTime::parse_from_rfc3339(ts)
            .map_err(|_| NotAnAction("timestamp"))?
            .timestamp_micros();
        for k in ["mpid", "session_id", "huid"] {
            if !v[k].is_string() {
                return Err(NotAnAction(k));
            }
        }
        Ok(JsonAction { v, created_us })
    }

    /// The view the rules read.
    pub fn action(&self) -> Action<'_> {
        let v = &self.v;
        let a = &v["action"];
        let ep = &v["episode"];
        let episode = ep
            .as_object()
            .filter(|o| !o.is_empty())
            .map(|_| EpisodeFields {
                title: ep["title"].as_str(),
                duration_ms: ep["duration"].as_i64(),
                series_id: ep["series"].as_str(),
                series_title: ep["course"].as_str(),
            });
        Action {
            mpid: v["mpid"].as_str().unwrap_or_default(),
            session_id: v["session_id"].as_str().unwrap_or_default(),
            // The record writes an absent user as "None", as the original did.
            huid: v["huid"].as_str().filter(|h| *h != "None"),
            kind: a["type"].as_str(),
            inpoint: a["inpoint"].as_i64(),
            outpoint: a["outpoint"].as_i64(),
            is_playing: a["is_playing"].as_bool().unwrap_or(false),
            created_us: self.created_us,
            is_live: v["is_live"].as_i64().is_some_and(|l| l != 0)
                || v["is_live"].as_bool().unwrap_or(false),
            episode,
        }
    }
}
