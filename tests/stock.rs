//! Stock Opencast (Matterhorn 1.4 to Opencast 17): actions asked for by `day`, every day proven
//! complete whatever the row order, the `day` bug's first and last minute, the dialect probe, and
//! the plugin that is off by default from 13.0. Against the simulator playing stock releases.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;

use common::*;
use harvester::sim::{DataConfig, Faults, Release, RowOrder, SimConfig, SimHandle};
use harvester::timefmt;

async fn run_async(c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn utc(s: &str) -> i64 {
    timefmt::parse_compact(s, chrono_tz::Tz::UTC).unwrap()
}

fn stock(family: &str, data: DataConfig) -> SimConfig {
    let mut cfg = SimConfig::new(data);
    cfg.release = Release::parse(family).unwrap();
    cfg
}

/// The ids of the sim's actions created in `[from, to]` (both inclusive, whole seconds).
fn ids_between(sim: &SimHandle, from: i64, to: i64) -> BTreeSet<i64> {
    (0..sim.data.cfg.actions)
        .map(|i| sim.data.action(i))
        .filter(|a| a.created_us >= from && a.created_us <= to)
        .map(|a| a.id)
        .collect()
}

fn journal_ids(dir: &std::path::Path) -> Vec<i64> {
    journal_records(dir).iter().map(|r| r.action_id).collect()
}

fn assert_exactly(got: Vec<i64>, want: &BTreeSet<i64>, what: &str) {
    let set: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(set.len(), got.len(), "{what}: duplicates");
    let missing: Vec<_> = want.difference(&set).take(10).collect();
    let extra: Vec<_> = set.difference(want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} missing (first {missing:?}), {} extra (first {extra:?})",
        want.difference(&set).count(),
        set.difference(want).count()
    );
}

fn harvest(
    dir: &std::path::Path,
    sim: &SimHandle,
    api: &str,
    from: &str,
    to: &str,
) -> std::process::Command {
    let mut c = harvester_for(dir, sim);
    c.env("OPENCAST_API", api)
        .args(["harvest", "-s", from, "-e", to, "-o", "none", "-b", "500"]);
    c
}

/// A day of 2016 holding 30,000 actions; the window is the middle of it (the first and last
/// minute are the day bug's, tested below).
#[tokio::test(flavor = "multi_thread")]
async fn a_day_is_harvested_complete_whatever_the_row_order() {
    for order in [RowOrder::Created, RowOrder::Id, RowOrder::Shuffled] {
        let mut cfg = stock(
            "oc8-11",
            DataConfig::new(3, 30_000, utc("20160301000000"), utc("20160302000000")),
        );
        cfg.order = order;
        let sim = start_sim(cfg).await;
        let dir = scratch();
        let out = run_async(harvest(
            dir.path(),
            &sim,
            "stock",
            "20160301020000",
            "20160301215959",
        ))
        .await;
        assert_ok(&out);
        let want = ids_between(&sim, utc("20160301020000"), utc("20160301215959"));
        assert!(want.len() > 20_000);
        assert_exactly(journal_ids(dir.path()), &want, &format!("{order:?}"));
        let err = stderr(&out);
        assert!(
            err.contains("api=\"stock\"") || err.contains("api=stock"),
            "{err}"
        );
        // The checkpoint is the window's newest action.
        let j = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
        let newest = (0..sim.data.cfg.actions)
            .map(|i| sim.data.action(i).created_us)
            .filter(|t| *t <= utc("20160301215959"))
            .max()
            .unwrap();
        assert_eq!(
            j.checkpoint().unwrap().unwrap().last_action_us,
            newest,
            "{order:?}"
        );
        // No query ever asked for start/end, which no stock release reads.
        assert!(sim.stats.actions_requests.load(Ordering::Relaxed) > 0);
    }
}

/// Today's actions arrive while the harvester runs: a second cron run over the last minutes
/// costs a handful of requests (rows in `created` order), not a re-read of the day.
#[tokio::test(flavor = "multi_thread")]
async fn a_steady_state_run_costs_a_handful_of_requests() {
    let now = timefmt::floor_second(timefmt::now_us());
    let day_start = now - now.rem_euclid(86_400_000_000);
    // Within 20 minutes after or 5 before midnight the windows touch the day bug's first or last
    // minute, read again with requests of their own (tested on their own below).
    let near_midnight =
        now - day_start < 20 * 60_000_000 || day_start + 86_400_000_000 - now < 5 * 60_000_000;
    let budget = if near_midnight { 12 } else { 5 };
    let end = now - 60_000_000;
    let start = end - 4 * 3_600_000_000;
    let mut cfg = stock(
        "oc12",
        DataConfig::new(5, 4 * 3_600 * 3, start, end + 3_600_000_000),
    );
    cfg.order = RowOrder::Created;
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let first_from = timefmt::format_compact(end - 30 * 60_000_000, chrono_tz::Tz::UTC);
    let first_to = timefmt::format_compact(end - 2 * 60_000_000, chrono_tz::Tz::UTC);
    let out = run_async(harvest(dir.path(), &sim, "stock", &first_from, &first_to)).await;
    assert_ok(&out);
    let before = sim.stats.actions_requests.load(Ordering::Relaxed);
    // The next run: from the checkpoint (minus the overlap) to now, as cron would.
    let mut c = harvester_for(dir.path(), &sim);
    c.env("OPENCAST_API", "stock")
        .args(["harvest", "-o", "none", "-b", "500"]);
    let out = run_async(c).await;
    assert_ok(&out);
    let requests = sim.stats.actions_requests.load(Ordering::Relaxed) - before;
    assert!(
        requests <= budget,
        "a steady-state run cost {requests} requests:\n{}",
        stderr(&out)
    );
    let want = ids_between(
        &sim,
        utc(&first_from),
        timefmt::floor_second(timefmt::now_us()) - 2_000_000,
    );
    let got: HashSet<i64> = journal_ids(dir.path()).into_iter().collect();
    let missing: Vec<_> = want.iter().filter(|i| !got.contains(i)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
}

/// The `day` bug: a query answered at clock second SS covers [00:00:SS, 23:59:SS]. The last
/// minute of a day and the first of the next are read with queries timed at seconds 59 and 0;
/// what is created at exactly 00:00:00 (whole seconds, as MySQL keeps them) no `day` query
/// reaches, and the harvest says so.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_and_last_minute_of_a_day_are_read_and_the_unreachable_instant_is_named() {
    // One action a second from 23:58:00 to 00:02:00.
    let sim = start_sim(stock(
        "oc13-15",
        DataConfig::new(9, 240, utc("20160301235800"), utc("20160302000200")),
    ))
    .await;
    let dir = scratch();
    let t = std::time::Instant::now();
    let out = run_async(harvest(
        dir.path(),
        &sim,
        "stock",
        "20160301235800",
        "20160302000159",
    ))
    .await;
    assert_ok(&out);
    let mut want = ids_between(&sim, utc("20160301235800"), utc("20160302000159"));
    let midnight: Vec<i64> = ids_between(&sim, utc("20160302000000"), utc("20160302000000"))
        .into_iter()
        .collect();
    assert_eq!(midnight.len(), 1, "the data has one action at 00:00:00");
    want.remove(&midnight[0]);
    assert_exactly(journal_ids(dir.path()), &want, "around midnight");
    let err = stderr(&out);
    assert!(err.contains("exactly 00:00:00"), "{err}");
    assert!(err.contains("unreachable_windows=1"), "{err}");
    // Two waits for the server's clock at most: a little over a minute.
    assert!(t.elapsed().as_secs() < 90, "{:?}", t.elapsed());
}

/// A count that never matches the rows (here: the server adds 3 to every total) must not let
/// the checkpoint pass the day: exit 1 naming the day, every action read kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_that_does_not_add_up_keeps_the_checkpoint_before_it() {
    let mut cfg = stock(
        "oc16-17",
        DataConfig::new(4, 2_000, utc("20160301000000"), utc("20160302000000")),
    );
    cfg.faults = Faults {
        total_extra: 3,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let out = run_async(harvest(
        dir.path(),
        &sim,
        "stock",
        "20160301020000",
        "20160301215959",
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("20160301") && err.contains("proven complete"),
        "{err}"
    );
    let j = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
    assert!(j.checkpoint().unwrap().is_none(), "the checkpoint moved");
    drop(j);
    let want = ids_between(&sim, utc("20160301020000"), utc("20160301215959"));
    assert_exactly(journal_ids(dir.path()), &want, "kept");
}

/// A count lower than the rows a closed day's reads return (rows deleted in Opencast, a glitch,
/// a query answered at another second than intended) is no proof either: it once passed such a
/// day as complete, which let a single bad page lose most of a day. Exit 1 naming the day.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_counted_lower_than_its_rows_is_not_taken_as_proven() {
    let mut cfg = stock(
        "oc16-17",
        DataConfig::new(4, 2_000, utc("20160301000000"), utc("20160302000000")),
    );
    cfg.faults = Faults {
        total_extra: -3,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let out = run_async(harvest(
        dir.path(),
        &sim,
        "stock",
        "20160301020000",
        "20160301215959",
    ))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("20160301") && err.contains("3 more"), "{err}");
    let j = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
    assert!(j.checkpoint().unwrap().is_none(), "the checkpoint moved");
    // Its pages were all read, but `journal stats` must not call the window complete (it once
    // did, after exactly this failure).
    assert!(!j.harvest_position().unwrap().unwrap().complete);
    drop(j);
    let mut c = harvester(dir.path());
    c.args(["journal", "stats"]);
    let st = run(c);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("not complete"), "{text}");
    assert!(!text.contains(", complete"), "{text}");
}

/// A count no real day reaches (here 100 million more than the rows) is refused at once: paging
/// a server that claimed 10^12 with fresh ids on every page once never ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_counted_beyond_any_real_day_is_refused_at_once() {
    let mut cfg = stock(
        "oc16-17",
        DataConfig::new(4, 2_000, utc("20160301000000"), utc("20160302000000")),
    );
    cfg.faults = Faults {
        total_extra: 100_000_000,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let t = std::time::Instant::now();
    let out = run_async(harvest(
        dir.path(),
        &sim,
        "stock",
        "20160301020000",
        "20160301215959",
    ))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("more than any real day holds"), "{err}");
    assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
}

/// A server clock a second off ours (either way): its `Date` headers are read to the tick, so
/// the first and last minute of a day are still asked at the server's seconds 0 and 59, and
/// nothing but the unreachable 00:00:00 is missing (a second behind once lost 00:00:00 to
/// 00:00:41: the query meant for second 0 was answered at 59, and its count agreed).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_clock_a_second_off_still_gives_the_first_and_last_minute() {
    let mut runs = Vec::new();
    for offset in [-1i64, 1] {
        runs.push(tokio::spawn(async move {
            let mut cfg = stock(
                "oc16-17",
                DataConfig::new(9, 240, utc("20160301235800"), utc("20160302000200")),
            );
            cfg.clock_offset_s = offset;
            let sim = start_sim(cfg).await;
            let dir = scratch();
            let out = run_async(harvest(
                dir.path(),
                &sim,
                "stock",
                "20160301235800",
                "20160302000159",
            ))
            .await;
            assert_ok(&out);
            let mut want = ids_between(&sim, utc("20160301235800"), utc("20160302000159"));
            for id in ids_between(&sim, utc("20160302000000"), utc("20160302000000")) {
                want.remove(&id);
            }
            assert_exactly(
                journal_ids(dir.path()),
                &want,
                &format!("clock {offset:+} s"),
            );
        }));
    }
    for r in runs {
        r.await.unwrap();
    }
}

/// `auto` never takes a stock server for a windowed one (not even an empty one), and finds the
/// DCE build windowed.
#[tokio::test(flavor = "multi_thread")]
async fn auto_tells_the_dialects_apart_and_never_guesses_windowed_on_stock() {
    let now = timefmt::floor_second(timefmt::now_us());
    for (family, actions, want) in [
        ("oc8-11", 500, "stock"),
        ("oc8-11", 0, "stock"),
        ("mh1.4-1.6", 500, "stock"),
        ("dce", 500, "windowed"),
    ] {
        let sim = start_sim(stock(
            family,
            DataConfig::new(2, actions, now - 3_600_000_000, now - 60_000_000),
        ))
        .await;
        let dir = scratch();
        let mut c = harvester_for(dir.path(), &sim);
        c.env("OPENCAST_API", "auto")
            .args(["harvest", "-o", "none", "-i", "30"]);
        let out = run_async(c).await;
        let err = stderr(&out);
        assert!(
            err.contains(&format!("api=\"{want}\"")) || err.contains(&format!("api={want}")),
            "{family} with {actions} actions: want {want}\n{err}"
        );
    }
}

/// Opencast 13+ ships usertracking as a plugin that is off: the error names the plugin and the
/// file that turns it on.
#[tokio::test(flavor = "multi_thread")]
async fn usertracking_off_names_the_plugin_and_its_file() {
    let mut cfg = stock(
        "oc13-15",
        DataConfig::new(2, 10, utc("20160301000000"), utc("20160301010000")),
    );
    cfg.usertracking_enabled = false;
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let out = run_async(harvest(
        dir.path(),
        &sim,
        "auto",
        "20160301000000",
        "20160301005959",
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("opencast-plugin-usertracking")
            && err.contains("etc/org.opencastproject.plugin.impl.PluginManagerImpl.cfg"),
        "{err}"
    );
}

/// Every release family, through the default settings (`OPENCAST_API=auto`): `harvest` gives the
/// window's records, each once, and `check` says which dialect it uses.
#[tokio::test(flavor = "multi_thread")]
async fn every_release_family_is_harvested_and_checked() {
    for (family, _) in harvester::sim::FAMILIES {
        let sim = start_sim(stock(
            family,
            DataConfig::new(11, 1_200, utc("20160301100000"), utc("20160301140000")),
        ))
        .await;
        let dir = scratch();
        let mut c = harvester_for(dir.path(), &sim);
        c.env("OPENCAST_API", "auto").args([
            "harvest",
            "-s",
            "20160301110000",
            "-e",
            "20160301125959",
            "-o",
            "-",
        ]);
        let out = run_async(c).await;
        assert_ok(&out);
        let records = stdout_records(&out);
        let want = ids_between(&sim, utc("20160301110000"), utc("20160301125959"));
        let got: Vec<i64> = records
            .iter()
            .map(|r| r["action_id"].as_i64().unwrap())
            .collect();
        assert_exactly(got, &want, family);
        let api = if *family == "dce" {
            "windowed"
        } else {
            "stock"
        };
        let mut c = harvester_for(dir.path(), &sim);
        c.env("OPENCAST_API", "auto").args(["check", "-o", "none"]);
        let out = run_async(c).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("opencast api"))
            .unwrap_or_else(|| panic!("{family}: no api line:\n{text}\n{}", stderr(&out)));
        assert!(line.contains(&format!("{api}:")), "{family}: {line}");
    }
}
