//! `harvester journal dump --format csv` (issue 13, §5): the CSV a CSV reader parses back holds
//! exactly the records `journal dump` prints as JSON, hostile text included, under the same
//! filters; what has no flat shape is refused.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use common::*;
use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, EpisodeBlock, Record};
use harvester::sim::SimConfig;

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn journal_cmd(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = harvester(dir);
    c.arg("journal").args(args);
    c
}

/// Text a viewer or an episode's author can put in front of us.
const HOSTILE: &[&str] = &[
    "Lecture 1, part \"A\"; with commas, quotes",
    "two\nlines\r\nand a CR\r alone",
    "ünïcödé — 講義 🎓 \u{2028} \u{feff}bom",
    "=HYPERLINK(\"http://evil\",\"x\"),+1,-1,@SUM(A1)",
    "\"",
    ",",
    "trailing space ",
    "\ttab\t",
    "",
];

/// Records with hostile titles, descriptions and user agents, no episode, a long proxy chain.
fn hostile_records(first_id: i64) -> Vec<Record> {
    HOSTILE
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = first_id + i as i64;
            Record {
                action_id: id,
                created_us: t0() + 1_800_000_000 + i as i64 * 1_000_123,
                mpid: format!("mp,{i}\"x\""),
                session_id: format!("s\n{i}"),
                huid: (i % 2 == 0).then(|| s.to_string()),
                useragent: (i % 3 != 0).then(|| format!("Mozilla/5.0 ({s})")),
                action: ActionBlock {
                    kind: Some(if i % 2 == 0 { "PLAY" } else { "HEARTBEAT" }.into()),
                    inpoint: Some(i as i64 * 10),
                    outpoint: (i % 4 != 0).then_some(i as i64 * 10 + 30),
                    length: Some(-1),
                    is_playing: i % 2 == 0,
                },
                ip_chain: match i % 3 {
                    0 => None,
                    1 => Some("10.0.0.1, 1.2.3.4, 5.6.7.8, 9.9.9.9, 8.8.8.8, 7.7.7.7".into()),
                    _ => Some(format!("{s}, 1.1.1.1")),
                },
                is_live: i % 5 == 0,
                episode: (i % 4 != 3).then(|| {
                    Arc::new(EpisodeBlock {
                        title: Some(s.to_string()),
                        duration: (i % 2 == 1).then_some(3_600_000),
                        start: Some("2016-02-15T10:37:26Z".into()),
                        series: (i % 3 != 2).then(|| (format!("course {s}"), "2016".into())),
                        kind: Some(s.to_string()),
                        description: (i % 2 == 0).then(|| s.repeat(3)),
                    })
                }),
            }
        })
        .collect()
}

/// A journal harvested from the simulator (real episodes, series, proxies), plus a page of
/// hostile records.
async fn build(dir: &std::path::Path) {
    let sim = start_sim(SimConfig::new(data(2000, 3600))).await;
    let mut c = harvester_for(dir, &sim);
    harvest_window(&mut c, 3_600_000_000, "none");
    c.args(["-b", "300"]);
    assert_ok(&run_async(c).await);
    let records = hostile_records(9_000_000_000);
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.commit_page(PageCommit {
        ids: records.iter().map(|r| r.action_id).collect(),
        block: Some(codec::encode_block(&records)),
        ..PageCommit::default()
    })
    .unwrap();
}

/// `journal dump ARGS` as JSON records and as CSV bytes.
async fn both(dir: &std::path::Path, args: &[&str]) -> (Vec<serde_json::Value>, Vec<u8>) {
    let json = run_async(journal_cmd(dir, &[&["dump"], args].concat())).await;
    assert_ok(&json);
    let csv = run_async(journal_cmd(
        dir,
        &[&["dump", "--format", "csv"], args].concat(),
    ))
    .await;
    assert_ok(&csv);
    (stdout_records(&json), csv.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_rows_are_the_json_records_hostile_text_included() {
    let dir = scratch();
    build(dir.path()).await;
    let (json, csv) = both(dir.path(), &[]).await;
    assert_eq!(json.len(), 2000 + HOSTILE.len());
    let header = assert_csv_equals_json(&csv, &json);
    assert_eq!(header, harvester::record_csv::COLUMNS);
    // The hostile strings came back whole (and the test data did hold them).
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(text.contains("\"Lecture 1, part \"\"A\"\"; with commas, quotes\""));
    assert!(json
        .iter()
        .any(|r| r["episode"]["title"] == "two\nlines\r\nand a CR\r alone"));
    assert!(json.iter().any(|r| r["proxy5"] == "7.7.7.7"));
    // Rows end in \n; every line break inside a value is inside quotes, so a CSV reader sees
    // one row per record (checked above) even though the file has more lines.
    assert!(text.lines().count() > json.len() + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dump_filters_select_the_same_rows() {
    let dir = scratch();
    build(dir.path()).await;
    let from = compact(t0() + 600_000_000);
    let to = compact(t0() + 1_800_000_000);
    for args in [
        vec!["--type", "PLAY"],
        vec!["--seq", "100..1999"],
        vec!["--limit", "7"],
        vec!["--from", &from, "--to", &to],
        vec!["--mpid", "mp,4\"x\""],
        vec!["--type", "HEARTBEAT", "--seq", "1990..", "--limit", "6"],
    ] {
        let (json, csv) = both(dir.path(), &args).await;
        assert!(!json.is_empty(), "{args:?} selects something");
        assert_csv_equals_json(&csv, &json);
    }
    // Nothing selected: the header alone.
    let (json, csv) = both(dir.path(), &["--type", "NO-SUCH-TYPE"]).await;
    assert!(json.is_empty());
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        format!("{}\n", harvester::record_csv::COLUMNS.join(","))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_refuses_what_has_no_flat_shape_with_exit_2() {
    let dir = scratch();
    build(dir.path()).await;
    for other in ["--dead-letters", "--episodes", "--episode-docs", "--enrich"] {
        let out = run_async(journal_cmd(dir.path(), &["dump", "--format", "csv", other])).await;
        assert_eq!(out.status.code(), Some(2), "{other}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--format csv writes the records only")
                && err.contains(other)
                && err.contains("leave out --format csv"),
            "{other}: {err}"
        );
        assert!(out.stdout.is_empty(), "{other}: nothing on stdout");
    }
    let out = run_async(journal_cmd(dir.path(), &["dump", "--format", "xml"])).await;
    assert_eq!(out.status.code(), Some(2));
}
