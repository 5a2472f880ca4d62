//! Crash safety: SIGKILL the harvester mid-harvest, again and again, at different points.
//! After every kill the journal opens, holds each action at most once, and the checkpoint never
//! points past journaled data; a final run completes the window with every action exactly once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use harvester::journal::Journal;
use harvester::sim::{Faults, SimConfig};

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_harvest_never_loses_or_duplicates() {
    const N: u64 = 20_000;
    let mut cfg = SimConfig::new(data(N, 4 * 3600));
    // Slow pages so the kills land mid-window; a fault now and then for good measure.
    cfg.faults = Faults {
        delay: Duration::from_millis(25),
        fail_every: 29,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let window = [
        "-s".to_string(),
        compact(t0()),
        "-e".into(),
        compact(t0() + 4 * 3_600_000_000),
    ];
    let mut seen_progress = Vec::new();
    // Kill points from early (first pages) to late, in milliseconds after start.
    for (round, kill_ms) in [150u64, 400, 700, 1000, 1300, 90].into_iter().enumerate() {
        let mut c = harvester_for(dir.path(), &sim);
        c.arg("harvest")
            .args(&window)
            .args(["-o", "-", "-b", "250"]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(kill_ms)).await;
        // SIGKILL: no chance to clean up.
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();

        let j = Journal::open(&journal_path(dir.path())).expect("journal opens after a kill");
        let recs = j.read_from(0, usize::MAX).unwrap().1;
        let ids: HashSet<i64> = recs.iter().map(|r| r.action_id).collect();
        assert_eq!(
            ids.len(),
            recs.len(),
            "round {round}: an action is journaled twice"
        );
        assert_eq!(
            j.known_action_ids().unwrap(),
            recs.len() as u64,
            "round {round}: dedupe table and records disagree"
        );
        if let Some(cp) = j.checkpoint().unwrap() {
            let newest = recs
                .iter()
                .map(|r| r.created_us)
                .max()
                .expect("a checkpoint implies records");
            assert!(
                cp.last_action_us <= newest,
                "round {round}: checkpoint past journaled data"
            );
            assert_eq!(
                recs.len() as u64,
                N,
                "round {round}: checkpoint set before the window was complete"
            );
        }
        // The stdout cursor never runs ahead of the journal.
        assert!(j.cursor("stdout").unwrap() <= j.next_seq().unwrap());
        seen_progress.push(recs.len());
    }
    assert!(
        seen_progress.iter().any(|n| *n > 0 && *n < N as usize),
        "some kill landed mid-window: {seen_progress:?}"
    );
    // A clean run finishes the window.
    let mut c = harvester_for(dir.path(), &sim);
    c.arg("harvest")
        .args(&window)
        .args(["-o", "none", "-b", "250"]);
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    assert_ok(&out);
    let recs = journal_records(dir.path());
    let ids: HashSet<i64> = recs.iter().map(|r| r.action_id).collect();
    assert_eq!((recs.len(), ids.len()), (N as usize, N as usize));
    assert_eq!(ids, (1000..1000 + N as i64).collect::<HashSet<_>>());
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let cp = j
        .checkpoint()
        .unwrap()
        .expect("checkpoint after a complete window");
    assert_eq!(
        cp.last_action_us,
        recs.iter().map(|r| r.created_us).max().unwrap()
    );
}
