//! The simulated Opencast on the command line: `sim`, the `demo`, and the benchmark's bare fetch.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{failed, open_journal, AppError};
use crate::cli::{BenchFetchArgs, Cli, DemoArgs, SimArgs};
use crate::config::{self, ConfigError};
use crate::episodes::EpisodeCache;
use crate::forward::{self, Sink, StdoutSink};
use crate::harvest::{HarvestOptions, Harvester};
use crate::{sim, timefmt};

/// `harvester sim`.
pub async fn sim(args: &SimArgs) -> Result<(), AppError> {
    let cfg = config::sim_config(&(&args.data).into())?;
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        ConfigError::new(format!(
            "--listen '{}' is not an address like 127.0.0.1:8080",
            args.listen
        ))
    })?;
    let tz = cfg.tz;
    let (start, end) = (cfg.data.start_us, cfg.data.end_us);
    let (user, actions) = (cfg.user.clone(), cfg.data.actions);
    let handle = sim::spawn(cfg, addr)
        .await
        .map_err(|e| AppError::io(format!("cannot listen on {addr}"), e))?;
    eprintln!(
        "simulated Opencast on {} (user {user}): {actions} actions from {} to {} ({tz}); Ctrl-C stops it",
        handle.url(),
        timefmt::format_compact(start, tz),
        timefmt::format_compact(end, tz),
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.stop().await;
    Ok(())
}

/// `harvester demo`: the whole flow on embedded defaults, no settings needed.
pub async fn demo(args: &DemoArgs) -> Result<(), AppError> {
    let cfg = config::sim_config(&(&args.data).into())?;
    let (start, end, tz) = (cfg.data.start_us, cfg.data.end_us, cfg.tz);
    let (user, password) = (cfg.user.clone(), cfg.password.clone());
    let handle = sim::spawn(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .map_err(|e| failed(format!("cannot start the simulated Opencast: {e}")))?;
    tracing::info!(url = %handle.url(), "simulated Opencast started");
    for suffix in ["", ".lock"] {
        let p = format!("{}{suffix}", args.demo_journal.display());
        if Path::new(&p).exists() {
            std::fs::remove_file(&p).map_err(|e| AppError::io(format!("cannot replace {p}"), e))?;
        }
    }
    let journal = open_journal(&args.demo_journal)?;
    let settings = config::OpencastSettings {
        engage_host: Some(handle.url()),
        user: Some(user),
        password: Some(password),
        timeout_secs: 30,
        retries: 5,
        api: config::ApiChoice::Auto,
        ..config::OpencastSettings::default()
    };
    let opencast = config::opencast(&settings, None)?;
    let episodes = EpisodeCache::new(
        opencast.clone(),
        journal.clone(),
        Duration::from_secs(1800),
        tz,
    );
    let opts = HarvestOptions {
        tz,
        ..HarvestOptions::default()
    };
    let harvester = Harvester::new(opencast, episodes, journal.clone(), opts);
    let s = harvester.harvest(&[(start, end)]).await?;
    let mut sink = Sink::Stdout(StdoutSink::default());
    let f = forward::forward(&journal, &mut sink, "stdout").await?;
    handle.stop().await;
    s.log(f.forwarded, tz);
    tracing::info!(
        journal = %args.demo_journal.display(),
        "demo complete: records above on stdout, journal kept for inspection"
    );
    Ok(())
}

/// `harvester bench-fetch`: the bare page fetches a harvest is measured against.
pub async fn bench_fetch(cli: &Cli, args: &BenchFetchArgs) -> Result<(), AppError> {
    let tz = config::parse_tz(&args.opencast.conn.opencast_timezone, "OPENCAST_TIMEZONE")?;
    let parse = |s: &str, flag: &str| {
        timefmt::parse_compact(s, tz).map_err(|e| ConfigError::caused(flag.to_string(), e))
    };
    let (start, end) = (parse(&args.start, "--start")?, parse(&args.end, "--end")?);
    let opencast = config::opencast(&args.opencast.settings(), None)?;
    let journal = open_journal(&cli.journal)?;
    let episodes = EpisodeCache::new(
        opencast.clone(),
        journal.clone(),
        Duration::from_secs(1),
        tz,
    );
    let opts = HarvestOptions {
        batch_size: args.batch_size,
        tz,
        prefetch: args.max_in_flight,
        ..HarvestOptions::default()
    };
    let harvester = Harvester::new(opencast, episodes, journal, opts);
    let t = std::time::Instant::now();
    let (pages, bytes) = harvester.fetch_only(start, end, args.decode.into()).await?;
    tracing::info!(
        pages,
        bytes,
        decode = ?args.decode,
        seconds = format!("{:.3}", t.elapsed().as_secs_f64()),
        "bare fetch complete"
    );
    Ok(())
}
