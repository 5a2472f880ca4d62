//! The source: Opencast's REST endpoints as the harvester uses them.
//!
//! `wire` is the lenient decoding of Opencast's JSON, `types` the strict types made from it,
//! `digest` the client's Digest answers (the simulator checks them with its own code),
//! `identity` who Opencast says a request ran as, `client` the HTTP layer.

pub mod actions;
pub mod client;
pub mod digest;
pub mod identity;
pub mod types;
pub mod wire;

pub use actions::{ActionsQuery, Api, ApiProbe};
pub use client::{base_url, AuthScheme, Client, ClientConfig, OpencastError};
pub use identity::Identity;
pub use types::{
    Action, Attachment, EpisodeMeta, JudgedPage, Operation, Scheduled, Workflow, OMITTED,
};
pub use wire::{ActionsPage, DecodeError};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::Url;

use wire::{SearchEnvelope, WorkflowsEnvelope};

/// The engage (and optionally admin) node of one Opencast installation.
#[derive(Clone)]
pub struct Opencast {
    client: Client,
    engage: Url,
    admin: Option<Url>,
    dialect: Arc<Dialect>,
}

impl Opencast {
    pub fn new(client: Client, engage: Url, admin: Option<Url>) -> Opencast {
        client.register_base(&engage);
        if let Some(a) = &admin {
            client.register_base(a);
        }
        Opencast {
            client,
            engage,
            admin,
            dialect: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Who Opencast runs our requests as (`/info/me.json` on the engage node), asked once
    /// without retries: a transport fault or a 5xx is [`OpencastError::Exhausted`].
    pub async fn whoami(&self) -> Result<Identity, OpencastError> {
        let u = self.engage.join("info/me.json").expect("static path");
        let probe = self.client.probe(&u).await?;
        Identity::parse(&probe.body).map_err(|e| OpencastError::Unexpected {
            url: u.to_string(),
            why: e.to_string(),
        })
    }

    /// Fails unless Opencast runs our requests as our user: with credentials it ignored (Basic
    /// before 3.0, say) it would serve them anonymously, private episodes hidden.
    pub async fn verify_identity(&self) -> Result<Identity, OpencastError> {
        let id = self.whoami().await?;
        if id.username != self.client.user() {
            return Err(OpencastError::NotAuthenticated {
                url: self
                    .engage
                    .join("info/me.json")
                    .expect("static path")
                    .to_string(),
                user: self.client.user().to_string(),
                ran_as: id
                    .username
                    .chars()
                    .take(64)
                    .flat_map(char::escape_default)
                    .collect(),
                scheme: self.client.scheme(),
            });
        }
        Ok(id)
    }

    /// The URL of one page of user actions (`start`/`end` already in the server's zone).
    pub fn actions_url(&self, start: &str, end: &str, limit: u64, offset: u64) -> Url {
        let q = ActionsQuery::Window {
            start: start.into(),
            end: end.into(),
        };
        self.actions_query_url(&q, limit, offset)
    }

    /// The raw body of one page of user actions (transport faults and 5xx retried). The caller
    /// decodes it with [`ActionsPage::parse`] and retries through the client when it does not
    /// decode, since the page borrows from the body.
    pub async fn actions_body(&self, url: &Url) -> Result<bytes::Bytes, OpencastError> {
        self.client.get_bytes(url).await
    }

    /// The episode with media package id `mpid`, deleted ones included; `None` when unknown.
    pub async fn episode(&self, mpid: &str) -> Result<Option<EpisodeMeta>, OpencastError> {
        let mut u = self
            .engage
            .join("search/episode.json")
            .expect("static path");
        u.query_pairs_mut()
            .append_pair("id", mpid)
            .append_pair("limit", "1")
            .append_pair("includeDeleted", "true");
        let found = self
            .client
            .get_parsed(&u, |b| parse_search(b, "search/episode.json"))
            .await?;
        Ok(found.into_iter().map(|h| h.meta).find(|e| e.mpid == mpid))
    }

    /// A page of the catalogue, newest first, in the order the release can sort by:
    /// `DATE_CREATED_DESC` up to 15.x, `modified desc` from 16.0 (whose search service sorts
    /// only by title, contributor, creator and `modified`, and answers anything else with a
    /// 400). No release reads `createdFrom`; the caller stops paging at its cut-off.
    ///
    /// Which one is chosen by trying: the first 400 for `DATE_CREATED_DESC` switches this
    /// handle (and its clones) to `modified desc` for good.
    pub async fn episodes_newest_first(
        &self,
        limit: u64,
        offset: u64,
    ) -> Result<(SearchSort, Vec<SearchHit>), OpencastError> {
        loop {
            let sort = self.dialect.search_sort();
            let mut u = self
                .engage
                .join("search/episode.json")
                .expect("static path");
            u.query_pairs_mut()
                .append_pair("sort", sort.param())
                .append_pair("limit", &limit.to_string())
                .append_pair("offset", &offset.to_string())
                .append_pair("includeDeleted", "true");
            match self
                .client
                .get_parsed(&u, |b| parse_search(b, "search/episode.json"))
                .await
            {
                Ok(hits) => return Ok((sort, hits)),
                Err(OpencastError::Status { status: 400, .. })
                    if sort == SearchSort::DateCreatedDesc =>
                {
                    tracing::info!(
                        "Opencast refuses sort=DATE_CREATED_DESC (the search service of 16.0+): listing by sort=modified desc"
                    );
                    self.dialect.set_search_sort(SearchSort::ModifiedDesc);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// SUCCEEDED workflows of `definition` for one media package (admin node).
    ///
    /// Up to 11.x `/workflow/instances.json` filters by media package, state and definition;
    /// 12.0 removed it (a 404) for `/workflow/mediaPackage/{id}/instances.json`, which lists
    /// every workflow of the media package: the state and definition are filtered here. The
    /// first 404 of the old path switches this handle (and its clones) to the new one.
    pub async fn workflows(
        &self,
        mpid: &str,
        definition: &str,
    ) -> Result<Vec<Workflow>, OpencastError> {
        let admin = self.admin()?;
        if !self.dialect.workflows_by_media_package() {
            let mut u = admin.join("workflow/instances.json").expect("static path");
            u.query_pairs_mut()
                .append_pair("mp", mpid)
                .append_pair("state", "SUCCEEDED")
                .append_pair("workflowdefinition", definition)
                .append_pair("count", "100")
                .append_pair("startPage", "0");
            match self
                .client
                .get_parsed(&u, |b| parse_workflows(b, "workflow/instances.json"))
                .await
            {
                Err(OpencastError::Status { status: 404, .. }) => {
                    tracing::info!(
                        "Opencast has no /workflow/instances.json (12.0+): reading /workflow/mediaPackage/{{id}}/instances.json"
                    );
                    self.dialect.set_workflows_by_media_package();
                }
                other => return other,
            }
        }
        let mut u = admin.clone();
        u.path_segments_mut()
            .map_err(|_| OpencastError::BadHost(admin.to_string()))?
            .pop_if_empty()
            .extend(["workflow", "mediaPackage", mpid, "instances.json"]);
        let all = self
            .client
            .get_parsed(&u, |b| {
                parse_workflows(b, "workflow/mediaPackage/{id}/instances.json")
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|w| w.template.as_deref() == Some(definition))
            .filter(|w| {
                w.state
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("SUCCEEDED"))
            })
            .collect())
    }

    /// The scheduler's planned times of the event `mpid` (`/recordings/{id}/technical.json`,
    /// admin node, 4.0+): `None` when the scheduler does not know it (a 404: an upload, not a
    /// scheduled capture, or a release before 4.0 that has no such endpoint).
    pub async fn scheduled(
        &self,
        mpid: &str,
        tz: chrono_tz::Tz,
    ) -> Result<Option<Scheduled>, OpencastError> {
        let admin = self.admin()?;
        let mut u = admin.clone();
        u.path_segments_mut()
            .map_err(|_| OpencastError::BadHost(admin.to_string()))?
            .pop_if_empty()
            .extend(["recordings", mpid, "technical.json"]);
        let parsed = self
            .client
            .get_parsed(&u, |b| {
                serde_json::from_slice::<wire::WireTechnical>(b)
                    .map_err(|e| DecodeError::json("recordings/{id}/technical.json", &e))
            })
            .await;
        match parsed {
            Ok(t) => Ok(Scheduled::from_wire(t, tz)),
            Err(OpencastError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn admin(&self) -> Result<&Url, OpencastError> {
        self.admin
            .as_ref()
            .ok_or_else(|| OpencastError::BadHost("(MATTERHORN_ADMIN_HOST is not set)".into()))
    }
}

/// One search result: the neutral episode model, and (16.0+) when the index entry last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub meta: EpisodeMeta,
    /// `modified` of a 16.0+ result, as Opencast wrote it (an ISO instant).
    pub modified: Option<String>,
}

/// How a page of the catalogue is sorted, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSort {
    /// `DATE_CREATED_DESC`: up to 15.x (and the DCE build).
    DateCreatedDesc,
    /// `modified desc`: 16.0+ (created ≤ modified, so a cut-off on `created` is one on it too).
    ModifiedDesc,
}

impl SearchSort {
    pub fn param(self) -> &'static str {
        match self {
            SearchSort::DateCreatedDesc => "DATE_CREATED_DESC",
            SearchSort::ModifiedDesc => "modified desc",
        }
    }
}

/// What this Opencast's answers taught the client about its release (shared by clones).
#[derive(Debug, Default)]
struct Dialect {
    modified_sort: AtomicBool,
    workflows_by_mp: AtomicBool,
}

impl Dialect {
    fn search_sort(&self) -> SearchSort {
        if self.modified_sort.load(Ordering::Relaxed) {
            SearchSort::ModifiedDesc
        } else {
            SearchSort::DateCreatedDesc
        }
    }

    fn set_search_sort(&self, s: SearchSort) {
        self.modified_sort
            .store(s == SearchSort::ModifiedDesc, Ordering::Relaxed);
    }

    fn workflows_by_media_package(&self) -> bool {
        self.workflows_by_mp.load(Ordering::Relaxed)
    }

    fn set_workflows_by_media_package(&self) {
        self.workflows_by_mp.store(true, Ordering::Relaxed);
    }
}

fn parse_workflows(b: &[u8], endpoint: &str) -> Result<Vec<Workflow>, DecodeError> {
    let env: WorkflowsEnvelope = serde_json::from_slice(b)
        .map_err(|e| DecodeError::json(&format!("{endpoint}: not a workflow list"), &e))?;
    Ok(env
        .workflows
        .0
        .map(|w| w.workflow.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(Workflow::from_wire)
        .collect())
}

/// Parses a `/workflow/instances.json` or `/workflow/mediaPackage/{id}/instances.json` body
/// (exposed for fixtures and tests).
pub fn parse_workflows_body(b: &[u8]) -> Result<Vec<Workflow>, String> {
    parse_workflows(b, "workflow").map_err(|e| e.to_string())
}

fn parse_search(b: &[u8], endpoint: &str) -> Result<Vec<SearchHit>, DecodeError> {
    let env: SearchEnvelope = serde_json::from_slice(b)
        .map_err(|e| DecodeError::json(&format!("{endpoint}: not a search result"), &e))?;
    match (env.results, env.result) {
        (Some(legacy), None) => Ok(legacy
            .0
            .map(|r| r.result.0)
            .unwrap_or_default()
            .into_iter()
            .filter_map(EpisodeMeta::from_wire)
            .map(|meta| SearchHit {
                meta,
                modified: None,
            })
            .collect()),
        (None, Some(result)) => Ok(result
            .0
            .into_iter()
            .filter_map(|mut w| {
                let modified = w.modified.take().map(|m| m.0);
                EpisodeMeta::from_wire16(w).map(|meta| SearchHit { meta, modified })
            })
            .collect()),
        // `{"result": []}` with no total is still a (16.0+) answer; a body with neither key,
        // or both, is some other document.
        _ => Err(DecodeError::wrong_shape(format!(
            "{endpoint}: not a search result (neither a \"search-results\" object nor a 16.0+ \"result\" list)"
        ))),
    }
}

/// Parses a `/search/episode.json` body of any release (exposed for fixtures and tests).
pub fn parse_search_body(b: &[u8]) -> Result<Vec<EpisodeMeta>, String> {
    parse_search(b, "search/episode.json")
        .map(|h| h.into_iter().map(|h| h.meta).collect())
        .map_err(|e| e.to_string())
}

/// Parses a `/search/episode.json` body of any release with each result's `modified`.
pub fn parse_search_hits(b: &[u8]) -> Result<Vec<SearchHit>, DecodeError> {
    parse_search(b, "search/episode.json")
}
