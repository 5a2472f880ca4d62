//! `harvester report` (issue 20): hand-built sessions for each rule with their expected seconds
//! worked out by hand, Harvard's attendance against a separate implementation of its formula,
//! and hostile input counted, bounded and never a panic or a percentage over 100.
//!
//! Every test journals its actions as a harvest would (a block committed through
//! `Journal::commit_page`) and runs the real binary on the journal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use common::*;
use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, EpisodeBlock, Record};
use serde_json::Value;

/// An episode as the journal knows it.
#[derive(Clone)]
struct Ep {
    mpid: &'static str,
    duration_ms: Option<i64>,
    series: Option<&'static str>,
    title: &'static str,
}

fn ep(mpid: &'static str, duration_s: Option<i64>) -> Ep {
    Ep {
        mpid,
        duration_ms: duration_s.map(|s| s * 1000),
        series: Some("S1"),
        title: "Lecture",
    }
}

/// Actions to journal.
#[derive(Default)]
struct Actions(Vec<Record>);

impl Actions {
    /// One action at `t` seconds after t0.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        e: &Ep,
        t: i64,
        session: &str,
        huid: Option<&str>,
        kind: &str,
        inpoint: Option<i64>,
        outpoint: Option<i64>,
        playing: bool,
        live: bool,
    ) -> &mut Self {
        let id = self.0.len() as i64 + 1;
        self.0.push(Record {
            action_id: id,
            created_us: t0() + t * 1_000_000,
            mpid: e.mpid.to_string(),
            session_id: session.to_string(),
            huid: huid.map(str::to_string),
            useragent: None,
            action: ActionBlock {
                kind: Some(kind.to_string()),
                inpoint,
                outpoint,
                length: None,
                is_playing: playing,
            },
            ip_chain: None,
            is_live: live,
            episode: Some(Arc::new(EpisodeBlock {
                title: Some(e.title.to_string()),
                duration: e.duration_ms,
                start: None,
                series: e.series.map(|s| (format!("Course {s}"), s.to_string())),
                kind: None,
                description: None,
            })),
        });
        self
    }

    /// A heartbeat covering `[a, b]` (playing) at `t`.
    fn hb(&mut self, e: &Ep, t: i64, session: &str, huid: &str, a: i64, b: i64) -> &mut Self {
        self.push(
            e,
            t,
            session,
            Some(huid),
            "HEARTBEAT",
            Some(a),
            Some(b),
            true,
            false,
        )
    }

    /// A Paella 7 event at `t`: `PLAY`/`PAUSE` at `pos`, or a `SEEK` from `pos` to `to`.
    #[allow(clippy::too_many_arguments)]
    fn ev(
        &mut self,
        e: &Ep,
        t: i64,
        session: &str,
        huid: &str,
        kind: &str,
        pos: i64,
        to: i64,
        playing: bool,
    ) -> &mut Self {
        self.push(
            e,
            t,
            session,
            Some(huid),
            kind,
            Some(pos),
            Some(to),
            playing,
            false,
        )
    }

    /// Journals the actions (in blocks of 1,000, as pages).
    fn journal(&self, dir: &Path) {
        let j = Journal::open(&journal_path(dir)).expect("journal opens");
        for chunk in self.0.chunks(1000) {
            j.commit_page(PageCommit {
                ids: chunk.iter().map(|r| r.action_id).collect(),
                block: Some(codec::encode_block(chunk)),
                ..PageCommit::default()
            })
            .expect("page commits");
        }
    }
}

/// `harvester report ARGS` on the journal in `dir`.
fn report(dir: &Path, args: &[&str]) -> Output {
    let mut c = harvester(dir);
    c.arg("report").args(args);
    run(c)
}

/// `report KIND --format json ARGS`: the rows, and the summary line.
fn rows(dir: &Path, kind: &str, args: &[&str]) -> (Vec<Value>, String) {
    let out = report(dir, &[&[kind, "--format", "json"], args].concat());
    assert_ok(&out);
    (stdout_records(&out), stderr(&out))
}

/// The row of (mpid, huid) (`None`: the not-logged-in row).
fn row<'a>(rows: &'a [Value], mpid: &str, huid: Option<&str>) -> &'a Value {
    rows.iter()
        .find(|r| r["mpid"] == mpid && r["huid"].as_str() == huid)
        .unwrap_or_else(|| panic!("no row for {mpid} {huid:?} in {rows:#?}"))
}

fn secs(r: &Value) -> u64 {
    r["seconds_watched"].as_u64().unwrap()
}

fn segs(r: &Value) -> Vec<(u64, u64)> {
    r["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_u64().unwrap(), s[1].as_u64().unwrap()))
        .collect()
}

#[test]
fn heartbeats_overlapping_and_seeking_backwards() {
    let dir = scratch();
    let e = ep("mp-hb", Some(200));
    let mut a = Actions::default();
    // Overlapping heartbeats: [0,30) ∪ [20,50) ∪ [50,80) = [0,80): 80 s.
    a.hb(&e, 0, "s1", "alice", 0, 30)
        .hb(&e, 30, "s1", "alice", 20, 50)
        .hb(&e, 60, "s1", "alice", 50, 80)
        // A paused player's heartbeat covers nothing.
        .push(
            &e,
            90,
            "s1",
            Some("alice"),
            "HEARTBEAT",
            Some(100),
            Some(130),
            false,
            false,
        );
    // Bob watches 0-60, seeks back to 10 and watches 10-40 again: 60 s, not 90.
    a.hb(&e, 0, "s2", "bob", 0, 30)
        .hb(&e, 30, "s2", "bob", 30, 60)
        .ev(&e, 31, "s2", "bob", "SEEK", 60, 10, true)
        .hb(&e, 60, "s2", "bob", 10, 40);
    a.journal(dir.path());
    let (r, summary) = rows(dir.path(), "viewers", &[]);
    let alice = row(&r, "mp-hb", Some("alice"));
    assert_eq!(secs(alice), 80);
    assert_eq!(segs(alice), vec![(0, 80)]);
    assert_eq!(alice["percent_watched"], 40.0);
    assert_eq!(alice["sessions"], 1);
    let bob = row(&r, "mp-hb", Some("bob"));
    assert_eq!(secs(bob), 60);
    assert_eq!(bob["percent_watched"], 30.0);
    assert!(summary.contains("no hostile input"), "{summary}");
}

#[test]
fn event_player_play_pause_and_seeks() {
    let dir = scratch();
    let e = ep("mp-ev", Some(3600));
    let mut a = Actions::default();
    // PLAY at 0, PAUSE 60 s later at 60: [0,60).
    a.ev(&e, 0, "s1", "p1", "PLAY", 0, 0, true)
        .ev(&e, 60, "s1", "p1", "PAUSE", 60, 60, false);
    // PLAY at 0; at t=30 a SEEK from 30 to 100 (playing goes on from 100, no new PLAY);
    // PAUSE at t=50 at 120: [0,30) + [100,120) = 50 s.
    a.ev(&e, 0, "s2", "p2", "PLAY", 0, 0, true)
        .ev(&e, 30, "s2", "p2", "SEEK", 30, 100, true)
        .ev(&e, 50, "s2", "p2", "PAUSE", 120, 120, false);
    // Seeking backwards while playing: [0,40) then [10,40) again: 40 s.
    a.ev(&e, 0, "s3", "p3", "PLAY", 0, 0, true)
        .ev(&e, 40, "s3", "p3", "SEEK", 40, 10, true)
        .ev(&e, 70, "s3", "p3", "PAUSE", 40, 40, false);
    // A SEEK while paused plays nothing; PLAY at 500, PAUSE 20 s later at 520: 20 s.
    a.ev(&e, 0, "s4", "p4", "SEEK", 0, 500, false)
        .ev(&e, 5, "s4", "p4", "PLAY", 500, 500, true)
        .ev(&e, 25, "s4", "p4", "PAUSE", 520, 520, false);
    // Played at double speed: 40 s of wall time, position 0 -> 80 (the player's clock): 80 s.
    a.ev(&e, 0, "s5", "p5", "PLAY", 0, 0, true)
        .ev(&e, 40, "s5", "p5", "PAUSE", 80, 80, false);
    // A PAUSE that claims a position far past what the wall time allows (1000 after 10 s):
    // not believed, real speed: [0,10).
    a.ev(&e, 0, "s6", "p6", "PLAY", 0, 0, true)
        .ev(&e, 10, "s6", "p6", "PAUSE", 1000, 1000, false);
    a.journal(dir.path());
    let (r, summary) = rows(dir.path(), "viewers", &[]);
    assert_eq!(secs(row(&r, "mp-ev", Some("p1"))), 60);
    assert_eq!(
        segs(row(&r, "mp-ev", Some("p2"))),
        vec![(0, 30), (100, 120)]
    );
    assert_eq!(secs(row(&r, "mp-ev", Some("p3"))), 40);
    assert_eq!(segs(row(&r, "mp-ev", Some("p4"))), vec![(500, 520)]);
    assert_eq!(secs(row(&r, "mp-ev", Some("p5"))), 80);
    assert_eq!(secs(row(&r, "mp-ev", Some("p6"))), 10);
    assert!(
        summary.contains("1 reported end positions not believed"),
        "{summary}"
    );
}

#[test]
fn a_play_never_paused_runs_to_the_gap_or_the_end() {
    let dir = scratch();
    let long = ep("mp-long", Some(3600));
    let short = ep("mp-short", Some(600));
    let mut a = Actions::default();
    // PLAY at 100 and nothing else: real speed until the 30-minute gap: [100,1900).
    a.ev(&long, 0, "s1", "ann", "PLAY", 100, 100, true);
    // The same on a 10-minute episode: capped at its end, [100,600).
    a.ev(&short, 0, "s2", "ann", "PLAY", 100, 100, true);
    // A PLAY, then silence for an hour, then a PAUSE: the play ended at the gap, [0,1800);
    // the late PAUSE ends nothing.
    a.ev(&long, 0, "s3", "ben", "PLAY", 0, 0, true)
        .ev(&long, 3600, "s3", "ben", "PAUSE", 3600, 3600, false);
    a.journal(dir.path());
    let (r, summary) = rows(dir.path(), "viewers", &[]);
    assert_eq!(segs(row(&r, "mp-long", Some("ann"))), vec![(100, 1900)]);
    assert_eq!(secs(row(&r, "mp-short", Some("ann"))), 500);
    assert_eq!(row(&r, "mp-short", Some("ann"))["percent_watched"], 83.3);
    assert_eq!(segs(row(&r, "mp-long", Some("ben"))), vec![(0, 1800)]);
    assert!(
        summary.contains("3 plays ended by the session gap"),
        "{summary}"
    );
    // The gap is a setting: 10 minutes.
    let (r, _) = rows(dir.path(), "viewers", &["--session-gap", "600"]);
    assert_eq!(segs(row(&r, "mp-long", Some("ann"))), vec![(100, 700)]);
    let mut c = harvester(dir.path());
    c.env("REPORT_SESSION_GAP", "300")
        .args(["report", "viewers", "--format", "json"]);
    let out = run(c);
    assert_ok(&out);
    assert_eq!(
        segs(row(&stdout_records(&out), "mp-long", Some("ann"))),
        vec![(100, 400)]
    );
}

#[test]
fn sessions_devices_and_episodes() {
    let dir = scratch();
    let a1 = ep("mp-a", Some(1000));
    let b1 = ep("mp-b", Some(1000));
    let mut a = Actions::default();
    // One session that spans two episodes: each episode has its own row and its own view.
    a.hb(&a1, 0, "shared", "cat", 0, 30)
        .hb(&b1, 40, "shared", "cat", 0, 30)
        .hb(&b1, 70, "shared", "cat", 30, 60);
    // A viewer on two devices at once: [0,60) and [30,120) at the same time: 120 s, 2 sessions.
    a.hb(&a1, 0, "phone", "dan", 0, 30)
        .hb(&a1, 0, "laptop", "dan", 30, 60)
        .hb(&a1, 30, "phone", "dan", 30, 60)
        .hb(&a1, 30, "laptop", "dan", 60, 90)
        .hb(&a1, 60, "laptop", "dan", 90, 120);
    a.journal(dir.path());
    let (r, _) = rows(dir.path(), "viewers", &[]);
    assert_eq!(secs(row(&r, "mp-a", Some("cat"))), 30);
    assert_eq!(secs(row(&r, "mp-b", Some("cat"))), 60);
    assert_eq!(row(&r, "mp-b", Some("cat"))["sessions"], 1);
    let dan = row(&r, "mp-a", Some("dan"));
    assert_eq!(segs(dan), vec![(0, 120)]);
    assert_eq!(dan["sessions"], 2);
    assert_eq!(dan["percent_watched"], 12.0);
    let (eps, _) = rows(dir.path(), "episodes", &[]);
    let mp_a = eps.iter().find(|e| e["mpid"] == "mp-a").unwrap();
    // Views are sessions (shared, phone, laptop); viewers are people (cat, dan).
    assert_eq!(mp_a["views"], 3);
    assert_eq!(mp_a["unique_viewers"], 2);
    // (30 + 120) s = 0.0417 h.
    assert_eq!(mp_a["hours_watched"], 0.042);
    // Average of 3% (cat) and 12% (dan).
    assert_eq!(mp_a["avg_percent_watched"], 7.5);
    // Retention by minute: both watched some of minute 0, dan of minute 1.
    let curve: Vec<u64> = mp_a["retention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(curve.len(), 17, "1000 s in 60-second buckets");
    assert_eq!(&curve[..3], &[2, 1, 0]);
}

#[test]
fn past_the_duration_a_live_stream_and_who_is_not_logged_in() {
    let dir = scratch();
    let short = ep("mp-100", Some(100));
    let live = ep("mp-live", None);
    let mut a = Actions::default();
    // A heartbeat past the end: [90,130) on a 100-second episode is [90,100): 10 s, 10%.
    a.hb(&short, 0, "s1", "eve", 90, 130);
    // A live stream with no duration: seconds, no percent.
    a.push(
        &live,
        0,
        "l1",
        Some("eve"),
        "HEARTBEAT",
        Some(0),
        Some(30),
        true,
        true,
    )
    .push(
        &live,
        30,
        "l1",
        Some("eve"),
        "HEARTBEAT",
        Some(30),
        Some(60),
        true,
        true,
    );
    // Not logged in: anonymous, no user, and Opencast's -omitted-: one row, never a person's.
    a.push(
        &short,
        0,
        "n1",
        Some("anonymous"),
        "HEARTBEAT",
        Some(0),
        Some(10),
        true,
        false,
    )
    .push(
        &short,
        0,
        "n2",
        None,
        "HEARTBEAT",
        Some(5),
        Some(20),
        true,
        false,
    )
    .push(
        &short,
        0,
        "n3",
        Some("-omitted-"),
        "HEARTBEAT",
        Some(50),
        Some(60),
        true,
        false,
    );
    a.journal(dir.path());
    let (r, summary) = rows(dir.path(), "viewers", &[]);
    let eve = row(&r, "mp-100", Some("eve"));
    assert_eq!(
        (secs(eve), eve["percent_watched"].as_f64()),
        (10, Some(10.0))
    );
    let live_row = row(&r, "mp-live", Some("eve"));
    assert_eq!(secs(live_row), 60);
    assert!(live_row["percent_watched"].is_null());
    let nobody = row(&r, "mp-100", None);
    assert_eq!(nobody["logged_in"], false);
    assert_eq!(segs(nobody), vec![(0, 20), (50, 60)]);
    assert_eq!(nobody["sessions"], 3);
    assert_eq!(r.len(), 3, "{r:#?}");
    assert!(
        summary.contains("1 positions past the episode's end read as its end")
            && summary.contains("(1 without a duration: no percent)"),
        "{summary}"
    );
    let (eps, _) = rows(dir.path(), "episodes", &[]);
    let e100 = eps.iter().find(|e| e["mpid"] == "mp-100").unwrap();
    assert_eq!(
        (e100["views"].as_u64(), e100["unique_viewers"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(e100["not_logged_in"], true);
    // --live and --vod select by is_live.
    let (r, _) = rows(dir.path(), "viewers", &["--live"]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["mpid"], "mp-live");
    let (r, _) = rows(dir.path(), "viewers", &["--vod"]);
    assert!(r.iter().all(|x| x["mpid"] == "mp-100") && r.len() == 2);
}

#[test]
fn filters_series_roll_call_and_csv() {
    let dir = scratch();
    let l1 = Ep {
        series: Some("S1"),
        ..ep("mp-1", Some(100))
    };
    let l2 = Ep {
        series: Some("S1"),
        ..ep("mp-2", Some(100))
    };
    let other = Ep {
        series: Some("S2"),
        ..ep("mp-3", Some(100))
    };
    let mut a = Actions::default();
    // Fay watches 80% of lecture 1 and 40% of lecture 2; Gil 100% of lecture 2.
    a.hb(&l1, 0, "f1", "fay", 0, 80)
        .hb(&l2, 3600, "f2", "fay", 0, 40)
        .hb(&l2, 7200, "g1", "gil", 0, 100)
        .hb(&other, 0, "o1", "fay", 0, 100);
    a.journal(dir.path());
    let (r, _) = rows(dir.path(), "series", &["--series", "S1"]);
    let get = |h: &str| r.iter().find(|x| x["huid"] == h).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (
            get("fay")["lectures_watched"].as_u64(),
            get("fay")["lectures_published"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(get("gil")["lectures_watched"], 1);
    let (r, _) = rows(
        dir.path(),
        "series",
        &["--series", "S1", "--threshold", "30"],
    );
    assert_eq!(
        r.iter().find(|x| x["huid"] == "fay").unwrap()["lectures_watched"],
        2
    );
    // --from/--to select actions by time; --mpid by episode.
    let from = compact(t0() + 3_000_000_000);
    let (r, _) = rows(dir.path(), "viewers", &["--from", &from]);
    assert_eq!(r.len(), 2, "{r:#?}");
    let (r, _) = rows(dir.path(), "viewers", &["--mpid", "mp-3"]);
    assert_eq!(r.len(), 1);
    // CSV: the header and the JSON-array cell of the dump's conventions.
    let out = report(dir.path(), &["viewers", "--mpid", "mp-1"]);
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("mpid,huid,logged_in,seconds_watched,percent_watched,sessions,first_seen,last_seen,segments")
    );
    assert_eq!(
        lines.next(),
        Some("mp-1,fay,true,80,80,1,2016-03-01T12:00:00+00:00,2016-03-01T12:00:00+00:00,\"[[0,80]]\"")
    );
}

#[test]
fn hostile_input_is_counted_bounded_and_never_over_100_percent() {
    let dir = scratch();
    let e = ep("mp-hostile", Some(600));
    let zero = ep("mp-zero", Some(0));
    let mut a = Actions::default();
    a.hb(&e, 0, "h1", "mal", -50, 10) // negative: [0,10)
        .hb(&e, 1, "h1", "mal", 1_000_000_000_000, 1_000_000_000_030) // absurd
        .hb(&e, 2, "h1", "mal", 300, 200) // outpoint before inpoint
        .push(
            &e,
            3,
            "h1",
            Some("mal"),
            "HEARTBEAT",
            None,
            Some(5),
            true,
            false,
        ) // no inpoint
        .hb(&zero, 0, "z1", "mal", 0, 30);
    // A session of 200,000 seeks while playing, with absurd and negative positions mixed in.
    a.ev(&e, 0, "seeky", "sam", "PLAY", 0, 0, true);
    for i in 0..200_000i64 {
        let to = match i % 4 {
            0 => -7,
            1 => i64::MAX,
            _ => i % 600,
        };
        a.ev(&e, i / 100, "seeky", "sam", "SEEK", (i * 7) % 700, to, true);
    }
    a.journal(dir.path());
    let (r, summary) = rows(dir.path(), "viewers", &[]);
    for x in &r {
        assert!(x["percent_watched"].as_f64().unwrap_or(0.0) <= 100.0, "{x}");
        assert!(secs(x) <= 600, "{x}");
    }
    let mal = row(&r, "mp-hostile", Some("mal"));
    // [0,10) from the negative inpoint; the absurd one is [600,600): nothing.
    assert_eq!(segs(mal), vec![(0, 10)]);
    let zero_row = row(&r, "mp-zero", Some("mal"));
    assert!(zero_row["percent_watched"].is_null());
    assert_eq!(
        secs(zero_row),
        30,
        "duration 0 is no duration: bounded by 7 days instead"
    );
    assert!(secs(row(&r, "mp-hostile", Some("sam"))) <= 600);
    for part in [
        "negative positions read as 0",
        "absurd positions (over 7 days) bounded",
        "1 heartbeats with outpoint before inpoint left out",
        "actions without the position a rule needs left out",
        "(1 without a duration: no percent)",
        "1 sessions with over 10000 actions",
        "at most 200001 actions in one session",
    ] {
        assert!(summary.contains(part), "{part}: {summary}");
    }
    // Harvard's mode on the same journal: bounded too, the zero-duration episode skipped.
    let out = report(dir.path(), &["attendance"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("mp-zero"), "{text}");
    assert!(stderr(&out).contains("mp-zero skipped (zero intervals)"));
    for line in text.lines().skip(1) {
        let pct: i64 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert!((0..=100).contains(&pct), "{line}");
    }
}

/// Harvard's formula, written again independently: per (mpid, huid != "anonymous"), distinct
/// floor(inpoint / chunk) of playing HEARTBEATs with matching is_live; percent =
/// int(100.0 * (buckets / ceil(duration_ms / 1000 / chunk))), capped at 100; episodes without
/// a duration or with zero intervals are left out.
fn harvard(recs: &[Record], chunk: i64, live: bool) -> BTreeMap<(String, String), i64> {
    let mut duration: BTreeMap<String, i64> = BTreeMap::new();
    let mut buckets: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    for r in recs {
        if let Some(d) = r.episode.as_ref().and_then(|e| e.duration) {
            duration.insert(r.mpid.clone(), d);
        }
        let huid = r.huid.clone().unwrap_or_else(|| "None".into());
        if r.action.kind.as_deref() == Some("HEARTBEAT")
            && r.action.is_playing
            && r.is_live == live
            && huid != "anonymous"
        {
            if let Some(i) = r.action.inpoint {
                let b = (i as f64 / chunk as f64).floor() as i64;
                buckets.entry((r.mpid.clone(), huid)).or_default().insert(b);
            }
        }
    }
    let mut out = BTreeMap::new();
    for ((mpid, huid), set) in buckets {
        let Some(d) = duration.get(&mpid) else {
            continue;
        };
        let total = ((*d as f64 / 1000.0) / chunk as f64).ceil();
        if total == 0.0 {
            continue;
        }
        let pct = (100.0 * (set.len() as f64 / total)).trunc() as i64;
        out.insert((mpid, huid), pct.min(100));
    }
    out
}

fn attendance_csv(text: &str, column: &str) -> BTreeMap<(String, String), i64> {
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(format!("mpid,huid,{column}").as_str()));
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_string(), f[1].to_string()), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn harvard_attendance_matches_an_independent_implementation() {
    let dir = scratch();
    // 50 intervals of 300 s: 29 buckets give int(100.0 * 0.58) = 57, not 58.
    let fifty = ep("mp-fifty", Some(50 * 300));
    let eps = [
        fifty.clone(),
        ep("mp-odd", Some(3_017)),
        ep("mp-short", Some(100)),
        ep("mp-none", None),
        ep("mp-zero", Some(0)),
    ];
    let mut a = Actions::default();
    for b in 0..29 {
        a.hb(&fifty, b, "ex", "exact", b * 300 + 17, b * 300 + 47);
    }
    // Pseudo-random heartbeats: users, anonymous, None, live and not, paused, other types,
    // positions past the end (Harvard's exceeded 100 there) and negative ones.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..5_000i64 {
        let e = &eps[(next() % eps.len() as u64) as usize];
        let huid = match next() % 10 {
            0 => None,
            1 => Some("anonymous".to_string()),
            n => Some(format!("u{n}")),
        };
        let kind = if next() % 8 == 0 { "PLAY" } else { "HEARTBEAT" };
        let inpoint = (next() % 4200) as i64 - 100;
        a.push(
            e,
            i,
            &format!("s{}", next() % 50),
            huid.as_deref(),
            kind,
            Some(inpoint),
            Some(inpoint + 30),
            next() % 6 != 0,
            next() % 5 == 0,
        );
    }
    a.journal(dir.path());
    for (live, chunk) in [(false, 300), (true, 300), (false, 60), (true, 7)] {
        let mut args = vec![
            "attendance".to_string(),
            "--chunk-interval".into(),
            chunk.to_string(),
        ];
        if live {
            args.push("--live".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = report(dir.path(), &args);
        assert_ok(&out);
        let column = if live {
            "live_attendance"
        } else {
            "vod_attendance"
        };
        let got = attendance_csv(&String::from_utf8_lossy(&out.stdout), column);
        let want = harvard(&a.0, chunk, live);
        assert!(!want.is_empty());
        assert_eq!(got, want, "live {live}, chunk {chunk}");
        if !live && chunk == 300 {
            assert_eq!(got[&("mp-fifty".to_string(), "exact".to_string())], 57);
            assert!(got.contains_key(&("mp-fifty".to_string(), "None".to_string())));
            assert!(!got.keys().any(|(_, h)| h == "anonymous"));
        }
        let err = stderr(&out);
        assert!(
            err.contains("mp-none skipped (no duration)") && err.contains("mp-zero skipped"),
            "{err}"
        );
    }
}

#[test]
fn retention_svg_escapes_titles_and_bad_settings_exit_2() {
    let dir = scratch();
    let e = Ep {
        title: "<script>alert(1)</script> & \u{1b}[2J\"quoted\"",
        ..ep("mp-svg", Some(300))
    };
    let mut a = Actions::default();
    a.hb(&e, 0, "s", "zoe", 0, 120);
    a.journal(dir.path());
    let out = report(dir.path(), &["episodes", "--format", "svg"]);
    assert_ok(&out);
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert!(
        !svg.contains("<script>") && !svg.contains('\u{1b}'),
        "{svg}"
    );
    assert!(
        svg.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; \\u{1b}[2J&quot;quoted&quot;")
    );
    assert_eq!(
        svg.matches("<rect ").count(),
        2,
        "two one-minute buckets watched"
    );
    for args in [
        vec!["viewers", "--format", "svg"],
        vec!["series", "--threshold", "150"],
        vec!["viewers", "--session-gap", "5"],
        vec!["attendance", "--chunk-interval", "0"],
        vec!["viewers", "--live", "--vod"],
        vec!["viewers", "--from", "yesterday"],
    ] {
        let out = report(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The summary line of a report's stderr.
fn summary_line(o: &Output) -> String {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("report:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reports compared held and offline.
const REPORTS: [&[&str]; 5] = [
    &["viewers", "--format", "json"],
    &["viewers", "--vod"],
    &["episodes", "--format", "json"],
    &["series", "--threshold", "5"],
    &["attendance"],
];

/// Each report's output, summary, and whether it asked a running service.
fn all_reports(dir: &Path) -> Vec<(Vec<u8>, String, bool)> {
    REPORTS
        .iter()
        .map(|args| {
            let out = report(dir, args);
            assert_ok(&out);
            let asked = stderr(&out).contains("the journal is held by `harvester run`; asking it");
            (out.stdout.clone(), summary_line(&out), asked)
        })
        .collect()
}

/// While `harvester run` holds the journal, a report reads the service's record stream; it
/// says exactly what the same report says offline once the service has stopped.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_report_while_run_holds_the_journal_and_offline() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let now = harvester::timefmt::floor_second(harvester::timefmt::now_us());
    let sim = start_sim(harvester::sim::SimConfig::new(
        harvester::sim::DataConfig::new(3, 1200, now - 300_000_000, now - 1_000_000),
    ))
    .await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while metric(&addr, "harvester_journal_records_total").await != Some(1200.0) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the service harvests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || all_reports(&d)
    })
    .await
    .unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "the service stops");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offline = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || all_reports(&d)
    })
    .await
    .unwrap();
    for ((args, h), o) in REPORTS.iter().zip(&held).zip(&offline) {
        assert!(h.0.len() > 100, "{args:?} has rows");
        assert_eq!(
            String::from_utf8_lossy(&h.0),
            String::from_utf8_lossy(&o.0),
            "{args:?}"
        );
        assert_eq!(h.1, o.1, "{args:?}");
        assert!(
            h.2 && !o.2,
            "{args:?}: held, the service answered; offline, the journal"
        );
    }
    assert!(held[0].1.contains("1200 actions read"), "{}", held[0].1);
}
