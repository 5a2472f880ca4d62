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
pub use types::{Action, Attachment, EpisodeMeta, JudgedPage, Operation, Workflow};
pub use wire::ActionsPage;

use reqwest::Url;

use wire::{DecodeError, SearchEnvelope, WorkflowsEnvelope};

/// The engage (and optionally admin) node of one Opencast installation.
#[derive(Clone)]
pub struct Opencast {
    client: Client,
    engage: Url,
    admin: Option<Url>,
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
            why: e.0,
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
        let mut u = self
            .engage
            .join("usertracking/actions.json")
            .expect("static path");
        u.query_pairs_mut()
            .append_pair("start", start)
            .append_pair("end", end)
            .append_pair("limit", &limit.to_string())
            .append_pair("offset", &offset.to_string());
        u
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
        let found = self.client.get_parsed(&u, |b| parse_search(b)).await?;
        Ok(found.into_iter().find(|e| e.mpid == mpid))
    }

    /// A page of episodes created since `created_from` (`YYYY-MM-DDTHH:mm:ssZ`), oldest first.
    pub async fn episodes_created_from(
        &self,
        created_from: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<EpisodeMeta>, OpencastError> {
        let mut u = self
            .engage
            .join("search/episode.json")
            .expect("static path");
        u.query_pairs_mut()
            .append_pair("createdFrom", created_from)
            .append_pair("sort", "DATE_CREATED")
            .append_pair("limit", &limit.to_string())
            .append_pair("offset", &offset.to_string())
            .append_pair("includeDeleted", "true");
        self.client.get_parsed(&u, |b| parse_search(b)).await
    }

    /// SUCCEEDED workflows of `definition` for one media package (admin node).
    pub async fn workflows(
        &self,
        mpid: &str,
        definition: &str,
    ) -> Result<Vec<Workflow>, OpencastError> {
        let admin = self
            .admin
            .as_ref()
            .ok_or_else(|| OpencastError::BadHost("(MATTERHORN_ADMIN_HOST is not set)".into()))?;
        let mut u = admin.join("workflow/instances.json").expect("static path");
        u.query_pairs_mut()
            .append_pair("mp", mpid)
            .append_pair("state", "SUCCEEDED")
            .append_pair("workflowdefinition", definition)
            .append_pair("count", "100")
            .append_pair("startPage", "0");
        self.client.get_parsed(&u, |b| parse_workflows(b)).await
    }
}

fn parse_workflows(b: &[u8]) -> Result<Vec<Workflow>, DecodeError> {
    let env: WorkflowsEnvelope =
        serde_json::from_slice(b).map_err(|e| DecodeError(format!("not a workflow list: {e}")))?;
    Ok(env
        .workflows
        .0
        .map(|w| w.workflow.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(Workflow::from_wire)
        .collect())
}

/// Parses a `/workflow/instances.json` body (exposed for fixtures and tests).
pub fn parse_workflows_body(b: &[u8]) -> Result<Vec<Workflow>, String> {
    parse_workflows(b).map_err(|e| e.0)
}

fn parse_search(b: &[u8]) -> Result<Vec<EpisodeMeta>, DecodeError> {
    let env: SearchEnvelope =
        serde_json::from_slice(b).map_err(|e| DecodeError(format!("not a search result: {e}")))?;
    Ok(env
        .results
        .0
        .map(|r| r.result.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(EpisodeMeta::from_wire)
        .collect())
}

/// Parses a `/search/episode.json` body (exposed for fixtures and tests).
pub fn parse_search_body(b: &[u8]) -> Result<Vec<EpisodeMeta>, String> {
    parse_search(b).map_err(|e| e.0)
}
