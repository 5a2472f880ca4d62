//! Deterministic Opencast data from a seed: user actions, episodes and workflows.
//!
//! Nothing is stored: action `i` is computed from `(seed, i)` on demand and the actions are spread
//! evenly over the configured time range in id order, so any window or page is found by binary
//! search and rendered in microseconds, whatever the volume. Every quirk of
//! `shared/reference/opencast-api.md` appears somewhere in the data.

use std::fmt::Write as _;

use chrono_tz::Tz;

use super::family::Release;
use crate::timefmt;

/// Real search responses recorded from Harvard's Opencast, served verbatim for their ids.
pub const REAL_EPISODES: [&str; 2] = [
    include_str!("../../fixtures/search-episode-example-16x9Monostream-episode.json"),
    include_str!("../../fixtures/search-episode-example-HLS-episode.json"),
];
const REAL_IDS: [&str; 2] = [
    "83ebde9d-0812-4071-8fb7-a97c1472ceb9",
    "e8d2d1ac-0185-45f5-950f-518e447ebabc",
];

/// Actions per simulated viewing session (a PLAY, heartbeats and seeks, a PAUSE).
pub const SESSION_LEN: u64 = 25;

/// The shape of the generated data.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub seed: u64,
    /// Number of actions over the whole range.
    pub actions: u64,
    pub start_us: i64,
    pub end_us: i64,
    /// Episodes in the catalog (the first two are real recorded responses).
    pub episodes: u64,
    /// Every Nth session watches a media package the search endpoint does not know (0: never).
    pub unknown_every: u64,
    /// Every Nth episode is a live stream (its actions send `isPlaying: 2`).
    pub live_every: u64,
    /// Every Nth action is malformed (no session, or a bad date), for dead-letter tests (0: never).
    pub malformed_every: u64,
    pub first_id: i64,
    /// `created` in whole seconds, as MySQL/MariaDB's `DATETIME` column keeps it (stock releases).
    pub whole_seconds: bool,
}

impl DataConfig {
    pub fn new(seed: u64, actions: u64, start_us: i64, end_us: i64) -> DataConfig {
        DataConfig {
            seed,
            actions,
            start_us,
            end_us,
            episodes: 40,
            unknown_every: 20,
            live_every: 10,
            malformed_every: 0,
            first_id: 1000,
            whole_seconds: false,
        }
    }
}

/// SplitMix64: a fast, well-mixed hash of `(seed, n)`.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uuid(h1: u64, h2: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h1 >> 32,
        (h1 >> 16) & 0xffff,
        h1 & 0xfff,
        0x8000 | (h2 >> 48) & 0x3fff,
        h2 & 0xffff_ffff_ffff
    )
}

/// One generated action, in plain fields (tests build their expectations from these).
#[derive(Debug, Clone, PartialEq)]
pub struct SimAction {
    pub index: u64,
    pub id: i64,
    pub mpid: String,
    pub episode: Option<u64>,
    pub session_id: String,
    pub user_id: Option<String>,
    pub user_ip: String,
    pub user_agent: Option<String>,
    pub kind: &'static str,
    pub inpoint: i64,
    pub is_playing: i64,
    pub created_us: i64,
    /// The offset `created` is rendered in, in minutes east of UTC.
    pub offset_min: i32,
    pub millis: bool,
    pub malformed: Option<&'static str>,
}

/// What the actions of one viewing session share.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSession {
    pub index: u64,
    pub mpid: String,
    pub episode: Option<u64>,
    pub live: bool,
    pub session_id: String,
    pub user_id: Option<String>,
    pub user_ip: String,
    pub user_agent: Option<String>,
}

/// Writes `created` as Opencast does: `YYYY-MM-DDTHH:MM:SS[.mmm]` in a fixed offset, then `Z`
/// (when `z` and the offset is 0) or `±HH:MM`. Plain arithmetic: chrono's formatter cost the
/// simulator more than everything else it does per action.
pub fn write_created(out: &mut String, us: i64, offset_min: i32, millis: bool, z: bool) {
    let local = us.div_euclid(1_000_000) + offset_min as i64 * 60;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = timefmt::civil_from_days(days);
    let two = |out: &mut String, v: i64| {
        out.push((b'0' + (v / 10) as u8) as char);
        out.push((b'0' + (v % 10) as u8) as char);
    };
    if (0..=9999).contains(&y) {
        two(out, y / 100);
        two(out, y % 100);
    } else {
        // chrono's %Y: a sign and at least four digits outside 0..=9999.
        let _ = write!(out, "{y:+05}");
    }
    out.push('-');
    two(out, m);
    out.push('-');
    two(out, d);
    out.push('T');
    two(out, secs / 3600);
    out.push(':');
    two(out, secs / 60 % 60);
    out.push(':');
    two(out, secs % 60);
    if millis {
        let ms = (us / 1000).rem_euclid(1000);
        out.push('.');
        out.push((b'0' + (ms / 100) as u8) as char);
        two(out, ms % 100);
    }
    if z && offset_min == 0 {
        out.push('Z');
    } else {
        out.push(if offset_min < 0 { '-' } else { '+' });
        let o = offset_min.unsigned_abs() as i64;
        two(out, o / 60);
        out.push(':');
        two(out, o % 60);
    }
}

/// A generated episode.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEpisode {
    pub index: u64,
    pub mpid: String,
    pub live: bool,
    pub created_us: i64,
}

/// The generator: maps indices to actions and episodes, rendered as the release played
/// renders them.
#[derive(Debug, Clone)]
pub struct Data {
    pub cfg: DataConfig,
    release: Release,
    logs_all: bool,
}

/// The workflow definition the simulated site publishes with (the harvester's default).
pub const SIM_WORKFLOW: &str = "DCE-archive-publish-external";

impl Data {
    /// The DCE build's data.
    pub fn new(cfg: DataConfig) -> Data {
        Data::for_release(cfg, Release::Dce, false)
    }

    /// The data of `release`; `logs_all`: a 6.0+ site that turned `log.ip/user/session` on.
    pub fn for_release(cfg: DataConfig, release: Release, logs_all: bool) -> Data {
        Data {
            cfg,
            release,
            logs_all,
        }
    }

    pub fn release(&self) -> Release {
        self.release
    }

    /// Opencast writes `-omitted-` for the user, address and session (6.0+ defaults).
    pub fn omits(&self) -> bool {
        self.release.omits_by_default() && !self.logs_all
    }

    /// The series id of episode `k`'s course: DCE's `YYYYTTCCCCC`, or (stock) a UUID.
    pub fn series_id(&self, k: u64) -> String {
        let h = mix(self.cfg.seed ^ 0xE915, k);
        if self.release.is_stock() {
            return uuid(mix(self.cfg.seed ^ 0x5E1E5, h % 1000), h % 1000);
        }
        format!(
            "2015{}{:05}",
            ["01", "02", "03"][(k % 3) as usize],
            10000 + h % 90000
        )
    }

    fn created_raw(&self, i: u64) -> i64 {
        let span = (self.cfg.end_us - self.cfg.start_us).max(0) as i128;
        let n = self.cfg.actions.max(1) as i128;
        self.cfg.start_us + (i as i128 * span / n) as i64
    }

    /// `created` of action `i`, rounded to what is rendered (ms or whole seconds); non-decreasing.
    pub fn created(&self, i: u64) -> i64 {
        let raw = self.created_raw(i);
        if i % 2 == 1 && !self.cfg.whole_seconds {
            raw.div_euclid(1000) * 1000
        } else {
            timefmt::floor_second(raw)
        }
    }

    /// Index range of actions whose `created` second lies in `[start_s, end_s]` (inclusive).
    pub fn window(&self, start_us: i64, end_us: i64) -> std::ops::Range<u64> {
        let lo = self.first_at_or_after(timefmt::floor_second(start_us));
        let hi = self.first_at_or_after(timefmt::floor_second(end_us) + 1_000_000);
        lo..hi.max(lo)
    }

    /// Index range of actions whose `created` lies in `[lo_us, hi_us]` (both inclusive, to the
    /// microsecond: a stock `day` query's bounds).
    pub fn between(&self, lo_us: i64, hi_us: i64) -> std::ops::Range<u64> {
        let first = |t: i64| {
            let (mut lo, mut hi) = (0u64, self.cfg.actions);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.created(mid) < t {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let a = first(lo_us);
        let b = first(hi_us.saturating_add(1));
        a..b.max(a)
    }

    fn first_at_or_after(&self, t: i64) -> u64 {
        // created() is monotone except that odd indices keep milliseconds: compare by second.
        let (mut lo, mut hi) = (0u64, self.cfg.actions);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if timefmt::floor_second(self.created(mid)) < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn episode(&self, k: u64) -> SimEpisode {
        let mpid = if (k as usize) < REAL_IDS.len() {
            REAL_IDS[k as usize].to_string()
        } else {
            uuid(
                mix(self.cfg.seed ^ 0xE915, k),
                mix(self.cfg.seed ^ 0x0DE, k),
            )
        };
        SimEpisode {
            index: k,
            mpid,
            live: self.cfg.live_every > 0 && k % self.cfg.live_every == 3,
            created_us: self.cfg.start_us - (self.cfg.episodes as i64 - k as i64) * 3_600_000_000,
        }
    }

    pub fn find_episode(&self, mpid: &str) -> Option<SimEpisode> {
        (0..self.cfg.episodes)
            .map(|k| self.episode(k))
            .find(|e| e.mpid == mpid)
    }

    /// The parts of a viewing session its actions share: computed once per session when a
    /// page is rendered (formatting them per action was most of the simulator's CPU).
    pub fn session(&self, session: u64) -> SimSession {
        let seed = self.cfg.seed;
        let h = mix(seed, session);
        let unknown = self.cfg.unknown_every > 0 && (h >> 8) % self.cfg.unknown_every == 0;
        let (mpid, episode, live) = if unknown || self.cfg.episodes == 0 {
            (uuid(mix(seed ^ 0xDEAD, session), h), None, false)
        } else {
            let e = self.episode(h % self.cfg.episodes);
            (e.mpid, Some(e.index), e.live)
        };
        let omitted = h % 11 == 0;
        let user_id = if omitted {
            Some("-omitted-".to_string())
        } else if h % 7 == 0 {
            None
        } else {
            Some(format!("{:08}", (h >> 20) % 100_000_000))
        };
        let client = format!(
            "10.{}.{}.{}",
            (h >> 8) & 0xff,
            (h >> 16) & 0xff,
            (h >> 24) & 0xfe | 1
        );
        let user_ip = if omitted {
            "-omitted-".to_string()
        } else {
            match (h >> 40) % 3 {
                0 => client,
                1 => format!("{client}, 128.103.1.1"),
                _ => format!("{client},128.103.1.1 , 172.16.0.5"),
            }
        };
        let user_agent = if h % 13 == 0 {
            None
        } else {
            Some(format!(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{}.0 Safari/537.36",
                100 + (h >> 50) % 30
            ))
        };
        let mut s = SimSession {
            index: session,
            mpid,
            episode,
            live,
            session_id: format!("{:012x}", mix(seed ^ 0x5E55, session) & 0xffff_ffff_ffff),
            user_id,
            user_ip,
            user_agent,
        };
        if self.release.flat_session() {
            // Matterhorn 1.4–1.6 kept no user agent.
            s.user_agent = None;
        }
        if self.omits() {
            s.session_id = "-omitted-".into();
            s.user_id = Some("-omitted-".into());
            s.user_ip = "-omitted-".into();
        }
        s
    }

    pub fn action(&self, i: u64) -> SimAction {
        self.action_in(&self.session(i / SESSION_LEN), i)
    }

    /// Action `i` of session `s` (`s` must be `self.session(i / SESSION_LEN)`).
    fn action_in(&self, s: &SimSession, i: u64) -> SimAction {
        let j = i % SESSION_LEN;
        let kind = match j {
            0 => "PLAY",
            j if j == SESSION_LEN - 1 => "PAUSE",
            5 | 15 => "SEEK",
            12 => "VOLUME",
            20 => "FOOTPRINT",
            _ => "HEARTBEAT",
        };
        // `2` for a live stream is the DCE build's; stock releases send a boolean.
        let is_playing = if s.live && !self.release.is_stock() {
            2
        } else if kind == "PAUSE" {
            0
        } else {
            1
        };
        let malformed = if self.cfg.malformed_every > 0 && (i + 1) % self.cfg.malformed_every == 0 {
            Some(if (i / self.cfg.malformed_every) % 2 == 0 {
                "no-session"
            } else {
                "bad-date"
            })
        } else {
            None
        };
        SimAction {
            index: i,
            id: self.cfg.first_id + i as i64,
            mpid: s.mpid.clone(),
            episode: s.episode,
            session_id: s.session_id.clone(),
            user_id: s.user_id.clone(),
            user_ip: s.user_ip.clone(),
            user_agent: s.user_agent.clone(),
            kind,
            inpoint: (j * 10) as i64,
            is_playing,
            created_us: self.created(i),
            offset_min: [-300, 0, 60][(i % 3) as usize],
            millis: i % 2 == 1 && !self.cfg.whole_seconds,
            malformed,
        }
    }

    /// Renders the actions of `indices` as the elements of a page's `action` list, separated
    /// by commas; byte for byte what [`Data::write_action`] renders for each.
    pub fn write_actions(&self, out: &mut String, indices: &[u64]) {
        let mut session: Option<SimSession> = None;
        for (n, &i) in indices.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let k = i / SESSION_LEN;
            if session.as_ref().is_none_or(|s| s.index != k) {
                session = Some(self.session(k));
            }
            let s = session.as_ref().expect("set above");
            self.write_action(out, &self.action_in(s, i));
        }
    }

    /// Renders one action as Opencast's JSON, quirks included.
    pub fn write_action(&self, out: &mut String, a: &SimAction) {
        let i = a.index;
        // Numbers as strings on some rows, as Jettison does.
        let num = |out: &mut String, v: i64, quoted: bool| {
            let mut b = itoa::Buffer::new();
            if quoted {
                out.push('"');
                out.push_str(b.format(v));
                out.push('"');
            } else {
                out.push_str(b.format(v));
            }
        };
        out.push_str("{\"id\":");
        num(out, a.id, i % 17 == 0);
        out.push_str(",\"mediapackageId\":\"");
        out.push_str(&a.mpid);
        out.push('"');
        if self.release.flat_session() {
            // `UserActionImpl` of 1.4–1.6: userId, userIp and sessionId flat, in field order.
            if let Some(u) = &a.user_id {
                out.push_str(",\"userId\":\"");
                out.push_str(u);
                out.push('"');
            }
            out.push_str(",\"userIp\":\"");
            out.push_str(&a.user_ip);
            out.push('"');
            if a.malformed != Some("no-session") {
                out.push_str(",\"sessionId\":\"");
                out.push_str(&a.session_id);
                out.push('"');
            }
        } else if a.malformed != Some("no-session") {
            out.push_str(",\"sessionId\":{\"sessionId\":\"");
            out.push_str(&a.session_id);
            out.push('"');
            if let Some(u) = &a.user_id {
                out.push_str(",\"userId\":\"");
                out.push_str(u);
                out.push('"');
            }
            out.push_str(",\"userIp\":\"");
            out.push_str(&a.user_ip);
            out.push('"');
            if let Some(ua) = &a.user_agent {
                out.push_str(",\"userAgent\":\"");
                out.push_str(ua);
                out.push('"');
            }
            out.push('}');
        }
        let quoted = i % 5 == 0;
        out.push_str(",\"inpoint\":");
        num(out, a.inpoint, quoted);
        out.push_str(",\"outpoint\":");
        num(out, a.inpoint + 10, quoted);
        out.push_str(",\"length\":");
        num(out, 10, quoted);
        out.push_str(",\"type\":\"");
        out.push_str(a.kind);
        out.push_str("\",\"isPlaying\":");
        match (a.is_playing, i % 4) {
            (2, _) => out.push('2'),
            // 0/1 as numbers on some rows: the DCE build's; stock sends booleans.
            (p, 0) if !self.release.is_stock() => num(out, p, false),
            (p, _) => out.push_str(if p > 0 { "true" } else { "false" }),
        }
        out.push_str(",\"created\":\"");
        if a.malformed == Some("bad-date") {
            out.push_str("not-a-date");
        } else {
            let z = a.offset_min == 0 && i % 2 == 0;
            write_created(out, a.created_us, a.offset_min, a.millis, z);
        }
        out.push_str("\"}");
    }

    /// The search response for one episode index, as Opencast would send it.
    pub fn episode_json(&self, k: u64) -> serde_json::Value {
        if (k as usize) < REAL_EPISODES.len() {
            let v: serde_json::Value = serde_json::from_str(REAL_EPISODES[k as usize]).unwrap();
            let mut r = v["search-results"]["result"].clone();
            if self.release.is_stock() && r["mediapackage"].get("series").is_some() {
                r["mediapackage"]["series"] = serde_json::json!(self.series_id(k));
            }
            return r;
        }
        let e = self.episode(k);
        let h = mix(self.cfg.seed ^ 0xE915, k);
        let created = timefmt::utc(e.created_us);
        let mut mp = serde_json::json!({
            "id": e.mpid,
            "title": format!("Lecture {k}"),
            "creators": {"creator": "Professor Example"},
            "publications": "",
        });
        mp["duration"] = if k % 2 == 0 {
            serde_json::json!(format!("{}", 3_000_000 + k * 1000))
        } else {
            serde_json::json!(3_000_000 + k * 1000)
        };
        if k % 5 != 0 {
            mp["start"] = serde_json::json!(created.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        let series = self.series_id(k);
        if k % 7 != 0 {
            mp["series"] = if k % 2 == 0 && !self.release.is_stock() {
                serde_json::json!(series.parse::<u64>().unwrap())
            } else {
                serde_json::json!(series)
            };
            if k % 9 != 0 {
                mp["seriestitle"] = serde_json::json!(format!("Course {}", h % 1000));
            }
        }
        let track = uuid(h, k);
        let mut attachments = vec![
            serde_json::json!({"type": "presenter/player+preview", "ref": format!("track:{track}"),
                "url": format!("http://sim.invalid/static/{}/presenter.jpg", e.mpid)}),
            serde_json::json!({"type": "presentation/player+preview", "ref": format!("track:{track}"),
                "url": format!("http://sim.invalid/static/{}/presentation.jpg", e.mpid)}),
        ];
        for s in 0..(k % 4) {
            attachments.push(serde_json::json!({
                "type": "presentation/segment+preview",
                "ref": format!("track:{track};time=T00:{:02}:{:02}:0F1000", s * 3, (s * 17) % 60),
                "url": format!("http://sim.invalid/static/{}/slide{s}.jpg", e.mpid)}));
        }
        mp["attachments"] = if attachments.len() == 1 {
            serde_json::json!({"attachment": attachments[0]})
        } else {
            serde_json::json!({"attachment": attachments})
        };
        let mut r = serde_json::json!({
            "id": e.mpid,
            "org": "mh_default_org",
            "mediapackage": mp,
            "dcTitle": format!("Lecture {k}"),
            "dcCreated": created.with_timezone(&chrono::FixedOffset::west_opt(4 * 3600).unwrap())
                .format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        });
        if k % 3 != 2 {
            r["dcType"] = serde_json::json!(format!("L{:02}", k % 20));
        }
        if k % 4 == 1 {
            r["dcDescription"] = serde_json::json!(format!("Description of lecture {k}"));
        }
        r
    }

    /// When episode `k`'s index entry last changed (16.0+ `modified`): some time after it was
    /// created, so that `modified` order is not `created` order.
    pub fn episode_modified_us(&self, k: u64) -> i64 {
        self.episode(k).created_us + (mix(self.cfg.seed ^ 0x30D, k) % 5) as i64 * 5_400_000_000
    }

    /// The 16.0+ search result of episode `k` (`SearchResult.dehydrateForREST`): the same
    /// episode as [`Data::episode_json`], its media package passed through Gson (numbers as
    /// doubles) and its Dublin Core under `dc` as lists, `created` to the minute when the
    /// seconds are 0 (as the Dublin Core catalogue usually holds it).
    pub fn episode_json16(&self, k: u64) -> serde_json::Value {
        use serde_json::{json, Value};
        let legacy = self.episode_json(k);
        let mut mp = legacy["mediapackage"].clone();
        fn doubles(v: &mut Value) {
            match v {
                Value::Number(n) => {
                    if let Some(f) = n.as_f64() {
                        *v = json!(f);
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(doubles),
                Value::Object(o) => o.values_mut().for_each(doubles),
                _ => {}
            }
        }
        if let Some(d) = mp["duration"].as_str().and_then(|d| d.parse::<f64>().ok()) {
            mp["duration"] = json!(d);
        }
        doubles(&mut mp);
        let text = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let mut dc = serde_json::Map::new();
        dc.insert("identifier".into(), json!([mp["id"]]));
        for (term, key) in [
            ("title", "dcTitle"),
            ("type", "dcType"),
            ("description", "dcDescription"),
        ] {
            if let Some(v) = text(&legacy[key]) {
                dc.insert(term.into(), json!([v]));
            }
        }
        if let Some(c) = text(&legacy["dcCreated"]) {
            let us = timefmt::parse_xsd(&c, Tz::UTC).expect("the simulator's dates parse");
            let d = timefmt::utc(us);
            let w3c = if us % 60_000_000 == 0 {
                d.format("%Y-%m-%dT%H:%MZ").to_string()
            } else {
                d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            };
            dc.insert("created".into(), json!([w3c]));
        }
        if let Some(series) = text(&mp["series"]) {
            dc.insert("isPartOf".into(), json!([series]));
        }
        let modified = if (k as usize) < REAL_EPISODES.len() {
            timefmt::utc(self.episode(k).created_us)
        } else {
            timefmt::utc(self.episode_modified_us(k))
        };
        json!({
            "mediapackage": mp,
            "dc": dc,
            "org": "mh_default_org",
            "type": "Episode",
            "modified": modified.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "acl": [{"action": "read", "role": "ROLE_USER", "allow": true}],
        })
    }

    /// Workflows of one episode (admin node), as the release lists them: live ones have a
    /// `capture` operation where the release has one (the DCE build, stock up to 3.x);
    /// `retract-element` (when it became available) is DCE's. From 12.0 (`by_media_package`:
    /// `/workflow/mediaPackage/{id}/instances.json`) every workflow of the media package is
    /// listed, other definitions and states included, operation ids are numbers and their
    /// names are in `template`.
    pub fn workflows_json(&self, k: u64) -> Vec<serde_json::Value> {
        use serde_json::json;
        let r = self.release;
        let e = self.episode(k);
        let base_ms = e.created_us / 1000;
        let numeric = r.workflow_by_media_package();
        let op_id = std::cell::Cell::new(90_000 + k * 10);
        // The operation element, named as the release names it.
        let op = |name: &str, mut body: serde_json::Value| {
            if numeric {
                op_id.set(op_id.get() + 1);
                body["id"] = json!(op_id.get());
                body["template"] = json!(name);
            } else {
                body["id"] = json!(name);
            }
            body
        };
        let one_or_many = |ops: Vec<serde_json::Value>| {
            if ops.len() == 1 {
                ops[0].clone()
            } else {
                json!(ops)
            }
        };
        let mut ops = Vec::new();
        if e.live && r.capture_operation() {
            ops.push(op(
                "capture",
                json!({"state": "SUCCEEDED", "started": base_ms, "completed": base_ms + 3_600_000}),
            ));
        }
        if r.is_stock() {
            ops.push(op(
                "publish-engage",
                json!({"state": "SUCCEEDED", "started": base_ms + 6_000_000, "completed": base_ms + 6_100_000}),
            ));
        } else {
            ops.push(op("retract-element", json!({"state": "SUCCEEDED",
                "started": (base_ms + 7_000_000).to_string(), "completed": (base_ms + 7_200_000).to_string()})));
        }
        let mut newest = json!({"id": 5000 + k * 2 + 1, "state": "SUCCEEDED",
            "mediapackage": {"id": e.mpid},
            "operations": {"operation": one_or_many(ops)}});
        // An older run of the same definition, listed after the newest: sort order is not to be trusted.
        let older_op = if r.is_stock() {
            op(
                "publish-engage",
                json!({"state": "SUCCEEDED", "started": base_ms, "completed": base_ms + 1000}),
            )
        } else {
            op(
                "retract-element",
                json!({"state": "SUCCEEDED", "started": base_ms, "completed": base_ms + 1000}),
            )
        };
        let mut older = json!({"id": (5000 + k * 2).to_string(), "state": "SUCCEEDED",
            "mediapackage": {"id": e.mpid},
            "operations": {"operation": older_op}});
        if r.is_stock() {
            newest["template"] = json!(SIM_WORKFLOW);
            older["template"] = json!(SIM_WORKFLOW);
        }
        let mut out = if k % 2 == 0 {
            vec![older, newest]
        } else {
            vec![newest]
        };
        if numeric {
            // Unfiltered: a newer workflow of another definition, and a failed one of ours.
            out.push(json!({"id": 7000 + k, "state": "SUCCEEDED", "template": "republish-metadata",
                "mediapackage": {"id": e.mpid},
                "operations": {"operation": op("capture", json!({"state": "SUCCEEDED", "started": 1, "completed": 2}))}}));
            out.push(json!({"id": 7500 + k, "state": "FAILED", "template": SIM_WORKFLOW,
                "mediapackage": {"id": e.mpid},
                "operations": {"operation": op("capture", json!({"state": "FAILED", "started": 3, "completed": 4}))}}));
        }
        out
    }

    /// The scheduler's technical metadata of episode `k` (4.0+ `/recordings/{id}/technical.json`):
    /// only live (scheduled) episodes have one, its window that of DCE's `capture` operation.
    pub fn technical_json(&self, k: u64) -> Option<serde_json::Value> {
        let e = self.episode(k);
        if !e.live {
            return None;
        }
        let utc = |us: i64| timefmt::utc(us).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        Some(serde_json::json!({
            "id": e.mpid, "location": "sim-agent",
            "start": utc(e.created_us / 1000 * 1000),
            "end": utc(e.created_us / 1000 * 1000 + 3_600_000_000),
            "presenters": [], "wfProperties": {}, "agentConfig": {},
            "state": "", "lastHeardFrom": ""
        }))
    }

    pub fn tz_render(&self, us: i64, tz: Tz) -> String {
        timefmt::format_compact(us, tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_written_as_chrono_formats_it() {
        for n in 0..200_000i64 {
            let us = mix(3, n as u64) as i64 % 400_000_000_000_000_000 / 1000 * 1000;
            let offset_min = [-300, 0, 60, 330, -570, 0][(n % 6) as usize];
            let (millis, z) = (n % 2 == 1, n % 4 < 2);
            let mut fast = String::new();
            write_created(&mut fast, us, offset_min, millis, z);
            let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let d = timefmt::utc(us).with_timezone(&off);
            let mut want = d.format("%Y-%m-%dT%H:%M:%S").to_string();
            if millis {
                want.push_str(&format!(".{:03}", (us / 1000).rem_euclid(1000)));
            }
            if offset_min == 0 && z {
                want.push('Z');
            } else {
                want.push_str(&d.format("%:z").to_string());
            }
            assert_eq!(fast, want, "{us} {offset_min}");
        }
    }

    #[test]
    fn a_page_renders_each_action_as_write_action_does() {
        let mut cfg = DataConfig::new(11, 10_000, 1_456_790_400_000_000, 1_456_876_800_000_000);
        cfg.malformed_every = 37;
        let data = Data::new(cfg);
        // Sessions cut at both ends, and out of order (the shuffle fault).
        let mut idx: Vec<u64> = (13..2_013).collect();
        idx.swap(5, 900);
        let mut page = String::new();
        data.write_actions(&mut page, &idx);
        let one_by_one: Vec<String> = idx
            .iter()
            .map(|i| {
                let mut s = String::new();
                data.write_action(&mut s, &data.action(*i));
                s
            })
            .collect();
        assert_eq!(page, one_by_one.join(","));
        let v: serde_json::Value = serde_json::from_str(&format!("[{page}]")).unwrap();
        assert_eq!(v.as_array().unwrap().len(), idx.len());
    }
}
