//! The report tables: viewers (one row per episode and viewer), episodes (with a retention
//! curve) and series (the roll call), made from an [`Aggregate`].

use serde::Serialize;

use super::aggregate::{Aggregate, Episode, Pair, NOT_LOGGED_IN};
use super::rules::position_cap;

/// Percent of an episode, bounded to [0, 100], one decimal; `None` without a duration.
fn percent(seconds: u64, duration_ms: Option<i64>) -> Option<f64> {
    let d = duration_ms.filter(|d| *d > 0)? as f64 / 1000.0;
    let p = (seconds as f64 / d * 100.0).min(100.0);
    Some((p * 10.0).round() / 10.0)
}

/// One (episode, viewer) row.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerRow {
    pub mpid: String,
    /// `None` for the one row of everyone not logged in.
    pub huid: Option<String>,
    pub logged_in: bool,
    pub seconds_watched: u64,
    pub percent_watched: Option<f64>,
    pub sessions: u32,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub segments: Vec<(u32, u32)>,
}

/// One episode row.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeRow {
    pub mpid: String,
    pub title: Option<String>,
    pub series: Option<String>,
    pub series_title: Option<String>,
    pub duration_s: Option<f64>,
    pub views: u64,
    pub unique_viewers: u64,
    /// Whether anyone not logged in watched (their sessions are in `views`).
    pub not_logged_in: bool,
    pub hours_watched: f64,
    pub avg_percent_watched: Option<f64>,
    /// Width of a retention bucket, seconds.
    pub bucket_s: u32,
    /// Viewers (the not-logged-in group as one) who watched some of each bucket.
    pub retention: Vec<u32>,
}

/// One (series, viewer) row of the roll call.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    pub series: String,
    pub series_title: Option<String>,
    pub huid: String,
    pub lectures_watched: u32,
    pub lectures_published: u32,
    pub threshold_percent: f64,
}

/// The tables over one aggregate.
pub struct Tables {
    agg: Aggregate,
    /// Pairs grouped by episode, viewers in name order (the not-logged-in row last).
    by_episode: Vec<Vec<(u32, Pair)>>,
}

impl Tables {
    pub fn new(mut agg: Aggregate) -> Tables {
        let mut by_episode: Vec<Vec<(u32, Pair)>> = vec![Vec::new(); agg.episodes.len()];
        for ((e, v), p) in agg.pairs.drain(..) {
            by_episode[e as usize].push((v, p));
        }
        let viewers = &agg.viewers;
        for rows in &mut by_episode {
            rows.sort_by(|a, b| {
                (a.0 == NOT_LOGGED_IN, &viewers[a.0 as usize])
                    .cmp(&(b.0 == NOT_LOGGED_IN, &viewers[b.0 as usize]))
            });
        }
        Tables { agg, by_episode }
    }

    pub fn aggregate(&self) -> &Aggregate {
        &self.agg
    }

    /// Episodes.
    pub fn episode_count(&self) -> usize {
        self.agg.episodes.len()
    }

    /// (episode, viewer) rows.
    pub fn pair_count(&self) -> usize {
        self.by_episode.iter().map(Vec::len).sum()
    }

    /// Episodes in media package order (their indices).
    fn episode_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.agg.episodes.len()).collect();
        order.sort_by(|a, b| self.agg.episodes[*a].mpid.cmp(&self.agg.episodes[*b].mpid));
        order
    }

    /// Episodes without a usable duration (no percent for them).
    pub fn episodes_without_duration(&self) -> u64 {
        self.agg
            .episodes
            .iter()
            .filter(|e| e.duration_ms.is_none_or(|d| d <= 0))
            .count() as u64
    }

    pub fn viewers(&self) -> impl Iterator<Item = ViewerRow> + '_ {
        self.episode_order().into_iter().flat_map(move |e| {
            let ep = &self.agg.episodes[e];
            self.by_episode[e].iter().map(move |(v, p)| {
                let seconds = p.watched.seconds();
                ViewerRow {
                    mpid: ep.mpid.clone(),
                    huid: (*v != NOT_LOGGED_IN).then(|| self.agg.viewers[*v as usize].clone()),
                    logged_in: *v != NOT_LOGGED_IN,
                    seconds_watched: seconds,
                    percent_watched: percent(seconds, ep.duration_ms),
                    sessions: p.sessions,
                    first_seen_us: p.first_us,
                    last_seen_us: p.last_us,
                    segments: p.watched.spans().to_vec(),
                }
            })
        })
    }

    pub fn episodes(&self, bucket_s: u32) -> impl Iterator<Item = EpisodeRow> + '_ {
        let bucket_s = bucket_s.max(1);
        self.episode_order().into_iter().map(move |e| {
            let ep = &self.agg.episodes[e];
            let rows = &self.by_episode[e];
            let logged_in: Vec<&Pair> = rows
                .iter()
                .filter(|(v, _)| *v != NOT_LOGGED_IN)
                .map(|(_, p)| p)
                .collect();
            let seconds: u64 = rows.iter().map(|(_, p)| p.watched.seconds()).sum();
            let percents: Vec<f64> = logged_in
                .iter()
                .filter_map(|p| percent(p.watched.seconds(), ep.duration_ms))
                .collect();
            EpisodeRow {
                mpid: ep.mpid.clone(),
                title: ep.title.clone(),
                series: ep.series_id.clone(),
                series_title: ep.series_title.clone(),
                duration_s: ep.duration_ms.map(|d| d as f64 / 1000.0),
                views: ep.views,
                unique_viewers: logged_in.len() as u64,
                not_logged_in: rows.iter().any(|(v, _)| *v == NOT_LOGGED_IN),
                hours_watched: (seconds as f64 / 3600.0 * 1000.0).round() / 1000.0,
                avg_percent_watched: (!percents.is_empty()).then(|| {
                    let avg = percents.iter().sum::<f64>() / percents.len() as f64;
                    (avg * 10.0).round() / 10.0
                }),
                bucket_s,
                retention: retention(ep, rows, bucket_s),
            }
        })
    }

    /// The roll call: per series and logged-in viewer, the episodes watched to at least
    /// `threshold` percent, out of the series' episodes the journal knows.
    pub fn series(&self, threshold: f64) -> Vec<SeriesRow> {
        use std::collections::BTreeMap;
        let mut published: BTreeMap<&str, (u32, Option<&str>)> = BTreeMap::new();
        let mut watched: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for (e, ep) in self.agg.episodes.iter().enumerate() {
            let Some(s) = ep.series_id.as_deref() else {
                continue;
            };
            let entry = published.entry(s).or_insert((0, None));
            entry.0 += 1;
            if entry.1.is_none() {
                entry.1 = ep.series_title.as_deref();
            }
            for (v, p) in &self.by_episode[e] {
                if *v == NOT_LOGGED_IN {
                    continue;
                }
                let n = watched
                    .entry((s, self.agg.viewers[*v as usize].as_str()))
                    .or_insert(0);
                if percent(p.watched.seconds(), ep.duration_ms).is_some_and(|p| p >= threshold) {
                    *n += 1;
                }
            }
        }
        watched
            .into_iter()
            .map(|((s, huid), n)| SeriesRow {
                series: s.to_string(),
                series_title: published[s].1.map(str::to_string),
                huid: huid.to_string(),
                lectures_watched: n,
                lectures_published: published[s].0,
                threshold_percent: threshold,
            })
            .collect()
    }
}

/// Viewers per bucket of `bucket_s` seconds, each counted once per bucket they saw any of.
fn retention(ep: &Episode, rows: &[(u32, Pair)], bucket_s: u32) -> Vec<u32> {
    let end = match ep.duration_ms {
        Some(d) if d > 0 => position_cap(Some(d)),
        _ => rows.iter().map(|(_, p)| p.watched.end()).max().unwrap_or(0),
    };
    let mut curve = vec![0u32; end.div_ceil(bucket_s) as usize];
    for (_, p) in rows {
        let mut last = None;
        for &(a, b) in p.watched.spans() {
            for k in a / bucket_s..=(b - 1) / bucket_s {
                if last != Some(k) {
                    if let Some(c) = curve.get_mut(k as usize) {
                        *c += 1;
                    }
                    last = Some(k);
                }
            }
        }
    }
    curve
}
