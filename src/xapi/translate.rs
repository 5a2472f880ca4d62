//! Journaled actions → xAPI video-profile statements, in journal order, deterministically.
//!
//! - A *video session* is one Opencast session (`session_id`) on one episode, from its first
//!   action until it has been silent for the session gap (`XAPI_SESSION_GAP`, 30 minutes): the
//!   first action of a video session is `initialized`, whose id is the session's `session-id`.
//!   That id is a name-based UUID of the engage URL, Opencast's session id, the episode and the
//!   session's first action id, so the same journal always gives the same ids.
//! - `PLAY`, `PAUSE`, `SEEK` become `played`, `paused`, `seeked` (their ids from the action id);
//!   heartbeats and footprints send nothing and feed the played segments; every other action
//!   type is counted, not turned into a verb.
//! - What was played follows the rules of `harvester report` ([`crate::report::rules`]): a
//!   heartbeat session's heartbeats, else its plays ended by the next event. `progress` is the
//!   played seconds over the length, `completed` is sent once, when it first reaches the
//!   completion threshold (never for a live stream without a duration: it has no end).
//! - A session silent for the gap (known when the journal reaches an action that much later)
//!   is `terminated`, preceded by a `paused` when it was still playing (the profile wants one
//!   before `terminated`). Its later actions, if any, open a new video session.
//! - Every position is bounded (below 0 is 0, past the end is the end); a live stream without a
//!   duration has as its `length` the furthest position the session reached.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::profile::{self, Verb};
use crate::privacy::SinkPrivacy;
use crate::record::{EpisodeBlock, Record};
use crate::report::input::Action;
use crate::report::rules::{self, Anomalies, Session};
use crate::report::segments::Segments;

/// How statements are made.
#[derive(Debug, Clone)]
pub struct XapiShape {
    /// The engage node's base URL (with its trailing slash): the actors' home page, and the
    /// base of activity ids.
    pub engage: reqwest::Url,
    /// `XAPI_COMPLETION_THRESHOLD`, in (0, 1] with at most 3 decimals.
    pub threshold: f64,
    /// `XAPI_SESSION_GAP`, microseconds.
    pub gap_us: i64,
}

impl XapiShape {
    pub const DEFAULT_GAP_S: u64 = 1800;

    /// A shape for a client that makes no statement (`check`'s probe).
    pub fn probe() -> XapiShape {
        XapiShape {
            engage: reqwest::Url::parse("http://localhost/").expect("a URL"),
            threshold: 1.0,
            gap_us: XapiShape::DEFAULT_GAP_S as i64 * 1_000_000,
        }
    }
}

/// One statement, as sent.
#[derive(Debug, Clone)]
pub struct Statement {
    pub id: Uuid,
    pub verb: Verb,
    /// The action it was made of (for a dead letter: which record).
    pub action_id: i64,
    pub json: String,
}

/// Figures of a translation.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct XapiFigures {
    pub actions: u64,
    pub initialized: u64,
    pub played: u64,
    pub paused: u64,
    pub seeked: u64,
    pub completed: u64,
    pub terminated: u64,
    /// Heartbeats and footprints (they feed the segments).
    pub heartbeats: u64,
    /// Actions of other types (counted, not turned into verbs).
    pub other_actions: u64,
    /// Positions a statement reads (or a heartbeat's end) that were bounded (below 0, past the
    /// end, absurd) or missing.
    pub positions_corrected: u64,
    /// Actions of no known viewer: Opencast kept both the session and the user back
    /// (`-omitted-`), so they belong to nobody's session and make no statement.
    pub unattributed: u64,
    /// Heartbeats covering more than the time since the session's previous action allows
    /// (twice it, and at least a minute): not believed, they add nothing to what was played.
    pub implausible_heartbeats: u64,
}

/// Who a video session belongs to: Opencast's session id (`s:…`); when Opencast keeps it back
/// (`-omitted-`, empty), the logged-in user (`u:…`: one session per user and episode, split by
/// the gap); `None` when neither names anybody (the actions of everyone not logged in would
/// otherwise make one session credited to one actor).
fn viewer(r: &Record) -> Option<String> {
    if !crate::privacy::is_marker(&r.session_id) {
        return Some(format!("s:{}", r.session_id));
    }
    match r.huid.as_deref() {
        Some(h) if !crate::privacy::is_marker(h) => Some(format!("u:{h}")),
        _ => None,
    }
}

/// Microseconds between two sweeps for silent sessions.
const SWEEP_US: i64 = 60 * 1_000_000;

/// The namespace of our name-based statement ids (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_93b7_4d0c_8e25_b1d4_7a90_c3e1);

/// A name-based UUID: the SHA-1 of our namespace and the name (as RFC 9562's version 5), but
/// marked version 4, because the video profile's schema for `session-id` (video.jsonld) is a
/// version-4 pattern; the bits carry no meaning for an LRS, and the same name always gives the
/// same id.
pub fn uuid5(name: &str) -> Uuid {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(NAMESPACE.as_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// A video session in progress.
struct Open {
    id: Uuid,
    actor: Arc<str>,
    rules: Session,
    watched: Segments,
    completed: bool,
    playing: bool,
    /// The last known position (seconds).
    pos: u32,
    furthest: u32,
    last_us: i64,
    last_action: i64,
    episode: Option<Arc<EpisodeBlock>>,
    mpid: Box<str>,
}

type Key = (Box<str>, Box<str>);

/// Turns records into statements; fed every record of the journal in order.
pub struct Translator {
    shape: Arc<XapiShape>,
    privacy: Option<SinkPrivacy>,
    open: HashMap<Key, Open, foldhash::fast::RandomState>,
    clock_us: i64,
    next_sweep_us: i64,
    anomalies: Anomalies,
    pub figures: XapiFigures,
    /// Catching up: the state follows the records, no statement is made.
    quiet: bool,
}

impl Translator {
    pub fn new(shape: Arc<XapiShape>, privacy: Option<SinkPrivacy>) -> Translator {
        Translator {
            shape,
            privacy,
            open: HashMap::default(),
            clock_us: i64::MIN,
            next_sweep_us: i64::MIN,
            anomalies: Anomalies::default(),
            figures: XapiFigures::default(),
            quiet: false,
        }
    }

    /// Whether statements are made (`false` while catching up with the records before a
    /// cursor: their statements were sent already).
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// The statements of `r` (and of sessions its time shows ended) appended to `out`.
    pub fn feed(&mut self, r: &Record, out: &mut Vec<Statement>) {
        self.figures.actions += 1;
        if r.created_us > self.clock_us {
            self.clock_us = r.created_us;
        }
        if self.clock_us >= self.next_sweep_us {
            self.sweep(out);
            self.next_sweep_us = self.clock_us.saturating_add(SWEEP_US);
        }
        let Some(who) = viewer(r) else {
            // Neither the session nor the user names a viewer (Opencast's `log.session` and
            // `log.user` off): the action cannot be put in anybody's session.
            self.figures.unattributed += 1;
            return;
        };
        let key: Key = (who.as_str().into(), r.mpid.as_str().into());
        if let Some(o) = self.open.get(&key) {
            if r.created_us.saturating_sub(o.last_us) > self.shape.gap_us {
                let o = self.open.remove(&key).expect("present");
                self.terminate(o, out);
            }
        }
        if !self.open.contains_key(&key) {
            let o = self.start(r, &who);
            self.figures.initialized += 1;
            if !self.quiet {
                out.push(self.make(&o, o.id, Verb::Initialized, r.action_id, r.created_us, None));
            }
            self.open.insert(key.clone(), o);
        }
        let mut o = self.open.remove(&key).expect("present");
        self.apply(&mut o, r, out);
        self.open.insert(key, o);
    }

    /// Ends every session silent for the gap, oldest first (a fixed order: ids and times).
    fn sweep(&mut self, out: &mut Vec<Statement>) {
        let limit = self.clock_us.saturating_sub(self.shape.gap_us);
        let mut ended: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.last_us < limit)
            .map(|(k, _)| k.clone())
            .collect();
        if ended.is_empty() {
            return;
        }
        let mut sessions: Vec<Open> = ended
            .drain(..)
            .map(|k| self.open.remove(&k).expect("present"))
            .collect();
        sessions.sort_by_key(|o| (o.last_us, o.last_action));
        for o in sessions {
            self.terminate(o, out);
        }
    }

    /// A new video session of viewer `who` (see [`viewer`]) starting with `r`. Its id names
    /// everything a statement's content depends on: the engage URL, the viewer (pseudonymized
    /// under a key, so another key gives other ids), the episode, the session's first action
    /// and the completion threshold; every other statement id of the session derives from it.
    fn start(&mut self, r: &Record, who: &str) -> Open {
        let who = match (&mut self.privacy, who.split_once(':')) {
            (Some(p), Some((kind, id))) => format!("{kind}:{}", p.id(id)),
            _ => who.to_string(),
        };
        let id = uuid5(&format!(
            "session\n{}\n{who}\n{}\n{}\n{}",
            self.shape.engage, r.mpid, r.action_id, self.shape.threshold
        ));
        let actor = match r.huid.as_deref() {
            Some(h) if !crate::privacy::is_marker(h) => match &mut self.privacy {
                Some(p) => p.id(h),
                None => h.into(),
            },
            // Not logged in, or Opencast keeps the user back (`-omitted-`).
            _ => "anonymous".into(),
        };
        Open {
            id,
            actor,
            rules: Session::new(r.created_us),
            watched: Segments::default(),
            completed: false,
            playing: false,
            pos: 0,
            furthest: 0,
            last_us: r.created_us,
            last_action: r.action_id,
            episode: r.episode.clone(),
            mpid: r.mpid.as_str().into(),
        }
    }

    fn apply(&mut self, o: &mut Open, r: &Record, out: &mut Vec<Statement>) {
        if r.episode.is_some() {
            o.episode = r.episode.clone();
        }
        let cap = rules::position_cap(duration_ms(o));
        let kind = r.action.kind.as_deref().unwrap_or("");
        let is = |s: &str| kind.eq_ignore_ascii_case(s);
        let a = Action::of(r);
        if (is("HEARTBEAT") || is("FOOTPRINT")) && !plausible_heartbeat(o, r) {
            self.figures.implausible_heartbeats += 1;
        } else {
            o.rules.apply(
                &a,
                cap,
                self.shape.gap_us,
                &mut o.watched,
                &mut self.anomalies,
            );
        }
        let mut n = Anomalies::default();
        let at = rules::position(r.action.inpoint.or(r.action.outpoint), cap, &mut n);
        let verb = if is("PLAY") {
            o.pos = at.unwrap_or(o.pos);
            o.playing = true;
            Some(Verb::Played)
        } else if is("PAUSE") {
            o.pos = at.unwrap_or(o.pos);
            o.playing = false;
            Some(Verb::Paused)
        } else if is("SEEK") {
            Some(Verb::Seeked)
        } else if is("HEARTBEAT") || is("FOOTPRINT") {
            self.figures.heartbeats += 1;
            if let Some(p) = rules::position(r.action.outpoint, cap, &mut n) {
                o.pos = p;
            }
            if is("HEARTBEAT") {
                o.playing = r.action.is_playing;
            }
            None
        } else {
            self.figures.other_actions += 1;
            None
        };
        let mut seek = None;
        if verb == Some(Verb::Seeked) {
            let from = rules::position(r.action.inpoint, cap, &mut n).unwrap_or(o.pos);
            let to = rules::position(r.action.outpoint, cap, &mut n).unwrap_or(from);
            o.pos = to;
            if r.action.is_playing {
                o.playing = true;
            }
            seek = Some((from, to));
        }
        o.furthest = o.furthest.max(o.pos);
        // The positions this action's statement reads that had to be bounded or were missing.
        self.figures.positions_corrected += n.total();
        self.anomalies.add(&n);
        o.last_us = o.last_us.max(r.created_us);
        o.last_action = r.action_id;
        if let Some(v) = verb {
            self.count(v);
            if !self.quiet {
                let id = uuid5(&format!("action\n{}\n{}\n{}", o.id, r.action_id, v.word()));
                let result = self.result(o, v, seek);
                out.push(self.make(o, id, v, r.action_id, r.created_us, Some(result)));
            }
        }
        if !o.completed && duration_ms(o).is_some() {
            let (progress, _) = self.progress(o);
            if progress >= self.shape.threshold {
                o.completed = true;
                self.count(Verb::Completed);
                if self.quiet {
                    return;
                }
                let id = uuid5(&format!("completed\n{}", o.id));
                let result = self.result(o, Verb::Completed, None);
                out.push(self.make(
                    o,
                    id,
                    Verb::Completed,
                    r.action_id,
                    r.created_us,
                    Some(result),
                ));
            }
        }
    }

    /// `paused` (when still playing) and `terminated` of a session that ended.
    fn terminate(&mut self, o: Open, out: &mut Vec<Statement>) {
        if self.quiet {
            if o.playing {
                self.count(Verb::Paused);
            }
            self.count(Verb::Terminated);
            return;
        }
        if o.playing {
            let id = uuid5(&format!("paused-at-end\n{}", o.id));
            let result = self.result(&o, Verb::Paused, None);
            self.count(Verb::Paused);
            out.push(self.make(&o, id, Verb::Paused, o.last_action, o.last_us, Some(result)));
        }
        let id = uuid5(&format!("terminated\n{}", o.id));
        let result = self.result(&o, Verb::Terminated, None);
        self.count(Verb::Terminated);
        out.push(self.make(
            &o,
            id,
            Verb::Terminated,
            o.last_action,
            o.last_us,
            Some(result),
        ));
    }

    fn count(&mut self, v: Verb) {
        let f = &mut self.figures;
        match v {
            Verb::Initialized => f.initialized += 1,
            Verb::Played => f.played += 1,
            Verb::Paused => f.paused += 1,
            Verb::Seeked => f.seeked += 1,
            Verb::Completed => f.completed += 1,
            Verb::Terminated => f.terminated += 1,
        }
    }

    /// (progress rounded to 3 decimals, played seconds).
    fn progress(&self, o: &Open) -> (f64, u64) {
        let played = o.rules.played(&o.watched).seconds();
        let length = length_s(o);
        let p = if length > 0.0 {
            (played as f64 / length).min(1.0)
        } else {
            0.0
        };
        (round3(p), played)
    }

    /// The `result` of a statement of verb `v` (`seek`: from and to).
    fn result(&self, o: &Open, v: Verb, seek: Option<(u32, u32)>) -> Value {
        let mut ext = Map::new();
        match v {
            Verb::Seeked => {
                let (from, to) = seek.unwrap_or((o.pos, o.pos));
                ext.insert(profile::TIME_FROM.into(), json!(at(from, o)));
                ext.insert(profile::TIME_TO.into(), json!(at(to, o)));
            }
            Verb::Played => {
                ext.insert(profile::TIME.into(), json!(at(o.pos, o)));
            }
            _ => {
                let (progress, _) = self.progress(o);
                ext.insert(profile::TIME.into(), json!(at(o.pos, o)));
                ext.insert(profile::PROGRESS.into(), json!(progress));
                ext.insert(
                    profile::PLAYED_SEGMENTS.into(),
                    json!(segments_string(o.rules.played(&o.watched), length_s(o))),
                );
            }
        }
        let mut result = Map::new();
        if v == Verb::Completed {
            let (_, played) = self.progress(o);
            result.insert("completion".into(), json!(true));
            result.insert("duration".into(), json!(format!("PT{played}S")));
        }
        result.insert("extensions".into(), Value::Object(ext));
        Value::Object(result)
    }

    /// The whole statement.
    fn make(
        &self,
        o: &Open,
        id: Uuid,
        verb: Verb,
        action_id: i64,
        at_us: i64,
        result: Option<Value>,
    ) -> Statement {
        let engage = &self.shape.engage;
        let mut definition = Map::new();
        definition.insert("type".into(), json!(profile::VIDEO));
        let ep = o.episode.as_deref();
        if let Some(t) = ep
            .and_then(|e| e.title.as_deref())
            .filter(|t| !t.is_empty())
        {
            definition.insert("name".into(), json!({ "und": t }));
        }
        let mut activities = Map::new();
        activities.insert(
            "category".into(),
            json!([{ "id": profile::PROFILE, "objectType": "Activity",
                     "definition": { "type": profile::PROFILE_TYPE } }]),
        );
        if let Some((course, series)) = ep.and_then(|e| e.series.as_ref()) {
            let mut def = Map::new();
            def.insert("type".into(), json!(profile::COURSE));
            if !course.is_empty() {
                def.insert("name".into(), json!({ "und": course }));
            }
            activities.insert(
                "parent".into(),
                json!([{ "id": activity_id(engage, "series", series), "objectType": "Activity",
                         "definition": Value::Object(def) }]),
            );
        }
        let mut ext = Map::new();
        ext.insert(profile::SESSION_ID.into(), json!(o.id.to_string()));
        ext.insert(profile::LENGTH.into(), json!(round3(length_s(o))));
        if self.shape.threshold != 1.0 {
            ext.insert(
                profile::COMPLETION_THRESHOLD.into(),
                json!(self.shape.threshold),
            );
        }
        let mut st = Map::new();
        st.insert("id".into(), json!(id.to_string()));
        st.insert(
            "actor".into(),
            json!({ "objectType": "Agent",
                    "account": { "homePage": engage.as_str(), "name": &*o.actor } }),
        );
        st.insert(
            "verb".into(),
            json!({ "id": verb.iri(), "display": { "en-US": verb.word() } }),
        );
        st.insert(
            "object".into(),
            json!({ "objectType": "Activity", "id": activity_id(engage, "play", &o.mpid),
                    "definition": Value::Object(definition) }),
        );
        if let Some(r) = result {
            st.insert("result".into(), r);
        }
        st.insert(
            "context".into(),
            json!({ "contextActivities": Value::Object(activities),
                    "extensions": Value::Object(ext) }),
        );
        st.insert("timestamp".into(), json!(timestamp(at_us)));
        st.insert("version".into(), json!("1.0.3"));
        Statement {
            id,
            verb,
            action_id,
            json: Value::Object(st).to_string(),
        }
    }
}

fn duration_ms(o: &Open) -> Option<i64> {
    o.episode
        .as_deref()
        .and_then(|e| e.duration)
        .filter(|d| *d > 0)
}

/// The length in seconds: the episode's duration, else (a live stream) the furthest position
/// reached.
fn length_s(o: &Open) -> f64 {
    match duration_ms(o) {
        Some(d) => (d.min(rules::MAX_POSITION * 1000) as f64) / 1000.0,
        None => f64::from(o.furthest),
    }
}

/// A position as the profile's `time` (seconds), never past the length (positions are whole
/// seconds rounded up at the end, the length has milliseconds).
fn at(pos: u32, o: &Open) -> f64 {
    round3(f64::from(pos).min(length_s(o)))
}

/// Whether a heartbeat's stretch fits the time since the session's previous action: a player
/// reports what it played since its last report, so twice that (and at least a minute) is
/// generous; a heartbeat claiming hours after seconds (`outpoint` 10^12) is a forged or broken
/// report, and believing it would make a `completed`.
fn plausible_heartbeat(o: &Open, r: &Record) -> bool {
    let (Some(i), Some(out)) = (r.action.inpoint, r.action.outpoint) else {
        return true; // the rules count a missing position themselves
    };
    let since_s = r.created_us.saturating_sub(o.last_us).max(0) / 1_000_000;
    let allowed = since_s.saturating_mul(2).max(60);
    out.saturating_sub(i.max(0)) <= allowed
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `{engage}{kind}/{id}`, the id percent-encoded as one path segment.
fn activity_id(engage: &reqwest::Url, kind: &str, id: &str) -> String {
    let mut u = engage.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().push(kind).push(id);
    }
    u.to_string()
}

/// The profile's `played-segments`: `from[.]to` stretches joined by `[,]`, 3 decimals, none
/// past `length`.
pub fn segments_string(s: &Segments, length: f64) -> String {
    let mut out = String::new();
    for (n, (a, b)) in s.spans().iter().enumerate() {
        if n > 0 {
            out.push_str("[,]");
        }
        let (a, b) = (f64::from(*a).min(length), f64::from(*b).min(length));
        out.push_str(&format!("{a:.3}[.]{b:.3}"));
    }
    out
}

/// RFC 3339 with milliseconds, in UTC.
fn timestamp(us: i64) -> String {
    crate::timefmt::utc(us).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ActionBlock;

    fn shape() -> Arc<XapiShape> {
        Arc::new(XapiShape {
            engage: reqwest::Url::parse("https://engage.example.edu/").unwrap(),
            threshold: 0.9,
            gap_us: 1800 * 1_000_000,
        })
    }

    fn rec(id: i64, t_s: i64, kind: &str, inp: i64, out: i64, playing: bool) -> Record {
        Record {
            action_id: id,
            created_us: 1_458_000_000_000_000 + t_s * 1_000_000,
            mpid: "mp 1/x".into(),
            session_id: "s1".into(),
            huid: Some("jdoe".into()),
            useragent: None,
            action: ActionBlock {
                kind: Some(kind.into()),
                inpoint: Some(inp),
                outpoint: Some(out),
                length: None,
                is_playing: playing,
            },
            ip_chain: None,
            is_live: false,
            episode: Some(Arc::new(EpisodeBlock {
                title: Some("Lecture".into()),
                duration: Some(100_000),
                start: None,
                series: Some(("Course".into(), "ser-1".into())),
                kind: None,
                description: None,
            })),
        }
    }

    fn run(records: &[Record]) -> (Vec<Statement>, XapiFigures) {
        let mut t = Translator::new(shape(), None);
        let mut out = Vec::new();
        for r in records {
            t.feed(r, &mut out);
        }
        (out, t.figures.clone())
    }

    #[test]
    fn event_session_verbs_progress_completion_and_termination() {
        let recs = vec![
            rec(1, 0, "PLAY", 0, 0, true),
            rec(2, 50, "SEEK", 50, -20, true),
            rec(3, 95, "PAUSE", 45, 45, false),
            rec(4, 96, "RESIZE", 0, 0, false),
            rec(5, 97, "PLAY", 45, 45, true),
            rec(6, 160, "PAUSE", 100, 100, false),
            // Another session's action an hour later ends this one.
            Record {
                session_id: "s2".into(),
                ..rec(7, 3700, "PLAY", 0, 0, true)
            },
        ];
        let (st, f) = run(&recs);
        let verbs: Vec<&str> = st.iter().map(|s| s.verb.word()).collect();
        assert_eq!(
            verbs,
            [
                "initialized",
                "played",
                "seeked",
                "paused",
                "played",
                "paused",
                "completed",
                "terminated",
                "initialized",
                "played"
            ]
        );
        assert_eq!(f.other_actions, 1);
        let v: Vec<Value> = st
            .iter()
            .map(|s| serde_json::from_str(&s.json).unwrap())
            .collect();
        let session = v[0]["id"].clone();
        for s in &v[..8] {
            assert_eq!(s["context"]["extensions"][profile::SESSION_ID], session);
            assert_eq!(s["context"]["extensions"][profile::LENGTH], 100.0);
            assert_eq!(
                s["context"]["extensions"][profile::COMPLETION_THRESHOLD],
                0.9
            );
            assert_eq!(s["actor"]["account"]["name"], "jdoe");
            assert_eq!(
                s["object"]["id"],
                "https://engage.example.edu/play/mp%201%2Fx"
            );
        }
        // The seek to -20 is clamped to 0.
        assert_eq!(v[2]["result"]["extensions"][profile::TIME_TO], 0.0);
        // Played 0..50, then 0..45 (clamped seek, then pause at 45), then 45..100.
        assert_eq!(v[6]["result"]["completion"], true);
        assert_eq!(v[6]["result"]["extensions"][profile::PROGRESS], 1.0);
        assert_eq!(
            v[6]["result"]["extensions"][profile::PLAYED_SEGMENTS],
            "0.000[.]100.000"
        );
        assert_eq!(v[6]["result"]["duration"], "PT100S");
        assert_eq!(
            v[0]["context"]["contextActivities"]["parent"][0]["id"],
            "https://engage.example.edu/series/ser-1"
        );
        // Deterministic: the same records give the same bytes.
        let (again, _) = run(&recs);
        assert_eq!(
            st.iter().map(|s| &s.json).collect::<Vec<_>>(),
            again.iter().map(|s| &s.json).collect::<Vec<_>>()
        );
        // Every id is distinct.
        let mut ids: Vec<Uuid> = st.iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), st.len());
    }

    /// Catching up quietly with the first records, then translating the rest, gives the rest's
    /// statements exactly as a translation of all of them does.
    #[test]
    fn a_quiet_catch_up_leaves_the_same_state() {
        let mut recs = vec![rec(1, 0, "PLAY", 0, 0, true)];
        for k in 0..10 {
            recs.push(rec(
                2 + k,
                10 * (k + 1),
                "HEARTBEAT",
                10 * k,
                10 * (k + 1),
                true,
            ));
        }
        recs.push(rec(20, 200, "PAUSE", 100, 100, false));
        recs.push(Record {
            session_id: "s2".into(),
            ..rec(21, 4000, "PLAY", 0, 0, true)
        });
        let (all, _) = run(&recs);
        for cut in 0..recs.len() {
            let mut t = Translator::new(shape(), None);
            let mut out = Vec::new();
            t.set_quiet(true);
            for r in &recs[..cut] {
                t.feed(r, &mut out);
            }
            assert!(out.is_empty());
            t.set_quiet(false);
            for r in &recs[cut..] {
                t.feed(r, &mut out);
            }
            let tail: Vec<&String> = all[all.len() - out.len()..]
                .iter()
                .map(|s| &s.json)
                .collect();
            assert_eq!(
                out.iter().map(|s| &s.json).collect::<Vec<_>>(),
                tail,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn heartbeats_send_nothing_but_feed_progress() {
        let mut recs = vec![rec(1, 0, "PLAY", 0, 0, true)];
        for k in 0..10 {
            recs.push(rec(
                2 + k,
                10 * (k + 1),
                "HEARTBEAT",
                10 * k,
                10 * (k + 1),
                true,
            ));
        }
        let (st, f) = run(&recs);
        let verbs: Vec<&str> = st.iter().map(|s| s.verb.word()).collect();
        assert_eq!(verbs, ["initialized", "played", "completed"]);
        assert_eq!(f.heartbeats, 10);
        let v: Value = serde_json::from_str(&st[2].json).unwrap();
        assert_eq!(v["result"]["extensions"][profile::PROGRESS], 0.9);
    }

    /// Two people whose Opencast session id is kept back (`-omitted-`, or empty) are two
    /// sessions with their own actors (it once made one session credited to the first); the
    /// actions of nobody known make no statement at all.
    #[test]
    fn omitted_sessions_are_never_shared_between_people() {
        for marker in ["-omitted-", ""] {
            let mut alice = rec(1, 0, "PLAY", 0, 0, true);
            alice.session_id = marker.into();
            alice.huid = Some("alice".into());
            let mut bob = rec(2, 5, "PLAY", 50, 50, true);
            bob.session_id = marker.into();
            bob.huid = Some("bob".into());
            let mut nobody = rec(3, 6, "PLAY", 10, 10, true);
            nobody.session_id = marker.into();
            nobody.huid = Some("-omitted-".into());
            let (st, f) = run(&[alice, bob, nobody]);
            let v: Vec<Value> = st
                .iter()
                .map(|s| serde_json::from_str(&s.json).unwrap())
                .collect();
            let actors: Vec<&str> = v
                .iter()
                .map(|s| s["actor"]["account"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(actors, ["alice", "alice", "bob", "bob"], "{marker:?}");
            assert_ne!(
                v[0]["context"]["extensions"][profile::SESSION_ID],
                v[2]["context"]["extensions"][profile::SESSION_ID]
            );
            assert_eq!(f.unattributed, 1);
        }
        // `-omitted-` users with a real session are `anonymous`, like those not logged in.
        let mut r = rec(1, 0, "PLAY", 0, 0, true);
        r.huid = Some("-omitted-".into());
        let (st, _) = run(&[r]);
        assert!(
            st[0].json.contains(r#""name":"anonymous""#),
            "{}",
            st[0].json
        );
    }

    /// A heartbeat claiming far more than the time since the previous action (outpoint 10^12,
    /// ten seconds after a PLAY) adds nothing: it once made a `completed` at 100%. No `time` or
    /// segment is ever past the length, even with positions rounded up to whole seconds.
    #[test]
    fn a_forged_heartbeat_completes_nothing_and_nothing_passes_the_end() {
        let mut recs = vec![
            rec(1, 0, "PLAY", 0, 0, true),
            rec(2, 10, "HEARTBEAT", -50, 1_000_000_000_000, true),
        ];
        recs.push(rec(3, 20, "PAUSE", 20, 20, false));
        let (st, f) = run(&recs);
        assert!(st.iter().all(|s| s.verb != Verb::Completed));
        assert_eq!(f.implausible_heartbeats, 1);
        // An episode of 99.5 s: a pause past its end is at 99.5, not 100.
        let mut short = rec(1, 0, "PLAY", 0, 0, true);
        let ep = EpisodeBlock {
            duration: Some(99_500),
            ..(*short.episode.clone().unwrap()).clone()
        };
        short.episode = Some(Arc::new(ep));
        let mut pause = short.clone();
        pause.action_id = 2;
        pause.created_us += 200_000_000;
        pause.action.kind = Some("PAUSE".into());
        pause.action.inpoint = Some(5_000);
        let (st, _) = run(&[short, pause]);
        let v: Value = serde_json::from_str(&st[2].json).unwrap();
        assert_eq!(v["result"]["extensions"][profile::TIME], 99.5, "{v}");
        assert!(v["result"]["extensions"][profile::PLAYED_SEGMENTS]
            .as_str()
            .unwrap()
            .ends_with("99.500"));
    }

    /// Every statement id depends on what its content depends on: another key or another
    /// completion threshold gives other ids for every verb (a replay under a new key once
    /// re-used the ids of played/paused/seeked and met 409s).
    #[test]
    fn ids_change_with_the_key_and_the_threshold() {
        let recs = vec![
            rec(1, 0, "PLAY", 0, 0, true),
            rec(2, 50, "PAUSE", 50, 50, false),
        ];
        let ids = |shape: Arc<XapiShape>, key: Option<&str>| -> Vec<Uuid> {
            let privacy = key.map(|k| {
                crate::privacy::Privacy {
                    key: Some(crate::privacy::PseudonymKey::new(k.as_bytes()).unwrap()),
                    ip: crate::privacy::IpPrivacy::Keep,
                }
                .for_sink()
            });
            let mut t = Translator::new(shape, privacy);
            let mut out = Vec::new();
            for r in &recs {
                t.feed(r, &mut out);
            }
            out.iter().map(|s| s.id).collect()
        };
        let base = ids(shape(), None);
        let keyed = ids(shape(), Some("k1-0123456789abcdef0123456789abcdef"));
        let rekeyed = ids(shape(), Some("k2-0123456789abcdef0123456789abcdef"));
        let other = ids(
            Arc::new(XapiShape {
                threshold: 0.95,
                ..(*shape()).clone()
            }),
            None,
        );
        for (a, b) in [(&base, &keyed), (&keyed, &rekeyed), (&base, &other)] {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_ne!(x, y);
            }
        }
        assert_eq!(base, ids(shape(), None));
    }

    #[test]
    fn segments_string_is_the_profiles() {
        let mut s = Segments::default();
        s.add(0, 12);
        s.add(14, 21);
        assert_eq!(
            segments_string(&s, 100.0),
            "0.000[.]12.000[,]14.000[.]21.000"
        );
        assert_eq!(
            segments_string(&s, 20.5),
            "0.000[.]12.000[,]14.000[.]20.500"
        );
    }
}
