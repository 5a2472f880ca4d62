//! `harvester load-episodes`: episode metadata + workflow times → journal → Elasticsearch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::{failed, open_journal, AppError};
use crate::cli::{Cli, LoadEpisodesArgs, OpencastArgs};
use crate::config::{self, ConfigError};
use crate::episode_doc::{newest_succeeded, EpisodeDoc};
use crate::es::{templates, BulkLines, BulkPolicy, EsClient};
use crate::journal::{DeadLetter, EpisodeDocEntry, EpisodeEntry, Journal};
use crate::opencast::{EpisodeMeta, Opencast, Scheduled, SearchSort, Workflow};
use crate::progress::Progress;
use crate::timefmt;

/// Episodes per search page and per journal/index round.
const PAGE: u64 = 100;

/// How the episodes are chosen.
enum Selection {
    /// Created at or after this instant (UTC microseconds).
    CreatedSince(i64),
    Ids(Vec<String>),
    SourceIndices(String),
}

#[derive(Debug, Default)]
struct Tally {
    episodes: u64,
    indexed: u64,
    unknown: u64,
    rejected: u64,
    with_gaps: u64,
    live: u64,
    requests: u64,
}

struct Job<'a> {
    oc: Opencast,
    es: EsClient,
    journal: Arc<Journal>,
    args: &'a LoadEpisodesArgs,
    tz: chrono_tz::Tz,
    policy: BulkPolicy,
    tally: Tally,
    progress: Progress,
}

/// The checked settings of a run: the clients and the episodes asked for.
struct Setup {
    tz: chrono_tz::Tz,
    oc: Opencast,
    es: EsClient,
    selection: Selection,
}

/// Reads and checks the settings; nothing is contacted yet.
async fn setup(a: &LoadEpisodesArgs) -> Result<Setup, AppError> {
    let tz = config::parse_tz(&a.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let admin = a.admin_host.as_deref().filter(|h| !h.trim().is_empty());
    if admin.is_none() {
        return Err(ConfigError::new(
            "load-episodes reads live-stream times from the admin node: set MATTERHORN_ADMIN_HOST (in .env) or pass -A/--admin-host"
        ).into());
    }
    let oc = config::opencast(
        &OpencastArgs {
            engage_host: a.engage_host.clone(),
            conn: a.conn.clone(),
        }
        .settings(),
        admin,
    )
    .map_err(|e| {
        ConfigError::new(
            e.to_string()
                .replace("-H/--engage-host", "-E/--engage-host"),
        )
    })?;
    let trust = a.es_tls.trust()?;
    crate::es::parse_host(&a.es_host)
        .map_err(|e| ConfigError::new(format!("{e} (set ELASTICSEARCH_HOST or -e/--es-host)")))?;
    if a.es_index.contains('%') {
        return Err(
            ConfigError::new("EPISODE_INDEX_NAME is one index name, without %-fields").into(),
        );
    }
    crate::forward::es::check_index_pattern(&a.es_index)
        .map_err(|e| ConfigError::new(format!("EPISODE_INDEX_NAME: {e}")))?;
    if !a.wait.is_finite() || a.wait < 0.0 {
        return Err(ConfigError::new("--wait takes a number of seconds, 0 or more").into());
    }
    let selection = selection(a)?;
    // Last: with ES_CA_FINGERPRINT this asks the node for its chain.
    let es = EsClient::new(&a.es_host, Duration::from_secs(a.es_timeout.max(1)), &trust)
        .await
        .map_err(|e| match e {
            crate::es::EsError::BadHost(_) => AppError::Config(ConfigError::new(format!(
                "{e} (set ELASTICSEARCH_HOST or -e/--es-host)"
            ))),
            e => AppError::Es(e),
        })?;
    Ok(Setup {
        tz,
        oc,
        es,
        selection,
    })
}

pub async fn load_episodes(cli: &Cli, a: &LoadEpisodesArgs) -> Result<(), AppError> {
    let Setup {
        tz,
        oc,
        es,
        selection,
    } = setup(a).await?;
    let journal = open_journal(&cli.journal)?;
    let began = Instant::now();

    // The template first: a node that is down fails the run before Opencast is asked anything.
    let glob = format!("{}*", a.es_index);
    es.put_template(
        &templates::name_for("episodes", &glob),
        templates::episodes(&glob),
    )
    .await?;
    super::identity::confirm(&oc, super::identity::OnDoubt::Fail).await?;

    let mut job = Job {
        oc,
        es,
        journal,
        args: a,
        tz,
        policy: BulkPolicy {
            attempts: a.es_attempts,
            ..BulkPolicy::default()
        },
        tally: Tally::default(),
        progress: Progress::new("load-episodes", "episodes", 0),
    };
    let result = job.run(selection).await;
    job.progress.finish();
    let t = &job.tally;
    tracing::info!(
        episodes = t.episodes,
        indexed = t.indexed,
        unknown = t.unknown,
        live = t.live,
        with_gaps = t.with_gaps,
        rejected = t.rejected,
        bulk_requests = t.requests,
        index = %a.es_index,
        seconds = format!("{:.3}", began.elapsed().as_secs_f64()),
        "load-episodes complete"
    );
    result
}

/// The episodes asked for: `--mpid`, the ids in action indices, or those created lately.
fn selection(a: &LoadEpisodesArgs) -> Result<Selection, ConfigError> {
    if !a.mpid.is_empty() {
        let mut ids: Vec<String> = a.mpid.iter().map(|m| m.trim().to_string()).collect();
        if ids.iter().any(String::is_empty) {
            return Err(ConfigError::new("--mpid takes a media package id"));
        }
        ids.dedup();
        Ok(Selection::Ids(ids))
    } else if let Some(p) = &a.source_index_pattern {
        let p = if p.trim().is_empty() {
            let yesterday = timefmt::now_us() - 86_400_000_000;
            crate::forward::es::format_index(&a.es_action_index, yesterday).ok_or_else(|| {
                ConfigError::new(format!(
                    "ES_ACTION_INDEX '{}' has an invalid %-field",
                    a.es_action_index
                ))
            })?
        } else {
            p.trim().to_string()
        };
        Ok(Selection::SourceIndices(p))
    } else {
        let days = a.created_from_days_ago.unwrap_or(1);
        let from = timefmt::now_us() - days as i64 * 86_400_000_000;
        Ok(Selection::CreatedSince(timefmt::floor_second(from)))
    }
}

impl Job<'_> {
    async fn run(&mut self, selection: Selection) -> Result<(), AppError> {
        match selection {
            Selection::CreatedSince(from) => self.load_created_since(from).await?,
            Selection::Ids(ids) => self.load_ids(ids).await?,
            Selection::SourceIndices(pattern) => {
                let ids = self.es.distinct_values(&pattern, "mpid", 1000).await?;
                tracing::info!(pattern = %pattern, media_packages = ids.len(), "media package ids found in action indices");
                self.load_ids(ids).await?;
            }
        }
        Ok(())
    }

    /// The episodes created at or after `from_us`. No release reads `createdFrom`, so the
    /// catalogue is read newest first (by creation up to 15.x, by modification from 16.0,
    /// and created ≤ modified) until a page reaches past the cut-off, and each episode is kept
    /// only when its own creation time is inside: exact, whatever the sort.
    async fn load_created_since(&mut self, from_us: i64) -> Result<(), AppError> {
        tracing::info!(created_from = %timefmt::format_utc_z(from_us), "listing episodes created since");
        let mut offset = 0;
        let mut undated = 0u64;
        loop {
            let (sort, hits) = self.oc.episodes_newest_first(PAGE, offset).await?;
            let n = hits.len() as u64;
            let mut past_cutoff = false;
            let mut page = Vec::with_capacity(hits.len());
            for h in hits {
                let key = match sort {
                    SearchSort::DateCreatedDesc => created_us(&h.meta, self.tz),
                    SearchSort::ModifiedDesc => h
                        .modified
                        .as_deref()
                        .and_then(|m| timefmt::parse_xsd(m, self.tz).ok()),
                };
                past_cutoff |= key.is_some_and(|k| k < from_us);
                match created_us(&h.meta, self.tz) {
                    Some(c) if c >= from_us => page.push(h.meta),
                    Some(_) => {}
                    None => undated += 1,
                }
            }
            self.load(page).await?;
            offset += n;
            if n < PAGE || past_cutoff {
                break;
            }
            self.pause().await;
        }
        if undated > 0 {
            tracing::warn!(
                episodes = undated,
                "episodes without a creation time (neither dcCreated nor start) were left out of -c"
            );
        }
        Ok(())
    }

    async fn pause(&self) {
        if self.args.wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(self.args.wait)).await;
        }
    }

    /// Looks ids up in pages; unknown ids are journaled as such and reported.
    async fn load_ids(&mut self, ids: Vec<String>) -> Result<(), AppError> {
        self.progress.set_total(ids.len() as u64);
        for (n, chunk) in ids.chunks(PAGE as usize).enumerate() {
            if n > 0 {
                self.pause().await;
            }
            let oc = &self.oc;
            let found: Vec<(String, Option<EpisodeMeta>)> = futures::stream::iter(chunk)
                .map(|id| async move { oc.episode(id).await.map(|m| (id.clone(), m)) })
                .buffered(self.args.concurrency as usize)
                .try_collect()
                .await?;
            let mut metas = Vec::new();
            let mut unknown = Vec::new();
            for (id, m) in found {
                match m {
                    Some(m) => metas.push(m),
                    None => {
                        tracing::warn!(mpid = %id, "Opencast does not know this episode; nothing indexed for it");
                        unknown.push((
                            id,
                            EpisodeEntry {
                                fetched_at_us: timefmt::now_us(),
                                meta: None,
                            },
                            None,
                        ));
                    }
                }
            }
            if !unknown.is_empty() {
                self.tally.unknown += unknown.len() as u64;
                self.tally.episodes += unknown.len() as u64;
                self.progress.inc(unknown.len() as u64);
                let j = self.journal.clone();
                tokio::task::spawn_blocking(move || j.put_episode_docs(&unknown)).await??;
            }
            self.load(metas).await?;
        }
        Ok(())
    }

    /// Workflows → documents → journal → index, for one page of episodes.
    async fn load(&mut self, metas: Vec<EpisodeMeta>) -> Result<(), AppError> {
        if metas.is_empty() {
            return Ok(());
        }
        let built = self.build(metas).await?;
        let now = timefmt::now_us();
        self.journal_docs(&built, now).await?;
        self.index(&built, now).await
    }

    /// Each episode's document, from its metadata and newest succeeded workflow.
    async fn build(
        &mut self,
        metas: Vec<EpisodeMeta>,
    ) -> Result<Vec<(EpisodeMeta, EpisodeDoc)>, AppError> {
        let (oc, def, tz) = (&self.oc, &self.args.workflow_definition, self.tz);
        let with_gaps = &mut self.tally.with_gaps;
        futures::stream::iter(metas)
            .map(|m| async move {
                let wfs = oc.workflows(&m.mpid, def).await?;
                let newest = newest_succeeded(&wfs);
                let (scheduled, asked) = scheduled_window(oc, &m.mpid, newest, tz).await;
                let (mut doc, mut gaps) = EpisodeDoc::build(&m, newest, scheduled, tz);
                if let Some(why) = asked {
                    gaps.0.push(why);
                    // Not knowing the schedule is not knowing whether it was live.
                    doc.live_stream = None;
                }
                if !gaps.0.is_empty() {
                    tracing::info!(mpid = %m.mpid, missing = %gaps.0.join("; "), "episode document has gaps; those fields are left out");
                }
                Ok::<_, crate::opencast::OpencastError>((m, doc, !gaps.0.is_empty()))
            })
            .buffered(self.args.concurrency as usize)
            .map_ok(|(m, doc, gaps)| {
                if gaps {
                    *with_gaps += 1;
                }
                (m, doc)
            })
            .try_collect()
            .await
            .map_err(AppError::from)
    }

    /// The metadata and documents, journaled before they are indexed.
    async fn journal_docs(
        &self,
        built: &[(EpisodeMeta, EpisodeDoc)],
        now: i64,
    ) -> Result<(), AppError> {
        let entries: Vec<(String, EpisodeEntry, Option<EpisodeDocEntry>)> = built
            .iter()
            .map(|(m, d)| {
                (
                    m.mpid.clone(),
                    EpisodeEntry {
                        fetched_at_us: now,
                        meta: Some(m.clone()),
                    },
                    Some(EpisodeDocEntry {
                        built_at_us: now,
                        doc: d.clone(),
                    }),
                )
            })
            .collect();
        let j = self.journal.clone();
        tokio::task::spawn_blocking(move || j.put_episode_docs(&entries)).await??;
        Ok(())
    }

    /// One bulk request of the documents; the ones Elasticsearch rejects become dead letters.
    async fn index(
        &mut self,
        built: &[(EpisodeMeta, EpisodeDoc)],
        now: i64,
    ) -> Result<(), AppError> {
        let mut lines = BulkLines::with_capacity(built.len(), built.len() * 1500);
        for (_, d) in built {
            lines.push_index(&self.args.es_index, &d.mpid, |out| {
                serde_json::to_writer(out, d).expect("a document serialises")
            });
            if d.live_stream == Some(true) {
                self.tally.live += 1;
            }
        }
        let report = self.es.bulk_index(&lines, &self.policy).await;
        self.tally.requests += report.requests;
        if !report.rejected.is_empty() {
            self.keep_rejected(&report.rejected, &lines, built, now)
                .await?;
        }
        let resolved = match &report.failed {
            Some((k, _)) => *k,
            None => built.len(),
        };
        self.tally.episodes += built.len() as u64;
        self.tally.indexed += (resolved
            - report
                .rejected
                .iter()
                .filter(|(k, _)| *k < resolved)
                .count()) as u64;
        self.progress.inc(built.len() as u64);
        if let Some((_, why)) = report.failed {
            return Err(failed(format!(
                "indexing episodes into {}: {why}; the documents are journaled, run the same command again",
                self.args.es_index
            )));
        }
        Ok(())
    }

    /// The documents Elasticsearch rejected (`(position, why)`), into the dead-letter table.
    async fn keep_rejected(
        &mut self,
        rejected: &[(usize, crate::es::Rejection)],
        lines: &BulkLines,
        built: &[(EpisodeMeta, EpisodeDoc)],
        now: i64,
    ) -> Result<(), AppError> {
        let dead: Vec<(String, DeadLetter)> = rejected
            .iter()
            .map(|(k, why)| {
                let mpid = &built[*k].1.mpid;
                (
                    format!("es:{}:{mpid}:{now}", self.args.es_index),
                    DeadLetter {
                        source: format!("elasticsearch index {}", self.args.es_index),
                        raw: String::from_utf8_lossy(lines.document(*k)).into_owned(),
                        reason: format!("Elasticsearch rejected episode {mpid} ({why})"),
                        at_us: now,
                    },
                )
            })
            .collect();
        self.tally.rejected += dead.len() as u64;
        tracing::warn!(
            rejected = dead.len(),
            "Elasticsearch rejected episode documents; they are in the dead-letter table (harvester journal dump --dead-letters)"
        );
        let j = self.journal.clone();
        tokio::task::spawn_blocking(move || j.add_dead_letters(dead)).await??;
        Ok(())
    }
}

/// When the episode was created: its Dublin Core `created`, else the media package `start`.
fn created_us(m: &EpisodeMeta, tz: chrono_tz::Tz) -> Option<i64> {
    m.dc_created
        .as_deref()
        .or(m.start.as_deref())
        .and_then(|c| timefmt::parse_xsd(c, tz).ok())
}

/// The scheduler's window of an episode whose workflow has no `capture` operation (4.0+ keeps
/// the planned times with the scheduler). Asked only then; a failure is a gap (the reason in
/// `.1`), never the end of the run.
async fn scheduled_window(
    oc: &Opencast,
    mpid: &str,
    workflow: Option<&Workflow>,
    tz: chrono_tz::Tz,
) -> (Option<Scheduled>, Option<String>) {
    let Some(w) = workflow else {
        return (None, None);
    };
    if w.operations.iter().any(|o| o.id == "capture") {
        return (None, None);
    }
    match oc.scheduled(mpid, tz).await {
        Ok(s) => (s, None),
        Err(e) => (
            None,
            Some(format!("the scheduler's times could not be read: {e}")),
        ),
    }
}
