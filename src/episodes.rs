//! The episode cache: one Opencast look-up per media package per `EPISODE_CACHE_EXPIRE`.
//!
//! It replaces the original's Redis. Concurrent look-ups of one id are coalesced into a single
//! request (moka's `try_get_with`), and a miss first asks the journal, which keeps every episode
//! fetched with its time: a harvest run from cron starts warm, as the Redis-backed original did.
//! A transient failure is never cached and never turns into an unknown episode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use chrono_tz::Tz;

use crate::journal::{EpisodeEntry, Journal};
use crate::opencast::{Opencast, OpencastError};
use crate::record::EpisodeBlock;
use crate::timefmt;

/// A cached look-up: the entry, and whether the journal already holds it.
#[derive(Debug)]
pub struct Lookup {
    pub entry: EpisodeEntry,
    /// The record's `episode` block, made once and shared by every action of the episode.
    pub block: Option<Arc<EpisodeBlock>>,
    journaled: AtomicBool,
}

impl Lookup {
    fn new(entry: EpisodeEntry, journaled: bool, tz: Tz) -> Lookup {
        let block = entry
            .meta
            .as_ref()
            .map(|m| Arc::new(EpisodeBlock::from_meta(m, tz)));
        Lookup {
            entry,
            block,
            journaled: AtomicBool::new(journaled),
        }
    }
}

impl Lookup {
    /// True exactly once for an entry the journal does not hold yet (the caller journals it).
    pub fn take_unjournaled(&self) -> bool {
        !self.journaled.swap(true, Ordering::AcqRel)
    }
}

/// Shared episode cache (clone freely).
#[derive(Clone)]
pub struct EpisodeCache {
    cache: Cache<String, Arc<Lookup>>,
    opencast: Opencast,
    journal: Arc<Journal>,
    ttl: Duration,
    tz: Tz,
    fetched: Arc<AtomicU64>,
    /// Bounds the search requests in flight, whatever the number of pages being prepared: the
    /// engage node is not asked for dozens of episodes at once.
    requests: Arc<tokio::sync::Semaphore>,
}

/// Episode requests to Opencast in flight at most, across all pages.
const MAX_EPISODE_REQUESTS: usize = 32;

impl EpisodeCache {
    pub fn new(opencast: Opencast, journal: Arc<Journal>, ttl: Duration, tz: Tz) -> EpisodeCache {
        EpisodeCache {
            cache: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ttl)
                .build(),
            opencast,
            journal,
            ttl,
            tz,
            fetched: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(tokio::sync::Semaphore::new(MAX_EPISODE_REQUESTS)),
        }
    }

    /// Episodes fetched from Opencast so far (not from the cache or the journal).
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The episode of `mpid` (its `meta` is `None` when Opencast does not know it).
    pub async fn get(&self, mpid: &str) -> Result<Arc<Lookup>, Arc<OpencastError>> {
        let this = self.clone();
        let id = mpid.to_string();
        self.cache
            .try_get_with(mpid.to_string(), async move { this.load(id).await })
            .await
    }

    async fn load(&self, mpid: String) -> Result<Arc<Lookup>, OpencastError> {
        // A point read of a small table: microseconds, done in place. Handing it to the
        // blocking pool cost more (two thread switches per episode) than the read itself.
        let stored = self.journal.episode(&mpid).ok().flatten();
        let ttl_us = self.ttl.as_micros() as i64;
        if let Some(e) = stored {
            if timefmt::now_us() - e.fetched_at_us < ttl_us {
                return Ok(Arc::new(Lookup::new(e, true, self.tz)));
            }
        }
        let meta = {
            let _permit = self
                .requests
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.opencast.episode(&mpid).await?
        };
        self.fetched.fetch_add(1, Ordering::Relaxed);
        if meta.is_none() {
            tracing::warn!(mpid = %mpid, "episode not found in Opencast; its actions get \"episode\": {{}}");
        }
        let entry = EpisodeEntry {
            fetched_at_us: timefmt::now_us(),
            meta,
        };
        Ok(Arc::new(Lookup::new(entry, false, self.tz)))
    }
}
