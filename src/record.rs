//! Action + episode → the record downstream consumers read (the compatibility contract).
//!
//! The field names, types and odd spellings (`"None"`, `cdn`, `proxyN`) are those of the original
//! harvester; `shared/reference/opencast-api.md` is the specification. A [`Record`] is what the
//! journal stores (strict, compact, bincode) and its JSON form is produced by [`Record::to_json`].

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::enrich::Extra;
use crate::opencast::{Action, EpisodeMeta};
use crate::timefmt;

/// One harvested action, enriched with its episode as known at harvest time.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Record {
    pub action_id: i64,
    /// `created`, as UTC microseconds since the epoch.
    pub created_us: i64,
    pub mpid: String,
    pub session_id: String,
    /// `sessionId.userId`; absent renders as the string `"None"`, as the original did.
    pub huid: Option<String>,
    pub useragent: Option<String>,
    pub action: ActionBlock,
    /// The `userIp` chain as sent (`X-Forwarded-For`: client first, then proxies); split into
    /// `ip`, `proxy1`, ... when rendered.
    pub ip_chain: Option<String>,
    pub is_live: bool,
    /// `None` when the episode is unknown to Opencast (renders as `{}`). Shared: every action of
    /// an episode points at the same block.
    pub episode: Option<Arc<EpisodeBlock>>,
}

/// The `action` object of a record.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ActionBlock {
    pub kind: Option<String>,
    pub inpoint: Option<i64>,
    pub outpoint: Option<i64>,
    pub length: Option<i64>,
    pub is_playing: bool,
}

/// The `episode` object of a record.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct EpisodeBlock {
    pub title: Option<String>,
    pub duration: Option<i64>,
    pub start: Option<String>,
    /// `(series title, series id)`, present only when both are.
    pub series: Option<(String, String)>,
    pub kind: Option<String>,
    pub description: Option<String>,
}

impl EpisodeBlock {
    pub fn from_meta(m: &EpisodeMeta, tz: chrono_tz::Tz) -> EpisodeBlock {
        let start = m.start.clone().or_else(|| {
            m.dc_created
                .as_deref()
                .map(|c| match timefmt::parse_xsd(c, tz) {
                    Ok(us) => timefmt::format_utc_z(us),
                    Err(_) => c.to_string(),
                })
        });
        let series = match (&m.series_title, &m.series) {
            (Some(t), Some(s)) => Some((t.clone(), s.clone())),
            _ => None,
        };
        EpisodeBlock {
            title: m.title.clone(),
            duration: m.duration_ms,
            start,
            series,
            kind: m.dc_type.clone(),
            description: m.dc_description.clone(),
        }
    }
}

/// A [`Record`] whose strings borrow from the page they were read from: the harvest encodes
/// these straight into a journal block without copying each field into its own allocation.
/// Field for field the same as `Record` (same order, same types once borrowed), so the bincode
/// bytes are identical and the block decodes as `Record`s (a codec test pins this).
#[derive(Debug, Clone, bincode::Encode)]
pub struct RecordRef<'a> {
    pub action_id: i64,
    pub created_us: i64,
    pub mpid: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub huid: Option<Cow<'a, str>>,
    pub useragent: Option<Cow<'a, str>>,
    pub action: ActionBlockRef<'a>,
    pub ip_chain: Option<Cow<'a, str>>,
    pub is_live: bool,
    pub episode: Option<Arc<EpisodeBlock>>,
}

/// The borrowed form of [`ActionBlock`].
#[derive(Debug, Clone, bincode::Encode)]
pub struct ActionBlockRef<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub inpoint: Option<i64>,
    pub outpoint: Option<i64>,
    pub length: Option<i64>,
    pub is_playing: bool,
}

impl<'a> RecordRef<'a> {
    /// The record of `action`, with an episode block made once for all its actions.
    pub fn new(action: Action<'a>, episode: Option<Arc<EpisodeBlock>>) -> RecordRef<'a> {
        RecordRef {
            action_id: action.id,
            created_us: action.created_us,
            mpid: action.mpid,
            session_id: action.session_id,
            huid: action.user_id,
            useragent: action.user_agent,
            action: ActionBlockRef {
                kind: action.kind,
                inpoint: action.inpoint,
                outpoint: action.outpoint,
                length: action.length,
                is_playing: action.is_playing > 0,
            },
            ip_chain: action.user_ip,
            is_live: action.is_playing == 2,
            episode,
        }
    }

    pub fn into_owned(self) -> Record {
        Record {
            action_id: self.action_id,
            created_us: self.created_us,
            mpid: self.mpid.into_owned(),
            session_id: self.session_id.into_owned(),
            huid: self.huid.map(Cow::into_owned),
            useragent: self.useragent.map(Cow::into_owned),
            action: ActionBlock {
                kind: self.action.kind.map(Cow::into_owned),
                inpoint: self.action.inpoint,
                outpoint: self.action.outpoint,
                length: self.action.length,
                is_playing: self.action.is_playing,
            },
            ip_chain: self.ip_chain.map(Cow::into_owned),
            is_live: self.is_live,
            episode: self.episode,
        }
    }
}

impl<'a> From<&'a Record> for RecordRef<'a> {
    fn from(r: &'a Record) -> RecordRef<'a> {
        let b = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        RecordRef {
            action_id: r.action_id,
            created_us: r.created_us,
            mpid: Cow::Borrowed(&r.mpid),
            session_id: Cow::Borrowed(&r.session_id),
            huid: b(&r.huid),
            useragent: b(&r.useragent),
            action: ActionBlockRef {
                kind: b(&r.action.kind),
                inpoint: r.action.inpoint,
                outpoint: r.action.outpoint,
                length: r.action.length,
                is_playing: r.action.is_playing,
            },
            ip_chain: b(&r.ip_chain),
            is_live: r.is_live,
            episode: r.episode.clone(),
        }
    }
}

impl Record {
    /// Builds the record of `action`; `episode` is `None` when Opencast does not know it.
    pub fn build(action: Action<'_>, episode: Option<&EpisodeMeta>, tz: chrono_tz::Tz) -> Record {
        let block = episode.map(|m| Arc::new(EpisodeBlock::from_meta(m, tz)));
        Record::with_block(action, block)
    }

    /// Builds the record of `action` with an episode block made once for all its actions.
    pub fn with_block(action: Action<'_>, episode: Option<Arc<EpisodeBlock>>) -> Record {
        RecordRef::new(action, episode).into_owned()
    }

    /// The record as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record always serialises")
    }

    /// Appends the JSON form to `out` (the forwarders' hot path: no intermediate `String`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("a record always serialises");
    }

    /// Appends the Elasticsearch document of the record: the same fields with the same names,
    /// except that `is_live` is a JSON boolean (the index templates map it as one, as the
    /// successor pipeline converted it; Elasticsearch refuses 1/0 for a boolean).
    pub fn write_es_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &EsDocument(self)).expect("a record always serialises");
    }

    /// Appends the record (`es`: its Elasticsearch document) with the `geoip` / `ua` objects of
    /// `extra` after its own fields, as Logstash's filters added them.
    pub fn write_enriched_json(&self, out: &mut Vec<u8>, extra: &Extra, es: bool) {
        self.write_shaped_json(out, Some(extra), None, es);
    }

    /// Appends the record (`es`: its Elasticsearch document) as a sink sends it: with the
    /// enrichment of `extra` and the personal fields of `shown` (pseudonymized ids, shortened
    /// addresses; see [`crate::privacy`]) in place of the journaled ones.
    pub fn write_shaped_json(
        &self,
        out: &mut Vec<u8>,
        extra: Option<&Extra>,
        shown: Option<&crate::privacy::Shown>,
        es: bool,
    ) {
        serde_json::to_writer(out, &Shaped(self, extra, shown, es))
            .expect("a record always serialises");
    }

    fn serialize_as<S: Serializer>(
        &self,
        s: S,
        live_as_bool: bool,
        extra: Option<&Extra>,
        shown: Option<&crate::privacy::Shown>,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("action_id", &self.action_id)?;
        m.serialize_entry("timestamp", &timefmt::python_isoformat_utc(self.created_us))?;
        m.serialize_entry("mpid", &self.mpid)?;
        let (session_id, huid, chain) = match shown {
            Some(p) => (&*p.session_id, p.huid.as_deref(), p.ip_chain.as_deref()),
            None => (
                self.session_id.as_str(),
                self.huid.as_deref(),
                self.ip_chain.as_deref(),
            ),
        };
        m.serialize_entry("session_id", session_id)?;
        m.serialize_entry("huid", huid.unwrap_or("None"))?;
        if !extra.is_some_and(|x| x.drop_useragent) {
            m.serialize_entry("useragent", &self.useragent)?;
        }
        m.serialize_entry("action", &self.action)?;
        let mut ips = chain.map(|c| c.split(',').map(str::trim));
        m.serialize_entry("ip", &ips.as_mut().and_then(|i| i.next()))?;
        const PROXIES: [&str; 4] = ["proxy1", "proxy2", "proxy3", "proxy4"];
        for (n, proxy) in ips.into_iter().flatten().enumerate() {
            match PROXIES.get(n) {
                Some(k) => m.serialize_entry(k, proxy)?,
                None => m.serialize_entry(&format!("proxy{}", n + 1), proxy)?,
            }
        }
        if live_as_bool {
            m.serialize_entry("is_live", &self.is_live)?;
        } else {
            m.serialize_entry("is_live", &(self.is_live as u8))?;
        }
        match &self.episode {
            Some(e) => m.serialize_entry("episode", e.as_ref())?,
            None => m.serialize_entry("episode", &Empty {})?,
        }
        if let Some(x) = extra {
            if let Some(g) = &x.geoip {
                m.serialize_entry("geoip", g.as_ref())?;
            }
            if let Some(u) = &x.ua {
                m.serialize_entry("ua", u.as_ref())?;
            }
        }
        m.end()
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(s, false, None, None)
    }
}

struct EsDocument<'a>(&'a Record);

impl Serialize for EsDocument<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_as(s, true, None, None)
    }
}

/// A record (or, with `.3`, its Elasticsearch document) with its enrichment and the personal
/// fields a sink shows.
struct Shaped<'a>(
    &'a Record,
    Option<&'a Extra>,
    Option<&'a crate::privacy::Shown>,
    bool,
);

impl Serialize for Shaped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_as(s, self.3, self.1, self.2)
    }
}

struct Empty {}

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

impl Serialize for ActionBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("type", &self.kind)?;
        m.serialize_entry("inpoint", &self.inpoint)?;
        m.serialize_entry("outpoint", &self.outpoint)?;
        m.serialize_entry("length", &self.length)?;
        m.serialize_entry("is_playing", &self.is_playing)?;
        m.end()
    }
}

impl Serialize for EpisodeBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("title", &self.title)?;
        m.serialize_entry("duration", &self.duration)?;
        m.serialize_entry("start", &self.start)?;
        if let Some((course, series)) = &self.series {
            m.serialize_entry("course", course)?;
            m.serialize_entry("series", series)?;
            // Only a DCE series id (`YYYYTTCCCCC`) holds a year, term and course number; a
            // stock series id (a UUID) gives none of the three rather than slices of itself.
            if let Some(code) = crate::episode_meta::CourseCode::of(series) {
                m.serialize_entry("year", code.year)?;
                m.serialize_entry("term", code.term)?;
                m.serialize_entry("cdn", code.crn)?;
            }
        }
        if let Some(t) = &self.kind {
            m.serialize_entry("type", t)?;
        }
        if let Some(d) = &self.description {
            m.serialize_entry("description", d)?;
        }
        m.end()
    }
}
