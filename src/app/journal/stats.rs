//! `journal stats`: the journal's figures, locally or from the running service.

use crate::app::to_stdout;
use std::sync::Arc;

use super::remote::{access, remote_get, Access};
use crate::app::{failed, AppError};
use crate::cli::{Cli, StatsArgs};
use crate::config::ConfigError;
use crate::forward::{self};
use crate::journal::inspect::{self};
use crate::journal::Journal;

pub(super) async fn stats(cli: &Cli, a: &StatsArgs) -> Result<(), AppError> {
    if a.enrich {
        a.enrich_args.check()?;
    }
    let s = match access(cli)? {
        Access::Local(j) if a.enrich => {
            let s = inspect::stats(&j)?;
            let f = enrich_figures(&j, a.enrich_args.enricher.get())?;
            if a.json {
                let mut v = serde_json::to_value(&s)?;
                v["enrichment"] = serde_json::to_value(f)?;
                say!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                to_stdout(s.to_string().as_bytes())?;
                let rate = crate::enrich::EnrichFigures::rate;
                say!(
                    "enrichment: {} located, {} not located, {} user agents parsed, {} without; cache hit rates: addresses {:.1}%, user agents {:.1}%",
                    f.located,
                    f.not_located,
                    f.ua_parsed,
                    f.ua_missing,
                    100.0 * rate(f.ip_cache_hits, f.ip_cache_misses),
                    100.0 * rate(f.ua_cache_hits, f.ua_cache_misses)
                )?;
            }
            return Ok(());
        }
        Access::Remote(_) if a.enrich => {
            return Err(failed(
                "journal stats --enrich reads the journal itself, and `harvester run` holds it now; its /metrics has the enrichment figures of what it forwarded",
            ))
        }
        Access::Local(j) => inspect::stats(&j)?,
        Access::Remote(service) => {
            let body = remote_get(&service, "/journal/stats", &[])
                .await?
                .bytes()
                .await?;
            serde_json::from_slice::<inspect::Stats>(&body)?
        }
    };
    if a.json {
        say!("{}", serde_json::to_string_pretty(&s)?)?;
    } else {
        to_stdout(s.to_string().as_bytes())?;
    }
    Ok(())
}

/// The enrichment figures of every journaled record, as a forward with `e` would count them.
pub(super) fn enrich_figures(
    j: &Journal,
    e: Option<&Arc<crate::enrich::Enricher>>,
) -> Result<crate::enrich::EnrichFigures, AppError> {
    let Some(e) = e else {
        return Err(ConfigError::new(
            "journal stats --enrich needs GEOIP_DATABASE and/or PARSE_USERAGENT=1",
        )
        .into());
    };
    let mut s = e.for_sink();
    let mut pos = 0;
    loop {
        let (first, records) = j.read_from(pos, forward::CHUNK)?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            s.extra(
                crate::enrich::first_ip(r.ip_chain.as_deref()),
                r.useragent.as_deref(),
            );
        }
        pos = first + records.len() as u64;
    }
    drop(s);
    Ok(e.stats().figures())
}
