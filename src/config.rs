//! Settings from flags, the environment and `.env`, validated once into strict values.
//!
//! A bad setting is a [`ConfigError`] (exit status 2) that names the setting and what it takes.
//! Secrets are kept out of every message.

use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use crate::cli::{OpencastArgs, SimDataArgs};
use crate::opencast::{base_url, Client, ClientConfig, Opencast};
use crate::sim::{DataConfig, Faults, SimConfig};
use crate::timefmt;

/// A setting is missing or wrong; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Loads `.env` from the working directory into the environment, never overriding a variable
/// that is already set (so the environment wins over the file).
pub fn load_dotenv() -> Result<(), ConfigError> {
    let path = Path::new(".env");
    if !path.exists() {
        return Ok(());
    }
    dotenvy::from_path(path)
        .map_err(|e| ConfigError(format!("cannot read .env in the working directory: {e}")))
}

/// Parses an IANA zone name.
pub fn parse_tz(name: &str, setting: &str) -> Result<Tz, ConfigError> {
    name.trim().parse::<Tz>().map_err(|_| {
        ConfigError(format!(
            "{setting}='{name}' is not a time zone name; use an IANA name such as UTC or America/New_York"
        ))
    })
}

/// Builds the Opencast client from the connection settings (the admin host is optional).
pub fn opencast(args: &OpencastArgs, admin_host: Option<&str>) -> Result<Opencast, ConfigError> {
    let engage = args.engage_host.as_deref().filter(|h| !h.trim().is_empty()).ok_or_else(|| {
        ConfigError("no Opencast engage host: set MATTERHORN_ENGAGE_HOST (in .env) or pass -H/--engage-host".into())
    })?;
    let engage =
        base_url(engage).map_err(|e| ConfigError(format!("MATTERHORN_ENGAGE_HOST: {e}")))?;
    let admin = match admin_host.filter(|h| !h.trim().is_empty()) {
        Some(h) => {
            Some(base_url(h).map_err(|e| ConfigError(format!("MATTERHORN_ADMIN_HOST: {e}")))?)
        }
        None => None,
    };
    let user = args
        .conn
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ConfigError(
                "no Opencast REST user: set MATTERHORN_REST_USER (in .env) or pass -u/--user"
                    .into(),
            )
        })?;
    let password = args.conn.password.clone().ok_or_else(|| {
        ConfigError(
            "no Opencast REST password: set MATTERHORN_REST_PASS (in .env) or pass -p/--password"
                .into(),
        )
    })?;
    if args.conn.opencast_timeout == 0 {
        return Err(ConfigError(
            "OPENCAST_TIMEOUT must be at least 1 second".into(),
        ));
    }
    let mut cfg = ClientConfig::new(&user, &password);
    cfg.timeout = Duration::from_secs(args.conn.opencast_timeout);
    cfg.retries = args.conn.opencast_retries;
    Ok(Opencast::new(Client::new(cfg), engage, admin))
}

/// Turns the simulator flags into its configuration.
pub fn sim_config(a: &SimDataArgs) -> Result<SimConfig, ConfigError> {
    let now = timefmt::floor_second(timefmt::now_us());
    let parse = |v: &Option<String>, name: &str, default: i64| -> Result<i64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => timefmt::parse_compact(s, Tz::UTC)
                .map_err(|e| ConfigError(format!("--{name}: {e}"))),
        }
    };
    let start = parse(&a.from, "from", now - 3_600_000_000)?;
    let end = parse(&a.to, "to", now)?;
    if end <= start {
        return Err(ConfigError("--to must be after --from".into()));
    }
    let mut data = DataConfig::new(a.seed, a.actions, start, end);
    data.episodes = a.episodes;
    data.malformed_every = a.malformed_every;
    let mut cfg = SimConfig::new(data);
    cfg.user = a.sim_user.clone();
    cfg.password = a.sim_password.clone();
    cfg.realm = a.realm.clone();
    cfg.tz = parse_tz(&a.sim_timezone, "--sim-timezone")?;
    cfg.faults = Faults {
        fail_every: a.fail_every,
        truncate_every: a.truncate_every,
        delay: Duration::from_millis(a.delay_ms),
        overlap: a.overlap,
        nonce_uses: a.nonce_uses,
        shuffle: false,
    };
    Ok(cfg)
}
