//! The client: one node (or a cluster behind one URL), its requests other than bulk indexing.

use std::time::Duration;

use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{
    IndicesExistsIndexTemplateParts, IndicesPutIndexTemplateParts, IndicesRefreshParts,
    IndicesSimulateTemplateParts,
};
use elasticsearch::{Elasticsearch, SearchParts};
use serde_json::Value;

use super::{parse_host, EsError, EsTrust};
use elasticsearch::cert::{Certificate, CertificateValidation};

/// A connection to one Elasticsearch node (or a cluster behind one URL).
#[derive(Clone)]
pub struct EsClient {
    pub(super) es: Elasticsearch,
    pub(super) shown: String,
    /// A CA is configured (certificate errors say so).
    trusted: bool,
}

impl EsClient {
    /// Parses `ELASTICSEARCH_HOST` and builds the client. Nothing is sent, unless the CA is
    /// pinned by fingerprint: then one request without credentials fetches the node's chain, and
    /// the CA found in it is trusted like `ES_CA_FILE` (every connection verified in full).
    pub async fn new(host: &str, timeout: Duration, trust: &EsTrust) -> Result<EsClient, EsError> {
        let (url, credentials) = parse_host(host)?;
        let shown = url.as_str().trim_end_matches('/').to_string();
        let mut roots: Vec<Vec<u8>> = trust
            .ca
            .iter()
            .flat_map(|c| c.ders.iter().cloned())
            .collect();
        if let (Some(pin), "https") = (trust.pin, url.scheme()) {
            match crate::tls::fetch_pinned(&url, pin, timeout).await {
                Ok(c) => roots.push(c),
                Err(crate::tls::PinError::Unreachable(reason)) => {
                    return Err(EsError::Unreachable {
                        host: shown,
                        reason,
                    })
                }
                Err(crate::tls::PinError::NotPresented { presented }) => {
                    let list: Vec<String> = presented.iter().map(|f| f.to_string()).collect();
                    return Err(EsError::NoPinnedCa {
                        host: shown,
                        pin,
                        presented: if list.is_empty() {
                            "none".into()
                        } else {
                            list.join(", ")
                        },
                    });
                }
            }
        }
        let mut b = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(timeout)
            .disable_proxy();
        let mut chain: Option<Certificate> = None;
        for der in &roots {
            let c = Certificate::from_der(der).map_err(|e| EsError::BadHost(e.to_string()))?;
            match chain.as_mut() {
                Some(all) => all.append(c),
                None => chain = Some(c),
            }
        }
        if let Some(chain) = chain {
            b = b.cert_validation(CertificateValidation::Full(chain));
        }
        if let Some(c) = credentials {
            b = b.auth(c);
        }
        let transport = b.build().map_err(|e| EsError::BadHost(e.to_string()))?;
        Ok(EsClient {
            es: Elasticsearch::new(transport),
            shown,
            trusted: trust.configured(),
        })
    }

    /// The node's URL without credentials (for messages).
    pub fn describe(&self) -> &str {
        &self.shown
    }

    pub(super) fn unreachable(&self, e: elasticsearch::Error) -> EsError {
        if let Some(reason) = crate::tls::certificate_problem(&e) {
            return EsError::Certificate {
                host: self.shown.clone(),
                reason,
                configured: self.trusted,
            };
        }
        EsError::Unreachable {
            host: self.shown.clone(),
            reason: crate::tls::error_chain(&e),
        }
    }

    pub(super) async fn check(&self, resp: Response, what: &str) -> Result<Response, EsError> {
        let status = resp.status_code().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(EsError::Status {
            host: self.shown.clone(),
            what: what.to_string(),
            status,
            body: body.chars().take(600).collect(),
        })
    }

    pub(super) async fn json(&self, resp: Response, what: &str) -> Result<Value, EsError> {
        let resp = self.check(resp, what).await?;
        resp.json::<Value>().await.map_err(|e| EsError::Decode {
            host: self.shown.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Cluster health: fails fast, with a clear message, when the node is down.
    pub async fn health(&self) -> Result<String, EsError> {
        let resp = self
            .es
            .cluster()
            .health(elasticsearch::cluster::ClusterHealthParts::None)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let v = self.json(resp, "a health check").await?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// The version of the node answering and its cluster's name (`GET _nodes/_local`: the
    /// root endpoint `GET /` is a module a node may lack). A node that wants credentials it was
    /// not given, or refuses them, answers 401.
    pub async fn info(&self) -> Result<(String, String), EsError> {
        let resp = self
            .es
            .nodes()
            .info(elasticsearch::nodes::NodesInfoParts::NodeId(&["_local"]))
            .filter_path(&["cluster_name", "nodes.*.version"])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let v = self.json(resp, "GET _nodes/_local").await?;
        let version = v["nodes"]
            .as_object()
            .and_then(|n| n.values().next())
            .and_then(|n| n["version"].as_str())
            .unwrap_or("unknown")
            .to_string();
        Ok((
            version,
            v["cluster_name"].as_str().unwrap_or("unknown").to_string(),
        ))
    }

    /// Whether the composable index template `name` exists.
    pub async fn template_exists(&self, name: &str) -> Result<bool, EsError> {
        let resp = self
            .es
            .indices()
            .exists_index_template(IndicesExistsIndexTemplateParts::Name(name))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match resp.status_code().as_u16() {
            404 => Ok(false),
            _ => self
                .check(resp, &format!("looking up index template {name}"))
                .await
                .map(|_| true),
        }
    }

    /// Validates template `name` with `body` as [`EsClient::put_template`] would install it,
    /// without installing it (`POST _index_template/_simulate/NAME`; it needs the same
    /// `manage_index_templates` privilege).
    pub async fn simulate_template(&self, name: &str, body: Value) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .simulate_template(IndicesSimulateTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("simulating index template {name}"))
            .await?;
        Ok(())
    }

    /// Installs (or updates) a composable index template.
    pub async fn put_template(&self, name: &str, body: Value) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("installing index template {name}"))
            .await?;
        Ok(())
    }

    /// Every distinct value of `field` in the indices matching `pattern`, paging through a
    /// composite aggregation (no top-N cap). A pattern that matches no index gives none.
    pub async fn distinct_values(
        &self,
        pattern: &str,
        field: &str,
        page: usize,
    ) -> Result<Vec<String>, EsError> {
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut comp = serde_json::json!({
                "size": page,
                "sources": [{ "v": { "terms": { "field": field } } }]
            });
            if let Some(a) = &after {
                comp["after"] = a.clone();
            }
            let resp = self
                .es
                .search(SearchParts::Index(&[pattern]))
                .allow_no_indices(true)
                .ignore_unavailable(true)
                .body(serde_json::json!({
                    "size": 0,
                    "aggs": { "ids": { "composite": comp } }
                }))
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let v = self.json(resp, &format!("a search of {pattern}")).await?;
            let agg = &v["aggregations"]["ids"];
            let buckets = agg["buckets"].as_array().cloned().unwrap_or_default();
            for b in &buckets {
                if let Some(s) = b["key"]["v"].as_str() {
                    out.push(s.to_string());
                }
            }
            match agg.get("after_key") {
                Some(a) if !buckets.is_empty() => after = Some(a.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Makes recent writes to `index` searchable (tests and benchmarks).
    pub async fn refresh(&self, index: &str) -> Result<(), EsError> {
        let resp = self
            .es
            .indices()
            .refresh(IndicesRefreshParts::Index(&[index]))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp, &format!("refreshing {index}")).await?;
        Ok(())
    }
}
