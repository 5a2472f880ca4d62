//! One pass over the actions: per (episode, viewer) stretches, sessions and times.
//!
//! Memory follows the (episode, viewer) pairs and the sessions, never the actions: media
//! package ids and users are interned once, a session is remembered as a 64-bit hash, and a
//! session's play state is dropped (its stretches handed to its viewer) once the journal has
//! moved a session gap past its last action.

use std::hash::BuildHasher;

// foldhash: the tables are hashed once per action; SipHash cost a fifth of a report's time.
use foldhash::{HashMap, HashSet};

use super::input::Action;
use super::names::Names;
use super::rules::{self, Anomalies, Session};
use super::segments::Segments;

/// What a report selects and how it reads sessions (plain settings; the CLI fills them).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A session with no action for this long is over (microseconds).
    pub gap_us: i64,
    /// Only episodes of these series (empty: all).
    pub series: Vec<String>,
    /// `Some(true)`: live actions only; `Some(false)`: on-demand only.
    pub live: Option<bool>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            gap_us: 1_800 * 1_000_000,
            series: Vec::new(),
            live: None,
        }
    }
}

/// The viewer index of everyone not logged in (`anonymous`, no user, `-omitted-`).
pub const NOT_LOGGED_IN: u32 = 0;

/// Whether `huid` names no person: Opencast's anonymous user, no user at all, or the value
/// Opencast 6.0+ writes when `log.user` is off.
pub fn not_logged_in(huid: Option<&str>) -> bool {
    matches!(
        huid,
        None | Some("anonymous") | Some("-omitted-") | Some("")
    )
}

/// An episode as the journal describes it (the last non-empty value of each field wins).
#[derive(Debug, Clone, Default)]
pub struct Episode {
    pub mpid: String,
    pub title: Option<String>,
    pub duration_ms: Option<i64>,
    pub series_id: Option<String>,
    pub series_title: Option<String>,
    /// Distinct sessions, as Opencast counts views.
    pub views: u64,
}

/// What one viewer did with one episode.
#[derive(Debug, Clone, Default)]
pub struct Pair {
    pub watched: Segments,
    pub first_us: i64,
    pub last_us: i64,
    pub sessions: u32,
}

/// A session still open, with the (episode, viewer) pair it belongs to. What its actions add
/// to the pair (times, heartbeat stretches) is kept here and handed over when it closes: an
/// action then touches only its open session, a small table that stays in the CPU's cache,
/// where the pairs (hundreds of thousands) cost a cache miss per action.
struct Open {
    episode: u32,
    /// Index into [`Aggregator::pairs`].
    pair: u32,
    first_us: i64,
    last_us: i64,
    /// The stretches its heartbeats covered.
    heard: Segments,
    session: Session,
}

/// Sweeps for finished sessions after this many actions.
const SWEEP_EVERY: u32 = 1 << 16;
/// The least journal time between two moves of quiet sessions aside (microseconds).
const SET_ASIDE_AT_LEAST: i64 = 1_000_000;

/// The running aggregation.
pub struct Aggregator {
    settings: Settings,
    episodes: Vec<Episode>,
    /// Each episode's position cap ([`rules::position_cap`] of its duration), read by every
    /// action: a small array stays in the CPU's cache where the episodes did not.
    caps: Vec<u32>,
    /// Media package ids, one per episode (same index).
    mpids: Names,
    /// Users; id [`NOT_LOGGED_IN`] (the empty name) is everyone not logged in.
    viewers: Names,
    /// Pairs in order of first appearance; `pair_ids` finds one by (episode, viewer).
    pairs: Vec<((u32, u32), Pair)>,
    pair_ids: HashMap<(u32, u32), u32>,
    views: HashSet<(u32, u64)>,
    pair_sessions: HashSet<(u32, u32, u64)>,
    /// Keyed by the hash of (media package, user, session): an action of an open session
    /// (nearly all of them) finds its episode and viewer there, without a string look-up.
    open: HashMap<u64, Open>,
    /// Open sessions the journal has left two gaps behind, set aside (state intact) until the
    /// next sweep closes them: the table every action looks up then holds only the sessions
    /// of the last two or three gaps, small enough for the CPU's cache (with them, up to ten
    /// hours of Paella 7 sessions: 6% of a report in cache misses). A quiet session that gets
    /// an action before the sweep comes back as it was, so results are those of one table.
    quiet: HashMap<u64, Open>,
    hasher: foldhash::fast::FixedState,
    newest_us: i64,
    until_sweep: u32,
    /// The newest action's time when quiet sessions were last set aside: the next time is
    /// once the journal has moved a session gap on.
    set_aside_us: i64,
    /// Actions read, and those the settings selected.
    pub read: u64,
    pub selected: u64,
    pub anomalies: Anomalies,
}

impl Aggregator {
    pub fn new(settings: Settings) -> Aggregator {
        Aggregator {
            settings,
            episodes: Vec::new(),
            caps: Vec::new(),
            mpids: Names::default(),
            viewers: {
                let mut v = Names::default();
                v.intern("");
                v
            },
            pairs: Vec::new(),
            pair_ids: HashMap::default(),
            views: HashSet::default(),
            pair_sessions: HashSet::default(),
            open: HashMap::default(),
            quiet: HashMap::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
            newest_us: i64::MIN,
            until_sweep: SWEEP_EVERY,
            set_aside_us: i64::MIN,
            read: 0,
            selected: 0,
            anomalies: Anomalies::default(),
        }
    }

    /// Whether the settings select this action (the journal filter chose the time and mpid).
    fn selects(&self, a: &Action<'_>) -> bool {
        self.settings.live.is_none_or(|l| a.is_live == l)
            && (self.settings.series.is_empty()
                || a.episode
                    .and_then(|e| e.series_id)
                    .is_some_and(|s| self.settings.series.iter().any(|x| x == s)))
    }

    /// Reads one action (in journal order).
    pub fn add(&mut self, a: &Action<'_>) {
        self.read += 1;
        if !self.selects(a) {
            return;
        }
        self.selected += 1;
        let key = self.hasher.hash_one((a.mpid, a.huid, a.session_id));
        let open = match self.open.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) if self.quiet.contains_key(&key) => {
                v.insert(self.quiet.remove(&key).expect("a quiet session"))
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                // A new session (or one a gap closed): count it, and read the episode.
                let ep = self.mpids.intern(a.mpid);
                if ep as usize == self.episodes.len() {
                    self.episodes.push(Episode {
                        mpid: a.mpid.to_string(),
                        ..Episode::default()
                    });
                    self.caps.push(0);
                }
                let e = &mut self.episodes[ep as usize];
                if let Some(f) = a.episode {
                    update(&mut e.title, f.title);
                    update(&mut e.series_id, f.series_id);
                    update(&mut e.series_title, f.series_title);
                    if f.duration_ms.is_some() {
                        e.duration_ms = f.duration_ms;
                    }
                }
                self.caps[ep as usize] = rules::position_cap(e.duration_ms);
                let viewer = if not_logged_in(a.huid) {
                    NOT_LOGGED_IN
                } else {
                    self.viewers.intern(a.huid.unwrap_or_default())
                };
                let session = self.hasher.hash_one(a.session_id);
                if self.views.insert((ep, session)) {
                    e.views += 1;
                }
                let pairs = &mut self.pairs;
                let pair = *self.pair_ids.entry((ep, viewer)).or_insert_with(|| {
                    pairs.push((
                        (ep, viewer),
                        Pair {
                            first_us: a.created_us,
                            last_us: a.created_us,
                            ..Pair::default()
                        },
                    ));
                    pairs.len() as u32 - 1
                });
                if self.pair_sessions.insert((ep, viewer, session)) {
                    pairs[pair as usize].1.sessions += 1;
                }
                v.insert(Open {
                    episode: ep,
                    pair,
                    first_us: a.created_us,
                    last_us: a.created_us,
                    heard: Segments::default(),
                    session: Session::new(a.created_us),
                })
            }
        };
        open.first_us = open.first_us.min(a.created_us);
        open.last_us = open.last_us.max(a.created_us);
        let cap = self.caps[open.episode as usize];
        open.session.apply(
            a,
            cap,
            self.settings.gap_us,
            &mut open.heard,
            &mut self.anomalies,
        );
        self.newest_us = self.newest_us.max(a.created_us);
        if self.newest_us.saturating_sub(self.set_aside_us)
            >= self.settings.gap_us.max(SET_ASIDE_AT_LEAST)
        {
            self.set_aside_us = self.newest_us;
            self.set_aside();
        }
        self.until_sweep -= 1;
        if self.until_sweep == 0 {
            self.until_sweep = SWEEP_EVERY;
            self.sweep(false);
        }
    }

    /// The last action a session may have had to be closed (or set aside) now. Twice the
    /// gap: actions come in harvest order, a little out of time order.
    fn horizon(&self) -> i64 {
        self.newest_us
            .saturating_sub(self.settings.gap_us.saturating_mul(2))
    }

    /// The open sessions whose last action is before `horizon` (all of them with `all`).
    fn open_before(&self, horizon: i64, all: bool) -> Vec<u64> {
        self.open
            .iter()
            .filter(|(_, o)| all || o.session.last_us() < horizon)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Moves the sessions past the horizon to `quiet`.
    fn set_aside(&mut self) {
        for k in self.open_before(self.horizon(), false) {
            let o = self.open.remove(&k).expect("a listed session");
            self.quiet.insert(k, o);
        }
    }

    /// Closes the sessions the journal has left a gap behind (all of them with `all`).
    fn sweep(&mut self, all: bool) {
        let horizon = self.horizon();
        let gap = self.settings.gap_us;
        // Every quiet session is past the horizon: it was when it was set aside.
        let mut done: Vec<Open> = self.quiet.drain().map(|(_, o)| o).collect();
        for k in self.open_before(horizon, all) {
            done.push(self.open.remove(&k).expect("a listed session"));
        }
        for o in done {
            let cap = self.caps[o.episode as usize];
            let pair = &mut self.pairs[o.pair as usize].1;
            pair.first_us = pair.first_us.min(o.first_us);
            pair.last_us = pair.last_us.max(o.last_us);
            pair.watched.absorb(o.heard);
            if let Some(seg) = o.session.close(cap, gap, &mut self.anomalies) {
                pair.watched.absorb(seg);
            }
        }
    }

    /// Ends every session and hands over the tables' material.
    pub fn finish(mut self) -> Aggregate {
        self.sweep(true);
        Aggregate {
            episodes: self.episodes,
            viewers: self.viewers.into_strings(),
            pairs: self.pairs,
            read: self.read,
            selected: self.selected,
            anomalies: self.anomalies,
        }
    }
}

fn update(field: &mut Option<String>, v: Option<&str>) {
    if let Some(v) = v {
        if field.as_deref() != Some(v) {
            *field = Some(v.to_string());
        }
    }
}

/// Everything the tables are made of, once the pass is over.
pub struct Aggregate {
    pub episodes: Vec<Episode>,
    /// Interned users; index [`NOT_LOGGED_IN`] is everyone not logged in.
    pub viewers: Vec<String>,
    /// Each (episode, viewer) pair once, in no particular order.
    pub pairs: Vec<((u32, u32), Pair)>,
    pub read: u64,
    pub selected: u64,
    pub anomalies: Anomalies,
}
