//! Progress of long work (a backfill harvest, a replay, a prune): a bar with rate and ETA on a
//! terminal, a log line every few seconds otherwise (cron, systemd, CI).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a non-terminal progress line is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A progress report for one piece of long work, shared by reference.
pub struct Progress {
    what: String,
    unit: &'static str,
    bar: Option<ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// `total` may be unknown (0) and set later.
    pub fn new(what: &str, unit: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(what.to_string());
            b
        });
        Progress {
            what: what.to_string(),
            unit,
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
        }
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        let mut last = self.last_log.lock().expect("progress lock");
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-9);
            let total = self.total.load(Ordering::Relaxed);
            let eta = if total > done && rate > 0.0 {
                format!("{:.0} s", (total - done) as f64 / rate)
            } else {
                "-".into()
            };
            tracing::info!(
                "{}: {done}/{} {}, {rate:.0}/s, ETA {eta}",
                self.what,
                if total > 0 {
                    total.to_string()
                } else {
                    "?".into()
                },
                self.unit
            );
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// An activity of unknown length (a compaction): a spinner on a terminal, a log line at the start
/// and the end otherwise.
pub struct Spinner {
    bar: Option<ProgressBar>,
    what: String,
    started: Instant,
}

impl Spinner {
    pub fn start(what: &str) -> Spinner {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if bar.is_none() {
            tracing::info!("{what}...");
        }
        Spinner {
            bar,
            what: what.to_string(),
            started: Instant::now(),
        }
    }

    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        tracing::info!(
            "{} done in {:.1} s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}
