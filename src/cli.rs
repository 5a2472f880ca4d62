//! The commands and flags, compatible with the original `ua_harvest.py` (names, short forms and
//! the underscore spellings it accepted), plus the local-first additions.
//!
//! Precedence: a flag wins over the environment, which wins over `.env` (loaded without
//! overriding the environment before parsing). Secrets never show in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The largest MAX_START_END_SPAN, 100 years in seconds: any window arithmetic in microseconds
/// stays far from overflowing.
const MAX_SPAN_SECS: i64 = 3_155_760_000;

const AFTER_HELP: &str = "\
Settings come from flags, then the environment, then a .env file in the working directory
(see example.env). Exit status: 0 success, 1 failure (the message says what and what to do),
2 bad usage or settings.";

/// Local-first harvester of Opencast viewer analytics (user actions).
#[derive(Debug, Parser)]
#[command(name = "harvester", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The local journal (a redb file) every harvested action is committed to first.
    #[arg(
        long,
        global = true,
        env = "JOURNAL_PATH",
        default_value = "./harvester.redb"
    )]
    pub journal: PathBuf,

    /// Log level: error, warn, info, debug or trace (the original's INFO/DEBUG also work).
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// No progress bar or progress lines, and only warnings and errors logged (unless
    /// --log-level is given too; LOG_LEVEL from the environment gives way, unless quieter).
    #[arg(long, global = true)]
    pub quiet: bool,

    /// Log format on stderr: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Loggly customer token: log events are also sent to Loggly (best effort).
    #[arg(
        long,
        global = true,
        env = "LOGGLY_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub loggly_token: Option<crate::secret::Secret>,

    /// Extra Loggly tags, comma-separated.
    #[arg(long, global = true, env = "LOGGLY_TAGS", hide = true)]
    pub loggly_tags: Option<String>,

    /// Loggly bulk endpoint (override for testing).
    #[arg(long, global = true, env = "LOGGLY_URL", hide = true)]
    pub loggly_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for crate::logging::LogFormat {
    fn from(f: LogFormat) -> crate::logging::LogFormat {
        match f {
            LogFormat::Text => crate::logging::LogFormat::Text,
            LogFormat::Json => crate::logging::LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Harvest user actions from Opencast into the journal, then forward them.
    #[command(after_help = HARVEST_HELP)]
    Harvest(HarvestArgs),
    /// Forward journaled records to a sink (each sink keeps its own cursor).
    #[command(
        after_help = "Examples:\n  harvester forward                 # to SQS_QUEUE_NAME, from where that queue's cursor stands\n  harvester forward -o - > new.jsonl  # what stdout has not had yet\n  harvester forward -o es            # into useractions-YYYY.MM.DD on ELASTICSEARCH_HOST"
    )]
    Forward(ForwardArgs),
    /// Service mode: harvest every interval and forward continuously, with /metrics and /healthz.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Show, set or clear the harvest checkpoint (journal and S3).
    #[command(
        after_help = "Examples:\n  harvester checkpoint                       # where the next harvest starts\n  harvester checkpoint --set 20240301000000  # start the next harvest there\n  harvester checkpoint --clear               # next harvest: now - DEFAULT_INTERVAL"
    )]
    Checkpoint(CheckpointArgs),
    /// Check the settings and every service a harvest would use, without harvesting or writing.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Index episode metadata (with live-stream times from the admin node) into Elasticsearch.
    #[command(alias = "load_episodes", after_help = LOAD_EPISODES_HELP)]
    LoadEpisodes(LoadEpisodesArgs),
    /// Inspect and reuse the journal: dump, stats, verify, replay, prune (no Opencast needed).
    Journal(JournalArgs),
    /// Who watched what: viewers, episodes (views, retention), series (roll call), attendance.
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Run a simulated Opencast (engage + admin) with generated data.
    #[command(
        after_help = "Example (a flaky server with a million actions over a day):\n  harvester sim --actions 1000000 --from 20160301000000 --to 20160302000000 --fail-every 7\n  MATTERHORN_ENGAGE_HOST=127.0.0.1:8080 MATTERHORN_REST_USER=opencast_system_account \\\n    MATTERHORN_REST_PASS=CHANGE_ME harvester harvest -s 20160301000000 -e 20160302000000 -o -"
    )]
    Sim(SimArgs),
    /// Start a simulated Opencast, harvest it into a fresh journal and print the records.
    #[command(
        after_help = "Example:\n  harvester demo | head -3 && harvester --journal demo.redb journal stats"
    )]
    Demo(DemoArgs),
    /// Benchmark helper: fetch a window's pages like `harvest` but do nothing with them.
    #[command(hide = true)]
    BenchFetch(BenchFetchArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  harvester completions bash > /etc/bash_completion.d/harvester\n  harvester completions zsh > \"${fpath[1]}/_harvester\"\n  harvester completions fish > ~/.config/fish/completions/harvester.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(
        after_help = "Examples:\n  harvester man | man -l -\n  harvester man --dir /usr/local/share/man/man1 && mandb"
    )]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write harvester.1 and one harvester-COMMAND.1 per command into this directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const HARVEST_HELP: &str = "\
Start = --start, else the checkpoint (journal, then S3), else now - --interval minutes.
End = --end, else now. Times are YYYYMMDDHHmmss in OPENCAST_TIMEZONE.

Examples:
  harvester harvest                         # from cron: checkpoint..now, to SQS_QUEUE_NAME
  harvester harvest -b 100 -i 1 -o -        # last minute to stdout, pages of 100
  harvester harvest -s 20240101000000 -e 20240102000000 --no-update-last-ts -o none   # backfill";

const LOAD_EPISODES_HELP: &str = "\
Episodes are chosen one of three ways: created in the last N days (-c, the default, N=1), by id
(--mpid, repeatable), or every media package id seen in action indices (-s PATTERN; -s alone
means yesterday's index of ES_ACTION_INDEX). Each episode document is journaled, then indexed
with _id = media package id, so a rerun updates documents instead of adding new ones.

Examples:
  harvester load-episodes                                 # episodes created since yesterday
  harvester load-episodes -c 30 -i episodes               # the last 30 days
  harvester load-episodes --mpid 83ebde9d-0812-4071-8fb7-a97c1472ceb9
  harvester load-episodes -s 'useractions*-2017.10.*'     # every episode viewed in October 2017";

/// `harvester load-episodes`: the original's flags (with its underscore spellings) and more.
#[derive(Debug, Args)]
pub struct LoadEpisodesArgs {
    /// Admin node (workflows): host, host:port or a full URL.
    #[arg(short = 'A', long, alias = "admin_host", env = "MATTERHORN_ADMIN_HOST")]
    pub admin_host: Option<String>,

    /// Engage node (search): host, host:port or a full URL.
    #[arg(
        short = 'E',
        long,
        alias = "engage_host",
        env = "MATTERHORN_ENGAGE_HOST"
    )]
    pub engage_host: Option<String>,

    #[command(flatten)]
    pub conn: OpencastConn,

    /// Elasticsearch: host, host:port or URL (https://user:pass@host:port for a secured cluster).
    #[arg(
        short = 'e',
        long,
        alias = "es_host",
        env = "ELASTICSEARCH_HOST",
        default_value = "localhost:9200",
        hide_env_values = true
    )]
    pub es_host: String,

    #[command(flatten)]
    pub es_tls: EsTlsArgs,

    /// Index of the episode documents.
    #[arg(
        short = 'i',
        long,
        short_alias = 't',
        aliases = ["es_index", "target-index", "target_index"],
        env = "EPISODE_INDEX_NAME",
        default_value = "episodes"
    )]
    pub es_index: String,

    /// Seconds to wait between pages of episodes (eases the load on Opencast; 0 to 3600).
    #[arg(short = 'w', long, default_value_t = 0.0,
          value_parser = secs_in(0.0, 3600.0, "--wait"))]
    pub wait: f64,

    /// Episodes created in the last N days (0 to 36500).
    #[arg(
        short = 'c',
        long,
        alias = "created_from_days_ago",
        conflicts_with_all = ["mpid", "source_index_pattern"],
        value_parser = int_in(0u32, 36_500, "days", "--created-from-days-ago")
    )]
    pub created_from_days_ago: Option<u32>,

    /// Exactly this episode (repeatable).
    #[arg(long, conflicts_with = "source_index_pattern")]
    pub mpid: Vec<String>,

    /// Every media package id referenced by actions in the indices matching PATTERN
    /// (alone: yesterday's index of ES_ACTION_INDEX).
    #[arg(
        short = 's',
        long,
        alias = "source_index_pattern",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub source_index_pattern: Option<String>,

    /// Index pattern of action records (for the default of -s).
    #[arg(long, env = "ES_ACTION_INDEX", default_value = crate::forward::es::DEFAULT_INDEX_PATTERN)]
    pub es_action_index: String,

    /// Workflow definition whose newest SUCCEEDED instance gives the live window and availability.
    #[arg(
        long,
        env = "WORKFLOW_DEFINITION",
        default_value = "DCE-archive-publish-external"
    )]
    pub workflow_definition: String,

    /// Opencast requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,

    /// Seconds before an Elasticsearch request times out (1 to 3600).
    #[arg(long, env = "ES_TIMEOUT", default_value_t = 60,
          value_parser = int_in(1u64, 3600, "seconds", "ES_TIMEOUT"))]
    pub es_timeout: u64,

    /// Attempts of a failing bulk item before giving up (1 to 100).
    #[arg(long, env = "ES_ATTEMPTS", default_value_t = 5,
          value_parser = int_in(1u32, 100, "attempts", "ES_ATTEMPTS"))]
    pub es_attempts: u32,
}

/// Whom to trust for an https Elasticsearch signed by the site's own CA (Elasticsearch 8 and 9
/// make one at first start), besides the system's trust store.
#[derive(Debug, Clone, Default, Args)]
pub struct EsTlsArgs {
    /// The CA certificate (PEM) that signs Elasticsearch's https certificate (for a node set up
    /// by Elasticsearch itself: config/certs/http_ca.crt).
    #[arg(long, env = "ES_CA_FILE")]
    pub es_ca_file: Option<std::path::PathBuf>,

    /// The SHA-256 fingerprint of that CA, as Elasticsearch prints at its first start (64 hex
    /// digits, colons allowed): the CA is taken from the chain the node presents.
    #[arg(long, env = "ES_CA_FINGERPRINT")]
    pub es_ca_fingerprint: Option<String>,
}

impl EsTlsArgs {
    /// The trust these settings give (exit 2 for an unreadable file or a malformed fingerprint).
    pub fn trust(&self) -> Result<crate::es::EsTrust, crate::config::ConfigError> {
        let ca = match self
            .es_ca_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(p) => Some(crate::tls::read_ca_file("ES_CA_FILE", p)?),
            None => None,
        };
        let pin = match self
            .es_ca_fingerprint
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        {
            Some(f) => Some(crate::tls::parse_fingerprint("ES_CA_FINGERPRINT", f)?),
            None => None,
        };
        Ok(crate::es::EsTrust { ca, pin })
    }
}

/// How to reach Opencast's engage node (`-H`, as the original's `harvest`).
#[derive(Debug, Clone, Args)]
pub struct OpencastArgs {
    /// Engage node: host, host:port or a full URL.
    #[arg(
        short = 'H',
        long,
        alias = "engage_host",
        env = "MATTERHORN_ENGAGE_HOST"
    )]
    pub engage_host: Option<String>,

    #[command(flatten)]
    pub conn: OpencastConn,
}

impl OpencastArgs {
    /// The connection settings these flags give (checked by [`crate::config::opencast`]).
    pub fn settings(&self) -> crate::config::OpencastSettings {
        crate::config::OpencastSettings::from(self)
    }
}

impl From<&OpencastArgs> for crate::config::OpencastSettings {
    fn from(a: &OpencastArgs) -> crate::config::OpencastSettings {
        crate::config::OpencastSettings {
            engage_host: a.engage_host.clone(),
            user: a.conn.user.clone(),
            password: a.conn.password.clone(),
            timeout_secs: a.conn.opencast_timeout,
            retries: a.conn.opencast_retries,
            api: a.conn.opencast_api.into(),
            auth: a.conn.opencast_auth.into(),
            allow_basic_over_http: a.conn.opencast_allow_basic_over_http,
            ca_file: a.conn.opencast_ca_file.clone(),
        }
    }
}

/// Credentials, time zone and patience for Opencast requests (shared by every command that
/// talks to Opencast).
#[derive(Debug, Clone, Args)]
pub struct OpencastConn {
    /// REST user for digest authentication.
    #[arg(short = 'u', long, env = "MATTERHORN_REST_USER")]
    pub user: Option<String>,

    /// REST password for digest authentication.
    #[arg(
        short = 'p',
        long,
        env = "MATTERHORN_REST_PASS",
        hide_env_values = true
    )]
    pub password: Option<crate::secret::Secret>,

    /// Opencast's time zone (IANA name): how it reads start/end and times without an offset,
    /// and the checkpoint's zone.
    #[arg(
        long,
        alias = "opencast_timezone",
        env = "OPENCAST_TIMEZONE",
        default_value = "UTC"
    )]
    pub opencast_timezone: String,

    /// The site's own CA certificate (PEM) for an https Opencast it signs, trusted besides the
    /// system's trust store (which SSL_CERT_FILE and SSL_CERT_DIR also extend).
    #[arg(long, env = "OPENCAST_CA_FILE")]
    pub opencast_ca_file: Option<std::path::PathBuf>,

    /// Seconds before an Opencast request times out (1 to 3600).
    #[arg(long, env = "OPENCAST_TIMEOUT", default_value_t = 30,
          value_parser = int_in(1u64, 3600, "seconds", "OPENCAST_TIMEOUT"))]
    pub opencast_timeout: u64,

    /// Retries of an Opencast request after a transient fault (5xx, timeout, bad body; 0 to 100).
    #[arg(long, env = "OPENCAST_RETRIES", default_value_t = 5,
          value_parser = int_in(0u32, 100, "retries", "OPENCAST_RETRIES"))]
    pub opencast_retries: u32,

    /// How user actions are asked for: `windowed` (start/end, the build the original harvester
    /// ran against), `stock` (day=YYYYMMDD, every stock release from Matterhorn 1.4 to Opencast
    /// 17), or `auto` (a probe tells them apart, and never takes a stock server for windowed).
    #[arg(long, env = "OPENCAST_API", value_enum, default_value_t = ApiArg::Auto)]
    pub opencast_api: ApiArg,

    /// How every Opencast request is authenticated: `digest` (answered before Opencast asks;
    /// works for the digest system user only) or `basic` (any user, Opencast 3.0+; over https
    /// only, unless OPENCAST_ALLOW_BASIC_OVER_HTTP).
    #[arg(long, env = "OPENCAST_AUTH", value_enum, default_value_t = AuthArg::Digest)]
    pub opencast_auth: AuthArg,

    /// Let `OPENCAST_AUTH=basic` send the password over plain http (1/0, true/false).
    #[arg(long, env = "OPENCAST_ALLOW_BASIC_OVER_HTTP", value_parser = parse_switch,
          num_args = 0..=1, default_value = "0", default_missing_value = "1",
          hide_default_value = true)]
    pub opencast_allow_basic_over_http: bool,
}

/// `OPENCAST_AUTH`: the flag's side of [`crate::opencast::AuthScheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// HTTP Digest (the digest system user).
    Digest,
    /// HTTP Basic with X-Requested-Auth: Basic (any user; Opencast 3.0+).
    Basic,
}

impl From<AuthArg> for crate::opencast::AuthScheme {
    fn from(a: AuthArg) -> crate::opencast::AuthScheme {
        match a {
            AuthArg::Digest => crate::opencast::AuthScheme::Digest,
            AuthArg::Basic => crate::opencast::AuthScheme::Basic,
        }
    }
}

/// Where forwarded records go.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// SQS queue name (created when missing; a `.fifo` name makes a FIFO queue).
    #[arg(short = 'q', long, alias = "queue_name", env = "SQS_QUEUE_NAME")]
    pub queue_name: Option<String>,

    /// Payload limit of one SendMessageBatch, in bytes (SQS allows up to 1048576).
    #[arg(long, env = "SQS_MAX_BATCH_BYTES", default_value_t = crate::forward::sqs::DEFAULT_BATCH_BYTES,
          value_parser = int_in(1024usize, crate::forward::sqs::MAX_BATCH_BYTES, "bytes", "SQS_MAX_BATCH_BYTES"))]
    pub sqs_max_batch_bytes: usize,

    /// MessageGroupId for FIFO queues.
    #[arg(long, env = "SQS_MESSAGE_GROUP_ID", default_value = "harvester")]
    pub sqs_message_group_id: String,

    /// Elasticsearch: host, host:port or URL (https://user:pass@host:port for a secured cluster).
    #[arg(
        long,
        alias = "es_host",
        env = "ELASTICSEARCH_HOST",
        default_value = "localhost:9200",
        hide_env_values = true,
        hide_default_value = false
    )]
    pub es_host: String,

    #[command(flatten)]
    pub es_tls: EsTlsArgs,

    /// Index of action records, a chrono strftime pattern over the action's UTC time.
    #[arg(long, env = "ES_ACTION_INDEX", default_value = crate::forward::es::DEFAULT_INDEX_PATTERN)]
    pub es_action_index: String,

    /// Records per Elasticsearch bulk request (1 to 100000).
    #[arg(long, env = "ES_BULK_DOCS", default_value_t = 1000,
          value_parser = int_in(1u64, 100_000, "documents", "ES_BULK_DOCS"))]
    pub es_bulk_docs: u64,

    /// Bytes per Elasticsearch bulk request (a single larger record is sent alone; 1 KiB to
    /// 100 MiB, Elasticsearch's default http.max_content_length).
    #[arg(long, env = "ES_BULK_BYTES", default_value_t = 5 * 1024 * 1024,
          value_parser = int_in(1024usize, 100 * 1024 * 1024, "bytes", "ES_BULK_BYTES"))]
    pub es_bulk_bytes: usize,

    /// Seconds before an Elasticsearch request times out (1 to 3600).
    #[arg(long, env = "ES_TIMEOUT", default_value_t = 60,
          value_parser = int_in(1u64, 3600, "seconds", "ES_TIMEOUT"))]
    pub es_timeout: u64,

    /// Attempts of a failing bulk item before the sink gives up for this run (it resumes there;
    /// 1 to 100).
    #[arg(long, env = "ES_ATTEMPTS", default_value_t = 5,
          value_parser = int_in(1u32, 100, "attempts", "ES_ATTEMPTS"))]
    pub es_attempts: u32,

    #[command(flatten)]
    pub enrich: EnrichArgs,

    #[command(flatten)]
    pub xapi: XapiArgs,
}

/// xAPI statements for a learning record store (`-o xapi`, `journal dump --format xapi`).
#[derive(Debug, Clone, Args)]
pub struct XapiArgs {
    /// The LRS's base URL; statements are posted to {XAPI_ENDPOINT}/statements.
    #[arg(long, env = "XAPI_ENDPOINT", hide_env_values = true)]
    pub xapi_endpoint: Option<String>,

    /// The LRS user (HTTP Basic).
    #[arg(long, env = "XAPI_USERNAME")]
    pub xapi_username: Option<String>,

    /// The LRS password (HTTP Basic).
    #[arg(long, env = "XAPI_PASSWORD", hide_env_values = true)]
    pub xapi_password: Option<crate::secret::Secret>,

    /// The watched share at which `completed` is sent once: above 0, at most 1, 3 decimals at
    /// most (the profile's default 1 is every second).
    #[arg(long, env = "XAPI_COMPLETION_THRESHOLD", default_value = "1")]
    pub xapi_completion_threshold: String,

    /// Seconds of silence after which a video session is over (`terminated`; 60 to 86400).
    #[arg(long, env = "XAPI_SESSION_GAP", default_value_t = 1800,
          value_parser = int_in(60u64, 86_400, "seconds", "XAPI_SESSION_GAP"))]
    pub xapi_session_gap: u64,

    /// Statements per POST (1 to 10000).
    #[arg(long, env = "XAPI_BATCH", default_value_t = 500,
          value_parser = int_in(1usize, 10_000, "statements", "XAPI_BATCH"))]
    pub xapi_batch: usize,

    /// Bytes per POST (64 KiB to 100 MiB); a statement larger than that alone goes to the
    /// dead-letter table.
    #[arg(long, env = "XAPI_BATCH_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = int_in(65_536usize, 100 * 1024 * 1024, "bytes", "XAPI_BATCH_BYTES"))]
    pub xapi_batch_bytes: usize,

    /// Seconds before a request to the LRS times out (1 to 3600).
    #[arg(long, env = "XAPI_TIMEOUT", default_value_t = 60,
          value_parser = int_in(1u64, 3600, "seconds", "XAPI_TIMEOUT"))]
    pub xapi_timeout: u64,

    /// Attempts of a batch the LRS answers 429 or 5xx to before the forward stops there (1 to
    /// 100).
    #[arg(long, env = "XAPI_ATTEMPTS", default_value_t = 5,
          value_parser = int_in(1u32, 100, "attempts", "XAPI_ATTEMPTS"))]
    pub xapi_attempts: u32,

    /// The actors' home page and the base of activity ids (default: MATTERHORN_ENGAGE_HOST as
    /// a URL).
    #[arg(long, env = "XAPI_HOME_PAGE")]
    pub xapi_home_page: Option<String>,
}

impl XapiArgs {
    /// How statements are made: the home page, the threshold, the session gap.
    pub fn shape(&self) -> Result<crate::xapi::XapiShape, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let home = match &self.xapi_home_page {
            Some(h) if h.contains('@') => {
                return Err(ConfigError::new(format!(
                    "XAPI_HOME_PAGE '{}' holds user information; give the engage node's public URL (it names the actors' home page and the activities)",
                    crate::secret::redact_userinfo(h)
                )))
            }
            Some(h) if !h.trim().is_empty() => h.clone(),
            _ => std::env::var("MATTERHORN_ENGAGE_HOST").map_err(|_| {
                ConfigError::new(
                    "xAPI statements name the engage node (actors' home page, activity ids): set MATTERHORN_ENGAGE_HOST or XAPI_HOME_PAGE",
                )
            })?,
        };
        let engage = crate::opencast::base_url(&home).map_err(|e| {
            ConfigError::new(format!("XAPI_HOME_PAGE / MATTERHORN_ENGAGE_HOST: {e}"))
        })?;
        Ok(crate::xapi::XapiShape {
            engage,
            threshold: crate::xapi::parse_threshold(&self.xapi_completion_threshold)?,
            gap_us: self.xapi_session_gap as i64 * 1_000_000,
        })
    }

    /// Where statements go: `XAPI_ENDPOINT` and the credentials.
    pub fn config(&self) -> Result<crate::forward::XapiConfig, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let raw = self
            .xapi_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "output xapi needs a learning record store: set XAPI_ENDPOINT (its base URL; statements go to XAPI_ENDPOINT/statements), XAPI_USERNAME and XAPI_PASSWORD",
                )
            })?;
        let shown = crate::secret::redact_userinfo(raw);
        let endpoint = reqwest::Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "XAPI_ENDPOINT '{shown}' is not an http(s) URL (for instance https://lrs.example.edu/xAPI)"
                ))
            })?;
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(ConfigError::new(format!(
                "XAPI_ENDPOINT '{shown}' holds credentials; give them in XAPI_USERNAME and XAPI_PASSWORD"
            )));
        }
        if endpoint
            .path()
            .trim_end_matches('/')
            .ends_with("/statements")
        {
            return Err(ConfigError::new(format!(
                "XAPI_ENDPOINT '{shown}' ends in /statements; give the LRS's base URL (statements are posted to XAPI_ENDPOINT/statements)"
            )));
        }
        if endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(ConfigError::new(format!(
                "XAPI_ENDPOINT '{shown}' has a query or fragment; give the LRS's base URL only"
            )));
        }
        Ok(crate::forward::XapiConfig {
            endpoint,
            username: self.xapi_username.clone().unwrap_or_default(),
            password: self.xapi_password.clone().unwrap_or_default(),
            batch: self.xapi_batch.max(1),
            max_bytes: self.xapi_batch_bytes.max(65_536),
            timeout: std::time::Duration::from_secs(self.xapi_timeout.max(1)),
            attempts: self.xapi_attempts.max(1),
        })
    }
}

/// GeoIP and user-agent enrichment of forwarded records (what the Logstash pipeline added).
#[derive(Debug, Clone, Default, Args)]
pub struct EnrichArgs {
    /// MaxMind City or Country database (.mmdb): adds a `geoip` object from each action's `ip`.
    #[arg(long, env = "GEOIP_DATABASE")]
    pub geoip_database: Option<std::path::PathBuf>,

    /// Parse `useragent` with uap-core's rules into a `ua` object (1/0, true/false).
    #[arg(long, env = "PARSE_USERAGENT", value_parser = parse_switch, num_args = 0..=1,
          default_value = "0", default_missing_value = "1", hide_default_value = true)]
    pub parse_useragent: bool,

    /// Which sinks get `geoip`/`ua`: es (Elasticsearch documents only, as the pipeline did) or
    /// all (SQS and stdout records too).
    #[arg(long, env = "ENRICH_SINKS", default_value = "es", value_parser = ["es", "all"])]
    pub enrich_sinks: String,

    /// Leave the raw `useragent` string out of Elasticsearch documents, as the pipeline did (1/0).
    #[arg(long, env = "ES_DROP_USERAGENT", value_parser = parse_switch, num_args = 0..=1,
          default_value = "0", default_missing_value = "1", hide_default_value = true)]
    pub es_drop_useragent: bool,

    /// What the sinks do to addresses, after GeoIP: keep them, truncate them (IPv4 /24, IPv6
    /// /48) or drop them. Ids are pseudonymized with PSEUDONYMIZE_KEY (environment or .env only).
    #[arg(long, env = "IP_PRIVACY", default_value = "keep", value_parser = ["keep", "truncate", "drop"])]
    pub ip_privacy: String,

    /// The privacy settings (`PSEUDONYMIZE_KEY`, `IP_PRIVACY`), read once when checked.
    #[arg(skip)]
    pub privacy: std::sync::Arc<std::sync::OnceLock<crate::privacy::Privacy>>,

    /// The process's enricher, made once from the settings above when they are checked
    /// (`app::check_sink_settings`) and shared by every copy of these arguments, so that all
    /// sinks of a process share one database mapping, one parser and one pair of caches.
    #[arg(skip)]
    pub enricher: crate::enrich::EnricherSlot,
}

impl From<&EnrichArgs> for crate::enrich::EnrichSettings {
    fn from(a: &EnrichArgs) -> crate::enrich::EnrichSettings {
        crate::enrich::EnrichSettings {
            geoip_database: a.geoip_database.clone(),
            parse_useragent: a.parse_useragent,
            scope: crate::enrich::Scope::parse(&a.enrich_sinks).unwrap_or_default(),
            es_drop_useragent: a.es_drop_useragent,
        }
    }
}

impl EnrichArgs {
    /// Opens the database and compiles the parser these settings ask for (once per process).
    pub fn check(&self) -> Result<(), crate::config::ConfigError> {
        crate::enrich::Scope::parse(&self.enrich_sinks).map_err(crate::config::ConfigError::new)?;
        self.privacy_settings()?;
        self.enricher
            .init(&crate::enrich::EnrichSettings::from(self))
            .map_err(|e| crate::config::ConfigError::new(e.to_string()))
    }

    /// The privacy settings: `PSEUDONYMIZE_KEY` from the environment, `IP_PRIVACY` (read once).
    pub fn privacy_settings(&self) -> Result<&crate::privacy::Privacy, crate::config::ConfigError> {
        if let Some(p) = self.privacy.get() {
            return Ok(p);
        }
        let p = crate::privacy::Privacy::from_env(&self.ip_privacy)?;
        Ok(self.privacy.get_or_init(|| p))
    }

    /// What a sink does to records before sending them: enrichment (see
    /// [`crate::enrich::EnricherSlot::for_sink`]) and the privacy settings, which every sink
    /// gets. Fails only on a privacy setting that is wrong (never silently sends ids in clear).
    pub fn for_sink(
        &self,
        es: bool,
    ) -> Result<Option<crate::enrich::Shaper>, crate::config::ConfigError> {
        let privacy = self.privacy_settings()?;
        let privacy = privacy.is_on().then(|| privacy.for_sink());
        Ok(crate::enrich::Shaper::new(
            self.enricher.for_sink(es),
            privacy,
        ))
    }
}

/// A yes/no setting: 1/0, true/false, yes/no, on/off (any case).
fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "'{s}' is not a switch; use 1 or 0 (true/false, yes/no, on/off)"
        )),
    }
}

/// Where the checkpoint copy lives in S3.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// S3 bucket holding the checkpoint (optional: without it the journal alone holds it).
    #[arg(long, env = "S3_HARVEST_TS_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 key of the checkpoint object.
    #[arg(
        long,
        env = "S3_LAST_ACTION_TS_KEY",
        default_value = "last-action-timestamp"
    )]
    pub s3_key: String,
}

/// How hard the harvest presses Opencast, and how far it looks back (`harvest` and `run`).
#[derive(Debug, Clone, Args)]
pub struct PaceArgs {
    /// Page requests to Opencast in flight at once (1 to 64).
    /// The original sent one at a time: `--max-in-flight 1 -w 1` is as gentle as it was.
    #[arg(long, env = "OPENCAST_MAX_IN_FLIGHT",
          default_value_t = crate::harvest::DEFAULT_MAX_IN_FLIGHT,
          value_parser = parse_max_in_flight)]
    pub max_in_flight: usize,

    /// Seconds before the checkpoint each window starts (0 to 86400), so that actions Opencast
    /// committed late are read too; those read again are skipped as duplicates. Only when the
    /// start comes from the checkpoint, never with --start.
    #[arg(long, env = "HARVEST_OVERLAP", default_value_t = 60,
          value_parser = parse_overlap)]
    pub overlap: u64,
}

/// `--max-in-flight`: a count in [`crate::harvest::MAX_IN_FLIGHT_RANGE`].
pub fn parse_max_in_flight(s: &str) -> Result<usize, String> {
    let r = crate::harvest::MAX_IN_FLIGHT_RANGE;
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| r.contains(n))
        .ok_or_else(|| {
            format!(
                "OPENCAST_MAX_IN_FLIGHT/--max-in-flight takes a whole number of requests from {} to {}",
                r.start(),
                r.end()
            )
        })
}

/// `--overlap`: whole seconds, at most a day.
fn parse_overlap(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= 86_400)
        .ok_or_else(|| {
            "HARVEST_OVERLAP/--overlap takes a whole number of seconds from 0 to 86400".to_string()
        })
}

#[derive(Debug, Args)]
pub struct HarvestArgs {
    #[command(flatten)]
    pub opencast: OpencastArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    #[command(flatten)]
    pub s3: S3Args,

    /// Window start, YYYYMMDDHHmmss (default: the checkpoint, else now - interval).
    #[arg(short = 's', long)]
    pub start: Option<String>,

    /// Window end, YYYYMMDDHHmmss (default: now).
    #[arg(short = 'e', long)]
    pub end: Option<String>,

    /// Seconds to wait between pages (eases the load on the engage node; 0 to 3600).
    #[arg(short = 'w', long, default_value_t = 0.0,
          value_parser = secs_in(0.0, 3600.0, "--wait"))]
    pub wait: f64,

    /// Where to forward after harvesting: sqs, - (stdout), es, several (sqs,es), or none.
    #[arg(short = 'o', long, default_value = "sqs", allow_hyphen_values = true)]
    pub output: String,

    /// Actions per page (the endpoint's limit; 1 to 1000000).
    #[arg(short = 'b', long, alias = "batch_size", default_value_t = 1000,
          value_parser = int_in(1u64, 1_000_000, "actions", "--batch-size"))]
    pub batch_size: u64,

    /// Minutes to harvest when there is neither --start nor a checkpoint (1 to 525600, a year).
    #[arg(short = 'i', long, env = "DEFAULT_INTERVAL", default_value_t = 2,
          value_parser = int_in(1u64, 525_600, "minutes", "DEFAULT_INTERVAL"))]
    pub interval: u64,

    /// Largest allowed start..end span in seconds (unset or 0: no limit; at most 100 years).
    #[arg(long, alias = "max_start_end_span", env = "MAX_START_END_SPAN",
          value_parser = int_in(0i64, MAX_SPAN_SECS, "seconds (0: no limit)", "MAX_START_END_SPAN"))]
    pub max_start_end_span: Option<i64>,

    /// Harvest even when the span exceeds MAX_START_END_SPAN.
    #[arg(long, alias = "disable_start_end_span_check")]
    pub disable_start_end_span_check: bool,

    /// When the span exceeds MAX_START_END_SPAN, harvest it in windows of that size.
    #[arg(long, alias = "catch_up")]
    pub catch_up: bool,

    /// Update the checkpoint after the harvest (the default).
    #[arg(long, alias = "update_last_ts", overrides_with = "no_update_last_ts")]
    pub update_last_ts: bool,

    /// Leave the checkpoint alone (for backfills).
    #[arg(long, alias = "no_update_last_ts", overrides_with = "update_last_ts")]
    pub no_update_last_ts: bool,

    /// Seconds an episode's metadata is cached (0 to 2592000, 30 days).
    #[arg(long, env = "EPISODE_CACHE_EXPIRE", default_value_t = 1800,
          value_parser = int_in(0u64, 2_592_000, "seconds", "EPISODE_CACHE_EXPIRE"))]
    pub episode_cache_expire: u64,
}

const CHECK_HELP: &str = "\
Reads the settings exactly as `harvest` (or, with --for run, `run`) would: flags, environment,
.env. Then checks, without harvesting or writing anything: Opencast (reachable, credentials
accepted, the window the next run would harvest, the span check, the server's clock), the
journal (read-only), the S3 checkpoint (readable; writable, with a probe object next to it),
and each configured sink (-o): SQS queue, Elasticsearch node and template, GeoIP database,
user-agent rules. One line per check; exit 0 when all pass, 1 when any fails, 2 bad settings.

Examples:
  harvester check                       # as the cron job's `harvester harvest` would run
  harvester check -o sqs,es --for run   # as `harvester run -o sqs,es` would run
  harvester check --json | jq '.checks[] | select(.status == \"fail\")'";

/// Which command `check` checks the settings of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFor {
    Harvest,
    Run,
}

/// `harvester check`: every setting of `harvest` and `run`, and the output format.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub harvest: HarvestArgs,

    /// Check as for `harvest` (a span over MAX_START_END_SPAN fails unless --catch-up or
    /// --disable-start-end-span-check) or for `run` (it harvests such a gap window by window,
    /// and HARVEST_EVERY, METRICS_ADDR, JOURNAL_WARN_SIZE, HARVESTER_API_TOKEN are checked).
    #[arg(long = "for", value_enum, default_value_t = CheckFor::Harvest)]
    pub for_command: CheckFor,

    /// One JSON object instead of lines (the same checks, the same exit status).
    #[arg(long)]
    pub json: bool,

    /// As `run --every` (checked with --for run only, as `harvest` ignores it).
    #[arg(long, env = "HARVEST_EVERY")]
    pub every: Option<String>,

    /// As `run --metrics-addr` (checked with --for run).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9898")]
    pub metrics_addr: String,

    /// As `run --journal-warn-size` (checked with --for run only).
    #[arg(long, env = "JOURNAL_WARN_SIZE")]
    pub journal_warn_size: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub sink: SinkArgs,

    /// Sinks: sqs, - (stdout), es, or several (sqs,es).
    #[arg(short = 'o', long, default_value = "sqs", allow_hyphen_values = true)]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub s3: S3Args,

    /// Opencast's time zone (IANA name), for reading and showing the checkpoint.
    #[arg(long, env = "OPENCAST_TIMEZONE", default_value = "UTC")]
    pub opencast_timezone: String,

    /// Remove the checkpoint from the journal and S3 (the next harvest starts at now - interval).
    #[arg(long, conflicts_with = "set")]
    pub clear: bool,

    /// Set the checkpoint to this time (YYYYMMDDHHmmss), in the journal and S3.
    #[arg(long)]
    pub set: Option<String>,
}

/// The simulated Opencast's data and faults.
#[derive(Debug, Clone, Args)]
pub struct SimDataArgs {
    /// Seed of the generated data (same seed, same data).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of actions, spread evenly over the time range.
    #[arg(long, default_value_t = 2000,
          value_parser = int_in(0u64, 1_000_000_000_000, "actions", "--actions"))]
    pub actions: u64,
    /// Range start (YYYYMMDDHHmmss, UTC; default: an hour ago).
    #[arg(long)]
    pub from: Option<String>,
    /// Range end (YYYYMMDDHHmmss, UTC; default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Episodes in the catalog.
    #[arg(long, default_value_t = 40,
          value_parser = int_in(0u64, 1_000_000, "episodes", "--episodes"))]
    pub episodes: u64,
    /// Every Nth action is malformed (0: none).
    #[arg(long, default_value_t = 0)]
    pub malformed_every: u64,
    /// Answer 503 to every Nth request (0: never).
    #[arg(long, default_value_t = 0)]
    pub fail_every: u64,
    /// Truncate every Nth response body (0: never).
    #[arg(long, default_value_t = 0)]
    pub truncate_every: u64,
    /// Delay each response by this many milliseconds.
    #[arg(long, default_value_t = 0,
          value_parser = int_in(0u64, 600_000, "milliseconds", "--delay-ms"))]
    pub delay_ms: u64,
    /// Repeat this many rows of the previous page at the top of each page.
    #[arg(long, default_value_t = 0,
          value_parser = int_in(0u64, 1_000_000, "rows", "--overlap"))]
    pub overlap: u64,
    /// Expire a nonce after this many requests (0: never).
    #[arg(long, default_value_t = 0)]
    pub nonce_uses: u64,
    /// Digest user the simulator accepts.
    #[arg(long, default_value = "opencast_system_account")]
    pub sim_user: String,
    /// Digest password the simulator accepts.
    #[arg(long, default_value = "CHANGE_ME")]
    pub sim_password: crate::secret::Secret,
    /// Digest realm.
    #[arg(long, default_value = "Opencast")]
    pub realm: String,
    /// The simulated server's time zone.
    #[arg(long, default_value = "UTC")]
    pub sim_timezone: String,
    /// The Opencast to play: `dce` (the build the original harvester ran against, which reads
    /// start/end), a family (mh1.4-1.6, oc2-7, oc6-7, oc8-11, oc12, oc13-15, oc16-17) or a release
    /// (1.4 to 17.x).
    #[arg(long, default_value = "dce")]
    pub opencast: String,
    /// Row order of a stock release's actions queries: created (an index scan), id, or
    /// shuffled (a new order for every query).
    #[arg(long, default_value = "created")]
    pub row_order: String,
    /// Leave usertracking's plugin off (13+: the endpoint is a 404, as Opencast ships it).
    #[arg(long)]
    pub usertracking_off: bool,
    /// Run the server's clock this many seconds ahead of this machine's (negative: behind).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-86_400..=86_400))]
    pub clock_offset: i64,
}

impl From<&SimDataArgs> for crate::config::SimSettings {
    fn from(a: &SimDataArgs) -> crate::config::SimSettings {
        crate::config::SimSettings {
            seed: a.seed,
            actions: a.actions,
            from: a.from.clone(),
            to: a.to.clone(),
            episodes: a.episodes,
            malformed_every: a.malformed_every,
            fail_every: a.fail_every,
            truncate_every: a.truncate_every,
            delay_ms: a.delay_ms,
            overlap: a.overlap,
            nonce_uses: a.nonce_uses,
            user: a.sim_user.clone(),
            password: a.sim_password.clone(),
            realm: a.realm.clone(),
            timezone: a.sim_timezone.clone(),
            opencast: a.opencast.clone(),
            row_order: a.row_order.clone(),
            usertracking_off: a.usertracking_off,
            clock_offset_s: a.clock_offset,
        }
    }
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (loopback only unless you mean it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub data: SimDataArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub data: SimDataArgs,
    /// Journal of the demo (replaced at each run).
    #[arg(long, default_value = "./demo.redb")]
    pub demo_journal: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchFetchArgs {
    #[command(flatten)]
    pub opencast: OpencastArgs,
    #[arg(short = 's', long)]
    pub start: String,
    #[arg(short = 'e', long)]
    pub end: String,
    #[arg(short = 'b', long, default_value_t = 1000,
          value_parser = int_in(1u64, 1_000_000, "actions", "--batch-size"))]
    pub batch_size: u64,
    /// Page requests in flight at once (as `harvest --max-in-flight`).
    #[arg(long, default_value_t = crate::harvest::DEFAULT_MAX_IN_FLIGHT,
          value_parser = parse_max_in_flight)]
    pub max_in_flight: usize,
    /// What to do with each page once fetched: nothing (the bare fetch), a serde skim of its
    /// JSON (the least any harvester must do), or the harvest's own decoding and judging.
    #[arg(long, value_enum, default_value_t = FetchDecode::None)]
    pub decode: FetchDecode,
}

/// `OPENCAST_API`: the flag's side of [`crate::config::ApiChoice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// Probe the server: windowed only when it provably reads start/end.
    Auto,
    /// start/end (the build the original harvester was written for).
    Windowed,
    /// day=YYYYMMDD (every stock release, Matterhorn 1.4 to Opencast 17).
    Stock,
}

impl From<ApiArg> for crate::config::ApiChoice {
    fn from(a: ApiArg) -> crate::config::ApiChoice {
        match a {
            ApiArg::Auto => crate::config::ApiChoice::Auto,
            ApiArg::Windowed => crate::config::ApiChoice::Windowed,
            ApiArg::Stock => crate::config::ApiChoice::Stock,
        }
    }
}

/// `bench-fetch --decode`: the flag's side of [`crate::harvest::FetchDecode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FetchDecode {
    /// Nothing: the bare fetch.
    None,
    /// Reads the JSON through without building anything (serde's `IgnoredAny`).
    Skim,
    /// Decodes and judges the page as the harvest does, and drops it.
    Full,
}

impl From<FetchDecode> for crate::harvest::FetchDecode {
    fn from(d: FetchDecode) -> crate::harvest::FetchDecode {
        match d {
            FetchDecode::None => crate::harvest::FetchDecode::None,
            FetchDecode::Skim => crate::harvest::FetchDecode::Skim,
            FetchDecode::Full => crate::harvest::FetchDecode::Full,
        }
    }
}

#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Print journaled records as JSON lines (the exact record format) or CSV, with filters.
    #[command(after_help = DUMP_HELP)]
    Dump(Box<DumpArgs>),
    /// Counts, times, sizes, checkpoint and each sink's cursor and lag.
    #[command(
        after_help = "Examples:\n  harvester journal stats\n  harvester journal stats --json | jq '.cursors[] | select(.lag > 0)'"
    )]
    Stats(StatsArgs),
    /// Check that every record decodes and the tables agree; exit 1 with a report if not.
    #[command(
        after_help = "Example:\n  harvester journal verify || harvester journal dump > salvage.jsonl   # dump skips bad blocks"
    )]
    Verify,
    /// Send a range again to a sink (a new queue, say) without moving the regular cursors.
    #[command(after_help = REPLAY_HELP)]
    Replay(Box<ReplayArgs>),
    /// Remove old records every sink has acknowledged, and give the space back.
    #[command(after_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Set unreadable blocks aside and print the harvest that brings their records back.
    #[command(after_help = SALVAGE_HELP)]
    Salvage(SalvageArgs),
}

const SALVAGE_HELP: &str = "\
Each unreadable block is moved to the journal's quarantine table (kept, never deleted), and the
action ids it may have held are forgotten by the dedupe memory, so that harvesting its time
window again journals its records anew. The command prints that harvest. Stop harvests first.

Example:
  harvester journal verify || harvester journal salvage";

/// `journal salvage`.
#[derive(Debug, Clone, Args)]
pub struct SalvageArgs {
    /// Time zone of the printed harvest window (IANA name): Opencast's.
    #[arg(long, env = "OPENCAST_TIMEZONE", default_value = "UTC")]
    pub opencast_timezone: String,
}

const DUMP_HELP: &str = "\
Times are YYYYMMDDHHmmss in OPENCAST_TIMEZONE, or RFC 3339 (2024-01-30T00:00:00Z); both ends inclusive.

Examples:
  harvester journal dump --from 20261124000000 --to 20261124235959     # what did we harvest on Tuesday?
  harvester journal dump --mpid 83ebde9d-0812-4071-8fb7-a97c1472ceb9 --type PLAY --limit 10
  harvester journal dump --seq 1000..1999 > records.jsonl
  harvester journal dump --from 20261101000000 --to 20261130235959 --format csv > november.csv
  harvester journal dump --dead-letters                                 # quarantined inputs and why
  GEOIP_DATABASE=GeoLite2-City.mmdb PARSE_USERAGENT=1 harvester journal dump --enrich --limit 5   # the ES documents";

const REPLAY_HELP: &str = "\
The replay keeps its own cursor (named by --name, else by sink and range): run the same command
again after an interruption and it goes on where it stopped; --restart starts over.

Examples:
  harvester journal replay --from 20261101000000 --to 20261130235959 -o sqs -q new-queue
  harvester journal replay --seq 0..99999 -o - > first-100k.jsonl
  harvester journal replay --from 20261101000000 --to 20261130235959 -o es --es-index useractions-v2-%Y.%m.%d
  harvester journal replay --dead-letters -o sqs -q bigger-queue   # what SQS refused, once its cause is fixed
  harvester journal replay --dead-letters -o es --dead-letter 7    # one record Elasticsearch refused";

const PRUNE_HELP: &str = "\
DURATION: a number and a unit, s, m, h, d or w (90d, 12h). Records not yet acknowledged by every
sink are kept unless --force. Action ids are remembered after pruning, so an overlapping harvest
never brings a pruned action back as new.

Example:
  harvester journal prune --older-than 90d";

/// Which records, by time or sequence.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// Records whose action time is at or after this.
    #[arg(long)]
    pub from: Option<String>,
    /// Records whose action time is at or before this.
    #[arg(long)]
    pub to: Option<String>,
    /// Sequence numbers A..B (inclusive; either end may be left out).
    #[arg(long)]
    pub seq: Option<String>,
    /// Time zone of YYYYMMDDHHmmss times (IANA name).
    #[arg(long, env = "OPENCAST_TIMEZONE", default_value = "UTC")]
    pub opencast_timezone: String,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only actions of this media package (repeatable).
    #[arg(long)]
    pub mpid: Vec<String>,
    /// Only actions of this type, e.g. PLAY (repeatable).
    #[arg(long = "type")]
    pub kind: Vec<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Dump the journaled episode metadata instead.
    #[arg(long, conflicts_with_all = ["dead_letters", "episode_docs"])]
    pub episodes: bool,
    /// Dump the episode documents `load-episodes` built (what it indexed) instead.
    #[arg(long, conflicts_with = "dead_letters")]
    pub episode_docs: bool,
    /// Dump the dead letters (inputs that could not become records) instead.
    #[arg(long)]
    pub dead_letters: bool,
    /// Show each record as the Elasticsearch document `-o es` would send, with the `geoip` / `ua`
    /// objects of GEOIP_DATABASE / PARSE_USERAGENT (and without `useragent` if ES_DROP_USERAGENT).
    #[arg(long, conflicts_with_all = ["dead_letters", "episode_docs", "episodes"])]
    pub enrich: bool,
    #[command(flatten)]
    pub xapi: XapiArgs,
    /// Show the records as the sinks get them: ids pseudonymized with PSEUDONYMIZE_KEY and
    /// addresses as IP_PRIVACY says (at least one of the two must be set).
    #[arg(long, conflicts_with_all = ["dead_letters", "episode_docs", "episodes"])]
    pub pseudonymize: bool,
    #[command(flatten)]
    pub enrich_args: EnrichArgs,
    /// Output: JSON lines (the exact record format), or CSV with a header and one flat row per
    /// record (dotted column names such as episode.title; records only, no --enrich).
    #[arg(long, value_enum, default_value_t = DumpFormat::Json)]
    pub format: DumpFormat,
}

/// What `journal dump` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    Json,
    Csv,
    /// xAPI statements of the video profile, one per line (what `-o xapi` posts).
    Xapi,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also enrich every record as `-o es` would (GEOIP_DATABASE, PARSE_USERAGENT) and report
    /// addresses located / not located, user agents parsed and the cache hit rates.
    #[arg(long)]
    pub enrich: bool,
    #[command(flatten)]
    pub enrich_args: EnrichArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Sink: sqs, - (stdout) or es.
    #[arg(short = 'o', long, default_value = "sqs", allow_hyphen_values = true)]
    pub output: String,
    /// Elasticsearch index (or strftime pattern) to replay into, instead of ES_ACTION_INDEX.
    #[arg(long)]
    pub es_index: Option<String>,
    /// Name of this replay's cursor (default: from the sink and the range).
    #[arg(long)]
    pub name: Option<String>,
    /// Start the replay over instead of resuming it.
    #[arg(long)]
    pub restart: bool,
    /// Send the records the sink (-o sqs or -o es) refused again, instead of a range; each one
    /// delivered is marked so it is never sent twice (see `journal dump --dead-letters`).
    #[arg(long, conflicts_with_all = ["name", "restart", "es_index"])]
    pub dead_letters: bool,
    /// Only this dead letter (its number in `journal dump --dead-letters`; repeatable).
    #[arg(long, value_name = "N")]
    pub dead_letter: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove records whose action time is older than this (e.g. 90d).
    #[arg(long)]
    pub older_than: String,
    /// Remove them even when a sink has not acknowledged them.
    #[arg(long)]
    pub force: bool,
}

const RUN_HELP: &str = "\
Harvests from the checkpoint to now every --every seconds (default: --interval minutes) and
forwards to each sink as soon as records are journaled. A sink outage only makes the journal
grow (warned about past JOURNAL_WARN_SIZE); the sink catches up when it is back. SIGTERM or
Ctrl-C commits the page in hand and exits 0. A window larger than MAX_START_END_SPAN is
harvested in windows of that size.

Example:
  harvester run -o sqs --metrics-addr 127.0.0.1:9898    # then: curl 127.0.0.1:9898/metrics";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub opencast: OpencastArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    #[command(flatten)]
    pub s3: S3Args,

    /// Sinks, comma-separated: sqs, - (stdout), es.
    #[arg(short = 'o', long, default_value = "sqs", allow_hyphen_values = true)]
    pub output: String,

    /// Actions per page (1 to 1000000).
    #[arg(short = 'b', long, alias = "batch_size", default_value_t = 1000,
          value_parser = int_in(1u64, 1_000_000, "actions", "--batch-size"))]
    pub batch_size: u64,

    /// Minutes harvested at the first start without a checkpoint, and the default period (1 to
    /// 525600, a year).
    #[arg(short = 'i', long, env = "DEFAULT_INTERVAL", default_value_t = 2,
          value_parser = int_in(1u64, 525_600, "minutes", "DEFAULT_INTERVAL"))]
    pub interval: u64,

    /// Seconds between harvests (default: --interval minutes; 0.1 to 86400).
    #[arg(long, env = "HARVEST_EVERY",
          value_parser = secs_in(0.1, 86_400.0, "HARVEST_EVERY"))]
    pub every: Option<f64>,

    /// Largest window in seconds; larger gaps are harvested in windows of this size (unset or 0:
    /// no limit; at most 100 years).
    #[arg(long, alias = "max_start_end_span", env = "MAX_START_END_SPAN",
          value_parser = int_in(0i64, MAX_SPAN_SECS, "seconds (0: no limit)", "MAX_START_END_SPAN"))]
    pub max_start_end_span: Option<i64>,

    /// Seconds an episode's metadata is cached (0 to 2592000, 30 days).
    #[arg(long, env = "EPISODE_CACHE_EXPIRE", default_value_t = 1800,
          value_parser = int_in(0u64, 2_592_000, "seconds", "EPISODE_CACHE_EXPIRE"))]
    pub episode_cache_expire: u64,

    /// Loopback address of the /metrics and /healthz endpoint.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9898")]
    pub metrics_addr: String,

    /// Warn when the journal file grows past this many bytes (a sink is down, say; 1 MiB to
    /// 1 PiB).
    #[arg(long, env = "JOURNAL_WARN_SIZE", default_value_t = 1 << 30,
          value_parser = int_in(1u64 << 20, 1 << 50, "bytes", "JOURNAL_WARN_SIZE"))]
    pub journal_warn_size: u64,

    /// Seconds a harvest cycle may go without progress (no answer from Opencast, no cycle
    /// finished) before /healthz says the harvest is stuck (5 to 86400).
    #[arg(long, env = "HARVEST_STALL_AFTER", default_value_t = 600,
          value_parser = int_in(5u64, 86_400, "seconds", "HARVEST_STALL_AFTER"))]
    pub stall_after: u64,
}

/// A clap value parser for a whole number in `lo..=hi`. Its message names the setting (the
/// environment variable, when there is one, since clap names only the flag) and the range.
pub fn int_in<T>(
    lo: T,
    hi: T,
    unit: &'static str,
    setting: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.trim().parse::<T>() {
        Ok(v) if lo <= v && v <= hi => Ok(v),
        Ok(_) => Err(format!("out of range: {setting} takes {lo} to {hi} {unit}")),
        Err(_) => Err(format!(
            "not a whole number: {setting} takes {lo} to {hi} {unit}"
        )),
    }
}

/// A clap value parser for a number of seconds (fractions allowed) in `lo..=hi`; NaN and
/// infinities are refused, so the value always makes a `Duration`.
pub fn secs_in(
    lo: f64,
    hi: f64,
    setting: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && lo <= v && v <= hi => Ok(v),
        Ok(_) => Err(format!(
            "out of range: {setting} takes {lo} to {hi} seconds"
        )),
        Err(_) => Err(format!(
            "not a number: {setting} takes {lo} to {hi} seconds"
        )),
    }
}

/// Lets clap parse a flag or environment variable straight into a `Secret`.
impl std::str::FromStr for crate::secret::Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<crate::secret::Secret, Self::Err> {
        Ok(crate::secret::Secret::new(s))
    }
}

const REPORT_HELP: &str = "\
Reads the journal once (offline, or through `harvester run` while it holds the journal) and
answers how much of each episode each viewer watched. Heartbeat players (Paella 6, up to
Opencast 12) and event players (Paella 7, Opencast 13+: PLAY/PAUSE/SEEK) both count; the rules
are in the README (\"Who watched what\"). Viewers not logged in are one row per episode.
A summary line on stderr counts what was read and every hostile value corrected.

Examples:
  harvester report viewers --from 20261101000000 --to 20261130235959 > november.csv
  harvester report viewers --mpid 83ebde9d-0812-4071-8fb7-a97c1472ceb9 --format json
  harvester report episodes --series 20240112345 --format svg > retention.svg
  harvester report series --threshold 75        # the roll call: lectures watched out of published
  harvester report attendance --chunk-interval 300 > attendance.csv   # Harvard's export, exactly";

/// `harvester report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// One row per (episode, viewer): seconds and percent watched, sessions, first and last
    /// seen, and (JSON) the watched segments.
    Viewers(ReportOpts),
    /// One row per episode: views, unique viewers, hours and average percent watched, and the
    /// retention curve (--format svg draws it).
    Episodes(EpisodesArgs),
    /// The roll call: per series and viewer, lectures watched to --threshold percent out of the
    /// series' lectures in the journal.
    Series(SeriesArgs),
    /// Harvard's attendance CSV (mpid,huid,vod_attendance or live_attendance): distinct
    /// --chunk-interval buckets of playing HEARTBEAT inpoints out of the episode's intervals.
    Attendance(AttendanceArgs),
}

/// Which actions a report reads.
#[derive(Debug, Clone, Args)]
pub struct ReportFilterArgs {
    /// Actions whose time is at or after this (YYYYMMDDHHmmss in OPENCAST_TIMEZONE, or RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Actions whose time is at or before this.
    #[arg(long)]
    pub to: Option<String>,
    /// Time zone of YYYYMMDDHHmmss times (IANA name).
    #[arg(long, env = "OPENCAST_TIMEZONE", default_value = "UTC")]
    pub opencast_timezone: String,
    /// Only this media package (repeatable).
    #[arg(long)]
    pub mpid: Vec<String>,
    /// Only episodes of this series id (repeatable).
    #[arg(long)]
    pub series: Vec<String>,
}

/// The options of the viewers, episodes and series reports.
#[derive(Debug, Clone, Args)]
pub struct ReportOpts {
    #[command(flatten)]
    pub filter: ReportFilterArgs,
    /// Only live actions.
    #[arg(long, conflicts_with = "vod")]
    pub live: bool,
    /// Only on-demand (not live) actions.
    #[arg(long)]
    pub vod: bool,
    /// A session with no action for this many seconds is over: a play nothing paused ends
    /// there (60 to 86400).
    #[arg(long, env = "REPORT_SESSION_GAP", default_value_t = 1800,
          value_parser = clap::value_parser!(u32).range(60..=86_400), value_name = "SECONDS")]
    pub session_gap: u32,
    /// Output: CSV with a header (the `journal dump --format csv` conventions), or JSON lines.
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    pub format: ReportFormat,
}

/// `report episodes`.
#[derive(Debug, Clone, Args)]
pub struct EpisodesArgs {
    #[command(flatten)]
    pub opts: ReportOpts,
    /// Width of a retention-curve bucket in seconds (1 to 3600).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600),
          value_name = "SECONDS")]
    pub bucket: u32,
}

/// `report series`.
#[derive(Debug, Clone, Args)]
pub struct SeriesArgs {
    #[command(flatten)]
    pub opts: ReportOpts,
    /// A lecture counts as watched from this percent of it on (0 to 100).
    #[arg(
        long,
        env = "REPORT_WATCHED_THRESHOLD",
        default_value_t = 50.0,
        value_name = "PERCENT"
    )]
    pub threshold: f64,
}

/// `report attendance`.
#[derive(Debug, Clone, Args)]
pub struct AttendanceArgs {
    #[command(flatten)]
    pub filter: ReportFilterArgs,
    /// Bucket width in seconds of the episode (Harvard's default 300; 1 to 86400).
    #[arg(long = "chunk-interval", alias = "chunk_interval", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=86_400), value_name = "SECONDS")]
    pub chunk_interval: u32,
    /// Live attendance (is_live actions, column live_attendance) instead of on-demand.
    #[arg(long)]
    pub live: bool,
}

/// What a report writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
    /// The retention curves as an SVG picture (`report episodes` only).
    Svg,
}
