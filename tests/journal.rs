//! `harvester journal …` against journals built by harvesting the simulator.

mod common;

use std::process::{Command, Output};

use common::*;
use harvester::sim::SimConfig;

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

/// Harvests `n` actions over an hour into a journal in `dir` (forwarded to stdout or not).
async fn build_journal(dir: &std::path::Path, n: u64, forward: bool) -> harvester::sim::SimHandle {
    let mut d = data(n, 3600);
    d.malformed_every = 97;
    let sim = start_sim(SimConfig::new(d)).await;
    let mut c = harvester_for(dir, &sim);
    harvest_window(&mut c, 3_600_000_000, if forward { "-" } else { "none" });
    c.args(["-b", "300"]);
    assert_ok(&run_async(c).await);
    sim
}

fn journal_cmd(dir: &std::path::Path, args: &[&str]) -> Command {
    // No Opencast settings and no .env: the journal commands work offline.
    let mut c = harvester(dir);
    c.arg("journal").args(args);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_filters_select_exactly() {
    let dir = scratch();
    let sim = build_journal(dir.path(), 3000, false).await;
    let all = journal_records(dir.path());
    // "What did we harvest between 12:10 and 12:19:59?"
    let (from, to) = (t0() + 600_000_000, t0() + 1_199_000_000);
    let out = run_async(journal_cmd(
        dir.path(),
        &["dump", "--from", &compact(from), "--to", &compact(to)],
    ))
    .await;
    assert_ok(&out);
    let got: Vec<i64> = stdout_records(&out)
        .iter()
        .map(|r| r["action_id"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = all
        .iter()
        .filter(|r| r.created_us >= from && r.created_us < to + 1_000_000)
        .map(|r| r.action_id)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // RFC 3339 works too, and records are byte-for-byte what the forwarder sends.
    let out = run_async(journal_cmd(
        dir.path(),
        &[
            "dump",
            "--from",
            "2016-03-01T12:10:00Z",
            "--to",
            "2016-03-01T12:19:59Z",
        ],
    ))
    .await;
    assert_eq!(stdout_records(&out).len(), want.len());
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        first,
        all.iter()
            .find(|r| r.action_id == want[0])
            .unwrap()
            .to_json()
    );
    // --seq, --mpid, --type, --limit.
    let out = run_async(journal_cmd(dir.path(), &["dump", "--seq", "100..199"])).await;
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 100);
    assert_eq!(recs[0]["action_id"].as_i64(), Some(all[100].action_id));
    let mpid = sim.data.action(0).mpid;
    let out = run_async(journal_cmd(
        dir.path(),
        &["dump", "--mpid", &mpid, "--type", "play"],
    ))
    .await;
    let recs = stdout_records(&out);
    let want = all
        .iter()
        .filter(|r| r.mpid == mpid && r.action.kind.as_deref() == Some("PLAY"))
        .count();
    assert_eq!(recs.len(), want);
    assert!(recs
        .iter()
        .all(|r| r["mpid"] == mpid.as_str() && r["action"]["type"] == "PLAY"));
    let out = run_async(journal_cmd(dir.path(), &["dump", "--limit", "7"])).await;
    assert_eq!(stdout_records(&out).len(), 7);
    // Episodes and dead letters.
    let out = run_async(journal_cmd(dir.path(), &["dump", "--episodes"])).await;
    let eps = stdout_records(&out);
    assert!(eps
        .iter()
        .any(|e| e["known"] == false && e["episode"].is_null()));
    assert!(eps.iter().any(|e| e["episode"]["title"] == "Lecture 11"));
    let out = run_async(journal_cmd(dir.path(), &["dump", "--dead-letters"])).await;
    let dead = stdout_records(&out);
    assert_eq!(dead.len(), 30);
    assert!(dead
        .iter()
        .all(|d| d["raw"].as_str().unwrap().starts_with('{')
            && !d["reason"].as_str().unwrap().is_empty()));
    // Bad input: a clear error and exit 2.
    let out = run_async(journal_cmd(dir.path(), &["dump", "--seq", "9..1"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--seq"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_tell_counts_sizes_and_lag() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 2000, true).await;
    let out = run_async(journal_cmd(dir.path(), &["stats", "--json"])).await;
    assert_ok(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["actions"], 2000 - 20);
    assert_eq!(s["format_version"], 2);
    assert_eq!(s["dead_letters"], 20);
    assert_eq!(s["oldest_action"], "2016-03-01T12:00:00Z");
    // zstd's own ratio, over the block payloads (already free of repeated strings).
    assert!(s["compression_ratio"].as_f64().unwrap() > 2.0, "{s}");
    assert_eq!(s["cursors"][0]["sink"], "stdout");
    assert_eq!(s["cursors"][0]["lag"], 0);
    let out = run_async(journal_cmd(dir.path(), &["stats"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("actions          1980") && text.contains("sink stdout"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_block_fails_verify_and_dump_goes_on() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 1500, false).await;
    let out = run_async(journal_cmd(dir.path(), &["verify"])).await;
    assert_ok(&out);
    // Flip bytes inside the second block's compressed payload.
    let bad_key = {
        let db = redb::Database::create(journal_path(dir.path())).unwrap();
        let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");
        let tx = db.begin_write().unwrap();
        let bad_key = {
            let mut t = tx.open_table(def).unwrap();
            use redb::ReadableTable;
            let (key, mut bytes) = {
                let mut it = t.iter().unwrap();
                it.next();
                let (k, v) = it.next().unwrap().unwrap();
                (k.value(), v.value().to_vec())
            };
            let n = bytes.len();
            for b in &mut bytes[n - 40..n - 20] {
                *b ^= 0x5a;
            }
            t.insert(key, bytes.as_slice()).unwrap();
            key
        };
        tx.commit().unwrap();
        bad_key
    };
    let out = run_async(journal_cmd(dir.path(), &["verify"])).await;
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("block at sequence {bad_key} cannot be read")),
        "{report}"
    );
    let out = run_async(journal_cmd(dir.path(), &["dump"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("the block at sequence {bad_key} cannot be read")),
        "{}",
        stderr(&out)
    );
    // The other blocks still come out.
    assert_eq!(
        stdout_records(&out).len(),
        journal_records_len_without(dir.path(), bad_key)
    );
}

fn journal_records_len_without(dir: &std::path::Path, bad_first: u64) -> usize {
    let j = harvester::journal::Journal::open(&journal_path(dir)).unwrap();
    let mut n = 0;
    j.scan(
        0,
        |_, _| true,
        |first, b| {
            if first != bad_first {
                n += b.unwrap().len();
            }
            true
        },
    )
    .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_unforwarded_records_and_the_dedupe_memory() {
    let dir = scratch();
    let sim = build_journal(dir.path(), 1200, false).await;
    // Nothing forwarded yet: prune refuses (exit 1, says why) and removes nothing.
    let out = run_async(journal_cmd(dir.path(), &["prune", "--older-than", "30d"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--force") && stderr(&out).contains("no sink has forwarded"),
        "{}",
        stderr(&out)
    );
    assert_eq!(journal_records(dir.path()).len(), 1200 - 12);
    // Forward, then prune: everything (from 2016) goes.
    let mut c = harvester(dir.path());
    c.args(["forward", "-o", "-"]);
    assert_ok(&run_async(c).await);
    let out = run_async(journal_cmd(dir.path(), &["prune", "--older-than", "30d"])).await;
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pruned 1188 records"));
    assert_eq!(journal_records(dir.path()).len(), 0);
    // An overlapping harvest does not bring pruned actions back.
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 3_600_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    assert!(stdout_records(&out).is_empty());
    assert!(stderr(&out).contains("actions=0"), "{}", stderr(&out));
    let out = run_async(journal_cmd(dir.path(), &["verify"])).await;
    assert_ok(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_from_a_newer_version_is_refused() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 50, false).await;
    {
        let db = redb::Database::create(journal_path(dir.path())).unwrap();
        let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let tx = db.begin_write().unwrap();
        tx.open_table(def)
            .unwrap()
            .insert("format_version", [9u8].as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let out = run_async(journal_cmd(dir.path(), &["stats"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("newer harvester (format 9"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_to_stdout_is_resumable_and_leaves_regular_cursors() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 900, true).await;
    let j = || harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
    let before = j().cursor("stdout").unwrap();
    let out = run_async(journal_cmd(
        dir.path(),
        &["replay", "--seq", "100..399", "-o", "-", "--name", "r1"],
    ))
    .await;
    assert_ok(&out);
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 300);
    assert_eq!(
        j().cursor("stdout").unwrap(),
        before,
        "regular cursor untouched"
    );
    // Run again: already done. --restart: again from the start.
    let out = run_async(journal_cmd(
        dir.path(),
        &["replay", "--seq", "100..399", "-o", "-", "--name", "r1"],
    ))
    .await;
    assert!(stdout_records(&out).is_empty());
    let out = run_async(journal_cmd(
        dir.path(),
        &[
            "replay",
            "--seq",
            "100..399",
            "-o",
            "-",
            "--name",
            "r1",
            "--restart",
        ],
    ))
    .await;
    assert_eq!(stdout_records(&out).len(), 300);
    let out = run_async(journal_cmd(dir.path(), &["replay", "-o", "-"])).await;
    assert_eq!(out.status.code(), Some(2), "a replay needs a range");
}
