//! The S3 checkpoint and the SQS sink against real AWS-protocol endpoints started by `.ci/run`:
//! moto_server for S3 and ElasticMQ for SQS, reached through the real aws-sdk clients.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use harvester::forward::{self, Sink, SqsConfig, SqsSink};
use harvester::journal::Journal;
use harvester::sim::SimConfig;

async fn run_async(c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

async fn s3_text(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let o = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap())
}

fn journal_json(dir: &Path) -> HashMap<i64, String> {
    journal_records(dir)
        .into_iter()
        .map(|r| (r.action_id, r.to_json()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_goes_to_s3_and_a_fresh_journal_starts_from_it() {
    let Some(a) = aws() else { return };
    let (s3, _) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(1200, 1200))).await;
    let bucket = unique("ckpt");
    let dir = scratch();
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("S3_HARVEST_TS_BUCKET", &bucket)
        .env("S3_LAST_ACTION_TS_KEY", "last-action-ts");
    harvest_window(&mut c, 600_000_000, "none");
    let out = run_async(c).await;
    assert_ok(&out);
    // The bucket was created, and holds the last action's second in OPENCAST_TIMEZONE (UTC).
    let text = s3_text(&s3, &bucket, "last-action-ts")
        .await
        .expect("checkpoint object");
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let cp = j.checkpoint().unwrap().unwrap();
    assert_eq!(text, compact(cp.last_action_us));
    assert!(cp.synced_to_s3);
    drop(j);
    // Another host (a fresh journal) starts from the S3 checkpoint.
    let dir2 = scratch();
    let mut c = with_aws(harvester_for(dir2.path(), &sim), &a);
    c.env("S3_HARVEST_TS_BUCKET", &bucket)
        .env("S3_LAST_ACTION_TS_KEY", "last-action-ts");
    c.args(["harvest", "-e", &compact(t0() + 1_200_000_000), "-o", "-"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert!(
        stderr(&out).contains("starting from the S3 checkpoint"),
        "{}",
        stderr(&out)
    );
    let first = stdout_records(&out)
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    assert_eq!(
        first[..19].replace(['-', 'T', ':'], ""),
        text,
        "starts at the checkpoint second"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_refusing_keeps_the_local_checkpoint_and_the_next_run_syncs_it() {
    let Some(a) = aws() else { return };
    let (s3, _) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(600, 600))).await;
    let bucket = unique("refuse");
    let dir = scratch();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("AWS_ENDPOINT_URL_S3", &dead)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("S3_HARVEST_TS_BUCKET", &bucket);
    harvest_window(&mut c, 600_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("will be written to S3 on the next run"),
        "{}",
        stderr(&out)
    );
    // The harvest itself is journaled and forwarded, the checkpoint kept locally.
    assert_eq!(stdout_records(&out).len(), 600);
    let local = Journal::open(&journal_path(dir.path()))
        .unwrap()
        .checkpoint()
        .unwrap()
        .unwrap();
    assert!(!local.synced_to_s3);
    // S3 is back: the next run (nothing new to harvest) writes the checkpoint.
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("S3_HARVEST_TS_BUCKET", &bucket);
    c.args(["harvest", "-e", &compact(t0() + 600_000_000), "-o", "none"]);
    assert_ok(&run_async(c).await);
    assert_eq!(
        s3_text(&s3, &bucket, "last-action-timestamp")
            .await
            .unwrap(),
        compact(local.last_action_us)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_reaches_sqs_once_in_batches_of_ten() {
    let Some(a) = aws() else { return };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(2345, 1200))).await;
    let queue = unique("actions");
    let dir = scratch();
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("SQS_QUEUE_NAME", &queue);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 1_200_000_000),
    ]);
    let out = run_async(c).await;
    assert_ok(&out);
    // 235 SendMessageBatch calls for 2,345 records: 10 per call.
    assert!(stderr(&out).contains("requests=235"), "{}", stderr(&out));
    let url = queue_url(&sqs, &queue).await;
    let (bodies, counts) = drain(&sqs, &url).await;
    assert_eq!(bodies.len(), 2345);
    assert!(counts.values().all(|n| *n == 1), "a record arrived twice");
    assert_eq!(
        bodies,
        journal_json(dir.path()),
        "queue bodies are the journaled records"
    );
    // A second forward has nothing left to send.
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("SQS_QUEUE_NAME", &queue).args(["forward"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert!(stderr(&out).contains("forwarded=0"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_down_keeps_the_cursor_and_catches_up_later() {
    let Some(a) = aws() else { return };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(300, 300))).await;
    let queue = unique("outage");
    let dir = scratch();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("AWS_ENDPOINT_URL_SQS", &dead)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("SQS_QUEUE_NAME", &queue);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 300_000_000),
    ]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("SQS queue '{queue}'")),
        "{}",
        stderr(&out)
    );
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.cursor(&format!("sqs:{queue}")).unwrap(), 0);
    assert_eq!(
        j.next_seq().unwrap(),
        300,
        "harvested records are safe in the journal"
    );
    drop(j);
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("SQS_QUEUE_NAME", &queue)
        .args(["forward", "-o", "sqs"]);
    assert_ok(&run_async(c).await);
    let url = queue_url(&sqs, &queue).await;
    let (bodies, _) = drain(&sqs, &url).await;
    assert_eq!(bodies.len(), 300);
}

async fn sink(sqs: aws_sdk_sqs::Client, cfg: SqsConfig, journal: &Arc<Journal>) -> SqsSink {
    SqsSink::connect(sqs, cfg, journal.clone())
        .await
        .expect("queue")
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_payload_limit_and_fifo_dedup() {
    let Some(a) = aws() else { return };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(200, 200))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 200_000_000, "none");
    assert_ok(&run_async(c).await);
    let journal = Arc::new(Journal::open(&journal_path(dir.path())).unwrap());
    let records = journal.read_from(0, usize::MAX).unwrap().1;
    let biggest = records.iter().map(|r| r.to_json().len()).max().unwrap();

    // A small payload limit: batches hold fewer than 10 records and stay under it.
    let limit = biggest * 3;
    let mut s = Sink::Sqs(
        sink(
            sqs.clone(),
            SqsConfig {
                max_batch_bytes: limit,
                ..SqsConfig::new(&unique("small"))
            },
            &journal,
        )
        .await,
    );
    let f = forward::forward(&journal, &mut s, "sqs:small")
        .await
        .unwrap();
    assert_eq!(f.forwarded, 200);
    assert!(
        s.requests() >= 200 / 3,
        "{} requests for a {limit}-byte limit",
        s.requests()
    );

    // FIFO: MessageDeduplicationId = action id, so a resend is dropped by SQS.
    let fifo = format!("{}.fifo", unique("fifo"));
    let q = sink(
        sqs.clone(),
        SqsConfig {
            group_id: "g1".into(),
            ..SqsConfig::new(&fifo)
        },
        &journal,
    )
    .await;
    let mut q = q;
    q.send(0, &records).await.unwrap();
    q.send(0, &records[..50]).await.unwrap();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(q.queue_url())
        .attribute_names(QueueAttributeName::FifoQueue)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs
            .attributes()
            .unwrap()
            .get(&QueueAttributeName::FifoQueue)
            .map(String::as_str),
        Some("true")
    );
    let (bodies, counts) = drain(&sqs, q.queue_url()).await;
    assert_eq!(bodies.len(), 200);
    assert!(counts.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_replay_into_a_fresh_queue_delivers_exactly_the_range() {
    let Some(a) = aws() else { return };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(1500, 1500))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 1_500_000_000, "-");
    assert_ok(&run_async(c).await);
    let queue = unique("replay");
    let (from, to) = (t0() + 300_000_000, t0() + 899_000_000);
    let mut c = with_aws(harvester(dir.path()), &a);
    c.args([
        "journal",
        "replay",
        "--from",
        &compact(from),
        "--to",
        &compact(to),
        "-o",
        "sqs",
        "-q",
        &queue,
    ]);
    let out = run_async(c).await;
    assert_ok(&out);
    let url = queue_url(&sqs, &queue).await;
    let (bodies, counts) = drain(&sqs, &url).await;
    let want: HashMap<i64, String> = journal_records(dir.path())
        .into_iter()
        .filter(|r| r.created_us >= from && r.created_us < to + 1_000_000)
        .map(|r| (r.action_id, r.to_json()))
        .collect();
    assert_eq!(bodies, want);
    assert!(counts.values().all(|n| *n == 1));
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(
        j.cursor("stdout").unwrap(),
        1500,
        "the regular cursor did not move"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_command_shows_sets_and_clears_both_copies() {
    let Some(a) = aws() else { return };
    let (s3, _) = sdk(&a).await;
    let bucket = unique("cpcmd");
    let dir = scratch();
    let cmd = |args: &[&str]| {
        let mut c = with_aws(harvester(dir.path()), &a);
        c.env("S3_HARVEST_TS_BUCKET", &bucket)
            .arg("checkpoint")
            .args(args);
        c
    };
    let out = run_async(cmd(&["--set", "20240301120000"])).await;
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("journal: 20240301120000") && text.contains("s3: 20240301120000"),
        "{text}"
    );
    assert_eq!(
        s3_text(&s3, &bucket, "last-action-timestamp")
            .await
            .as_deref(),
        Some("20240301120000")
    );
    let out = run_async(cmd(&["--clear"])).await;
    assert_ok(&out);
    assert!(s3_text(&s3, &bucket, "last-action-timestamp")
        .await
        .is_none());
    let out = run_async(cmd(&[])).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("journal: none") && text.contains("s3: none"),
        "{text}"
    );
    let out = run_async(cmd(&["--set", "yesterday"])).await;
    assert_eq!(out.status.code(), Some(2));
}
