//! Progress of long work (a backfill harvest, a replay, a prune): a bar with rate and ETA on a
//! terminal, a log line every few seconds otherwise (cron, systemd, CI), nothing with `--quiet`.
//!
//! Log lines and bars share stderr. Every bar on screen is registered here, and the log writer
//! ([`crate::logging`]) writes each line through [`suspend`]: the bars are wiped, the line is
//! written whole from the start of a line, and the bars are drawn again under it. A line is never
//! glued to a bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a non-terminal progress line is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// `--quiet`: no bars, no spinners, no progress lines.
static QUIET: AtomicBool = AtomicBool::new(false);

/// The bars on screen. Held while a log line is written, so no bar appears or draws half-way
/// through one.
static BARS: Mutex<Vec<(u64, ProgressBar)>> = Mutex::new(Vec::new());

/// Names each registered bar (indicatif's bars have no identity to compare).
static NEXT_BAR: AtomicU64 = AtomicU64::new(0);

/// A bar on screen, registered in [`BARS`].
struct Shown {
    id: u64,
    bar: ProgressBar,
}

/// `--quiet`: from now on no bar, spinner or progress line is shown.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Runs `f` (a write to stderr) with every bar wiped from the screen, then draws them again.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bars = BARS.lock().unwrap_or_else(|p| p.into_inner());
    nest(&bars, f)
}

fn nest<R>(bars: &[(u64, ProgressBar)], f: impl FnOnce() -> R) -> R {
    match bars.split_first() {
        None => f(),
        Some(((_, b), rest)) => b.suspend(|| nest(rest, f)),
    }
}

/// A bar on stderr when it is a terminal and not `--quiet`, registered for [`suspend`];
/// `style` is applied before it is first drawn.
fn show(bar: ProgressBar) -> Option<Shown> {
    if quiet() || !std::io::stderr().is_terminal() {
        return None;
    }
    let id = NEXT_BAR.fetch_add(1, Ordering::Relaxed);
    let mut bars = BARS.lock().unwrap_or_else(|p| p.into_inner());
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bars.push((id, bar.clone()));
    Some(Shown { id, bar })
}

/// Wipes the bar and forgets it.
fn hide(shown: &Shown) {
    let mut bars = BARS.lock().unwrap_or_else(|p| p.into_inner());
    shown.bar.finish_and_clear();
    bars.retain(|(id, _)| *id != shown.id);
}

/// The bar's template: counts and rate in whole numbers with thousands separators
/// (`12,345/60,000 actions 9,802/s`); indicatif's own `{per_sec}` shows `9,801.9765/s`.
fn bar_style(unit: &'static str) -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} {unit} {rate} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "unit",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(unit);
            },
        )
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", HumanCount(whole_rate(s.per_sec())));
        })
        .progress_chars("=> ")
}

/// A rate as a whole number (rounded; 0 for anything not finite and positive).
fn whole_rate(per_sec: f64) -> u64 {
    if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
    }
}

/// A progress report for one piece of long work, shared by reference.
pub struct Progress {
    what: String,
    unit: &'static str,
    bar: Option<Shown>,
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// `total` may be unknown (0) and set later.
    pub fn new(what: &str, unit: &'static str, total: u64) -> Progress {
        let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        b.set_style(bar_style(unit));
        b.set_message(what.to_string());
        let bar = show(b);
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
            b.bar.set_length(total);
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.bar.set_position(done);
            return;
        }
        if quiet() {
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
            hide(b);
        }
    }
}

/// A bar left behind by an error is wiped before the error is printed.
impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// An activity of unknown length (a compaction): a spinner on a terminal, a log line at the start
/// and the end otherwise.
pub struct Spinner {
    bar: Option<Shown>,
    what: String,
    started: Instant,
}

impl Spinner {
    pub fn start(what: &str) -> Spinner {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        b.set_style(ProgressStyle::default_spinner());
        b.set_message(what.to_string());
        let bar = show(b);
        match &bar {
            Some(b) => b.bar.enable_steady_tick(Duration::from_millis(120)),
            None if !quiet() => tracing::info!("{what}..."),
            None => {}
        }
        Spinner {
            bar,
            what: what.to_string(),
            started: Instant::now(),
        }
    }

    pub fn finish(self) {
        if let Some(b) = &self.bar {
            hide(b);
        }
        tracing::info!(
            "{} done in {:.1} s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            hide(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(whole_rate(9801.9765), 9_802);
        assert_eq!(whole_rate(0.4), 0);
        assert_eq!(whole_rate(f64::NAN), 0);
        assert_eq!(whole_rate(f64::INFINITY), 0);
        assert_eq!(whole_rate(-3.0), 0);
        let mut s = String::new();
        use std::fmt::Write;
        write!(s, "{}/s", HumanCount(whole_rate(9801.9765))).unwrap();
        assert_eq!(s, "9,802/s");
    }

    #[test]
    fn suspend_runs_its_closure_with_no_bar_and_when_quiet() {
        assert_eq!(suspend(|| 7), 7);
        set_quiet(true);
        assert!(show(ProgressBar::hidden()).is_none());
        set_quiet(false);
    }
}
