//! Which dialect of `/usertracking/actions.json` a harvest speaks, chosen once per run.

pub use crate::config::ApiChoice;

use super::{HarvestError, Harvester};
use crate::opencast::{Api, OpencastError};
use crate::timefmt;

impl Harvester {
    /// The dialect of this run: the setting, or with `auto` what the probe finds (remembered in
    /// the journal: a server found stock is not probed again; one found windowed is asked the
    /// cheap half of the probe each run, so an upgrade to a stock release is noticed).
    pub(super) async fn resolve_api(&self) -> Result<Api, HarvestError> {
        let choice = match self.opts.api {
            ApiChoice::Windowed => return Ok(Api::Windowed),
            ApiChoice::Stock => {
                self.measure_clock().await;
                return Ok(Api::Stock);
            }
            ApiChoice::Auto => self.journal.opencast_api()?.as_deref().and_then(Api::parse),
        };
        if choice == Some(Api::Stock) {
            self.measure_clock().await;
            return Ok(Api::Stock);
        }
        let now = timefmt::format_compact(timefmt::now_us() + 86_400_000_000, self.opts.tz);
        let sent = timefmt::now_us();
        let probe = self
            .opencast
            .probe_api(&now, choice == Some(Api::Windowed))
            .await
            .map_err(actions_error)?;
        self.learn_clock(probe.date.as_deref(), sent, timefmt::now_us());
        tracing::info!(api = probe.api.name(), why = %probe.evidence, "Opencast API");
        // "No actions at all" is no proof either way: probed again next time.
        if probe.proven && choice != Some(probe.api) && self.journal.is_writable() {
            self.journal.set_opencast_api(probe.api.name())?;
        }
        Ok(probe.api)
    }
}

impl Harvester {
    /// One cheap request (a day in 1970: an index range with nothing in it) for the server's
    /// `Date` header; a failure here is left to the harvest's own requests to report.
    async fn measure_clock(&self) {
        let q = crate::opencast::ActionsQuery::Day("19700101".into());
        let url = self.opencast.actions_query_url(&q, 1, 0);
        let sent = timefmt::now_us();
        if let Ok(p) = self.opencast.client().probe(&url).await {
            self.learn_clock(p.date.as_deref(), sent, timefmt::now_us());
        }
    }
}

/// An actions request's failure, with the 404 of a missing usertracking plugin told apart.
pub(super) fn actions_error(e: OpencastError) -> HarvestError {
    match e {
        OpencastError::Status {
            url, status: 404, ..
        } if url.contains("/usertracking/") => HarvestError::UsertrackingMissing {
            url: crate::secret::redact_userinfo(&url),
        },
        other => HarvestError::Opencast(other),
    }
}
