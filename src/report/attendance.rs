//! Harvard's attendance export, number for number (`harvester report attendance`).
//!
//! The original (`export attendance` of Harvard's harvest tools, over Elasticsearch) counted,
//! per episode and viewer, the distinct `chunk_interval`-second histogram buckets of the
//! `inpoint`s of `HEARTBEAT` actions with `is_playing` true, `is_live` matching, and a `huid`
//! other than `anonymous` (only that value: `None` got rows); then
//! `int(100.0 * (buckets / ceil((duration / 1000) / chunk_interval)))` in Python 3's double
//! precision, skipping (with a warning) an episode without a duration or with zero intervals.
//! It used the episode's `duration` with `--live` too. Two things differ, both on purpose:
//! the percent is capped at 100 (heartbeats at or past the end made Harvard's exceed it), and
//! a viewer's buckets stop being collected once they reach the episode's intervals (beyond
//! that the capped percent cannot change), so hostile positions cannot grow memory.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use super::input::Action;

/// Counts buckets per (episode, viewer).
pub struct Attendance {
    chunk: i64,
    live: bool,
    /// Media package ids and durations, by index.
    episodes: Vec<(String, Option<i64>)>,
    episode_ids: HashMap<String, u32>,
    viewers: Vec<String>,
    viewer_ids: HashMap<String, u32>,
    buckets: HashMap<(u32, u32), HashSet<i64>>,
    /// Heartbeats read whose `inpoint` was negative (counted in Harvard's way, into bucket -1).
    pub negative_inpoints: u64,
    /// Heartbeats in a new bucket of a viewer who already had all of the episode's intervals
    /// (Harvard's percent would have passed 100 with them).
    pub beyond_intervals: u64,
}

/// One row of the CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceRow {
    pub mpid: String,
    pub huid: String,
    pub percent: i64,
}

/// What the export wrote, and the episodes it skipped (with why).
#[derive(Debug, Default)]
pub struct AttendanceTable {
    pub rows: Vec<AttendanceRow>,
    pub skipped: Vec<(String, &'static str)>,
    /// Rows whose Harvard percent was over 100 (written as 100).
    pub capped: u64,
}

impl Attendance {
    pub fn new(chunk_interval: u32, live: bool) -> Attendance {
        Attendance {
            chunk: i64::from(chunk_interval.max(1)),
            live,
            episodes: Vec::new(),
            episode_ids: HashMap::default(),
            viewers: Vec::new(),
            viewer_ids: HashMap::default(),
            buckets: HashMap::default(),
            negative_inpoints: 0,
            beyond_intervals: 0,
        }
    }

    /// The number of intervals of an episode, `None` when Harvard skipped it.
    fn intervals(&self, duration_ms: Option<i64>) -> Option<f64> {
        let d = duration_ms? as f64;
        let n = ((d / 1000.0) / self.chunk as f64).ceil();
        (n > 0.0).then_some(n)
    }

    pub fn add(&mut self, a: &Action<'_>) {
        // Elasticsearch's `term` on action.type is exact (a keyword), so is this.
        let counted = a.kind == Some("HEARTBEAT") && a.is_playing && a.is_live == self.live;
        // Every action of an episode may carry its duration, counted or not.
        let duration = a.episode.and_then(|e| e.duration_ms);
        if !counted && duration.is_none() {
            return;
        }
        let ep = match self.episode_ids.get(a.mpid) {
            Some(i) => *i as usize,
            None => {
                self.episode_ids
                    .insert(a.mpid.to_string(), self.episodes.len() as u32);
                self.episodes.push((a.mpid.to_string(), None));
                self.episodes.len() - 1
            }
        };
        if duration.is_some() {
            self.episodes[ep].1 = duration;
        }
        // The record writes a missing user as "None", the value Harvard's index held.
        let huid = a.huid.unwrap_or("None");
        if !counted || huid == "anonymous" {
            return;
        }
        let Some(inpoint) = a.inpoint else {
            return;
        };
        if inpoint < 0 {
            self.negative_inpoints += 1;
        }
        let viewer = match self.viewer_ids.get(huid) {
            Some(i) => *i,
            None => {
                let i = self.viewers.len() as u32;
                self.viewer_ids.insert(huid.to_string(), i);
                self.viewers.push(huid.to_string());
                i
            }
        };
        let limit = self.intervals(self.episodes[ep].1);
        let set = self.buckets.entry((ep as u32, viewer)).or_default();
        // Elasticsearch's histogram key: floor(value / interval).
        let bucket = inpoint.div_euclid(self.chunk);
        if limit.is_none_or(|n| (set.len() as f64) < n) {
            set.insert(bucket);
        } else if !set.contains(&bucket) {
            self.beyond_intervals += 1;
        }
    }

    pub fn finish(mut self) -> AttendanceTable {
        let mut t = AttendanceTable::default();
        let mut by_episode: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        let mut durations: BTreeMap<String, Option<i64>> = BTreeMap::new();
        for ((ep, viewer), set) in std::mem::take(&mut self.buckets) {
            let (mpid, duration) = &self.episodes[ep as usize];
            durations.insert(mpid.clone(), *duration);
            by_episode
                .entry(mpid.clone())
                .or_default()
                .push((self.viewers[viewer as usize].clone(), set.len()));
        }
        for (mpid, mut viewers) in by_episode {
            let duration = durations[&mpid];
            let Some(total) = self.intervals(duration) else {
                t.skipped.push((
                    mpid,
                    if duration.is_none() {
                        "no duration"
                    } else {
                        "zero intervals"
                    },
                ));
                continue;
            };
            viewers.sort();
            for (huid, n) in viewers {
                let pct = (100.0 * (n as f64 / total)) as i64;
                if pct > 100 {
                    t.capped += 1;
                }
                t.rows.push(AttendanceRow {
                    mpid: mpid.clone(),
                    huid,
                    percent: pct.min(100),
                });
            }
        }
        t
    }
}
