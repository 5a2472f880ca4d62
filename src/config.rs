//! Settings from flags, the environment and `.env`, validated once into strict values.
//!
//! A bad setting is a [`ConfigError`] (exit status 2) that names the setting and what it takes.
//! Secrets are kept out of every message. The settings here are plain structs: the command line
//! (`cli`) fills them, and nothing in this module knows how.

use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use crate::opencast::{base_url, AuthScheme, Client, ClientConfig, Opencast};
pub use crate::secret::Secret;
use crate::sim::{DataConfig, Faults, SimConfig};
use crate::timefmt;

/// A setting is missing or wrong; the message says which and how to fix it. A wrong value that
/// another parser refused keeps that parser's error as its `source()`, and the message is
/// formatted from both only when it is shown.
#[derive(Debug)]
pub struct ConfigError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConfigError {
    /// A setting is wrong, and `message` says which and why.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            source: None,
        }
    }

    /// `context` (the setting, say `--start`) was refused by `source`; shown as
    /// `context: source`.
    pub fn caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ConfigError {
        ConfigError {
            message: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Loads `.env` from the working directory into the environment, never overriding a variable
/// that is already set (so the environment wins over the file).
pub fn load_dotenv() -> Result<(), ConfigError> {
    let path = Path::new(".env");
    if !path.exists() {
        return Ok(());
    }
    load_dotenv_from(path)
}

/// Loads one env file; a line it cannot parse is named by file, line number and key, and its
/// value (a password, say) is never shown.
pub fn load_dotenv_from(path: &Path) -> Result<(), ConfigError> {
    let io = |e: &dyn std::fmt::Display| {
        ConfigError::new(format!("cannot read {}: {e}", path.display()))
    };
    // A dry run first: dotenvy's own error quotes the whole line, value included.
    let mut last_key: Option<String> = None;
    for item in dotenvy::from_path_iter(path).map_err(|e| io(&e))? {
        match item {
            Ok((key, _)) => last_key = Some(key),
            Err(dotenvy::Error::LineParse(line, _)) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                return Err(ConfigError::new(describe_bad_line(
                    path,
                    &text,
                    &line,
                    last_key.as_deref(),
                )));
            }
            Err(e) => return Err(io(&e)),
        }
    }
    dotenvy::from_path(path).map_err(|e| match e {
        dotenvy::Error::LineParse(..) => {
            ConfigError::new(format!("{}: a line cannot be parsed", path.display()))
        }
        e => io(&e),
    })
}

/// "FILE line N (KEY): ..." for the line dotenvy rejected. `failed` is what dotenvy quotes (the
/// line, or only its value); the line is found as the first one holding it after the last key
/// that parsed. Only a key that looks like a variable name is shown.
fn describe_bad_line(path: &Path, text: &str, failed: &str, last_key: Option<&str>) -> String {
    let key_of = |l: &str| -> Option<String> {
        let l = l.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let k = l.split_once('=')?.0.trim();
        let ok = !k.is_empty()
            && k.len() <= 100
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        ok.then(|| k.to_string())
    };
    let lines: Vec<&str> = text.lines().collect();
    let after = last_key
        .and_then(|k| lines.iter().rposition(|l| key_of(l).as_deref() == Some(k)))
        .map_or(0, |i| i + 1);
    let needle = failed.lines().next().unwrap_or("").trim();
    let found = lines
        .iter()
        .enumerate()
        .skip(after)
        .find(|(_, l)| !needle.is_empty() && l.contains(needle))
        .or_else(|| {
            lines
                .iter()
                .enumerate()
                .skip(after)
                .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        });
    let what = "cannot be parsed (check its quotes and escapes; the value is not shown)";
    match found {
        Some((i, l)) => match key_of(l) {
            Some(k) => format!("{} line {} ({k}): {what}", path.display(), i + 1),
            None => format!("{} line {}: {what}", path.display(), i + 1),
        },
        None => format!("{}: a line {what}", path.display()),
    }
}

/// Parses an IANA zone name.
pub fn parse_tz(name: &str, setting: &str) -> Result<Tz, ConfigError> {
    name.trim().parse::<Tz>().map_err(|_| {
        ConfigError::new(format!(
            "{setting}='{name}' is not a time zone name; use an IANA name such as UTC or America/New_York"
        ))
    })
}

/// How to reach Opencast's engage node, unchecked: [`opencast`] validates it.
#[derive(Debug, Clone, Default)]
pub struct OpencastSettings {
    /// Host, host:port or a full URL.
    pub engage_host: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Seconds before a request times out (0 is refused).
    pub timeout_secs: u64,
    /// Retries of a request after a transient fault.
    pub retries: u32,
    /// How user actions are asked for (`OPENCAST_API`).
    pub api: ApiChoice,
    /// How every request is authenticated (`OPENCAST_AUTH`).
    pub auth: AuthScheme,
    /// Basic auth may go over plain http (`OPENCAST_ALLOW_BASIC_OVER_HTTP`).
    pub allow_basic_over_http: bool,
    /// The site's own CA (`OPENCAST_CA_FILE`), trusted besides the system's store.
    pub ca_file: Option<std::path::PathBuf>,
}

/// `OPENCAST_API`: how user actions are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiChoice {
    /// Probe the server: windowed only when it provably reads `start`/`end`.
    #[default]
    Auto,
    /// `start`/`end` (the DCE build the original harvester was written for).
    Windowed,
    /// `day=YYYYMMDD` (every stock release).
    Stock,
}

/// Builds the Opencast client from the connection settings (the admin host is optional).
pub fn opencast(
    args: &OpencastSettings,
    admin_host: Option<&str>,
) -> Result<Opencast, ConfigError> {
    let engage = args.engage_host.as_deref().filter(|h| !h.trim().is_empty()).ok_or_else(|| {
        ConfigError::new("no Opencast engage host: set MATTERHORN_ENGAGE_HOST (in .env) or pass -H/--engage-host")
    })?;
    let engage = base_url(engage).map_err(|e| ConfigError::caused("MATTERHORN_ENGAGE_HOST", e))?;
    let admin = match admin_host.filter(|h| !h.trim().is_empty()) {
        Some(h) => Some(base_url(h).map_err(|e| ConfigError::caused("MATTERHORN_ADMIN_HOST", e))?),
        None => None,
    };
    let user = args.user.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        ConfigError::new(
            "no Opencast REST user: set MATTERHORN_REST_USER (in .env) or pass -u/--user",
        )
    })?;
    let password = args.password.as_ref().ok_or_else(|| {
        ConfigError::new(
            "no Opencast REST password: set MATTERHORN_REST_PASS (in .env) or pass -p/--password",
        )
    })?;
    if args.timeout_secs == 0 {
        return Err(ConfigError::new(
            "OPENCAST_TIMEOUT must be at least 1 second",
        ));
    }
    if args.auth == AuthScheme::Basic && !args.allow_basic_over_http {
        let plain = [
            ("MATTERHORN_ENGAGE_HOST", Some(&engage)),
            ("MATTERHORN_ADMIN_HOST", admin.as_ref()),
        ]
        .into_iter()
        .find_map(|(name, u)| u.filter(|u| u.scheme() != "https").map(|_| name));
        if let Some(name) = plain {
            return Err(ConfigError::new(format!(
                "OPENCAST_AUTH=basic sends the password itself with every request, and {name} is \
                 plain http: give an https:// address, use OPENCAST_AUTH=digest, or set \
                 OPENCAST_ALLOW_BASIC_OVER_HTTP=true if the network is trusted"
            )));
        }
    }
    let mut cfg = ClientConfig::new(&user, password.expose());
    cfg.timeout = Duration::from_secs(args.timeout_secs);
    cfg.retries = args.retries;
    cfg.auth = args.auth;
    cfg.ca = match args
        .ca_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(p) => Some(crate::tls::read_ca_file("OPENCAST_CA_FILE", p)?),
        None => None,
    };
    Ok(Opencast::new(Client::new(cfg), engage, admin))
}

/// The simulated Opencast's data and faults, unchecked: [`sim_config`] validates them.
#[derive(Debug, Clone, Default)]
pub struct SimSettings {
    /// Seed of the generated data (same seed, same data).
    pub seed: u64,
    pub actions: u64,
    /// Range start and end (YYYYMMDDHHmmss, UTC; default: the last hour).
    pub from: Option<String>,
    pub to: Option<String>,
    pub episodes: u64,
    pub malformed_every: u64,
    pub fail_every: u64,
    pub truncate_every: u64,
    pub delay_ms: u64,
    pub overlap: u64,
    pub nonce_uses: u64,
    /// The digest user, password and realm the simulator accepts.
    pub user: String,
    pub password: Secret,
    pub realm: String,
    /// The simulated server's time zone (IANA name).
    pub timezone: String,
    /// The Opencast played (`dce`, a family such as `oc16-17`, or a release such as `16.6`).
    pub opencast: String,
    /// Row order of a stock server's actions queries (`created`, `id`, `shuffled`).
    pub row_order: String,
    /// Usertracking's plugin is off (13+).
    pub usertracking_off: bool,
    /// The server's clock offset from this machine's, in seconds.
    pub clock_offset_s: i64,
}

/// Turns the simulator settings into its configuration.
pub fn sim_config(a: &SimSettings) -> Result<SimConfig, ConfigError> {
    let now = timefmt::floor_second(timefmt::now_us());
    let parse = |v: &Option<String>, name: &str, default: i64| -> Result<i64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => timefmt::parse_compact(s, Tz::UTC)
                .map_err(|e| ConfigError::caused(format!("--{name}"), e)),
        }
    };
    let start = parse(&a.from, "from", now - 3_600_000_000)?;
    let end = parse(&a.to, "to", now)?;
    if end <= start {
        return Err(ConfigError::new("--to must be after --from"));
    }
    let mut data = DataConfig::new(a.seed, a.actions, start, end);
    data.episodes = a.episodes;
    data.malformed_every = a.malformed_every;
    let mut cfg = SimConfig::new(data);
    cfg.user = a.user.clone();
    cfg.password = a.password.clone();
    cfg.realm = a.realm.clone();
    cfg.tz = parse_tz(&a.timezone, "--sim-timezone")?;
    cfg.release = crate::sim::Release::parse(&a.opencast).ok_or_else(|| {
        let families: Vec<&str> = crate::sim::FAMILIES.iter().map(|(n, _)| *n).collect();
        ConfigError::new(format!(
            "--opencast takes dce, a family ({}) or a release from 1.4 to 17.x, not '{}'",
            families.join(", "),
            a.opencast
        ))
    })?;
    cfg.order = crate::sim::RowOrder::parse(&a.row_order)
        .ok_or_else(|| ConfigError::new("--row-order takes created, id or shuffled"))?;
    cfg.usertracking_enabled = !a.usertracking_off;
    cfg.clock_offset_s = a.clock_offset_s;
    cfg.faults = Faults {
        fail_every: a.fail_every,
        truncate_every: a.truncate_every,
        delay: Duration::from_millis(a.delay_ms),
        overlap: a.overlap,
        nonce_uses: a.nonce_uses,
        shuffle: false,
        total_extra: 0,
    };
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused value keeps the parser's error as its source, typed, and the message shows
    /// both once: `context: cause`.
    #[test]
    fn a_wrapped_cause_stays_typed() {
        use std::error::Error;
        let cause = crate::timefmt::parse_compact("2016x", Tz::UTC).unwrap_err();
        let shown = format!("--start: {cause}");
        let e = ConfigError::caused("--start", cause);
        assert_eq!(e.to_string(), shown);
        let src = e.source().expect("the cause is kept");
        assert!(src.downcast_ref::<crate::timefmt::TimeError>().is_some());
        assert!(ConfigError::new("no user").source().is_none());
    }

    #[test]
    fn a_bad_env_line_is_named_without_its_value() {
        let dir = std::env::temp_dir().join(format!("harvester-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.env");
        std::fs::write(
            &p,
            "# settings\nMATTERHORN_REST_USER=u\n\nMATTERHORN_REST_PASS=S3CRETenv x\"\nOTHER=1\n",
        )
        .unwrap();
        let e = load_dotenv_from(&p).unwrap_err().to_string();
        assert!(!e.contains("S3CRET"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("MATTERHORN_REST_PASS"), "{e}");
        assert!(e.contains("bad.env"), "{e}");
        // A line that is all value (a pasted password) shows no key at all.
        std::fs::write(&p, "A=1\nS3CRET\"x\n").unwrap();
        let e = load_dotenv_from(&p).unwrap_err().to_string();
        assert!(!e.contains("S3CRET"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
