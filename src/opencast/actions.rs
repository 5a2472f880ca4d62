//! How user actions are asked for: the two dialects of `/usertracking/actions.json`.
//!
//! The Harvard DCE build the original harvester ran against reads `start`/`end`; no stock
//! release does (Matterhorn 1.4 to Opencast 17 read `day=YYYYMMDD`, `type`, `id`, `limit` and
//! `offset`, and answer a query with only `start`/`end` with the whole table). The dialect is
//! chosen once per run ([`Api`]) and the rest of the harvest asks through [`ActionsQuery`].

use std::fmt;

use reqwest::Url;

use super::{ActionsPage, Opencast, OpencastError};

/// The dialect a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `start`/`end` (the DCE build).
    Windowed,
    /// `day=YYYYMMDD` (every stock release).
    Stock,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Windowed => "windowed",
            Api::Stock => "stock",
        }
    }

    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "windowed" => Some(Api::Windowed),
            "stock" => Some(Api::Stock),
            _ => None,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One query of user actions, paged by `limit`/`offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionsQuery {
    /// `start`/`end`, `YYYYMMDDHHmmss` in the server's zone.
    Window { start: String, end: String },
    /// `day=YYYYMMDD` in the server's zone.
    Day(String),
}

impl ActionsQuery {
    /// How a dead letter names the query it came from.
    pub fn source(&self, offset: u64) -> String {
        match self {
            ActionsQuery::Window { start, end } => {
                format!("usertracking/actions.json?start={start}&end={end}&offset={offset}")
            }
            ActionsQuery::Day(d) => format!("usertracking/actions.json?day={d}&offset={offset}"),
        }
    }
}

/// What the dialect probe saw.
#[derive(Debug, Clone)]
pub struct ApiProbe {
    pub api: Api,
    /// Why: the totals the probe requests answered.
    pub evidence: String,
    /// The answers proved the dialect (else: no actions at all yet, and stock is the safe one).
    pub proven: bool,
    /// The `Date` header of the first answer (the server's clock).
    pub date: Option<String>,
}

/// A one-second window in 1970: a server that reads `start`/`end` has nothing there.
const EPOCH_START: &str = "19700101000000";
const EPOCH_END: &str = "19700101000001";

impl Opencast {
    /// The URL of one page of `query`.
    pub fn actions_query_url(&self, query: &ActionsQuery, limit: u64, offset: u64) -> Url {
        let mut u = self
            .engage
            .join("usertracking/actions.json")
            .expect("static path");
        {
            let mut q = u.query_pairs_mut();
            match query {
                ActionsQuery::Window { start, end } => {
                    q.append_pair("start", start).append_pair("end", end);
                }
                ActionsQuery::Day(d) => {
                    q.append_pair("day", d);
                }
            }
            q.append_pair("limit", &limit.to_string())
                .append_pair("offset", &offset.to_string());
        }
        u
    }

    /// Tells the dialects apart, never taking a stock server for a windowed one: a one-second
    /// window in 1970 has no actions on a server that reads the window, and the whole table's
    /// total on one that does not. Nothing there is not proof of a window either (a stock server
    /// with an empty table answers the same), so a second window, from 1970 to `now_compact`
    /// (the server's zone), must then hold actions: only a server that reads windows answers
    /// `0` for the first and more for the second.
    ///
    /// With `known_windowed` (this journal saw the server read windows before), the first
    /// request alone decides: `0` keeps the window, anything else is a server that stopped
    /// reading it (an upgrade to a stock release).
    pub async fn probe_api(
        &self,
        now_compact: &str,
        known_windowed: bool,
    ) -> Result<ApiProbe, OpencastError> {
        let q = ActionsQuery::Window {
            start: EPOCH_START.into(),
            end: EPOCH_END.into(),
        };
        let first = self.client.probe(&self.actions_query_url(&q, 1, 0)).await?;
        let total = page_total(&first.body, &self.actions_query_url(&q, 1, 0))?;
        if total > 0 {
            return Ok(ApiProbe {
                api: Api::Stock,
                evidence: format!(
                    "a window in 1970 answered {total} actions: start/end are not read"
                ),
                proven: true,
                date: first.date,
            });
        }
        if known_windowed {
            return Ok(ApiProbe {
                api: Api::Windowed,
                evidence: "a window in 1970 answered 0 actions, as before: start/end are read"
                    .into(),
                proven: true,
                date: first.date,
            });
        }
        let q = ActionsQuery::Window {
            start: EPOCH_START.into(),
            end: now_compact.into(),
        };
        let url = self.actions_query_url(&q, 1, 0);
        let all = self.client.probe(&url).await?;
        let total = page_total(&all.body, &url)?;
        let api = if total > 0 { Api::Windowed } else { Api::Stock };
        let evidence = if total > 0 {
            format!(
                "a window in 1970 answered 0 actions and one up to now {total}: start/end are read"
            )
        } else {
            "no actions at all yet: start/end cannot be told apart, so day=YYYYMMDD (which every \
             release reads) is used"
                .to_string()
        };
        Ok(ApiProbe {
            api,
            evidence,
            proven: total > 0,
            date: first.date,
        })
    }
}

fn page_total(body: &[u8], url: &Url) -> Result<i64, OpencastError> {
    ActionsPage::parse(body)
        .map(|p| p.total)
        .map_err(|e| OpencastError::Status {
            url: url.to_string(),
            status: 200,
            snippet: format!("not a user-actions page: {e}"),
        })
}
