//! Logs on stderr (text on a terminal, or JSON lines), and optionally to Loggly.
//!
//! stdout is reserved for records. The Loggly layer never blocks the harvest: events go through
//! a bounded queue to a background task that posts them in bulk; when the queue is full, events
//! are dropped (and counted), and at exit the task gets a short grace period to flush.
//!
//! A Loggly event carries every field of the log event, as the JSON lines on stderr do: what must
//! not leave the machine must not be in a log event at all. So the sinks log a refusal by its
//! reason's type and the action ids, never Elasticsearch's reason text, which quotes the refused
//! values ("Preview of field's value: 'student0'"); that text is kept in the dead-letter table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::ConfigError;

/// How lines on stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For a person at a terminal.
    Text,
    /// One JSON object a line, for a log pipeline.
    Json,
}

/// Loggly settings (`Debug` shows no token).
#[derive(Debug, Clone)]
pub struct LogglyConfig {
    pub token: crate::secret::Secret,
    pub tags: Option<String>,
    /// Base of the bulk endpoint; `{token}` and the tags are appended.
    pub url: Option<String>,
}

/// Keeps the Loggly sender alive; [`LogGuard::finish`] flushes it.
pub struct LogGuard {
    loggly: Option<(
        mpsc::Sender<String>,
        tokio::task::JoinHandle<()>,
        Arc<AtomicU64>,
    )>,
}

impl LogGuard {
    /// Gives the Loggly task up to two seconds to send what it holds.
    pub async fn finish(self) {
        if let Some((tx, task, dropped)) = self.loggly {
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            let n = dropped.load(Ordering::Relaxed);
            if n > 0 {
                eprintln!("warning: {n} log events were not sent to Loggly (queue full)");
            }
        }
    }
}

/// Turns the original's `LOG_LEVEL` values (INFO, DEBUG, WARNING...) or filter directives into
/// a filter: third-party crates stay at `warn` unless a directive says otherwise.
pub fn filter(level: &str) -> Result<EnvFilter, ConfigError> {
    let l = level.trim().to_ascii_lowercase();
    let l = match l.as_str() {
        "warning" => "warn".to_string(),
        "critical" | "fatal" => "error".to_string(),
        _ => l,
    };
    let directive = if matches!(
        l.as_str(),
        "error" | "warn" | "info" | "debug" | "trace" | "off"
    ) {
        format!("warn,harvester={l}")
    } else if l.is_empty() || !l.contains(['=', ',', ':', '[']) {
        // A lone word that is no level (`loud`, `verbose`) would be read as a module name and
        // silently turn every log line off; an empty value likewise.
        return Err(ConfigError::new(format!(
            "LOG_LEVEL='{level}' is not a level: use error, warn (warning), info, debug, trace \
             or off, or a filter such as warn,harvester=debug"
        )));
    } else {
        l
    };
    EnvFilter::try_new(&directive).map_err(|e| {
        ConfigError::caused(format!("LOG_LEVEL='{level}' is not a level or filter"), e)
    })
}

/// The level the logs are filtered at. `--quiet` means warnings and errors only, unless
/// `--log-level` is given on the same command line (the flag says exactly what is wanted); a
/// `LOG_LEVEL` from the environment or `.env` (a deployment's setting) gives way to `--quiet`,
/// except one that is quieter still (`error`, `off`).
pub fn effective_level(level: &str, quiet: bool, level_from_command_line: bool) -> String {
    if !quiet || level_from_command_line {
        return level.to_string();
    }
    match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "critical" | "fatal" | "off") => l.to_string(),
        _ => "warn".to_string(),
    }
}

/// stderr, written one whole log line at a time through [`crate::progress::suspend`]: a
/// progress bar on screen is wiped for the line and drawn again under it, never torn.
#[derive(Clone, Copy, Default)]
pub struct LineWriter;

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer hands each event over in one `write_all`, so `buf` is a whole line.
        crate::progress::suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

/// The text format's fields, every one escaped ([`crate::escape`]): a media package id, an
/// error body or a file name from outside, in any field, can neither forge a log line nor
/// drive the terminal. (tracing-subscriber escapes the message only; the JSON format is safe
/// by JSON's own escaping.)
pub fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let v = format!("{value:?}");
        let v = crate::escape::text(&v);
        if field.name() == "message" {
            write!(w, "{v}")
        } else {
            write!(w, "{}={v}", field.name())
        }
    })
    .delimited(" ")
}

/// Installs the global subscriber (call once, inside the runtime when Loggly is on).
pub fn init(
    level: &str,
    format: LogFormat,
    loggly: Option<LogglyConfig>,
) -> Result<LogGuard, ConfigError> {
    let filter = filter(level)?;
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(LineWriter)
            .with_current_span(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(escaped_fields())
            .with_writer(LineWriter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
    };
    let (loggly_layer, guard) = match loggly {
        Some(cfg) => {
            let (layer, tx, task, dropped) = LogglyLayer::start(cfg);
            (
                Some(layer),
                LogGuard {
                    loggly: Some((tx, task, dropped)),
                },
            )
        }
        None => (None, LogGuard { loggly: None }),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(loggly_layer)
        .try_init();
    Ok(guard)
}

/// A tracing layer that queues events for Loggly's HTTP bulk endpoint.
struct LogglyLayer {
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl LogglyLayer {
    fn start(
        cfg: LogglyConfig,
    ) -> (
        LogglyLayer,
        mpsc::Sender<String>,
        tokio::task::JoinHandle<()>,
        Arc<AtomicU64>,
    ) {
        let (tx, rx) = mpsc::channel::<String>(10_000);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(post_batches(rx, bulk_url(&cfg)));
        (
            LogglyLayer {
                tx: tx.clone(),
                dropped: dropped.clone(),
            },
            tx,
            task,
            dropped,
        )
    }
}

/// Loggly's bulk endpoint for `cfg`: its token and the tags in the path.
fn bulk_url(cfg: &LogglyConfig) -> String {
    let base = cfg.url.as_deref().unwrap_or("https://logs-01.loggly.com");
    let mut url = format!(
        "{}/bulk/{}/tag/harvester",
        base.trim_end_matches('/'),
        cfg.token.expose()
    );
    if let Some(tags) = cfg.tags.as_deref().filter(|t| !t.trim().is_empty()) {
        url.push(',');
        url.push_str(&tags.split(',').map(str::trim).collect::<Vec<_>>().join(","));
    }
    url.push('/');
    url
}

/// Posts the queued lines to `url` in batches of up to 500 (or what is queued after a quiet
/// second), until the queue closes.
async fn post_batches(mut rx: mpsc::Receiver<String>, url: String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut buf: Vec<String> = Vec::new();
    loop {
        let more = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        let closed = matches!(more, Ok(None));
        let idle = more.is_err();
        if let Ok(Some(line)) = more {
            buf.push(line);
            while buf.len() < 500 {
                match rx.try_recv() {
                    Ok(l) => buf.push(l),
                    Err(_) => break,
                }
            }
        }
        if !buf.is_empty() && (buf.len() >= 500 || closed || idle) {
            let body = buf.join("\n");
            buf.clear();
            // Best effort: a Loggly failure must never disturb the harvest.
            let _ = http
                .post(&url)
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await;
        }
        if closed {
            break;
        }
    }
}

struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            serde_json::Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(
            field.name().to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S: Subscriber> Layer<S> for LogglyLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = JsonVisitor(serde_json::Map::new());
        event.record(&mut v);
        v.0.insert("level".into(), event.metadata().level().to_string().into());
        v.0.insert(
            "timestamp".into(),
            crate::timefmt::format_rfc3339(crate::timefmt::now_us()).into(),
        );
        v.0.insert("app".into(), "harvester".into());
        let line = serde_json::Value::Object(v.0).to_string();
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the target of every event that passes the filter.
    struct Targets(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Targets {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let target = event.metadata().target().to_string();
            self.0.lock().unwrap().push(target);
        }
    }

    /// A word that is no level used to be taken for a module name: every log line was off
    /// and the command went on (`LOG_LEVEL=loud`, `LOG_LEVEL=`). Now a settings error.
    #[test]
    fn a_word_that_is_no_level_is_refused() {
        for bad in ["loud", "verbose", "", "  "] {
            let e = filter(bad).expect_err(bad).to_string();
            assert!(
                e.contains("LOG_LEVEL") && e.contains("is not a level"),
                "{e}"
            );
        }
        for good in [
            "INFO",
            "warning",
            "Critical",
            "off",
            "warn,harvester=debug",
            "harvester::harvest=trace",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn quiet_means_warnings_unless_the_level_is_given_on_the_command_line() {
        // The default (info) and a deployment's LOG_LEVEL give way to --quiet...
        assert_eq!(effective_level("info", true, false), "warn");
        assert_eq!(effective_level("DEBUG", true, false), "warn");
        assert_eq!(effective_level("harvester=trace", true, false), "warn");
        // ...unless quieter still,
        assert_eq!(effective_level("ERROR", true, false), "error");
        assert_eq!(effective_level("off", true, false), "off");
        // and --log-level on the command line says exactly what is wanted.
        assert_eq!(effective_level("debug", true, true), "debug");
        assert_eq!(effective_level("info", false, false), "info");
        assert_eq!(effective_level("DEBUG", false, false), "DEBUG");
    }

    /// A writer into a shared buffer, for reading back what the text format wrote.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// Issue 19 point 12: a media package id with a line break and terminal escapes, logged
    /// in a field (and shown through `%`), forged a log line and set the terminal's title;
    /// only the message field was escaped.
    #[test]
    fn every_field_of_a_text_log_line_is_escaped() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(escaped_fields())
                .with_writer(buf.clone())
                .with_ansi(false),
        );
        let hostile = "mp1\n2026-01-01T00:00:00Z ERROR forged\r\u{1b}]0;owned\u{7}\u{1b}[2K";
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(mpid = %hostile, other = hostile, "episode {hostile} unknown");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{7}'),
            "{out:?}"
        );
        assert!(out.contains("mpid=mp1\\n2026"), "{out}");
    }

    #[test]
    fn trace_level_leaves_third_party_crates_at_warn() {
        // The AWS SDK traces signed requests and hyper/reqwest trace headers: LOG_LEVEL=trace
        // must not turn them on (the original's DEBUG neither).
        for level in ["trace", "TRACE", "debug", "DEBUG"] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sub = tracing_subscriber::registry()
                .with(filter(level).unwrap())
                .with(Targets(seen.clone()));
            tracing::subscriber::with_default(sub, || {
                tracing::trace!(target: "aws_sigv4::http_request::sign", "canonical request");
                tracing::trace!(target: "aws_smithy_runtime::client::http", "headers");
                tracing::trace!(target: "hyper_util::client::legacy", "headers");
                tracing::debug!(target: "reqwest::connect", "headers");
                tracing::debug!(target: "elasticsearch::http::transport", "request");
                tracing::warn!(target: "hyper::proto", "a warning shows");
                tracing::debug!(target: "harvester::harvest", "ours shows");
            });
            assert_eq!(
                *seen.lock().unwrap(),
                ["hyper::proto", "harvester::harvest"],
                "LOG_LEVEL={level}"
            );
        }
    }
}
