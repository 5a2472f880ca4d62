//! The rules that turn a session's actions into watched stretches (README: "Who watched what").
//!
//! - **Heartbeat players** (Paella 6 and the DCE build, up to Opencast 12): a `HEARTBEAT` with
//!   `is_playing` true covers `[inpoint, outpoint)`; a `FOOTPRINT` covers it whatever
//!   `is_playing` says, as Opencast's own `getFootprints` counts footprints.
//! - **Event players** (Paella 7, Opencast 13+: `PLAY`, `PAUSE`, `SEEK`, whole seconds, no
//!   heartbeat): a `PLAY` at position p starts playing; the session's next `PLAY`, `PAUSE` or
//!   `SEEK` ends it at the position that action reports (a `SEEK`'s `inpoint` is the position
//!   it left), which follows the player's own clock and so its playback speed; a reported
//!   position before p, or more than twice the wall time since the `PLAY` past it (Paella's
//!   fastest speed is 2x), is not believed and the play ends at p plus the wall time (real
//!   speed). A `SEEK` while playing (or one that says the player is playing) goes on playing
//!   from its `outpoint`. A play nothing ends runs at real speed until the session gap
//!   (`REPORT_SESSION_GAP`, 30 minutes) after the session's last action, and an action after
//!   a longer silence finds the play ended there.
//! - A session that sent any heartbeat is a heartbeat session: its `PLAY`/`PAUSE`/`SEEK`
//!   (Paella 6 sends those too) add nothing, the heartbeats already say what played, and
//!   what the event rules corrected in it is not counted either.
//! - Every position is bounded: below 0 it is 0, past the episode's end it is the end, and
//!   with no duration (a live stream) at most [`MAX_POSITION`]. Each correction is counted in
//!   the report's summary line.

use super::input::Action;
use super::segments::Segments;

/// The largest position believed without a duration (seven days, in seconds): a live stream
/// runs for hours, a position of years is a broken player or a forged request.
pub const MAX_POSITION: i64 = 7 * 86_400;

/// What the rules had to correct or leave out, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Anomalies {
    /// Positions below 0 (read as 0).
    pub negative_positions: u64,
    /// Positions past the episode's end (read as the end).
    pub past_end: u64,
    /// Positions past [`MAX_POSITION`] (read as the end, or as that bound without a duration).
    pub absurd_positions: u64,
    /// Heartbeats whose outpoint is before their inpoint (left out).
    pub outpoint_before_inpoint: u64,
    /// Actions a rule needed a position of and that had none (left out).
    pub missing_positions: u64,
    /// Actions older than their session's previous one (read as simultaneous with it).
    pub out_of_order: u64,
    /// Plays ended by the session gap rather than by an action.
    pub plays_ended_by_gap: u64,
    /// A reported end position that was not believed (real speed used instead).
    pub implausible_ends: u64,
    /// Sessions with more than [`CROWDED`] actions (a billion seeks is bounded, not refused),
    /// and the most actions one session had.
    pub crowded_sessions: u64,
    pub most_actions_in_a_session: u64,
}

/// A session with more actions than this is named in the summary: ten hours of heartbeats
/// every 30 s are 1,200.
pub const CROWDED: u64 = 10_000;

impl Anomalies {
    /// Adds `other`'s counts.
    pub fn add(&mut self, o: &Anomalies) {
        self.negative_positions += o.negative_positions;
        self.past_end += o.past_end;
        self.absurd_positions += o.absurd_positions;
        self.outpoint_before_inpoint += o.outpoint_before_inpoint;
        self.missing_positions += o.missing_positions;
        self.out_of_order += o.out_of_order;
        self.plays_ended_by_gap += o.plays_ended_by_gap;
        self.implausible_ends += o.implausible_ends;
        self.crowded_sessions += o.crowded_sessions;
        self.most_actions_in_a_session = self
            .most_actions_in_a_session
            .max(o.most_actions_in_a_session);
    }

    /// Corrections and omissions in all (plays ended by the gap are the rule, not a fault).
    pub fn total(&self) -> u64 {
        self.negative_positions
            + self.past_end
            + self.absurd_positions
            + self.outpoint_before_inpoint
            + self.missing_positions
            + self.out_of_order
            + self.implausible_ends
            + self.crowded_sessions
    }
}

/// The bound on positions in an episode, in seconds: its duration, else [`MAX_POSITION`].
pub fn position_cap(duration_ms: Option<i64>) -> u32 {
    match duration_ms {
        Some(d) if d > 0 => ((d - 1) / 1000 + 1).min(MAX_POSITION) as u32,
        _ => MAX_POSITION as u32,
    }
}

/// A position read within `[0, cap]`, each correction counted.
pub fn position(v: Option<i64>, cap: u32, n: &mut Anomalies) -> Option<u32> {
    let v = v?;
    Some(if v < 0 {
        n.negative_positions += 1;
        0
    } else if v > MAX_POSITION {
        n.absurd_positions += 1;
        cap
    } else if v > i64::from(cap) {
        n.past_end += 1;
        cap
    } else {
        v as u32
    })
}

/// The kinds of action the rules tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Heartbeat,
    Footprint,
    Play,
    Pause,
    Seek,
    Other,
}

fn kind(k: Option<&str>) -> Kind {
    let Some(k) = k else { return Kind::Other };
    let is = |s: &str| k.eq_ignore_ascii_case(s);
    if is("HEARTBEAT") {
        Kind::Heartbeat
    } else if is("FOOTPRINT") {
        Kind::Footprint
    } else if is("PLAY") {
        Kind::Play
    } else if is("PAUSE") {
        Kind::Pause
    } else if is("SEEK") {
        Kind::Seek
    } else {
        Kind::Other
    }
}

/// One viewing session of one episode, while it may still get actions.
#[derive(Debug, Clone)]
pub struct Session {
    last_us: i64,
    /// Playing since (position, time).
    playing: Option<(u32, i64)>,
    heartbeat: bool,
    /// What the event rules found; it counts only if the session never sent a heartbeat.
    pending: Segments,
    /// What the event rules corrected: counted, like `pending`, only if it counts.
    noted: Anomalies,
    actions: u64,
}

impl Session {
    pub fn new(first_us: i64) -> Session {
        Session {
            last_us: first_us,
            playing: None,
            heartbeat: false,
            pending: Segments::default(),
            noted: Anomalies::default(),
            actions: 0,
        }
    }

    /// The time of the session's last action.
    pub fn last_us(&self) -> i64 {
        self.last_us
    }

    /// What the session has played so far: for a heartbeat session the stretches its
    /// heartbeats put in `watched` (kept by the caller), else what the event rules found (a
    /// play still running counts once it ends).
    pub fn played<'a>(&'a self, watched: &'a Segments) -> &'a Segments {
        if self.heartbeat {
            watched
        } else {
            &self.pending
        }
    }

    /// Whether the player is playing, as far as the actions tell.
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Applies one action; heartbeat stretches go straight into `watched`.
    pub fn apply(
        &mut self,
        a: &Action<'_>,
        cap: u32,
        gap_us: i64,
        watched: &mut Segments,
        n: &mut Anomalies,
    ) {
        let mut t = a.created_us;
        if t < self.last_us {
            n.out_of_order += 1;
            t = self.last_us;
        }
        self.actions += 1;
        let mut noted = std::mem::take(&mut self.noted);
        self.event(a, t, cap, gap_us, watched, n, &mut noted);
        self.noted = noted;
        self.last_us = t;
    }

    /// [`Session::apply`] at time `t`; the event rules count into `noted`.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        a: &Action<'_>,
        t: i64,
        cap: u32,
        gap_us: i64,
        watched: &mut Segments,
        hb: &mut Anomalies,
        n: &mut Anomalies,
    ) {
        if self.playing.is_some() && t.saturating_sub(self.last_us) > gap_us {
            self.end_play(self.last_us.saturating_add(gap_us), None, cap, n);
            n.plays_ended_by_gap += 1;
        }
        match kind(a.kind) {
            Kind::Heartbeat | Kind::Footprint => {
                if kind(a.kind) == Kind::Heartbeat && !a.is_playing {
                    // A heartbeat of a paused player covers nothing.
                } else {
                    self.heartbeat = true;
                    heartbeat(a, cap, watched, hb);
                }
            }
            Kind::Play => {
                let at = position(a.inpoint.or(a.outpoint), cap, n);
                if self.playing.is_some() {
                    self.end_play(t, at, cap, n);
                }
                match at {
                    Some(p) => self.playing = Some((p, t)),
                    None => n.missing_positions += 1,
                }
            }
            Kind::Pause => {
                if self.playing.is_some() {
                    let at = position(a.inpoint.or(a.outpoint), cap, n);
                    self.end_play(t, at, cap, n);
                }
            }
            Kind::Seek => {
                let was_playing = self.playing.is_some();
                if was_playing {
                    let left = position(a.inpoint, cap, n);
                    self.end_play(t, left, cap, n);
                }
                if was_playing || a.is_playing {
                    match position(a.outpoint, cap, n) {
                        Some(p) => self.playing = Some((p, t)),
                        None => n.missing_positions += 1,
                    }
                }
            }
            Kind::Other => {}
        }
    }

    /// Ends the session (a gap, or the end of the journal): what it adds to its viewer's
    /// stretches, `None` for a heartbeat session (its heartbeats are already counted).
    pub fn close(mut self, cap: u32, gap_us: i64, n: &mut Anomalies) -> Option<Segments> {
        if self.actions > CROWDED {
            n.crowded_sessions += 1;
            n.most_actions_in_a_session = n.most_actions_in_a_session.max(self.actions);
        }
        let mut noted = std::mem::take(&mut self.noted);
        if self.playing.is_some() {
            self.end_play(self.last_us.saturating_add(gap_us), None, cap, &mut noted);
            noted.plays_ended_by_gap += 1;
        }
        if self.heartbeat {
            return None;
        }
        n.add(&noted);
        (!self.pending.is_empty()).then_some(self.pending)
    }

    /// Ends the current play at time `t`, where the player reported position `reported`.
    fn end_play(&mut self, t: i64, reported: Option<u32>, cap: u32, n: &mut Anomalies) {
        let Some((p, since)) = self.playing.take() else {
            return;
        };
        let wall = t
            .saturating_sub(since)
            .clamp(0, i64::MAX / 2)
            .saturating_add(500_000)
            / 1_000_000;
        let real_speed = (i64::from(p).saturating_add(wall)).min(i64::from(cap)) as u32;
        let end = match reported {
            Some(q) if q >= p && i64::from(q - p) <= wall.saturating_mul(2).saturating_add(1) => q,
            Some(_) => {
                n.implausible_ends += 1;
                real_speed
            }
            None => real_speed,
        };
        self.pending.add(p, end);
    }
}

/// A heartbeat's stretch into `watched`.
fn heartbeat(a: &Action<'_>, cap: u32, watched: &mut Segments, n: &mut Anomalies) {
    let (Some(i), Some(o)) = (a.inpoint, a.outpoint) else {
        n.missing_positions += 1;
        return;
    };
    if o < i {
        n.outpoint_before_inpoint += 1;
        return;
    }
    let (Some(i), Some(o)) = (position(Some(i), cap, n), position(Some(o), cap, n)) else {
        return;
    };
    watched.add(i, o);
}
