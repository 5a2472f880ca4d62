//! Writes the journals `bench/report.sh` times `harvester report` on (issue 20, point 3):
//! 5,000,000 actions of realistic viewing sessions over 30 days, 1,000 episodes (45 to 90
//! minutes, 50 series of 20) and 20,000 viewers (5% of sessions not logged in), in time
//! order as a harvest journals them, in pages of 1,000:
//!
//! - `heartbeat.redb`: Paella 6 / DCE sessions: a `PLAY`, a `HEARTBEAT` every 30 s covering
//!   the 30 s played, a `SEEK` (3% of beats, forwards or back) and a `PAUSE` of 1 to 5 minutes
//!   followed by a `PLAY` (3% of beats), until the viewer leaves (10 to 90 minutes) or the end;
//! - `paella7.redb`: Paella 7 sessions: `PLAY`, `SEEK` (with `in` the position left),
//!   `PAUSE`, a `RESIZE-TO-WxH` now and then, whole seconds, no heartbeat: an action every
//!   2 to 6 minutes of playing, so many more sessions for the same number of actions.
//!
//!     REPORT_BENCH_DIR=/var/tmp/report-bench cargo bench --bench report
//!
//! Existing journals are kept (delete them to write them again).
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Arc;

use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, EpisodeBlock, Record};

const ACTIONS: u64 = 5_000_000;
const EPISODES: u64 = 1_000;
const VIEWERS: u64 = 20_000;
/// 2026-11-01T00:00:00Z.
const START_US: i64 = 1_793_491_200_000_000;
const DAYS: i64 = 30;
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
];

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One viewing session in progress.
struct Session {
    id: u64,
    episode: usize,
    huid: Option<String>,
    agent: usize,
    ip: String,
    /// Position (s), whether playing, seconds of wall time left before the viewer leaves.
    pos: i64,
    playing: bool,
    left_s: i64,
    started: bool,
}

struct Generator {
    rng: Rng,
    episodes: Vec<(String, Arc<EpisodeBlock>, i64)>,
    paella7: bool,
    next_session: u64,
    next_id: i64,
}

impl Generator {
    fn new(paella7: bool) -> Generator {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(paella7));
        let episodes = (0..EPISODES)
            .map(|e| {
                let duration_s = 2700 + rng.below(2701) as i64;
                let series = e / 20;
                let block = EpisodeBlock {
                    title: Some(format!("Lecture {} of course {series}", e % 20 + 1)),
                    duration: Some(duration_s * 1000),
                    start: Some("2026-09-01T10:00:00Z".into()),
                    series: Some((format!("Course {series}"), format!("20260{series:06}"))),
                    kind: Some("lecture".into()),
                    description: None,
                };
                (
                    format!(
                        "{:08x}-0000-4000-8000-{e:012x}",
                        e * 2_654_435_761 % (1 << 32)
                    ),
                    Arc::new(block),
                    duration_s,
                )
            })
            .collect();
        Generator {
            rng,
            episodes,
            paella7,
            next_session: 0,
            next_id: 0,
        }
    }

    fn session(&mut self) -> Session {
        self.next_session += 1;
        let r = &mut self.rng;
        let huid = (!r.chance(5)).then(|| format!("{}", 10_000_000 + r.below(VIEWERS)));
        Session {
            id: self.next_session,
            episode: r.below(EPISODES) as usize,
            huid,
            agent: r.below(AGENTS.len() as u64) as usize,
            ip: format!("10.{}.{}.{}", r.below(256), r.below(256), r.below(256)),
            pos: 0,
            playing: false,
            left_s: 600 + r.below(4800) as i64,
            started: false,
        }
    }

    /// The session's next action at `t`, and the wall seconds until the one after (`None`:
    /// the session is over).
    fn step(&mut self, s: &mut Session, t: i64) -> (Record, Option<i64>) {
        let duration = self.episodes[s.episode].2;
        let r = &mut self.rng;
        let (kind, inpoint, outpoint, wait): (String, i64, i64, i64);
        if !s.started || !s.playing {
            s.started = true;
            s.playing = true;
            kind = "PLAY".into();
            (inpoint, outpoint) = (s.pos, s.pos);
            wait = if self.paella7 {
                120 + r.below(240) as i64
            } else {
                30
            };
        } else if r.chance(if self.paella7 { 25 } else { 3 }) {
            let to = r.below(duration as u64) as i64;
            kind = "SEEK".into();
            (inpoint, outpoint) = (s.pos, to);
            s.pos = to;
            wait = if self.paella7 {
                60 + r.below(240) as i64
            } else {
                30
            };
        } else if r.chance(if self.paella7 { 30 } else { 3 }) {
            kind = "PAUSE".into();
            (inpoint, outpoint) = (s.pos, s.pos);
            s.playing = false;
            wait = 60 + r.below(240) as i64;
        } else if self.paella7 {
            kind = if r.chance(50) {
                "RESIZE-TO-1280x720".into()
            } else {
                "PAUSE".into()
            };
            (inpoint, outpoint) = (s.pos, s.pos);
            s.playing = kind != "PAUSE";
            wait = 60 + r.below(180) as i64;
        } else {
            kind = "HEARTBEAT".into();
            (inpoint, outpoint) = (s.pos, s.pos + 30);
            wait = 30;
        }
        if s.playing {
            s.pos = (s.pos + wait).min(duration);
        }
        s.left_s -= wait;
        self.next_id += 1;
        let (mpid, block, _) = &self.episodes[s.episode];
        let rec = Record {
            action_id: self.next_id,
            created_us: t,
            mpid: mpid.clone(),
            session_id: format!("{:016x}", s.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            huid: s.huid.clone(),
            useragent: Some(AGENTS[s.agent].to_string()),
            action: ActionBlock {
                kind: Some(kind),
                inpoint: Some(inpoint),
                outpoint: Some(outpoint),
                length: Some(outpoint - inpoint),
                is_playing: s.playing,
            },
            ip_chain: Some(s.ip.clone()),
            is_live: false,
            episode: Some(block.clone()),
        };
        let over = s.left_s <= 0 || (s.pos >= duration && s.playing);
        (rec, (!over).then_some(wait * 1_000_000))
    }
}

fn write(path: &Path, paella7: bool) {
    if path.exists() {
        println!("{} exists: kept", path.display());
        return;
    }
    let mut g = Generator::new(paella7);
    // Sessions start evenly over the days; the heap keeps the next action of each open one.
    let mut open: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut sessions: std::collections::HashMap<u64, Session> = Default::default();
    let span_us = DAYS * 86_400_000_000;
    let per_session = if paella7 { 10 } else { 90 };
    let expected_sessions = ACTIONS / per_session;
    let gap_us = span_us / expected_sessions as i64;
    let mut next_start = START_US;
    let j = Journal::open(path).expect("journal opens");
    let mut page: Vec<Record> = Vec::with_capacity(1000);
    let mut pages: Vec<PageCommit> = Vec::new();
    let mut written = 0u64;
    while written < ACTIONS {
        // Start the sessions due before the earliest pending action.
        while open.peek().is_none_or(|Reverse((t, _))| next_start <= *t) {
            let s = g.session();
            open.push(Reverse((next_start, s.id)));
            sessions.insert(s.id, s);
            next_start += 1 + g.rng.below(2 * gap_us as u64) as i64;
        }
        let Reverse((t, id)) = open.pop().expect("an open session");
        let mut s = sessions.remove(&id).expect("its state");
        let (rec, next) = g.step(&mut s, t);
        page.push(rec);
        written += 1;
        if let Some(w) = next {
            open.push(Reverse((t + w, id)));
            sessions.insert(id, s);
        }
        if page.len() == 1000 || written == ACTIONS {
            pages.push(PageCommit {
                ids: page.iter().map(|r| r.action_id).collect(),
                block: Some(codec::encode_block(&page)),
                ..PageCommit::default()
            });
            page.clear();
            if pages.len() == 50 || written == ACTIONS {
                j.commit_pages(std::mem::take(&mut pages))
                    .expect("pages commit");
            }
        }
    }
    println!(
        "{}: {written} actions, {} sessions",
        path.display(),
        g.next_session
    );
}

fn main() {
    let dir = std::env::var("REPORT_BENCH_DIR").unwrap_or_else(|_| "/var/tmp/report-bench".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("bench directory");
    write(&dir.join("heartbeat.redb"), false);
    write(&dir.join("paella7.redb"), true);
}
